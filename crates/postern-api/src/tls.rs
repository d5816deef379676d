//! `spec.tls`: where the server certificate comes from.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
