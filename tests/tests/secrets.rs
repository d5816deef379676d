//! Guarantee 7: secrets never appear in logs, metrics, events or a MailRelay's status.
//!
//! The gateway: clients log in with AUTH PLAIN and AUTH LOGIN (swaks, and exact bytes
//! for the forms swaks does not send), with right and wrong passwords, a malformed
//! response, a password typed into the user-name field and a bearer token under a
//! mechanism the gateway does not know; the mail they submit goes to a Postfix
//! smarthost that requires AUTH, first with a wrong smarthost password (deferred),
//! then, after a restart with JSON logs, with the right one. Then the gateway's log
//! (trace level, text and JSON), a `/metrics` scrape, `queue list`, `check-config`
//! and the spool's bookkeeping (delivery state, the envelopes; not the mail bodies:
//! mail content is no log) are searched for every password and token used.
//!
//! The operator: a real API server; a MailRelay with a generated and a given user
//! password and smarthost credentials from a Secret (later rotated), and two broken
//! relays whose errors name Secrets. Then the operator's log (debug, its own crate at
//! trace), every Event in the namespace, the MailRelays with their status, the
//! rendered ConfigMaps and the workloads, and the operator's `/metrics` are searched
//! for the generated password, the given one and both smarthost passwords.
//!
//! Why this fails if the gateway logs an AUTH line: the scanner (`postern_tests::
//! secrets`) looks for each password raw, JSON-escaped, percent-encoded, in hex, as a
//! byte list, in both base64 alphabets with and without padding, as the AUTH PLAIN
//! token and the AUTH LOGIN responses, and inside any longer base64 blob at each of
//! the three byte alignments. Its unit tests plant each form; here, as a control on
//! live data, every swaks transcript and every exact exchange sent must itself be
//! reported by the scanner (and again when embedded in a JSON log line), and the
//! generated Kubernetes Secrets, which do hold the passwords, must be reported too.
//! A log line that recorded what the client sent would hold the same bytes.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use postern_api::MailRelay;
use postern_config::{DeliveryMode, LogFormat, SmarthostConfig, SmarthostTls};
use postern_tests::gateway::{
    BCRYPT_PASSWORD, BCRYPT_USER, PASSWORD, TestGateway, USER, built_bin, gateway_bin,
};
use postern_tests::kube::{TestCluster, create_relay, nudge};
use postern_tests::peers::{require, scratch_dir};
use postern_tests::postfix::{
    Delivery, PostfixInstance, SubmissionOptions, write_self_signed_cert,
};
use postern_tests::process::{SpawnGuarded, free_local_addr};
use postern_tests::secrets::{Hit, SecretScanner, report, spool_texts};
use postern_tests::smtp::Smtp;
use postern_tests::wait::{eventually, eventually_async};
use serde_json::json;

/// Wrong passwords are secrets too: often a typo of the right one, or another
/// account's.
const WRONG_FOR_ALICE: &str = "wrong-Pa55word-tried-for-alice";
const WRONG_FOR_BOB: &str = "wrong-Pa55word-tried-for-bob";
/// Sent where base64 belongs: the gateway must refuse it without recording it.
const MALFORMED: &str = "not-base64-Pa55word!";
/// A password typed into the user-name field, a known way passwords reach logs that
/// record failed user names.
const TYPED_AS_USER: &str = "Pa55word-typed-as-user-name";
/// A bearer token under a mechanism the gateway does not offer.
const BEARER: &str = "ya29.bearer-token-Qx81Lm0Z";
const SMARTHOST_PASSWORD: &str = "sm4rthost-Pa55-q7Zx";
const WRONG_SMARTHOST_PASSWORD: &str = "wrong-sm4rthost-Pa55-K2";

fn swaks(args: &[&str]) -> (bool, String) {
    let out = Command::new(require("swaks").unwrap())
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

/// The control: `transcript` (what a client sent) must be reported for `secret`, and
/// so must each line of it that carried the secret when embedded in a log line, text
/// or JSON. Returns how many lines carried it.
fn assert_scanner_sees(scanner: &SecretScanner, what: &str, transcript: &str, secret: &str) {
    let hits = scanner.scan(what, transcript.as_bytes());
    assert!(
        hits.iter().any(|h| h.secret == secret),
        "control failed: the scanner does not see {secret} in {what}:\n{transcript}\n{}",
        report(&hits)
    );
    for h in hits.iter().filter(|h| h.secret == secret) {
        let line = transcript.lines().nth(h.line - 1).unwrap();
        let text_log = format!(
            "2026-01-01T00:00:00.000000Z DEBUG postern_gateway::session: command line={line:?}\n"
        );
        let json_log = format!(
            "{}\n",
            json!({"level": "DEBUG", "fields": {"message": "command", "line": line}})
        );
        for log in [text_log, json_log] {
            assert!(
                scanner
                    .scan("planted", log.as_bytes())
                    .iter()
                    .any(|x| x.secret == secret),
                "control failed: {secret} not seen in {log}"
            );
        }
    }
}

/// Hits over every text scanned, and what was scanned.
#[derive(Default)]
struct Findings {
    hits: Vec<Hit>,
    scanned: Vec<(String, usize)>,
}

impl Findings {
    fn scan(&mut self, scanner: &SecretScanner, what: &str, text: impl AsRef<[u8]>) {
        let text = text.as_ref();
        self.hits.extend(scanner.scan(what, text));
        self.scanned.push((what.to_owned(), text.len()));
    }

    /// Fails listing every hit; says what was scanned either way.
    fn assert_clean(&self, scanner: &SecretScanner) {
        let secrets: std::collections::BTreeSet<&str> = scanner.forms().map(|f| f.0).collect();
        eprintln!(
            "searched {} texts ({} bytes) for {} secrets in {} forms:",
            self.scanned.len(),
            self.scanned.iter().map(|s| s.1).sum::<usize>(),
            secrets.len(),
            scanner.forms().count()
        );
        for (what, len) in &self.scanned {
            eprintln!("  {len:>9} bytes  {what}");
        }
        assert!(
            self.hits.is_empty(),
            "secrets found where none may be ({} hits):\n{}",
            self.hits.len(),
            report(&self.hits)
        );
    }
}

/// Submits a message on an authenticated connection; returns the queue ID.
fn submit(s: &mut Smtp, from: &str) -> String {
    assert_eq!(s.cmd(&format!("MAIL FROM:<{from}>")).unwrap().code, 250);
    assert_eq!(s.cmd("RCPT TO:<someone@example.net>").unwrap().code, 250);
    assert_eq!(s.cmd("DATA").unwrap().code, 354);
    let r = s.cmd("Subject: secrets\r\n\r\nhello\r\n.").unwrap();
    assert_eq!(r.code, 250, "{}", r.text);
    r.last_line().rsplit(' ').next().unwrap().to_owned()
}

/// Every kind of login against the gateway; returns how many messages were queued.
fn logins(gw: &TestGateway, scanner: &SecretScanner) -> usize {
    let submission = gw.submission.to_string();
    let submissions = gw.submissions.to_string();
    let mut queued = 0;

    // swaks: PLAIN on 587 after STARTTLS, right and wrong password.
    for (password, ok, label) in [
        (PASSWORD, true, "alice's password"),
        (WRONG_FOR_ALICE, false, "a wrong password tried for alice"),
    ] {
        let (success, out) = swaks(&[
            "--server",
            &submission,
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            USER,
            "--auth-password",
            password,
            "--from",
            "app@example.com",
            "--to",
            "someone@example.net",
        ]);
        assert_eq!(success, ok, "{out}");
        if ok {
            assert!(out.contains("235 2.7.0 Authentication successful"), "{out}");
            queued += 1;
        } else {
            assert!(out.contains("535 5.7.8"), "{out}");
        }
        assert_scanner_sees(scanner, "swaks AUTH PLAIN transcript", &out, label);
    }
    // swaks: LOGIN on 465 (implicit TLS), bob's bcrypt password and a wrong one.
    for (password, ok, label) in [
        (BCRYPT_PASSWORD, true, "bob's password"),
        (WRONG_FOR_BOB, false, "a wrong password tried for bob"),
    ] {
        let (success, out) = swaks(&[
            "--server",
            &submissions,
            "--tlsc",
            "--auth",
            "LOGIN",
            "--auth-user",
            BCRYPT_USER,
            "--auth-password",
            password,
            "--from",
            "bob@example.org",
            "--to",
            "someone@example.net",
        ]);
        assert_eq!(success, ok, "{out}");
        if ok {
            queued += 1;
        } else {
            assert!(out.contains("535 5.7.8"), "{out}");
        }
        assert_scanner_sees(scanner, "swaks AUTH LOGIN transcript", &out, label);
    }

    // Exact bytes, for what swaks does not send. Each line sent is kept as the
    // control transcript.
    let mut sent = String::new();
    let mut cmd = |s: &mut Smtp, line: &str| {
        sent.push_str(line);
        sent.push('\n');
        s.cmd(line).unwrap()
    };
    // PLAIN without an initial response, with an authorization identity.
    let (mut s, _) = Smtp::connect_tls(gw.submissions).unwrap();
    assert_eq!(cmd(&mut s, "EHLO client.test").code, 250);
    assert_eq!(cmd(&mut s, "AUTH PLAIN").code, 334);
    let token = B64.encode(format!("{USER}\0{USER}\0{PASSWORD}"));
    assert_eq!(cmd(&mut s, &token).code, 235);
    submit(&mut s, "app@example.com");
    queued += 1;
    // LOGIN with the user name as initial response, then a wrong password.
    let (mut s, _) = Smtp::connect_tls(gw.submissions).unwrap();
    assert_eq!(cmd(&mut s, "EHLO client.test").code, 250);
    let r = cmd(&mut s, &format!("AUTH LOGIN {}", B64.encode(USER)));
    assert_eq!(r.code, 334, "{}", r.text);
    assert_eq!(cmd(&mut s, &B64.encode(WRONG_FOR_ALICE)).code, 535);
    // A response that is not base64 at all, and one that is not PLAIN's shape.
    let r = cmd(&mut s, &format!("AUTH PLAIN {MALFORMED}"));
    assert!(r.code == 501 || r.code == 535, "{}", r.text);
    assert_eq!(cmd(&mut s, "AUTH PLAIN").code, 334);
    let r = cmd(&mut s, MALFORMED);
    assert!(r.code == 501 || r.code == 535, "{}", r.text);
    // The password typed where the user name belongs.
    assert_eq!(cmd(&mut s, "AUTH LOGIN").code, 334);
    assert_eq!(cmd(&mut s, &B64.encode(TYPED_AS_USER)).code, 334);
    assert_eq!(cmd(&mut s, &B64.encode(PASSWORD)).code, 535);
    // An unknown mechanism with a bearer token.
    let r = cmd(
        &mut s,
        &format!(
            "AUTH XOAUTH2 {}",
            B64.encode(format!("user={USER}\x01auth=Bearer {BEARER}\x01\x01"))
        ),
    );
    assert_eq!(r.code, 504, "{}", r.text);
    // A session that authenticates on the submission port after STARTTLS.
    let (mut s, _) = Smtp::connect(gw.submission).unwrap();
    assert_eq!(cmd(&mut s, "EHLO client.test").code, 250);
    assert_eq!(cmd(&mut s, "STARTTLS").code, 220);
    let mut s = s.upgrade().unwrap();
    assert_eq!(cmd(&mut s, "EHLO client.test").code, 250);
    let token = B64.encode(format!("\0{BCRYPT_USER}\0{BCRYPT_PASSWORD}"));
    assert_eq!(cmd(&mut s, &format!("AUTH PLAIN {token}")).code, 235);
    submit(&mut s, "bob@example.org");
    queued += 1;

    for label in [
        "alice's password",
        "bob's password",
        "a wrong password tried for alice",
        "a malformed SASL response",
        "a password typed as the user name",
        "a bearer token",
    ] {
        assert_scanner_sees(scanner, "the exact exchanges", &sent, label);
    }
    queued
}

fn gateway_log_has_both_outcomes(log: &str) {
    assert!(log.contains("authenticated"), "{log}");
    assert!(log.contains("authentication failed"), "{log}");
}

#[test]
fn gateway_never_records_a_password() {
    let dir = scratch_dir("secrets-").unwrap();
    let cert = write_self_signed_cert(dir.path(), &["127.0.0.1"]).unwrap();
    let mut opts = SubmissionOptions::new(free_local_addr().unwrap(), cert.clone());
    opts.password = SMARTHOST_PASSWORD.to_owned();
    opts.delivery = Delivery::Hold;
    let postfix = PostfixInstance::submission(&opts).unwrap();
    let sh_login = opts.login();
    let sh_creds = dir.path().join("smarthost-credentials");
    std::fs::write(
        &sh_creds,
        format!("{sh_login}:{WRONG_SMARTHOST_PASSWORD}\n"),
    )
    .unwrap();

    let mut scanner = SecretScanner::new();
    scanner
        .login("alice's password", USER, PASSWORD)
        .login("bob's password", BCRYPT_USER, BCRYPT_PASSWORD)
        .login("a wrong password tried for alice", USER, WRONG_FOR_ALICE)
        .login("a wrong password tried for bob", BCRYPT_USER, WRONG_FOR_BOB)
        .secret("a malformed SASL response", MALFORMED)
        .secret("a password typed as the user name", TYPED_AS_USER)
        .secret("a bearer token", BEARER)
        .login("the smarthost password", &sh_login, SMARTHOST_PASSWORD)
        .login(
            "a wrong smarthost password",
            &sh_login,
            WRONG_SMARTHOST_PASSWORD,
        );

    let smarthost = SmarthostConfig {
        host: opts.listen.ip().to_string(),
        port: opts.listen.port(),
        tls: SmarthostTls::Starttls,
        credentials_file: Some(sh_creds.clone()),
        verify_certificate: true,
        ca_file: Some(cert.certificate.clone()),
    };
    let mut gw = TestGateway::start(|c| {
        // Every line any crate logs: the more is logged, the more this test checks.
        c.log.level = "trace".into();
        c.log.format = LogFormat::Text;
        c.delivery.mode = DeliveryMode::Smarthost;
        c.delivery.smarthost = Some(smarthost);
        c.delivery.retry.initial = Duration::from_secs(1);
        c.delivery.retry.max = Duration::from_secs(2);
        // Enough failed logins in a row are tried here to block the client otherwise.
        c.auth.block_after_failures = 1000;
        c.auth.failure_delay = Duration::from_millis(100);
    })
    .unwrap();

    let mut found = Findings::default();
    // Phase 1: text logs; the smarthost refuses the wrong password, so mail defers
    // and the spool keeps its delivery state.
    let mut queued = logins(&gw, &scanner);
    eventually(
        "a deferral for the wrong smarthost password",
        Duration::from_secs(60),
        || {
            let q = gw.queue().unwrap();
            q.len() == queued
                && q.iter().all(|m| {
                    m["delivery"][0]["last_result"]
                        .as_str()
                        .is_some_and(|r| r.contains("authentication failed"))
                })
        },
    );
    let texts = spool_texts(&gw.config.spool.directory).unwrap();
    assert!(
        texts.iter().any(|(name, _)| name.contains("state")),
        "deferred mail has delivery state to check: {:?}",
        texts.iter().map(|t| &t.0).collect::<Vec<_>>()
    );
    for (name, text) in &texts {
        found.scan(&scanner, name, text);
    }
    found.scan(
        &scanner,
        "queue list (deferred)",
        serde_json::to_string(&gw.queue().unwrap()).unwrap(),
    );
    found.scan(&scanner, "GET /metrics (deferred)", gw.scrape().unwrap());

    // Phase 2: the right smarthost password, JSON logs (which escape what they
    // quote), and the same logins again; then everything is delivered.
    std::fs::write(&sh_creds, format!("{sh_login}:{SMARTHOST_PASSWORD}\n")).unwrap();
    gw.reconfigure(|c| c.log.format = LogFormat::Json).unwrap();
    queued += logins(&gw, &scanner);
    eventually("delivery to the smarthost", Duration::from_secs(60), || {
        gw.queue().unwrap().is_empty()
    });
    postfix
        .wait_for_log(
            &format!("sasl_username={sh_login}"),
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(postfix.queued_ids().unwrap().len(), queued);

    let metrics = gw.scrape().unwrap();
    assert!(
        metrics.contains("postern_auth_attempts_total"),
        "the scrape counts logins: {metrics}"
    );
    found.scan(&scanner, "GET /metrics", &metrics);
    for (name, text) in spool_texts(&gw.config.spool.directory).unwrap() {
        found.scan(&scanner, &name, &text);
    }
    let check = Command::new(gateway_bin())
        .args(["check-config", "--config"])
        .arg(&gw.config_path)
        .output()
        .unwrap();
    assert!(check.status.success());
    found.scan(&scanner, "postern-gateway check-config", &check.stdout);
    found.scan(
        &scanner,
        "postern-gateway check-config (stderr)",
        &check.stderr,
    );

    let log = gw.log();
    gateway_log_has_both_outcomes(&log);
    eprintln!(
        "gateway log: {} lines, {} of them at debug or trace level",
        log.lines().count(),
        log.lines()
            .filter(|l| ["TRACE", "DEBUG"].iter().any(|lvl| l.contains(lvl)))
            .count()
    );
    assert!(
        log.contains(" TRACE ") && log.contains("\"level\":\"TRACE\""),
        "trace-level lines in both formats are part of the check"
    );
    assert!(log.contains("deferred"), "{log}");
    found.scan(&scanner, "gateway log", &log);
    found.assert_clean(&scanner);
}

const NS: &str = "secrets";

async fn create_secret(client: &Client, name: &str, data: serde_json::Value) {
    let api: Api<Secret> = Api::namespaced(client.clone(), NS);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data})).unwrap(),
    )
    .await
    .unwrap();
}

fn secret_text(s: &Secret, key: &str) -> String {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .unwrap_or_default()
}

fn kubectl_json(cluster: &TestCluster, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend(["-n", NS, "-o", "json"]);
    cluster.kubectl_ok(&all).unwrap()
}

fn item_count(json_list: &str) -> usize {
    serde_json::from_str::<serde_json::Value>(json_list).unwrap()["items"]
        .as_array()
        .map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_never_records_a_password() {
    const GIVEN: &str = "given-Pa55word-of-app2";
    const SMARTHOST: &str = "op-sm4rthost-Pa55-9Kq";
    const ROTATED: &str = "rotated-sm4rthost-Pa55-7Wd";
    const MISFILED: &str = "misfiled-Pa55word-under-a-wrong-key";
    const BROKEN_CA_KEY: &str = "broken-ca-Secret-Pa55word-Zt4";

    let cluster = TestCluster::start().unwrap();
    let client = cluster.client().await.unwrap();
    let crd = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/mailrelays.postern.dev.yaml");
    cluster.apply_files(&[&crd]).unwrap();
    cluster
        .wait_crds_established(&["mailrelays.postern.dev"], Duration::from_secs(60))
        .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap(),
        )
        .await
        .unwrap();
    create_secret(&client, "app2-pw", json!({"password": GIVEN})).await;
    create_secret(
        &client,
        "smarthost-login",
        json!({"username": "relay@smtp.example.net", "password": SMARTHOST}),
    )
    .await;
    // Credentials under a wrong key: the operator must say which key is missing, not
    // what the Secret holds.
    create_secret(
        &client,
        "smarthost-misfiled",
        json!({"username": "relay@smtp.example.net", "passwd": MISFILED}),
    )
    .await;

    // A CA Secret without ca.key (but with another secret in it): the reconcile of
    // relay2 fails and says so in a Warning Event.
    create_secret(
        &client,
        "relay2-ca",
        json!({"ca.crt": "not a certificate", "tls.key": BROKEN_CA_KEY}),
    )
    .await;

    let logdir = scratch_dir("operator-log-").unwrap();
    let log_path = logdir.path().join("operator.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let metrics: SocketAddr = free_local_addr().unwrap();
    let _operator = Command::new(built_bin("postern-operator"))
        .env("KUBECONFIG", cluster.kubeconfig_path())
        // kube-rs and hyper at debug, the operator's own code at trace.
        .env("RUST_LOG", "debug,postern_operator=trace")
        .args(["--gateway-image", "postern:test", "--metrics-address"])
        .arg(metrics.to_string())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn_guarded()
        .expect("starting postern-operator");

    create_relay(
        NS,
        &client,
        "relay1",
        json!({
            "users": [
                {"name": "app", "allowedSenders": ["@example.com"]},
                {"name": "app2", "allowedSenders": ["a@example.org"],
                 "passwordSecretRef": {"name": "app2-pw", "key": "password"}}
            ],
            "relay": {"mode": "smarthost", "smarthost": {
                "host": "smtp.example.net", "port": 587, "credentialsSecret": "smarthost-login"}}
        }),
    )
    .await;
    // A user whose password Secret lacks the key (Degraded), and the broken CA Secret
    // (the reconcile fails).
    create_relay(
        NS,
        &client,
        "relay2",
        json!({"users": [{"name": "app", "allowedSenders": ["*"],
            "passwordSecretRef": {"name": "app2-pw", "key": "no-such-key"}}]}),
    )
    .await;
    // Smarthost credentials under the wrong key: Degraded.
    create_relay(
        NS,
        &client,
        "relay3",
        json!({"relay": {"mode": "smarthost", "smarthost": {
            "host": "smtp.example.net", "credentialsSecret": "smarthost-misfiled"}}}),
    )
    .await;

    let relays: Api<MailRelay> = Api::namespaced(client.clone(), NS);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    eventually_async("relay1 status", Duration::from_secs(90), || async {
        let r = relays.get("relay1").await.ok()?;
        (r.status.as_ref()?.observed_generation == r.metadata.generation).then_some(())
    })
    .await;
    eventually_async("relay3 degraded", Duration::from_secs(90), || async {
        let r = relays.get("relay3").await.ok()?;
        r.status
            .as_ref()?
            .conditions
            .iter()
            .any(|c| c.type_ == "Degraded" && c.status == "True")
            .then_some(())
    })
    .await;
    eventually_async(
        "a ReconcileFailed event for relay2",
        Duration::from_secs(90),
        || async {
            let events = kubectl_json(&cluster, &["get", "events.events.k8s.io"]);
            (events.contains("ReconcileFailed") && events.contains("relay2")).then_some(())
        },
    )
    .await;

    // Rotate the smarthost password; a nudge makes the operator reconcile now.
    secrets
        .patch(
            "smarthost-login",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": ROTATED}})),
        )
        .await
        .unwrap();
    nudge(&relays, "relay1").await;
    eventually_async(
        "the rotated smarthost password",
        Duration::from_secs(90),
        || async {
            let s = secrets.get("relay1-smarthost").await.ok()?;
            s.data
                .as_ref()?
                .values()
                .any(|v| String::from_utf8_lossy(&v.0).contains(ROTATED))
                .then_some(())
        },
    )
    .await;
    eventually_async("relay1 events", Duration::from_secs(60), || async {
        let events = kubectl_json(&cluster, &["get", "events.events.k8s.io"]);
        (events.contains("relay1") && events.contains("Created")).then_some(())
    })
    .await;

    let generated_secret = secrets.get("relay1-user-app").await.unwrap();
    let generated = secret_text(&generated_secret, "password");
    assert_eq!(generated.len(), 20);
    let mut scanner = SecretScanner::new();
    scanner
        .login("the generated password of app", "app", &generated)
        .login("the given password of app2", "app2", GIVEN)
        .login(
            "the smarthost password",
            "relay@smtp.example.net",
            SMARTHOST,
        )
        .login(
            "the rotated smarthost password",
            "relay@smtp.example.net",
            ROTATED,
        )
        .secret("a password under a wrong key", MISFILED)
        .secret("a secret in a broken CA Secret", BROKEN_CA_KEY);
    // The private keys the operator made: every line of their PEM bodies, so that a
    // part of a key is found too.
    for (name, key) in [("relay1-ca", "ca.key"), ("relay1-tls", "tls.key")] {
        let pem = secret_text(&secrets.get(name).await.unwrap(), key);
        assert!(pem.contains("PRIVATE KEY"), "{name}: {pem}");
        for (i, line) in pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 40)
            .enumerate()
        {
            scanner.secret(
                &format!("the private key in {name} (body line {})", i + 1),
                line,
            );
        }
    }

    // Controls: the Secrets that are meant to hold the passwords, as kubectl shows
    // them (base64, the smarthost one inside the encoded `user:password` line).
    for (name, label) in [
        ("relay1-user-app", "the generated password of app"),
        ("relay1-smarthost", "the rotated smarthost password"),
        ("app2-pw", "the given password of app2"),
    ] {
        let json = cluster
            .kubectl_ok(&["get", "secret", name, "-n", NS, "-o", "json"])
            .unwrap();
        let hits = scanner.scan(name, json.as_bytes());
        assert!(
            hits.iter().any(|h| h.secret == label),
            "control failed: {label} not seen in Secret {name}:\n{json}"
        );
    }

    let mut found = Findings::default();
    let mut scan = |what: &str, text: &str| found.scan(&scanner, what, text);
    let events_v1 = kubectl_json(&cluster, &["get", "events.events.k8s.io"]);
    let events_core = kubectl_json(&cluster, &["get", "events"]);
    assert!(item_count(&events_v1) >= 3, "{events_v1}");
    for text in [&events_v1, &events_core] {
        assert!(text.contains("ReconcileFailed"), "{text}");
    }
    scan("Events (events.k8s.io/v1)", &events_v1);
    scan("Events (v1)", &events_core);
    let relays_json = kubectl_json(&cluster, &["get", "mailrelays"]);
    assert_eq!(item_count(&relays_json), 3);
    assert!(relays_json.contains("\"status\""), "{relays_json}");
    scan("MailRelays with status", &relays_json);
    let configmaps = kubectl_json(&cluster, &["get", "configmaps"]);
    assert!(configmaps.contains("relay1-config"), "{configmaps}");
    assert!(configmaps.contains("credentials_file"), "{configmaps}");
    scan("ConfigMaps", &configmaps);
    let workloads = kubectl_json(
        &cluster,
        &[
            "get",
            "statefulsets,deployments,services,poddisruptionbudgets",
        ],
    );
    assert!(item_count(&workloads) >= 4, "{workloads}");
    scan("StatefulSets, Deployments, Services, PDBs", &workloads);
    let scrape = postern_tests::prometheus::scrape(metrics).unwrap();
    scan("operator GET /metrics", &scrape);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("DEBUG"), "debug lines are part of the check");
    scan("operator log", &log);
    found.assert_clean(&scanner);
}
