//! A cert-manager Certificate for relays whose TLS comes from an issuer; cert-manager
//! writes the `<relay>-tls` Secret the gateway mounts. Dynamic, like the
//! ServiceMonitor: the operator does not link cert-manager's types.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use postern_api::{IssuerRef, MailRelay};

use super::meta;
use crate::names::Names;

/// The Certificate API.
pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
        "certificates",
    )
}

pub fn build(relay: &MailRelay, issuer: &IssuerRef, dns_names: &[String]) -> DynamicObject {
    let n = Names::new(&super::relay_name(relay));
    let mut obj = DynamicObject::new(&n.tls(), &api_resource());
    obj.metadata = meta(relay, n.tls());
    obj.data = serde_json::json!({
        "spec": {
            "secretName": n.tls(),
            "dnsNames": dns_names,
            "issuerRef": {"name": issuer.name, "kind": issuer.kind, "group": issuer.group},
            // ECDSA P-256, like the gateway's own certificates: a cheaper handshake
            // for clients that connect per message (RSA is cert-manager's default).
            "usages": ["server auth", "digital signature"],
            "privateKey": {"rotationPolicy": "Always", "algorithm": "ECDSA", "size": 256}
        }
    });
    obj
}
