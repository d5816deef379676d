//! A small blocking SMTP client for black-box tests that must send exact bytes
//! (pipelining, smuggling, plaintext injection after STARTTLS), which ordinary
//! clients refuse to do. It trusts any server certificate: the tests check the
//! gateway's protocol, and certificate checks are covered with openssl and swaks.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

/// One connection.
pub struct Smtp {
    stream: Stream,
    buf: Vec<u8>,
}

/// One reply: its code and full text (all lines, CRLF-separated).
#[derive(Debug, Clone)]
pub struct SmtpReply {
    pub code: u16,
    pub text: String,
}

impl SmtpReply {
    /// The last line, e.g. `250 2.0.0 Ok: queued as X`.
    pub fn last_line(&self) -> &str {
        self.text.lines().last().unwrap_or("")
    }
}

impl Smtp {
    /// Connects in plain text and reads the greeting.
    pub fn connect(addr: SocketAddr) -> Result<(Self, SmtpReply)> {
        let tcp = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        tcp.set_read_timeout(Some(Duration::from_secs(15)))?;
        let mut s = Self {
            stream: Stream::Plain(tcp),
            buf: Vec::new(),
        };
        let greeting = s.reply()?;
        Ok((s, greeting))
    }

    /// Connects with implicit TLS (port 465 style) and reads the greeting.
    pub fn connect_tls(addr: SocketAddr) -> Result<(Self, SmtpReply)> {
        let tcp = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        tcp.set_read_timeout(Some(Duration::from_secs(15)))?;
        let mut s = Self {
            stream: Stream::Tls(Box::new(wrap(tcp)?)),
            buf: Vec::new(),
        };
        let greeting = s.reply()?;
        Ok((s, greeting))
    }

    /// Connects in plain text and expects to be admitted (220). Retries a 421 for a few
    /// seconds: a session that just ended (one the test closed) leaves its slot a
    /// moment later.
    pub fn connect_admitted(addr: SocketAddr) -> Result<Self> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (s, greeting) = Self::connect(addr)?;
            if greeting.code == 220 {
                return Ok(s);
            }
            if greeting.code != 421 || Instant::now() > deadline {
                bail!("not admitted on {addr}: {:?}", greeting.text);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Like [`Smtp::connect_admitted`] for implicit TLS (a refused client gets no TLS
    /// at all).
    pub fn connect_tls_admitted(addr: SocketAddr) -> Result<Self> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match Self::connect_tls(addr) {
                Ok((s, greeting)) => {
                    crate::reply::expect_code(&greeting, 220);
                    return Ok(s);
                }
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        match &mut self.stream {
            Stream::Plain(t) => t.write_all(bytes)?,
            Stream::Tls(t) => {
                t.write_all(bytes)?;
                t.flush()?;
            }
        }
        Ok(())
    }

    /// Sends one command line (CRLF added) and reads its reply.
    pub fn cmd(&mut self, line: &str) -> Result<SmtpReply> {
        self.send(format!("{line}\r\n").as_bytes())?;
        self.reply()
    }

    /// Reads one (possibly multi-line) reply.
    pub fn reply(&mut self) -> Result<SmtpReply> {
        let mut text = String::new();
        loop {
            let line = self.line()?;
            if line.len() < 3 {
                bail!("short reply line {line:?}");
            }
            text.push_str(&line);
            text.push_str("\r\n");
            if line.as_bytes().get(3) != Some(&b'-') {
                let code = line[..3]
                    .parse()
                    .with_context(|| format!("reply {line:?}"))?;
                return Ok(SmtpReply {
                    code,
                    text: text.trim_end().to_owned(),
                });
            }
        }
    }

    fn line(&mut self) -> Result<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            let mut chunk = [0u8; 4096];
            let n = match &mut self.stream {
                Stream::Plain(t) => t.read(&mut chunk)?,
                Stream::Tls(t) => t.read(&mut chunk)?,
            };
            if n == 0 {
                bail!("connection closed by server");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Whether the server closed the connection (reads until EOF or timeout).
    pub fn closed(&mut self) -> bool {
        let mut chunk = [0u8; 512];
        let r = match &mut self.stream {
            Stream::Plain(t) => t.read(&mut chunk),
            Stream::Tls(t) => t.read(&mut chunk),
        };
        matches!(r, Ok(0))
            || r.is_err()
                && !matches!(r, Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut)
    }

    /// Starts TLS on a plain connection (after a 220 to STARTTLS). Anything the
    /// client had buffered from the server is dropped, as RFC 3207 requires.
    pub fn upgrade(self) -> Result<Self> {
        let Stream::Plain(tcp) = self.stream else {
            bail!("already TLS");
        };
        Ok(Self {
            stream: Stream::Tls(Box::new(wrap(tcp)?)),
            buf: Vec::new(),
        })
    }

    /// `EHLO client.test`, which must be answered with 250.
    pub fn ehlo(&mut self) -> Result<SmtpReply> {
        let r = self.cmd("EHLO client.test")?;
        crate::reply::expect_code(&r, 250);
        Ok(r)
    }

    /// `AUTH PLAIN` with `user` and `password` as the initial response; the reply.
    pub fn auth_plain(&mut self, user: &str, password: &str) -> Result<SmtpReply> {
        self.cmd(&format!("AUTH PLAIN {}", plain(user, password)))
    }

    /// One transaction in an open session (after EHLO, and AUTH where needed): MAIL
    /// and RCPT must be accepted (`250 2.1.0`, `250 2.1.5`) and DATA must get 354;
    /// then `message` (without its final CRLF) and the end of data are sent and the
    /// reply to them returned.
    pub fn send_message(&mut self, from: &str, rcpts: &[&str], message: &str) -> Result<SmtpReply> {
        crate::reply::expect(&self.cmd(&format!("MAIL FROM:<{from}>"))?, 250, "2.1.0");
        for r in rcpts {
            crate::reply::expect(&self.cmd(&format!("RCPT TO:<{r}>"))?, 250, "2.1.5");
        }
        crate::reply::expect_code(&self.cmd("DATA")?, 354);
        self.send(format!("{message}\r\n.\r\n").as_bytes())?;
        self.reply()
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// The server certificate (leaf) of a TLS connection.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        match &self.stream {
            Stream::Tls(t) => t
                .conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.to_vec()),
            Stream::Plain(_) => None,
        }
    }
}

/// The `AUTH PLAIN` initial response for `user` and `password`.
pub fn plain(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

fn wrap(tcp: TcpStream) -> Result<StreamOwned<ClientConnection, TcpStream>> {
    // The gateway's own non-verifying client configuration (see the module docs).
    let config = postern_gateway::outbound::tls::client_config(false, None)?;
    let conn = ClientConnection::new(config, ServerName::try_from("gateway.test")?.to_owned())?;
    let mut s = StreamOwned::new(conn, tcp);
    // Complete the handshake now so failures show here.
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}
