//! What the operator reports back.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// What the operator observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MailRelayStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing and Degraded, with reasons and messages.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Gateway pods ready to serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Where clients connect: the Service's DNS name (and external address, if any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// When the serving certificate expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_expiry: Option<String>,
    /// Secrets holding generated user passwords (names only, never the secrets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generated_password_secrets: Vec<String>,
    /// DNS records to publish so receivers accept the relay's mail (e.g. an SPF
    /// record including the relay's egress addresses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_records: Vec<String>,
}
