//! Logins under load, black-box: a flood of failing logins queues for the bounded
//! password verification while a client whose login was verified before is answered
//! from the cache at once; past the waiting bound AUTH says `454 4.7.0` (try later)
//! instead of queueing without end. The bounds themselves are unit-tested in
//! `crates/postern-gateway/src/login/`.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use postern_tests::gateway::{PASSWORD, TestGateway, USER};
use postern_tests::smtp::{Smtp, plain};

/// Room for a flood from one address: the brute-force and session limits would
/// otherwise refuse it before it reaches the verification bound.
fn flood_config(c: &mut postern_config::GatewayConfig) {
    c.auth.block_after_failures = 100_000;
    c.auth.delay_after_failures = 100_000;
    c.limits.max_sessions = 1_000;
    c.limits.max_sessions_per_ip = 1_000;
    c.auth.max_concurrent_verifications = 1;
}

/// `n` logins with distinct wrong passwords, all sent at the same moment; returns
/// their reply codes.
fn failing_logins(gw: &TestGateway, n: usize) -> Vec<std::thread::JoinHandle<u16>> {
    let start = Arc::new(Barrier::new(n));
    (0..n)
        .map(|i| {
            let (addr, start) = (gw.submissions, start.clone());
            std::thread::spawn(move || {
                let (mut s, greeting) = Smtp::connect_tls(addr).unwrap();
                assert_eq!(greeting.code, 220);
                s.cmd("EHLO flood.test").unwrap();
                start.wait();
                let r = s.cmd(&format!("AUTH PLAIN {}", plain(USER, &format!("wrong{i}"))));
                r.map(|r| r.code).unwrap_or(0)
            })
        })
        .collect()
}

#[test]
fn a_cached_login_is_answered_while_failing_logins_queue() {
    let gw = TestGateway::start(|c| {
        flood_config(c);
        c.auth.max_waiting_verifications = 1_000;
    })
    .unwrap();
    // One verified login puts the user in the cache.
    let (mut s, _) = Smtp::connect_tls(gw.submissions).unwrap();
    s.cmd("EHLO app.test").unwrap();
    assert_eq!(
        s.cmd(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)))
            .unwrap()
            .code,
        235
    );
    drop(s);
    // 200 failing logins, verified one at a time: seconds of hashing queue up.
    let flood = failing_logins(&gw, 200);
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let (mut s, _) = Smtp::connect_tls(gw.submissions).unwrap();
    s.cmd("EHLO app.test").unwrap();
    let r = s
        .cmd(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)))
        .unwrap();
    let took = started.elapsed();
    assert_eq!(r.code, 235, "{}", r.text);
    assert!(
        took < Duration::from_secs(5),
        "the cached login took {took:?}"
    );
    let codes: Vec<u16> = flood.into_iter().map(|t| t.join().unwrap()).collect();
    // Every failing login still got its answer (none waits forever, none succeeds).
    assert!(codes.iter().all(|&c| c == 535), "{codes:?}");
}

#[test]
fn past_the_waiting_bound_auth_says_try_later() {
    let gw = TestGateway::start(|c| {
        flood_config(c);
        c.auth.max_waiting_verifications = 5;
    })
    .unwrap();
    let codes: Vec<u16> = failing_logins(&gw, 40)
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let busy = codes.iter().filter(|&&c| c == 454).count();
    let failed = codes.iter().filter(|&&c| c == 535).count();
    assert_eq!(busy + failed, codes.len(), "{codes:?}");
    assert!(busy > 0, "no 454 with 40 logins and room for 5: {codes:?}");
    assert!(failed >= 5, "{codes:?}");
    // The gateway says so in its metrics.
    let metrics = gw.scrape().unwrap();
    assert!(
        metrics.contains("postern_auth_attempts_total{mechanism=\"PLAIN\",result=\"busy\"}"),
        "{metrics}"
    );
}

/// Every failed AUTH takes at least `auth.failure_reply_time`, whatever was wrong: an
/// unknown user, a wrong password for an argon2id user, one for a bcrypt user. (A
/// lower bound each: the point is that none of them answers sooner.)
#[test]
fn failures_take_the_same_minimum_time_whatever_the_hash() {
    use postern_tests::gateway::BCRYPT_USER;
    let floor = Duration::from_millis(800);
    let gw = TestGateway::start(|c| {
        c.auth.failure_reply_time = floor;
        c.auth.block_after_failures = 100;
        c.auth.delay_after_failures = 100;
    })
    .unwrap();
    for (user, what) in [
        ("nobody", "an unknown user"),
        (USER, "an argon2id user"),
        (BCRYPT_USER, "a bcrypt user"),
    ] {
        let (mut s, _) = Smtp::connect_tls(gw.submissions).unwrap();
        s.cmd("EHLO timing.test").unwrap();
        let started = Instant::now();
        let r = s
            .cmd(&format!("AUTH PLAIN {}", plain(user, "not the password")))
            .unwrap();
        let took = started.elapsed();
        assert_eq!(r.code, 535, "{what}: {}", r.text);
        assert!(took >= floor, "{what} was answered after {took:?}");
    }
}
