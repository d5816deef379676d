//! The queue commands a mail admin uses, against a running gateway: `queue list`
//! shows delivery state, `queue delete` removes a message (like `postsuper -d`), and
//! `queue flush` retries deferred mail now (like `postqueue -f`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use postern_config::DeliveryMode;
use postern_tests::dns::{Record, TestDns};
use postern_tests::gateway::{TestGateway, gateway_bin, trust_loopback};
use postern_tests::postfix::SmtpSink;
use postern_tests::wait::eventually;

fn queue_cmd(gw: &TestGateway, args: &[&str]) -> String {
    let out = Command::new(gateway_bin())
        .arg("queue")
        .arg(args[0])
        .arg("--config")
        .arg(&gw.config_path)
        .args(&args[1..])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn delete_removes_a_message_from_a_running_gateway() {
    let gw = TestGateway::start(trust_loopback).unwrap();
    let a = gw.submit(
        "app@example.com",
        "x@example.net",
        "Subject: admin\r\n\r\nx",
    );
    let b = gw.submit(
        "app@example.com",
        "y@example.net",
        "Subject: admin\r\n\r\nx",
    );
    let out = queue_cmd(&gw, &["delete", &a]);
    assert!(out.contains(&format!("{a}: removed")), "{out}");
    assert_eq!(gw.queued_ids().unwrap(), vec![b]);
    eventually(
        "the running gateway to notice the removal",
        Duration::from_secs(5),
        || gw.log().contains("removed from the queue by administrator"),
    );
}

#[test]
fn flush_retries_deferred_mail_now() {
    let mx = Ipv4Addr::new(127, 0, 31, 2);
    let dns = TestDns::start(&[
        Record::mx("dest.test", 10, "mx.dest.test"),
        Record::a("mx.dest.test", mx),
    ])
    .unwrap();
    let addr = SocketAddr::new(IpAddr::V4(mx), 25);
    let sink = SmtpSink::start(addr, &["-r", "RCPT"]).unwrap();
    let gw = TestGateway::start(|c| {
        trust_loopback(c);
        c.delivery.mode = DeliveryMode::Mx;
        c.delivery.dns.nameservers = vec![dns.addr()];
        // Without a flush the next try would be an hour away.
        c.delivery.retry.initial = Duration::from_secs(3600);
        c.delivery.retry.max = Duration::from_secs(3600);
        // Exactly an hour: the default ±20% spread could bring it under the check below.
        c.delivery.retry.jitter = 0.0;
    })
    .unwrap();
    gw.submit(
        "app@example.com",
        "user@dest.test",
        "Subject: admin\r\n\r\nx",
    );
    let q = eventually("a deferral", Duration::from_secs(15), || {
        let q = gw.queue().unwrap();
        (q.first().and_then(|m| m["attempts"].as_u64()).unwrap_or(0) >= 1).then_some(q)
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        q[0]["next_attempt"].as_u64().unwrap() > now + 3000,
        "next try an hour away: {q:?}"
    );
    drop(sink);
    let sink = SmtpSink::start(addr, &[]).unwrap();
    queue_cmd(&gw, &["flush"]);
    sink.wait_for_messages(1, Duration::from_secs(15)).unwrap();
}
