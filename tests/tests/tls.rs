//! TLS on the submission ports: STARTTLS with `openssl s_client -starttls smtp` (the
//! certificate verifies for the gateway's name, TLS 1.2 and 1.3 work, AUTH and a whole
//! submission go through the encrypted channel); STARTTLS resets the session; and the
//! plaintext-injection attack (commands pipelined behind STARTTLS, CVE-2011-0411
//! style) finds nothing to inject. Implicit TLS on 465 is exercised in `auth.rs`,
//! certificate rotation in `reload.rs`.

use std::process::Command;

use postern_tests::gateway::{PASSWORD, TestGateway, USER, trust_loopback};
use postern_tests::peers::{require, transcript};
use postern_tests::smtp::{Smtp, plain};

fn s_client(gw: &TestGateway, extra: &[&str], input: &str) -> String {
    let mut cmd = Command::new(require("openssl").unwrap());
    cmd.args(["s_client", "-starttls", "smtp", "-connect"])
        .arg(gw.submission.to_string())
        .args(["-CAfile"])
        .arg(&gw.config.tls.certificate)
        .args([
            "-verify_hostname",
            "gateway.test",
            "-verify_return_error",
            "-crlf",
            "-ign_eof",
        ])
        .args(extra);
    transcript(&mut cmd, input.as_bytes()).1
}

#[test]
fn openssl_starttls_submission() {
    let gw = TestGateway::start(|_| {}).unwrap();
    let plain = plain(USER, PASSWORD);
    // s_client does not pipeline; each line goes as typed, with pauses for replies
    // simulated by the server reading line by line.
    let input = format!(
        "EHLO client.test\nAUTH PLAIN {plain}\nMAIL FROM:<app@example.com>\nRCPT TO:<x@example.net>\nDATA\nSubject: via openssl\n\nhello\n.\nQUIT\n"
    );
    for version in ["-tls1_3", "-tls1_2"] {
        let out = s_client(&gw, &[version], &input);
        assert!(
            out.contains("Verify return code: 0 (ok)"),
            "{version}: {out}"
        );
        assert!(out.contains("250 AUTH PLAIN LOGIN"), "{version}: {out}");
        assert!(
            !out.contains("250-STARTTLS"),
            "STARTTLS offered again after TLS: {out}"
        );
        assert!(
            out.contains("235 2.7.0 Authentication successful"),
            "{version}: {out}"
        );
        assert!(out.contains("250 2.0.0 Ok: queued as"), "{version}: {out}");
        let proto = if version == "-tls1_3" {
            "TLSv1.3"
        } else {
            "TLSv1.2"
        };
        assert!(
            out.contains(&format!("Protocol  : {proto}")) || out.contains(&format!("New, {proto}")),
            "{version}: {out}"
        );
    }
    assert_eq!(gw.queue().unwrap().len(), 2);
}

#[test]
fn plaintext_pipelined_after_starttls_is_discarded() {
    let gw = TestGateway::start(trust_loopback).unwrap();
    for addr in [gw.submission, gw.relay] {
        let (mut s, _) = Smtp::connect(addr).unwrap();
        assert_eq!(s.cmd("EHLO c").unwrap().code, 250);
        // An attacker in the middle appends commands to the client's STARTTLS.
        s.send(b"STARTTLS\r\nFOO injected\r\nMAIL FROM:<evil@example.com>\r\n")
            .unwrap();
        let r = s.reply().unwrap();
        assert_eq!(r.last_line(), "220 2.0.0 Ready to start TLS");
        let mut s = s.upgrade().unwrap();
        // The first reply inside TLS answers our EHLO, not the injected commands.
        let r = s.cmd("EHLO c").unwrap();
        assert_eq!(r.code, 250, "{}", r.text);
        assert!(r.text.contains("ENHANCEDSTATUSCODES"), "{}", r.text);
        // And the injected MAIL did not open a transaction.
        let r = s.cmd("RCPT TO:<x@example.net>").unwrap();
        assert_eq!(r.last_line(), "503 5.5.1 Error: need MAIL command");
    }
}

#[test]
fn starttls_resets_the_session() {
    let gw = TestGateway::start(trust_loopback).unwrap();
    let (mut s, _) = Smtp::connect(gw.relay).unwrap();
    assert_eq!(s.cmd("EHLO c").unwrap().code, 250);
    assert_eq!(s.cmd("MAIL FROM:<a@example.com>").unwrap().code, 250);
    assert_eq!(s.cmd("STARTTLS").unwrap().code, 220);
    let mut s = s.upgrade().unwrap();
    // Greeting forgotten: MAIL needs EHLO again.
    assert_eq!(
        s.cmd("MAIL FROM:<a@example.com>").unwrap().last_line(),
        "503 5.5.1 Error: send HELO/EHLO first"
    );
    let ehlo = s.cmd("EHLO c").unwrap();
    assert!(
        ehlo.text.contains("AUTH PLAIN LOGIN"),
        "AUTH after STARTTLS on the relay port: {}",
        ehlo.text
    );
    assert_eq!(
        s.cmd("STARTTLS").unwrap().last_line(),
        "503 5.5.1 Error: TLS already active"
    );
}

/// Session resumption on 465 with `openssl s_client -sess_out` / `-sess_in`: a client
/// that comes back resumes ("Reused") even after 300 other full handshakes, with
/// TLS 1.3 tickets and with TLS 1.2 (tickets, and the session cache).
#[test]
fn sessions_resume_after_many_other_handshakes() {
    let gw = TestGateway::start(|_| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let connect = |extra: &[&str]| {
        let mut cmd = Command::new(require("openssl").unwrap());
        cmd.args(["s_client", "-connect"])
            .arg(gw.submissions.to_string())
            .args(["-CAfile"])
            .arg(&gw.config.tls.certificate)
            .args(["-verify_hostname", "gateway.test", "-crlf", "-ign_eof"])
            .args(extra);
        // The greeting comes after the handshake; by then the tickets have arrived.
        transcript(&mut cmd, b"QUIT\n").1
    };
    for version in ["-tls1_3", "-tls1_2"] {
        let session = dir.path().join(format!("session{version}.pem"));
        let session = session.to_str().unwrap();
        let first = connect(&[version, "-sess_out", session]);
        assert!(first.contains("220 "), "{version}: {first}");
        assert!(first.contains("New, TLSv1."), "{version}: {first}");
        // 300 full handshakes by other clients in between (no session of theirs).
        let mut others = Vec::new();
        for _ in 0..3 {
            let addr = gw.submissions;
            others.push(std::thread::spawn(move || {
                for _ in 0..100 {
                    // A new client configuration each time: a full handshake.
                    let (_s, greeting) = Smtp::connect_tls(addr).unwrap();
                    assert_eq!(greeting.code, 220);
                }
            }));
        }
        for t in others {
            t.join().unwrap();
        }
        let again = connect(&[version, "-sess_in", session]);
        assert!(again.contains("Reused, TLSv1."), "{version}: {again}");
        assert!(again.contains("220 "), "{version}: {again}");
    }
}
