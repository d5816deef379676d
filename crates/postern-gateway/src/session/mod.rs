//! One SMTP session: an explicit state (greeted, TLS, authenticated user, the open
//! transaction) driven by commands read from a bounded buffer. The session is generic
//! over its stream, so tests drive it over an in-memory pipe; STARTTLS hands the plain
//! stream back to the caller, which wraps it in TLS and starts a fresh session, so
//! nothing said before TLS (state or pipelined bytes) survives the upgrade.
//!
//! One file per command lives beside this one. Replies are decided there and queued;
//! they are flushed only before the session reads again, which is what makes
//! PIPELINING work without special cases.

mod auth;
mod bdat;
mod data;
mod ehlo;
mod mail;
mod rcpt;
mod starttls;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use postern_config::{BareLineEndings, ListenerKind};
use postern_proto::line::LineStatus;
use postern_proto::{
    Command, ContentChecker, EnhancedCode, LineEndings, LineError, LineReader, MAX_COMMAND_LINE,
    MailParams, Reply, ReversePath,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::Gateway;
use crate::auth::User;
use crate::policy::Refusal;
use crate::policy::refusal::Closing;
use crate::spool::SpoolWriter;

/// Bytes read from the socket at a time.
const READ_SIZE: usize = 8 * 1024;

/// Negotiated TLS parameters, for the Received header and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    pub version: String,
    pub cipher: String,
}

/// How a session ended.
#[derive(Debug)]
pub enum End<S> {
    /// The client said QUIT.
    Quit,
    /// The session closed it (timeout, too many errors, shutdown, block) or the
    /// client went away; the text says why, for the log.
    Closed(&'static str),
    /// STARTTLS was accepted: here is the plain stream to wrap.
    Upgrade(S),
}

/// The client's HELO/EHLO.
#[derive(Debug, Clone)]
struct Greeting {
    name: String,
    esmtp: bool,
}

/// An open mail transaction (after MAIL).
struct Transaction {
    from: ReversePath,
    params: MailParams,
    rcpts: Vec<String>,
    content: Option<Content>,
}

/// A message body on its way to the spool.
struct Content {
    writer: SpoolWriter,
    checker: ContentChecker,
    /// Checked content, reused between reads.
    scratch: Vec<u8>,
    /// The client sent more than the size limit; the rest is read and dropped.
    oversize: bool,
    /// Writing to the spool failed; the rest is read and dropped.
    spool_failed: bool,
}

/// Why the command loop stopped.
#[derive(Debug)]
enum Exit {
    Quit,
    Closed(&'static str),
    StartTls,
}

/// What a command handler tells the loop.
enum Flow {
    Continue,
    End(Exit),
}

/// What a session did, for the session log line.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Messages accepted.
    pub accepted: u32,
    /// Authenticated user, if any.
    pub user: Option<String>,
    /// HELO/EHLO name.
    pub helo: Option<String>,
}

/// Buffered reading and writing on the session's stream.
struct Wire<S> {
    io: S,
    buf: Vec<u8>,
    start: usize,
    out: Vec<u8>,
}

#[derive(Debug)]
enum ReadError {
    Eof,
    Timeout,
    Shutdown,
    Io,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    fn new(io: S) -> Self {
        Self {
            io,
            buf: Vec::new(),
            start: 0,
            out: Vec::new(),
        }
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start >= self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    fn reply(&mut self, r: &Reply) {
        r.write_to(&mut self.out);
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.io.write_all(&self.out).await?;
            self.out.clear();
            self.io.flush().await?;
        }
        Ok(())
    }

    /// Sends pending replies, then reads more input. Stops early on shutdown when
    /// `shutdown` is given (only while idle between transactions).
    async fn fill(
        &mut self,
        timeout: Duration,
        shutdown: Option<&mut watch::Receiver<bool>>,
    ) -> Result<(), ReadError> {
        self.flush().await.map_err(|_| ReadError::Io)?;
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.reserve(READ_SIZE);
        let read = tokio::time::timeout(timeout, self.io.read_buf(&mut self.buf));
        let n = match shutdown {
            Some(rx) => {
                if *rx.borrow() {
                    return Err(ReadError::Shutdown);
                }
                tokio::select! {
                    r = read => r,
                    _ = rx.changed() => return Err(ReadError::Shutdown),
                }
            }
            None => read.await,
        };
        match n {
            Err(_) => Err(ReadError::Timeout),
            Ok(Err(_)) => Err(ReadError::Io),
            Ok(Ok(0)) => Err(ReadError::Eof),
            Ok(Ok(_)) => Ok(()),
        }
    }
}

/// One SMTP session over stream `S`.
pub struct Session<S> {
    wire: Wire<S>,
    gw: Arc<Gateway>,
    peer: IpAddr,
    kind: ListenerKind,
    tls: Option<TlsInfo>,
    greeting: Option<Greeting>,
    user: Option<Arc<User>>,
    txn: Option<Transaction>,
    errors: u32,
    lines: LineReader,
    shutdown: watch::Receiver<bool>,
    accepted: u32,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// A session on `io` from `peer`; `tls` is set when `io` is already encrypted.
    pub fn new(
        io: S,
        gw: Arc<Gateway>,
        peer: IpAddr,
        kind: ListenerKind,
        tls: Option<TlsInfo>,
    ) -> Self {
        let allow_bare_lf = gw.config.limits.bare_line_endings == BareLineEndings::Normalize;
        let shutdown = gw.shutdown.clone();
        Self {
            wire: Wire::new(io),
            gw,
            peer,
            kind,
            tls,
            greeting: None,
            user: None,
            txn: None,
            errors: 0,
            lines: LineReader::new(MAX_AUTH_COMMAND_LINE, allow_bare_lf),
            shutdown,
            accepted: 0,
        }
    }

    /// Runs the session to its end. `greet` is false after STARTTLS (RFC 3207: the
    /// client speaks first, with EHLO).
    pub async fn run(mut self, greet: bool) -> (End<S>, Summary) {
        if greet {
            let banner = format!("{} ESMTP Postern", self.gw.config.hostname);
            self.wire.reply(&Reply::plain(220, vec![banner.into()]));
        }
        let exit = self.command_loop().await;
        if let Some(txn) = self.txn.take() {
            abort_content(txn.content).await;
        }
        let summary = Summary {
            accepted: self.accepted,
            user: self.user.as_ref().map(|u| u.name.clone()),
            helo: self.greeting.as_ref().map(|g| g.name.clone()),
        };
        let end = match exit {
            // The buffered plaintext is dropped with the old wire (RFC 3207 §4.2).
            Exit::StartTls => End::Upgrade(self.wire.io),
            Exit::Quit => {
                let _ = self.wire.flush().await;
                let _ = self.wire.io.shutdown().await;
                End::Quit
            }
            Exit::Closed(why) => {
                let _ = self.wire.flush().await;
                let _ = self.wire.io.shutdown().await;
                End::Closed(why)
            }
        };
        (end, summary)
    }

    async fn command_loop(&mut self) -> Exit {
        loop {
            let (cmd, used) = match self.lines.next_line(self.wire.buffered()) {
                // Only AUTH may exceed 512 octets: its initial response may be as long
                // as a SASL line (RFC 4954 §4), for long passwords and tokens.
                LineStatus::Line(line, used) if used > MAX_COMMAND_LINE && !is_auth(line) => {
                    self.wire.consume(used);
                    if let Flow::End(e) = self.refuse(line_error_reply(LineError::TooLong)) {
                        return e;
                    }
                    continue;
                }
                LineStatus::Line(line, used) => (Command::parse(line), used),
                LineStatus::Refused(err, used) => {
                    self.wire.consume(used);
                    if let Flow::End(e) = self.refuse(line_error_reply(err)) {
                        return e;
                    }
                    continue;
                }
                LineStatus::NeedMore { consumed } => {
                    self.wire.consume(consumed);
                    // Idle sessions leave at once on shutdown; an open transaction
                    // may finish within the shutdown grace period.
                    let idle = self.txn.is_none();
                    let timeout = self.gw.config.timeouts.command;
                    let shutdown = idle.then_some(&mut self.shutdown);
                    match self.wire.fill(timeout, shutdown).await {
                        Ok(()) => continue,
                        Err(e) => return self.read_failed(e),
                    }
                }
            };
            self.wire.consume(used);
            let flow = match cmd {
                Ok(cmd) => self.dispatch(cmd).await,
                Err(e) => self.refuse(e.reply()),
            };
            if let Flow::End(e) = flow {
                return e;
            }
        }
    }

    async fn dispatch(&mut self, cmd: Command) -> Flow {
        match cmd {
            Command::Ehlo(name) => self.ehlo(name, true),
            Command::Helo(name) => self.ehlo(name, false),
            Command::StartTls => self.starttls().await,
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial).await,
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt { to, .. } => self.rcpt(to),
            Command::Data => self.data().await,
            Command::Bdat { size, last } => self.bdat(size, last).await,
            Command::Rset => {
                if let Some(txn) = self.txn.take() {
                    abort_content(txn.content).await;
                }
                self.ok(Reply::new(250, EnhancedCode(2, 0, 0), "Ok"))
            }
            Command::Noop => self.ok(Reply::new(250, EnhancedCode(2, 0, 0), "Ok")),
            Command::Quit => {
                self.wire
                    .reply(&Reply::new(221, EnhancedCode(2, 0, 0), "Bye"));
                Flow::End(Exit::Quit)
            }
            Command::Vrfy(_) => self.ok(Reply::new(
                252,
                EnhancedCode(2, 5, 0),
                "Cannot VRFY user; send mail and delivery will be attempted",
            )),
            Command::Expn(_) => self.refuse(Refusal::ExpnUnsupported),
            Command::Help => self.ok(Reply::new(
                214,
                EnhancedCode(2, 0, 0),
                "Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA BDAT RSET NOOP VRFY HELP QUIT; see RFC 5321",
            )),
        }
    }

    /// Queues a positive reply.
    fn ok(&mut self, r: Reply) -> Flow {
        self.wire.reply(&r);
        Flow::Continue
    }

    /// Queues a refusal and counts it; too many refusals end the session, like
    /// Postfix's hard error limit, so a client cannot probe forever.
    fn refuse(&mut self, r: impl Into<Reply>) -> Flow {
        let r = r.into();
        self.gw
            .metrics
            .commands_refused
            .with_label_values(&[r.code.to_string().as_str()])
            .inc();
        self.wire.reply(&r);
        self.errors += 1;
        if self.errors >= self.gw.config.limits.max_errors {
            let host = self.gw.config.hostname.clone();
            let why = Closing::TooManyErrors;
            self.wire.reply(&Refusal::Closing { host, why }.reply());
            return Flow::End(Exit::Closed("too many errors"));
        }
        Flow::Continue
    }

    fn read_failed(&mut self, e: ReadError) -> Exit {
        let host = self.gw.config.hostname.clone();
        match e {
            ReadError::Timeout => {
                let why = Closing::Timeout;
                self.wire.reply(&Refusal::Closing { host, why }.reply());
                Exit::Closed("timeout")
            }
            ReadError::Shutdown => {
                let why = Closing::Shutdown;
                self.wire.reply(&Refusal::Closing { host, why }.reply());
                Exit::Closed("shutdown")
            }
            ReadError::Eof => Exit::Closed("lost connection"),
            ReadError::Io => Exit::Closed("connection error"),
        }
    }

    /// Reads one line (for SASL exchanges) with a limit of its own. SASL runs only
    /// between transactions, so shutdown ends it as it ends an idle session.
    async fn read_line(&mut self, max: usize) -> Result<Result<Vec<u8>, LineError>, Exit> {
        self.lines.set_max(max);
        let result = loop {
            match self.lines.next_line(self.wire.buffered()) {
                LineStatus::Line(line, used) => {
                    let line = line.to_vec();
                    self.wire.consume(used);
                    break Ok(Ok(line));
                }
                LineStatus::Refused(err, used) => {
                    self.wire.consume(used);
                    break Ok(Err(err));
                }
                LineStatus::NeedMore { consumed } => {
                    self.wire.consume(consumed);
                    let timeout = self.gw.config.timeouts.command;
                    let shutdown = Some(&mut self.shutdown);
                    if let Err(e) = self.wire.fill(timeout, shutdown).await {
                        break Err(self.read_failed(e));
                    }
                }
            }
        };
        self.lines.set_max(MAX_AUTH_COMMAND_LINE);
        result
    }

    fn line_endings(&self) -> LineEndings {
        match self.gw.config.limits.bare_line_endings {
            BareLineEndings::Refuse => LineEndings::Refuse,
            BareLineEndings::Normalize => LineEndings::Normalize,
        }
    }
}

async fn abort_content(content: Option<Content>) {
    if let Some(c) = content {
        c.writer.abort().await;
    }
}

/// Longest AUTH command line: `AUTH`, a mechanism name (at most 20 characters,
/// RFC 4422 §3.1) and an initial response as long as a SASL line (12288 octets,
/// RFC 4954 §4), with CRLF.
const MAX_AUTH_COMMAND_LINE: usize = 12_288 + 32;

fn is_auth(line: &[u8]) -> bool {
    line.len() > 5 && line[..5].eq_ignore_ascii_case(b"AUTH ")
}

fn line_error_reply(err: LineError) -> Reply {
    let text = match err {
        LineError::TooLong => "Error: command line too long (limit 512 octets, RFC 5321 4.5.3.1.4)",
        LineError::BareLf => "Error: bare <LF> received; lines must end with <CR><LF>",
        LineError::BareCr => "Error: bare <CR> received; lines must end with <CR><LF>",
        LineError::Nul => "Error: NUL octet in command line",
    };
    Reply::new(500, EnhancedCode(5, 5, 2), text)
}

#[cfg(test)]
mod tests;
