//! The queue: every accepted message, scheduled for delivery per destination
//! (recipient domain, or the smarthost), with a global and a per-destination
//! connection limit, several messages per connection, retries with exponential
//! backoff and jitter, a maximum lifetime, and DSNs for what fails.
//!
//! One task (the scheduler) owns all queue state; delivery runs in worker tasks that
//! report back over the same channel, so there are no locks around the queue. A
//! message leaves the spool only when every recipient is delivered or bounced.

pub mod dsn;
mod pool;
mod record;
mod retry;
mod scheduler;
pub mod state;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;

use postern_config::{DeliveryMode, GatewayConfig};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::outbound::dns::Resolver;
use crate::outbound::outcome::RcptResult;
use crate::outbound::route::Router;
use crate::outbound::transaction::Job;
use crate::outbound::worker::Deliverer;
use crate::spool::{Spool, SpoolError, SpooledMessage};
use scheduler::Scheduler;
use worker::Delivery;

/// Errors starting the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot open the queue state directory")]
    StateDir(#[source] SpoolError),
    #[error(transparent)]
    Resolver(#[from] crate::outbound::dns::ResolverError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("smarthost credentials file {path}: {what}")]
    SmarthostCredentials { path: PathBuf, what: String },
}

/// What the scheduler reacts to.
enum Event {
    Add(SpooledMessage),
    Done {
        dest: String,
        results: Vec<(String, Vec<RcptResult>)>,
        /// The worker keeps its connection open and waits here for more messages
        /// for the same destination (an empty batch: close it), taking up to the
        /// given number.
        idle: Option<(oneshot::Sender<Vec<Job>>, usize)>,
    },
    Flush,
}

/// Hands messages to the scheduler.
#[derive(Clone)]
pub struct QueueHandle {
    tx: mpsc::UnboundedSender<Event>,
}

impl QueueHandle {
    /// A newly accepted (durable) message.
    pub fn add(&self, msg: SpooledMessage) {
        let _ = self.tx.send(Event::Add(msg));
    }

    /// Try every deferred message now, and forget messages whose files an
    /// administrator removed (`postern-gateway queue flush|delete`).
    pub fn flush(&self) {
        let _ = self.tx.send(Event::Flush);
    }
}

/// What delivery needs, shared by the workers.
/// Starts the scheduler with the messages found in the spool.
pub fn start(
    config: Arc<GatewayConfig>,
    spool: Spool,
    recovered: Vec<SpooledMessage>,
    metrics: Arc<Metrics>,
) -> Result<QueueHandle, QueueError> {
    let states = spool.state_store().map_err(QueueError::StateDir)?;
    let d = &config.delivery;
    let delivery = match d.mode {
        DeliveryMode::Hold => None,
        mode => {
            let helo = if d.helo_name.is_empty() {
                config.hostname.clone()
            } else {
                d.helo_name.clone()
            };
            let ca = d
                .tls
                .ca_file
                .as_deref()
                .or(d.smarthost.as_ref().and_then(|s| s.ca_file.as_deref()));
            let deliverer = Deliverer::new(
                d,
                helo,
                crate::outbound::tls::client_config(true, ca)?,
                crate::outbound::tls::client_config(false, None)?,
                spool.clone(),
                metrics.clone(),
            );
            let port = match (&d.smarthost, mode) {
                (Some(sh), DeliveryMode::Smarthost) => sh.port,
                _ => d.mx_port,
            };
            let smarthost_auth = match d
                .smarthost
                .as_ref()
                .and_then(|s| s.credentials_file.as_ref())
            {
                Some(path) if mode == DeliveryMode::Smarthost => {
                    Some(read_smarthost_credentials(path)?)
                }
                _ => None,
            };
            let router = Router {
                mode,
                resolver: Resolver::new(&d.dns, port, metrics.clone())?,
                config: config.clone(),
                smarthost_auth,
            };
            Some(Arc::new(Delivery { router, deliverer }))
        }
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let mut scheduler = Scheduler::new(config, spool, states, delivery, tx.clone(), metrics);
    scheduler.recover(recovered);
    tokio::spawn(scheduler.run(rx));
    Ok(QueueHandle { tx })
}

// TODO(structure): reads the smarthost credentials file with std::fs in queue::start,
// which runs inside the async gateway start; move it to configuration loading or
// spawn_blocking. (Allowed on this function only, so that queue/state.rs and
// queue/dsn.rs stay under the ban.)
#[allow(clippy::disallowed_methods)]
fn read_smarthost_credentials(path: &std::path::Path) -> Result<(String, String), QueueError> {
    let err = |what: &str| QueueError::SmarthostCredentials {
        path: path.to_owned(),
        what: what.to_owned(),
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(&e.to_string()))?;
    let login = postern_config::credentials::SmarthostLogin::parse(&text)
        .map_err(|e| err(&e.to_string()))?;
    Ok(login.into_parts())
}
