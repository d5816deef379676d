//! One reconcile of one MailRelay: resolve passwords and TLS, render the gateway
//! configuration, server-side apply every child with owner references, then report
//! status from what the cluster says (ready replicas), never from what was hoped.
//!
//! Each step has its own module and hands the next ones what it found:
//! `passwords` (users' passwords, credentials file, smarthost login), `tls` (the
//! certificate from cert-manager, an existing Secret or the operator's own CA),
//! `workload` (ConfigMap, then StatefulSet or Deployment), `events` (what changed,
//! told on the relay), `services` (Services, PodDisruptionBudget, ServiceMonitor) and
//! `status` (computed without API calls from what the steps report, then patched).
//! `cluster` holds the API helpers the steps share.

mod cluster;
pub mod events;
pub mod passwords;
pub mod services;
pub mod status;
pub mod tls;
pub mod workload;

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};
use postern_api::MailRelay;
use time::OffsetDateTime;

use crate::names::Names;
use crate::{certs, config, credentials};

/// Why a reconcile failed; the label goes into metrics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    Credentials(#[from] credentials::CredentialsError),
    #[error("{0}")]
    Certs(#[from] certs::CertError),
    #[error("secret {secret}: {what}")]
    Secret { secret: String, what: String },
    #[error("{0}")]
    Spec(String),
    #[error("serialization: {0}")]
    Serde(#[from] serde_json::Error),
}

impl Error {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Config(_) => "config",
            Error::Credentials(_) => "credentials",
            Error::Certs(_) => "certs",
            Error::Secret { .. } => "secret",
            Error::Spec(_) => "spec",
            Error::Serde(_) => "serde",
        }
    }
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    /// Gateway image when the spec names none.
    pub image: String,
    pub metrics: crate::metrics::OperatorMetrics,
    /// Publishes events on MailRelays.
    pub recorder: kube::runtime::events::Recorder,
    /// Consecutive failures per relay (namespace/name), for the back-off.
    pub failures: std::sync::Mutex<HashMap<String, u32>>,
}

/// The relay one reconcile works on and where its children live.
pub struct Target<'a> {
    pub relay: &'a MailRelay,
    pub client: &'a Client,
    pub namespace: &'a str,
    /// The children's names.
    pub names: Names,
}

impl Target<'_> {
    /// The API for children of kind `K` in the relay's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), self.namespace)
    }
}

/// Reconciles one MailRelay.
pub async fn reconcile(relay: Arc<MailRelay>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_timer();
    let ns = relay
        .namespace()
        .ok_or_else(|| Error::Spec("MailRelay must be namespaced".into()))?;
    let name = relay.name_any();
    let target = Target {
        relay: &relay,
        client: &ctx.client,
        namespace: &ns,
        names: Names::new(&name),
    };

    let passwords = passwords::resolve(&target).await?;
    let tls = tls::ensure(&target, OffsetDateTime::now_utc()).await?;
    let gateway_config = workload::configure(&target).await?;
    let rollout =
        workload::roll_out(&target, &ctx.image, &gateway_config, &passwords, &tls).await?;
    events::publish(&ctx.recorder, &relay, &rollout.change).await;
    let services = services::ensure(&target).await?;

    let problems: Vec<String> = passwords
        .problems
        .iter()
        .chain(&tls.problem)
        .chain(&services.problem)
        .cloned()
        .collect();
    let observed = status::Observed {
        ready_replicas: rollout.ready_replicas,
        certificate_expiry: tls.expiry,
        generated_password_secrets: &passwords.generated_secrets,
        problems: &problems,
        hostname: &gateway_config.hostname,
        client_service: &services.client,
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = status::compute(&relay, &ns, &observed, now);
    status::patch(&target, &status).await?;
    if let Ok(mut f) = ctx.failures.lock() {
        f.remove(&format!("{ns}/{name}"));
    }
    Ok(status::next_action(&status))
}
