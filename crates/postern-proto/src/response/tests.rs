use super::*;

fn parse_all(wire: &str) -> Vec<Reply> {
    let mut p = ReplyParser::new();
    let mut out = Vec::new();
    for line in wire.split("\r\n").filter(|l| !l.is_empty()) {
        if let Some(r) = p.push(line).unwrap() {
            out.push(r);
        }
    }
    out
}

#[test]
fn single_multi_and_enhanced() {
    let r = parse_all("250-mx.test greets\r\n250-PIPELINING\r\n250 SIZE 1000\r\n");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].code, 250);
    assert_eq!(r[0].enhanced, None);
    assert_eq!(r[0].lines.len(), 3);
    let r = parse_all("550 5.1.1 no such user\r\n");
    assert_eq!(r[0].enhanced, Some(EnhancedCode(5, 1, 1)));
    assert_eq!(r[0].text(), "no such user");
    // An enhanced code of another class than the reply is text, not a code.
    let r = parse_all("250 5.1.1 odd\r\n");
    assert_eq!(r[0].enhanced, None);
    assert_eq!(r[0].text(), "5.1.1 odd");
}

#[test]
fn malformed_and_mixed_lines_are_errors() {
    let mut p = ReplyParser::new();
    assert!(matches!(p.push("hello"), Err(ReplyError::Malformed(_))));
    assert!(matches!(p.push("250x ok"), Err(ReplyError::Malformed(_))));
    assert!(matches!(p.push("199 ok"), Err(ReplyError::Malformed(_))));
    let mut p = ReplyParser::new();
    assert_eq!(p.push("250-a"), Ok(None));
    assert_eq!(
        p.push("251 b"),
        Err(ReplyError::MixedCodes {
            first: 250,
            then: 251
        })
    );
    let mut p = ReplyParser::new();
    for _ in 0..MAX_REPLY_LINES {
        assert_eq!(p.push("250-x"), Ok(None));
    }
    assert_eq!(p.push("250 x"), Err(ReplyError::TooManyLines));
}

#[test]
fn enhanced_codes() {
    assert_eq!(parse_enhanced("5.1.1 no"), Some(EnhancedCode(5, 1, 1)));
    assert_eq!(parse_enhanced("mx.test ready"), None);
    assert_eq!(parse_enhanced("1.2.3 x"), None);
}

#[test]
fn ehlo_capabilities() {
    let r = parse_all(
        "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n250-auth plain login\r\n250-CHUNKING\r\n250 STARTTLS\r\n",
    );
    let c = Capabilities::from_ehlo(&r[0]);
    assert!(c.esmtp && c.pipelining && c.eight_bit_mime && c.starttls && c.chunking);
    assert!(!c.smtputf8);
    assert_eq!(c.size, Some(1_000_000));
    assert!(c.offers_auth("PLAIN") && c.offers_auth("LOGIN"));
    let r = parse_all("250-mx.test\r\n250 SIZE\r\n");
    assert_eq!(Capabilities::from_ehlo(&r[0]).size, None);
}

proptest::proptest! {
    /// What the server side writes, the client side reads back as the same reply.
    #[test]
    fn round_trip_with_the_writer(
        class in 2u16..=5,
        rest in 0u16..100,
        enhanced in proptest::option::of((0u16..40, 0u16..1000)),
        lines in proptest::collection::vec("[ -~]{0,60}", 1..6),
    ) {
        let code = class * 100 + rest;
        // RFC 3463 has classes 2, 4 and 5 only; a 3xx reply carries none.
        let enhanced = enhanced
            .filter(|_| class != 3)
            .map(|(s, d)| EnhancedCode(class as u8, s, d));
        // A line of a reply without an enhanced code must not look like one.
        proptest::prop_assume!(enhanced.is_some() || parse_enhanced(&lines[0]).is_none());
        let reply = Reply {
            code,
            enhanced,
            lines: lines.into_iter().map(Cow::Owned).collect(),
        };
        let parsed = parse_all(&reply.to_wire());
        proptest::prop_assert_eq!(parsed.len(), 1);
        proptest::prop_assert_eq!(&parsed[0], &reply);
    }

    #[test]
    fn never_panics(line in "\\PC{0,80}") {
        let _ = ReplyParser::new().push(&line);
    }
}
