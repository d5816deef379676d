//! The idle-session memory benchmark: what one more idle SMTP session costs Postern's
//! gateway and Postfix, in bytes of memory, side by side in one run.
//!
//! For each server and each kind of session (plain: connected, greeted, EHLO answered;
//! TLS: the same followed by STARTTLS and a second EHLO inside TLS) the benchmark starts a
//! fresh server, opens one warm-up session, measures memory, opens N more sessions of the
//! same kind, waits a moment and measures again: (after - before) / N is the marginal cost
//! of an idle session. The warm-up keeps one-time costs out of the figure (the first TLS
//! session makes Postfix start its tlsmgr, for one).
//!
//! What is measured:
//! - Postern is one process: its VmRSS (/proc/PID/status) and its PSS and USS
//!   (/proc/PID/smaps_rollup).
//! - Postfix runs one smtpd process per session, forked from its master: the memory of the
//!   master and all its descendants, as a sum of PSS (each shared page divided among the
//!   processes mapping it, so shared libraries and copy-on-write pages count once over
//!   all of them), of USS (private pages only) and, for reference only, of RSS (which
//!   counts the shared pages again in every process and so overstates Postfix).
//!   The ratio is taken on PSS.
//!
//! Limits: both servers are configured for N + 1 sessions from one address, so neither
//! refuses nor queues a session (Postern: `limits.max_sessions_per_ip` and
//! `max_sessions`; Postfix: `default_process_limit` above N and the per-client connection
//! count and rate limits off, as tests/src/postfix.rs always sets them). Both servers run
//! as in the accept benchmark (Postfix without a queue manager, Postern in hold mode),
//! which does not matter here: no session gets as far as MAIL.
//!
//! Run (release build of the gateway first):
//!
//! ```text
//! cargo build --release -p postern-gateway
//! cargo bench -p postern-tests --bench idle_memory
//! ```
//!
//! Environment:
//! - `POSTERN_BENCH_IDLE`: idle sessions per measurement (default 500)
//! - `POSTERN_BENCH_IDLE_TLS=0`: plain sessions only
//! - `POSTERN_BENCH_POSTFIX_ONLY=1`: measure Postfix alone
//! - `POSTERN_GATEWAY_BIN`: the gateway binary; otherwise `postern-gateway` beside this
//!   benchmark (target/release), in `$CARGO_TARGET_DIR/release` or in target/release
//!
//! Without `--bench` (as `cargo test --benches` runs it) it measures five sessions, and
//! skips the gateway when its binary is not built.
//!
//! Needs root and Postfix (tests/scripts/install-peers.sh); a missing peer is an error.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use postern_tests::bench::{self, DOMAIN, Gateway, PASSWORD, USER};
use postern_tests::loadgen;
use postern_tests::postfix::{CertFiles, PostfixInstance, SubmissionOptions};
use postern_tests::process::free_local_addr;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use rustls_pki_types::ServerName;

fn main() -> ExitCode {
    bench::main("idle memory", run)
}

struct Settings {
    sessions: usize,
    kinds: Vec<Kind>,
    /// Pause before each measurement, for the servers to finish reacting.
    settle: Duration,
    /// None: Postfix alone.
    gateway: Option<PathBuf>,
}

impl Settings {
    fn from_env() -> Result<Self> {
        let benchmarking = bench::benchmarking();
        let sessions = bench::knob("POSTERN_BENCH_IDLE", 500, 5, |&n| n > 0, "positive")?;
        let kinds = match bench::env_var("POSTERN_BENCH_IDLE_TLS").as_deref() {
            None | Some("1") => vec![Kind::Plain, Kind::Tls],
            Some("0") => vec![Kind::Plain],
            Some(other) => bail!("POSTERN_BENCH_IDLE_TLS is 0 or 1, not {other:?}"),
        };
        Ok(Self {
            sessions,
            kinds,
            settle: Duration::from_millis(if benchmarking { 1500 } else { 200 }),
            gateway: bench::gateway_for_run()?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Plain TCP, after EHLO.
    Plain,
    /// After EHLO, STARTTLS and EHLO again.
    Tls,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Plain => "plain",
            Kind::Tls => "starttls",
        }
    }
}

/// Memory in bytes, of one process or summed over several.
#[derive(Debug, Clone, Copy, Default)]
struct Mem {
    rss: u64,
    pss: u64,
    /// Private pages (Private_Clean + Private_Dirty).
    uss: u64,
    processes: usize,
}

impl std::ops::AddAssign for Mem {
    fn add_assign(&mut self, o: Self) {
        self.rss += o.rss;
        self.pss += o.pss;
        self.uss += o.uss;
        self.processes += o.processes;
    }
}

/// Memory of one process: VmRSS from /proc/PID/status, PSS and USS from smaps_rollup.
fn process_mem(pid: u32) -> Result<Mem> {
    let kb = |text: &str, key: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .map(|n| n * 1024)
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .with_context(|| format!("reading /proc/{pid}/smaps_rollup"))?;
    let field = |text: &str, key: &str| {
        kb(text, key).with_context(|| format!("no {key} for process {pid}"))
    };
    Ok(Mem {
        rss: field(&status, "VmRSS:")?,
        pss: field(&rollup, "Pss:")?,
        uss: field(&rollup, "Private_Clean:")? + field(&rollup, "Private_Dirty:")?,
        processes: 1,
    })
}

/// Parent of every process, from /proc/*/stat.
fn parents() -> Result<Vec<(u32, u32)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").context("listing /proc")? {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // Gone since the listing: not ours to count.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...", where comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            out.push((pid, ppid));
        }
    }
    Ok(out)
}

/// Memory of `root` and all its descendants.
fn tree_mem(root: u32) -> Result<Mem> {
    let parents = parents()?;
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|&&(_, ppid)| ppid == parent)
                .map(|&(pid, _)| pid),
        );
        i += 1;
    }
    let mut total = process_mem(root)?;
    for &pid in &tree[1..] {
        // A child may exit between the listing and the reading.
        if let Ok(m) = process_mem(pid) {
            total += m;
        }
    }
    Ok(total)
}

/// An open session, kept idle until dropped.
enum Session {
    Plain(BufReader<TcpStream>),
    Tls(Box<BufReader<StreamOwned<ClientConnection, TcpStream>>>),
}

const TIMEOUT: Duration = Duration::from_secs(30);

/// Connects, reads the greeting and says EHLO (then STARTTLS and EHLO again for
/// [`Kind::Tls`]).
fn open_session(addr: SocketAddr, kind: Kind, tls: &Arc<ClientConfig>) -> Result<Session> {
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.set_read_timeout(Some(TIMEOUT))?;
    tcp.set_write_timeout(Some(TIMEOUT))?;
    tcp.set_nodelay(true)?;
    let mut plain = BufReader::new(tcp);
    expect(&mut plain, 220, "greeting")?;
    let caps = ehlo(&mut plain)?;
    if kind == Kind::Plain {
        return Ok(Session::Plain(plain));
    }
    if !caps.iter().any(|c| c == "STARTTLS") {
        bail!("the server does not offer STARTTLS");
    }
    plain.get_mut().write_all(b"STARTTLS\r\n")?;
    expect(&mut plain, 220, "STARTTLS")?;
    if !plain.buffer().is_empty() {
        bail!("the server sent data after its STARTTLS reply");
    }
    let name = ServerName::try_from("localhost").context("server name")?;
    let conn = ClientConnection::new(Arc::clone(tls), name).context("TLS client")?;
    let mut secure = BufReader::new(StreamOwned::new(conn, plain.into_inner()));
    ehlo(&mut secure).context("EHLO after STARTTLS")?;
    Ok(Session::Tls(Box::new(secure)))
}

/// EHLO; the capability keywords.
fn ehlo<S: std::io::Read + Write>(io: &mut BufReader<S>) -> Result<Vec<String>> {
    io.get_mut().write_all(b"EHLO idle.bench.test\r\n")?;
    io.get_mut().flush()?;
    let reply = expect(io, 250, "EHLO")?;
    Ok(loadgen::ehlo_keywords(&reply))
}

/// Reads one (possibly multi-line) reply and fails unless its code is `code`.
fn expect(io: &mut impl BufRead, code: u16, what: &str) -> Result<String> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if io
            .read_line(&mut line)
            .with_context(|| format!("{what} reply"))?
            == 0
        {
            bail!("{what}: connection closed by the server");
        }
        let line = line.trim_end();
        if line.get(..3).and_then(|c| c.parse::<u16>().ok()) != Some(code) {
            bail!("{what}: {text}{line}");
        }
        text.push_str(line);
        text.push('\n');
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(text);
        }
    }
}

/// One server, one kind of session.
struct Measurement {
    before: Mem,
    after: Mem,
    sessions: usize,
    /// Time to open the N sessions.
    opening: Duration,
}

impl Measurement {
    /// Marginal bytes per session (negative if memory shrank).
    fn per_session(&self, f: impl Fn(&Mem) -> u64) -> f64 {
        (f(&self.after) as f64 - f(&self.before) as f64) / self.sessions as f64
    }

    fn describe(&self, server: &str, kind: Kind) -> String {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        format!(
            "{server} {}: {} processes, PSS {:.1} -> {:.1} MiB, USS {:.1} -> {:.1} MiB, RSS {:.1} \
             -> {:.1} MiB with {} more idle sessions (opened in {:.2?}); per session: PSS {:.0} \
             B, USS {:.0} B, RSS {:.0} B",
            kind.name(),
            self.after.processes,
            mib(self.before.pss),
            mib(self.after.pss),
            mib(self.before.uss),
            mib(self.after.uss),
            mib(self.before.rss),
            mib(self.after.rss),
            self.sessions,
            self.opening,
            self.per_session(|m| m.pss),
            self.per_session(|m| m.uss),
            self.per_session(|m| m.rss),
        )
    }
}

/// Opens a warm-up session and measures, opens `settings.sessions` more and measures
/// again. `mem` reads the server's memory.
fn measure(
    settings: &Settings,
    addr: SocketAddr,
    kind: Kind,
    tls: &Arc<ClientConfig>,
    mem: impl Fn() -> Result<Mem>,
) -> Result<Measurement> {
    let warm_up = open_session(addr, kind, tls).context("the warm-up session")?;
    std::thread::sleep(settings.settle);
    let before = mem()?;
    let started = Instant::now();
    let mut sessions = Vec::with_capacity(settings.sessions);
    for i in 0..settings.sessions {
        sessions.push(
            open_session(addr, kind, tls)
                .with_context(|| format!("opening idle session {}", i + 1))?,
        );
    }
    let opening = started.elapsed();
    std::thread::sleep(settings.settle);
    let after = mem()?;
    // Every session must still be open, or the figure would be for fewer sessions.
    for (i, s) in sessions.iter_mut().enumerate() {
        check_open(s).with_context(|| format!("idle session {} was closed", i + 1))?;
    }
    drop(sessions);
    drop(warm_up);
    Ok(Measurement {
        before,
        after,
        sessions: settings.sessions,
        opening,
    })
}

/// Fails if the server closed the session (or said anything, e.g. a 421).
fn check_open(session: &mut Session) -> Result<()> {
    let tcp = match session {
        Session::Plain(r) => r.get_ref(),
        Session::Tls(r) => &r.get_ref().sock,
    };
    tcp.set_nonblocking(true)?;
    let mut byte = [0u8; 1];
    let result = tcp.peek(&mut byte);
    tcp.set_nonblocking(false)?;
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
        Ok(0) => bail!("end of stream"),
        Ok(_) => bail!("the server sent something unasked"),
        Err(e) => Err(e.into()),
    }
}

fn measure_postfix(
    settings: &Settings,
    cert: &CertFiles,
    kind: Kind,
    tls: &Arc<ClientConfig>,
) -> Result<Measurement> {
    let mut opts = SubmissionOptions::new(free_local_addr()?, cert.clone());
    opts.user = USER.to_owned();
    opts.domain = DOMAIN.to_owned();
    opts.password = PASSWORD.to_owned();
    // The warm-up session too; default_process_limit ends up 50 above this.
    opts.max_sessions = settings.sessions + 1;
    let instance = PostfixInstance::submission(&opts)?;
    let master = instance.master_pid()?;
    let m = measure(settings, instance.listen_addr(), kind, tls, || {
        tree_mem(master)
    })
    .with_context(|| format!("Postfix's log:\n{}", instance.maillog().unwrap_or_default()))?;
    drop(instance);
    Ok(m)
}

fn measure_postern(
    settings: &Settings,
    bin: &Path,
    cert: &CertFiles,
    credentials: &Path,
    kind: Kind,
    tls: &Arc<ClientConfig>,
) -> Result<Measurement> {
    // Sized for the warm-up session too: max_sessions_per_ip and max_sessions follow.
    let gateway = Gateway::start(bin, cert, credentials, settings.sessions + 1, None)?;
    let pid = gateway.pid();
    let m = measure(settings, gateway.addr(), kind, tls, || process_mem(pid))
        .with_context(|| format!("the gateway's log:\n{}", gateway.log()))?;
    drop(gateway);
    Ok(m)
}

/// A kind of session and what each server did with it.
type Row = bench::Row<Kind, Measurement>;

fn run() -> Result<()> {
    let settings = Settings::from_env()?;
    let files = bench::prepare_run(settings.gateway.as_deref())?;
    let tls = loadgen::insecure_client_config()?;
    println!(
        "{} idle sessions per measurement, after one warm-up session of the same kind",
        settings.sessions
    );
    let rows = bench::measure_points(
        &settings.kinds,
        settings.gateway.as_deref(),
        &files,
        |kind| measure_postfix(&settings, &files.cert, kind, &tls),
        |kind, bin, credentials| {
            measure_postern(&settings, bin, &files.cert, credentials, kind, &tls)
        },
        |server, kind, m| m.describe(server, kind),
    )?;
    print_table(&settings, &rows);
    Ok(())
}

fn print_table(settings: &Settings, rows: &[Row]) {
    let bytes = |m: Option<&Measurement>, f: fn(&Mem) -> u64| {
        m.map_or("-".to_owned(), |m| format!("{:.0}", m.per_session(f)))
    };
    let ratio = |row: &Row| {
        row.postern.as_ref().and_then(|pt| {
            let postern = pt.per_session(|m| m.pss);
            (postern > 0.0).then(|| row.postfix.per_session(|m| m.pss) / postern)
        })
    };
    println!();
    println!(
        "bytes of memory per idle session ({} sessions; PSS is the comparison, RSS summed over \
         Postfix's processes counts shared pages once per process)",
        settings.sessions
    );
    println!(
        "{:>8}  {:>11}  {:>11}  {:>15}  {:>11}  {:>11}  {:>15}  {:>11}",
        "session",
        "postfix PSS",
        "postern PSS",
        "postfix/postern",
        "postfix USS",
        "postern USS",
        "postfix RSS sum",
        "postern RSS"
    );
    for row in rows {
        let postern = row.postern.as_ref();
        println!(
            "{:>8}  {:>11}  {:>11}  {:>15}  {:>11}  {:>11}  {:>15}  {:>11}",
            row.point.name(),
            bytes(Some(&row.postfix), |m| m.pss),
            bytes(postern, |m| m.pss),
            ratio(row).map_or("-".to_owned(), |r| format!("{r:.1}")),
            bytes(Some(&row.postfix), |m| m.uss),
            bytes(postern, |m| m.uss),
            bytes(Some(&row.postfix), |m| m.rss),
            bytes(postern, |m| m.rss),
        );
    }
    let ratios = rows
        .iter()
        .map(|row| {
            format!(
                "{} {}",
                row.point.name(),
                ratio(row).map_or("-".to_owned(), |r| format!("{r:.1}"))
            )
        })
        .collect::<Vec<_>>();
    println!(
        "PSS per idle session, Postfix/Postern: {}",
        ratios.join(", ")
    );
}
