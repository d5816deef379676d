//! Durability through delivery: clients submit a few thousand messages to an MX
//! destination while the gateway is SIGKILLed again and again. Afterwards every
//! message a client got a 250 for must have reached the receiving server (smtp-sink
//! dumping every transaction to a file); duplicates (delivered, then killed before the
//! queue recorded it) are counted and reported, as at-least-once delivery allows.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postern_config::DeliveryMode;
use postern_tests::dns::{Record, TestDns};
use postern_tests::gateway::TestGateway;
use postern_tests::ledger::submit_until;
use postern_tests::postfix::{SmtpSink, scratch_dir};

const CLIENTS: usize = 4;
/// Acknowledged messages to aim for, and the time allowed to get there.
const TARGET: usize = 2000;
const MAX_TIME: Duration = Duration::from_secs(90);

#[test]
fn every_acknowledged_message_is_delivered_across_sigkills() {
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
        c.relay.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
        c.delivery.mode = DeliveryMode::Mx;
        c.delivery.dns.nameservers = vec![dns.addr()];
        c.delivery.retry.initial = Duration::from_secs(1);
        c.delivery.retry.max = Duration::from_secs(1);
        c.log.level = "info".into();
    })
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let ledger = Arc::new(Mutex::new(HashMap::new()));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let (stop, ledger, addr) = (stop.clone(), ledger.clone(), gw.relay);
            std::thread::spawn(move || submit_until(n, addr, "user@dest.test", &stop, &ledger))
        })
        .collect();
    let started = Instant::now();
    let mut kills = 0u64;
    while kills < 5 || (ledger.lock().unwrap().len() < TARGET && started.elapsed() < MAX_TIME) {
        // Irregular intervals so kills land in every phase of accept and delivery.
        std::thread::sleep(Duration::from_millis(700 + (kills * 211) % 600));
        gw.kill9();
        kills += 1;
        std::thread::sleep(Duration::from_millis(50));
        gw.spawn().unwrap();
    }
    std::thread::sleep(Duration::from_millis(700));
    gw.kill9();
    stop.store(true, Ordering::Relaxed);
    let attempts: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    gw.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !gw.queue().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "queue did not drain: {} left",
            gw.queue().unwrap().len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every transaction smtp-sink took is in the dump; count each token's copies.
    std::thread::sleep(Duration::from_millis(500));
    let dumped = std::fs::read_to_string(&dump).unwrap_or_default();
    let mut received: HashMap<&str, usize> = HashMap::new();
    for line in dumped.lines() {
        if let Some(token) = line.strip_prefix("Subject: ") {
            *received.entry(token.trim()).or_default() += 1;
        }
    }
    let ledger = ledger.lock().unwrap().clone();
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
