//! The end-to-end relay benchmark: Postern's gateway against Postfix doing the same job,
//! side by side in one run on the same machine, from the first submission until the last
//! acknowledged message has arrived at the next hop.
//!
//! Each server relays to an `smtp-sink` of its own (Postfix by `relayhost`, Postern in
//! smarthost mode, both in plain SMTP, as a relay to a trusted smarthost on the same
//! network would). Both get the same load from [`postern_tests::loadgen`]: N sessions,
//! each connected once with STARTTLS and AUTH PLAIN, sending a fixed total of 4 KB
//! messages back to back with PIPELINING, as fast as the server acknowledges them. Both
//! fsync every message before their 250 and keep their normal per-message logging.
//!
//! The clock starts with the first submission (after every session has connected and
//! authenticated) and stops when the sink has counted as many messages as the server
//! acknowledged: end-to-end throughput, accepting and delivering competing for the same
//! two cores (with the load generator and the sink). The accept-phase rate and how much
//! had been delivered when submission ended are reported too: a server may accept fast
//! and deliver later, or the reverse.
//!
//! Fairness of delivery: both servers may open the same number of connections to the one
//! destination. Postfix keeps its default `default_destination_concurrency_limit = 20`
//! (and its default slow start from `initial_destination_concurrency = 5`), and Postern's
//! `delivery.limits.max_connections_per_destination` is raised from its default 10 to the
//! same 20. `POSTERN_BENCH_RELAY_CONCURRENCY` sets another value for both (for Postfix by
//! `postconf -e default_destination_concurrency_limit` and a reload). Connection reuse is
//! left at each server's default: Postfix reuses cached connections without a count limit
//! (`smtp_connection_reuse_count_limit = 0`, for up to `smtp_connection_reuse_time_limit =
//! 300s`), Postern keeps a connection open for 2 s of idleness (`idle_connection_time`)
//! and sends up to `max_messages_per_connection = 100` over it. Nothing
//! else in Postfix is changed beyond what tests/src/postfix.rs sets so that its
//! per-client limits, not its speed, are not what is measured (connection count and rate
//! limits off, `in_flow_delay = 0`, no reverse lookups, `default_process_limit` above the
//! session count).
//!
//! After each Postern run the gateway's own metrics give an `internals` line: spool
//! commits and their batch size, outbound connections and deliveries per connection,
//! CPU time.
//!
//! Run (release build of the gateway first):
//!
//! ```text
//! cargo build --release -p postern-gateway
//! cargo bench -p postern-tests --bench relay
//! ```
//!
//! Environment:
//! - `POSTERN_BENCH_SESSIONS`: comma-separated session counts (default `20,100`)
//! - `POSTERN_BENCH_MESSAGES`: messages per server and point (default 5000), split evenly
//!   over the sessions
//! - `POSTERN_BENCH_MESSAGE_SIZE`: octets per message (default 4096)
//! - `POSTERN_BENCH_RELAY_CONCURRENCY`: connections to the sink per server (default 20)
//! - `POSTERN_BENCH_DRAIN_SECONDS`: how long to wait for delivery after submission ended
//!   before calling it a failure (default 300)
//! - `POSTERN_BENCH_POSTFIX_ONLY=1`: measure Postfix alone
//! - `POSTERN_GATEWAY_BIN`: the gateway binary; otherwise `postern-gateway` beside this
//!   benchmark (target/release), in `$CARGO_TARGET_DIR/release` or in target/release
//!
//! Without `--bench` (as `cargo test --benches` runs it) it relays 20 messages over two
//! sessions, and skips the gateway when its binary is not built.
//!
//! Needs root and Postfix (tests/scripts/install-peers.sh); a missing peer is an error.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use postern_tests::bench::{self, DOMAIN, Gateway, PASSWORD, USER, millis};
use postern_tests::loadgen::{self, LoadReport, LoadSpec, Stop};
use postern_tests::peers::require;
use postern_tests::postfix::{CertFiles, Delivery, PostfixInstance, SmtpSink, SubmissionOptions};
use postern_tests::process::free_local_addr;
use postern_tests::prometheus::metric_sum;

/// Postfix's `default_destination_concurrency_limit` out of the box (3.x).
const POSTFIX_DEFAULT_CONCURRENCY: usize = 20;

fn main() -> ExitCode {
    bench::main("relay", run)
}

struct Settings {
    sessions: Vec<usize>,
    messages: usize,
    message_size: usize,
    concurrency: usize,
    drain_timeout: Duration,
    /// None: Postfix alone.
    gateway: Option<PathBuf>,
}

impl Settings {
    fn from_env() -> Result<Self> {
        let benchmarking = bench::benchmarking();
        let sessions = bench::session_counts(if benchmarking { &[20, 100] } else { &[2] })?;
        let positive = |&n: &usize| n > 0;
        let messages = bench::knob("POSTERN_BENCH_MESSAGES", 5000, 20, positive, "positive")?;
        let concurrency = bench::knob(
            "POSTERN_BENCH_RELAY_CONCURRENCY",
            POSTFIX_DEFAULT_CONCURRENCY,
            POSTFIX_DEFAULT_CONCURRENCY,
            positive,
            "positive",
        )?;
        let drain = bench::knob(
            "POSTERN_BENCH_DRAIN_SECONDS",
            300.0,
            60.0,
            |&d| d > 0.0 && d < 86_400.0,
            "between 0 and 86400",
        )?;
        Ok(Self {
            sessions,
            messages,
            message_size: bench::env_parse("POSTERN_BENCH_MESSAGE_SIZE", 4096)?,
            concurrency,
            drain_timeout: Duration::from_secs_f64(drain),
            gateway: bench::gateway_for_run()?,
        })
    }

    /// Messages per session: the total split evenly, at least one each.
    fn per_session(&self, sessions: usize) -> usize {
        self.messages.div_ceil(sessions)
    }
}

/// One server at one point.
struct Measurement {
    load: LoadReport,
    /// Messages at the sink when the last session finished submitting.
    delivered_at_end: u64,
    /// At the sink when the wait ended (at least `load.accepted` unless it timed out).
    delivered: u64,
    /// From the first submission until the sink had every acknowledged message; None
    /// when the drain timeout passed first.
    end_to_end: Option<Duration>,
}

impl Measurement {
    fn e2e_rate(&self) -> Option<f64> {
        self.end_to_end
            .map(|d| self.load.accepted as f64 / d.as_secs_f64().max(f64::MIN_POSITIVE))
    }
}

impl fmt::Display for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.load;
        write!(
            f,
            "{} sessions: {} accepted, {} failed, {} in doubt; accept phase {:.2?} ({:.0} msg/s, \
             p99 {:.1} ms); {} ({:.0}%) at the sink when submission ended; ",
            l.sessions,
            l.accepted,
            l.failed,
            l.in_doubt,
            l.elapsed,
            l.rate(),
            millis(l.latency_p99),
            self.delivered_at_end,
            percent(self.delivered_at_end, l.accepted),
        )?;
        match (self.end_to_end, self.e2e_rate()) {
            (Some(d), Some(rate)) => write!(
                f,
                "all at the sink {d:.2?} after the first submission ({rate:.0} msg/s end-to-end)"
            )?,
            _ => write!(
                f,
                "only {} at the sink when the drain timeout passed",
                self.delivered
            )?,
        }
        for sample in &l.failure_samples {
            write!(f, "\n  failure: {sample}")?;
        }
        Ok(())
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// A session count and what each server did with it.
type Row = bench::Row<usize, Measurement>;

fn run() -> Result<()> {
    let settings = Settings::from_env()?;
    let files = bench::prepare_run(settings.gateway.as_deref())?;
    println!(
        "load: about {} messages of {} octets per server and point, STARTTLS + AUTH PLAIN, \
         pipelined; each server relays in plain SMTP to its own smtp-sink over at most {} \
         connections",
        settings.messages, settings.message_size, settings.concurrency
    );
    let runtime = bench::load_runtime()?;

    let rows = bench::measure_points(
        &settings.sessions,
        settings.gateway.as_deref(),
        &files,
        |sessions| measure_postfix(&settings, &runtime, &files.cert, sessions),
        |sessions, bin, credentials| {
            measure_postern(&settings, &runtime, bin, &files.cert, credentials, sessions)
        },
        |server, _, m| format!("{server} {m}"),
    )?;
    print_table(&settings, &rows);
    for row in &rows {
        for (name, m) in row.measurements() {
            let Some(m) = m else { continue };
            if m.load.accepted == 0 {
                bail!("{name} accepted nothing with {} sessions", row.point);
            }
            if m.end_to_end.is_none() {
                bail!(
                    "{name} delivered only {} of {} messages with {} sessions within {:?}",
                    m.delivered,
                    m.load.accepted,
                    row.point,
                    settings.drain_timeout
                );
            }
        }
    }
    Ok(())
}

fn spec(settings: &Settings, addr: SocketAddr, username: &str, sessions: usize) -> LoadSpec {
    let mut spec = LoadSpec::new(addr, username, PASSWORD);
    spec.sessions = sessions;
    spec.stop = Stop::MessagesPerSession(settings.per_session(sessions));
    spec.message_size = settings.message_size;
    spec.mail_from = format!("{USER}@{DOMAIN}");
    spec
}

/// Runs the load against a server relaying to `sink`, then waits until the sink has
/// every message the server acknowledged.
fn drive(
    settings: &Settings,
    runtime: &tokio::runtime::Runtime,
    spec: &LoadSpec,
    sink: &SmtpSink,
) -> Result<Measurement> {
    let called = Instant::now();
    let load = runtime.block_on(loadgen::run(spec))?;
    let submitted = Instant::now();
    let delivered_at_end = sink.messages();
    // loadgen starts its clock when every session is ready; its setup time counts from
    // (within microseconds of) the call.
    let first_submission = called + load.setup;
    let deadline = submitted + settings.drain_timeout;
    let end_to_end = loop {
        if sink.messages() >= load.accepted {
            break Some(first_submission.elapsed());
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    Ok(Measurement {
        load,
        delivered_at_end,
        delivered: sink.messages(),
        end_to_end,
    })
}

fn measure_postfix(
    settings: &Settings,
    runtime: &tokio::runtime::Runtime,
    cert: &CertFiles,
    sessions: usize,
) -> Result<Measurement> {
    let sink = SmtpSink::start_local(&[])?;
    let mut opts = SubmissionOptions::new(free_local_addr()?, cert.clone());
    opts.user = USER.to_owned();
    opts.domain = DOMAIN.to_owned();
    opts.password = PASSWORD.to_owned();
    opts.max_sessions = sessions.max(settings.concurrency);
    opts.delivery = Delivery::Relay(sink.addr());
    let instance = PostfixInstance::submission(&opts)?;
    set_postfix_concurrency(&instance, settings.concurrency)?;
    let m = drive(
        settings,
        runtime,
        &spec(settings, instance.listen_addr(), &opts.login(), sessions),
        &sink,
    )?;
    if m.end_to_end.is_none() {
        bench::print_log_tail("Postfix's", &instance.maillog().unwrap_or_default());
    }
    drop(instance);
    drop(sink);
    Ok(m)
}

/// Sets `default_destination_concurrency_limit` when it is not already Postfix's
/// default, and says what Postfix uses.
fn set_postfix_concurrency(instance: &PostfixInstance, limit: usize) -> Result<()> {
    let postconf = require("postconf")?;
    if limit != POSTFIX_DEFAULT_CONCURRENCY {
        let status = Command::new(&postconf)
            .arg("-c")
            .arg(instance.config_dir())
            .arg("-e")
            .arg(format!("default_destination_concurrency_limit = {limit}"))
            .status()
            .context("running postconf -e")?;
        if !status.success() {
            bail!("postconf -e default_destination_concurrency_limit failed: {status}");
        }
        let status = Command::new(require("postfix")?)
            .arg("-c")
            .arg(instance.config_dir())
            .arg("reload")
            .status()
            .context("running postfix reload")?;
        if !status.success() {
            bail!("postfix reload failed: {status}");
        }
        // The reload is asynchronous: give the queue manager time to restart with it.
        std::thread::sleep(Duration::from_secs(2));
    }
    let out = Command::new(&postconf)
        .arg("-c")
        .arg(instance.config_dir())
        .args(["-hx", "smtp_destination_concurrency_limit"])
        .output()
        .context("running postconf -h")?;
    let value = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if value != limit.to_string() {
        bail!("Postfix's smtp_destination_concurrency_limit is {value:?}, not {limit}");
    }
    Ok(())
}

fn measure_postern(
    settings: &Settings,
    runtime: &tokio::runtime::Runtime,
    bin: &Path,
    cert: &CertFiles,
    credentials: &Path,
    sessions: usize,
) -> Result<Measurement> {
    let sink = SmtpSink::start_local(&[])?;
    let gateway = Gateway::start_with(
        bin,
        cert,
        credentials,
        sessions,
        Some(sink.addr()),
        |config| {
            let limits = &mut config.delivery.limits;
            limits.max_connections_per_destination = settings.concurrency;
            limits.max_connections = limits.max_connections.max(settings.concurrency);
        },
    )?;
    let m = drive(
        settings,
        runtime,
        &spec(settings, gateway.addr(), USER, sessions),
        &sink,
    )
    .with_context(|| format!("the gateway's log:\n{}", gateway.log()))?;
    match gateway.metrics() {
        Ok(text) => println!(
            "postern {sessions} sessions internals: {}",
            Internals::from(&text)
        ),
        Err(e) => println!("postern {sessions} sessions internals: none ({e:#})"),
    }
    if m.end_to_end.is_none() {
        bench::print_log_tail("the gateway's", &gateway.log());
    }
    drop(gateway);
    drop(sink);
    Ok(m)
}

/// What the gateway's own metrics say about a run: how durable commits were batched and
/// how many messages each outbound connection carried.
struct Internals {
    commits: f64,
    commit_seconds: f64,
    committed: f64,
    connections: f64,
    delivered: f64,
    cpu_seconds: f64,
}

impl From<&String> for Internals {
    fn from(text: &String) -> Self {
        Self {
            commits: metric_sum(text, "postern_spool_commit_duration_seconds_count"),
            commit_seconds: metric_sum(text, "postern_spool_commit_duration_seconds_sum"),
            committed: metric_sum(text, "postern_spool_commit_batch_size_sum"),
            connections: metric_sum(text, "postern_outbound_connections_total"),
            delivered: metric_sum(text, "postern_delivery_attempts_total"),
            cpu_seconds: metric_sum(text, "process_cpu_seconds_total"),
        }
    }
}

impl fmt::Display for Internals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        write!(
            f,
            "{:.0} spool commits (syncfs), {:.1} ms and {:.1} messages each on average; \
                          {:.0} outbound connections, {:.1} deliveries each; {:.2} s of CPU, {:.0} us per \
             delivered message",
            self.commits,
            1000.0 * per(self.commit_seconds, self.commits),
            per(self.committed, self.commits),
            self.connections,
            per(self.delivered, self.connections),
            self.cpu_seconds,
            1e6 * per(self.cpu_seconds, self.delivered),
        )
    }
}

fn print_table(settings: &Settings, rows: &[Row]) {
    let rate = |m: Option<&Measurement>| match m.and_then(Measurement::e2e_rate) {
        Some(r) => format!("{r:.0}"),
        None if m.is_some() => "timeout".to_owned(),
        None => "-".to_owned(),
    };
    let accept =
        |m: Option<&Measurement>| m.map_or("-".to_owned(), |m| format!("{:.0}", m.load.rate()));
    let at_end = |m: Option<&Measurement>| {
        m.map_or("-".to_owned(), |m| {
            format!("{:.0}%", percent(m.delivered_at_end, m.load.accepted))
        })
    };
    let ratio = |row: &Row| match (
        row.postfix.e2e_rate(),
        row.postern.as_ref().and_then(Measurement::e2e_rate),
    ) {
        (Some(pf), Some(pt)) => Some(pt / pf.max(f64::MIN_POSITIVE)),
        _ => None,
    };
    println!();
    println!(
        "end-to-end: from the first submission until smtp-sink counted every accepted message"
    );
    println!(
        "{:>8}  {:>8}  {:>15}  {:>15}  {:>6}  {:>14}  {:>14}  {:>14}  {:>14}",
        "sessions",
        "messages",
        "postfix e2e/s",
        "postern e2e/s",
        "ratio",
        "postfix acc/s",
        "postern acc/s",
        "postfix at end",
        "postern at end"
    );
    for row in rows {
        let postern = row.postern.as_ref();
        println!(
            "{:>8}  {:>8}  {:>15}  {:>15}  {:>6}  {:>14}  {:>14}  {:>14}  {:>14}",
            row.point,
            // Messages each server was given.
            settings.per_session(row.point) * row.point,
            rate(Some(&row.postfix)),
            rate(postern),
            ratio(row).map_or("-".to_owned(), |r| format!("{r:.2}")),
            accept(Some(&row.postfix)),
            accept(postern),
            at_end(Some(&row.postfix)),
            at_end(postern),
        );
    }
    println!(
        "(e2e/s and acc/s in messages per second; \"at end\": share of the accepted messages \
         already at the sink when submission ended)"
    );
    let ratios = rows
        .iter()
        .map(|row| {
            format!(
                "{} sessions {}",
                row.point,
                ratio(row).map_or("-".to_owned(), |r| format!("{r:.2}"))
            )
        })
        .collect::<Vec<_>>();
    println!("end-to-end ratio Postern/Postfix: {}", ratios.join(", "));
    let failures = rows
        .iter()
        .flat_map(|r| [Some(&r.postfix), r.postern.as_ref()])
        .flatten()
        .map(|m| m.load.failed + m.load.in_doubt)
        .sum::<u64>();
    if failures > 0 {
        println!("({failures} messages failed or in doubt; see the reports above)");
    }
}
