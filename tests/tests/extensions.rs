//! ESMTP extensions end to end: CHUNKING (RFC 3030) over a real TLS session (BDAT
//! chunks pipelined with their commands, binary-safe sizes, SIZE enforced across
//! chunks, a refused chunk ending the transaction while the session stays in step),
//! and SMTPUTF8 (RFC 6531) with Python's smtplib (UTF-8 addresses and headers only
//! with SMTPUTF8 on MAIL, 553 5.6.7 without it).

use anyhow::{Context, Result};
use postern_tests::gateway::{PASSWORD, TestGateway, USER};
use postern_tests::reply::expect_code;
use postern_tests::smtp::Smtp;
use postern_tests::smtplib::{self, assert_failure, assert_reply, contains, strs};

fn authed(gw: &TestGateway) -> Smtp {
    let (mut s, _) = Smtp::connect(gw.submission).unwrap();
    assert_eq!(s.cmd("EHLO c").unwrap().code, 250);
    assert_eq!(s.cmd("STARTTLS").unwrap().code, 220);
    let mut s = s.upgrade().unwrap();
    let ehlo = s.cmd("EHLO c").unwrap();
    assert!(ehlo.text.contains("CHUNKING"), "{}", ehlo.text);
    expect_code(&s.auth_plain(USER, PASSWORD).unwrap(), 235);
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

/// What smtplib does in [`smtplib_smtputf8_recipient_and_subject`].
const SMTPUTF8_RECIPIENT_AND_SUBJECT_SCRIPT: &str = r#"
s = submission()
out["smtputf8"] = s.has_extn("smtputf8")
msg = message("alice@example.com", ["zoë@example.net"], "Grüße aus Zürich ✉", "Körper: ünïcödé\r\n").encode("utf-8")
out["refused"] = s.sendmail("alice@example.com", ["zoë@example.net"], msg, mail_options=["SMTPUTF8"])
s.quit()

# Without SMTPUTF8 on MAIL. smtplib would not even encode a non-ASCII address then,
# so let it send UTF-8 commands anyway and see what the gateway says.
s = submission()
s.command_encoding = "utf-8"
try:
    s.sendmail("alice@example.com", ["zoë@example.net"], b"Subject: x\r\n\r\nx\r\n")
    out["rcpt_without"] = "accepted"
except smtplib.SMTPException as e:
    out["rcpt_without"] = failure(e)
s.command_encoding = "utf-8"  # smtplib's RSET after the refusal set it back to ASCII
try:
    s.sendmail("zoë@example.com", ["someone@example.net"], b"Subject: x\r\n\r\nx\r\n")
    out["sender_without"] = "accepted"
except smtplib.SMTPException as e:
    out["sender_without"] = failure(e)
s.quit()
"#;

#[test]
fn smtplib_smtputf8_recipient_and_subject() -> Result<()> {
    let (gw, out) = smtplib::run(|_| {}, SMTPUTF8_RECIPIENT_AND_SUBJECT_SCRIPT)?;
    assert_eq!(out["smtputf8"], true, "{out}");
    assert_eq!(out["refused"], serde_json::json!({}), "{out}");
    let refused = &out["rcpt_without"];
    assert_eq!(refused["type"], "SMTPRecipientsRefused", "{out}");
    assert_reply(&refused["recipients"]["zoë@example.net"], 553, "5.6.7");
    assert_failure(&out["sender_without"], "SMTPSenderRefused", 553, "5.6.7");

    let queue = gw.queue()?;
    assert_eq!(
        queue.len(),
        1,
        "only the SMTPUTF8 message is queued: {queue:?}"
    );
    assert_eq!(strs(&queue[0]["recipients"]), ["zoë@example.net"]);
    assert_eq!(queue[0]["auth_user"], "alice");
    let id = queue[0]["id"].as_str().context("id")?;
    let content = gw.message(id)?;
    let text = String::from_utf8_lossy(&content);
    assert!(text.contains(&format!("with UTF8SMTPSA id {id}")), "{text}");
    assert!(text.contains("for <zoë@example.net>;"), "{text}");
    assert!(
        contains(&content, "\r\nSubject: Grüße aus Zürich ✉\r\n".as_bytes()),
        "{text}"
    );
    assert!(
        content.ends_with("\r\n\r\nKörper: ünïcödé\r\n".as_bytes()),
        "{text}"
    );
    Ok(())
}
