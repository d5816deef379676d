//! Submission with swaks, the mail admin's SMTP test tool: STARTTLS + AUTH on the
//! submission port, implicit TLS on the submissions port, pipelining, and the relay
//! port for trusted networks only.

use std::process::Command;

use postern_tests::gateway::{PASSWORD, TestGateway, USER, require};

fn swaks(args: &[&str]) -> (bool, String) {
    let out = Command::new(require("swaks"))
        .args(args)
        .output()
        .expect("running swaks");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn starttls_auth_plain_on_submission() {
    let gw = TestGateway::start(|_| {}).unwrap();
    let server = gw.submission.to_string();
    let (ok, out) = swaks(&[
        "--server",
        &server,
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        USER,
        "--auth-password",
        PASSWORD,
        "--from",
        "app@example.com",
        "--to",
        "someone@example.net",
        "--header",
        "Subject: swaks submission",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("<-  220 2.0.0 Ready to start TLS"), "{out}");
    assert!(
        out.contains("<~  235 2.7.0 Authentication successful"),
        "{out}"
    );
    assert!(out.contains("<~  250 2.0.0 Ok: queued as "), "{out}");
    let q = gw.queue().unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["sender"], "app@example.com");
    assert_eq!(q[0]["auth_user"], USER);
    let body = String::from_utf8(gw.message(q[0]["id"].as_str().unwrap()).unwrap()).unwrap();
    assert!(body.contains("Subject: swaks submission"), "{body}");
    assert!(body.starts_with("Received: from "), "{body}");
    assert!(body.contains("with ESMTPSA id"), "{body}");
    assert!(body.contains("(using TLSv1.3 with cipher"), "{body}");
}

#[test]
fn implicit_tls_auth_login_with_pipelining() {
    let gw = TestGateway::start(|_| {}).unwrap();
    let server = gw.submissions.to_string();
    let (ok, out) = swaks(&[
        "--server",
        &server,
        "--tlsc",
        "--pipeline",
        "--auth",
        "LOGIN",
        "--auth-user",
        USER,
        "--auth-password",
        PASSWORD,
        "--from",
        "app@example.com",
        "--to",
        "a@example.net,b@example.org",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("250-PIPELINING"), "{out}");
    assert!(out.contains("<~  250 2.0.0 Ok: queued as "), "{out}");
    let q = gw.queue().unwrap();
    assert_eq!(
        q[0]["recipients"],
        serde_json::json!(["a@example.net", "b@example.org"])
    );
}

#[test]
fn submission_refuses_auth_and_mail_before_tls() {
    let gw = TestGateway::start(|_| {}).unwrap();
    let server = gw.submission.to_string();
    // swaks will not send AUTH that the server does not offer.
    let (ok, out) = swaks(&[
        "--server",
        &server,
        "--auth",
        "PLAIN",
        "--auth-user",
        USER,
        "--auth-password",
        PASSWORD,
        "--from",
        "app@example.com",
        "--to",
        "someone@example.net",
    ]);
    assert!(!ok, "{out}");
    assert!(
        !out.contains("AUTH PLAIN LOGIN"),
        "AUTH offered before TLS: {out}"
    );
    let (ok, out) = swaks(&[
        "--server",
        &server,
        "--from",
        "app@example.com",
        "--to",
        "someone@example.net",
    ]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("530 5.7.0 Must issue a STARTTLS command first"),
        "{out}"
    );
    // After TLS but without AUTH.
    let (ok, out) = swaks(&[
        "--server",
        &server,
        "--tls",
        "--from",
        "app@example.com",
        "--to",
        "someone@example.net",
    ]);
    assert!(!ok, "{out}");
    assert!(out.contains("530 5.7.0 Authentication required"), "{out}");
    assert!(gw.queue().unwrap().is_empty());
}

#[test]
fn wrong_sender_and_wrong_password() {
    let gw = TestGateway::start(|_| {}).unwrap();
    let server = gw.submission.to_string();
    let (ok, out) = swaks(&[
        "--server",
        &server,
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        USER,
        "--auth-password",
        "not it",
        "--from",
        "app@example.com",
        "--to",
        "x@example.net",
    ]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("535 5.7.8 Error: authentication failed"),
        "{out}"
    );
    let (ok, out) = swaks(&[
        "--server",
        &server,
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        USER,
        "--auth-password",
        PASSWORD,
        "--from",
        "ceo@elsewhere.example",
        "--to",
        "x@example.net",
    ]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "553 5.7.1 <ceo@elsewhere.example>: Sender address rejected: not owned by user alice"
        ),
        "{out}"
    );
    assert!(gw.queue().unwrap().is_empty());
}

#[test]
fn relay_port_is_not_an_open_relay() {
    let gw = TestGateway::start(|_| {}).unwrap();
    let server = gw.relay.to_string();
    let (ok, out) = swaks(&[
        "--server",
        &server,
        "--from",
        "a@example.com",
        "--to",
        "x@example.net",
    ]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("554 5.7.1 <x@example.net>: Relay access denied"),
        "{out}"
    );
    assert!(gw.queue().unwrap().is_empty());

    let gw =
        TestGateway::start(|c| c.relay.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()])
            .unwrap();
    let server = gw.relay.to_string();
    let (ok, out) = swaks(&[
        "--server",
        &server,
        "--from",
        "a@example.com",
        "--to",
        "x@example.net",
    ]);
    assert!(ok, "{out}");
    assert_eq!(gw.queue().unwrap().len(), 1);
}
