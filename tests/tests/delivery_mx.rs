//! Delivery by DNS MX routing against real peers: an Unbound server on loopback
//! serving the test domains, Postfix and smtp-sink listening on port 25 of other
//! loopback addresses as the domains' mail exchangers. Each test uses its own
//! 127.0.N.0/24 so tests can run side by side.
//!
//! Covered: MX preference, failover to the next MX, implicit MX, null MX, NXDOMAIN,
//! SERVFAIL deferral, 4xx then success, 5xx bounce with the DSN received by the
//! sender's own MX, expiry, TLS required and absent, opportunistic TLS, IPv6, and
//! connection reuse seen in the receiver's log.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use postern_config::{DeliveryMode, GatewayConfig};
use postern_tests::dns::{Record, TestDns};
use postern_tests::gateway::{TestGateway, deliver_by_mx};
use postern_tests::peers::scratch_dir;
use postern_tests::postfix::{PostfixInstance, ReceiverOptions, SmtpSink, write_self_signed_cert};
use postern_tests::prometheus::metric_sum;
use postern_tests::smtp::Smtp;
use postern_tests::wait::eventually;

fn ip(net: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, net, host)
}

fn port25(ip: Ipv4Addr) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ip), 25)
}

fn gateway(dns: &TestDns, tweak: impl FnOnce(&mut GatewayConfig)) -> TestGateway {
    TestGateway::start(|c| {
        deliver_by_mx(c, dns.addr());
        tweak(c);
    })
    .unwrap()
}

/// Sends one message from `from` to `to` through the relay port; returns its ID.
fn submit(gw: &TestGateway, from: &str, to: &str, subject: &str) -> String {
    gw.submit(
        from,
        to,
        &format!("From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\r\nhello"),
    )
}

fn receiver(addr: Ipv4Addr, domains: &[&str]) -> PostfixInstance {
    PostfixInstance::receiver(&ReceiverOptions::new(port25(addr), domains)).unwrap()
}

fn delivery_state(gw: &TestGateway) -> serde_json::Value {
    gw.queue().unwrap().first().cloned().unwrap_or_default()
}

/// Test net `n`'s destination domain: dest.test, whose MX is mx.dest.test at
/// 127.0.n.2.
fn dest_dns(n: u8) -> TestDns {
    TestDns::start(&[
        Record::mx("dest.test", 10, "mx.dest.test"),
        Record::a("mx.dest.test", ip(n, 2)),
    ])
    .unwrap()
}

/// Waits until the (one) queued message was tried and deferred; what the try said.
fn wait_for_deferral(gw: &TestGateway) -> String {
    eventually("a deferral", Duration::from_secs(15), || {
        delivery_state(gw)["attempts"].as_u64().unwrap_or(0) >= 1
    });
    delivery_state(gw)["delivery"][0]["last_result"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn wait_for_empty_queue(gw: &TestGateway, secs: u64) {
    eventually("an empty queue", Duration::from_secs(secs), || {
        gw.queue().unwrap().is_empty()
    });
}

#[test]
fn lowest_preference_mx_gets_the_mail() {
    let n = 11;
    let dns = TestDns::start(&[
        Record::mx("dest.test", 20, "mx2.dest.test"),
        Record::mx("dest.test", 10, "mx1.dest.test"),
        Record::a("mx1.dest.test", ip(n, 2)),
        Record::a("mx2.dest.test", ip(n, 3)),
    ])
    .unwrap();
    let mx1 = receiver(ip(n, 2), &["dest.test"]);
    let mx2 = SmtpSink::start(port25(ip(n, 3)), &[]).unwrap();
    let gw = gateway(&dns, |_| {});
    submit(&gw, "app@example.com", "user@dest.test", "preference");
    let got = mx1.wait_for_delivered(1, Duration::from_secs(30)).unwrap();
    assert!(got[0].contents.contains("Subject: preference"));
    assert!(
        got[0].contents.contains("(Postern) with ESMTP id"),
        "{}",
        got[0].contents
    );
    assert_eq!(mx2.messages(), 0);
    wait_for_empty_queue(&gw, 10);
}

#[test]
fn failover_to_the_second_mx() {
    let n = 12;
    let dns = TestDns::start(&[
        Record::mx("dest.test", 10, "dead.dest.test"),
        Record::mx("dest.test", 20, "live.dest.test"),
        Record::a("dead.dest.test", ip(n, 2)), // nothing listens there
        Record::a("live.dest.test", ip(n, 3)),
    ])
    .unwrap();
    let live = receiver(ip(n, 3), &["dest.test"]);
    let gw = gateway(&dns, |_| {});
    submit(&gw, "app@example.com", "user@dest.test", "failover");
    live.wait_for_delivered(1, Duration::from_secs(30)).unwrap();
    wait_for_empty_queue(&gw, 10);
}

#[test]
fn implicit_mx_from_the_address_record() {
    let n = 13;
    let dns = TestDns::start(&[Record::a("implicit.test", ip(n, 2))]).unwrap();
    let mx = receiver(ip(n, 2), &["implicit.test"]);
    let gw = gateway(&dns, |_| {});
    submit(&gw, "app@example.com", "user@implicit.test", "implicit");
    mx.wait_for_delivered(1, Duration::from_secs(30)).unwrap();
}

/// The sender's domain has an MX of its own, so DSNs are really delivered there.
fn with_sender_domain(n: u8, mut records: Vec<Record>) -> (TestDns, PostfixInstance) {
    records.push(Record::mx("sender.test", 10, "mx.sender.test"));
    records.push(Record::a("mx.sender.test", ip(n, 9)));
    let dns = TestDns::start(&records).unwrap();
    let sender_mx = receiver(ip(n, 9), &["sender.test"]);
    (dns, sender_mx)
}

fn assert_dsn(sender_mx: &PostfixInstance, status: &str, rcpt: &str) -> String {
    let got = sender_mx
        .wait_for_delivered(1, Duration::from_secs(30))
        .unwrap();
    let dsn = &got[0].contents;
    assert!(
        dsn.contains("Content-Type: multipart/report; report-type=delivery-status"),
        "{dsn}"
    );
    assert!(
        dsn.contains(&format!("Final-Recipient: rfc822; {rcpt}")),
        "{dsn}"
    );
    assert!(dsn.contains("Action: failed"), "{dsn}");
    assert!(dsn.contains(&format!("Status: {status}")), "{dsn}");
    assert!(
        dsn.contains("Return-Path: <>"),
        "a DSN has the null sender: {dsn}"
    );
    dsn.clone()
}

#[test]
fn null_mx_bounces_at_once_with_a_dsn() {
    let n = 14;
    let (dns, sender_mx) = with_sender_domain(n, vec![Record::null_mx("nomail.test")]);
    let gw = gateway(&dns, |_| {});
    submit(&gw, "app@sender.test", "user@nomail.test", "null mx");
    let dsn = assert_dsn(&sender_mx, "5.1.10", "user@nomail.test");
    assert!(
        dsn.contains("Subject: null mx"),
        "original headers returned: {dsn}"
    );
    wait_for_empty_queue(&gw, 10);
}

#[test]
fn nxdomain_bounces() {
    let n = 15;
    let (dns, sender_mx) = with_sender_domain(n, vec![]);
    let gw = gateway(&dns, |_| {});
    submit(&gw, "app@sender.test", "user@nosuchdomain.test", "nxdomain");
    assert_dsn(&sender_mx, "5.1.2", "user@nosuchdomain.test");
}

#[test]
fn servfail_defers_then_expires_with_a_dsn() {
    let n = 16;
    let (dns, sender_mx) = with_sender_domain(n, vec![Record::servfail("broken.test")]);
    let gw = gateway(&dns, |c| {
        c.delivery.retry.max_lifetime = Duration::from_secs(4)
    });
    submit(&gw, "app@sender.test", "user@broken.test", "servfail");
    let detail = wait_for_deferral(&gw);
    assert!(
        detail.contains("MX lookup for broken.test failed"),
        "{detail}"
    );
    assert_eq!(delivery_state(&gw)["delivery"][0]["status"], "pending");
    // After max_lifetime the message expires: 4.4.7 to the sender.
    let dsn = assert_dsn(&sender_mx, "4.4.7", "user@broken.test");
    assert!(dsn.contains("delivery time expired"), "{dsn}");
    wait_for_empty_queue(&gw, 10);
}

#[test]
fn temporary_refusal_is_retried_until_it_succeeds() {
    let n = 17;
    let dns = dest_dns(n);
    let mut sink = SmtpSink::start(port25(ip(n, 2)), &["-r", "RCPT"]).unwrap();
    let mut gw = gateway(&dns, |_| {});
    submit(&gw, "app@example.com", "user@dest.test", "retry");
    let detail = wait_for_deferral(&gw);
    assert!(detail.starts_with('4'), "{detail}");
    // The retry state survives a restart.
    gw.reconfigure(|_| {}).unwrap();
    assert!(delivery_state(&gw)["attempts"].as_u64().unwrap_or(0) >= 1);
    drop(sink);
    sink = SmtpSink::start(port25(ip(n, 2)), &[]).unwrap();
    sink.wait_for_messages(1, Duration::from_secs(30)).unwrap();
    wait_for_empty_queue(&gw, 10);
}

#[test]
fn permanent_refusal_bounces_to_the_senders_server() {
    let n = 18;
    let (dns, sender_mx) = with_sender_domain(
        n,
        vec![
            Record::mx("dest.test", 10, "mx.dest.test"),
            Record::a("mx.dest.test", ip(n, 2)),
        ],
    );
    let _sink = SmtpSink::start(port25(ip(n, 2)), &["-f", "RCPT"]).unwrap();
    let gw = gateway(&dns, |_| {});
    submit(&gw, "app@sender.test", "user@dest.test", "hard bounce");
    let dsn = assert_dsn(&sender_mx, "5.", "user@dest.test");
    assert!(
        dsn.contains(&format!("Remote-MTA: dns; mx.dest.test[{}]", ip(n, 2))),
        "{dsn}"
    );
    assert!(dsn.contains("Diagnostic-Code: smtp; 5"), "{dsn}");
}

#[test]
fn null_sender_mail_never_bounces() {
    let n = 19;
    let (dns, sender_mx) = with_sender_domain(n, vec![Record::null_mx("nomail.test")]);
    let gw = gateway(&dns, |_| {});
    submit(&gw, "", "user@nomail.test", "bounce of a bounce");
    wait_for_empty_queue(&gw, 15);
    std::thread::sleep(Duration::from_secs(1));
    assert!(sender_mx.delivered().unwrap().is_empty());
    assert!(gw.log().contains("null sender: no DSN"), "{}", gw.log());
}

#[test]
fn required_tls_without_starttls_defers() {
    let n = 20;
    let dns = dest_dns(n);
    let sink = SmtpSink::start(port25(ip(n, 2)), &[]).unwrap();
    let gw = gateway(&dns, |c| {
        c.delivery.tls.require_domains = vec!["dest.test".into()]
    });
    submit(&gw, "app@example.com", "user@dest.test", "tls required");
    let detail = wait_for_deferral(&gw);
    assert!(detail.contains("TLS is required"), "{detail}");
    assert_eq!(sink.messages(), 0);
}

#[test]
fn opportunistic_tls_with_a_receiver_that_offers_it() {
    let n = 21;
    let dns = dest_dns(n);
    let dir = scratch_dir("mx-tls-").unwrap();
    let mut opts = ReceiverOptions::new(port25(ip(n, 2)), &["dest.test"]);
    opts.tls = Some(write_self_signed_cert(dir.path(), &["mx.dest.test"]).unwrap());
    let mx = PostfixInstance::receiver(&opts).unwrap();
    let gw = gateway(&dns, |_| {});
    submit(&gw, "app@example.com", "user@dest.test", "opportunistic");
    mx.wait_for_delivered(1, Duration::from_secs(30)).unwrap();
    eventually("the delivery log line", Duration::from_secs(10), || {
        gw.log().contains("tls=Unverified")
    });
}

#[test]
fn ipv6_mail_exchanger() {
    let dns = TestDns::start(&[
        Record::mx("v6.test", 10, "mx.v6.test"),
        Record::aaaa("mx.v6.test", Ipv6Addr::LOCALHOST),
    ])
    .unwrap();
    let sink = SmtpSink::start(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 25), &[]).unwrap();
    let gw = gateway(&dns, |_| {});
    submit(&gw, "app@example.com", "user@v6.test", "over IPv6");
    sink.wait_for_messages(1, Duration::from_secs(30)).unwrap();
    eventually("the delivery log line", Duration::from_secs(10), || {
        gw.log().contains("mx.v6.test[::1]")
    });
}

#[test]
fn several_messages_share_one_connection() {
    let n = 22;
    let dns = dest_dns(n);
    let mx = receiver(ip(n, 2), &["dest.test"]);
    // Accept five messages while delivery is on hold, then turn delivery on: the
    // recovered queue goes out together.
    let mut gw = gateway(&dns, |c| {
        c.delivery.mode = DeliveryMode::Hold;
        c.delivery.limits.max_connections_per_destination = 1;
    });
    for i in 0..5 {
        submit(
            &gw,
            "app@example.com",
            &format!("user{i}@dest.test"),
            &format!("reuse {i}"),
        );
    }
    gw.reconfigure(|c| c.delivery.mode = DeliveryMode::Mx)
        .unwrap();
    mx.wait_for_delivered(5, Duration::from_secs(30)).unwrap();
    // The connection closes when it has been idle for idle_connection_time (2 s).
    eventually("the session to end", Duration::from_secs(15), || {
        sessions_and_transactions(&mx).0 >= 1
    });
    assert_eq!(
        sessions_and_transactions(&mx),
        (1, 5),
        "five messages over one connection: {}",
        mx.maillog().unwrap()
    );
}

/// Sessions at the receiver that sent commands (the harness's port probe sends none)
/// and ended, and the transactions it took.
fn sessions_and_transactions(mx: &PostfixInstance) -> (usize, usize) {
    let log = mx.maillog().unwrap();
    let sessions = log
        .lines()
        .filter(|l| {
            l.contains("smtpd[") && l.contains(": disconnect from") && !l.contains("commands=0/0")
        })
        .count();
    let transactions = log
        .lines()
        .filter(|l| l.contains("smtpd[") && l.contains(": client="))
        .count();
    (sessions, transactions)
}

/// Messages arriving one at a time, each after the previous one was delivered, go over
/// the connection kept open for the destination (`idle_connection_time`), which closes
/// once it has been idle that long; with 0 each message opens its own.
#[test]
fn an_idle_connection_carries_the_next_messages_then_closes() {
    for (n, idle, expected_sessions) in [(25, Duration::from_secs(3), 1), (26, Duration::ZERO, 3)] {
        let dns = TestDns::start(&[
            Record::mx("dest.test", 10, "mx.dest.test"),
            Record::a("mx.dest.test", ip(n, 2)),
        ])
        .unwrap();
        let mx = receiver(ip(n, 2), &["dest.test"]);
        let gw = gateway(&dns, |c| c.delivery.limits.idle_connection_time = idle);
        for i in 0..3 {
            submit(
                &gw,
                "app@example.com",
                &format!("user{i}@dest.test"),
                &format!("one at a time {i}"),
            );
            mx.wait_for_delivered(i + 1, Duration::from_secs(30))
                .unwrap();
        }
        // Every connection ends: at once, or when it has been idle for `idle`.
        eventually(
            "the receiver's sessions to end",
            Duration::from_secs(15),
            || sessions_and_transactions(&mx).0 >= expected_sessions,
        );
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            sessions_and_transactions(&mx),
            (expected_sessions, 3),
            "idle_connection_time {idle:?}: {}",
            mx.maillog().unwrap()
        );
    }
}

/// A kept connection the server closed meanwhile (smtp-sink drops a client idle for
/// 1 s) is noticed when the next message goes out; that message takes a new connection
/// at once instead of being deferred.
#[test]
fn a_kept_connection_the_server_closed_is_replaced() {
    let n = 27;
    let dns = dest_dns(n);
    let sink = SmtpSink::start(port25(ip(n, 2)), &["-t", "1"]).unwrap();
    let gw = gateway(&dns, |c| {
        c.delivery.limits.idle_connection_time = Duration::from_secs(30);
        // A deferral would be retried only after a minute: too late for the wait below.
        c.delivery.retry.initial = Duration::from_secs(60);
        c.delivery.retry.max = Duration::from_secs(60);
    });
    submit(&gw, "app@example.com", "a@dest.test", "first");
    sink.wait_for_messages(1, Duration::from_secs(30)).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    submit(&gw, "app@example.com", "b@dest.test", "second");
    sink.wait_for_messages(2, Duration::from_secs(15)).unwrap();
    let log = gw.log();
    assert!(log.contains("kept connection no longer usable"), "{log}");
    assert_eq!(log.matches("status=\"sent\"").count(), 2, "{log}");
    assert!(!log.contains("status=\"deferred\""), "{log}");
    // The new connection is kept: the gauge (updated every 5 s) shows it idle.
    eventually(
        "an idle connection in the metrics",
        Duration::from_secs(12),
        || {
            let text = gw.scrape().unwrap();
            metric_sum(&text, "postern_outbound_connections_open") == 1.0
                && text.contains("postern_outbound_connections_open{state=\"idle\"} 1")
        },
    );
}

/// A message that needs SMTPUTF8 bounces (5.6.7) at a receiver that does not offer it
/// (smtp-sink), instead of being mangled.
#[test]
fn smtputf8_message_to_a_server_without_it_bounces() {
    let n = 23;
    let (dns, sender_mx) = with_sender_domain(
        n,
        vec![
            Record::mx("dest.test", 10, "mx.dest.test"),
            Record::a("mx.dest.test", ip(n, 2)),
        ],
    );
    let sink = SmtpSink::start(port25(ip(n, 2)), &[]).unwrap();
    let gw = gateway(&dns, |_| {});
    let (mut s, _) = Smtp::connect(gw.relay).unwrap();
    assert_eq!(s.cmd("EHLO client.test").unwrap().code, 250);
    assert_eq!(
        s.cmd("MAIL FROM:<app@sender.test> SMTPUTF8").unwrap().code,
        250
    );
    assert_eq!(s.cmd("RCPT TO:<jürgen@dest.test>").unwrap().code, 250);
    assert_eq!(s.cmd("DATA").unwrap().code, 354);
    assert_eq!(s.cmd("Subject: grüße\r\n\r\nhallo\r\n.").unwrap().code, 250);
    assert_dsn(&sender_mx, "5.6.7", "jürgen@dest.test");
    assert_eq!(sink.messages(), 0);
}

/// A message larger than the receiver's advertised SIZE bounces (5.3.4) without being
/// sent.
#[test]
fn message_over_the_receivers_size_bounces() {
    let n = 24;
    let (dns, sender_mx) = with_sender_domain(
        n,
        vec![
            Record::mx("big.test", 10, "mx.big.test"),
            Record::a("mx.big.test", ip(n, 2)),
        ],
    );
    // Postfix advertises SIZE 10240000 (its message_size_limit).
    let big_mx = receiver(ip(n, 2), &["big.test"]);
    let gw = gateway(&dns, |_| {});
    let (mut s, _) = Smtp::connect(gw.relay).unwrap();
    assert_eq!(s.cmd("EHLO client.test").unwrap().code, 250);
    assert_eq!(s.cmd("MAIL FROM:<app@sender.test>").unwrap().code, 250);
    assert_eq!(s.cmd("RCPT TO:<user@big.test>").unwrap().code, 250);
    assert_eq!(s.cmd("DATA").unwrap().code, 354);
    let line = "x".repeat(98) + "\r\n";
    let chunk = line.repeat(10_000); // 1 MB
    s.send(b"Subject: big\r\n\r\n").unwrap();
    for _ in 0..11 {
        s.send(chunk.as_bytes()).unwrap();
    }
    assert_eq!(s.cmd(".").unwrap().code, 250);
    let dsn = assert_dsn(&sender_mx, "5.3.4", "user@big.test");
    assert!(dsn.contains("exceeds the limit"), "{dsn}");
    assert!(big_mx.delivered().unwrap().is_empty());
}
