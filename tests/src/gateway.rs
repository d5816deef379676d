//! Runs the built `postern-gateway` binary as a black box: a private directory with
//! its configuration, a self-signed certificate, a credentials file and a spool;
//! every listener and the metrics server on port 0 of 127.0.0.1, the ports the kernel
//! chose read from the file `run --ready-file` writes; kill -9 and restart (on the
//! same ports) for crash tests; the `queue` subcommand to see what was accepted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use postern_config::{DeliveryMode, GatewayConfig, ListenerConfig, ListenerKind};

use crate::process::{ChildGuard, SpawnGuarded};
use crate::smtp::Smtp;

/// The user every test gateway has, allowed to send as `@example.com`.
pub const USER: &str = "alice";
/// Its password.
pub const PASSWORD: &str = "correct horse battery";
/// A second user, with a bcrypt hash, allowed to send as `bob@example.org` only.
pub const BCRYPT_USER: &str = "bob";
/// Its password.
pub const BCRYPT_PASSWORD: &str = "bobs secret";

/// Path of the gateway binary: `POSTERN_GATEWAY_BIN`, or beside the test binary's
/// directory (`target/<profile>/postern-gateway`).
pub fn gateway_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("POSTERN_GATEWAY_BIN") {
        return PathBuf::from(p);
    }
    built_bin("postern-gateway")
}

/// A binary of this workspace, built beside the test binary (`target/<profile>/NAME`).
pub fn built_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let bin = profile_dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build --bins)",
        bin.display()
    );
    bin
}

/// What a gateway bound, from its ready file.
#[derive(Debug, Clone)]
pub struct Bound {
    /// Every listener, in the order of the configuration.
    pub listeners: Vec<(ListenerKind, SocketAddr)>,
    /// The metrics and health HTTP server, unless disabled.
    pub metrics: Option<SocketAddr>,
}

impl Bound {
    /// The (first) listener of `kind`.
    pub fn listener(&self, kind: ListenerKind) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, a)| *a)
    }
}

/// Runs `BIN run --config CONFIG --ready-file READY` (`bin` is a `postern-gateway`
/// binary, e.g. [`gateway_bin`]) with its output appended to `log`, and waits until it
/// has written the ready file (every listener and the metrics server bound); returns
/// the process and what it bound.
pub fn run_gateway(
    bin: &Path,
    config: &Path,
    ready: &Path,
    log: &Path,
) -> Result<(ChildGuard, Bound)> {
    let _ = std::fs::remove_file(ready);
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut child = Command::new(bin)
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--ready-file")
        .arg(ready)
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn_guarded()
        .context("starting postern-gateway")?;
    let said = || std::fs::read_to_string(log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        if let Ok(text) = std::fs::read_to_string(ready) {
            break text;
        }
        if let Some(status) = child.try_wait()? {
            bail!("gateway exited with {status}:\n{}", said());
        }
        if Instant::now() > deadline {
            bail!("gateway wrote no ready file in 30 s:\n{}", said());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let doc: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("ready file {text:?}"))?;
    let listeners = doc["listeners"]
        .as_array()
        .with_context(|| format!("no listeners in the ready file {text:?}"))?
        .iter()
        .map(|l| {
            let kind = match l["kind"].as_str() {
                Some("relay") => ListenerKind::Relay,
                Some("submission") => ListenerKind::Submission,
                Some("submissions") => ListenerKind::Submissions,
                _ => bail!("unknown listener kind in the ready file {text:?}"),
            };
            let address = l["address"]
                .as_str()
                .and_then(|a| a.parse().ok())
                .with_context(|| format!("bad listener address in the ready file {text:?}"))?;
            Ok((kind, address))
        })
        .collect::<Result<Vec<_>>>()?;
    let metrics = match &doc["metrics"] {
        serde_json::Value::Null => None,
        m => Some(
            m.as_str()
                .and_then(|a| a.parse().ok())
                .with_context(|| format!("bad metrics address in the ready file {text:?}"))?,
        ),
    };
    Ok((child, Bound { listeners, metrics }))
}

/// One gateway process and its files.
pub struct TestGateway {
    pub dir: tempfile::TempDir,
    pub config: GatewayConfig,
    pub config_path: PathBuf,
    pub relay: SocketAddr,
    pub submission: SocketAddr,
    pub submissions: SocketAddr,
    /// The metrics and health HTTP server, unless the configuration disables it.
    pub metrics: Option<SocketAddr>,
    child: Option<ChildGuard>,
    log_path: PathBuf,
    ready_path: PathBuf,
}

/// Opens the relay port to 127.0.0.0/8, where every test client is.
pub fn trust_loopback(c: &mut GatewayConfig) {
    c.relay.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
}

/// Configures MX delivery with `nameserver` as the only DNS server, short timeouts and
/// retries for tests, and the relay port open to 127.0.0.0/8.
pub fn deliver_by_mx(c: &mut GatewayConfig, nameserver: SocketAddr) {
    trust_loopback(c);
    c.delivery.mode = DeliveryMode::Mx;
    c.delivery.dns.nameservers = vec![nameserver];
    c.delivery.dns.timeout = Duration::from_secs(1);
    c.delivery.dns.attempts = 1;
    c.delivery.retry.initial = Duration::from_secs(1);
    c.delivery.retry.max = Duration::from_secs(2);
    c.delivery.timeouts.connect = Duration::from_secs(2);
}

/// `postern-gateway hash-password` (with `--bcrypt` when `bcrypt`): the hash of
/// `password` for a credentials file.
pub fn hash_password(password: &str, bcrypt: bool) -> Result<String> {
    let mut cmd = Command::new(gateway_bin());
    cmd.arg("hash-password");
    if bcrypt {
        cmd.arg("--bcrypt");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running postern-gateway hash-password")?;
    use std::io::Write;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(format!("{password}\n").as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "hash-password failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

impl TestGateway {
    /// Writes a configuration (changed by `tweak`) and starts the gateway.
    pub fn start(tweak: impl FnOnce(&mut GatewayConfig)) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        // Port 0 everywhere: the kernel picks, the ready file says what it picked. The
        // gateway refuses two listeners with one configured address, so each has a
        // loopback address of its own (clients still connect from 127.0.0.1).
        let any_port: SocketAddr = ([127, 0, 0, 1], 0).into();
        let creds = dir.path().join("credentials");
        std::fs::write(
            &creds,
            format!(
                "{USER}:{}:@example.com\n{BCRYPT_USER}:{}:bob@example.org\n",
                hash_password(PASSWORD, false)?,
                hash_password(BCRYPT_PASSWORD, true)?
            ),
        )?;
        let mut config = GatewayConfig {
            hostname: "gateway.test".into(),
            listeners: vec![
                ListenerConfig::new(ListenerKind::Relay, any_port),
                ListenerConfig::new(ListenerKind::Submission, ([127, 0, 0, 2], 0).into()),
                ListenerConfig::new(ListenerKind::Submissions, ([127, 0, 0, 3], 0).into()),
            ],
            ..GatewayConfig::default()
        };
        config.tls.certificate = dir.path().join("tls.crt");
        config.tls.private_key = dir.path().join("tls.key");
        config.tls.self_signed_if_missing = true;
        config.tls.reload_interval = Duration::from_millis(500);
        config.auth.credentials_file = Some(creds);
        config.auth.reload_interval = Duration::from_millis(500);
        config.spool.directory = dir.path().join("spool");
        // Tests run side by side: each gateway gets its own loopback metrics port.
        config.metrics.address = any_port;
        // Test machines' disks may be fuller than a production spool volume.
        config.spool.min_free_bytes = 1024 * 1024;
        config.log.level = "debug".into();
        // Tests that are not about delivery keep mail queued; delivery tests set
        // mx or smarthost mode and point DNS at their own server.
        config.delivery.mode = postern_config::DeliveryMode::Hold;
        tweak(&mut config);
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, config.to_toml()?)?;
        let log_path = dir.path().join("gateway.log");
        let ready_path = dir.path().join("ready.json");
        let mut gw = Self {
            dir,
            config,
            config_path,
            relay: any_port,
            submission: any_port,
            submissions: any_port,
            metrics: None,
            child: None,
            log_path,
            ready_path,
        };
        gw.spawn()?;
        Ok(gw)
    }

    /// Starts the process (again) and waits until it has written its ready file: every
    /// listener and the metrics server are bound. The addresses it bound are written
    /// back into the configuration, so a restart (after a crash, say) binds the same
    /// ports and clients that keep an address find the gateway again.
    pub fn spawn(&mut self) -> Result<()> {
        let (child, bound) = run_gateway(
            &gateway_bin(),
            &self.config_path,
            &self.ready_path,
            &self.log_path,
        )?;
        self.child = Some(child);
        if bound.listeners.len() != self.config.listeners.len() {
            bail!("the gateway bound {:?}", bound.listeners);
        }
        for (listener, (kind, address)) in self.config.listeners.iter_mut().zip(&bound.listeners) {
            if *kind != listener.kind {
                bail!("the gateway bound {:?}", bound.listeners);
            }
            listener.address = *address;
            match kind {
                ListenerKind::Relay => self.relay = *address,
                ListenerKind::Submission => self.submission = *address,
                ListenerKind::Submissions => self.submissions = *address,
            }
        }
        self.metrics = bound.metrics;
        if let Some(m) = bound.metrics {
            self.config.metrics.address = m;
        }
        std::fs::write(&self.config_path, self.config.to_toml()?)?;
        Ok(())
    }

    /// Stops the gateway (SIGTERM), changes its configuration and starts it again on
    /// the same spool.
    pub fn reconfigure(&mut self, change: impl FnOnce(&mut GatewayConfig)) -> Result<()> {
        self.terminate(Duration::from_secs(10));
        change(&mut self.config);
        std::fs::write(&self.config_path, self.config.to_toml()?)?;
        self.spawn()
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill_now();
        }
    }

    /// SIGTERM, then wait for the process to exit; returns whether it exited in time.
    pub fn terminate(&mut self, within: Duration) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        c.kill_now();
        false
    }

    /// The credentials file the gateway reads.
    pub fn credentials_file(&self) -> &Path {
        self.config
            .auth
            .credentials_file
            .as_deref()
            .expect("every test gateway has a credentials file")
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The metrics server's address; panics when the configuration disables it.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics.expect("the metrics server is disabled")
    }

    /// The gateway's Prometheus metrics, as text.
    pub fn scrape(&self) -> Result<String> {
        crate::prometheus::scrape(self.metrics_addr())
    }

    /// Everything the gateway logged, without terminal colour codes.
    pub fn log(&self) -> String {
        let raw = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Sends one message from `from` to `to` through the relay port (which must be
    /// open to the test, see `relay.trusted_networks`) in a session of its own;
    /// `message` is the whole message without its final CRLF. Returns the queue ID.
    #[track_caller]
    pub fn submit(&self, from: &str, to: &str, message: &str) -> String {
        let (mut s, greeting) = Smtp::connect(self.relay).unwrap();
        crate::reply::expect_code(&greeting, 220);
        s.ehlo().unwrap();
        let id = crate::reply::queue_id(&s.send_message(from, &[to], message).unwrap());
        let _ = s.cmd("QUIT");
        id
    }

    /// `postern-gateway queue list`, parsed.
    pub fn queue(&self) -> Result<Vec<serde_json::Value>> {
        let out = Command::new(gateway_bin())
            .args(["queue", "list", "--config"])
            .arg(&self.config_path)
            .output()?;
        if !out.status.success() {
            bail!(
                "queue list failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8(out.stdout)?
            .lines()
            .map(|l| serde_json::from_str(l).context("queue list line"))
            .collect()
    }

    /// `postern-gateway queue show ID`.
    pub fn message(&self, id: &str) -> Result<Vec<u8>> {
        let out = Command::new(gateway_bin())
            .args(["queue", "show", "--config"])
            .arg(&self.config_path)
            .arg(id)
            .output()?;
        if !out.status.success() {
            bail!(
                "queue show {id} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out.stdout)
    }

    /// IDs of queued messages.
    pub fn queued_ids(&self) -> Result<Vec<String>> {
        Ok(self
            .queue()?
            .iter()
            .filter_map(|m| m["id"].as_str().map(str::to_owned))
            .collect())
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- gateway log ---\n{}", self.log());
        }
    }
}
