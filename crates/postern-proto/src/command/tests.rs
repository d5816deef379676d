use super::*;
use crate::address::{Address, Domain};

fn parse(s: &str) -> Result<Command, CommandError> {
    Command::parse(s.as_bytes())
}

#[test]
fn simple_commands() {
    assert_eq!(
        parse("ehlo client.example"),
        Ok(Command::Ehlo("client.example".into()))
    );
    assert_eq!(
        parse("HELO [192.0.2.1]"),
        Ok(Command::Helo("[192.0.2.1]".into()))
    );
    assert_eq!(parse("DATA"), Ok(Command::Data));
    assert_eq!(parse("rset"), Ok(Command::Rset));
    assert_eq!(parse("NOOP anything"), Ok(Command::Noop));
    assert_eq!(parse("QUIT"), Ok(Command::Quit));
    assert_eq!(parse("STARTTLS"), Ok(Command::StartTls));
    assert_eq!(parse("VRFY joe"), Ok(Command::Vrfy("joe".into())));
    assert_eq!(
        parse("BDAT 1000"),
        Ok(Command::Bdat {
            size: 1000,
            last: false
        })
    );
    assert_eq!(
        parse("BDAT 0 last"),
        Ok(Command::Bdat {
            size: 0,
            last: true
        })
    );
    assert_eq!(
        parse("AUTH plain AGpvZQBzZWNyZXQ="),
        Ok(Command::Auth {
            mechanism: "PLAIN".into(),
            initial: Some("AGpvZQBzZWNyZXQ=".into())
        })
    );
}

#[test]
fn mail_and_rcpt() {
    let Ok(Command::Mail { from, params }) =
        parse("MAIL FROM:<a@example.com> SIZE=1000 BODY=8BITMIME SMTPUTF8")
    else {
        panic!("MAIL did not parse");
    };
    assert_eq!(
        from,
        ReversePath::Address(Address {
            local: "a".into(),
            domain: Domain::Name("example.com".into())
        })
    );
    assert_eq!(params.size, Some(1000));
    assert_eq!(params.body, Some(BodyType::EightBitMime));
    assert!(params.smtputf8);
    assert!(matches!(
        parse("MAIL FROM: <>"),
        Ok(Command::Mail {
            from: ReversePath::Null,
            ..
        })
    ));
    assert!(matches!(
        parse("RCPT TO:<\"john doe\"@example.com>"),
        Ok(Command::Rcpt { .. })
    ));
    assert!(matches!(
        parse("rcpt to:<postmaster>"),
        Ok(Command::Rcpt {
            to: ForwardPath::Postmaster,
            ..
        })
    ));
}

#[test]
fn errors_map_to_precise_replies() {
    let code = |s: &str| {
        parse(s).map(|_| ()).map_err(|e| {
            let r = e.reply();
            (
                r.code,
                r.enhanced.map(|e| e.to_string()).unwrap_or_default(),
            )
        })
    };
    assert_eq!(code("FOO"), Err((500, "5.5.2".into())));
    assert_eq!(code("EHLO"), Err((501, "5.5.4".into())));
    assert_eq!(code("MAIL TO:<a@b.example>"), Err((501, "5.5.4".into())));
    assert_eq!(code("MAIL FROM:<a@@b>"), Err((501, "5.1.7".into())));
    assert_eq!(code("RCPT TO:<nodomain>"), Err((501, "5.1.3".into())));
    assert_eq!(
        code("MAIL FROM:<a@b.example> XFOO=1"),
        Err((555, "5.5.4".into()))
    );
    assert_eq!(
        code("RCPT TO:<a@b.example> NOTIFY=NEVER"),
        Err((555, "5.5.4".into()))
    );
    assert_eq!(
        code("MAIL FROM:<a@b.example> SIZE=x"),
        Err((501, "5.5.4".into()))
    );
    assert_eq!(code("DATA now"), Err((501, "5.5.4".into())));
    assert_eq!(code("BDAT -1"), Err((501, "5.5.4".into())));
    assert_eq!(code("BDAT 10 LAST x"), Err((501, "5.5.4".into())));
    assert_eq!(
        Command::parse(b"NOOP \xff").map_err(|e| e.reply().code),
        Err(500)
    );
}

proptest::proptest! {
    /// Any line is either a command or a precise refusal, never a panic; and a
    /// refusal is always a 5xx with an enhanced code.
    #[test]
    fn never_panics(line in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
        if let Err(e) = Command::parse(&line) {
            let r = e.reply();
            proptest::prop_assert!(r.is_permanent() && r.enhanced.is_some());
        }
    }

    /// Verbs are case-insensitive and arguments survive parsing.
    #[test]
    fn mail_round_trip(local in "[a-z0-9]{1,20}", domain in "[a-z]{1,10}\\.[a-z]{2,5}", upper: bool) {
        let verb = if upper { "MAIL FROM:" } else { "mail from:" };
        let line = format!("{verb}<{local}@{domain}> SIZE=42");
        let parsed = Command::parse(line.as_bytes());
        let Ok(Command::Mail { from, params }) = parsed else {
            return Err(proptest::test_runner::TestCaseError::fail(format!("{line}: {parsed:?}")));
        };
        proptest::prop_assert_eq!(from.to_string(), format!("{local}@{domain}"));
        proptest::prop_assert_eq!(params.size, Some(42));
    }
}

#[test]
fn huge_size_saturates() {
    let Ok(Command::Mail { params, .. }) =
        parse("MAIL FROM:<a@b.example> SIZE=99999999999999999999999")
    else {
        panic!("MAIL did not parse");
    };
    assert_eq!(params.size, Some(u64::MAX));
}
