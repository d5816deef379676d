//! The gateway itself: its configuration (a ConfigMap) and its pods, a StatefulSet
//! when the queue is persistent or a Deployment when it is not (the other kind is
//! deleted). A configuration hash on the pod template rolls the pods when the
//! configuration, credentials file or smarthost login change.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PodTemplateSpec};
use kube::api::Api;

use super::cluster::apply;
use super::events::Change;
use super::passwords::Passwords;
use super::tls::Tls;
use super::{Error, Target};
use crate::config;
use crate::resources::{self, workload::Workload, workload::WorkloadInputs};

/// The gateway configuration as rendered into the ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// The name the gateway greets with.
    pub hostname: String,
    /// gateway.toml.
    pub toml: String,
}

/// Renders the gateway configuration and applies its ConfigMap.
pub async fn configure(target: &Target<'_>) -> Result<GatewayConfig, Error> {
    let rendered = config::gateway_config(target.relay, target.namespace)?;
    let toml = rendered.to_toml().map_err(config::ConfigError::from)?;
    let configmaps: Api<ConfigMap> = target.api();
    apply(
        &configmaps,
        &resources::configmap::build(target.relay, &toml),
    )
    .await?;
    Ok(GatewayConfig {
        hostname: rendered.hostname,
        toml,
    })
}

/// What rolling out the workload did and what the cluster reports about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    /// Pods ready, as the workload's status says right after the apply.
    pub ready_replicas: i32,
    /// What changed, for the event.
    pub change: Change,
}

/// Applies the StatefulSet or Deployment, deletes the other kind, and compares the
/// configuration hash with the one the workload had before.
pub async fn roll_out(
    target: &Target<'_>,
    default_image: &str,
    gateway_config: &GatewayConfig,
    passwords: &Passwords,
    tls: &Tls,
) -> Result<Rollout, Error> {
    let (relay, spec, name) = (target.relay, &target.relay.spec, target.names.service());
    let hash = resources::workload::config_hash(&[
        &gateway_config.toml,
        &passwords.credentials_file,
        passwords.smarthost_login.as_deref().unwrap_or_default(),
    ]);
    let image = spec.image.as_deref().unwrap_or(default_image);
    let inputs = WorkloadInputs {
        image,
        config_hash: &hash,
        smarthost_secret: passwords.smarthost_login.is_some(),
        tls_secret: &tls.secret,
    };
    let statefulsets: Api<StatefulSet> = target.api();
    let deployments: Api<Deployment> = target.api();
    let previous = if spec.queue.persistence {
        statefulsets
            .get_opt(&name)
            .await?
            .map(|s| config_hash_of(s.spec.as_ref().map(|s| &s.template)))
    } else {
        deployments
            .get_opt(&name)
            .await?
            .map(|d| config_hash_of(d.spec.as_ref().map(|s| &s.template)))
    };
    let (kind, ready_replicas) = match resources::workload::build(relay, &inputs) {
        Workload::StatefulSet(sts) => {
            let applied = apply(&statefulsets, &sts).await?;
            let _ = deployments.delete(&name, &Default::default()).await;
            let st = applied.status.unwrap_or_default();
            ("StatefulSet", st.ready_replicas.unwrap_or(0))
        }
        Workload::Deployment(d) => {
            let applied = apply(&deployments, &d).await?;
            let _ = statefulsets.delete(&name, &Default::default()).await;
            let st = applied.status.unwrap_or_default();
            ("Deployment", st.ready_replicas.unwrap_or(0))
        }
    };
    let change = Change::between(previous.as_ref().map(Option::as_deref), &hash, kind, name);
    Ok(Rollout {
        ready_replicas,
        change,
    })
}

/// The configuration hash annotation on a pod template.
fn config_hash_of(template: Option<&PodTemplateSpec>) -> Option<String> {
    template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(resources::workload::CONFIG_HASH).cloned())
}
