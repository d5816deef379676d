//! `spec.users`: who may authenticate, with which senders and password.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
