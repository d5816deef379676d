//! `spec.relay`: how mail leaves the cluster, by MX or through a smarthost.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::service::port_submission;

/// Delivery mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RelayMode {
    /// DNS MX routing to each recipient domain.
    #[default]
    Mx,
    /// Everything through one smarthost.
    Smarthost,
}

/// How mail leaves the cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode != 'smarthost' || has(self.smarthost)").message("relay.smarthost is required when relay.mode is smarthost"))]
#[x_kube(validation = Rule::new("self.mode == 'smarthost' || !has(self.smarthost)").message("relay.smarthost is only used when relay.mode is smarthost"))]
pub struct RelaySpec {
    /// mx or smarthost.
    #[serde(default)]
    pub mode: RelayMode,
    /// The smarthost, for mode smarthost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smarthost: Option<SmarthostSpec>,
    /// Recipient domains that must get TLS (never sent in clear text).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require_tls_domains: Vec<String>,
}

/// TLS towards the smarthost.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmarthostTlsMode {
    /// STARTTLS, required.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// Plain text (trusted networks only).
    None,
}

/// A relay host.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SmarthostSpec {
    /// Host name or IP address.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// TCP port.
    #[serde(default = "port_submission")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// starttls, implicit or none.
    #[serde(default)]
    pub tls: SmarthostTlsMode,
    /// Secret with keys `username` and `password` for AUTH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
}
