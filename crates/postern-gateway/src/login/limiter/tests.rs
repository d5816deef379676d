use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use std::net::IpAddr;

use super::*;

fn ip(n: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, n])
}

/// Runs one verification per `(client, digest)` at once; returns the most that ran
/// at the same time.
async fn most_at_once(limiter: Limiter, logins: Vec<(IpAddr, LoginDigest)>) -> usize {
    let limiter = Arc::new(limiter);
    let now = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = logins
        .into_iter()
        .map(|(client, digest)| {
            let (l, now, most) = (limiter.clone(), now.clone(), most.clone());
            tokio::spawn(async move {
                l.run(client, digest, move || {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(50));
                    now.fetch_sub(1, Ordering::SeqCst);
                    true
                })
                .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), Ok(true));
    }
    most.load(Ordering::SeqCst)
}

fn slow(count: Arc<AtomicUsize>, answer: bool) -> impl FnOnce() -> bool + Send + 'static {
    move || {
        count.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(200));
        answer
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_logins_with_the_same_digest_share_one_verification() {
    let limiter = Arc::new(Limiter::new(1, 10));
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let (l, r) = (limiter.clone(), runs.clone());
            tokio::spawn(async move { l.run(ip(0), [7; 32], slow(r, true)).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), Ok(true));
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "one verification for all five"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_waiting_bound_logins_are_told_to_come_back() {
    // One slot, room for two to wait: of five different logins at once, three get a
    // verification (one running, two waiting) and two are busy.
    let limiter = Arc::new(Limiter::new(1, 2));
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..5u8)
        .map(|i| {
            let (l, r) = (limiter.clone(), runs.clone());
            tokio::spawn(async move { l.run(ip(0), [i; 32], slow(r, false)).await })
        })
        .collect();
    let mut busy = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(answer) => assert!(!answer),
            Err(Busy) => busy += 1,
        }
    }
    assert!(busy >= 2, "{busy} busy");
    assert_eq!(runs.load(Ordering::SeqCst), 5 - busy);
    // The bound frees up again.
    let r = runs.clone();
    assert_eq!(limiter.run(ip(0), [9; 32], slow(r, true)).await, Ok(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_verifications_at_once_than_slots() {
    let logins = (0..8u8).map(|i| (ip(i), [i; 32])).collect();
    assert_eq!(most_at_once(Limiter::new(2, 100), logins).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_login_leaves_no_verification_to_wait_on() {
    let limiter = Arc::new(Limiter::new(1, 10));
    let runs = Arc::new(AtomicUsize::new(0));
    // Hold the only slot, queue a login, then drop it while it waits.
    let l = limiter.clone();
    let r = runs.clone();
    let holder = tokio::spawn(async move { l.run(ip(0), [1; 32], slow(r, true)).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let l = limiter.clone();
    let r = runs.clone();
    let waiting = tokio::spawn(async move { l.run(ip(0), [2; 32], slow(r, true)).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    waiting.abort();
    assert_eq!(holder.await.unwrap(), Ok(true));
    // The same login again is verified, not stuck behind the dropped one.
    let r = runs.clone();
    let again = tokio::time::timeout(
        Duration::from_secs(5),
        limiter.run(ip(0), [2; 32], slow(r, true)),
    );
    assert_eq!(again.await.expect("not stuck"), Ok(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_verification_at_a_time_per_client() {
    // Four logins from one IPv6 /64 (different addresses in it), with four slots free.
    let logins = (1..=4u8)
        .map(|i| (format!("2001:db8::{i}").parse().unwrap(), [i; 32]))
        .collect();
    assert_eq!(most_at_once(Limiter::new(4, 100), logins).await, 1);
    assert_eq!(
        client_key("2001:db8::1:2:3:4".parse().unwrap()),
        "2001:db8::".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        client_key("::ffff:192.0.2.9".parse().unwrap()),
        IpAddr::from([192, 0, 2, 9])
    );
}
