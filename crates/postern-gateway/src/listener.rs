//! Accept loops and connection handling: session limits (in total and per client
//! IP), blocked clients, the TLS handshake for implicit TLS and after STARTTLS, one
//! log line per session, and graceful shutdown (stop accepting, let open transactions
//! finish within the grace period).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use postern_config::{ListenerKind, canonical_ip};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::server::TlsStream;

use crate::Gateway;
use crate::policy::Refusal;
use crate::policy::admission::{self, Arrival};
use crate::policy::refusal::Closing;
use crate::session::{End, Session, Summary, TlsInfo};

/// Serves every listener until shutdown, then waits for sessions to finish (at most
/// the configured grace period).
pub async fn serve(gw: Arc<Gateway>, listeners: Vec<(TcpListener, ListenerKind)>) {
    let mut loops = Vec::new();
    for (sock, kind) in listeners {
        loops.push(tokio::spawn(accept_loop(gw.clone(), sock, kind)));
    }
    for l in loops {
        let _ = l.await;
    }
    let all = gw.config.limits.max_sessions as u32;
    let grace = gw.config.timeouts.shutdown_grace;
    match tokio::time::timeout(grace, gw.sessions.clone().acquire_many_owned(all)).await {
        Ok(_) => tracing::info!("all sessions finished"),
        Err(_) => tracing::warn!("shutdown grace period over; closing remaining sessions"),
    }
}

async fn accept_loop(gw: Arc<Gateway>, sock: TcpListener, kind: ListenerKind) {
    let mut shutdown = gw.shutdown.clone();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let accepted = tokio::select! {
            a = sock.accept() => a,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((tcp, peer)) => admit(&gw, tcp, peer, kind),
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Applies the connection limits, then runs the session in its own task.
fn admit(gw: &Arc<Gateway>, tcp: TcpStream, peer: SocketAddr, kind: ListenerKind) {
    let ip = canonical_ip(peer.ip());
    let _ = tcp.set_nodelay(true);
    let blocked = gw.failures.is_blocked(ip);
    let within_rate = !blocked && gw.connection_rate.allow(ip);
    let permit = within_rate
        .then(|| gw.sessions.clone().try_acquire_owned().ok())
        .flatten();
    let ip_guard = permit
        .is_some()
        .then(|| IpGuard::enter(gw.clone(), ip))
        .flatten();
    let arrival = Arrival {
        blocked,
        within_rate,
        session_free: permit.is_some(),
        client_session_free: ip_guard.is_some(),
    };
    let verdict = admission::admit(arrival);
    let (Ok(()), Some(permit), Some(ip_guard)) = (verdict, permit, ip_guard) else {
        let why = verdict.err().unwrap_or(Closing::TooManySessions);
        return refuse(gw, tcp, ip, kind, why);
    };
    gw.metrics
        .connections
        .with_label_values(&[kind.as_str(), "accepted", "none"])
        .inc();
    tokio::spawn(connection(gw.clone(), tcp, ip, kind, permit, ip_guard));
}

fn refuse(gw: &Gateway, mut tcp: TcpStream, ip: IpAddr, kind: ListenerKind, why: Closing) {
    let host = gw.config.hostname.clone();
    let text = Refusal::Closing { host, why }.reply().to_wire();
    let why = why.label();
    gw.metrics
        .connections
        .with_label_values(&[kind.as_str(), "refused", why])
        .inc();
    tracing::info!(client = %ip, listener = kind.as_str(), reason = why, "connection refused");
    tokio::spawn(async move {
        // On 465 the client expects a TLS handshake; plain text would only confuse it.
        if kind != ListenerKind::Submissions {
            let _ = tcp.write_all(text.as_bytes()).await;
        }
        let _ = tcp.shutdown().await;
    });
}

/// Counts a client IP's sessions while alive.
struct IpGuard {
    gw: Arc<Gateway>,
    ip: IpAddr,
}

impl IpGuard {
    fn enter(gw: Arc<Gateway>, ip: IpAddr) -> Option<Self> {
        let max = gw.config.limits.max_sessions_per_ip;
        {
            let mut map = gw.per_ip.lock().ok()?;
            let n = map.entry(ip).or_insert(0);
            if *n >= max {
                return None;
            }
            *n += 1;
        }
        Some(Self { gw, ip })
    }
}

impl Drop for IpGuard {
    fn drop(&mut self) {
        if let Ok(mut map) = self.gw.per_ip.lock()
            && let Some(n) = map.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

async fn connection(
    gw: Arc<Gateway>,
    tcp: TcpStream,
    ip: IpAddr,
    kind: ListenerKind,
    _permit: OwnedSemaphorePermit,
    _ip_guard: IpGuard,
) {
    let started = Instant::now();
    let active = gw
        .metrics
        .sessions_active
        .with_label_values(&[kind.as_str()]);
    active.inc();
    // Decremented however this task ends.
    let _active = scopeguard(move || active.dec());
    let (end, summary, tls) = match kind {
        ListenerKind::Submissions => match handshake(&gw, tcp, ip, kind).await {
            Some((stream, info)) => {
                let (end, summary) = Session::new(stream, gw.clone(), ip, kind, Some(info.clone()))
                    .run(true)
                    .await;
                (describe(&end), summary, Some(info))
            }
            None => return,
        },
        _ => {
            let (end, summary) = Session::new(tcp, gw.clone(), ip, kind, None)
                .run(true)
                .await;
            match end {
                End::Upgrade(tcp) => match handshake(&gw, tcp, ip, kind).await {
                    Some((stream, info)) => {
                        let (end, mut after) =
                            Session::new(stream, gw.clone(), ip, kind, Some(info.clone()))
                                .run(false)
                                .await;
                        after.accepted += summary.accepted;
                        (describe(&end), after, Some(info))
                    }
                    None => return,
                },
                other => (describe(&other), summary, None),
            }
        }
    };
    log_session(ip, kind, tls.as_ref(), &summary, end, started);
}

fn describe<S>(end: &End<S>) -> &'static str {
    match end {
        End::Quit => "quit",
        End::Closed(why) => why,
        End::Upgrade(_) => "starttls",
    }
}

fn log_session(
    ip: IpAddr,
    kind: ListenerKind,
    tls: Option<&TlsInfo>,
    s: &Summary,
    end: &'static str,
    started: Instant,
) {
    tracing::info!(
        client = %ip,
        listener = kind.as_str(),
        helo = s.helo.as_deref().unwrap_or(""),
        tls = tls.map(|t| t.version.as_str()).unwrap_or("none"),
        user = s.user.as_deref().unwrap_or(""),
        accepted = s.accepted,
        end,
        duration_ms = started.elapsed().as_millis() as u64,
        "session closed"
    );
}

/// The server side of a TLS handshake, bounded by the handshake timeout.
async fn handshake<S>(
    gw: &Gateway,
    io: S,
    ip: IpAddr,
    kind: ListenerKind,
) -> Option<(TlsStream<S>, TlsInfo)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let tls = gw.tls.as_ref()?;
    let timeout = gw.config.timeouts.tls_handshake;
    match tokio::time::timeout(timeout, tls.acceptor.accept(io)).await {
        Ok(Ok(stream)) => {
            let conn = stream.get_ref().1;
            let version = match conn.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
                Some(v) => format!("{v:?}"),
                None => "unknown".to_owned(),
            };
            let cipher = conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default();
            gw.metrics
                .tls_handshakes
                .with_label_values(&[kind.as_str(), "ok", &version])
                .inc();
            Some((stream, TlsInfo { version, cipher }))
        }
        Ok(Err(e)) => {
            // A client that closes before saying anything (a TCP health check) is not
            // a TLS failure.
            let result = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "aborted"
            } else {
                "failed"
            };
            gw.metrics
                .tls_handshakes
                .with_label_values(&[kind.as_str(), result, "none"])
                .inc();
            tracing::info!(client = %ip, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            gw.metrics
                .tls_handshakes
                .with_label_values(&[kind.as_str(), "timeout", "none"])
                .inc();
            tracing::info!(client = %ip, "TLS handshake timed out");
            None
        }
    }
}

/// Runs `f` when dropped.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
