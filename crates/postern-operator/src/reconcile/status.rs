//! The relay's status, computed without API calls from what the steps observed
//! (ready pods, certificate, generated Secrets, problems, the client Service), then
//! patched onto the status subresource; and when to look again.

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use postern_api::conditions::{self, DEGRADED, PROGRESSING, READY};
use postern_api::{MailRelay, MailRelayStatus, UserSpec};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Error, Target};
use crate::FIELD_MANAGER;
use crate::config;

/// What the steps of one reconcile observed, all the status is made from besides
/// the relay itself.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// Gateway pods ready, as the workload reports.
    pub ready_replicas: i32,
    /// When the serving certificate expires, when the operator made it.
    pub certificate_expiry: Option<OffsetDateTime>,
    /// Secrets holding passwords the operator generated.
    pub generated_password_secrets: &'a [String],
    /// What keeps the relay from working as its spec says (Degraded reasons), in
    /// the order the steps found them.
    pub problems: &'a [String],
    /// The name the gateway greets with.
    pub hostname: &'a str,
    /// The client Service as last returned by the API server.
    pub client_service: &'a Service,
}

/// The status for `relay` in `namespace`, given what was observed; conditions keep
/// their transition time unless their status changes.
pub fn compute(
    relay: &MailRelay,
    namespace: &str,
    observed: &Observed<'_>,
    now: Time,
) -> MailRelayStatus {
    let spec = &relay.spec;
    let generation = relay.metadata.generation;
    let mut status = relay.status.clone().unwrap_or_default();
    let ready = observed.ready_replicas;
    let desired = spec.replicas;
    let degraded = observed.problems;
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
        now.clone(),
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
        now.clone(),
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
        now,
    );
    let p = &spec.service.ports;
    let host = config::service_host(relay, namespace);
    status.endpoint = Some(format!(
        "{host} (submission {}, submissions {}, smtp {})",
        p.submission, p.submissions, p.smtp
    ));
    status.observed_generation = generation;
    status.ready_replicas = Some(ready);
    status.certificate_expiry = observed
        .certificate_expiry
        .and_then(|t| t.format(&Rfc3339).ok());
    status.generated_password_secrets = observed.generated_password_secrets.to_vec();
    status.dns_records = dns_records(observed.hostname, observed.client_service, &spec.users);
    status
}

/// When to reconcile again: in ten minutes when the relay is Ready, in fifteen
/// seconds while it is not.
pub fn next_action(status: &MailRelayStatus) -> Action {
    if conditions::is_true(&status.conditions, READY) {
        Action::requeue(Duration::from_secs(600))
    } else {
        Action::requeue(Duration::from_secs(15))
    }
}

/// Server-side applies `status` to the relay's status subresource.
pub async fn patch(target: &Target<'_>, status: &MailRelayStatus) -> Result<(), Error> {
    let api: Api<MailRelay> = target.api();
    let body = serde_json::json!({
        "apiVersion": format!("{}/{}", postern_api::GROUP, postern_api::VERSION),
        "kind": "MailRelay",
        "status": status,
    });
    api.patch_status(
        &target.names.relay,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// What to publish in DNS: the gateway's name for its external address (when the
/// Service has one), and an SPF record for every sender domain the users may use, so
/// receivers accept mail relayed from the cluster's egress addresses.
pub fn dns_records(hostname: &str, service: &Service, users: &[UserSpec]) -> Vec<String> {
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
mod tests;
