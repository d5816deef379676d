//! One pure builder per child kind. Each takes the MailRelay (and what the
//! reconciler resolved) and returns the object to server-side apply, with labels and
//! a controller owner reference, so deleting the MailRelay deletes its children.

pub mod certificate;
pub mod configmap;
pub mod pdb;
pub mod secret;
pub mod service;
pub mod servicemonitor;
pub mod workload;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use postern_api::MailRelay;

use crate::names::labels;

/// Metadata for a child named `name`.
pub fn meta(relay: &MailRelay, name: String) -> ObjectMeta {
    let relay_name = relay.metadata.name.clone().unwrap_or_default();
    ObjectMeta {
        name: Some(name),
        namespace: relay.metadata.namespace.clone(),
        labels: Some(labels(&relay_name)),
        owner_references: relay.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

/// The relay's name.
pub fn relay_name(relay: &MailRelay) -> String {
    relay.metadata.name.clone().unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod testing {
    use postern_api::MailRelay;

    /// A relay as the API server would hand it over (name, namespace, uid).
    pub fn relay(spec: serde_json::Value) -> MailRelay {
        let mut r = MailRelay::new("mail", serde_json::from_value(spec).unwrap());
        r.metadata.namespace = Some("apps".into());
        r.metadata.uid = Some("0000-1111".into());
        r
    }
}
