//! Session tests over an in-memory stream: scripted client input, asserted replies.
//! TLS is represented by the session's `tls` argument (the handshake itself is tested
//! black-box in tests/ with real clients).

// TODO(structure): test fixtures write the credentials file with std::fs and count the
// files in spool/messages directly (a spool path outside the spool module); give the
// spool a test helper for that count.
#![allow(clippy::disallowed_methods)]

use std::net::IpAddr;
use std::sync::Arc;

use postern_config::{BareLineEndings, GatewayConfig, ListenerKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Session, TlsInfo};
use crate::Gateway;
use crate::auth::{CredentialStore, hash_password};
use crate::spool::{self, Spool};

struct Fixture {
    gw: Arc<Gateway>,
    dir: tempfile::TempDir,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

fn fixture(tweak: impl FnOnce(&mut GatewayConfig)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = GatewayConfig::default();
    cfg.spool.directory = dir.path().join("spool");
    cfg.relay.trusted_networks = vec!["10.0.0.0/8".parse().unwrap()];
    cfg.limits.max_recipients = 3;
    cfg.limits.max_message_size = 2048;
    tweak(&mut cfg);
    let creds = dir.path().join("credentials");
    let hash = hash_password("secret", false).unwrap();
    std::fs::write(&creds, format!("alice:{hash}:@example.com\n")).unwrap();
    let store = Arc::new(CredentialStore::load(&creds).unwrap());
    let metrics = Arc::new(crate::metrics::Metrics::new(&[]).unwrap());
    let (spool, _) = Spool::open(
        &cfg.spool.directory,
        cfg.spool.recycle_files,
        metrics.clone(),
    )
    .unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    // A real queue with delivery on hold: accepted mail stays in the spool.
    cfg.delivery.mode = postern_config::DeliveryMode::Hold;
    let queue = crate::queue::start(
        Arc::new(cfg.clone()),
        spool.clone(),
        Vec::new(),
        metrics.clone(),
    )
    .unwrap();
    let gw = Arc::new(Gateway::new(
        cfg,
        None,
        Some(store),
        spool,
        queue,
        metrics,
        rx,
    ));
    Fixture {
        gw,
        dir,
        _shutdown: tx,
    }
}

fn tls() -> Option<TlsInfo> {
    Some(TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS13_AES_128_GCM_SHA256".into(),
    })
}

/// Sends `input` at once (as a pipelining client would), returns the reply lines.
async fn converse(
    f: &Fixture,
    kind: ListenerKind,
    tls: Option<TlsInfo>,
    ip: &str,
    input: &[u8],
) -> Vec<String> {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let ip: IpAddr = ip.parse().unwrap();
    let session = Session::new(server, f.gw.clone(), ip, kind, tls);
    let task = tokio::spawn(session.run(true));
    client.write_all(input).await.unwrap();
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    let _ = task.await.unwrap();
    String::from_utf8(out)
        .unwrap()
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The final line of each reply (multi-line replies collapsed).
fn finals(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.as_bytes().get(3) != Some(&b'-'))
        .cloned()
        .collect()
}

fn codes(lines: &[String]) -> Vec<&str> {
    lines
        .iter()
        .filter(|l| l.as_bytes().get(3) != Some(&b'-'))
        .map(|l| &l[..3])
        .collect()
}

fn auth_plain() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b"\0alice\0secret")
}

fn queued(f: &Fixture) -> Vec<spool::SpooledMessage> {
    spool::admin::list(&f.dir.path().join("spool")).unwrap()
}

#[tokio::test]
async fn submission_needs_tls_then_auth() {
    let f = fixture(|_| {});
    let r = converse(
        &f,
        ListenerKind::Submission,
        None,
        "192.0.2.1",
        b"EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<a@example.com>\r\nQUIT\r\n",
    )
    .await;
    // (STARTTLS is offered only with a TLS acceptor; the black-box tests cover it.)
    assert!(
        !r.iter().any(|l| l.contains("AUTH")),
        "AUTH must not be offered before TLS: {r:?}"
    );
    assert_eq!(codes(&r), ["220", "250", "530", "530", "221"], "{r:?}");
    assert!(finals(&r)[2].starts_with("530 5.7.0 Must issue a STARTTLS"));

    let r = converse(
        &f,
        ListenerKind::Submission,
        tls(),
        "192.0.2.1",
        b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nQUIT\r\n",
    )
    .await;
    assert!(r.iter().any(|l| l == "250 AUTH PLAIN LOGIN"), "{r:?}");
    assert!(!r.iter().any(|l| l.contains("STARTTLS")), "{r:?}");
    assert_eq!(codes(&r), ["220", "250", "530", "221"], "{r:?}");
    assert_eq!(finals(&r)[2], "530 5.7.0 Authentication required");
}

#[tokio::test]
async fn authenticated_submission_is_queued_durably() {
    let f = fixture(|_| {});
    let script = format!(
        "EHLO c\r\nAUTH PLAIN {}\r\nMAIL FROM:<app@example.com>\r\nRCPT TO:<x@example.net>\r\nRCPT TO:<y@example.org>\r\nDATA\r\nSubject: hi\r\n\r\n..dot\r\n.\r\nQUIT\r\n",
        auth_plain()
    );
    let r = converse(
        &f,
        ListenerKind::Submission,
        tls(),
        "192.0.2.1",
        script.as_bytes(),
    )
    .await;
    assert_eq!(
        codes(&r),
        [
            "220", "250", "235", "250", "250", "250", "354", "250", "221"
        ],
        "{r:?}"
    );
    let last = &finals(&r)[7];
    assert!(last.starts_with("250 2.0.0 Ok: queued as "), "{last}");
    let q = queued(&f);
    assert_eq!(q.len(), 1);
    let m = &q[0];
    assert_eq!(last.rsplit(' ').next().unwrap(), m.envelope.id);
    assert_eq!(m.envelope.sender, "app@example.com");
    assert_eq!(m.envelope.recipients, ["x@example.net", "y@example.org"]);
    assert_eq!(m.envelope.auth_user.as_deref(), Some("alice"));
    let mut body = Vec::new();
    spool::admin::show(&f.dir.path().join("spool"), &m.envelope.id, &mut body).unwrap();
    let body = String::from_utf8(body).unwrap();
    assert!(body.starts_with("Received: from c ([192.0.2.1])"), "{body}");
    assert!(body.contains("with ESMTPSA id"), "{body}");
    assert!(body.ends_with("Subject: hi\r\n\r\n.dot\r\n"), "{body}");
}

#[tokio::test]
async fn auth_failures_and_sender_ownership() {
    let f = fixture(|_| {});
    use base64::Engine;
    let wrong = base64::engine::general_purpose::STANDARD.encode(b"\0alice\0wrong");
    let nobody = base64::engine::general_purpose::STANDARD.encode(b"\0nobody\0secret");
    let script = format!(
        "EHLO c\r\nAUTH PLAIN {wrong}\r\nAUTH PLAIN {nobody}\r\nAUTH CRAM-MD5\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN !!!\r\nAUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\nMAIL FROM:<boss@other.example>\r\nMAIL FROM:<>\r\nMAIL FROM:<ok@EXAMPLE.com>\r\nQUIT\r\n"
    );
    let r = converse(
        &f,
        ListenerKind::Submissions,
        tls(),
        "192.0.2.9",
        script.as_bytes(),
    )
    .await;
    let fin = finals(&r);
    // Unknown user and wrong password get the same reply.
    assert_eq!(fin[2], "535 5.7.8 Error: authentication failed");
    assert_eq!(fin[3], fin[2]);
    assert!(fin[4].starts_with("504 5.5.4"), "{fin:?}");
    assert_eq!(fin[5], "334 ");
    assert_eq!(fin[6], "501 5.7.0 Authentication aborted");
    assert!(fin[7].starts_with("501 5.5.2"), "{fin:?}");
    assert_eq!(fin[8], "334 VXNlcm5hbWU6");
    assert_eq!(fin[9], "334 UGFzc3dvcmQ6");
    assert_eq!(fin[10], "235 2.7.0 Authentication successful");
    assert!(
        fin[11].starts_with("553 5.7.1 <boss@other.example>: Sender address rejected"),
        "{fin:?}"
    );
    assert!(fin[12].starts_with("553 5.7.1"), "{fin:?}");
    assert_eq!(fin[13], "250 2.1.0 Ok");
}

#[tokio::test]
async fn repeated_auth_failures_block_the_client() {
    let f = fixture(|c| {
        c.auth.delay_after_failures = 1;
        c.auth.failure_delay = std::time::Duration::from_millis(1);
        c.auth.block_after_failures = 3;
    });
    let script = "EHLO c\r\nAUTH PLAIN AGFsaWNlAHg=\r\nAUTH PLAIN AGFsaWNlAHg=\r\nAUTH PLAIN AGFsaWNlAHg=\r\nNOOP\r\n";
    let r = converse(
        &f,
        ListenerKind::Submissions,
        tls(),
        "192.0.2.66",
        script.as_bytes(),
    )
    .await;
    assert_eq!(codes(&r), ["220", "250", "535", "535", "421"], "{r:?}");
    assert!(f.gw.failures.is_blocked("192.0.2.66".parse().unwrap()));
}

#[tokio::test]
async fn relay_only_for_trusted_networks() {
    let f = fixture(|_| {});
    let script = b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.net>\r\nQUIT\r\n";
    let r = converse(&f, ListenerKind::Relay, None, "192.0.2.1", script).await;
    assert_eq!(
        finals(&r)[3],
        "554 5.7.1 <x@example.net>: Relay access denied"
    );
    let r = converse(&f, ListenerKind::Relay, None, "10.1.2.3", script).await;
    assert_eq!(finals(&r)[3], "250 2.1.5 Ok");
    // A trusted network does not open the submission port.
    let r = converse(&f, ListenerKind::Submission, tls(), "10.1.2.3", script).await;
    assert_eq!(codes(&r)[2], "530");
}

#[tokio::test]
async fn sequencing_errors() {
    let f = fixture(|_| {});
    let r = converse(&f, ListenerKind::Relay, None, "10.0.0.1",
        b"MAIL FROM:<a@b.example>\r\nEHLO c\r\nRCPT TO:<x@y.example>\r\nDATA\r\nMAIL FROM:<a@b.example>\r\nMAIL FROM:<a@b.example>\r\nDATA\r\nRCPT TO:<postmaster>\r\nEXPN x\r\nVRFY x\r\nHELP\r\nNOOP\r\nRSET\r\nFOO\r\nQUIT\r\n").await;
    let fin = finals(&r);
    assert_eq!(fin[1], "503 5.5.1 Error: send HELO/EHLO first");
    assert_eq!(fin[3], "503 5.5.1 Error: need MAIL command");
    assert_eq!(fin[4], "503 5.5.1 Error: need RCPT command");
    assert_eq!(fin[5], "250 2.1.0 Ok");
    assert_eq!(fin[6], "503 5.5.1 Error: nested MAIL command");
    assert_eq!(fin[7], "554 5.5.1 Error: no valid recipients");
    assert!(fin[8].starts_with("550 5.1.1 <postmaster>"), "{fin:?}");
    assert!(fin[9].starts_with("502 5.5.1"));
    assert!(fin[10].starts_with("252 2.5.0"));
    assert!(fin[11].starts_with("214 2.0.0"));
    assert_eq!(fin[12], "250 2.0.0 Ok");
    assert_eq!(fin[13], "250 2.0.0 Ok");
    assert_eq!(fin[14], "500 5.5.2 Error: command not recognized");
    assert_eq!(fin[15], "221 2.0.0 Bye");
}

#[tokio::test]
async fn limits_recipients_size_and_lines() {
    let f = fixture(|_| {});
    let long_cmd = format!("NOOP {}\r\n", "x".repeat(600));
    let long_line = format!("{}\r\n", "y".repeat(1001));
    let big = "z".repeat(100);
    let big_body: String = std::iter::repeat_n(format!("{big}\r\n"), 30).collect();
    let script = format!(
        "EHLO c\r\n{long_cmd}NOOP\r\nMAIL FROM:<a@b.example> SIZE=999999\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<1@x.example>\r\nRCPT TO:<2@x.example>\r\nRCPT TO:<3@x.example>\r\nRCPT TO:<4@x.example>\r\nDATA\r\n{long_line}.\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<1@x.example>\r\nDATA\r\n{big_body}.\r\nQUIT\r\n"
    );
    let r = converse(&f, ListenerKind::Relay, None, "10.0.0.1", script.as_bytes()).await;
    let fin = finals(&r);
    assert!(
        fin[2].starts_with("500 5.5.2 Error: command line too long"),
        "{fin:?}"
    );
    assert_eq!(fin[3], "250 2.0.0 Ok", "session goes on after a long line");
    assert!(fin[4].starts_with("552 5.3.4"), "{fin:?}");
    assert_eq!(fin[8], "250 2.1.5 Ok");
    assert!(fin[9].starts_with("452 4.5.3"), "{fin:?}");
    assert!(
        fin[11].starts_with("500 5.5.2 Error: message refused: a text line"),
        "{fin:?}"
    );
    // Size is enforced while the data arrives, not only when declared.
    assert!(
        fin[15].starts_with("552 5.3.4 Error: message too large"),
        "{fin:?}"
    );
    assert_eq!(fin[16], "221 2.0.0 Bye");
    assert!(queued(&f).is_empty());
    assert_eq!(
        std::fs::read_dir(f.dir.path().join("spool/messages"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn bare_line_endings_refused_or_normalized() {
    let script = b"EHLO c\r\nNOOP\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nDATA\r\nline one\nline two\r\n.\r\nQUIT\r\n";
    let f = fixture(|_| {});
    let r = converse(&f, ListenerKind::Relay, None, "10.0.0.1", script).await;
    let fin = finals(&r);
    assert!(fin[2].starts_with("500 5.5.2 Error: bare <LF>"), "{fin:?}");
    assert!(
        fin[6].starts_with("550 5.5.2 Error: message refused: bare <LF>"),
        "{fin:?}"
    );
    assert!(queued(&f).is_empty());

    let f = fixture(|c| c.limits.bare_line_endings = BareLineEndings::Normalize);
    let r = converse(&f, ListenerKind::Relay, None, "10.0.0.1", script).await;
    let fin = finals(&r);
    assert_eq!(fin[2], "250 2.0.0 Ok");
    assert!(fin[6].starts_with("250 2.0.0 Ok: queued as"), "{fin:?}");
    let id = &queued(&f)[0].envelope.id;
    let mut body = Vec::new();
    spool::admin::show(&f.dir.path().join("spool"), id, &mut body).unwrap();
    assert!(body.ends_with(b"line one\r\nline two\r\n"));
}

#[tokio::test]
async fn smuggled_second_message_is_never_accepted() {
    for end in [
        &b"\n.\n"[..],
        b"\n.\r\n",
        b"\r.\r",
        b"\r\n.\n",
        b"\r.\r\n",
        b"\r\n\x00.\r\n",
    ] {
        for mode in [BareLineEndings::Refuse, BareLineEndings::Normalize] {
            let f = fixture(|c| c.limits.bare_line_endings = mode);
            let mut script = b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nDATA\r\nSubject: one\r\n\r\nfirst".to_vec();
            script.extend_from_slice(end);
            script.extend_from_slice(b"MAIL FROM:<evil@b.example>\r\nRCPT TO:<victim@y.example>\r\nDATA\r\nsmuggled\r\n.\r\nQUIT\r\n");
            let r = converse(&f, ListenerKind::Relay, None, "10.0.0.1", &script).await;
            let q = queued(&f);
            // At most one message, from the real sender, to the real recipient.
            assert!(q.len() <= 1, "{end:?} {mode:?}: {r:?}");
            for m in &q {
                assert_eq!(m.envelope.sender, "a@b.example");
                assert_eq!(m.envelope.recipients, ["x@y.example"]);
            }
            assert_eq!(codes(&r).last(), Some(&"221"), "{end:?} {mode:?}: {r:?}");
            // 220 EHLO MAIL RCPT 354 <one verdict> 221: the smuggled commands were data.
            assert_eq!(
                codes(&r).len(),
                7,
                "{end:?} {mode:?}: one DATA reply only: {r:?}"
            );
        }
    }
}

#[tokio::test]
async fn bdat_chunks_and_pipelining() {
    let f = fixture(|_| {});
    let mut script = b"EHLO c\r\nBDAT 3\r\nabc".to_vec();
    script.extend_from_slice(
        b"MAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nBDAT 12\r\nSubject: x\r\n",
    );
    script.extend_from_slice(b"BDAT 6 LAST\r\nbody\r\nDATA\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nBDAT 0 LAST\r\nQUIT\r\n");
    let r = converse(&f, ListenerKind::Relay, None, "10.0.0.1", &script).await;
    let fin = finals(&r);
    assert_eq!(fin[2], "503 5.5.1 Error: need MAIL command", "{fin:?}");
    assert_eq!(fin[5], "250 2.0.0 Ok: 12 octets received");
    assert!(fin[6].starts_with("250 2.0.0 Ok: queued as"), "{fin:?}");
    assert!(fin[7].starts_with("503 5.5.1"), "{fin:?}");
    assert!(fin[10].starts_with("250 2.0.0 Ok: queued as"), "{fin:?}");
    let q = queued(&f);
    assert_eq!(q.len(), 2);
    let mut body = Vec::new();
    spool::admin::show(&f.dir.path().join("spool"), &q[0].envelope.id, &mut body).unwrap();
    assert!(
        body.ends_with(b"Subject: x\r\nbody\r\n"),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

#[tokio::test]
async fn smtputf8_addresses_need_the_parameter() {
    let f = fixture(|_| {});
    let r = converse(&f, ListenerKind::Relay, None, "10.0.0.1",
        "EHLO c\r\nMAIL FROM:<jürgen@bücher.example>\r\nMAIL FROM:<jürgen@bücher.example> SMTPUTF8\r\nRCPT TO:<zoë@example.net>\r\nDATA\r\nSubject: grüße\r\n\r\nhallo\r\n.\r\nQUIT\r\n".as_bytes()).await;
    let fin = finals(&r);
    assert!(fin[2].starts_with("553 5.6.7"), "{fin:?}");
    assert_eq!(fin[3], "250 2.1.0 Ok");
    assert_eq!(fin[4], "250 2.1.5 Ok");
    assert!(fin[6].starts_with("250 2.0.0 Ok: queued"), "{fin:?}");
    let m = &queued(&f)[0];
    assert!(m.envelope.smtputf8 && m.envelope.eight_bit);
    assert_eq!(m.envelope.recipients, ["zoë@example.net"]);
}

#[tokio::test]
async fn too_many_errors_end_the_session() {
    let f = fixture(|c| c.limits.max_errors = 3);
    let r = converse(
        &f,
        ListenerKind::Relay,
        None,
        "10.0.0.1",
        b"A\r\nB\r\nC\r\nD\r\n",
    )
    .await;
    assert_eq!(codes(&r), ["220", "500", "500", "500", "421"], "{r:?}");
}

#[tokio::test]
async fn message_rate_per_client() {
    let f = fixture(|c| c.limits.messages_per_minute_per_ip = 2);
    let script = b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRSET\r\nMAIL FROM:<a@b.example>\r\nRSET\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n";
    let r = converse(&f, ListenerKind::Relay, None, "10.0.0.7", script).await;
    let fin = finals(&r);
    assert_eq!(fin[2], "250 2.1.0 Ok");
    assert_eq!(fin[4], "250 2.1.0 Ok");
    assert_eq!(
        fin[6],
        "450 4.7.1 Error: too much mail from your address; try again later"
    );
    // Another client is not affected.
    let r = converse(
        &f,
        ListenerKind::Relay,
        None,
        "10.0.0.8",
        b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n",
    )
    .await;
    assert_eq!(finals(&r)[2], "250 2.1.0 Ok");
}

/// RFC 4954 §4: an AUTH initial response may be as long as a SASL line (12288
/// octets), so long passwords and tokens fit; other commands keep the 512-octet limit.
#[tokio::test]
async fn long_auth_lines_fit_other_long_lines_do_not() {
    use base64::Engine;
    let f = fixture(|_| {});
    let long = "x".repeat(8_900);
    let token = base64::engine::general_purpose::STANDARD.encode(format!("\0alice\0{long}"));
    assert!(token.len() > 11_800, "{}", token.len());
    let input = format!(
        "EHLO c\r\nAUTH PLAIN {token}\r\nNOOP {}\r\nQUIT\r\n",
        "y".repeat(600)
    );
    let lines = converse(
        &f,
        ListenerKind::Submission,
        tls(),
        "192.0.2.7",
        input.as_bytes(),
    )
    .await;
    assert_eq!(
        codes(&lines),
        ["220", "250", "535", "500", "221"],
        "{lines:?}"
    );
}
