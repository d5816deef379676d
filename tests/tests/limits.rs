//! The gateway's bounds, seen from the wire with the byte-exact client: concurrent
//! sessions (in total and per client IP), the command timeout, AUTH brute-force
//! delays and blocks, recipients per message, errors per session, line lengths and
//! NUL, and the relay rule of the relay listener.

use std::net::SocketAddr;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use postern_tests::gateway::{PASSWORD, TestGateway, USER};
use postern_tests::smtp::{Smtp, SmtpReply};

/// Asserts the code and the enhanced status code of a reply's last line.
#[track_caller]
fn expect(r: &SmtpReply, code: u16, enhanced: &str) {
    assert_eq!(r.code, code, "reply {:?}", r.text);
    let prefix = format!("{code} {enhanced} ");
    assert!(
        r.last_line().starts_with(&prefix),
        "reply {:?} should start with {prefix:?}",
        r.text
    );
}

/// Connects in plain text and expects to be admitted. Retries a 421 for a few
/// seconds: sessions that just ended (the harness's readiness probes, a session the
/// test closed) leave their slot a moment later.
fn connect_admitted(addr: SocketAddr) -> Result<Smtp> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (s, greeting) = Smtp::connect(addr)?;
        if greeting.code == 220 {
            return Ok(s);
        }
        if greeting.code != 421 || Instant::now() > deadline {
            bail!("not admitted on {addr}: {:?}", greeting.text);
        }
        sleep(Duration::from_millis(50));
    }
}

/// Like [`connect_admitted`] for implicit TLS (a refused client gets no TLS at all).
fn connect_tls_admitted(addr: SocketAddr) -> Result<Smtp> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Smtp::connect_tls(addr) {
            Ok((s, greeting)) => {
                assert_eq!(greeting.code, 220, "{:?}", greeting.text);
                return Ok(s);
            }
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => sleep(Duration::from_millis(50)),
        }
    }
}

fn ehlo(s: &mut Smtp) -> Result<SmtpReply> {
    let r = s.cmd("EHLO client.test")?;
    assert_eq!(r.code, 250, "{:?}", r.text);
    Ok(r)
}

fn plain(user: &str, password: &str) -> String {
    B64.encode(format!("\0{user}\0{password}"))
}

/// Sends one message in an open session and returns the reply to its end.
fn send_message(s: &mut Smtp, from: &str, rcpts: &[&str], body: &str) -> Result<SmtpReply> {
    expect(&s.cmd(&format!("MAIL FROM:<{from}>"))?, 250, "2.1.0");
    for r in rcpts {
        expect(&s.cmd(&format!("RCPT TO:<{r}>"))?, 250, "2.1.5");
    }
    let r = s.cmd("DATA")?;
    assert_eq!(r.code, 354, "{:?}", r.text);
    s.send(format!("Subject: test\r\n\r\n{body}\r\n.\r\n").as_bytes())?;
    s.reply()
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
    let mut a = connect_admitted(gw.submission)?;
    let mut b = connect_admitted(gw.relay)?;
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
    let mut c = connect_tls_admitted(gw.submissions)?;
    ehlo(&mut c)?;
    assert_refused(gw.submission, "too many connections from your address");
    expect(&b.cmd("NOOP")?, 250, "2.0.0");
    Ok(())
}

#[test]
fn sessions_in_total() -> Result<()> {
    let gw = TestGateway::start(|c| c.limits.max_sessions = 3)?;
    let mut a = connect_admitted(gw.relay)?;
    let mut b = connect_admitted(gw.submission)?;
    let mut c = connect_tls_admitted(gw.submissions)?;
    assert_refused(gw.relay, "too many connections; try again later");
    assert_refused(gw.submission, "too many connections; try again later");
    assert!(Smtp::connect_tls(gw.submissions).is_err());
    for s in [&mut a, &mut b, &mut c] {
        expect(&s.cmd("NOOP")?, 250, "2.0.0");
    }
    // A client that just goes away frees its slot too.
    drop(b);
    let mut d = connect_admitted(gw.submission)?;
    expect(&d.cmd("NOOP")?, 250, "2.0.0");
    assert_refused(gw.relay, "too many connections; try again later");
    Ok(())
}

#[test]
fn idle_session_times_out() -> Result<()> {
    let gw = TestGateway::start(|c| c.timeouts.command = Duration::from_secs(1))?;
    let mut s = connect_admitted(gw.submission)?;
    ehlo(&mut s)?;
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
        c.relay.trusted_networks = vec!["127.0.0.0/8".parse().expect("network")];
    })?;
    let mut s = connect_admitted(gw.relay)?;
    ehlo(&mut s)?;
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
    let mut s = connect_tls_admitted(gw.submissions)?;
    ehlo(&mut s)?;
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
    let mut a = connect_tls_admitted(gw.submissions)?;
    ehlo(&mut a)?;
    expect(
        &a.cmd(&format!("AUTH PLAIN {}", plain(USER, "wrong")))?,
        535,
        "5.7.8",
    );
    expect(&a.cmd("QUIT")?, 221, "2.0.0");
    drop(a);

    // Second failure, on a new connection and with LOGIN: still delayed.
    let mut b = connect_tls_admitted(gw.submissions)?;
    ehlo(&mut b)?;
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
    let mut c = connect_tls_admitted(gw.submissions)?;
    ehlo(&mut c)?;
    let r = c.cmd(&format!("AUTH PLAIN {}", plain("nobody", "wrong")))?;
    expect(&r, 421, "4.7.0");
    assert!(c.closed());
    assert_blocked(&gw);
    // The session that authenticated before the block goes on.
    let r = send_message(
        &mut b,
        "alice@example.com",
        &["x@example.net"],
        "still here",
    )?;
    expect(&r, 250, "2.0.0");
    Ok(())
}

#[test]
fn block_reaches_sessions_opened_before_it() -> Result<()> {
    let gw = TestGateway::start(brute_force_config)?;
    // Sessions opened before the block: one idle, one halfway through AUTH LOGIN.
    let mut early = connect_tls_admitted(gw.submissions)?;
    ehlo(&mut early)?;
    let mut halfway = connect_tls_admitted(gw.submissions)?;
    ehlo(&mut halfway)?;
    assert_eq!(halfway.cmd("AUTH LOGIN")?.text, "334 VXNlcm5hbWU6");
    assert_eq!(halfway.cmd(&B64.encode(USER))?.text, "334 UGFzc3dvcmQ6");
    // Three failures from a third session block the address.
    let mut s = connect_tls_admitted(gw.submissions)?;
    ehlo(&mut s)?;
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
    let mut s = connect_tls_admitted(gw.submissions)?;
    ehlo(&mut s)?;
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
    let mut s = connect_admitted(gw.submission)?;
    ehlo(&mut s)?;
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
    let mut s = connect_admitted(gw.submission)?;
    ehlo(&mut s)?;
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
    let gw = TestGateway::start(|c| {
        c.relay.trusted_networks = vec!["127.0.0.0/8".parse().expect("network")];
    })?;
    let mut s = connect_admitted(gw.relay)?;
    ehlo(&mut s)?;
    // 1001 octets with CRLF: one too many (RFC 5321 4.5.3.1.6).
    let r = send_message(
        &mut s,
        "app@example.com",
        &["x@example.net"],
        &"y".repeat(999),
    )?;
    expect(&r, 500, "5.5.2");
    assert!(r.text.contains("longer than 1000 octets"), "{:?}", r.text);
    assert!(gw.queue()?.is_empty());
    // The session goes on, and 1000 octets with CRLF is fine.
    expect(&s.cmd("NOOP")?, 250, "2.0.0");
    let r = send_message(
        &mut s,
        "app@example.com",
        &["x@example.net"],
        &"z".repeat(998),
    )?;
    expect(&r, 250, "2.0.0");
    let ids = gw.queued_ids()?;
    assert_eq!(ids.len(), 1);
    let content = gw.message(&ids[0])?;
    let line = [b"\r\n".as_slice(), &[b'z'; 998], b"\r\n"].concat();
    assert!(content.ends_with(&line));
    Ok(())
}

#[test]
fn relay_denied_without_trusted_networks() -> Result<()> {
    let gw = TestGateway::start(|_| {})?;
    let mut s = connect_admitted(gw.relay)?;
    let r = ehlo(&mut s)?;
    assert!(!r.text.contains("AUTH"), "no AUTH before TLS: {:?}", r.text);
    expect(&s.cmd("MAIL FROM:<app@example.com>")?, 250, "2.1.0");
    let r = s.cmd("RCPT TO:<someone@example.net>")?;
    expect(&r, 554, "5.7.1");
    assert!(
        r.last_line()
            .ends_with("<someone@example.net>: Relay access denied"),
        "{:?}",
        r.text
    );
    let r = s.cmd("DATA")?;
    expect(&r, 554, "5.5.1");
    assert!(gw.queue()?.is_empty());
    Ok(())
}

#[test]
fn relay_allowed_from_trusted_network() -> Result<()> {
    let gw = TestGateway::start(|c| {
        c.relay.trusted_networks = vec!["127.0.0.0/8".parse().expect("network")];
    })?;
    let mut s = connect_admitted(gw.relay)?;
    ehlo(&mut s)?;
    let r = send_message(
        &mut s,
        "app@anywhere.example",
        &["someone@example.net"],
        "trusted",
    )?;
    expect(&r, 250, "2.0.0");
    expect(&s.cmd("QUIT")?, 221, "2.0.0");
    let queue = gw.queue()?;
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(queue[0]["sender"], "app@anywhere.example");
    assert_eq!(queue[0]["auth_user"], serde_json::Value::Null);
    let id = queue[0]["id"].as_str().context("id")?;
    let content = String::from_utf8(gw.message(id)?)?;
    assert!(
        content.contains(&format!("with ESMTP id {id}")),
        "{content}"
    );
    // Trust is for the relay listener only: submission still wants TLS and AUTH.
    let mut sub = connect_admitted(gw.submission)?;
    ehlo(&mut sub)?;
    expect(&sub.cmd("MAIL FROM:<app@example.com>")?, 530, "5.7.0");
    Ok(())
}

#[test]
fn relay_after_starttls_and_auth() -> Result<()> {
    let gw = TestGateway::start(|_| {})?;
    let mut s = connect_admitted(gw.relay)?;
    let r = ehlo(&mut s)?;
    assert!(r.text.contains("STARTTLS"), "{:?}", r.text);
    expect(&s.cmd("STARTTLS")?, 220, "2.0.0");
    let mut s = s.upgrade()?;
    let r = ehlo(&mut s)?;
    assert!(r.text.contains("250-AUTH PLAIN LOGIN") || r.text.contains("250 AUTH PLAIN LOGIN"));
    // TLS alone does not make a client trusted.
    expect(&s.cmd("MAIL FROM:<alice@example.com>")?, 250, "2.1.0");
    expect(&s.cmd("RCPT TO:<someone@example.net>")?, 554, "5.7.1");
    expect(&s.cmd("RSET")?, 250, "2.0.0");
    expect(
        &s.cmd(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)))?,
        235,
        "2.7.0",
    );
    // Authenticated, the user's sender rules apply here too.
    expect(&s.cmd("MAIL FROM:<x@other.example>")?, 553, "5.7.1");
    let r = send_message(
        &mut s,
        "alice@example.com",
        &["someone@example.net"],
        "relayed",
    )?;
    expect(&r, 250, "2.0.0");
    let queue = gw.queue()?;
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(queue[0]["auth_user"], "alice");
    let id = queue[0]["id"].as_str().context("id")?;
    let content = String::from_utf8(gw.message(id)?)?;
    assert!(
        content.contains(&format!("with ESMTPSA id {id}")),
        "{content}"
    );
    Ok(())
}
