//! What the benchmarks in tests/benches share: reading their environment knobs, finding
//! the release gateway binary, its credentials file, and a gateway process with a fresh
//! spool next to the Postfix queues it is compared with.
//!
//! A benchmark is run by `cargo bench` with `--bench` on its command line; without it (as
//! `cargo test --benches` runs it) it does a small smoke run instead, and leaves the
//! gateway out when its release binary is not built.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use postern_config::{
    DeliveryMode, GatewayConfig, ListenerConfig, ListenerKind, SmarthostConfig, SmarthostTls,
};
use tempfile::TempDir;

use crate::gateway::run_gateway;
use crate::peers::scratch_dir;
use crate::postfix::{self, CertFiles, SmtpSink};
use crate::process::ChildGuard;

/// The SASL user of both servers; Postfix's login is `USER@DOMAIN`, Postern's `USER`.
pub const USER: &str = "bench";
/// The user's domain, and the sender domain the gateway lets it use.
pub const DOMAIN: &str = "bench.test";
pub const PASSWORD: &str = "bench-password";

/// Whether this is a real benchmark run (`cargo bench` passes `--bench`) rather than the
/// smoke run of `cargo test --benches`.
pub fn benchmarking() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// An environment variable, unless unset or empty.
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// An environment variable parsed as `T`, or `default` when unset.
pub fn env_parse<T>(name: &str, default: T) -> Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match env_var(name) {
        Some(s) => s.trim().parse().with_context(|| format!("{name}: {s:?}")),
        None => Ok(default),
    }
}

/// A numeric knob: `name` parsed, or by default `benchmark` in a benchmark run and
/// `smoke` in a smoke run; an error saying `name must be RULE` unless `valid`.
pub fn knob<T>(
    name: &str,
    benchmark: T,
    smoke: T,
    valid: impl Fn(&T) -> bool,
    rule: &str,
) -> Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let value = env_parse(name, if benchmarking() { benchmark } else { smoke })?;
    if !valid(&value) {
        bail!("{name} must be {rule}");
    }
    Ok(value)
}

/// `POSTERN_BENCH_SESSIONS` (comma-separated positive counts), or `default`.
pub fn session_counts(default: &[usize]) -> Result<Vec<usize>> {
    let sessions = match env_var("POSTERN_BENCH_SESSIONS") {
        Some(list) => list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<usize>()
                    .with_context(|| format!("POSTERN_BENCH_SESSIONS: {s:?}"))
            })
            .collect::<Result<Vec<_>>>()?,
        None => default.to_vec(),
    };
    if sessions.is_empty() || sessions.contains(&0) {
        bail!("POSTERN_BENCH_SESSIONS needs positive session counts");
    }
    Ok(sessions)
}

/// The gateway binary to measure, or None to measure Postfix alone: with
/// `POSTERN_BENCH_POSTFIX_ONLY=1`, or in a smoke run when the release binary is not built
/// (a real run fails instead).
pub fn gateway_for_run() -> Result<Option<PathBuf>> {
    if env_var("POSTERN_BENCH_POSTFIX_ONLY").as_deref() == Some("1") {
        return Ok(None);
    }
    match find_gateway() {
        Ok(path) => Ok(Some(path)),
        Err(e) if benchmarking() => Err(e),
        Err(e) => {
            eprintln!("smoke run without the gateway: {e:#}");
            Ok(None)
        }
    }
}

/// The release gateway binary, looked for where `cargo build --release` puts it.
pub fn find_gateway() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("POSTERN_GATEWAY_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("POSTERN_GATEWAY_BIN={} does not exist", path.display());
        }
        return Ok(path);
    }
    let mut candidates = Vec::new();
    // A benchmark runs from target/release/deps.
    if let Ok(exe) = std::env::current_exe()
        && let Some(profile_dir) = exe.parent().and_then(Path::parent)
    {
        candidates.push(profile_dir.join("postern-gateway"));
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join("release/postern-gateway"));
    }
    candidates
        .push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/postern-gateway"));
    candidates.into_iter().find(|p| p.is_file()).with_context(|| {
        "the postern-gateway binary is not built: run `cargo build --release -p postern-gateway` \
         (with the same CARGO_TARGET_DIR), or set POSTERN_GATEWAY_BIN, or \
         POSTERN_BENCH_POSTFIX_ONLY=1 to measure Postfix alone"
            .to_owned()
    })
}

/// Writes the credentials file line for [`USER`] (allowed to send as `@DOMAIN`), hashed
/// by the gateway itself; returns the file's path.
pub fn write_credentials(bin: &Path, dir: &Path) -> Result<PathBuf> {
    let mut child = Command::new(bin)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {} hash-password", bin.display()))?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().context("hash-password stdin")?;
        writeln!(stdin, "{PASSWORD}").context("writing to hash-password")?;
    }
    let out = child.wait_with_output().context("running hash-password")?;
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || hash.is_empty() {
        bail!(
            "{} hash-password failed ({}): {}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = dir.join("credentials");
    std::fs::write(&path, format!("{USER}:{hash}:@{DOMAIN}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// A gateway process with one submission listener on loopback and a fresh spool under
/// [`crate::peers::BASE_DIR`], stopped with SIGTERM when dropped.
pub struct Gateway {
    child: ChildGuard,
    addr: SocketAddr,
    metrics: SocketAddr,
    bin: PathBuf,
    dir: TempDir,
}

impl Gateway {
    /// Starts the gateway for up to `sessions` concurrent sessions from 127.0.0.1. It
    /// relays everything to `smarthost` (plain SMTP) when given, else holds every message
    /// in its spool (`delivery.mode = "hold"`).
    pub fn start(
        bin: &Path,
        cert: &CertFiles,
        credentials: &Path,
        sessions: usize,
        smarthost: Option<SocketAddr>,
    ) -> Result<Self> {
        Self::start_with(bin, cert, credentials, sessions, smarthost, |_| {})
    }

    /// [`Gateway::start`], with `configure` changing the configuration last.
    pub fn start_with(
        bin: &Path,
        cert: &CertFiles,
        credentials: &Path,
        sessions: usize,
        smarthost: Option<SocketAddr>,
        configure: impl FnOnce(&mut GatewayConfig),
    ) -> Result<Self> {
        let dir = scratch_dir("bench-postern-")?;
        // Port 0: the ready file says which port the kernel chose.
        let any_port: SocketAddr = ([127, 0, 0, 1], 0).into();
        let mut config = GatewayConfig {
            hostname: "postern.bench.test".to_owned(),
            listeners: vec![ListenerConfig::new(ListenerKind::Submission, any_port)],
            ..GatewayConfig::default()
        };
        config.tls.certificate = cert.certificate.clone();
        config.tls.private_key = cert.private_key.clone();
        config.spool.directory = dir.path().join("spool");
        config.auth.credentials_file = Some(credentials.to_owned());
        // Loopback only, and a port of its own.
        config.metrics.address = any_port;
        // Every session comes from 127.0.0.1; the limits must not be what is measured.
        config.limits.max_sessions_per_ip = (2 * sessions).max(200);
        config.limits.max_sessions = config.limits.max_sessions.max(4 * sessions);
        // Never the default MX mode: it would look the recipient domain up in the DNS of
        // /etc/resolv.conf, off this machine.
        match smarthost {
            Some(sink) => {
                config.delivery.mode = DeliveryMode::Smarthost;
                config.delivery.smarthost = Some(SmarthostConfig {
                    host: sink.ip().to_string(),
                    port: sink.port(),
                    tls: SmarthostTls::None,
                    credentials_file: None,
                    verify_certificate: false,
                    ca_file: None,
                });
            }
            None => config.delivery.mode = DeliveryMode::Hold,
        }
        configure(&mut config);
        let dns = &config.delivery.dns.nameservers;
        if config.delivery.mode == DeliveryMode::Mx
            && (dns.is_empty() || !dns.iter().all(|ns| ns.ip().is_loopback()))
        {
            bail!("a benchmark gateway must resolve MX records with a loopback test DNS server");
        }
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, config.to_toml()?)
            .with_context(|| format!("writing {}", config_path.display()))?;
        let (child, bound) = run_gateway(
            bin,
            &config_path,
            &dir.path().join("ready.json"),
            &dir.path().join("gateway.log"),
        )?;
        Ok(Self {
            child,
            addr: bound
                .listener(ListenerKind::Submission)
                .context("no submission listener in the ready file")?,
            metrics: bound
                .metrics
                .context("no metrics server in the ready file")?,
            bin: bin.to_owned(),
            dir,
        })
    }

    /// The submission listener.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The gateway's Prometheus metrics, as text.
    pub fn metrics(&self) -> Result<String> {
        crate::prometheus::scrape(self.metrics)
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Queue ids, from `postern-gateway queue list`.
    pub fn queued_ids(&self) -> Result<Vec<String>> {
        let out = Command::new(&self.bin)
            .args(["queue", "list", "--config"])
            .arg(self.dir.path().join("gateway.toml"))
            .output()
            .context("running postern-gateway queue list")?;
        if !out.status.success() {
            bail!(
                "postern-gateway queue list failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|line| {
                let entry: serde_json::Value =
                    serde_json::from_str(line).with_context(|| format!("queue list: {line}"))?;
                entry["id"]
                    .as_str()
                    .map(str::to_owned)
                    .with_context(|| format!("queue list line without an id: {line}"))
            })
            .collect()
    }

    /// Everything the gateway logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // A graceful stop, as in production; SIGKILL only if it hangs.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("the gateway ignored SIGTERM for 10 s; killing it");
        self.child.kill_now();
    }
}

/// A duration in milliseconds, for tables.
pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// What every benchmark run starts from: a scratch directory, the server certificate
/// both servers use, and the gateway's credentials file (when the gateway is measured).
pub struct RunFiles {
    /// Keeps the scratch directory (and the certificate in it) alive.
    pub work: tempfile::TempDir,
    pub cert: postfix::CertFiles,
    pub credentials: Option<std::path::PathBuf>,
}

/// Checks that Postfix is there and creates the [`RunFiles`]; `gateway` is the gateway
/// binary, when it is measured.
pub fn prepare_run(gateway: Option<&std::path::Path>) -> Result<RunFiles> {
    postfix::require_postfix()?;
    let work = scratch_dir("bench-")?;
    let cert = postfix::write_self_signed_cert(work.path(), &["localhost"])?;
    let credentials = match gateway {
        Some(bin) => {
            println!("gateway: {}", bin.display());
            Some(write_credentials(bin, work.path())?)
        }
        None => None,
    };
    Ok(RunFiles {
        work,
        cert,
        credentials,
    })
}

/// A benchmark's `main`: runs `run`; an error is printed as `NAME benchmark failed: …`
/// and fails the process.
pub fn main(name: &str, run: impl FnOnce() -> Result<()>) -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name} benchmark failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime that drives the load: one thread, which leaves the other core to the
/// server under test.
pub fn load_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// An smtp-sink on loopback for a server to relay to, when `relay`.
pub fn sink_if(relay: bool) -> Result<Option<SmtpSink>> {
    relay.then(|| SmtpSink::start_local(&[])).transpose()
}

/// Prints the end of `log` (the last 20 lines) to stderr, headed by `whose`, after a
/// measurement that did not finish.
pub fn print_log_tail(whose: &str, log: &str) {
    let tail = log.lines().rev().take(20).collect::<Vec<_>>();
    eprintln!(
        "{whose} log ends with:\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}

/// One point of a benchmark (a session count, a kind of session): what Postfix
/// measured, and what the gateway did unless Postfix is measured alone.
pub struct Row<P, M> {
    pub point: P,
    pub postfix: M,
    pub postern: Option<M>,
}

impl<P, M> Row<P, M> {
    /// Both measurements with the server's name, the gateway's when it was measured.
    pub fn measurements(&self) -> [(&'static str, Option<&M>); 2] {
        [
            ("Postfix", Some(&self.postfix)),
            ("Postern", self.postern.as_ref()),
        ]
    }
}

/// Measures every point with Postfix (`postfix(point)`) and then, unless `gateway` is
/// None, with the gateway (`postern(point, gateway binary, credentials file)`); prints
/// each measurement as `show(server, point, measurement)` says.
pub fn measure_points<P: Copy, M>(
    points: &[P],
    gateway: Option<&Path>,
    files: &RunFiles,
    mut postfix: impl FnMut(P) -> Result<M>,
    mut postern: impl FnMut(P, &Path, &Path) -> Result<M>,
    show: impl Fn(&str, P, &M) -> String,
) -> Result<Vec<Row<P, M>>> {
    let mut rows = Vec::new();
    for &point in points {
        let postfix = postfix(point)?;
        println!("{}", show("postfix", point, &postfix));
        let postern = match (gateway, &files.credentials) {
            (Some(bin), Some(credentials)) => {
                let m = postern(point, bin, credentials)?;
                println!("{}", show("postern", point, &m));
                Some(m)
            }
            _ => None,
        };
        rows.push(Row {
            point,
            postfix,
            postern,
        });
    }
    Ok(rows)
}
