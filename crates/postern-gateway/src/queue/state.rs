//! Delivery state of one queued message, kept by the spool's [`StateStore`] so
//! retries survive restarts (JSON; the store's writes are atomic but not synced).

use std::time::Duration;

use postern_config::RetryConfig;
use serde::{Deserialize, Serialize};

use crate::spool::StateStore;

/// Where one recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RcptStatus {
    Pending,
    Delivered,
    Bounced,
}

/// One recipient's delivery record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RcptState {
    pub address: String,
    pub status: RcptStatus,
    /// The last remote reply or local error about this recipient.
    pub last_result: Option<String>,
    /// Remote server that gave it (for DSNs and logs).
    pub remote: Option<String>,
}

/// A message's delivery record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryState {
    pub recipients: Vec<RcptState>,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Unix seconds of the next attempt (0: at once).
    pub next_attempt: u64,
}

impl DeliveryState {
    pub fn new(recipients: &[String]) -> Self {
        Self {
            recipients: recipients
                .iter()
                .map(|a| RcptState {
                    address: a.clone(),
                    status: RcptStatus::Pending,
                    last_result: None,
                    remote: None,
                })
                .collect(),
            attempts: 0,
            next_attempt: 0,
        }
    }

    /// Whether every recipient is delivered or bounced.
    pub fn is_final(&self) -> bool {
        self.recipients
            .iter()
            .all(|r| r.status != RcptStatus::Pending)
    }

    /// Indexes of recipients still to deliver.
    pub fn pending(&self) -> impl Iterator<Item = usize> + '_ {
        self.recipients
            .iter()
            .enumerate()
            .filter(|(_, r)| r.status == RcptStatus::Pending)
            .map(|(i, _)| i)
    }
}

/// Reads a message's state; None when there is none (a message never tried).
/// Blocking: for start-up and the CLI.
pub fn load(states: &StateStore, id: &str) -> Option<DeliveryState> {
    let bytes = states.read_blocking(id)?;
    serde_json::from_slice(&bytes).ok()
}

/// Records a message's state (atomically).
pub async fn store(states: &StateStore, id: &str, state: &DeliveryState) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(state).map_err(std::io::Error::other)?;
    states.write(id, bytes).await
}

/// Wait before attempt `attempts + 1`, given `attempts` failed ones: exponential from
/// `initial` by `factor`, capped at `max`, spread by ±`jitter` so messages deferred
/// together do not all come back at the same second. `unit` in [0, 1) picks the spread.
pub fn retry_delay(cfg: &RetryConfig, attempts: u32, unit: f64) -> Duration {
    let exp = cfg.factor.powi(attempts.saturating_sub(1).min(64) as i32);
    let base = (cfg.initial.as_secs_f64() * exp).min(cfg.max.as_secs_f64());
    let spread = 1.0 + cfg.jitter * (2.0 * unit - 1.0);
    Duration::from_secs_f64((base * spread).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let cfg = RetryConfig {
            initial: Duration::from_secs(60),
            max: Duration::from_secs(600),
            factor: 2.0,
            jitter: 0.0,
            ..Default::default()
        };
        let d: Vec<u64> = (1..=6)
            .map(|a| retry_delay(&cfg, a, 0.5).as_secs())
            .collect();
        assert_eq!(d, [60, 120, 240, 480, 600, 600]);
        let cfg = RetryConfig { jitter: 0.2, ..cfg };
        assert_eq!(retry_delay(&cfg, 1, 0.0).as_secs(), 48);
        assert_eq!(retry_delay(&cfg, 1, 0.999_999).as_secs(), 71);
    }

    #[tokio::test]
    async fn store_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new(&[]).unwrap());
        let (spool, _) = crate::spool::Spool::open(dir.path(), 0, metrics).unwrap();
        let states = spool.state_store().unwrap();
        let mut s = DeliveryState::new(&["a@x.test".into(), "b@y.test".into()]);
        s.recipients[0].status = RcptStatus::Delivered;
        s.attempts = 2;
        store(&states, "ID1", &s).await.unwrap();
        assert_eq!(load(&states, "ID1"), Some(s.clone()));
        assert_eq!(s.pending().collect::<Vec<_>>(), [1]);
        assert!(!s.is_final());
        states.remove("ID1").await;
        assert_eq!(load(&states, "ID1"), None);
    }
}
