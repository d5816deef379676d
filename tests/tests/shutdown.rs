//! Graceful shutdown on SIGTERM: idle sessions are told 421 4.3.2 and closed, no new
//! session is admitted, an open transaction may finish (and what it sent is queued
//! durably, found again after a restart), and the grace period bounds the wait.

use std::net::SocketAddr;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use postern_tests::gateway::{PASSWORD, TestGateway, USER, trust_loopback};
use postern_tests::reply::{expect, queue_id};
use postern_tests::smtp::Smtp;

/// The shutdown notice: 421 4.3.2, then the server closes the connection.
#[track_caller]
fn expect_shutdown_notice(s: &mut Smtp) {
    match s.reply() {
        Ok(r) => {
            expect(&r, 421, "4.3.2");
            assert!(r.text.contains("shutting down"), "{:?}", r.text);
        }
        Err(e) => panic!("expected 421 4.3.2, got {e:#}"),
    }
    assert!(s.closed(), "connection left open after 421");
}

/// Connects in plain text, retrying a 421 for a moment (a session the test just
/// closed may still hold its slot), and says EHLO.
fn session(addr: SocketAddr) -> Result<Smtp> {
    let mut s = Smtp::connect_admitted(addr)?;
    s.ehlo()?;
    Ok(s)
}

/// An authenticated implicit-TLS session.
fn submission(gw: &TestGateway) -> Result<Smtp> {
    let (mut s, greeting) = Smtp::connect_tls(gw.submissions)?;
    assert_eq!(greeting.code, 220, "{:?}", greeting.text);
    assert_eq!(s.cmd("EHLO client.test")?.code, 250);
    expect(&s.auth_plain(USER, PASSWORD)?, 235, "2.7.0");
    Ok(s)
}

/// Asserts that no new session is admitted on `addr`: the connection is refused,
/// or closed without a greeting, or greeted with 421.
#[track_caller]
fn assert_not_admitted(addr: SocketAddr, tls: bool) {
    let attempt = if tls {
        Smtp::connect_tls(addr)
    } else {
        Smtp::connect(addr)
    };
    if let Ok((_, greeting)) = attempt {
        assert_eq!(
            greeting.code, 421,
            "admitted after SIGTERM: {:?}",
            greeting.text
        );
    }
}

const BODY_HEAD: &[u8] = b"Subject: in flight\r\n\r\nfirst half of the body\r\n";
const BODY_TAIL: &[u8] = b"second half, sent after SIGTERM\r\n";

#[test]
fn idle_sessions_get_421_and_the_process_exits() -> Result<()> {
    let mut gw = TestGateway::start(|_| {})?;
    let mut plain = session(gw.submission)?;
    let mut relay = session(gw.relay)?;
    let mut tls = submission(&gw)?;
    // After a finished transaction a session is idle again.
    expect(&tls.cmd("MAIL FROM:<alice@example.com>")?, 250, "2.1.0");
    expect(&tls.cmd("RSET")?, 250, "2.0.0");
    let started = Instant::now();
    assert!(
        gw.terminate(Duration::from_secs(10)),
        "gateway did not exit"
    );
    // Idle sessions do not hold the process for the grace period (30 s by default).
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "exit took {:?}",
        started.elapsed()
    );
    for s in [&mut plain, &mut relay, &mut tls] {
        expect_shutdown_notice(s);
    }
    let log = gw.log();
    assert!(log.contains("all sessions finished"), "{log}");
    assert!(log.contains("end=\"shutdown\""), "{log}");
    Ok(())
}

#[test]
fn auth_exchange_does_not_hold_up_shutdown() -> Result<()> {
    // The default grace period (30 s) is for open transactions; a client that
    // stops halfway through AUTH is between transactions and leaves at once.
    let mut gw = TestGateway::start(|_| {})?;
    let (mut s, greeting) = Smtp::connect_tls(gw.submissions)?;
    assert_eq!(greeting.code, 220, "{:?}", greeting.text);
    assert_eq!(s.cmd("EHLO client.test")?.code, 250);
    assert_eq!(s.cmd("AUTH LOGIN")?.text, "334 VXNlcm5hbWU6");
    let started = Instant::now();
    assert!(
        gw.terminate(Duration::from_secs(40)),
        "gateway did not exit"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "exit took {:?}",
        started.elapsed()
    );
    expect_shutdown_notice(&mut s);
    Ok(())
}

#[test]
fn transfer_in_progress_finishes_and_is_queued() -> Result<()> {
    let mut gw = TestGateway::start(|c| c.timeouts.shutdown_grace = Duration::from_secs(10))?;
    let (submission_addr, relay_addr, submissions_addr) = (gw.submission, gw.relay, gw.submissions);
    let mut busy = submission(&gw)?;
    expect(&busy.cmd("MAIL FROM:<alice@example.com>")?, 250, "2.1.0");
    expect(&busy.cmd("RCPT TO:<one@example.net>")?, 250, "2.1.5");
    expect(&busy.cmd("RCPT TO:<two@example.net>")?, 250, "2.1.5");
    assert_eq!(busy.cmd("DATA")?.code, 354);
    busy.send(BODY_HEAD)?;
    let mut idle = session(gw.submission)?;

    let (exited, took, id) = std::thread::scope(|scope| -> Result<(bool, Duration, String)> {
        let started = Instant::now();
        let terminating = scope.spawn(|| gw.terminate(Duration::from_secs(15)));
        // The idle session hears of the shutdown first: it has begun.
        expect_shutdown_notice(&mut idle);
        sleep(Duration::from_millis(200));
        // No new sessions, on any listener.
        assert_not_admitted(submission_addr, false);
        assert_not_admitted(relay_addr, false);
        assert_not_admitted(submissions_addr, true);
        // The transfer goes on and its message is accepted.
        busy.send(BODY_TAIL)?;
        busy.send(b".\r\n")?;
        let id = queue_id(&busy.reply()?);
        // Then that session is idle, and leaves like the others.
        expect_shutdown_notice(&mut busy);
        let exited = terminating
            .join()
            .map_err(|_| anyhow::anyhow!("terminate panicked"))?;
        Ok((exited, started.elapsed(), id))
    })?;
    assert!(exited, "gateway did not exit");
    // It left when the last session ended, not at the end of the grace period.
    assert!(took < Duration::from_secs(8), "exit took {took:?}");

    // The message is in the spool, and a restarted gateway finds it there.
    gw.spawn()?;
    let log = gw.log();
    let scanned = log
        .lines()
        .rfind(|l| l.contains("spool scanned"))
        .context("no spool scan logged")?;
    assert!(scanned.contains("messages=1"), "{scanned}");
    let queue = gw.queue()?;
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(queue[0]["id"].as_str(), Some(id.as_str()));
    assert_eq!(
        queue[0]["recipients"],
        serde_json::json!(["one@example.net", "two@example.net"])
    );
    assert_eq!(queue[0]["auth_user"], "alice");
    let content = gw.message(&id)?;
    assert!(content.ends_with(&[BODY_HEAD, BODY_TAIL].concat()));
    // And the restarted gateway serves again.
    let mut s = submission(&gw)?;
    expect(&s.cmd("NOOP")?, 250, "2.0.0");
    Ok(())
}

#[test]
fn new_connections_are_refused_while_a_transaction_finishes() -> Result<()> {
    let mut gw = TestGateway::start(|c| {
        c.timeouts.shutdown_grace = Duration::from_secs(10);
        trust_loopback(c);
    })?;
    let (submission_addr, relay_addr, submissions_addr) = (gw.submission, gw.relay, gw.submissions);
    let pid = gw.pid().context("pid")?;
    // A transaction open (MAIL and RCPT given) but no DATA yet.
    let mut open = session(gw.relay)?;
    expect(&open.cmd("MAIL FROM:<app@example.com>")?, 250, "2.1.0");
    expect(&open.cmd("RCPT TO:<someone@example.net>")?, 250, "2.1.5");
    let mut idle = session(gw.relay)?;

    let exited = std::thread::scope(|scope| -> Result<bool> {
        let terminating = scope.spawn(|| gw.terminate(Duration::from_secs(15)));
        expect_shutdown_notice(&mut idle);
        sleep(Duration::from_millis(200));
        // The process is still there (the transaction holds it) ...
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        // ... and admits no one, several times over.
        for _ in 0..3 {
            assert_not_admitted(relay_addr, false);
            assert_not_admitted(submission_addr, false);
            assert_not_admitted(submissions_addr, true);
            sleep(Duration::from_millis(100));
        }
        // The open transaction may still send its message.
        assert_eq!(open.cmd("DATA")?.code, 354);
        open.send(b"Subject: late\r\n\r\nlate but welcome\r\n.\r\n")?;
        expect(&open.reply()?, 250, "2.0.0");
        expect_shutdown_notice(&mut open);
        terminating
            .join()
            .map_err(|_| anyhow::anyhow!("terminate panicked"))
    })?;
    assert!(exited, "gateway did not exit");
    assert_eq!(gw.queue()?.len(), 1);
    Ok(())
}

#[test]
fn grace_period_bounds_a_stalled_transfer() -> Result<()> {
    let mut gw = TestGateway::start(|c| c.timeouts.shutdown_grace = Duration::from_secs(1))?;
    let mut stalled = submission(&gw)?;
    expect(&stalled.cmd("MAIL FROM:<alice@example.com>")?, 250, "2.1.0");
    expect(&stalled.cmd("RCPT TO:<one@example.net>")?, 250, "2.1.5");
    assert_eq!(stalled.cmd("DATA")?.code, 354);
    stalled.send(BODY_HEAD)?;
    let started = Instant::now();
    assert!(
        gw.terminate(Duration::from_secs(10)),
        "gateway did not exit"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "exit took {took:?} with a 1 s grace period"
    );
    assert!(gw.log().contains("shutdown grace period over"));
    // The half-sent message was never accepted, and is not queued after a restart.
    assert!(
        stalled.reply().is_err(),
        "no reply to an unfinished message"
    );
    gw.spawn()?;
    assert!(gw.queue()?.is_empty(), "{:?}", gw.queue()?);
    Ok(())
}
