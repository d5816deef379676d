//! What sits around the gateway pods: the client and headless Services, the
//! PodDisruptionBudget, and the ServiceMonitor when asked for and the Prometheus
//! operator is installed.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DynamicObject};

use super::cluster::{self, apply};
use super::{Error, Target};
use crate::resources;

/// What the services step applied and found.
#[derive(Debug, Clone, PartialEq)]
pub struct Services {
    /// The client Service as the API server returned it (load balancer status
    /// included).
    pub client: Service,
    /// Why the ServiceMonitor could not be made (a Degraded reason).
    pub problem: Option<String>,
}

/// Applies the Services, the PodDisruptionBudget and the ServiceMonitor.
pub async fn ensure(target: &Target<'_>) -> Result<Services, Error> {
    let relay = target.relay;
    let services: Api<Service> = target.api();
    let client = apply(&services, &resources::service::client(relay)).await?;
    apply(&services, &resources::service::headless(relay)).await?;
    let pdbs: Api<PodDisruptionBudget> = target.api();
    apply(&pdbs, &resources::pdb::build(relay)).await?;
    let mut problem = None;
    if relay.spec.metrics.service_monitor {
        if cluster::crd_exists(target.client, cluster::SERVICE_MONITOR_CRD).await? {
            let api: Api<DynamicObject> = Api::namespaced_with(
                target.client.clone(),
                target.namespace,
                &resources::servicemonitor::api_resource(),
            );
            apply(&api, &resources::servicemonitor::build(relay)).await?;
        } else {
            problem = Some(
                "metrics.serviceMonitor is on but the Prometheus operator is not installed".into(),
            );
        }
    }
    Ok(Services { client, problem })
}
