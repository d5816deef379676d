//! `spec.service`: the Service in front of the gateway pods.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Kind of Service.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

/// The Service in front of the gateway pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// ClusterIP (in-cluster senders), LoadBalancer or NodePort (senders outside).
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Service ports.
    #[serde(default)]
    pub ports: ServicePorts,
    /// Annotations for the Service (for example a cloud load balancer's settings).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Service port numbers; 0 leaves a port out of the Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.smtp != 0 || self.submission != 0 || self.submissions != 0").message("at least one of service.ports smtp, submission, submissions must be set"))]
pub struct ServicePorts {
    /// Relay port (trusted networks only), usually 25.
    #[serde(default = "port_smtp")]
    #[schemars(range(min = 0, max = 65535))]
    pub smtp: i32,
    /// Submission with STARTTLS (RFC 6409), usually 587.
    #[serde(default = "port_submission")]
    #[schemars(range(min = 0, max = 65535))]
    pub submission: i32,
    /// Submission with implicit TLS (RFC 8314), usually 465.
    #[serde(default = "port_submissions")]
    #[schemars(range(min = 0, max = 65535))]
    pub submissions: i32,
}

fn port_smtp() -> i32 {
    25
}
pub(crate) fn port_submission() -> i32 {
    587
}
fn port_submissions() -> i32 {
    465
}

impl Default for ServicePorts {
    fn default() -> Self {
        Self {
            smtp: port_smtp(),
            submission: port_submission(),
            submissions: port_submissions(),
        }
    }
}
