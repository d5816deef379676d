//! The gateway's configuration file (TOML): the contract between whoever writes the
//! file (a person, the Helm chart, the operator) and the gateway that reads it.
//!
//! Every struct denies unknown fields so a typo is an error, not a silently ignored
//! setting. Every field has a named default, stated in docs/configuration.md.
//! This crate does no I/O beyond reading the one file it is given.
//!
//! One module per section of docs/configuration.md; every type is re-exported here.
//! [`credentials`] holds the formats of the two files the configuration points to
//! (the AUTH credentials file and the smarthost login) and password hashing, shared
//! by the gateway (which reads them) and the operator (which writes them).

use std::path::Path;

use serde::{Deserialize, Serialize};

mod auth;
pub mod credentials;

mod delivery;
mod error;
mod limits;
mod listeners;
mod log;
mod metrics;
mod relay;
mod spool;
mod timeouts;
mod tls;
mod validate;

pub use auth::AuthConfig;
pub use delivery::{
    DeliveryConfig, DeliveryMode, DnsConfig, OutboundLimits, OutboundTimeouts, OutboundTlsConfig,
    RetryConfig, SmarthostConfig, SmarthostTls, TlsPolicy,
};
pub use error::{ConfigError, FieldError};
pub use limits::{BareLineEndings, LimitsConfig};
pub use listeners::{ListenerConfig, ListenerKind};
pub use log::{LogConfig, LogFormat};
pub use metrics::MetricsConfig;
pub use relay::{RelayConfig, canonical_ip};
pub use spool::SpoolConfig;
pub use timeouts::TimeoutsConfig;
pub use tls::TlsConfig;

/// The whole gateway configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Name the gateway uses in its greeting, EHLO reply and Received headers.
    pub hostname: String,
    /// SMTP listeners; at least one.
    pub listeners: Vec<ListenerConfig>,
    /// Server certificate and key for STARTTLS and implicit TLS.
    pub tls: TlsConfig,
    /// Where accepted messages are stored durably.
    pub spool: SpoolConfig,
    /// SMTP AUTH credentials and brute-force protection.
    pub auth: AuthConfig,
    /// Who may relay without authenticating.
    pub relay: RelayConfig,
    /// Bounds on every input.
    pub limits: LimitsConfig,
    /// RFC 5321 section 4.5.3.2 server timeouts.
    pub timeouts: TimeoutsConfig,
    /// How accepted mail reaches its recipients.
    pub delivery: DeliveryConfig,
    /// Prometheus metrics and health endpoints.
    pub metrics: MetricsConfig,
    /// Log output.
    pub log: LogConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            hostname: "localhost".to_owned(),
            listeners: vec![
                ListenerConfig::new(ListenerKind::Relay, ([0, 0, 0, 0], 25).into()),
                ListenerConfig::new(ListenerKind::Submission, ([0, 0, 0, 0], 587).into()),
                ListenerConfig::new(ListenerKind::Submissions, ([0, 0, 0, 0], 465).into()),
            ],
            tls: TlsConfig::default(),
            spool: SpoolConfig::default(),
            auth: AuthConfig::default(),
            relay: RelayConfig::default(),
            limits: LimitsConfig::default(),
            timeouts: TimeoutsConfig::default(),
            delivery: DeliveryConfig::default(),
            metrics: MetricsConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl GatewayConfig {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: GatewayConfig = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Renders the configuration as TOML (what the operator writes into a ConfigMap).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(self).map_err(ConfigError::Render)
    }
}

#[cfg(test)]
mod tests;
