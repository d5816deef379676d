//! Opening a session with one address of a next hop: TCP connect, greeting, EHLO,
//! TLS per the route's policy (STARTTLS opportunistic or required, implicit TLS),
//! AUTH to a smarthost. An opportunistic STARTTLS whose handshake fails is tried once
//! more in plain text (Postfix's `may`); a required one never falls back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_proto::EnhancedCode;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::client::{ClientTimeouts, SmtpClient};
use super::outcome::{Reason, TlsUsed};
use super::route::{Hop, Route, TlsMode};

/// A stream that may or may not be encrypted.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub(super) type Conn = Box<dyn Io>;

/// A connected, greeted (and possibly encrypted and authenticated) session.
pub struct Connection {
    pub(super) client: SmtpClient<Conn>,
    /// The host, `name[ip]`, for logs and results.
    pub(super) remote: String,
    pub(super) tls: TlsUsed,
    /// Messages sent over it.
    pub(super) sent: usize,
    opened: Instant,
    /// Set when the connection can no longer be trusted although the current job's
    /// results are known (the reason, for the log and the next host).
    pub(super) broken: Option<Reason>,
}

impl Connection {
    /// Messages sent over this connection.
    pub fn sent(&self) -> usize {
        self.sent
    }

    /// How long it has been open.
    pub fn age(&self) -> Duration {
        self.opened.elapsed()
    }
}

/// Why a connection could not be opened.
enum OpenError {
    /// The TLS handshake failed (an opportunistic route may try plain text).
    Handshake(Reason),
    Failed(Reason),
}

impl OpenError {
    fn reason(self) -> Reason {
        match self {
            OpenError::Handshake(r) | OpenError::Failed(r) => r,
        }
    }
}

/// What opening a session needs: our name, timeouts and the TLS client settings.
pub struct Connector {
    pub helo: String,
    pub connect_timeout: Duration,
    pub timeouts: ClientTimeouts,
    pub verified: Arc<ClientConfig>,
    pub unverified: Arc<ClientConfig>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Connector {
    /// Connects to one address and prepares a session per the route's TLS and AUTH.
    pub async fn open(
        &self,
        hop: &Hop,
        addr: SocketAddr,
        route: &Route,
        dest_label: &str,
    ) -> Result<Connection, Reason> {
        let attempt = match route.tls {
            TlsMode::Opportunistic { verify } => {
                match self.open_with(hop, addr, route, true, verify).await {
                    Err(OpenError::Handshake(_)) => {
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
        };
        let result = attempt.map_err(OpenError::reason);
        let (outcome, tls) = match &result {
            Ok(s) => ("ok", s.tls),
            Err(_) => ("failed", TlsUsed::None),
        };
        self.metrics
            .outbound_connections
            .with_label_values(&[outcome, tls.label(), dest_label])
            .inc();
        result
    }

    async fn open_with(
        &self,
        hop: &Hop,
        addr: SocketAddr,
        route: &Route,
        use_tls: bool,
        verify: bool,
    ) -> Result<Connection, OpenError> {
        let remote = format!("{}[{}]", hop.name, addr.ip());
        let failed = |status: EnhancedCode, why: String| {
            OpenError::Failed(Reason::new(status, format!("{remote}: {why}")))
        };
        let handshake_failed = |why: String| {
            OpenError::Handshake(Reason::new(
                EnhancedCode(4, 7, 5),
                format!("{remote}: {why}"),
            ))
        };
        let session_failed = |e: &super::client::ClientError, why: String| {
            OpenError::Failed(Reason::of_session(e, format!("{remote}: {why}")))
        };
        let tcp = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                return Err(failed(
                    EnhancedCode(4, 4, 1),
                    format!("connect failed: {e}"),
                ));
            }
            Err(_) => return Err(failed(EnhancedCode(4, 4, 1), "connect timed out".into())),
        };
        let _ = tcp.set_nodelay(true);
        let mut tls = TlsUsed::None;
        let mut conn: Conn = Box::new(tcp);
        let used = if verify {
            TlsUsed::Verified
        } else {
            TlsUsed::Unverified
        };
        if let (TlsMode::Implicit { .. }, true) = (route.tls, use_tls) {
            conn = self
                .handshake(conn, &hop.name, verify)
                .await
                .map_err(handshake_failed)?;
            tls = used;
        }
        let mut client = SmtpClient::new(conn, self.timeouts.clone());
        client
            .greeting()
            .await
            .map_err(|e| session_failed(&e, e.to_string()))?;
        client
            .ehlo(&self.helo)
            .await
            .map_err(|e| session_failed(&e, e.to_string()))?;
        let starttls = matches!(
            route.tls,
            TlsMode::Opportunistic { .. } | TlsMode::Require { .. }
        );
        if starttls && use_tls {
            if !client.caps.starttls {
                if matches!(route.tls, TlsMode::Require { .. }) {
                    client.quit().await;
                    return Err(failed(
                        EnhancedCode(4, 7, 4),
                        "TLS is required but the server does not offer STARTTLS".into(),
                    ));
                }
            } else {
                client
                    .starttls()
                    .await
                    .map_err(|e| session_failed(&e, e.to_string()))?;
                let conn = self
                    .handshake(client.into_inner(), &hop.name, verify)
                    .await
                    .map_err(handshake_failed)?;
                tls = used;
                client = SmtpClient::new(conn, self.timeouts.clone());
                client
                    .ehlo(&self.helo)
                    .await
                    .map_err(|e| session_failed(&e, e.to_string()))?;
            }
        }
        if let Some((user, password)) = &route.auth {
            client
                .auth(user, password)
                .await
                .map_err(|e| session_failed(&e, format!("authentication failed: {e}")))?;
        }
        Ok(Connection {
            client,
            remote,
            tls,
            sent: 0,
            opened: Instant::now(),
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
}
