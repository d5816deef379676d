//! CHUNKING (RFC 3030) over a real TLS session: BDAT chunks pipelined with their
//! commands, binary-safe sizes, SIZE enforced across chunks, and a refused chunk
//! ending the transaction while the session stays in step.

use base64::Engine;
use postern_tests::gateway::{PASSWORD, TestGateway, USER};
use postern_tests::smtp::Smtp;

fn authed(gw: &TestGateway) -> Smtp {
    let (mut s, _) = Smtp::connect(gw.submission).unwrap();
    assert_eq!(s.cmd("EHLO c").unwrap().code, 250);
    assert_eq!(s.cmd("STARTTLS").unwrap().code, 220);
    let mut s = s.upgrade().unwrap();
    let ehlo = s.cmd("EHLO c").unwrap();
    assert!(ehlo.text.contains("CHUNKING"), "{}", ehlo.text);
    let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0{USER}\0{PASSWORD}"));
    assert_eq!(s.cmd(&format!("AUTH PLAIN {plain}")).unwrap().code, 235);
    s
}

#[test]
fn bdat_chunks_make_one_message() {
    let gw = TestGateway::start(|_| {}).unwrap();
    let mut s = authed(&gw);
    let part1 = b"Subject: chunked\r\n\r\nfirst part with a lone . line:\r\n.\r\n";
    let part2 = b"second part\r\n";
    let mut wire = b"MAIL FROM:<app@example.com>\r\nRCPT TO:<x@example.net>\r\n".to_vec();
    wire.extend_from_slice(format!("BDAT {}\r\n", part1.len()).as_bytes());
    wire.extend_from_slice(part1);
    wire.extend_from_slice(format!("BDAT {} LAST\r\n", part2.len()).as_bytes());
    wire.extend_from_slice(part2);
    s.send(&wire).unwrap();
    assert_eq!(s.reply().unwrap().code, 250);
    assert_eq!(s.reply().unwrap().code, 250);
    assert_eq!(
        s.reply().unwrap().last_line(),
        format!("250 2.0.0 Ok: {} octets received", part1.len())
    );
    let last = s.reply().unwrap();
    assert!(
        last.last_line().starts_with("250 2.0.0 Ok: queued as "),
        "{}",
        last.text
    );
    let id = last.last_line().rsplit(' ').next().unwrap().to_owned();
    let body = gw.message(&id).unwrap();
    // No dot-stuffing in BDAT: the lone "." line is content.
    assert!(
        body.ends_with(b"first part with a lone . line:\r\n.\r\nsecond part\r\n"),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

#[test]
fn size_is_enforced_across_chunks_and_the_session_stays_in_step() {
    let gw = TestGateway::start(|c| c.limits.max_message_size = 4096).unwrap();
    let mut s = authed(&gw);
    assert_eq!(s.cmd("MAIL FROM:<app@example.com>").unwrap().code, 250);
    assert_eq!(s.cmd("RCPT TO:<x@example.net>").unwrap().code, 250);
    let chunk = "y".repeat(78) + "\r\n";
    let data = chunk.repeat(40); // 3200 octets
    s.send(format!("BDAT {}\r\n{data}", data.len()).as_bytes())
        .unwrap();
    assert_eq!(s.reply().unwrap().code, 250);
    // The second chunk crosses the limit: refused, transaction over.
    s.send(format!("BDAT {}\r\n{data}", data.len()).as_bytes())
        .unwrap();
    assert!(s.reply().unwrap().last_line().starts_with("552 5.3.4"));
    // Further chunks of that transaction are read and refused, and commands still work.
    s.send(format!("BDAT {} LAST\r\n{data}", data.len()).as_bytes())
        .unwrap();
    assert_eq!(
        s.reply().unwrap().last_line(),
        "503 5.5.1 Error: need MAIL command"
    );
    assert_eq!(s.cmd("NOOP").unwrap().code, 250);
    assert!(gw.queue().unwrap().is_empty());
}
