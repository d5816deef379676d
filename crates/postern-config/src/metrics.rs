//! `[metrics]`: the HTTP endpoint for Prometheus and probes.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The HTTP endpoint for Prometheus and probes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve the HTTP endpoint at all.
    pub enabled: bool,
    /// Address of the HTTP listener serving /metrics, /healthz and /readyz.
    pub address: SocketAddr,
    /// Recipient domains that get their own `destination` label on delivery metrics;
    /// every other domain is counted as "other", so label cardinality stays bounded.
    pub destination_domains: Vec<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            address: ([0, 0, 0, 0], 9098).into(),
            destination_domains: Vec::new(),
        }
    }
}
