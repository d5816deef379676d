//! The queue commands a mail admin uses, against a running gateway: `queue list`
//! shows delivery state, `queue delete` removes a message (like `postsuper -d`), and
//! `queue flush` retries deferred mail now (like `postqueue -f`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use postern_config::DeliveryMode;
use postern_tests::dns::{Record, TestDns};
use postern_tests::gateway::{TestGateway, gateway_bin};
use postern_tests::postfix::SmtpSink;
use postern_tests::smtp::Smtp;

fn submit(gw: &TestGateway, to: &str) -> String {
    let (mut s, _) = Smtp::connect(gw.relay).unwrap();
    assert_eq!(s.cmd("EHLO c").unwrap().code, 250);
    assert_eq!(s.cmd("MAIL FROM:<app@example.com>").unwrap().code, 250);
    assert_eq!(s.cmd(&format!("RCPT TO:<{to}>")).unwrap().code, 250);
    assert_eq!(s.cmd("DATA").unwrap().code, 354);
    let r = s.cmd("Subject: admin\r\n\r\nx\r\n.").unwrap();
    r.last_line().rsplit(' ').next().unwrap().to_owned()
}

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
    let gw =
        TestGateway::start(|c| c.relay.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()])
            .unwrap();
    let a = submit(&gw, "x@example.net");
    let b = submit(&gw, "y@example.net");
    let out = queue_cmd(&gw, &["delete", &a]);
    assert!(out.contains(&format!("{a}: removed")), "{out}");
    assert_eq!(gw.queued_ids().unwrap(), vec![b]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gw.log().contains("removed from the queue by administrator") {
        assert!(
            Instant::now() < deadline,
            "the running gateway did not notice: {}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
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
        c.relay.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
        c.delivery.mode = DeliveryMode::Mx;
        c.delivery.dns.nameservers = vec![dns.addr()];
        // Without a flush the next try would be an hour away.
        c.delivery.retry.initial = Duration::from_secs(3600);
        c.delivery.retry.max = Duration::from_secs(3600);
    })
    .unwrap();
    submit(&gw, "user@dest.test");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let q = gw.queue().unwrap();
        if q.first().and_then(|m| m["attempts"].as_u64()).unwrap_or(0) >= 1 {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            assert!(
                q[0]["next_attempt"].as_u64().unwrap() > now + 3000,
                "next try an hour away: {q:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no deferral");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(sink);
    let sink = SmtpSink::start(addr, &[]).unwrap();
    queue_cmd(&gw, &["flush"]);
    sink.wait_for_messages(1, Duration::from_secs(15)).unwrap();
}
