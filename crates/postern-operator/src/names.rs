//! Names of a relay's children, in one place so builders, the reconciler and the
//! docs agree.

/// Names derived from a MailRelay's name.
#[derive(Debug, Clone)]
pub struct Names {
    pub relay: String,
}

impl Names {
    pub fn new(relay: &str) -> Self {
        Self {
            relay: relay.to_owned(),
        }
    }
    /// ConfigMap holding gateway.toml.
    pub fn config(&self) -> String {
        format!("{}-config", self.relay)
    }
    /// Secret holding the credentials file (hashes only).
    pub fn credentials(&self) -> String {
        format!("{}-credentials", self.relay)
    }
    /// Secret holding the serving certificate (operator-made or cert-manager's).
    pub fn tls(&self) -> String {
        format!("{}-tls", self.relay)
    }
    /// Secret holding the operator-made CA (certificate and key).
    pub fn ca(&self) -> String {
        format!("{}-ca", self.relay)
    }
    /// Secret holding `username:password` for the smarthost.
    pub fn smarthost(&self) -> String {
        format!("{}-smarthost", self.relay)
    }
    /// Secret with a generated password for `user`.
    pub fn user_password(&self, user: &str) -> String {
        format!(
            "{}-user-{}",
            self.relay,
            user.to_lowercase().replace(['_', '.', '@'], "-")
        )
    }
    /// The client Service, the workload, the PDB and the ServiceMonitor.
    pub fn service(&self) -> String {
        self.relay.clone()
    }
    /// The headless Service of the StatefulSet.
    pub fn headless(&self) -> String {
        format!("{}-pods", self.relay)
    }
}

/// Labels on every child and selector of the pods.
pub fn labels(relay: &str) -> std::collections::BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name", "postern-gateway"),
        ("app.kubernetes.io/instance", relay),
        ("app.kubernetes.io/managed-by", "postern-operator"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The subset of [`labels`] that selects the relay's pods.
pub fn selector(relay: &str) -> std::collections::BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name", "postern-gateway"),
        ("app.kubernetes.io/instance", relay),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}
