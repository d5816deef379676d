//! ServiceMonitor (Prometheus operator) for the relay's metrics port, created only
//! when its CRD exists in the cluster and the spec asks for it. Built as a dynamic
//! object: the operator does not link the Prometheus operator's types.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use postern_api::MailRelay;

use super::meta;
use crate::names::{Names, selector};

/// The ServiceMonitor API.
pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        "servicemonitors",
    )
}

pub fn build(relay: &MailRelay) -> DynamicObject {
    let name = super::relay_name(relay);
    let mut obj = DynamicObject::new(&Names::new(&name).service(), &api_resource());
    obj.metadata = meta(relay, Names::new(&name).service());
    obj.data = serde_json::json!({
        "spec": {
            "selector": {"matchLabels": selector(&name)},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
        }
    });
    obj
}
