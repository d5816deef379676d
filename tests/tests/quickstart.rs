//! docs/quickstart.md, step by step, against a real API server: helm install, the
//! relay's YAML as written on the page, kubectl get, the generated password, then
//! swaks through 587 and the metrics. The test cluster has no kubelet, so where the
//! page port-forwards to the pod, the test runs the gateway binary with exactly what
//! the pod would mount, read back from the API server.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use postern_config::{DeliveryMode, GatewayConfig, ListenerKind};
use postern_tests::gateway::{built_bin, free_port, gateway_bin, require};
use postern_tests::kube::TestCluster;
use postern_tests::prometheus::http_get;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn page() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/quickstart.md"
    ))
    .unwrap()
}

fn wait<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn quickstart_steps_work() {
    let page = page();
    let cluster = TestCluster::start().unwrap();
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/postern");

    // 1. helm install (image values as the page shows; no pod runs here).
    assert!(
        page.contains("helm install postern charts/postern -n postern-system --create-namespace")
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
    let _operator = Killed(
        Command::new(built_bin("postern-operator"))
            .env("KUBECONFIG", cluster.kubeconfig_path())
            .args([
                "--gateway-image",
                "REGISTRY/postern:TAG",
                "--metrics-address",
            ])
            .arg(format!("127.0.0.1:{}", free_port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

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
    let table = wait("kubectl get mailrelays", 60, || {
        let t = cluster
            .kubectl_ok(&["get", "mailrelays", "-n", "apps"])
            .ok()?;
        t.contains("mail").then_some(t)
    });
    assert!(
        table.contains("READY") && table.contains("ENDPOINT"),
        "{table}"
    );

    // 3. The generated password, as the page gets it.
    let encoded = wait("the password Secret", 60, || {
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
    let toml = wait("the gateway ConfigMap", 60, || {
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
    let submission: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let metrics: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    config
        .listeners
        .retain(|l| l.kind == ListenerKind::Submission);
    config.listeners[0].address = submission;
    config.metrics.address = metrics;
    config.delivery.mode = DeliveryMode::Hold;
    let config_path = dir.path().join("gateway.toml");
    std::fs::write(&config_path, config.to_toml().unwrap()).unwrap();
    let _gateway = Killed(
        Command::new(gateway_bin())
            .args(["run", "--config"])
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait("the gateway to listen", 30, || {
        std::net::TcpStream::connect(submission).ok()
    });

    // 4. swaks as on the page.
    assert!(page.contains("swaks --server 127.0.0.1:2587 --tls --auth PLAIN --auth-user app"));
    let out = Command::new(require("swaks"))
        .args([
            "--server",
            &submission.to_string(),
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "app",
            "--auth-password",
            &password,
        ])
        .args(["--from", "app@example.com", "--to", "someone@example.net"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("250 2.0.0 Ok: queued as"), "{text}");
    // The page's claim about other senders.
    let out = Command::new(require("swaks"))
        .args([
            "--server",
            &submission.to_string(),
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "app",
            "--auth-password",
            &password,
        ])
        .args([
            "--from",
            "boss@elsewhere.example",
            "--to",
            "someone@example.net",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("553 5.7.1"));

    // 5. The metric the page greps for.
    let (status, body) = http_get(metrics, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        body.lines()
            .any(|l| l == "postern_messages_received_total{listener=\"submission\"} 1"),
        "{body}"
    );
}
