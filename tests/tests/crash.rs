//! Durability under crashes: clients keep submitting while the gateway is killed
//! with SIGKILL again and again (mid-DATA, mid-commit, right after a 250). A ledger
//! of every 250 the clients got must be fully present, intact, in the spool
//! afterwards. Messages that were made durable but whose 250 the client never saw
//! are counted as possible duplicates (the client will send them again).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postern_tests::gateway::TestGateway;
use postern_tests::ledger::submit_until;

const CLIENTS: usize = 6;
const KILLS: usize = 6;

#[test]
fn no_acknowledged_message_is_lost_across_sigkills() {
    let mut gw = TestGateway::start(|c| {
        c.relay.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
        c.log.level = "info".into();
    })
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let ledger = Arc::new(Mutex::new(HashMap::new()));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let (stop, ledger, addr) = (stop.clone(), ledger.clone(), gw.relay);
            std::thread::spawn(move || submit_until(n, addr, "r@example.net", &stop, &ledger))
        })
        .collect();
    let started = Instant::now();
    for k in 0..KILLS {
        // Irregular intervals so kills land in every phase of a transaction.
        std::thread::sleep(Duration::from_millis(400 + (k as u64 * 137) % 500));
        gw.kill9();
        std::thread::sleep(Duration::from_millis(50));
        gw.spawn().unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    // The last kill lands while clients are still sending.
    gw.kill9();
    stop.store(true, Ordering::Relaxed);
    let attempts: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    gw.spawn().unwrap();
    let ledger = ledger.lock().unwrap().clone();
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
