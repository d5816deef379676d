//! Runs the built `postern-gateway` binary as a black box: a private directory with
//! its configuration, a self-signed certificate, a credentials file and a spool;
//! free ports on 127.0.0.1; kill -9 and restart for crash tests; the `queue`
//! subcommand to see what was accepted.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use postern_config::{GatewayConfig, ListenerConfig, ListenerKind};

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

/// Finds a program the tests need, or fails the test saying how to get it. Tests
/// never skip for a missing peer.
pub fn require(program: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"])
    {
        let p = Path::new(dir).join(program);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "{program} is not installed; run tests/scripts/install-peers.sh (the test command does)"
    );
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One gateway process and its files.
pub struct TestGateway {
    pub dir: tempfile::TempDir,
    pub config: GatewayConfig,
    pub config_path: PathBuf,
    pub relay: SocketAddr,
    pub submission: SocketAddr,
    pub submissions: SocketAddr,
    child: Option<Child>,
    log_path: PathBuf,
}

fn hash(password: &str, bcrypt: bool) -> Result<String> {
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
        let relay: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let submission: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let submissions: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let creds = dir.path().join("credentials");
        std::fs::write(
            &creds,
            format!(
                "{USER}:{}:@example.com\n{BCRYPT_USER}:{}:bob@example.org\n",
                hash(PASSWORD, false)?,
                hash(BCRYPT_PASSWORD, true)?
            ),
        )?;
        let mut config = GatewayConfig {
            hostname: "gateway.test".into(),
            listeners: vec![
                ListenerConfig::new(ListenerKind::Relay, relay),
                ListenerConfig::new(ListenerKind::Submission, submission),
                ListenerConfig::new(ListenerKind::Submissions, submissions),
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
        config.metrics.address = ([127, 0, 0, 1], free_port()).into();
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
        let mut gw = Self {
            dir,
            config,
            config_path,
            relay,
            submission,
            submissions,
            child: None,
            log_path,
        };
        gw.spawn()?;
        Ok(gw)
    }

    /// Starts the process (again) and waits until every listener accepts.
    pub fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let child = Command::new(gateway_bin())
            .arg("run")
            .arg("--config")
            .arg(&self.config_path)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting postern-gateway")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        for l in &self.config.listeners {
            loop {
                if TcpStream::connect(l.address).is_ok() {
                    break;
                }
                if let Some(status) = self
                    .child
                    .as_mut()
                    .map(Child::try_wait)
                    .transpose()?
                    .flatten()
                {
                    bail!("gateway exited with {status}:\n{}", self.log());
                }
                if Instant::now() > deadline {
                    bail!(
                        "gateway did not listen on {} in time:\n{}",
                        l.address,
                        self.log()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
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
            let _ = c.kill();
            let _ = c.wait();
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
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The gateway's Prometheus metrics, as text.
    pub fn metrics(&self) -> Result<String> {
        crate::prometheus::scrape(self.config.metrics.address)
    }

    /// Everything the gateway logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
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
