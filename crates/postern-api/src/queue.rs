//! `spec.queue`: the durable queue.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The durable queue.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueSpec {
    /// Keep the queue on a PersistentVolumeClaim per pod (StatefulSet). Off: an
    /// emptyDir (Deployment), and queued mail is lost when a pod goes away.
    #[serde(default = "default_true")]
    pub persistence: bool,
    /// Size of each pod's spool volume.
    #[serde(default = "default_queue_size")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"))]
    pub size: String,
    /// StorageClass of the spool volumes; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// How long undeliverable mail is retried before it bounces, e.g. 5d or 12h.
    #[serde(default = "default_lifetime")]
    #[schemars(regex(pattern = r"^[0-9]+(s|m|h|d)$"))]
    pub max_lifetime: String,
    /// Delete the spool volumes when the MailRelay is deleted. Off by default: queued
    /// mail lives there.
    #[serde(default)]
    pub delete_volumes_with_relay: bool,
}

fn default_true() -> bool {
    true
}
fn default_queue_size() -> String {
    "1Gi".into()
}
fn default_lifetime() -> String {
    "5d".into()
}

impl Default for QueueSpec {
    fn default() -> Self {
        Self {
            persistence: true,
            size: default_queue_size(),
            storage_class_name: None,
            max_lifetime: default_lifetime(),
            delete_volumes_with_relay: false,
        }
    }
}
