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
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use postern_tests::bench::{self, DOMAIN, Gateway, PASSWORD, USER, millis};
use postern_tests::loadgen::{self, LoadReport, LoadSpec, Stop};
use postern_tests::postfix::{CertFiles, Delivery, PostfixInstance, SmtpSink, SubmissionOptions};
use postern_tests::process::free_local_addr;

fn main() -> ExitCode {
    bench::main("accept", run)
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
        let benchmarking = bench::benchmarking();
        let sessions = bench::session_counts(if benchmarking { &[1, 20, 100] } else { &[2] })?;
        let seconds = bench::knob(
            "POSTERN_BENCH_SECONDS",
            10.0,
            1.0,
            |&s| s > 0.0 && s < 3600.0,
            "between 0 and 3600",
        )?;
        let message_size = bench::env_parse("POSTERN_BENCH_MESSAGE_SIZE", 4096)?;
        let relay = match bench::env_var("POSTERN_BENCH_POSTFIX").as_deref() {
            None | Some("hold") => false,
            Some("relay") => true,
            Some(other) => bail!("POSTERN_BENCH_POSTFIX is hold or relay, not {other:?}"),
        };
        Ok(Self {
            sessions,
            duration: Duration::from_secs_f64(seconds),
            message_size,
            relay,
            gateway: bench::gateway_for_run()?,
        })
    }
}

/// A session count and what each server did with it.
type Row = bench::Row<usize, LoadReport>;

fn run() -> Result<()> {
    let settings = Settings::from_env()?;
    let files = bench::prepare_run(settings.gateway.as_deref())?;
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
    let runtime = bench::load_runtime()?;

    let rows = bench::measure_points(
        &settings.sessions,
        settings.gateway.as_deref(),
        &files,
        |sessions| measure_postfix(&settings, &runtime, &files.cert, sessions),
        |sessions, bin, credentials| {
            measure_postern(&settings, &runtime, bin, &files.cert, credentials, sessions)
        },
        |server, _, report| format!("{server} {report}"),
    )?;
    print_table(&rows);
    if !settings.relay {
        println!("Every acknowledged message was found in its server's queue.");
    }
    for row in &rows {
        for (name, report) in row.measurements() {
            if report.is_some_and(|r| r.accepted == 0) {
                bail!("{name} accepted nothing with {} sessions", row.point);
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
    let sink = bench::sink_if(settings.relay)?;
    let mut opts = SubmissionOptions::new(free_local_addr()?, cert.clone());
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

fn measure_postern(
    settings: &Settings,
    runtime: &tokio::runtime::Runtime,
    bin: &Path,
    cert: &CertFiles,
    credentials: &Path,
    sessions: usize,
) -> Result<LoadReport> {
    let sink = bench::sink_if(settings.relay)?;
    let gateway = Gateway::start(
        bin,
        cert,
        credentials,
        sessions,
        sink.as_ref().map(SmtpSink::addr),
    )?;
    let report = runtime
        .block_on(loadgen::run(&spec(
            settings,
            gateway.addr(),
            USER,
            sessions,
        )))
        .with_context(|| format!("the gateway's log:\n{}", gateway.log()))?;
    match &sink {
        Some(sink) => report_relayed("Postern", &report, sink),
        None => verify_queued("Postern", &report, gateway.queued_ids()?)?,
    }
    drop(gateway);
    drop(sink);
    Ok(report)
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
            row.point,
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
