//! Delivery state of one queued message, kept beside the spool in `state/<ID>` so
//! retries survive restarts. Writes are atomic (write, then rename) but not synced:
//! losing a state update in a crash can only cause a repeated attempt, never a lost
//! message, because a message file is removed only after every recipient is final.

use std::path::{Path, PathBuf};
use std::time::Duration;

use postern_config::RetryConfig;
use serde::{Deserialize, Serialize};

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

fn path(dir: &Path, id: &str) -> PathBuf {
    dir.join(id)
}

/// Reads a state file; None when there is none (a message never tried).
pub fn load(dir: &Path, id: &str) -> Option<DeliveryState> {
    let bytes = std::fs::read(path(dir, id)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes a state file atomically.
pub fn store(dir: &Path, id: &str, state: &DeliveryState) -> std::io::Result<()> {
    let tmp = dir.join(format!("{id}.tmp"));
    let bytes = serde_json::to_vec(state).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path(dir, id))
}

/// Removes a state file (the message is done).
pub fn remove(dir: &Path, id: &str) {
    let _ = std::fs::remove_file(path(dir, id));
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

    #[test]
    fn store_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = DeliveryState::new(&["a@x.test".into(), "b@y.test".into()]);
        s.recipients[0].status = RcptStatus::Delivered;
        s.attempts = 2;
        store(dir.path(), "ID1", &s).unwrap();
        assert_eq!(load(dir.path(), "ID1"), Some(s.clone()));
        assert_eq!(s.pending().collect::<Vec<_>>(), [1]);
        assert!(!s.is_final());
        remove(dir.path(), "ID1");
        assert_eq!(load(dir.path(), "ID1"), None);
    }
}
