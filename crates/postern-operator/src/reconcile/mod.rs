//! One reconcile of one MailRelay: resolve passwords and TLS, render the gateway
//! configuration, server-side apply every child with owner references, then report
//! status from what the cluster says (ready replicas), never from what was hoped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};
use postern_api::conditions::{self, DEGRADED, PROGRESSING, READY};
use postern_api::{MailRelay, MailRelayStatus, RelayMode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use crate::names::Names;
use crate::resources::{self, workload};
use crate::{FIELD_MANAGER, certs, config, credentials};

/// Annotation on the operator-made TLS Secret: when its certificate expires.
const NOT_AFTER: &str = "postern.dev/not-after";

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

impl Context {
    /// Records a Normal event on the relay; an event that cannot be written is not
    /// worth failing a reconcile for.
    async fn event(&self, relay: &MailRelay, reason: &str, note: String) {
        use kube::runtime::events::{Event, EventType};
        let ev = Event {
            type_: EventType::Normal,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        let _ = self.recorder.publish(&ev, &relay.object_ref(&())).await;
    }
}

async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K, Error>
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

fn secret_value(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .or_else(|| s.string_data.as_ref().and_then(|d| d.get(key).cloned()))
}

async fn crd_exists(client: &Client, name: &str) -> Result<bool, Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    Ok(crds.get_opt(name).await?.is_some())
}

/// Reconciles one MailRelay.
pub async fn reconcile(relay: Arc<MailRelay>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_timer();
    let ns = relay
        .namespace()
        .ok_or_else(|| Error::Spec("MailRelay must be namespaced".into()))?;
    let name = relay.name_any();
    let n = Names::new(&name);
    let client = &ctx.client;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let spec = &relay.spec;
    let mut degraded: Vec<String> = Vec::new();

    // Passwords: from the user's Secret, or generated once into a Secret the user can read.
    let mut passwords = HashMap::new();
    let mut generated = Vec::new();
    for u in &spec.users {
        match &u.password_secret_ref {
            Some(r) => match secrets
                .get_opt(&r.name)
                .await?
                .and_then(|s| secret_value(&s, &r.key))
            {
                Some(pw) => {
                    passwords.insert(u.name.clone(), pw);
                }
                None => degraded.push(format!(
                    "user {}: secret {} has no key {}",
                    u.name, r.name, r.key
                )),
            },
            None => {
                let sname = n.user_password(&u.name);
                let pw = match secrets
                    .get_opt(&sname)
                    .await?
                    .and_then(|s| secret_value(&s, "password"))
                {
                    Some(pw) => pw,
                    None => {
                        let pw = credentials::generate_password().map_err(|e| Error::Secret {
                            secret: sname.clone(),
                            what: e.to_string(),
                        })?;
                        apply(
                            &secrets,
                            &resources::secret::user_password(&relay, &u.name, &pw),
                        )
                        .await?;
                        pw
                    }
                };
                passwords.insert(u.name.clone(), pw);
                generated.push(sname);
            }
        }
    }
    let existing = secrets
        .get_opt(&n.credentials())
        .await?
        .and_then(|s| secret_value(&s, config::paths::CREDENTIALS_FILE))
        .unwrap_or_default();
    let creds_file = credentials::render(
        &spec.users,
        &passwords,
        &credentials::existing_hashes(&existing),
    )?;
    apply(
        &secrets,
        &resources::secret::credentials(&relay, &creds_file),
    )
    .await?;

    // Smarthost login.
    let mut smarthost_login = String::new();
    if let (RelayMode::Smarthost, Some(sh)) = (spec.relay.mode, &spec.relay.smarthost)
        && let Some(sname) = &sh.credentials_secret
    {
        let s = secrets.get_opt(sname).await?;
        match s
            .as_ref()
            .and_then(|s| Some((secret_value(s, "username")?, secret_value(s, "password")?)))
        {
            Some((u, p)) => {
                let secret = resources::secret::smarthost(&relay, &u, &p);
                smarthost_login = format!("{u}:{p}");
                apply(&secrets, &secret).await?;
            }
            None => degraded.push(format!(
                "smarthost credentials secret {sname} needs keys username and password"
            )),
        }
    }

    // TLS.
    let now = OffsetDateTime::now_utc();
    let dns_names = certs::service_names(&name, &ns, &spec.tls.dns_names);
    let mut certificate_expiry = None;
    let tls_secret = if let Some(issuer) = &spec.tls.issuer_ref {
        if crd_exists(client, "certificates.cert-manager.io").await? {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &ns, &resources::certificate::api_resource());
            apply(
                &api,
                &resources::certificate::build(&relay, issuer, &dns_names),
            )
            .await?;
        } else {
            degraded.push(
                "tls.issuerRef is set but cert-manager is not installed (no Certificate CRD)"
                    .into(),
            );
        }
        n.tls()
    } else if let Some(existing) = &spec.tls.secret_name {
        if secrets.get_opt(existing).await?.is_none() {
            degraded.push(format!("tls.secretName {existing} does not exist"));
        }
        existing.clone()
    } else {
        let ca = match secrets.get_opt(&n.ca()).await? {
            Some(s) => match (secret_value(&s, "ca.crt"), secret_value(&s, "ca.key")) {
                (Some(cert), Some(key)) => certs::CaPem { cert, key },
                _ => {
                    return Err(Error::Secret {
                        secret: n.ca(),
                        what: "lacks ca.crt or ca.key".into(),
                    });
                }
            },
            None => {
                let ca = certs::new_ca(&name, now)?;
                apply(&secrets, &resources::secret::ca(&relay, &ca.cert, &ca.key)).await?;
                ca
            }
        };
        let current = secrets.get_opt(&n.tls()).await?;
        let not_after = current
            .as_ref()
            .and_then(|s| s.annotations().get(NOT_AFTER).cloned())
            .and_then(|v| {
                OffsetDateTime::parse(&v, &time::format_description::well_known::Rfc3339).ok()
            });
        let expiry = match not_after {
            Some(t) if !certs::due_for_renewal(t, now) => t,
            _ => {
                let leaf = certs::new_leaf(&name, &ca, &dns_names, now)?;
                let mut s = resources::secret::tls(&relay, &leaf.chain, &leaf.key);
                let stamp = leaf
                    .not_after
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                s.metadata.annotations = Some([(NOT_AFTER.to_owned(), stamp)].into());
                apply(&secrets, &s).await?;
                leaf.not_after
            }
        };
        certificate_expiry = expiry
            .format(&time::format_description::well_known::Rfc3339)
            .ok();
        n.tls()
    };

    // Configuration and workload.
    let gw_config = config::gateway_config(&relay, &ns)?;
    let toml = gw_config.to_toml().map_err(config::ConfigError::from)?;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    apply(&configmaps, &resources::configmap::build(&relay, &toml)).await?;
    let hash = workload::config_hash(&[&toml, &creds_file, &smarthost_login]);
    let image = spec.image.clone().unwrap_or_else(|| ctx.image.clone());
    let inputs = workload::WorkloadInputs {
        image: &image,
        config_hash: &hash,
        smarthost_secret: !smarthost_login.is_empty(),
        tls_secret: &tls_secret,
    };
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let hash_of = |t: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>| {
        t.and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(workload::CONFIG_HASH).cloned())
    };
    let previous = if spec.queue.persistence {
        statefulsets
            .get_opt(&n.service())
            .await?
            .map(|s| hash_of(s.spec.as_ref().map(|s| &s.template)))
    } else {
        deployments
            .get_opt(&n.service())
            .await?
            .map(|d| hash_of(d.spec.as_ref().map(|s| &s.template)))
    };
    let (ready, desired) = match workload::build(&relay, &inputs) {
        workload::Workload::StatefulSet(sts) => {
            let applied = apply(&statefulsets, &sts).await?;
            let _ = deployments.delete(&n.service(), &Default::default()).await;
            let st = applied.status.unwrap_or_default();
            (st.ready_replicas.unwrap_or(0), spec.replicas)
        }
        workload::Workload::Deployment(d) => {
            let applied = apply(&deployments, &d).await?;
            let _ = statefulsets.delete(&n.service(), &Default::default()).await;
            let st = applied.status.unwrap_or_default();
            (st.ready_replicas.unwrap_or(0), spec.replicas)
        }
    };
    match previous {
        None => {
            let kind = if spec.queue.persistence {
                "StatefulSet"
            } else {
                "Deployment"
            };
            ctx.event(
                &relay,
                "Created",
                format!(
                    "created the gateway {kind} {} and its configuration",
                    n.service()
                ),
            )
            .await;
        }
        Some(old) if old.as_deref() != Some(hash.as_str()) => {
            ctx.event(
                &relay,
                "ConfigurationChanged",
                "configuration or credentials changed: rolling the gateway pods".into(),
            )
            .await;
        }
        Some(_) => {}
    }
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let client_service = apply(&services, &resources::service::client(&relay)).await?;
    apply(&services, &resources::service::headless(&relay)).await?;
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    apply(&pdbs, &resources::pdb::build(&relay)).await?;
    if spec.metrics.service_monitor {
        if crd_exists(client, "servicemonitors.monitoring.coreos.com").await? {
            let api: Api<DynamicObject> = Api::namespaced_with(
                client.clone(),
                &ns,
                &resources::servicemonitor::api_resource(),
            );
            apply(&api, &resources::servicemonitor::build(&relay)).await?;
        } else {
            degraded.push(
                "metrics.serviceMonitor is on but the Prometheus operator is not installed".into(),
            );
        }
    }

    // Status, from what the cluster reports.
    let generation = relay.metadata.generation;
    let mut status = relay.status.clone().unwrap_or_default();
    let stamp = Time(k8s_openapi::jiff::Timestamp::now());
    let all_ready = ready >= desired && desired > 0;
    conditions::set(
        &mut status.conditions,
        READY,
        all_ready && degraded.is_empty(),
        if all_ready {
            "Available"
        } else {
            "PodsNotReady"
        },
        format!("{ready}/{desired} gateway pods ready"),
        generation,
        stamp.clone(),
    );
    conditions::set(
        &mut status.conditions,
        PROGRESSING,
        !all_ready,
        if all_ready { "Complete" } else { "RollingOut" },
        if all_ready {
            "all pods run the current configuration".to_owned()
        } else {
            format!("waiting for {} pods", desired - ready)
        },
        generation,
        stamp.clone(),
    );
    conditions::set(
        &mut status.conditions,
        DEGRADED,
        !degraded.is_empty(),
        if degraded.is_empty() {
            "AsExpected"
        } else {
            "ConfigurationProblem"
        },
        degraded.join("; "),
        generation,
        stamp,
    );
    let p = &spec.service.ports;
    let host = config::service_host(&relay, &ns);
    status.endpoint = Some(format!(
        "{host} (submission {}, submissions {}, smtp {})",
        p.submission, p.submissions, p.smtp
    ));
    status.observed_generation = generation;
    status.ready_replicas = Some(ready);
    status.certificate_expiry = certificate_expiry;
    status.generated_password_secrets = generated;
    status.dns_records = dns_records(&gw_config.hostname, &client_service, &spec.users);
    patch_status(client, &ns, &name, &status).await?;
    if let Ok(mut f) = ctx.failures.lock() {
        f.remove(&format!("{ns}/{name}"));
    }
    Ok(if all_ready && degraded.is_empty() {
        Action::requeue(Duration::from_secs(600))
    } else {
        Action::requeue(Duration::from_secs(15))
    })
}

async fn patch_status(
    client: &Client,
    ns: &str,
    name: &str,
    status: &MailRelayStatus,
) -> Result<(), Error> {
    let api: Api<MailRelay> = Api::namespaced(client.clone(), ns);
    let body = serde_json::json!({
        "apiVersion": format!("{}/{}", postern_api::GROUP, postern_api::VERSION),
        "kind": "MailRelay",
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// What to publish in DNS: the gateway's name for its external address (when the
/// Service has one), and an SPF record for every sender domain the users may use, so
/// receivers accept mail relayed from the cluster's egress addresses.
fn dns_records(hostname: &str, service: &Service, users: &[postern_api::UserSpec]) -> Vec<String> {
    let mut out = Vec::new();
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .and_then(|i| i.first());
    if let Some(i) = ingress {
        if let Some(ip) = &i.ip {
            let kind = if ip.contains(':') { "AAAA" } else { "A" };
            out.push(format!("{hostname}. IN {kind} {ip}"));
        } else if let Some(name) = &i.hostname {
            out.push(format!("{hostname}. IN CNAME {name}."));
        }
    }
    let mut domains: Vec<String> = users
        .iter()
        .flat_map(|u| u.allowed_senders.iter())
        .filter_map(|s| s.rsplit_once('@').map(|(_, d)| d.to_lowercase()))
        .filter(|d| !d.is_empty())
        .collect();
    domains.sort();
    domains.dedup();
    for d in domains {
        out.push(format!("{d}. IN TXT \"v=spf1 ip4:<cluster egress address> ~all\" (add the egress addresses mail leaves from)"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus};

    #[test]
    fn dns_records_name_the_address_and_sender_domains() {
        let svc = Service {
            status: Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus {
                    ingress: Some(vec![LoadBalancerIngress {
                        ip: Some("203.0.113.5".into()),
                        ..Default::default()
                    }]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let users: Vec<postern_api::UserSpec> = serde_json::from_value(serde_json::json!([
            {"name": "a", "allowedSenders": ["@Example.com", "x@example.com"]},
            {"name": "b", "allowedSenders": ["*", "y@other.example"]}
        ]))
        .unwrap();
        let r = dns_records("mail.example.com", &svc, &users);
        assert_eq!(r[0], "mail.example.com. IN A 203.0.113.5");
        assert_eq!(r.len(), 3);
        assert!(r[1].starts_with("example.com. IN TXT \"v=spf1"));
        assert!(r[2].starts_with("other.example. IN TXT"));
    }
}
