//! The durable-accept benchmark: Postern's gateway against Postfix doing the same job, side
//! by side in one run on the same machine.
//!
//! Both servers get the same load from [`postern_tests::loadgen`]: N sessions, each
//! connected once with STARTTLS and AUTH PLAIN, sending 4 KB messages back to back with
//! PIPELINING. Postfix answers 250 only after fsyncing its queue file and Postern's spool
//! promises the same; both queues sit on the same filesystem (under
//! /var/tmp/postern-tests). After each run the benchmark checks that every acknowledged
//! message is in its server's queue.
//!
//! Fairness: by default neither server delivers. Postfix runs without a queue manager, so
//! accepted mail stays in its incoming queue, and Postern runs with `delivery.mode =
//! "hold"`, so it stays in its spool: the benchmark measures accepting durably and nothing
//! else. With `POSTERN_BENCH_POSTFIX=relay` both also relay every message to an smtp-sink
//! of their own (Postfix by `relayhost`, Postern in smarthost mode, plain SMTP), so
//! scheduling, delivering and deleting compete with accepting on the same two cores.
//! Both servers keep their normal per-message logging.
//!
//! Run (release build of the gateway first):
//!
//! ```text
//! cargo build --release -p postern-gateway
//! cargo bench -p postern-tests --bench accept
//! ```
//!
//! Environment:
//! - `POSTERN_BENCH_SESSIONS`: comma-separated session counts (default `1,20,100`)
//! - `POSTERN_BENCH_SECONDS`: seconds of load per server and point (default 10)
//! - `POSTERN_BENCH_MESSAGE_SIZE`: octets per message (default 4096)
//! - `POSTERN_BENCH_POSTFIX`: `hold` (default) or `relay` (both servers relay to an
//!   smtp-sink)
//! - `POSTERN_BENCH_POSTFIX_ONLY=1`: measure Postfix alone
//! - `POSTERN_GATEWAY_BIN`: the gateway binary; otherwise `postern-gateway` beside this
//!   benchmark (target/release), in `$CARGO_TARGET_DIR/release` or in target/release
//!
//! Without `--bench` (as `cargo test --benches` runs it) it does a one-second smoke run
//! with two sessions, and skips the gateway when its binary is not built.
//!
//! Needs root and Postfix (tests/scripts/install-peers.sh); a missing peer is an error.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use postern_config::{
    DeliveryMode, GatewayConfig, ListenerConfig, ListenerKind, SmarthostConfig, SmarthostTls,
};
use postern_tests::loadgen::{self, LoadReport, LoadSpec, Stop};
use postern_tests::postfix::{
    self, CertFiles, Delivery, PostfixInstance, SmtpSink, SubmissionOptions,
};
use tempfile::TempDir;

const USER: &str = "bench";
const DOMAIN: &str = "bench.test";
const PASSWORD: &str = "bench-password";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("accept benchmark failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Settings {
    sessions: Vec<usize>,
    duration: Duration,
    message_size: usize,
    relay: bool,
    /// None: Postfix alone.
    gateway: Option<PathBuf>,
}

impl Settings {
    fn from_env() -> Result<Self> {
        let benchmarking = std::env::args().any(|a| a == "--bench");
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let sessions = match var("POSTERN_BENCH_SESSIONS") {
            Some(list) => list
                .split(',')
                .map(|s| {
                    s.trim()
                        .parse::<usize>()
                        .with_context(|| format!("POSTERN_BENCH_SESSIONS: {s:?}"))
                })
                .collect::<Result<Vec<_>>>()?,
            None if benchmarking => vec![1, 20, 100],
            None => vec![2],
        };
        if sessions.is_empty() || sessions.contains(&0) {
            bail!("POSTERN_BENCH_SESSIONS needs positive session counts");
        }
        let seconds = match var("POSTERN_BENCH_SECONDS") {
            Some(s) => s
                .parse::<f64>()
                .with_context(|| format!("POSTERN_BENCH_SECONDS: {s:?}"))?,
            None if benchmarking => 10.0,
            None => 1.0,
        };
        if !(seconds > 0.0 && seconds < 3600.0) {
            bail!("POSTERN_BENCH_SECONDS must be between 0 and 3600");
        }
        let message_size = match var("POSTERN_BENCH_MESSAGE_SIZE") {
            Some(s) => s
                .parse()
                .with_context(|| format!("POSTERN_BENCH_MESSAGE_SIZE: {s:?}"))?,
            None => 4096,
        };
        let relay = match var("POSTERN_BENCH_POSTFIX").as_deref() {
            None | Some("hold") => false,
            Some("relay") => true,
            Some(other) => bail!("POSTERN_BENCH_POSTFIX is hold or relay, not {other:?}"),
        };
        let gateway = if var("POSTERN_BENCH_POSTFIX_ONLY").as_deref() == Some("1") {
            None
        } else {
            match find_gateway() {
                Ok(path) => Some(path),
                Err(e) if benchmarking => return Err(e),
                Err(e) => {
                    eprintln!("smoke run without the gateway: {e:#}");
                    None
                }
            }
        };
        Ok(Self {
            sessions,
            duration: Duration::from_secs_f64(seconds),
            message_size,
            relay,
            gateway,
        })
    }
}

/// The release gateway binary, looked for where `cargo build --release` puts it.
fn find_gateway() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("POSTERN_GATEWAY_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("POSTERN_GATEWAY_BIN={} does not exist", path.display());
        }
        return Ok(path);
    }
    let mut candidates = Vec::new();
    // This benchmark runs from target/release/deps.
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

struct Row {
    sessions: usize,
    postfix: LoadReport,
    postern: Option<LoadReport>,
}

fn run() -> Result<()> {
    postfix::require_postfix()?;
    let settings = Settings::from_env()?;
    let work = postfix::scratch_dir("bench-")?;
    let cert = postfix::write_self_signed_cert(work.path(), &["localhost"])?;
    let credentials = match &settings.gateway {
        Some(bin) => {
            println!("gateway: {}", bin.display());
            Some(write_credentials(bin, work.path())?)
        }
        None => None,
    };
    println!(
        "load: {:?} per point, {} octet messages, STARTTLS + AUTH PLAIN, pipelined; \
         the servers {}",
        settings.duration,
        settings.message_size,
        if settings.relay {
            "relay to smtp-sink"
        } else {
            "hold mail in their queues"
        }
    );
    // One thread for the load leaves the other core to the server under test.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;

    let mut rows = Vec::new();
    for &sessions in &settings.sessions {
        let postfix = measure_postfix(&settings, &runtime, &cert, sessions)?;
        println!("postfix {postfix}");
        let postern = match (&settings.gateway, &credentials) {
            (Some(bin), Some(credentials)) => {
                let report =
                    measure_postern(&settings, &runtime, bin, &cert, credentials, sessions)?;
                println!("postern {report}");
                Some(report)
            }
            _ => None,
        };
        rows.push(Row {
            sessions,
            postfix,
            postern,
        });
    }
    print_table(&rows);
    if !settings.relay {
        println!("Every acknowledged message was found in its server's queue.");
    }
    for row in &rows {
        for (name, report) in [
            ("Postfix", Some(&row.postfix)),
            ("Postern", row.postern.as_ref()),
        ] {
            if report.is_some_and(|r| r.accepted == 0) {
                bail!("{name} accepted nothing with {} sessions", row.sessions);
            }
        }
    }
    Ok(())
}

fn spec(settings: &Settings, addr: SocketAddr, username: &str, sessions: usize) -> LoadSpec {
    let mut spec = LoadSpec::new(addr, username, PASSWORD);
    spec.sessions = sessions;
    spec.stop = Stop::Duration(settings.duration);
    spec.message_size = settings.message_size;
    spec.mail_from = format!("{USER}@{DOMAIN}");
    // The ledger lets the run check that every 250 left a message in the queue.
    spec.keep_accepted = true;
    spec
}

/// Fails unless every message the server acknowledged is in its queue: a rate of
/// acknowledgements that were not durable would be meaningless.
fn verify_queued(server: &str, report: &LoadReport, queued: Vec<String>) -> Result<()> {
    let queued = queued.into_iter().collect::<HashSet<_>>();
    let missing = report
        .accepted_messages
        .iter()
        .filter(|m| m.queue_id().is_none_or(|id| !queued.contains(id)))
        .collect::<Vec<_>>();
    if let Some(first) = missing.first() {
        bail!(
            "{server} acknowledged {} messages that are not in its queue, e.g. {:?}",
            missing.len(),
            first.reply
        );
    }
    Ok(())
}

fn measure_postfix(
    settings: &Settings,
    runtime: &tokio::runtime::Runtime,
    cert: &CertFiles,
    sessions: usize,
) -> Result<LoadReport> {
    let sink = if settings.relay {
        Some(SmtpSink::start(postfix::free_local_addr()?, &[])?)
    } else {
        None
    };
    let mut opts = SubmissionOptions::new(postfix::free_local_addr()?, cert.clone());
    opts.user = USER.to_owned();
    opts.domain = DOMAIN.to_owned();
    opts.password = PASSWORD.to_owned();
    opts.max_sessions = sessions;
    opts.delivery = sink
        .as_ref()
        .map_or(Delivery::Hold, |s| Delivery::Relay(s.addr()));
    let instance = PostfixInstance::submission(&opts)?;
    let report = runtime.block_on(loadgen::run(&spec(
        settings,
        instance.listen_addr(),
        &opts.login(),
        sessions,
    )))?;
    match &sink {
        Some(sink) => report_relayed("Postfix", &report, sink),
        None => verify_queued("Postfix", &report, instance.queued_ids()?)?,
    }
    drop(instance);
    drop(sink);
    Ok(report)
}

/// How far delivery kept up: relaying that lags behind accepting did less of its work
/// inside the measured window.
fn report_relayed(server: &str, report: &LoadReport, sink: &SmtpSink) {
    println!(
        "{server}: smtp-sink had {} of the {} accepted messages when the load stopped",
        sink.messages(),
        report.accepted
    );
}

/// The credentials file line for the bench user, hashed by the gateway itself.
fn write_credentials(bin: &Path, dir: &Path) -> Result<PathBuf> {
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

fn measure_postern(
    settings: &Settings,
    runtime: &tokio::runtime::Runtime,
    bin: &Path,
    cert: &CertFiles,
    credentials: &Path,
    sessions: usize,
) -> Result<LoadReport> {
    let sink = if settings.relay {
        Some(SmtpSink::start(postfix::free_local_addr()?, &[])?)
    } else {
        None
    };
    let gateway = Gateway::start(bin, cert, credentials, sessions, sink.as_ref())?;
    let report = runtime
        .block_on(loadgen::run(&spec(settings, gateway.addr, USER, sessions)))
        .with_context(|| format!("the gateway's log:\n{}", gateway.log()))?;
    match &sink {
        Some(sink) => report_relayed("Postern", &report, sink),
        None => verify_queued("Postern", &report, gateway.queued_ids(bin)?)?,
    }
    drop(gateway);
    drop(sink);
    Ok(report)
}

/// A gateway process with a fresh spool, stopped with SIGTERM when dropped.
struct Gateway {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl Gateway {
    /// Starts the gateway; it relays to `sink` when given, else holds everything.
    fn start(
        bin: &Path,
        cert: &CertFiles,
        credentials: &Path,
        sessions: usize,
        sink: Option<&SmtpSink>,
    ) -> Result<Self> {
        let dir = postfix::scratch_dir("bench-postern-")?;
        let addr = postfix::free_local_addr()?;
        let mut config = GatewayConfig {
            hostname: "postern.bench.test".to_owned(),
            listeners: vec![ListenerConfig::new(ListenerKind::Submission, addr)],
            ..GatewayConfig::default()
        };
        config.tls.certificate = cert.certificate.clone();
        config.tls.private_key = cert.private_key.clone();
        config.spool.directory = dir.path().join("spool");
        config.auth.credentials_file = Some(credentials.to_owned());
        // Loopback only, and a port of its own.
        config.metrics.address = Some(postfix::free_local_addr()?);
        // Every session comes from 127.0.0.1; the limits must not be what is measured.
        config.limits.max_sessions_per_ip = (2 * sessions).max(200);
        config.limits.max_sessions = config.limits.max_sessions.max(4 * sessions);
        // Never the default MX mode: it would look the recipient domain up in the DNS of
        // /etc/resolv.conf, off this machine.
        match sink {
            Some(sink) => {
                config.delivery.mode = DeliveryMode::Smarthost;
                config.delivery.smarthost = Some(SmarthostConfig {
                    host: sink.addr().ip().to_string(),
                    port: sink.addr().port(),
                    tls: SmarthostTls::None,
                    credentials_file: None,
                    verify_certificate: false,
                    ca_file: None,
                });
            }
            None => config.delivery.mode = DeliveryMode::Hold,
        }
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, config.to_toml()?)
            .with_context(|| format!("writing {}", config_path.display()))?;
        let log = std::fs::File::create(dir.path().join("gateway.log"))?;
        let child = Command::new(bin)
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut gateway = Self { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = gateway.child.try_wait()? {
                bail!(
                    "the gateway exited with {status} before listening:\n{}",
                    gateway.log()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "the gateway does not listen on {addr} after 30 s:\n{}",
                    gateway.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(gateway)
    }

    /// Queue ids, from `postern-gateway queue list`.
    fn queued_ids(&self, bin: &Path) -> Result<Vec<String>> {
        let out = Command::new(bin)
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

    fn log(&self) -> String {
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:>8}  {:>13}  {:>13}  {:>6}  {:>11}  {:>11}",
        "sessions", "postfix msg/s", "postern msg/s", "ratio", "postfix p99", "postern p99"
    );
    for row in rows {
        let (postern_rate, ratio, postern_p99) = match &row.postern {
            Some(r) => (
                format!("{:.0}", r.rate()),
                format!(
                    "{:.2}",
                    r.rate() / row.postfix.rate().max(f64::MIN_POSITIVE)
                ),
                format!("{:.1} ms", millis(r.latency_p99)),
            ),
            None => ("-".to_owned(), "-".to_owned(), "-".to_owned()),
        };
        println!(
            "{:>8}  {:>13.0}  {:>13}  {:>6}  {:>11}  {:>11}",
            row.sessions,
            row.postfix.rate(),
            postern_rate,
            ratio,
            format!("{:.1} ms", millis(row.postfix.latency_p99)),
            postern_p99
        );
    }
    let failures = rows
        .iter()
        .flat_map(|r| [Some(&r.postfix), r.postern.as_ref()])
        .flatten()
        .map(|r| r.failed + r.in_doubt)
        .sum::<u64>();
    if failures > 0 {
        println!("({failures} messages failed or in doubt; see the reports above)");
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
