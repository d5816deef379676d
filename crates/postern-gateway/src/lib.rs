//! Postern's SMTP gateway: listeners (25 relay, 587 submission with STARTTLS, 465
//! implicit TLS), the session state machine, AUTH and relay policy, and the durable
//! spool. The binary in `main.rs` is a thin CLI over [`start`] and [`listener::serve`].
//!
//! Layout: `listener` (accept loop, session limits, shutdown), `session/` (one file
//! per SMTP command), `auth` (credentials, brute-force protection), `tls` (server
//! TLS with reloading), `spool` (durable store), `received` (Received header),
//! `reload` (file watching). This crate never links Kubernetes code.

pub mod auth;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod outbound;
pub mod policy;
pub mod queue;

pub mod received;
pub mod reload;
pub mod session;
pub mod spool;
pub mod tls;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use postern_config::{GatewayConfig, ListenerKind};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::auth::{CredentialStore, CredentialsError, FailureTracker};
use crate::spool::{Spool, SpoolError};
use crate::tls::{ServerTls, TlsError};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot listen on {address} ({kind}): {source}")]
    Bind {
        address: std::net::SocketAddr,
        kind: &'static str,
        source: std::io::Error,
    },
}

/// Everything sessions share.
pub struct Gateway {
    pub config: GatewayConfig,
    /// Server TLS; None only when no listener needs it (then STARTTLS is not offered).
    pub tls: Option<Arc<ServerTls>>,
    /// SMTP AUTH users; None when no credentials file is configured.
    pub credentials: Option<Arc<CredentialStore>>,
    pub failures: FailureTracker,
    /// New connections per client IP per minute.
    pub connection_rate: crate::policy::rate::RateLimit,
    /// Messages per client IP per minute.
    pub message_rate: crate::policy::rate::RateLimit,
    pub spool: Spool,
    /// Where accepted messages go for delivery; None only in unit tests of sessions.
    pub queue: Option<crate::queue::QueueHandle>,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// What readiness depends on.
    pub health: Arc<crate::http::Health>,
    /// Turns true when the gateway begins to shut down.
    pub shutdown: watch::Receiver<bool>,
    sessions: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl Gateway {
    /// Assembles a gateway from loaded parts (see [`start`] for loading them from the
    /// configuration).
    pub fn new(
        config: GatewayConfig,
        tls: Option<Arc<ServerTls>>,
        credentials: Option<Arc<CredentialStore>>,
        spool: Spool,
        queue: Option<crate::queue::QueueHandle>,
        metrics: Arc<crate::metrics::Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            queue,
            metrics,
            health: Arc::new(crate::http::Health::default()),
            failures: FailureTracker::new(&config.auth),
            connection_rate: crate::policy::rate::RateLimit::new(
                config.limits.connections_per_minute_per_ip,
            ),
            message_rate: crate::policy::rate::RateLimit::new(
                config.limits.messages_per_minute_per_ip,
            ),
            sessions: Arc::new(Semaphore::new(config.limits.max_sessions)),
            per_ip: Mutex::new(HashMap::new()),
            config,
            tls,
            credentials,
            spool,
            shutdown,
        }
    }
}

/// A gateway ready to serve: its shared state, bound listeners, how many messages
/// the spool held at start (now queued), and the switch that starts a graceful
/// shutdown.
pub struct Started {
    pub gateway: Arc<Gateway>,
    pub listeners: Vec<(TcpListener, ListenerKind)>,
    pub recovered: usize,
    pub shutdown: watch::Sender<bool>,
    /// Where the metrics and health HTTP server listens, when it is enabled.
    pub metrics_address: Option<std::net::SocketAddr>,
}

impl Started {
    /// The addresses actually bound (port 0 in the configuration becomes the port the
    /// kernel chose), as the JSON document `run --ready-file` writes:
    /// `{"listeners":[{"kind":"relay","address":"127.0.0.1:2525"},…],"metrics":"…"}`.
    pub fn bound_addresses(&self) -> serde_json::Value {
        let listeners: Vec<_> = self
            .listeners
            .iter()
            .filter_map(|(sock, kind)| {
                let addr = sock.local_addr().ok()?;
                Some(serde_json::json!({"kind": kind.as_str(), "address": addr.to_string()}))
            })
            .collect();
        serde_json::json!({
            "listeners": listeners,
            "metrics": self.metrics_address.map(|a| a.to_string()),
        })
    }
}

/// Loads TLS, credentials and the spool, starts the reloaders and binds every
/// listener. Call from within a Tokio runtime.
pub async fn start(config: GatewayConfig) -> Result<Started, StartError> {
    let tls_cfg = &config.tls;
    if tls_cfg.self_signed_if_missing {
        let names = vec![config.hostname.clone(), "localhost".to_owned()];
        if tls::ensure_self_signed(&tls_cfg.certificate, &tls_cfg.private_key, &names)? {
            tracing::warn!(
                certificate = %tls_cfg.certificate.display(),
                "wrote a self-signed certificate; clients will not trust it"
            );
        }
    }
    let tls = Arc::new(ServerTls::load(&tls_cfg.certificate, &tls_cfg.private_key)?);
    tls.spawn_reloader(tls_cfg.reload_interval);
    let credentials = match &config.auth.credentials_file {
        Some(path) => {
            let store = Arc::new(CredentialStore::load(path)?);
            tracing::info!(users = store.current().len(), "credentials loaded");
            store.spawn_reloader(config.auth.reload_interval);
            Some(store)
        }
        None => {
            tracing::warn!(
                "no auth.credentials_file: AUTH is off; submission listeners will refuse all mail"
            );
            None
        }
    };
    let metrics = Arc::new(crate::metrics::Metrics::new(
        &config.metrics.destination_domains,
    )?);
    let (spool, recovered) = Spool::open(
        &config.spool.directory,
        config.spool.recycle_files,
        metrics.clone(),
    )?;
    let recovered_count = recovered.len();
    let queue = crate::queue::start(
        Arc::new(config.clone()),
        spool.clone(),
        recovered,
        metrics.clone(),
    )?;
    let http = match config.metrics.enabled.then_some(config.metrics.address) {
        Some(addr) => {
            let l = crate::http::bind(addr)
                .await
                .map_err(|source| StartError::Bind {
                    address: addr,
                    kind: "metrics",
                    source,
                })?;
            let bound = l.local_addr().unwrap_or(addr);
            tracing::info!(address = %bound, "metrics and health on HTTP");
            Some((l, bound))
        }
        None => None,
    };
    let mut listeners = Vec::new();
    for l in &config.listeners {
        let sock = TcpListener::bind(l.address)
            .await
            .map_err(|source| StartError::Bind {
                address: l.address,
                kind: l.kind.as_str(),
                source,
            })?;
        let bound = sock.local_addr().unwrap_or(l.address);
        tracing::info!(address = %bound, kind = l.kind.as_str(), "listening");
        listeners.push((sock, l.kind));
    }
    let (shutdown, shutdown_rx) = watch::channel(false);
    let gateway = Arc::new(Gateway::new(
        config,
        Some(tls),
        credentials,
        spool,
        Some(queue),
        metrics,
        shutdown_rx,
    ));
    gateway
        .health
        .listeners_bound
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let metrics_address = http.as_ref().map(|(_, a)| *a);
    if let Some((l, _)) = http {
        tokio::spawn(crate::http::serve(l, gateway.clone()));
    }
    crate::http::spawn_spool_monitor(gateway.clone());
    Ok(Started {
        gateway,
        listeners,
        recovered: recovered_count,
        shutdown,
        metrics_address,
    })
}
