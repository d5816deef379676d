//! `spec.metrics`: Prometheus integration.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Prometheus integration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    /// Create a ServiceMonitor (when the Prometheus operator's CRD is installed).
    #[serde(default)]
    pub service_monitor: bool,
    /// Recipient domains that get their own label on delivery metrics.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_domains: Vec<String>,
}
