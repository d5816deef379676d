//! The spec's root: what a user declares for one gateway. Its sections live in
//! their own modules.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::{
    LimitsSpec, MailRelayStatus, MetricsSpec, QueueSpec, RelaySpec, ServiceSpec, TlsSpec, UserSpec,
};

/// A Postern mail gateway: SMTP submission (587/465) and relay (25) in front of MX
/// delivery or a smarthost, with its users, TLS and queue.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "postern.dev",
    version = "v1alpha1",
    kind = "MailRelay",
    plural = "mailrelays",
    shortname = "mr",
    category = "mail",
    namespaced,
    status = "MailRelayStatus",
    doc = "A Postern mail gateway: SMTP submission (587/465) and relay (25) in front of MX delivery or a smarthost, with its users, TLS certificate and durable queue.",
    printcolumn = r#"{"name":"Ready","type":"string","description":"Whether the relay serves mail","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","description":"Ready gateway pods","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","description":"Where clients connect","jsonPath":".status.endpoint"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MailRelaySpec {
    /// Gateway pods to run. With queue persistence each pod has its own spool volume.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 50))]
    pub replicas: i32,
    /// Gateway container image; defaults to the image matching the operator's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Name the gateway uses in SMTP greetings and Received headers; defaults to the
    /// Service's cluster DNS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$')").message("hostname must be a DNS name"))]
    #[schemars(length(max = 253))]
    pub hostname: Option<String>,
    /// The Service clients connect to.
    #[serde(default)]
    pub service: ServiceSpec,
    /// Where the server certificate comes from.
    #[serde(default)]
    pub tls: TlsSpec,
    /// Users that may authenticate (SMTP AUTH) and the senders each may use (at most
    /// 500 users with 20 sender entries each: the API server bounds the cost of checking
    /// them).
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(max = 500))]
    pub users: Vec<UserSpec>,
    /// Client networks (CIDRs) that may relay through port 25 without AUTH. Empty: nobody.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self.all(n, isCIDR(n))").message("every trustedNetworks entry must be a CIDR such as 10.0.0.0/8"))]
    #[schemars(length(max = 100), inner(length(max = 43)))]
    pub trusted_networks: Vec<String>,
    /// How mail leaves: DNS MX routing or a smarthost.
    #[serde(default)]
    pub relay: RelaySpec,
    /// Bounds on what clients may send.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// The durable queue.
    #[serde(default)]
    pub queue: QueueSpec,
    /// CPU and memory for each gateway container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node labels the gateway pods must be scheduled on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the gateway pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Scheduling constraints of the gateway pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Prometheus integration.
    #[serde(default)]
    pub metrics: MetricsSpec,
}

fn default_replicas() -> i32 {
    2
}
