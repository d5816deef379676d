//! SMTP smuggling over real sockets: every end-of-data variant the published
//! scanners try, sent in one write with a second transaction behind it. The
//! gateway must never accept the second message, in either bare-line-ending mode.

use postern_config::BareLineEndings;
use postern_tests::gateway::{TestGateway, trust_loopback};
use postern_tests::smtp::Smtp;

const VARIANTS: &[&[u8]] = &[
    b"\n.\n",
    b"\n.\r\n",
    b"\r.\r",
    b"\r\n.\n",
    b"\r.\r\n",
    b"\r\n\x00.\r\n",
    b"\n.\r",
    b"\r\n.\r",
    b"\r.\n",
    b"\r\n.\r\r\n",
    b"\n\n.\n\n",
    b"\r\r\n.\r\r\n",
];

fn attack(gw: &TestGateway, end: &[u8], tls: bool) -> Vec<u16> {
    let (mut s, _) = if tls {
        Smtp::connect_tls(gw.submissions).unwrap()
    } else {
        Smtp::connect(gw.relay).unwrap()
    };
    let mut codes = Vec::new();
    codes.push(s.cmd("EHLO attacker.test").unwrap().code);
    if tls {
        use base64::Engine;
        let plain = base64::engine::general_purpose::STANDARD.encode(format!(
            "\0{}\0{}",
            postern_tests::gateway::USER,
            postern_tests::gateway::PASSWORD
        ));
        codes.push(s.cmd(&format!("AUTH PLAIN {plain}")).unwrap().code);
    }
    let mut msg =
        b"MAIL FROM:<real@example.com>\r\nRCPT TO:<rcpt@example.net>\r\nDATA\r\n".to_vec();
    msg.extend_from_slice(b"From: real@example.com\r\nSubject: first\r\n\r\nfirst body");
    msg.extend_from_slice(end);
    msg.extend_from_slice(b"MAIL FROM:<admin@example.com>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nFrom: admin@example.com\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\nQUIT\r\n");
    s.send(&msg).unwrap();
    while let Ok(r) = s.reply() {
        codes.push(r.code);
        if r.code == 221 {
            break;
        }
    }
    codes
}

fn run(mode: BareLineEndings, tls: bool) {
    let gw = TestGateway::start(|c| {
        trust_loopback(c);
        c.limits.bare_line_endings = mode;
    })
    .unwrap();
    for (i, end) in VARIANTS.iter().enumerate() {
        let before = gw.queue().unwrap().len();
        let codes = attack(&gw, end, tls);
        let q = gw.queue().unwrap();
        let new = q.len() - before;
        // MAIL, RCPT, 354 and exactly one verdict for the one DATA, then 221.
        let tail = &codes[codes.len() - 5..];
        assert_eq!(
            &tail[..3],
            &[250, 250, 354],
            "variant {i} {end:?}: {codes:?}"
        );
        assert_eq!(tail[4], 221, "variant {i} {end:?}: {codes:?}");
        assert!(
            new <= 1,
            "variant {i} {end:?}: {new} messages from one DATA"
        );
        for m in &q {
            assert_eq!(
                m["sender"], "real@example.com",
                "variant {i} {end:?}: smuggled sender queued"
            );
            assert_eq!(m["recipients"], serde_json::json!(["rcpt@example.net"]));
        }
        if mode == BareLineEndings::Refuse {
            assert_eq!(
                new, 0,
                "variant {i} {end:?}: bare line endings must be refused"
            );
            assert!(tail[3] >= 500, "variant {i} {end:?}: {codes:?}");
        }
        if new == 1 {
            // Whatever was accepted holds no line that would end data downstream.
            let id = q.last().unwrap()["id"].as_str().unwrap().to_owned();
            let body = gw.message(&id).unwrap();
            for (j, &b) in body.iter().enumerate() {
                if b == b'\n' {
                    assert!(
                        j > 0 && body[j - 1] == b'\r',
                        "bare LF stored for variant {i}"
                    );
                }
                if b == b'\r' {
                    assert_eq!(
                        body.get(j + 1),
                        Some(&b'\n'),
                        "bare CR stored for variant {i}"
                    );
                }
            }
            assert!(!body.contains(&0), "NUL stored for variant {i}");
        }
    }
}

#[test]
fn relay_refuse_mode() {
    run(BareLineEndings::Refuse, false);
}

#[test]
fn relay_normalize_mode() {
    run(BareLineEndings::Normalize, false);
}

#[test]
fn submission_over_tls_refuse_mode() {
    run(BareLineEndings::Refuse, true);
}
