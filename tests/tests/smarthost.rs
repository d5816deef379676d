//! Smarthost delivery against real servers: Postfix's smtp-sink in plain text, and a
//! Postfix submission service requiring STARTTLS and SASL AUTH (certificate verified
//! against its CA); TLS required but not offered defers instead of sending in clear;
//! a wrong smarthost password defers too.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use postern_config::{DeliveryMode, SmarthostConfig, SmarthostTls};
use postern_tests::gateway::{TestGateway, trust_loopback};
use postern_tests::peers::scratch_dir;
use postern_tests::postfix::{
    Delivery, PostfixInstance, SmtpSink, SubmissionOptions, write_self_signed_cert,
};
use postern_tests::process::free_local_addr;
use postern_tests::reply::queue_id;
use postern_tests::smtp::Smtp;
use postern_tests::wait::eventually;

fn smarthost(addr: SocketAddr, tls: SmarthostTls) -> SmarthostConfig {
    SmarthostConfig {
        host: addr.ip().to_string(),
        port: addr.port(),
        tls,
        credentials_file: None,
        verify_certificate: true,
        ca_file: None,
    }
}

/// `sh` with the login of a Postfix submission instance (a credentials file in `dir`)
/// and its certificate as the CA to verify it with.
fn with_login(dir: &Path, opts: &SubmissionOptions, mut sh: SmarthostConfig) -> SmarthostConfig {
    let creds = dir.join("smarthost-credentials");
    std::fs::write(&creds, format!("{}:{}\n", opts.login(), opts.password)).unwrap();
    sh.credentials_file = Some(creds);
    sh.ca_file = Some(opts.tls.certificate.clone());
    sh
}

fn gateway(sh: SmarthostConfig) -> TestGateway {
    TestGateway::start(|c| {
        trust_loopback(c);
        c.delivery.mode = DeliveryMode::Smarthost;
        c.delivery.smarthost = Some(sh);
        c.delivery.retry.initial = Duration::from_secs(1);
        c.delivery.retry.max = Duration::from_secs(2);
    })
    .unwrap()
}

/// Submits `n` messages over one connection to the relay port; returns queue IDs.
fn submit(gw: &TestGateway, n: usize, to: &str) -> Vec<String> {
    let (mut s, _) = Smtp::connect(gw.relay).unwrap();
    s.ehlo().unwrap();
    (0..n)
        .map(|i| {
            let message = format!("Subject: message {i}\r\n\r\nbody {i}");
            queue_id(&s.send_message("app@example.com", &[to], &message).unwrap())
        })
        .collect()
}

#[test]
fn plain_smarthost_gets_every_message_and_queue_empties() {
    let sink = SmtpSink::start_local(&[]).unwrap();
    let gw = gateway(smarthost(sink.addr(), SmarthostTls::None));
    submit(&gw, 5, "someone@example.net");
    sink.wait_for_messages(5, Duration::from_secs(20)).unwrap();
    eventually("an empty queue", Duration::from_secs(10), || {
        gw.queue().unwrap().is_empty()
    });
    let log = gw.log();
    assert_eq!(log.matches("status=\"sent\"").count(), 5, "{log}");
}

#[test]
fn starttls_and_auth_to_postfix_submission() {
    let dir = scratch_dir("smarthost-").unwrap();
    let cert = write_self_signed_cert(dir.path(), &["127.0.0.1", "localhost"]).unwrap();
    let listen = free_local_addr().unwrap();
    let mut opts = SubmissionOptions::new(listen, cert.clone());
    opts.delivery = Delivery::Hold;
    let postfix = PostfixInstance::submission(&opts).unwrap();
    let sh = with_login(dir.path(), &opts, smarthost(listen, SmarthostTls::Starttls));
    let gw = gateway(sh);
    submit(&gw, 2, "someone@example.net");
    eventually("delivery to the smarthost", Duration::from_secs(30), || {
        gw.queue().unwrap().is_empty()
    });
    let log = postfix
        .wait_for_log(
            &format!("sasl_username={}", opts.login()),
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(postfix.queued_ids().unwrap().len(), 2, "{log}");
    // Postfix only allows AUTH over TLS; the gateway says the certificate verified.
    let gwlog = gw.log();
    assert!(gwlog.contains("tls=Verified"), "{gwlog}");
}

#[test]
fn required_tls_without_starttls_defers_and_never_sends_in_clear() {
    let sink = SmtpSink::start_local(&[]).unwrap();
    let gw = gateway(smarthost(sink.addr(), SmarthostTls::Starttls));
    let ids = submit(&gw, 1, "someone@example.net");
    eventually("a deferral", Duration::from_secs(15), || {
        gw.queue()
            .unwrap()
            .iter()
            .any(|m| m["attempts"].as_u64().unwrap_or(0) >= 1)
    });
    let q = gw.queue().unwrap();
    assert_eq!(q[0]["id"], ids[0]);
    let detail = q[0]["delivery"][0]["last_result"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(detail.contains("does not offer STARTTLS"), "{detail}");
    assert_eq!(sink.messages(), 0, "nothing may be sent in clear text");
}

#[test]
fn wrong_smarthost_password_defers() {
    let dir = scratch_dir("smarthost-").unwrap();
    let cert = write_self_signed_cert(dir.path(), &["127.0.0.1"]).unwrap();
    let listen = free_local_addr().unwrap();
    let opts = SubmissionOptions::new(listen, cert.clone());
    let postfix = PostfixInstance::submission(&opts).unwrap();
    let creds = dir.path().join("smarthost-credentials");
    std::fs::write(&creds, format!("{}:wrong\n", opts.login())).unwrap();
    let mut sh = smarthost(listen, SmarthostTls::Starttls);
    sh.credentials_file = Some(creds);
    sh.ca_file = Some(cert.certificate.clone());
    let gw = gateway(sh);
    submit(&gw, 1, "someone@example.net");
    eventually("a deferral", Duration::from_secs(20), || {
        gw.queue()
            .unwrap()
            .iter()
            .any(|m| m["attempts"].as_u64().unwrap_or(0) >= 1)
    });
    let q = gw.queue().unwrap();
    let detail = q[0]["delivery"][0]["last_result"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(detail.contains("authentication failed"), "{detail}");
    assert!(postfix.queued_ids().unwrap().is_empty());
}

#[test]
fn implicit_tls_smarthost_with_auth() {
    let dir = scratch_dir("smarthost-").unwrap();
    let cert = write_self_signed_cert(dir.path(), &["127.0.0.1"]).unwrap();
    let mut opts = SubmissionOptions::new(free_local_addr().unwrap(), cert.clone());
    let implicit = free_local_addr().unwrap();
    opts.implicit_tls_listen = Some(implicit);
    opts.delivery = Delivery::Hold;
    let postfix = PostfixInstance::submission(&opts).unwrap();
    let sh = with_login(
        dir.path(),
        &opts,
        smarthost(implicit, SmarthostTls::Implicit),
    );
    let gw = gateway(sh);
    submit(&gw, 1, "someone@example.net");
    eventually(
        "delivery over implicit TLS",
        Duration::from_secs(30),
        || gw.queue().unwrap().is_empty(),
    );
    postfix
        .wait_for_log(
            &format!("sasl_username={}", opts.login()),
            Duration::from_secs(10),
        )
        .unwrap();
    assert!(gw.log().contains("tls=Verified"), "{}", gw.log());
}
