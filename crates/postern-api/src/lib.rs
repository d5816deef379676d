//! The `MailRelay` custom resource (group `postern.dev`, version `v1alpha1`): what a
//! user declares, what the operator reports back, and the condition helpers.
//!
//! The CRD is generated from these types (`crdgen`); every field's doc comment becomes
//! its description, so `kubectl explain mailrelay.spec...` helps. Validation the
//! schema alone cannot express is written as CEL rules (x-kubernetes-validations),
//! each with a message that says what to fix. This crate never talks to a cluster.

pub mod conditions;
pub mod reference;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group.
pub const GROUP: &str = "postern.dev";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";

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
fn port_submission() -> i32 {
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

/// Server certificate source: one of a cert-manager issuer, an existing Secret, or a
/// self-signed certificate made by the operator (the default when none is set).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.issuerRef), has(self.secretName), has(self.selfSigned) && self.selfSigned].filter(x, x).size() <= 1").message("tls: set only one of issuerRef, secretName, selfSigned"))]
pub struct TlsSpec {
    /// A cert-manager Issuer or ClusterIssuer; the operator creates a Certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
    /// An existing kubernetes.io/tls Secret in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// A self-signed CA and certificate made by the operator, renewed at two thirds of
    /// its life. Clients must trust the CA (published in the Secret `<name>-ca`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_signed: Option<bool>,
    /// Extra DNS names for the certificate, besides the Service's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
}

/// A cert-manager issuer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// Issuer name.
    pub name: String,
    /// Issuer or ClusterIssuer.
    #[serde(default = "issuer_kind")]
    pub kind: String,
    /// API group of the issuer.
    #[serde(default = "issuer_group")]
    pub group: String,
}

fn issuer_kind() -> String {
    "Issuer".into()
}
fn issuer_group() -> String {
    "cert-manager.io".into()
}

/// A key in a Secret of the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Key within the Secret.
    pub key: String,
}

/// One SMTP AUTH user.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserSpec {
    /// Login name.
    #[x_kube(validation = Rule::new("self.matches('^[^:\\\\s]+$')").message("a user name may not hold ':' or white space"))]
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    /// Senders this user may put in MAIL FROM: addresses, @domain for a whole domain,
    /// or * for any.
    #[x_kube(validation = Rule::new("self.all(s, s == '*' || s.matches('^@[^@\\\\s]+$') || s.matches('^[^@\\\\s]+@[^@\\\\s]+$'))").message("each allowedSenders entry must be an address, @domain or *"))]
    #[schemars(length(min = 1, max = 20), inner(length(min = 1, max = 254)))]
    pub allowed_senders: Vec<String>,
    /// The password, from a Secret. Without it the operator generates one into the
    /// Secret `<relay>-user-<name>` (key `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
}

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

/// Limits on clients.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitsSpec {
    /// Largest message in octets (default 25 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1024))]
    pub max_message_size: Option<i64>,
    /// Recipients per message (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_recipients: Option<i32>,
    /// Concurrent sessions per pod (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_sessions: Option<i32>,
    /// Concurrent sessions per client IP per pod (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_sessions_per_ip: Option<i32>,
    /// New connections one client IP may open per minute, per pod (default: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub connections_per_minute_per_client: Option<i32>,
    /// Messages one client IP may send per minute, per pod (default: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub messages_per_minute_per_client: Option<i32>,
    /// Failed AUTH attempts from one IP before it is blocked for a while (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub auth_failures_before_block: Option<i32>,
}

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

/// The CRD as YAML, exactly as `crdgen` writes it.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    let yaml = serde_yaml::to_string(&MailRelay::crd())?;
    Ok(format!(
        "# Generated by crdgen from crates/postern-api; do not edit.\n---\n{yaml}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> serde_json::Value {
        let crd = serde_json::to_value(MailRelay::crd()).unwrap();
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    }

    /// Every property has a description, so `kubectl explain` is useful.
    #[test]
    fn every_field_is_described() {
        fn walk(path: &str, v: &serde_json::Value, missing: &mut Vec<String>) {
            if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
                for (name, prop) in props {
                    let p = format!("{path}.{name}");
                    // Kubernetes' own types (resources, affinity, tolerations,
                    // conditions) describe themselves; ours must too.
                    if prop.get("description").is_none()
                        && !["apiVersion", "kind", "metadata"].contains(&name.as_str())
                    {
                        missing.push(p.clone());
                    }
                    walk(&p, prop, missing);
                }
            }
            if let Some(items) = v.get("items") {
                walk(&format!("{path}[]"), items, missing);
            }
        }
        let mut missing = Vec::new();
        walk("", &schema(), &mut missing);
        assert!(
            missing.is_empty(),
            "fields without a description: {missing:?}"
        );
    }

    #[test]
    fn schema_carries_cel_rules_list_maps_and_columns() {
        let crd = serde_json::to_string(&MailRelay::crd()).unwrap();
        for needle in [
            "relay.smarthost is required when relay.mode is smarthost",
            "tls: set only one of issuerRef, secretName, selfSigned",
            "isCIDR(n)",
            "\"x-kubernetes-list-type\":\"map\"",
            "\"x-kubernetes-list-map-keys\":[\"type\"]",
            "\"x-kubernetes-list-map-keys\":[\"name\"]",
            "\"name\":\"Ready\"",
            "\"name\":\"Endpoint\"",
        ] {
            assert!(crd.contains(needle), "CRD lacks {needle}");
        }
        let crd = MailRelay::crd();
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(crd.spec.versions[0].name, VERSION);
        assert!(
            crd.spec.versions[0]
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
    }

    #[test]
    fn minimal_spec_takes_defaults() {
        let spec: MailRelaySpec = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(spec.replicas, 2);
        assert!(spec.queue.persistence);
        assert_eq!(spec.service.ports, ServicePorts::default());
        assert_eq!(spec.relay.mode, RelayMode::Mx);
    }
}
