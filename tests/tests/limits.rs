//! The gateway's bounds, seen from the wire with the byte-exact client: concurrent
//! sessions (in total and per client IP), the command timeout, AUTH brute-force
//! delays and blocks, recipients per message, errors per session, line lengths and
//! NUL, and the message size (with Python's smtplib, declared with SIZE= and not).
//! The relay rule of the relay listener is in `relay_policy.rs`.

use std::net::SocketAddr;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use postern_tests::gateway::{PASSWORD, TestGateway, USER, trust_loopback};
use postern_tests::reply::expect;
use postern_tests::smtp::{Smtp, plain};
use postern_tests::smtplib::{self, assert_failure, assert_reply, contains};

/// An implicit-TLS session on 465 after EHLO.
fn submissions_session(gw: &TestGateway) -> Result<Smtp> {
    let mut s = Smtp::connect_tls_admitted(gw.submissions)?;
    s.ehlo()?;
    Ok(s)
}

/// A refused connection: 421 4.7.0 with `why` in the text, then the server closes.
#[track_caller]
fn assert_refused(addr: SocketAddr, why: &str) {
    match Smtp::connect(addr) {
        Ok((mut s, greeting)) => {
            expect(&greeting, 421, "4.7.0");
            assert!(greeting.text.contains(why), "{:?}", greeting.text);
            assert!(s.closed(), "connection left open after 421");
        }
        Err(e) => panic!("connection to {addr} should get a 421, got {e:#}"),
    }
}

#[test]
fn sessions_per_ip() -> Result<()> {
    let gw = TestGateway::start(|c| c.limits.max_sessions_per_ip = 2)?;
    let mut a = Smtp::connect_admitted(gw.submission)?;
    let mut b = Smtp::connect_admitted(gw.relay)?;
    // Counted over all listeners.
    assert_refused(gw.submission, "too many connections from your address");
    assert_refused(gw.relay, "too many connections from your address");
    // On 465 the client expects TLS: it gets no handshake and no plain text.
    assert!(Smtp::connect_tls(gw.submissions).is_err());
    // The admitted sessions are unaffected.
    expect(&a.cmd("NOOP")?, 250, "2.0.0");
    expect(&b.cmd("NOOP")?, 250, "2.0.0");
    // Closing one frees a slot.
    expect(&a.cmd("QUIT")?, 221, "2.0.0");
    drop(a);
    let _c = submissions_session(&gw)?;
    assert_refused(gw.submission, "too many connections from your address");
    expect(&b.cmd("NOOP")?, 250, "2.0.0");
    Ok(())
}

#[test]
fn sessions_in_total() -> Result<()> {
    let gw = TestGateway::start(|c| c.limits.max_sessions = 3)?;
    let mut a = Smtp::connect_admitted(gw.relay)?;
    let mut b = Smtp::connect_admitted(gw.submission)?;
    let mut c = Smtp::connect_tls_admitted(gw.submissions)?;
    assert_refused(gw.relay, "too many connections; try again later");
    assert_refused(gw.submission, "too many connections; try again later");
    assert!(Smtp::connect_tls(gw.submissions).is_err());
    for s in [&mut a, &mut b, &mut c] {
        expect(&s.cmd("NOOP")?, 250, "2.0.0");
    }
    // A client that just goes away frees its slot too.
    drop(b);
    let mut d = Smtp::connect_admitted(gw.submission)?;
    expect(&d.cmd("NOOP")?, 250, "2.0.0");
    assert_refused(gw.relay, "too many connections; try again later");
    Ok(())
}

#[test]
fn idle_session_times_out() -> Result<()> {
    let gw = TestGateway::start(|c| c.timeouts.command = Duration::from_secs(1))?;
    let mut s = Smtp::connect_admitted(gw.submission)?;
    s.ehlo()?;
    // Activity keeps the session: each command restarts the timer.
    for _ in 0..4 {
        sleep(Duration::from_millis(500));
        expect(&s.cmd("NOOP")?, 250, "2.0.0");
    }
    let idle = Instant::now();
    let r = s.reply()?;
    let waited = idle.elapsed();
    expect(&r, 421, "4.4.2");
    assert!(r.text.contains("timeout exceeded"), "{:?}", r.text);
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "timed out after {waited:?}"
    );
    assert!(s.closed());
    Ok(())
}

#[test]
fn idle_transaction_times_out_and_nothing_is_queued() -> Result<()> {
    let gw = TestGateway::start(|c| {
        c.timeouts.command = Duration::from_secs(1);
        trust_loopback(c);
    })?;
    let mut s = Smtp::connect_admitted(gw.relay)?;
    s.ehlo()?;
    expect(&s.cmd("MAIL FROM:<app@example.com>")?, 250, "2.1.0");
    expect(&s.cmd("RCPT TO:<someone@example.net>")?, 250, "2.1.5");
    let idle = Instant::now();
    let r = s.reply()?;
    expect(&r, 421, "4.4.2");
    assert!(
        idle.elapsed() < Duration::from_secs(3),
        "{:?}",
        idle.elapsed()
    );
    assert!(s.closed());
    assert!(gw.queue()?.is_empty());
    Ok(())
}

fn brute_force_config(c: &mut postern_config::GatewayConfig) {
    c.auth.delay_after_failures = 1;
    c.auth.failure_delay = Duration::from_millis(200);
    c.auth.block_after_failures = 3;
}

/// Every way back in for a blocked client is closed at once with 421 4.7.0.
fn assert_blocked(gw: &TestGateway) {
    for addr in [gw.submission, gw.relay] {
        let started = Instant::now();
        assert_refused(addr, "too many authentication failures");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "refusal took {:?}",
            started.elapsed()
        );
    }
    assert!(Smtp::connect_tls(gw.submissions).is_err());
}

#[test]
fn auth_failures_are_delayed_then_blocked() -> Result<()> {
    let gw = TestGateway::start(brute_force_config)?;
    let mut s = submissions_session(&gw)?;
    let wrong = format!("AUTH PLAIN {}", plain(USER, "wrong"));
    expect(&s.cmd(&wrong)?, 535, "5.7.8");
    let second = Instant::now();
    let r = s.cmd(&wrong)?;
    let delayed = second.elapsed();
    expect(&r, 535, "5.7.8");
    assert!(
        delayed >= Duration::from_millis(200),
        "the failure after delay_after_failures came back after {delayed:?}"
    );
    let r = s.cmd(&wrong)?;
    expect(&r, 421, "4.7.0");
    assert!(
        r.text.contains("too many authentication failures"),
        "{:?}",
        r.text
    );
    assert!(s.closed(), "blocked session left open");
    assert_blocked(&gw);
    Ok(())
}

#[test]
fn auth_failures_count_per_ip_across_sessions() -> Result<()> {
    let gw = TestGateway::start(brute_force_config)?;
    // First failure: plain PLAIN on one connection, which then leaves.
    let mut a = submissions_session(&gw)?;
    expect(
        &a.cmd(&format!("AUTH PLAIN {}", plain(USER, "wrong")))?,
        535,
        "5.7.8",
    );
    expect(&a.cmd("QUIT")?, 221, "2.0.0");
    drop(a);

    // Second failure, on a new connection and with LOGIN: still delayed.
    let mut b = submissions_session(&gw)?;
    let r = b.cmd("AUTH LOGIN")?;
    assert_eq!(r.text, "334 VXNlcm5hbWU6");
    let r = b.cmd(&B64.encode(USER))?;
    assert_eq!(r.text, "334 UGFzc3dvcmQ6");
    let started = Instant::now();
    let r = b.cmd(&B64.encode("wrong"))?;
    let delayed = started.elapsed();
    expect(&r, 535, "5.7.8");
    assert!(
        delayed >= Duration::from_millis(200),
        "came back after {delayed:?}"
    );
    // Not blocked yet: the right password still works.
    expect(
        &b.cmd(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)))?,
        235,
        "2.7.0",
    );

    // Third failure, from yet another connection: blocked.
    let mut c = submissions_session(&gw)?;
    let r = c.cmd(&format!("AUTH PLAIN {}", plain("nobody", "wrong")))?;
    expect(&r, 421, "4.7.0");
    assert!(c.closed());
    assert_blocked(&gw);
    // The session that authenticated before the block goes on.
    let r = b.send_message(
        "alice@example.com",
        &["x@example.net"],
        "Subject: test\r\n\r\nstill here",
    )?;
    expect(&r, 250, "2.0.0");
    Ok(())
}

#[test]
fn block_reaches_sessions_opened_before_it() -> Result<()> {
    let gw = TestGateway::start(brute_force_config)?;
    // Sessions opened before the block: one idle, one halfway through AUTH LOGIN.
    let mut early = submissions_session(&gw)?;
    let mut halfway = submissions_session(&gw)?;
    assert_eq!(halfway.cmd("AUTH LOGIN")?.text, "334 VXNlcm5hbWU6");
    assert_eq!(halfway.cmd(&B64.encode(USER))?.text, "334 UGFzc3dvcmQ6");
    // Three failures from a third session block the address.
    let mut s = submissions_session(&gw)?;
    let wrong = format!("AUTH PLAIN {}", plain(USER, "wrong"));
    expect(&s.cmd(&wrong)?, 535, "5.7.8");
    expect(&s.cmd(&wrong)?, 535, "5.7.8");
    expect(&s.cmd(&wrong)?, 421, "4.7.0");
    // A blocked client gets no more password checks on any session, not even
    // for the right password.
    let r = early.cmd(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)))?;
    expect(&r, 421, "4.7.0");
    assert!(
        r.text.contains("too many authentication failures"),
        "{:?}",
        r.text
    );
    assert!(early.closed());
    expect(&halfway.cmd(&B64.encode(PASSWORD))?, 421, "4.7.0");
    assert!(halfway.closed());
    assert_blocked(&gw);
    Ok(())
}

#[test]
fn recipients_per_message() -> Result<()> {
    let gw = TestGateway::start(|c| c.limits.max_recipients = 2)?;
    let mut s = submissions_session(&gw)?;
    expect(
        &s.cmd(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)))?,
        235,
        "2.7.0",
    );
    expect(&s.cmd("MAIL FROM:<alice@example.com>")?, 250, "2.1.0");
    expect(&s.cmd("RCPT TO:<one@example.net>")?, 250, "2.1.5");
    expect(&s.cmd("RCPT TO:<two@example.net>")?, 250, "2.1.5");
    let r = s.cmd("RCPT TO:<three@example.net>")?;
    expect(&r, 452, "4.5.3");
    assert!(r.text.contains("too many recipients"), "{:?}", r.text);
    // The transaction goes on with the recipients it has.
    let r = s.cmd("DATA")?;
    assert_eq!(r.code, 354, "{:?}", r.text);
    s.send(b"Subject: two of three\r\n\r\nbody\r\n.\r\n")?;
    expect(&s.reply()?, 250, "2.0.0");
    let queue = gw.queue()?;
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(
        queue[0]["recipients"],
        serde_json::json!(["one@example.net", "two@example.net"])
    );
    Ok(())
}

#[test]
fn too_many_errors_end_the_session() -> Result<()> {
    let gw = TestGateway::start(|c| c.limits.max_errors = 3)?;
    let mut s = Smtp::connect_admitted(gw.submission)?;
    s.ehlo()?;
    expect(&s.cmd("FOO")?, 500, "5.5.2");
    // Good commands in between do not reset the count.
    expect(&s.cmd("NOOP")?, 250, "2.0.0");
    expect(&s.cmd("EXPN staff")?, 502, "5.5.1");
    expect(&s.cmd("NOOP")?, 250, "2.0.0");
    expect(&s.cmd("BAR")?, 500, "5.5.2");
    let r = s.reply()?;
    expect(&r, 421, "4.7.0");
    assert!(r.text.contains("too many errors"), "{:?}", r.text);
    assert!(s.closed());
    Ok(())
}

#[test]
fn long_command_lines_and_nul() -> Result<()> {
    let gw = TestGateway::start(|_| {})?;
    let mut s = Smtp::connect_admitted(gw.submission)?;
    s.ehlo()?;
    // 512 octets with CRLF is the limit (RFC 5321 4.5.3.1.4) and is fine.
    let at_limit = format!("VRFY {}", "x".repeat(512 - 7));
    assert_eq!(at_limit.len() + 2, 512);
    expect(&s.cmd(&at_limit)?, 252, "2.5.0");
    // 600 octets: refused, and the session goes on.
    let long = format!("VRFY {}", "x".repeat(600 - 7));
    assert_eq!(long.len() + 2, 600);
    let r = s.cmd(&long)?;
    expect(&r, 500, "5.5.2");
    assert!(r.text.contains("too long"), "{:?}", r.text);
    expect(&s.cmd("NOOP")?, 250, "2.0.0");
    // Far longer than any buffer, in pieces: one refusal, then back in step.
    s.send(&vec![b'x'; 100_000])?;
    s.send(b"\r\nNOOP\r\n")?;
    expect(&s.reply()?, 500, "5.5.2");
    expect(&s.reply()?, 250, "2.0.0");
    // NUL in a command.
    s.send(b"NO\0OP\r\n")?;
    let r = s.reply()?;
    expect(&r, 500, "5.5.2");
    assert!(r.text.contains("NUL"), "{:?}", r.text);
    expect(&s.cmd("NOOP")?, 250, "2.0.0");
    Ok(())
}

#[test]
fn long_text_line_in_data() -> Result<()> {
    let gw = TestGateway::start(trust_loopback)?;
    let mut s = Smtp::connect_admitted(gw.relay)?;
    s.ehlo()?;
    // 1001 octets with CRLF: one too many (RFC 5321 4.5.3.1.6).
    let r = s.send_message(
        "app@example.com",
        &["x@example.net"],
        &format!("Subject: test\r\n\r\n{}", "y".repeat(999)),
    )?;
    expect(&r, 500, "5.5.2");
    assert!(r.text.contains("longer than 1000 octets"), "{:?}", r.text);
    assert!(gw.queue()?.is_empty());
    // The session goes on, and 1000 octets with CRLF is fine.
    expect(&s.cmd("NOOP")?, 250, "2.0.0");
    let r = s.send_message(
        "app@example.com",
        &["x@example.net"],
        &format!("Subject: test\r\n\r\n{}", "z".repeat(998)),
    )?;
    expect(&r, 250, "2.0.0");
    let ids = gw.queued_ids()?;
    assert_eq!(ids.len(), 1);
    let content = gw.message(&ids[0])?;
    let line = [b"\r\n".as_slice(), &[b'z'; 998], b"\r\n"].concat();
    assert!(content.ends_with(&line));
    Ok(())
}

/// What smtplib does in [`smtplib_message_size_limit`].
const MESSAGE_SIZE_LIMIT_SCRIPT: &str = r#"
def sized(n, tag):
    head = "Subject: %s\r\n\r\n" % tag
    line = "x" * 98 + "\r\n"
    body = line * ((n - len(head)) // len(line))
    body += "y" * (n - len(head) - len(body) - 2) + "\r\n"
    m = (head + body).encode()
    assert len(m) == n, (len(m), n)
    return m

s = submission()
out["size"] = s.esmtp_features.get("size", "")
# smtplib declares SIZE= itself: refused at MAIL.
try:
    s.sendmail("alice@example.com", ["a@example.net"], sized(20000, "declared"))
    out["declared"] = "accepted"
except smtplib.SMTPException as e:
    out["declared"] = failure(e)
out["mail_size"] = reply(s.mail("alice@example.com", ["SIZE=10001"]))
s.rset()
out["mail_size_ok"] = reply(s.mail("alice@example.com", ["SIZE=10000"]))
s.rset()
# Without SIZE= the limit holds during the transfer.
del s.esmtp_features["size"]
try:
    s.sendmail("alice@example.com", ["a@example.net"], sized(20000, "undeclared"))
    out["undeclared"] = "accepted"
except smtplib.SMTPException as e:
    out["undeclared"] = failure(e)
try:
    s.sendmail("alice@example.com", ["a@example.net"], sized(10001, "one-over"))
    out["one_over"] = "accepted"
except smtplib.SMTPException as e:
    out["one_over"] = failure(e)
# The session goes on, and a message of exactly the limit fits.
out["at_limit"] = s.sendmail("alice@example.com", ["a@example.net"], sized(10000, "at-limit"))
s.quit()
"#;

#[test]
fn smtplib_message_size_limit() -> Result<()> {
    let (gw, out) = smtplib::run(
        |c| c.limits.max_message_size = 10_000,
        MESSAGE_SIZE_LIMIT_SCRIPT,
    )?;
    assert_eq!(out["size"], "10000", "{out}");
    assert_failure(&out["declared"], "SMTPSenderRefused", 552, "5.3.4");
    assert_reply(&out["mail_size"], 552, "5.3.4");
    assert_reply(&out["mail_size_ok"], 250, "2.1.0");
    assert_failure(&out["undeclared"], "SMTPDataError", 552, "5.3.4");
    assert_failure(&out["one_over"], "SMTPDataError", 552, "5.3.4");
    assert_eq!(out["at_limit"], serde_json::json!({}), "{out}");
    let queue = gw.queue()?;
    assert_eq!(
        queue.len(),
        1,
        "only the message at the limit is queued: {queue:?}"
    );
    let id = queue[0]["id"].as_str().context("id")?;
    let content = gw.message(id)?;
    assert!(contains(&content, b"\r\nSubject: at-limit\r\n"));
    Ok(())
}
