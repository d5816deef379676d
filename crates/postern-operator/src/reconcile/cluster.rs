//! The few ways the steps talk to the API server: server-side apply of a child,
//! reading one key of a Secret, and asking whether an optional CRD is installed.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Error;
use crate::FIELD_MANAGER;

/// The cert-manager Certificate CRD, needed for `tls.issuerRef`.
pub const CERTIFICATE_CRD: &str = "certificates.cert-manager.io";
/// The Prometheus operator's ServiceMonitor CRD, needed for `metrics.serviceMonitor`.
pub const SERVICE_MONITOR_CRD: &str = "servicemonitors.monitoring.coreos.com";

/// Server-side applies `obj` (forcing ownership of its fields) and returns what the
/// API server stored, status included.
pub async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K, Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    Ok(api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await?)
}

/// The value under `key`, from `data` or else `stringData`, when it is UTF-8.
pub fn secret_value(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .or_else(|| s.string_data.as_ref().and_then(|d| d.get(key).cloned()))
}

/// Whether the CRD `name` (plural.group) is installed.
pub async fn crd_exists(client: &Client, name: &str) -> Result<bool, Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    Ok(crds.get_opt(name).await?.is_some())
}
