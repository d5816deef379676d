//! One delivery run to one destination: try its hosts in order, each address in
//! turn; on the first that takes a session, send every job over that connection
//! (connection reuse), splitting recipients into transactions of bounded size. A
//! connection failure, a refused greeting or EHLO, or a temporary refusal of MAIL
//! moves the remaining jobs to the next host; what no host took is deferred with the
//! last reason. Each recipient ends delivered, deferred or bounced, decided by the
//! reply class (RFC 5321 §4.2.1).
//!
//! A run hands back the connection it ended on when it is still sound, so that the
//! queue can keep it for the destination's next messages ([`Deliverer::resume`]); a
//! kept connection that fails (the server closed it meanwhile) sends its jobs back
//! through the normal route.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use postern_config::DeliveryConfig;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use postern_proto::Reply;

use super::client::{ClientError, ClientTimeouts, Outgoing, SmtpClient};

/// A stream that may or may not be encrypted.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Conn = Box<dyn Io>;

/// A host to try and its addresses, in the order to try them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub name: String,
    pub addrs: Vec<SocketAddr>,
}

/// How TLS is used on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// STARTTLS when offered; plain text otherwise or when the handshake fails.
    Opportunistic { verify: bool },
    /// STARTTLS or nothing: without TLS the mail is deferred.
    Require { verify: bool },
    /// TLS from the first byte.
    Implicit { verify: bool },
    /// Plain text.
    None,
}

/// Where and how to deliver.
#[derive(Debug, Clone)]
pub struct Route {
    pub hops: Vec<Hop>,
    pub tls: TlsMode,
    /// AUTH user name and password (smarthost).
    pub auth: Option<(String, String)>,
}

/// What TLS a delivery used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsUsed {
    None,
    Unverified,
    Verified,
}

/// One message's share of a delivery run: the recipients for this destination.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub sender: String,
    pub smtputf8: bool,
    pub eight_bit: bool,
    pub size: u64,
    /// (index in the message's recipient list, address)
    pub rcpts: Vec<(usize, String)>,
}

/// The fate of one recipient in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Deferred,
    Bounced,
}

/// One recipient's result.
#[derive(Debug, Clone)]
pub struct RcptResult {
    pub index: usize,
    pub outcome: Outcome,
    /// Enhanced status code, e.g. "2.0.0", "4.4.1", "5.1.1".
    pub status: String,
    /// The remote reply or local reason.
    pub detail: String,
    /// The host that answered, `name[ip]`.
    pub remote: Option<String>,
    pub tls: TlsUsed,
}

/// Everything a delivery run needs besides the route and the jobs.
pub struct Deliverer {
    pub helo: String,
    pub connect_timeout: Duration,
    pub timeouts: ClientTimeouts,
    pub verified: Arc<ClientConfig>,
    pub unverified: Arc<ClientConfig>,
    pub max_rcpts: usize,
    /// Where the content of messages comes from.
    pub spool: crate::spool::Spool,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// A connected, greeted (and possibly encrypted and authenticated) session.
pub struct Connection {
    client: SmtpClient<Conn>,
    remote: String,
    tls: TlsUsed,
    /// Messages sent over it.
    sent: usize,
    opened: std::time::Instant,
    /// Set when the connection can no longer be trusted although the current job's
    /// results are known (status and reason for the log and the next host).
    broken: Option<(String, String)>,
}

impl Connection {
    /// Messages sent over this connection so far.
    pub fn sent(&self) -> usize {
        self.sent
    }

    /// Time since it was opened.
    pub fn age(&self) -> Duration {
        self.opened.elapsed()
    }
}

/// Results by message, and the connection to keep when it is still sound.
pub type RunResult = (Vec<(String, Vec<RcptResult>)>, Option<Connection>);

impl Deliverer {
    pub fn new(
        cfg: &DeliveryConfig,
        helo: String,
        verified: Arc<ClientConfig>,
        unverified: Arc<ClientConfig>,
        spool: crate::spool::Spool,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        let t = &cfg.timeouts;
        Self {
            helo,
            connect_timeout: t.connect,
            timeouts: ClientTimeouts {
                greeting: t.greeting,
                command: t.command,
                data_init: t.data_init,
                data_block: t.data_block,
                data_done: t.data_done,
            },
            verified,
            unverified,
            max_rcpts: cfg.limits.max_recipients_per_transaction,
            spool,
            metrics,
        }
    }

    /// Sends `jobs` over a connection kept from an earlier run. Returns the results of
    /// what went, the jobs still to send (when the connection failed; they should take
    /// the normal route) and the connection while it is sound.
    pub async fn resume(
        &self,
        mut conn: Connection,
        jobs: Vec<Job>,
    ) -> (Vec<(String, Vec<RcptResult>)>, Vec<Job>, Option<Connection>) {
        let mut remaining: VecDeque<Job> = jobs.into();
        let mut results = Vec::new();
        let mut last_error = (String::new(), String::new());
        if self
            .send_all(&mut conn, &mut remaining, &mut results, &mut last_error)
            .await
        {
            (results, Vec::new(), Some(conn))
        } else {
            // Typically the server closed the connection while it was kept.
            tracing::info!(host = %conn.remote, reason = %last_error.1, "kept connection no longer usable; opening a new one");
            (results, remaining.into(), None)
        }
    }

    /// Ends a kept connection politely.
    pub async fn close(&self, mut conn: Connection) {
        conn.client.quit().await;
    }

    /// Sends jobs from the front of `remaining` until none is left (true) or the
    /// connection fails (false): the failed job is back at the front, unless part of it
    /// went through (then its results are in `results`, the rest of it deferred).
    async fn send_all(
        &self,
        conn: &mut Connection,
        remaining: &mut VecDeque<Job>,
        results: &mut Vec<(String, Vec<RcptResult>)>,
        last_error: &mut (String, String),
    ) -> bool {
        while let Some(job) = remaining.pop_front() {
            match self.send_job(conn, &job).await {
                Ok(r) => {
                    conn.sent += 1;
                    results.push((job.id, r));
                    if let Some(failure) = conn.broken.take() {
                        *last_error = failure;
                        return false;
                    }
                }
                Err((status, why)) => {
                    *last_error = (status, why);
                    remaining.push_front(job);
                    return false;
                }
            }
        }
        true
    }

    /// Delivers `jobs` along `route`; returns every recipient's result, by message,
    /// and the connection the run ended on when it is still sound.
    pub async fn run(&self, route: &Route, jobs: Vec<Job>, dest_label: &str) -> RunResult {
        let mut remaining: VecDeque<Job> = jobs.into();
        let mut results = Vec::new();
        let mut kept = None;
        let mut last_error = (String::from("4.4.1"), String::from("no host to deliver to"));
        'hops: for hop in &route.hops {
            for &addr in &hop.addrs {
                if remaining.is_empty() {
                    break 'hops;
                }
                let mut session = match self.open(hop, addr, route, dest_label).await {
                    Ok(s) => s,
                    Err((status, why)) => {
                        tracing::info!(host = %hop.name, %addr, reason = %why, "next hop failed");
                        last_error = (status, why);
                        continue;
                    }
                };
                if self
                    .send_all(&mut session, &mut remaining, &mut results, &mut last_error)
                    .await
                {
                    kept = Some(session);
                } else {
                    tracing::info!(host = %session.remote, reason = %last_error.1, "session failed; trying the next host");
                }
            }
        }
        for job in remaining {
            let rcpts = job
                .rcpts
                .iter()
                .map(|&(index, _)| RcptResult {
                    index,
                    outcome: Outcome::Deferred,
                    status: last_error.0.clone(),
                    detail: last_error.1.clone(),
                    remote: None,
                    tls: TlsUsed::None,
                })
                .collect();
            results.push((job.id, rcpts));
        }
        (results, kept)
    }

    /// Connects to one address and prepares a session per the route's TLS and AUTH.
    /// Errors carry an enhanced status and a reason.
    async fn open(
        &self,
        hop: &Hop,
        addr: SocketAddr,
        route: &Route,
        dest_label: &str,
    ) -> Result<Connection, (String, String)> {
        let result = self.open_per_policy(hop, addr, route, dest_label).await;
        let (outcome, tls) = match &result {
            Ok(s) => ("ok", s.tls),
            Err(_) => ("failed", TlsUsed::None),
        };
        let tls = match tls {
            TlsUsed::None => "none",
            TlsUsed::Unverified => "opportunistic",
            TlsUsed::Verified => "verified",
        };
        self.metrics
            .outbound_connections
            .with_label_values(&[outcome, tls, dest_label])
            .inc();
        result
    }

    async fn open_per_policy(
        &self,
        hop: &Hop,
        addr: SocketAddr,
        route: &Route,
        dest_label: &str,
    ) -> Result<Connection, (String, String)> {
        match route.tls {
            TlsMode::Opportunistic { verify } => {
                match self.open_with(hop, addr, route, true, verify).await {
                    // A failed handshake: try once more in plain text (Postfix's `may`).
                    Err(e) if e.0 == "4.7.5" => {
                        self.metrics
                            .outbound_connections
                            .with_label_values(&["tls_failed", "none", dest_label])
                            .inc();
                        self.open_with(hop, addr, route, false, verify).await
                    }
                    other => other,
                }
            }
            TlsMode::Require { verify } | TlsMode::Implicit { verify } => {
                self.open_with(hop, addr, route, true, verify).await
            }
            TlsMode::None => self.open_with(hop, addr, route, false, false).await,
        }
    }

    async fn open_with(
        &self,
        hop: &Hop,
        addr: SocketAddr,
        route: &Route,
        use_tls: bool,
        verify: bool,
    ) -> Result<Connection, (String, String)> {
        let remote = format!("{}[{}]", hop.name, addr.ip());
        let fail = |status: &str, why: String| (status.to_owned(), format!("{remote}: {why}"));
        let tcp = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return Err(fail("4.4.1", format!("connect failed: {e}"))),
            Err(_) => return Err(fail("4.4.1", "connect timed out".into())),
        };
        let _ = tcp.set_nodelay(true);
        let mut tls = TlsUsed::None;
        let mut conn: Conn = Box::new(tcp);
        if let (TlsMode::Implicit { .. }, true) = (route.tls, use_tls) {
            conn = self
                .handshake(conn, &hop.name, verify)
                .await
                .map_err(|w| fail("4.7.5", w))?;
            tls = if verify {
                TlsUsed::Verified
            } else {
                TlsUsed::Unverified
            };
        }
        let mut client = SmtpClient::new(conn, self.timeouts.clone());
        client
            .greeting()
            .await
            .map_err(|e| fail(&client_status(&e), e.to_string()))?;
        client
            .ehlo(&self.helo)
            .await
            .map_err(|e| fail(&client_status(&e), e.to_string()))?;
        let starttls = matches!(
            route.tls,
            TlsMode::Opportunistic { .. } | TlsMode::Require { .. }
        );
        if starttls && use_tls {
            if !client.caps.starttls {
                if matches!(route.tls, TlsMode::Require { .. }) {
                    client.quit().await;
                    return Err(fail(
                        "4.7.4",
                        "TLS is required but the server does not offer STARTTLS".into(),
                    ));
                }
            } else {
                client
                    .starttls()
                    .await
                    .map_err(|e| fail(&client_status(&e), e.to_string()))?;
                let conn = self
                    .handshake(client.into_inner(), &hop.name, verify)
                    .await
                    .map_err(|w| fail("4.7.5", w))?;
                tls = if verify {
                    TlsUsed::Verified
                } else {
                    TlsUsed::Unverified
                };
                client = SmtpClient::new(conn, self.timeouts.clone());
                client
                    .ehlo(&self.helo)
                    .await
                    .map_err(|e| fail(&client_status(&e), e.to_string()))?;
            }
        }
        if let Some((user, password)) = &route.auth {
            client
                .auth(user, password)
                .await
                .map_err(|e| fail(&client_status(&e), format!("authentication failed: {e}")))?;
        }
        Ok(Connection {
            client,
            remote,
            tls,
            sent: 0,
            opened: std::time::Instant::now(),
            broken: None,
        })
    }

    async fn handshake(&self, conn: Conn, name: &str, verify: bool) -> Result<Conn, String> {
        let config = if verify {
            self.verified.clone()
        } else {
            self.unverified.clone()
        };
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|e| format!("bad TLS name {name}: {e}"))?;
        let connector = TlsConnector::from(config);
        match tokio::time::timeout(self.timeouts.command, connector.connect(server_name, conn))
            .await
        {
            Ok(Ok(s)) => Ok(Box::new(s)),
            Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
            Err(_) => Err("TLS handshake timed out".into()),
        }
    }

    /// Sends one job over an open session. An error means the session is unusable
    /// (or MAIL was refused temporarily) and the job should go to the next host.
    async fn send_job(
        &self,
        s: &mut Connection,
        job: &Job,
    ) -> Result<Vec<RcptResult>, (String, String)> {
        let result = |index: usize, outcome: Outcome, status: String, detail: String| RcptResult {
            index,
            outcome,
            status,
            detail,
            remote: Some(s.remote.clone()),
            tls: s.tls,
        };
        if job.smtputf8 && !s.client.caps.smtputf8 {
            return Ok(job
                .rcpts
                .iter()
                .map(|&(i, _)| {
                    result(
                        i,
                        Outcome::Bounced,
                        "5.6.7".into(),
                        format!(
                            "{} does not support SMTPUTF8, which the message needs",
                            s.remote
                        ),
                    )
                })
                .collect());
        }
        if let Some(limit) = s.client.caps.size
            && job.size > limit
        {
            return Ok(job
                .rcpts
                .iter()
                .map(|&(i, _)| {
                    result(
                        i,
                        Outcome::Bounced,
                        "5.3.4".into(),
                        format!(
                            "message size {} exceeds the limit of {} ({limit} octets)",
                            job.size, s.remote
                        ),
                    )
                })
                .collect());
        }
        let mut out = Vec::with_capacity(job.rcpts.len());
        // Recipients from `from` on end deferred with `status` and `why`: once a
        // transaction of this job went through, the job is never sent again as a whole
        // (that would deliver twice to the earlier recipients).
        let defer_from = |out: &mut Vec<RcptResult>, from: usize, status: &str, why: &str| {
            for &(i, _) in job.rcpts.iter().skip(from) {
                out.push(result(
                    i,
                    Outcome::Deferred,
                    status.to_owned(),
                    why.to_owned(),
                ));
            }
        };
        for (n, chunk) in job.rcpts.chunks(self.max_rcpts).enumerate() {
            let start = n * self.max_rcpts;
            let addrs: Vec<String> = chunk.iter().map(|(_, a)| a.clone()).collect();
            let msg = Outgoing {
                sender: &job.sender,
                recipients: &addrs,
                size: job.size,
                eight_bit: job.eight_bit,
                smtputf8: job.smtputf8,
            };
            let mut body = match self.body(&job.id, job.size).await {
                Ok(b) => b,
                Err(e) => {
                    // Nothing of this transaction was sent: the connection is sound.
                    let why = format!("cannot read queued message: {e}");
                    defer_from(&mut out, start, "4.3.0", &why);
                    return Ok(out);
                }
            };
            let tx = match s.client.send(&msg, &mut body).await {
                Ok(tx) => tx,
                Err(e) => {
                    let (status, why) = (client_status(&e), format!("{}: {e}", s.remote));
                    if out.is_empty() {
                        return Err((status, why));
                    }
                    defer_from(&mut out, start, &status, &why);
                    s.broken = Some((status, why));
                    return Ok(out);
                }
            };
            if tx.mail.is_transient() {
                let rset = s.client.rset().await;
                let why = format!("{}: MAIL FROM refused: {}", s.remote, tx.mail);
                if out.is_empty() {
                    return Err(("4.0.0".into(), why));
                }
                defer_from(&mut out, start, &status_of(&tx.mail), &why);
                if let Err(e) = rset {
                    s.broken = Some(("4.4.2".into(), format!("{}: {e}", s.remote)));
                }
                return Ok(out);
            }
            for (k, &(index, _)) in chunk.iter().enumerate() {
                let reply = tx.verdict(k);
                out.push(result(
                    index,
                    outcome_of(reply),
                    status_of(reply),
                    reply.to_string(),
                ));
            }
            if tx.data.is_none() {
                // Nothing was sent; make sure the server forgets the transaction. If it
                // does not answer, replies could be out of step: the connection is done.
                if let Err(e) = s.client.rset().await {
                    let why = format!("{}: {e}", s.remote);
                    defer_from(&mut out, start + chunk.len(), "4.4.2", &why);
                    s.broken = Some(("4.4.2".into(), why));
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    async fn body(&self, id: &str, size: u64) -> std::io::Result<crate::spool::BodyReader> {
        self.spool.open_body(id, size).await
    }
}

/// A 2xx delivers, a 5xx bounces; a 4xx defers, and so does a 3xx where a 2xx was
/// required (the server broke the protocol; another try may go through).
fn outcome_of(r: &Reply) -> Outcome {
    if r.is_completion() {
        Outcome::Delivered
    } else if r.is_transient() || r.is_intermediate() {
        Outcome::Deferred
    } else {
        Outcome::Bounced
    }
}

/// The enhanced status of a reply: its own, or one made from its class.
fn status_of(r: &Reply) -> String {
    if r.is_intermediate() {
        return "4.5.0".into();
    }
    match r.enhanced {
        Some(e) if e.0 as u16 == r.code / 100 => e.to_string(),
        _ => format!("{}.0.0", r.code / 100),
    }
}

/// A session-level error's status: the server's own when it refused something,
/// otherwise a transient network status.
fn client_status(e: &ClientError) -> String {
    match e {
        ClientError::Rejected { reply, .. } if reply.is_transient() => status_of(reply),
        // A permanent refusal of the session itself (e.g. 554 greeting) still only
        // defers: another host, or a later try, may take the mail.
        ClientError::Rejected { .. } => "4.4.0".into(),
        _ => "4.4.2".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_proto::EnhancedCode;

    #[test]
    fn statuses_follow_reply_class() {
        let r = |code, enhanced| Reply {
            code,
            enhanced,
            lines: vec!["x".into()],
        };
        assert_eq!(status_of(&r(550, Some(EnhancedCode(5, 1, 1)))), "5.1.1");
        assert_eq!(status_of(&r(550, None)), "5.0.0");
        // A mismatched enhanced code is not trusted.
        assert_eq!(status_of(&r(450, Some(EnhancedCode(5, 1, 1)))), "4.0.0");
        assert_eq!(outcome_of(&r(251, None)), Outcome::Delivered);
        assert_eq!(outcome_of(&r(452, None)), Outcome::Deferred);
        assert_eq!(outcome_of(&r(554, None)), Outcome::Bounced);
        // A 3xx where a 2xx is required is the server's protocol error: deferred.
        assert_eq!(outcome_of(&r(354, None)), Outcome::Deferred);
        assert_eq!(status_of(&r(354, None)), "4.5.0");
    }

    /// A scripted server: takes the first transaction, then drops the connection at
    /// the next MAIL. Returns its address.
    async fn server_dropping_second_transaction() -> SocketAddr {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let (r, mut w) = tcp.into_split();
            let mut lines = BufReader::new(r).lines();
            w.write_all(b"220 scripted\r\n").await.unwrap();
            let mut transactions = 0;
            let mut in_data = false;
            while let Ok(Some(line)) = lines.next_line().await {
                let reply: &[u8] = if in_data {
                    if line != "." {
                        continue;
                    }
                    in_data = false;
                    b"250 2.0.0 queued\r\n"
                } else if line.starts_with("EHLO") {
                    b"250 scripted\r\n"
                } else if line.starts_with("MAIL") {
                    transactions += 1;
                    if transactions == 2 {
                        return;
                    }
                    b"250 2.1.0 ok\r\n"
                } else if line.starts_with("RCPT") {
                    b"250 2.1.5 ok\r\n"
                } else if line == "DATA" {
                    in_data = true;
                    b"354 go on\r\n"
                } else {
                    b"250 ok\r\n"
                };
                w.write_all(reply).await.unwrap();
            }
        });
        addr
    }

    /// A job split into transactions that fails after the first one went through:
    /// the recipients already delivered stay delivered (never sent twice), the rest
    /// is deferred, and the connection is not kept.
    #[tokio::test]
    async fn a_job_failing_after_its_first_transaction_is_not_resent() {
        let dir = tempfile::tempdir().unwrap();
        let body = b"Subject: split\r\n\r\nhello\r\n";
        let metrics = Arc::new(crate::metrics::Metrics::new(&[]).unwrap());
        let (spool, _) = crate::spool::Spool::open(dir.path(), 0, metrics.clone()).unwrap();
        let mut writer = spool.create();
        let id = writer.id().to_owned();
        writer.write(body).await.unwrap();
        let envelope = crate::spool::Envelope {
            id: id.clone(),
            sender: "a@gw.test".into(),
            recipients: (0..3).map(|i| format!("r{i}@scripted.test")).collect(),
            received_at: 1,
            received_at_ms: 1000,
            client_ip: "127.0.0.1".into(),
            helo: "client".into(),
            auth_user: None,
            listener: "relay".into(),
            smtputf8: false,
            eight_bit: false,
        };
        writer.commit(&envelope).await.unwrap();
        let mut cfg = DeliveryConfig::default();
        cfg.limits.max_recipients_per_transaction = 2;
        let deliverer = Deliverer::new(
            &cfg,
            "gw.test".into(),
            crate::outbound::tls::client_config(false, None).unwrap(),
            crate::outbound::tls::client_config(false, None).unwrap(),
            spool,
            metrics,
        );
        let route = Route {
            hops: vec![Hop {
                name: "scripted.test".into(),
                addrs: vec![server_dropping_second_transaction().await],
            }],
            tls: TlsMode::None,
            auth: None,
        };
        let job = Job {
            id,
            sender: "a@gw.test".into(),
            smtputf8: false,
            eight_bit: false,
            size: body.len() as u64,
            rcpts: (0..3).map(|i| (i, format!("r{i}@scripted.test"))).collect(),
        };
        let (results, kept) = deliverer.run(&route, vec![job], "other").await;
        assert!(kept.is_none());
        assert_eq!(results.len(), 1);
        let outcomes: Vec<(usize, Outcome)> =
            results[0].1.iter().map(|r| (r.index, r.outcome)).collect();
        assert_eq!(
            outcomes,
            [
                (0, Outcome::Delivered),
                (1, Outcome::Delivered),
                (2, Outcome::Deferred)
            ]
        );
    }
}
