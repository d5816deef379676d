//! An SMTP submission load generator (tokio + rustls) for benchmarks and crash tests.
//!
//! Each session connects once, says EHLO, upgrades with STARTTLS (or starts in implicit
//! TLS), authenticates once with AUTH PLAIN, then sends messages back to back on the same
//! connection, pipelining MAIL/RCPT/DATA when the server offers PIPELINING. The latency of
//! a message runs from writing MAIL FROM to reading the final reply after the data.
//!
//! Sessions finish connecting and authenticating before the clock starts, so the rate
//! measures accepting mail, not handshakes (setup time is reported apart).
//!
//! Every accepted message can be kept with its Message-ID and the server's final reply
//! (`250 2.0.0 Ok: queued as <ID>`): a ledger that crash tests compare with what survived.
//! A message whose data was sent but whose reply never came is counted "in doubt": the
//! server may or may not have it. With [`LoadSpec::reconnect`] sessions survive a server
//! restart, and [`run_until`] lets the test say when the load ends.
//!
//! The TLS client accepts any server certificate ([`insecure_client_config`]): it only
//! ever talks to servers the test itself started.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Barrier, watch};
use tokio_rustls::TlsConnector;

/// How a session protects its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain text throughout.
    None,
    /// Port 587 style: plain greeting, then STARTTLS.
    StartTls,
    /// Port 465 style: TLS from the first byte.
    Implicit,
}

/// When sessions stop sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this many attempts per session, accepted or not.
    MessagesPerSession(usize),
    /// After this long (counted from the end of setup); messages in flight complete.
    Duration(Duration),
}

/// What load to generate.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub addr: SocketAddr,
    /// Concurrent connections.
    pub sessions: usize,
    pub stop: Stop,
    /// Approximate size of each message in octets, headers included.
    pub message_size: usize,
    /// AUTH PLAIN credentials; an empty username skips AUTH.
    pub username: String,
    pub password: String,
    pub mail_from: String,
    pub rcpt_to: String,
    pub tls: TlsMode,
    /// Sent as SNI (unless an IP address) and irrelevant otherwise: no certificate is
    /// checked.
    pub server_name: String,
    pub ehlo_name: String,
    /// Keep every accepted message's Message-ID and final reply in the report (and the
    /// Message-IDs of those in doubt).
    pub keep_accepted: bool,
    /// After a connection fails, connect again and go on (until the stop condition),
    /// instead of ending the session: what a crash test wants while the server restarts.
    pub reconnect: bool,
    /// Limit on connecting and on waiting for any single reply.
    pub timeout: Duration,
}

impl LoadSpec {
    /// One STARTTLS session sending 100 messages of 4 KB from bench@bench.test.
    pub fn new(addr: SocketAddr, username: &str, password: &str) -> Self {
        Self {
            addr,
            sessions: 1,
            stop: Stop::MessagesPerSession(100),
            message_size: 4096,
            username: username.to_owned(),
            password: password.to_owned(),
            mail_from: "bench@bench.test".to_owned(),
            rcpt_to: "sink@example.net".to_owned(),
            tls: TlsMode::StartTls,
            server_name: "localhost".to_owned(),
            ehlo_name: "loadgen.postern.test".to_owned(),
            keep_accepted: false,
            reconnect: false,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A message the server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The Message-ID header sent, without angle brackets; unique per run.
    pub message_id: String,
    /// The final reply, e.g. `250 2.0.0 Ok: queued as 4F1C2C0E3A` (lines joined by `\n`).
    pub reply: String,
}

impl Accepted {
    /// The queue id from a `queued as <ID>` reply.
    pub fn queue_id(&self) -> Option<&str> {
        queue_id(&self.reply)
    }
}

/// The queue id from a reply text ending in `queued as <ID>`, as Postfix and Postern say.
pub fn queue_id(reply: &str) -> Option<&str> {
    let (_, rest) = reply.rsplit_once("queued as ")?;
    rest.split_whitespace().next()
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub sessions: usize,
    /// Messages answered 250 after their data.
    pub accepted: u64,
    /// Refused messages, and connections that failed (each counts once).
    pub failed: u64,
    /// Data sent but the final reply never arrived.
    pub in_doubt: u64,
    /// The first few failure texts (server replies or errors).
    pub failure_samples: Vec<String>,
    /// Connecting, TLS and AUTH of all sessions, before the clock started.
    pub setup: Duration,
    /// From the end of setup until the last session finished.
    pub elapsed: Duration,
    pub latency_p50: Duration,
    pub latency_p99: Duration,
    pub latency_max: Duration,
    /// Every accepted message, when [`LoadSpec::keep_accepted`] is set.
    pub accepted_messages: Vec<Accepted>,
    /// Message-IDs of the messages in doubt, when [`LoadSpec::keep_accepted`] is set.
    pub in_doubt_messages: Vec<String>,
}

impl LoadReport {
    /// Accepted messages per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.accepted as f64 / secs
        } else {
            0.0
        }
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} sessions: {} accepted, {} failed, {} in doubt in {:.2?} ({:.0} msg/s), \
             latency p50 {:.2?} p99 {:.2?} max {:.2?}, setup {:.2?}",
            self.sessions,
            self.accepted,
            self.failed,
            self.in_doubt,
            self.elapsed,
            self.rate(),
            self.latency_p50,
            self.latency_p99,
            self.latency_max,
            self.setup
        )?;
        for sample in &self.failure_samples {
            write!(f, "\n  failure: {sample}")?;
        }
        Ok(())
    }
}

const MAX_FAILURE_SAMPLES: usize = 5;

/// Runs the load described by `spec` and reports on it. Fails only when the run itself
/// cannot happen (bad spec, TLS setup); server refusals and broken connections are in
/// the report.
pub async fn run(spec: &LoadSpec) -> Result<LoadReport> {
    let (_never, stop) = watch::channel(false);
    run_until(spec, stop).await
}

/// [`run`], ending early (as if the time were up) once `stop` holds true: for tests that
/// decide when they have seen enough, e.g. some traffic after restarting the server.
pub async fn run_until(spec: &LoadSpec, stop: watch::Receiver<bool>) -> Result<LoadReport> {
    if spec.sessions == 0 {
        bail!("a load needs at least one session");
    }
    let shared = Arc::new(Shared {
        spec: spec.clone(),
        tls: TlsConnector::from(insecure_client_config()?),
        server_name: ServerName::try_from(spec.server_name.clone())
            .with_context(|| format!("server name {:?}", spec.server_name))?,
        barrier: Barrier::new(spec.sessions + 1),
        run_id: format!("{:016x}", RandomState::new().build_hasher().finish()),
        filler: filler(spec.message_size),
        stop,
    });
    let started = Instant::now();
    let tasks = (0..spec.sessions)
        .map(|index| tokio::spawn(session(Arc::clone(&shared), index)))
        .collect::<Vec<_>>();
    shared.barrier.wait().await;
    let setup = started.elapsed();
    let clock = Instant::now();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.context("a load session panicked")?);
    }
    let elapsed = clock.elapsed();

    let mut report = LoadReport {
        sessions: spec.sessions,
        setup,
        elapsed,
        ..LoadReport::default()
    };
    let mut latencies = Vec::new();
    for r in results {
        report.accepted += r.accepted;
        report.failed += r.failed;
        report.in_doubt += r.in_doubt;
        report.failure_samples.extend(r.failure_samples);
        report.accepted_messages.extend(r.accepted_messages);
        report.in_doubt_messages.extend(r.in_doubt_messages);
        latencies.extend(r.latencies);
    }
    report.failure_samples.truncate(MAX_FAILURE_SAMPLES);
    latencies.sort_unstable();
    report.latency_p50 = percentile(&latencies, 0.50);
    report.latency_p99 = percentile(&latencies, 0.99);
    report.latency_max = latencies.last().copied().unwrap_or_default();
    Ok(report)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A rustls client configuration that accepts any server certificate, for talking to
/// servers with throwaway self-signed certificates. Handshake signatures are still
/// checked, so the client does the cryptographic work a real one does.
pub fn insecure_client_config() -> Result<Arc<ClientConfig>> {
    // The gateway's own non-verifying client configuration (opportunistic MX TLS):
    // it still checks handshake signatures, only not the certificate's chain or name.
    postern_gateway::outbound::tls::client_config(false, None).context("TLS client configuration")
}

struct Shared {
    spec: LoadSpec,
    tls: TlsConnector,
    server_name: ServerName<'static>,
    /// Sessions plus the coordinator: released when every session finished its setup.
    barrier: Barrier,
    run_id: String,
    /// Body lines making up the bulk of each message; the same for all.
    filler: Vec<u8>,
    stop: watch::Receiver<bool>,
}

#[derive(Default)]
struct SessionResult {
    accepted: u64,
    failed: u64,
    in_doubt: u64,
    failure_samples: Vec<String>,
    latencies: Vec<Duration>,
    accepted_messages: Vec<Accepted>,
    in_doubt_messages: Vec<String>,
}

impl SessionResult {
    fn fail(&mut self, what: String) {
        self.failed += 1;
        if self.failure_samples.len() < MAX_FAILURE_SAMPLES {
            self.failure_samples.push(what);
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One SMTP connection: reads are buffered, writes go straight to the stream (each
/// command batch is built whole first, so it leaves in one TLS record where it fits).
struct Conn {
    io: BufReader<Box<dyn Io>>,
    pipelining: bool,
    timeout: Duration,
}

/// A complete SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reply {
    code: u16,
    /// All lines, without CRLF, joined by `\n`.
    text: String,
}

impl Reply {
    fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
}

/// Why a message did not end in a reply.
struct Broken {
    /// The data went out, so the server may have the message.
    in_doubt: bool,
    error: anyhow::Error,
}

async fn session(shared: Arc<Shared>, index: usize) -> SessionResult {
    let spec = &shared.spec;
    let mut result = SessionResult::default();
    let mut conn = connect(&shared).await;
    shared.barrier.wait().await;
    let deadline = match spec.stop {
        Stop::Duration(d) => Some(Instant::now() + d),
        Stop::MessagesPerSession(_) => None,
    };
    let mut attempts = 0usize;
    // With reconnect, how long connecting has kept failing: a server that stays down ends
    // the session after `timeout` rather than never.
    let mut failing_since: Option<Instant> = None;
    let more = |attempts: usize| {
        !*shared.stop.borrow()
            && match spec.stop {
                Stop::MessagesPerSession(n) => attempts < n,
                Stop::Duration(_) => deadline.is_some_and(|d| Instant::now() < d),
            }
    };
    loop {
        match conn {
            Err(e) => {
                result.fail(format!("session {index}: {e:#}"));
                let down_since = *failing_since.get_or_insert_with(Instant::now);
                if !spec.reconnect || !more(attempts) || down_since.elapsed() > spec.timeout {
                    break;
                }
                // The server is probably restarting; do not spin on refused connections.
                tokio::time::sleep(Duration::from_millis(100)).await;
                conn = connect(&shared).await;
            }
            Ok(mut c) => {
                failing_since = None;
                let mut broken = None;
                while more(attempts) {
                    attempts += 1;
                    let message_id =
                        format!("{}.{index}.{attempts}@loadgen.postern.test", shared.run_id);
                    let started = Instant::now();
                    match transact(&mut c, &shared, &message_id).await {
                        Ok(reply) if reply.code == 250 => {
                            result.accepted += 1;
                            result.latencies.push(started.elapsed());
                            if spec.keep_accepted {
                                result.accepted_messages.push(Accepted {
                                    message_id,
                                    reply: reply.text,
                                });
                            }
                        }
                        Ok(reply) => {
                            result.fail(reply.text);
                            if reply.code == 421 {
                                broken = Some(anyhow!("server closed the session"));
                                break;
                            }
                        }
                        Err(b) => {
                            if b.in_doubt {
                                result.in_doubt += 1;
                                if spec.keep_accepted {
                                    result.in_doubt_messages.push(message_id);
                                }
                            }
                            broken = Some(b.error);
                            break;
                        }
                    }
                }
                match broken {
                    None => {
                        // Politeness only: the run is over either way.
                        let _ = command(&mut c, "QUIT").await;
                        break;
                    }
                    Some(e) => conn = Err(e),
                }
            }
        }
    }
    result
}

/// Connects, says EHLO, does TLS and AUTH; a session ready for MAIL.
async fn connect(shared: &Shared) -> Result<Conn> {
    let spec = &shared.spec;
    let tcp = tokio::time::timeout(spec.timeout, TcpStream::connect(spec.addr))
        .await
        .map_err(|_| anyhow!("connecting to {} timed out", spec.addr))?
        .with_context(|| format!("connecting to {}", spec.addr))?;
    // Commands are sent whole; Nagle would only delay the pipelined batches.
    tcp.set_nodelay(true)?;
    let io: Box<dyn Io> = if spec.tls == TlsMode::Implicit {
        Box::new(handshake(shared, Box::new(tcp)).await?)
    } else {
        Box::new(tcp)
    };
    let mut conn = Conn {
        io: BufReader::new(io),
        pipelining: false,
        timeout: spec.timeout,
    };
    expect(read_reply(&mut conn).await?, 220, "greeting")?;
    let mut caps = ehlo(&mut conn, &spec.ehlo_name).await?;
    if spec.tls == TlsMode::StartTls {
        if !caps.iter().any(|c| c == "STARTTLS") {
            bail!("server does not offer STARTTLS");
        }
        expect(command(&mut conn, "STARTTLS").await?, 220, "STARTTLS")?;
        if !conn.io.buffer().is_empty() {
            bail!("server sent data after its STARTTLS reply");
        }
        let plain = conn.io.into_inner();
        conn.io = BufReader::new(Box::new(handshake(shared, plain).await?));
        caps = ehlo(&mut conn, &spec.ehlo_name).await?;
    }
    conn.pipelining = caps.iter().any(|c| c == "PIPELINING");
    if !spec.username.is_empty() {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("\0{}\0{}", spec.username, spec.password));
        expect(
            command(&mut conn, &format!("AUTH PLAIN {token}")).await?,
            235,
            "AUTH",
        )?;
    }
    Ok(conn)
}

async fn handshake(
    shared: &Shared,
    io: Box<dyn Io>,
) -> Result<tokio_rustls::client::TlsStream<Box<dyn Io>>> {
    tokio::time::timeout(
        shared.spec.timeout,
        shared.tls.connect(shared.server_name.clone(), io),
    )
    .await
    .map_err(|_| anyhow!("TLS handshake timed out"))?
    .context("TLS handshake")
}

/// EHLO; the capability keywords, upper-cased.
async fn ehlo(conn: &mut Conn, name: &str) -> Result<Vec<String>> {
    let reply = expect(command(conn, &format!("EHLO {name}")).await?, 250, "EHLO")?;
    Ok(ehlo_keywords(&reply.text))
}

/// The extension keywords of a (multi-line) EHLO reply, upper-cased.
pub fn ehlo_keywords(reply: &str) -> Vec<String> {
    reply
        .lines()
        .skip(1)
        .filter_map(|l| l.get(4..))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_ascii_uppercase)
        .collect()
}

fn expect(reply: Reply, code: u16, what: &str) -> Result<Reply> {
    if reply.code != code {
        bail!("{what}: {}", reply.text);
    }
    Ok(reply)
}

async fn command(conn: &mut Conn, line: &str) -> Result<Reply> {
    send(conn, format!("{line}\r\n").as_bytes()).await?;
    read_reply(conn).await
}

async fn send(conn: &mut Conn, bytes: &[u8]) -> Result<()> {
    let io = conn.io.get_mut();
    tokio::time::timeout(conn.timeout, async {
        io.write_all(bytes).await?;
        io.flush().await
    })
    .await
    .map_err(|_| anyhow!("writing timed out"))?
    .context("writing")
}

/// One transaction; the final reply, or a refusal of MAIL, RCPT or DATA.
async fn transact(conn: &mut Conn, shared: &Shared, message_id: &str) -> Result<Reply, Broken> {
    let spec = &shared.spec;
    let before_data = |error: anyhow::Error| Broken {
        in_doubt: false,
        error,
    };
    let mail = format!("MAIL FROM:<{}>\r\n", spec.mail_from);
    let rcpt = format!("RCPT TO:<{}>\r\n", spec.rcpt_to);
    let (mail_reply, refusal) = if conn.pipelining {
        let batch = format!("{mail}{rcpt}DATA\r\n");
        send(conn, batch.as_bytes()).await.map_err(before_data)?;
        let mail_reply = read_reply(conn).await.map_err(before_data)?;
        let rcpt_reply = read_reply(conn).await.map_err(before_data)?;
        let data_reply = read_reply(conn).await.map_err(before_data)?;
        let refusal = [&mail_reply, &rcpt_reply, &data_reply]
            .into_iter()
            .find(|r| !r.is_positive())
            .cloned();
        (mail_reply, refusal)
    } else {
        let mut refusal = None;
        let mail_reply = command(conn, mail.trim_end()).await.map_err(before_data)?;
        for line in [rcpt.trim_end(), "DATA"] {
            if refusal.is_some() || !mail_reply.is_positive() {
                break;
            }
            let reply = command(conn, line).await.map_err(before_data)?;
            if !reply.is_positive() {
                refusal = Some(reply);
            }
        }
        if !mail_reply.is_positive() {
            refusal = Some(mail_reply.clone());
        }
        (mail_reply, refusal)
    };
    if let Some(refusal) = refusal {
        // An accepted MAIL leaves a transaction open that the next MAIL would collide with.
        if mail_reply.is_positive() && refusal.code != 421 {
            command(conn, "RSET").await.map_err(before_data)?;
        }
        return Ok(refusal);
    }
    let mut message = format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: load {message_id}\r\n\
         Message-ID: <{message_id}>\r\n\r\n",
        from = spec.mail_from,
        to = spec.rcpt_to,
    )
    .into_bytes();
    message.extend_from_slice(&shared.filler);
    message.extend_from_slice(b".\r\n");
    send(conn, &message).await.map_err(|error| Broken {
        in_doubt: true,
        error,
    })?;
    read_reply(conn).await.map_err(|error| Broken {
        in_doubt: true,
        error,
    })
}

/// Lines of text that bring a message with ~120 octets of headers to about `size` octets;
/// none starts with a dot, so no dot-stuffing is needed.
fn filler(size: usize) -> Vec<u8> {
    const LINE: &[u8] =
        b"The quick brown fox jumps over the lazy dog while the gateway fsyncs.\r\n";
    let target = size.saturating_sub(120).max(LINE.len());
    LINE.iter()
        .copied()
        .cycle()
        .take(target - target % LINE.len())
        .collect()
}

/// Reads one reply, joining the lines of a multi-line one.
async fn read_reply(conn: &mut Conn) -> Result<Reply> {
    let mut text = String::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = tokio::time::timeout(
            conn.timeout,
            (&mut conn.io).take(4096).read_until(b'\n', &mut line),
        )
        .await
        .map_err(|_| anyhow!("no reply within {:?}", conn.timeout))?
        .context("reading a reply")?;
        if n == 0 {
            bail!("connection closed by the server");
        }
        let s = String::from_utf8_lossy(&line);
        let s = s.trim_end_matches(['\r', '\n']);
        let code = s
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (200..600).contains(c))
            .ok_or_else(|| anyhow!("malformed reply line {s:?}"))?;
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(s);
        match s.as_bytes().get(3) {
            Some(b'-') => continue,
            None | Some(b' ') => return Ok(Reply { code, text }),
            Some(_) => bail!("malformed reply line {s:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postfix::{CertFiles, PostfixInstance, SubmissionOptions, write_self_signed_cert};
    use crate::process::free_local_addr;
    use tokio::io::AsyncWriteExt;

    fn conn_over(server: tokio::io::DuplexStream) -> Conn {
        Conn {
            io: BufReader::new(Box::new(server)),
            pipelining: false,
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn replies_multi_line_and_split_across_reads() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut conn = conn_over(client);
        let writer = tokio::spawn(async move {
            for chunk in [
                &b"250-mx.example Hello\r\n250-PIPE"[..],
                b"LINING\r\n250-AUTH PLAIN LOGIN\r\n250 STARTTLS\r\n",
                b"250 2.0.0 Ok: queued as 4F1C2C0E3A\r\n",
                b"451 4.3.0 try later\r\n",
                b"25x bad\r\n",
            ] {
                server.write_all(chunk).await.unwrap();
            }
            server
        });
        let ehlo = read_reply(&mut conn).await.unwrap();
        assert_eq!(ehlo.code, 250);
        assert_eq!(ehlo.text.lines().count(), 4);
        assert_eq!(ehlo.text.lines().nth(1), Some("250-PIPELINING"));
        let queued = read_reply(&mut conn).await.unwrap();
        assert_eq!(queue_id(&queued.text), Some("4F1C2C0E3A"));
        let temp = read_reply(&mut conn).await.unwrap();
        assert_eq!((temp.code, temp.is_positive()), (451, false));
        assert!(read_reply(&mut conn).await.is_err());
        drop(writer.await.unwrap());
        assert!(read_reply(&mut conn).await.is_err(), "EOF is an error");
    }

    #[test]
    fn messages_have_about_the_requested_size() {
        let body = filler(4096);
        assert!(
            (3800..=4096).contains(&(body.len() + 120)),
            "{}",
            body.len()
        );
        assert!(!body.starts_with(b"."));
        assert!(body.ends_with(b"\r\n"));
    }

    #[test]
    fn percentiles_pick_ranks() {
        let d = (1..=100).map(Duration::from_millis).collect::<Vec<_>>();
        assert_eq!(percentile(&d, 0.50), Duration::from_millis(50));
        assert_eq!(percentile(&d, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.99), Duration::ZERO);
    }

    fn postfix_peer() -> (tempfile::TempDir, SubmissionOptions, PostfixInstance) {
        let dir = tempfile::tempdir().unwrap();
        let tls: CertFiles = write_self_signed_cert(dir.path(), &["localhost"]).unwrap();
        let mut opts = SubmissionOptions::new(free_local_addr().unwrap(), tls);
        opts.implicit_tls_listen = Some(free_local_addr().unwrap());
        let postfix = PostfixInstance::submission(&opts).unwrap();
        (dir, opts, postfix)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_accepted_message_is_in_the_postfix_queue() {
        let (_dir, opts, postfix) = tokio::task::spawn_blocking(postfix_peer).await.unwrap();
        let mut spec = LoadSpec::new(postfix.listen_addr(), &opts.login(), &opts.password);
        spec.sessions = 3;
        spec.stop = Stop::MessagesPerSession(10);
        spec.keep_accepted = true;
        let report = run(&spec).await.unwrap();
        assert_eq!(
            (report.accepted, report.failed, report.in_doubt),
            (30, 0, 0),
            "{report}"
        );
        assert!(report.latency_p50 > Duration::ZERO && report.latency_p99 >= report.latency_p50);
        assert!(report.rate() > 0.0);

        let mut ledger = report
            .accepted_messages
            .iter()
            .map(|a| a.queue_id().unwrap().to_owned())
            .collect::<Vec<_>>();
        ledger.sort();
        ledger.dedup();
        let mut queued = postfix.queued_ids().unwrap();
        queued.sort();
        assert_eq!(ledger, queued);
        let log = postfix.maillog().unwrap();
        let first = &report.accepted_messages[0];
        assert!(
            log.contains(&format!("message-id=<{}>", first.message_id)),
            "{log}"
        );

        // The same over implicit TLS, for a fixed time.
        spec.addr = opts.implicit_tls_listen.unwrap();
        spec.tls = TlsMode::Implicit;
        spec.sessions = 2;
        spec.stop = Stop::Duration(Duration::from_millis(500));
        let report = run(&spec).await.unwrap();
        assert!(report.accepted > 0 && report.failed == 0, "{report}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sessions_reconnect_when_the_server_restarts() {
        let (_dir, opts, postfix) = tokio::task::spawn_blocking(postfix_peer).await.unwrap();
        let mut spec = LoadSpec::new(postfix.listen_addr(), &opts.login(), &opts.password);
        spec.sessions = 2;
        // Only a bound: the test stops the load once the restarted server had a second.
        spec.stop = Stop::Duration(Duration::from_secs(120));
        spec.reconnect = true;
        spec.keep_accepted = true;
        let (stop, stopped) = watch::channel(false);
        let load = tokio::spawn(async move { run_until(&spec, stopped).await });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let second = tokio::task::spawn_blocking(move || {
            drop(postfix);
            PostfixInstance::submission(&opts).unwrap()
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.send(true).unwrap();
        let report = load.await.unwrap().unwrap();
        assert!(report.failed > 0, "the restart went unnoticed: {report}");
        let queued = second.queued_ids().unwrap();
        let after_restart = report
            .accepted_messages
            .iter()
            .filter(|m| queued.contains(&m.queue_id().unwrap().to_owned()))
            .count() as u64;
        assert!(after_restart > 0, "{report}");
        assert!(after_restart < report.accepted, "{report}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refusals_are_reported_with_their_text() {
        let (_dir, opts, postfix) = tokio::task::spawn_blocking(postfix_peer).await.unwrap();
        let mut spec = LoadSpec::new(postfix.listen_addr(), &opts.login(), "wrong password");
        spec.sessions = 2;
        let report = run(&spec).await.unwrap();
        assert_eq!((report.accepted, report.failed), (0, 2), "{report}");
        assert!(report.failure_samples[0].contains("535"), "{report}");

        // Authenticated, but the recipient is refused: the session goes on with RSET.
        let mut spec = LoadSpec::new(postfix.listen_addr(), &opts.login(), &opts.password);
        spec.rcpt_to = "not an address".to_owned();
        spec.stop = Stop::MessagesPerSession(3);
        let report = run(&spec).await.unwrap();
        assert_eq!((report.accepted, report.failed), (0, 3), "{report}");
        assert!(report.failure_samples[0].starts_with("501"), "{report}");

        // Nothing listening: a failed session, no hang.
        spec.addr = free_local_addr().unwrap();
        let report = run(&spec).await.unwrap();
        assert_eq!((report.accepted, report.failed), (0, 1), "{report}");
    }
}
