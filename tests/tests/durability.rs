//! Durability under crashes: clients keep submitting while the gateway is killed with
//! SIGKILL again and again (mid-DATA, mid-commit, right after a 250, mid-delivery).
//!
//! - Accepting: a ledger of every 250 the clients got must be fully present, intact,
//!   in the spool afterwards. Messages that were made durable but whose 250 the client
//!   never saw are counted as possible duplicates (the client will send them again).
//! - Delivering: clients submit a few thousand messages to an MX destination (smtp-sink
//!   dumping every transaction to a file); afterwards every message a client got a 250
//!   for must have reached it; duplicates (delivered, then killed before the queue
//!   recorded it) are counted and reported, as at-least-once delivery allows.
//!
//! The two scenarios load both cores and time their kills: they run one at a time.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postern_config::DeliveryMode;
use postern_tests::dns::{Record, TestDns};
use postern_tests::gateway::{TestGateway, trust_loopback};
use postern_tests::ledger::{Ledger, submit_until};
use postern_tests::peers::scratch_dir;
use postern_tests::postfix::SmtpSink;
use postern_tests::wait::eventually;

/// Submitting clients of the accept scenario, and the kills.
const CLIENTS: usize = 6;
const KILLS: usize = 6;
/// Submitting clients of the delivery scenario.
const DELIVERY_CLIENTS: usize = 4;
/// Acknowledged messages to aim for, and the time allowed to get there.
const TARGET: usize = 2000;
const MAX_TIME: Duration = Duration::from_secs(90);

/// Held by a scenario for its whole run.
fn serial() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// SIGKILL, and a restart (on the same ports) a moment later.
fn crash_and_restart(gw: &mut TestGateway) {
    gw.kill9();
    std::thread::sleep(Duration::from_millis(50));
    gw.spawn().unwrap();
}

/// Client threads submitting with [`submit_until`] to `addr` until stopped.
struct Clients {
    stop: Arc<AtomicBool>,
    ledger: Ledger,
    threads: Vec<JoinHandle<usize>>,
}

impl Clients {
    fn start(n: usize, addr: SocketAddr, to: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ledger: Ledger = Arc::new(Mutex::new(HashMap::new()));
        let threads = (0..n)
            .map(|n| {
                let (stop, ledger) = (stop.clone(), ledger.clone());
                std::thread::spawn(move || submit_until(n, addr, to, &stop, &ledger))
            })
            .collect();
        Self {
            stop,
            ledger,
            threads,
        }
    }

    /// Messages acknowledged so far.
    fn acknowledged(&self) -> usize {
        self.ledger.lock().unwrap().len()
    }

    /// Stops the clients; the submissions they tried, and the ledger (queue ID →
    /// token of every acknowledged message).
    fn stop(self) -> (usize, HashMap<String, String>) {
        self.stop.store(true, Ordering::Relaxed);
        let attempts = self.threads.into_iter().map(|t| t.join().unwrap()).sum();
        let ledger = self.ledger.lock().unwrap().clone();
        (attempts, ledger)
    }
}

#[test]
fn no_acknowledged_message_is_lost_across_sigkills() {
    let mut gw = TestGateway::start(|c| {
        trust_loopback(c);
        c.log.level = "info".into();
    })
    .unwrap();
    let _one_at_a_time = serial();
    let clients = Clients::start(CLIENTS, gw.relay, "r@example.net");
    let started = Instant::now();
    for k in 0..KILLS {
        // Irregular intervals so kills land in every phase of a transaction.
        std::thread::sleep(Duration::from_millis(400 + (k as u64 * 137) % 500));
        crash_and_restart(&mut gw);
    }
    std::thread::sleep(Duration::from_millis(500));
    // The last kill lands while clients are still sending.
    gw.kill9();
    let (attempts, ledger) = clients.stop();
    gw.spawn().unwrap();
    let queue = gw.queue().unwrap();
    let queued: HashMap<String, serde_json::Value> = queue
        .iter()
        .map(|m| (m["id"].as_str().unwrap().to_owned(), m.clone()))
        .collect();
    assert!(
        ledger.len() > 200,
        "too few messages to mean anything: {} in {:?}",
        ledger.len(),
        started.elapsed()
    );
    let mut lost = Vec::new();
    for (id, token) in &ledger {
        if !queued.contains_key(id) {
            lost.push(id.clone());
            continue;
        }
        // Content intact: the token on every line we sent (spot-check a sample).
        if id.ends_with('0') {
            let body = String::from_utf8(gw.message(id).unwrap()).unwrap();
            assert!(
                body.contains(&format!("Subject: {token}\r\n")),
                "{id}: wrong content"
            );
        }
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    // Every file left in the spool is a complete message (partials were removed).
    let files = std::fs::read_dir(gw.config.spool.directory.join("messages"))
        .unwrap()
        .count();
    assert_eq!(files, queue.len(), "partial files left in the spool");
    let unacknowledged = queue.len() - ledger.len();
    eprintln!(
        "crash test: {attempts} attempts, {} acknowledged, {} queued, {unacknowledged} durable without a 250 seen (would be resent: duplicates), {KILLS}+1 kills",
        ledger.len(),
        queue.len()
    );
}

#[test]
fn every_acknowledged_message_is_delivered_across_sigkills() {
    let _one_at_a_time = serial();
    let mx_ip = Ipv4Addr::new(127, 0, 30, 2);
    let dns = TestDns::start(&[
        Record::mx("dest.test", 10, "mx.dest.test"),
        Record::a("mx.dest.test", mx_ip),
    ])
    .unwrap();
    let dir = scratch_dir("crash-sink-").unwrap();
    // smtp-sink runs as the postfix user and must be able to write its dump.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let dump = dir.path().join("dump");
    let sink = SmtpSink::start(
        SocketAddr::new(IpAddr::V4(mx_ip), 25),
        &["-D", dump.to_str().unwrap()],
    )
    .unwrap();
    let mut gw = TestGateway::start(|c| {
        trust_loopback(c);
        c.delivery.mode = DeliveryMode::Mx;
        c.delivery.dns.nameservers = vec![dns.addr()];
        c.delivery.retry.initial = Duration::from_secs(1);
        c.delivery.retry.max = Duration::from_secs(1);
        c.log.level = "info".into();
    })
    .unwrap();
    let clients = Clients::start(DELIVERY_CLIENTS, gw.relay, "user@dest.test");
    let started = Instant::now();
    let mut kills = 0u64;
    while kills < 5 || (clients.acknowledged() < TARGET && started.elapsed() < MAX_TIME) {
        // Irregular intervals so kills land in every phase of accept and delivery.
        std::thread::sleep(Duration::from_millis(700 + (kills * 211) % 600));
        crash_and_restart(&mut gw);
        kills += 1;
    }
    std::thread::sleep(Duration::from_millis(700));
    gw.kill9();
    let (attempts, ledger) = clients.stop();
    gw.spawn().unwrap();
    eventually("the queue to drain", Duration::from_secs(120), || {
        gw.queue().unwrap().is_empty()
    });
    // Every transaction smtp-sink took is in the dump; count each token's copies.
    std::thread::sleep(Duration::from_millis(500));
    let dumped = std::fs::read_to_string(&dump).unwrap_or_default();
    let mut received: HashMap<&str, usize> = HashMap::new();
    for line in dumped.lines() {
        if let Some(token) = line.strip_prefix("Subject: ") {
            *received.entry(token.trim()).or_default() += 1;
        }
    }
    assert!(
        ledger.len() >= 1000,
        "too few acknowledged messages to mean anything: {}",
        ledger.len()
    );
    let lost: Vec<&String> = ledger
        .values()
        .filter(|t| !received.contains_key(t.as_str()))
        .collect();
    let duplicates: usize = received.values().map(|c| c - 1).sum();
    let unacknowledged = received
        .keys()
        .filter(|t| !ledger.values().any(|l| l == *t))
        .count();
    eprintln!(
        "delivery crash test: {attempts} attempts, {} acknowledged, {} distinct received, {duplicates} duplicates, \
         {unacknowledged} received without a 250 seen, {} sink messages, {kills}+1 kills",
        ledger.len(),
        received.len(),
        sink.messages()
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged messages never delivered, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}
