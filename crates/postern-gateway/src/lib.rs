//! Postern's SMTP gateway: listeners (25 relay, 587 submission with STARTTLS, 465
//! implicit TLS), the session state machine, AUTH and relay policy, the durable
//! spool, the queue and delivery. The binary in `main.rs` is a thin CLI over
//! [`Gateway::load`], [`server::bind`] and [`server::run`].
//!
//! Layout: `server` (binding, serving until shutdown), `listener` (accept loop,
//! session limits, TLS handshakes), `session/` (one file per SMTP command), `policy/`
//! (who may do what; every refusal), `auth` (credentials, brute-force protection),
//! `tls` (server TLS with reloading), `spool/` (durable store, the only code that
//! knows file paths), `queue/` (scheduling, retries, DSNs), `outbound/` (routes,
//! connections, transactions, outcomes), `received` (Received header), `reload`
//! (file watching), `http` (metrics and health), `metrics`. This crate never links
//! Kubernetes code.

pub mod auth;
pub mod http;
pub mod listener;
pub mod login;
pub mod metrics;
pub mod outbound;
pub mod policy;
pub mod queue;

pub mod received;
pub mod reload;
pub mod server;
pub mod session;
pub mod spool;
pub mod tls;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use postern_config::GatewayConfig;
use tokio::sync::{Semaphore, watch};

use crate::auth::{CredentialStore, CredentialsError, FailureTracker};
use crate::queue::QueueHandle;
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

/// Everything sessions share. Its parts are the crate's own; the binary and other
/// crates see only what they need through methods.
pub struct Gateway {
    pub(crate) config: GatewayConfig,
    /// Server TLS; None only when no listener needs it (then STARTTLS is not offered).
    pub(crate) tls: Option<Arc<ServerTls>>,
    /// Checks SMTP AUTH logins; None when no credentials file is configured.
    pub(crate) logins: Option<crate::login::Logins>,
    pub(crate) failures: FailureTracker,
    /// New connections per client IP per minute.
    pub(crate) connection_rate: crate::policy::rate::RateLimit,
    /// Messages per client IP per minute.
    pub(crate) message_rate: crate::policy::rate::RateLimit,
    pub(crate) spool: Spool,
    /// Where accepted messages go for delivery (with delivery on hold, they stay).
    pub(crate) queue: QueueHandle,
    /// Prometheus metrics.
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// What readiness depends on.
    pub(crate) health: Arc<crate::http::Health>,
    /// Turns true when the gateway begins to shut down.
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) sessions: Arc<Semaphore>,
    pub(crate) per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// A loaded gateway, not yet serving: its shared state, how many messages the spool
/// held at start (now queued), and the switch that starts a graceful shutdown.
pub struct Loaded {
    pub gateway: Arc<Gateway>,
    pub recovered: usize,
    pub shutdown: watch::Sender<bool>,
}

impl Gateway {
    /// Assembles a gateway from loaded parts (see [`Gateway::load`] for loading them
    /// from the configuration).
    pub fn new(
        config: GatewayConfig,
        tls: Option<Arc<ServerTls>>,
        credentials: Option<Arc<CredentialStore>>,
        spool: Spool,
        queue: QueueHandle,
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
            logins: credentials.map(|store| crate::login::Logins::new(store, &config.auth)),
            per_ip: Mutex::new(HashMap::new()),
            config,
            tls,
            spool,
            shutdown,
        }
    }

    /// Loads TLS, credentials and the spool, starts the reloaders and the queue with
    /// the messages found in the spool. Binds nothing: see [`server::bind`]. Call from
    /// within a Tokio runtime.
    pub async fn load(config: GatewayConfig) -> Result<Loaded, StartError> {
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
        let tls = Arc::new(ServerTls::load(tls_cfg)?);
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
        let (shutdown, shutdown_rx) = watch::channel(false);
        let gateway = Arc::new(Gateway::new(
            config,
            Some(tls),
            credentials,
            spool,
            queue,
            metrics,
            shutdown_rx,
        ));
        Ok(Loaded {
            gateway,
            recovered: recovered_count,
            shutdown,
        })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// Its spool.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Its queue.
    pub fn queue(&self) -> &QueueHandle {
        &self.queue
    }
}
