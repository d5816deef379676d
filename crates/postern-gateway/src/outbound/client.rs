//! The SMTP client used for delivery (RFC 5321, with PIPELINING, SIZE, 8BITMIME,
//! SMTPUTF8, STARTTLS and AUTH). Generic over its stream so the caller decides about
//! TLS: after STARTTLS the caller takes the stream back with [`SmtpClient::into_inner`],
//! wraps it, and makes a new client (which must say EHLO again).
//!
//! Every wait has its own timeout (RFC 5321 §4.5.3.2). Results are data: each
//! recipient gets the remote reply that decided its fate, so the queue can deliver,
//! defer or bounce each one on its own. Outgoing content is dot-stuffed and never
//! holds a bare CR or LF (the spool only holds CRLF content).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use postern_proto::{Capabilities, DotStuffer, Reply, ReplyParser};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest reply line accepted from a server.
const MAX_REPLY_LINE: usize = 4096;

/// The phase of a session, for timeouts and error reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connect,
    Greeting,
    Ehlo,
    StartTls,
    Auth,
    Mail,
    Rcpt,
    DataInit,
    DataBlock,
    DataDone,
    Rset,
    Quit,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Greeting => "greeting",
            Phase::Ehlo => "EHLO",
            Phase::StartTls => "STARTTLS",
            Phase::Auth => "AUTH",
            Phase::Mail => "MAIL FROM",
            Phase::Rcpt => "RCPT TO",
            Phase::DataInit => "DATA",
            Phase::DataBlock => "message body",
            Phase::DataDone => "end of data",
            Phase::Rset => "RSET",
            Phase::Quit => "QUIT",
        }
    }
}

/// Per-phase timeouts (defaults from RFC 5321 §4.5.3.2).
#[derive(Debug, Clone)]
pub struct ClientTimeouts {
    pub greeting: Duration,
    pub command: Duration,
    pub data_init: Duration,
    pub data_block: Duration,
    pub data_done: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        Self {
            greeting: Duration::from_secs(300),
            command: Duration::from_secs(300),
            data_init: Duration::from_secs(120),
            data_block: Duration::from_secs(180),
            data_done: Duration::from_secs(600),
        }
    }
}

/// Why a session with the remote server failed (as opposed to a refused recipient).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("I/O error in {}: {source}", phase.as_str())]
    Io {
        phase: Phase,
        source: std::io::Error,
    },
    #[error("timeout in {}", phase.as_str())]
    Timeout { phase: Phase },
    #[error("connection closed by the server in {}", phase.as_str())]
    Closed { phase: Phase },
    #[error("protocol error in {}: {what}", phase.as_str())]
    Protocol { phase: Phase, what: String },
    #[error("server said {reply} in {}", phase.as_str())]
    Rejected { phase: Phase, reply: Reply },
}

/// One message to send: the envelope and how to send the content.
pub struct Outgoing<'a> {
    pub sender: &'a str,
    pub recipients: &'a [String],
    pub size: u64,
    pub eight_bit: bool,
    pub smtputf8: bool,
}

/// The outcome of one transaction: MAIL's reply, one reply per recipient (MAIL's own
/// when MAIL failed), and the final reply to the data (None when no recipient was
/// accepted, so no data was sent).
#[derive(Debug, Clone)]
pub struct TransactionResult {
    pub mail: Reply,
    pub rcpts: Vec<Reply>,
    pub data: Option<Reply>,
}

impl TransactionResult {
    /// The reply that decides recipient `i`: its RCPT refusal, or the data verdict.
    pub fn verdict(&self, i: usize) -> &Reply {
        match (&self.rcpts[i], &self.data) {
            (r, _) if !r.is_completion() => r,
            (_, Some(d)) => d,
            (r, None) => r,
        }
    }
}

/// A client session.
pub struct SmtpClient<S> {
    io: S,
    buf: Vec<u8>,
    timeouts: ClientTimeouts,
    pub caps: Capabilities,
}

impl<S: AsyncRead + AsyncWrite + Unpin> SmtpClient<S> {
    pub fn new(io: S, timeouts: ClientTimeouts) -> Self {
        Self {
            io,
            buf: Vec::new(),
            timeouts,
            caps: Capabilities::default(),
        }
    }

    /// The stream, for a TLS upgrade. Anything the server sent beyond the last reply
    /// is dropped with this client (nothing may precede the TLS handshake).
    pub fn into_inner(self) -> S {
        self.io
    }

    /// Reads the 220 greeting.
    pub async fn greeting(&mut self) -> Result<Reply, ClientError> {
        let reply = self
            .read_reply(Phase::Greeting, self.timeouts.greeting)
            .await?;
        expect(Phase::Greeting, reply, 220)
    }

    /// EHLO, falling back to HELO when the server does not know EHLO.
    pub async fn ehlo(&mut self, name: &str) -> Result<(), ClientError> {
        self.write(Phase::Ehlo, format!("EHLO {name}\r\n").as_bytes())
            .await?;
        let reply = self.read_reply(Phase::Ehlo, self.timeouts.command).await?;
        if reply.code == 250 {
            self.caps = Capabilities::from_ehlo(&reply);
            return Ok(());
        }
        if reply.is_permanent() {
            self.write(Phase::Ehlo, format!("HELO {name}\r\n").as_bytes())
                .await?;
            let reply = self.read_reply(Phase::Ehlo, self.timeouts.command).await?;
            expect(Phase::Ehlo, reply, 250)?;
            self.caps = Capabilities::default();
            return Ok(());
        }
        Err(ClientError::Rejected {
            phase: Phase::Ehlo,
            reply,
        })
    }

    /// Sends STARTTLS and waits for 220; then call [`Self::into_inner`].
    pub async fn starttls(&mut self) -> Result<(), ClientError> {
        self.write(Phase::StartTls, b"STARTTLS\r\n").await?;
        let reply = self
            .read_reply(Phase::StartTls, self.timeouts.command)
            .await?;
        expect(Phase::StartTls, reply, 220)?;
        if !self.buf.is_empty() {
            return Err(ClientError::Protocol {
                phase: Phase::StartTls,
                what: "server sent data after 220 to STARTTLS".into(),
            });
        }
        Ok(())
    }

    /// Authenticates with PLAIN when offered, otherwise LOGIN.
    pub async fn auth(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        let t = self.timeouts.command;
        if self.caps.offers_auth("PLAIN") {
            let token = B64.encode(format!("\0{user}\0{password}"));
            self.write(Phase::Auth, format!("AUTH PLAIN {token}\r\n").as_bytes())
                .await?;
        } else if self.caps.offers_auth("LOGIN") {
            self.write(Phase::Auth, b"AUTH LOGIN\r\n").await?;
            let r = self.read_reply(Phase::Auth, t).await?;
            expect(Phase::Auth, r, 334)?;
            self.write(Phase::Auth, format!("{}\r\n", B64.encode(user)).as_bytes())
                .await?;
            let r = self.read_reply(Phase::Auth, t).await?;
            expect(Phase::Auth, r, 334)?;
            self.write(
                Phase::Auth,
                format!("{}\r\n", B64.encode(password)).as_bytes(),
            )
            .await?;
        } else {
            return Err(ClientError::Protocol {
                phase: Phase::Auth,
                what: "server offers neither AUTH PLAIN nor AUTH LOGIN".into(),
            });
        }
        let r = self.read_reply(Phase::Auth, t).await?;
        expect(Phase::Auth, r, 235).map(|_| ())
    }

    /// One transaction. `body` yields exactly `msg.size` octets of CRLF content.
    pub async fn send<B: AsyncRead + Unpin>(
        &mut self,
        msg: &Outgoing<'_>,
        body: &mut B,
    ) -> Result<TransactionResult, ClientError> {
        let mut mail = format!("MAIL FROM:<{}>", msg.sender);
        if self.caps.size.is_some() {
            mail.push_str(&format!(" SIZE={}", msg.size));
        }
        if msg.eight_bit && self.caps.eight_bit_mime {
            mail.push_str(" BODY=8BITMIME");
        }
        if msg.smtputf8 && self.caps.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        mail.push_str("\r\n");
        let t = self.timeouts.command;
        let (mail_reply, rcpts, data_init) = if self.caps.pipelining {
            let mut batch = mail.into_bytes();
            for r in msg.recipients {
                batch.extend_from_slice(format!("RCPT TO:<{r}>\r\n").as_bytes());
            }
            batch.extend_from_slice(b"DATA\r\n");
            self.write(Phase::Mail, &batch).await?;
            let mail_reply = self.read_reply(Phase::Mail, t).await?;
            let mut rcpts = Vec::with_capacity(msg.recipients.len());
            for _ in msg.recipients {
                rcpts.push(self.read_reply(Phase::Rcpt, t).await?);
            }
            let data = self
                .read_reply(Phase::DataInit, self.timeouts.data_init)
                .await?;
            (mail_reply, rcpts, data)
        } else {
            self.write(Phase::Mail, mail.as_bytes()).await?;
            let mail_reply = self.read_reply(Phase::Mail, t).await?;
            if !mail_reply.is_completion() {
                let rcpts = vec![mail_reply.clone(); msg.recipients.len()];
                return Ok(TransactionResult {
                    mail: mail_reply,
                    rcpts,
                    data: None,
                });
            }
            let mut rcpts = Vec::with_capacity(msg.recipients.len());
            for r in msg.recipients {
                self.write(Phase::Rcpt, format!("RCPT TO:<{r}>\r\n").as_bytes())
                    .await?;
                rcpts.push(self.read_reply(Phase::Rcpt, t).await?);
            }
            if !rcpts.iter().any(Reply::is_completion) {
                return Ok(TransactionResult {
                    mail: mail_reply,
                    rcpts,
                    data: None,
                });
            }
            self.write(Phase::DataInit, b"DATA\r\n").await?;
            let data = self
                .read_reply(Phase::DataInit, self.timeouts.data_init)
                .await?;
            (mail_reply, rcpts, data)
        };
        if !mail_reply.is_completion() {
            let rcpts = vec![mail_reply.clone(); msg.recipients.len()];
            return Ok(TransactionResult {
                mail: mail_reply,
                rcpts,
                data: None,
            });
        }
        let any_rcpt = rcpts.iter().any(Reply::is_completion);
        if data_init.code != 354 {
            // DATA refused: every accepted recipient takes that verdict.
            return Ok(TransactionResult {
                mail: mail_reply,
                rcpts,
                data: any_rcpt.then_some(data_init),
            });
        }
        if !any_rcpt {
            // A pipelining server said 354 with no recipient: end the empty data.
            self.write(Phase::DataDone, b".\r\n").await?;
            let _ = self
                .read_reply(Phase::DataDone, self.timeouts.data_done)
                .await?;
            return Ok(TransactionResult {
                mail: mail_reply,
                rcpts,
                data: None,
            });
        }
        self.stream_body(body, msg.size).await?;
        let done = self
            .read_reply(Phase::DataDone, self.timeouts.data_done)
            .await?;
        Ok(TransactionResult {
            mail: mail_reply,
            rcpts,
            data: Some(done),
        })
    }

    async fn stream_body<B: AsyncRead + Unpin>(
        &mut self,
        body: &mut B,
        size: u64,
    ) -> Result<(), ClientError> {
        let mut stuffer = DotStuffer::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut out = Vec::with_capacity(70 * 1024);
        let mut left = size;
        while left > 0 {
            let want = chunk.len().min(left as usize);
            let n = body
                .read(&mut chunk[..want])
                .await
                .map_err(|source| ClientError::Io {
                    phase: Phase::DataBlock,
                    source,
                })?;
            if n == 0 {
                return Err(ClientError::Protocol {
                    phase: Phase::DataBlock,
                    what: "spooled content is shorter than recorded".into(),
                });
            }
            left -= n as u64;
            out.clear();
            stuffer.ingest(&chunk[..n], &mut out);
            self.write_timed(Phase::DataBlock, &out, self.timeouts.data_block)
                .await?;
        }
        out.clear();
        stuffer.finish(&mut out);
        self.write_timed(Phase::DataBlock, &out, self.timeouts.data_block)
            .await
    }

    /// RSET between transactions on a reused connection.
    pub async fn rset(&mut self) -> Result<(), ClientError> {
        self.write(Phase::Rset, b"RSET\r\n").await?;
        let r = self.read_reply(Phase::Rset, self.timeouts.command).await?;
        expect(Phase::Rset, r, 250).map(|_| ())
    }

    /// QUIT; errors are of no interest any more.
    pub async fn quit(&mut self) {
        if self.write(Phase::Quit, b"QUIT\r\n").await.is_ok() {
            let _ = self.read_reply(Phase::Quit, Duration::from_secs(5)).await;
        }
        let _ = self.io.shutdown().await;
    }

    async fn write(&mut self, phase: Phase, bytes: &[u8]) -> Result<(), ClientError> {
        self.write_timed(phase, bytes, self.timeouts.command).await
    }

    async fn write_timed(
        &mut self,
        phase: Phase,
        bytes: &[u8],
        t: Duration,
    ) -> Result<(), ClientError> {
        let io = &mut self.io;
        let fut = async {
            io.write_all(bytes).await?;
            io.flush().await
        };
        match tokio::time::timeout(t, fut).await {
            Err(_) => Err(ClientError::Timeout { phase }),
            Ok(Err(source)) => Err(ClientError::Io { phase, source }),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Reads one reply.
    async fn read_reply(&mut self, phase: Phase, t: Duration) -> Result<Reply, ClientError> {
        let mut parser = ReplyParser::new();
        loop {
            let line = self.read_line(phase, t).await?;
            match parser.push(&line) {
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => {}
                Err(e) => {
                    return Err(ClientError::Protocol {
                        phase,
                        what: e.to_string(),
                    });
                }
            }
        }
    }

    async fn read_line(&mut self, phase: Phase, t: Duration) -> Result<String, ClientError> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let line = line.strip_suffix(b"\n").unwrap_or(&line);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                return Ok(String::from_utf8_lossy(line).into_owned());
            }
            if self.buf.len() > MAX_REPLY_LINE {
                return Err(ClientError::Protocol {
                    phase,
                    what: "reply line too long".into(),
                });
            }
            self.buf.reserve(4096);
            match tokio::time::timeout(t, self.io.read_buf(&mut self.buf)).await {
                Err(_) => return Err(ClientError::Timeout { phase }),
                Ok(Err(source)) => return Err(ClientError::Io { phase, source }),
                Ok(Ok(0)) => return Err(ClientError::Closed { phase }),
                Ok(Ok(_)) => {}
            }
        }
    }
}

fn expect(phase: Phase, reply: Reply, code: u16) -> Result<Reply, ClientError> {
    if reply.code == code {
        Ok(reply)
    } else {
        Err(ClientError::Rejected { phase, reply })
    }
}

#[cfg(test)]
mod tests;
