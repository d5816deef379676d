//! `[timeouts]`: server-side timeouts (RFC 5321 section 4.5.3.2).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Server-side timeouts (RFC 5321 section 4.5.3.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsConfig {
    /// Waiting for the next command (RFC: at least 5 minutes).
    #[serde(with = "humantime_serde")]
    pub command: Duration,
    /// Waiting for the next block of message data.
    #[serde(with = "humantime_serde")]
    pub data: Duration,
    /// Completing a TLS handshake.
    #[serde(with = "humantime_serde")]
    pub tls_handshake: Duration,
    /// On shutdown, how long sessions in a transaction may take to finish.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        Self {
            command: Duration::from_secs(300),
            data: Duration::from_secs(180),
            tls_handshake: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}
