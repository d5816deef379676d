//! docs/quickstart.md, step by step, against a real API server: helm install, the
//! relay's YAML as written on the page, kubectl get, the generated password, then
//! swaks through 587 and the metrics. The test cluster has no kubelet, so where the
//! page port-forwards to the pod, the test runs the gateway binary with exactly what
//! the pod would mount, read back from the API server.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use postern_config::{DeliveryMode, GatewayConfig, ListenerKind};
use postern_tests::gateway::{gateway_bin, run_gateway};
use postern_tests::kube::TestCluster;
use postern_tests::peers::Swaks;
use postern_tests::process::{ChildGuard, SpawnGuarded};
use postern_tests::prometheus::http_get;
use postern_tests::wait::eventually;
use postern_tests::{repo_file, repo_text};

fn page() -> String {
    repo_text("docs/quickstart.md")
}

/// Steps 1 to 3 of the page done, and the gateway running with what the pod would
/// mount; shared by the tests of this binary, which check what the page says.
struct Done {
    cluster: TestCluster,
    /// The password the page reads from the generated Secret.
    password: String,
    submission: SocketAddr,
    metrics: SocketAddr,
    _operator: ChildGuard,
    _gateway: ChildGuard,
    _dir: tempfile::TempDir,
}

fn done() -> &'static Done {
    static DONE: OnceLock<Done> = OnceLock::new();
    DONE.get_or_init(|| {
        let page = page();
        let cluster = TestCluster::start().unwrap();
        let chart = repo_file("charts/postern");
        let chart = chart.to_str().unwrap();

        // 1. helm install (image values as the page shows; no pod runs here).
        assert!(
            page.contains(
                "helm install postern charts/postern -n postern-system --create-namespace"
            )
        );
        let out = cluster
            .helm(&[
                "install",
                "postern",
                chart,
                "-n",
                "postern-system",
                "--create-namespace",
                "--set",
                "image.repository=REGISTRY/postern",
                "--set",
                "image.tag=TAG",
            ])
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
            .wait_crds_established(&["mailrelays.postern.dev"], Duration::from_secs(60))
            .unwrap();
        let _operator = cluster
            .operator("REGISTRY/postern:TAG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn_guarded()
            .unwrap();

        // 2. The relay, with the YAML read from the page.
        let yaml = page
            .split("<<'YAML'\n")
            .nth(1)
            .and_then(|rest| rest.split("\nYAML\n").next())
            .expect("the MailRelay YAML on the page");
        cluster
            .kubectl_ok(&["create", "namespace", "apps"])
            .unwrap();
        let out = cluster
            .kubectl_with_stdin(&["apply", "-n", "apps", "-f", "-"], Some(yaml.as_bytes()))
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // 3. The generated password, as the page gets it.
        let encoded = eventually("the password Secret", Duration::from_secs(60), || {
            cluster
                .kubectl_ok(&[
                    "get",
                    "secret",
                    "mail-user-app",
                    "-n",
                    "apps",
                    "-o",
                    "jsonpath={.data.password}",
                ])
                .ok()
                .filter(|s| !s.is_empty())
        });
        let password = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .unwrap(),
        )
        .unwrap();

        // In place of the pod: what it would mount, from the API server.
        let dir = tempfile::tempdir().unwrap();
        let get = |args: &[&str]| cluster.kubectl_ok(args).unwrap();
        let toml = eventually("the gateway ConfigMap", Duration::from_secs(60), || {
            cluster
                .kubectl_ok(&[
                    "get",
                    "configmap",
                    "mail-config",
                    "-n",
                    "apps",
                    "-o",
                    "jsonpath={.data.gateway\\.toml}",
                ])
                .ok()
                .filter(|s| !s.is_empty())
        });
        let mut config: GatewayConfig = toml::from_str(&toml).unwrap();
        let decode = |b64: String| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .unwrap()
        };
        for (secret, key, file) in [
            ("mail-tls", "tls\\.crt", "tls.crt"),
            ("mail-tls", "tls\\.key", "tls.key"),
            ("mail-credentials", "credentials", "credentials"),
        ] {
            let data = decode(get(&[
                "get",
                "secret",
                secret,
                "-n",
                "apps",
                "-o",
                &format!("jsonpath={{.data.{key}}}"),
            ]));
            std::fs::write(dir.path().join(file), data).unwrap();
        }
        // Paths of this machine instead of the pod's mounts; loopback ports instead of the
        // Service; and no delivery: the test must not send mail off the machine.
        config.tls.certificate = dir.path().join("tls.crt");
        config.tls.private_key = dir.path().join("tls.key");
        config.auth.credentials_file = Some(dir.path().join("credentials"));
        config.spool.directory = dir.path().join("spool");
        config.spool.min_free_bytes = 1024 * 1024;
        let any_port: SocketAddr = ([127, 0, 0, 1], 0).into();
        config
            .listeners
            .retain(|l| l.kind == ListenerKind::Submission);
        config.listeners[0].address = any_port;
        config.metrics.address = any_port;
        config.delivery.mode = DeliveryMode::Hold;
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, config.to_toml().unwrap()).unwrap();
        let (_gateway, bound) = run_gateway(
            &gateway_bin(),
            &config_path,
            &dir.path().join("ready.json"),
            &dir.path().join("gateway.log"),
        )
        .unwrap();
        let submission = bound.listener(ListenerKind::Submission).unwrap();
        let metrics = bound.metrics.unwrap();
        Done {
            cluster,
            password,
            submission,
            metrics,
            _operator,
            _gateway,
            _dir: dir,
        }
    })
}

/// Step 2: `kubectl get mailrelays` lists the relay with its columns.
#[test]
fn kubectl_get_lists_the_relay() {
    let cluster = &done().cluster;
    let table = eventually("kubectl get mailrelays", Duration::from_secs(60), || {
        let t = cluster
            .kubectl_ok(&["get", "mailrelays", "-n", "apps"])
            .ok()?;
        t.contains("mail").then_some(t)
    });
    assert!(
        table.contains("READY") && table.contains("ENDPOINT"),
        "{table}"
    );
}

/// Step 4: swaks as on the page, then the metric the page greps for counts the
/// message.
#[test]
fn swaks_as_on_the_page_then_the_metric() {
    let page = page();
    let Done {
        password,
        submission,
        metrics,
        ..
    } = done();
    assert!(page.contains("swaks --server 127.0.0.1:2587 --tls --auth PLAIN --auth-user app"));
    let (ok, text) = Swaks::new(submission, "--tls --auth PLAIN")
        .login("app", password)
        .envelope("app@example.com", "someone@example.net")
        .run();
    assert!(ok, "{text}");
    assert!(text.contains("250 2.0.0 Ok: queued as"), "{text}");
    // 5. The metric the page greps for.
    let (status, body) = http_get(*metrics, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        body.lines()
            .any(|l| l == "postern_messages_received_total{listener=\"submission\"} 1"),
        "{body}"
    );
}

/// The page's claim about other senders.
#[test]
fn other_senders_are_refused_as_the_page_says() {
    let Done {
        password,
        submission,
        ..
    } = done();
    let (_, text) = Swaks::new(submission, "--tls --auth PLAIN")
        .login("app", password)
        .envelope("boss@elsewhere.example", "someone@example.net")
        .run();
    assert!(text.contains("553 5.7.1"), "{text}");
}
