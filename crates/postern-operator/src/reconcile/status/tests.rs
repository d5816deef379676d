use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::resources::testing;

fn t(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).unwrap())
}

/// A relay at generation 3 wanting two pods, with one user of its own domain.
fn relay() -> MailRelay {
    let mut r = testing::relay(serde_json::json!({
        "replicas": 2,
        "users": [{"name": "app", "allowedSenders": ["@example.com"]}]
    }));
    r.metadata.generation = Some(3);
    r
}

fn condition<'a>(status: &'a MailRelayStatus, type_: &str) -> &'a Condition {
    status.conditions.iter().find(|c| c.type_ == type_).unwrap()
}

/// Asserts condition `type_` has this status, reason and message.
fn assert_condition(status: &MailRelayStatus, type_: &str, expected: (&str, &str, &str)) {
    let c = condition(status, type_);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
        expected,
        "{type_}"
    );
}

struct Fixture {
    ready_replicas: i32,
    problems: Vec<String>,
    generated: Vec<String>,
    expiry: Option<OffsetDateTime>,
    service: Service,
}

impl Fixture {
    fn ready() -> Self {
        Fixture {
            ready_replicas: 2,
            problems: Vec::new(),
            generated: vec!["mail-user-app".into()],
            expiry: Some(OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()),
            service: Service::default(),
        }
    }

    fn compute(&self, relay: &MailRelay, now: Time) -> MailRelayStatus {
        let observed = Observed {
            ready_replicas: self.ready_replicas,
            certificate_expiry: self.expiry,
            generated_password_secrets: &self.generated,
            problems: &self.problems,
            hostname: "mail.example.com",
            client_service: &self.service,
        };
        compute(relay, "apps", &observed, now)
    }
}

#[test]
fn all_pods_ready_and_no_problem_is_ready() {
    let status = Fixture::ready().compute(&relay(), t(100));
    assert_condition(
        &status,
        READY,
        ("True", "Available", "2/2 gateway pods ready"),
    );
    assert_condition(
        &status,
        PROGRESSING,
        (
            "False",
            "Complete",
            "all pods run the current configuration",
        ),
    );
    assert_condition(&status, DEGRADED, ("False", "AsExpected", ""));
    assert!(
        status
            .conditions
            .iter()
            .all(|c| { c.observed_generation == Some(3) && c.last_transition_time == t(100) })
    );
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(status.ready_replicas, Some(2));
    assert_eq!(
        status.endpoint.as_deref(),
        Some("mail.apps.svc.cluster.local (submission 587, submissions 465, smtp 25)")
    );
    assert_eq!(
        status.certificate_expiry.as_deref(),
        Some("2027-01-15T08:00:00Z")
    );
    assert_eq!(status.generated_password_secrets, ["mail-user-app"]);
    assert_eq!(status.dns_records.len(), 1);
    assert!(status.dns_records[0].starts_with("example.com. IN TXT"));
    assert_eq!(
        next_action(&status),
        Action::requeue(Duration::from_secs(600))
    );
}

#[test]
fn pods_still_coming_up_is_progressing() {
    let status = Fixture {
        ready_replicas: 1,
        ..Fixture::ready()
    }
    .compute(&relay(), t(100));
    assert_condition(
        &status,
        READY,
        ("False", "PodsNotReady", "1/2 gateway pods ready"),
    );
    assert_condition(
        &status,
        PROGRESSING,
        ("True", "RollingOut", "waiting for 1 pods"),
    );
    assert_condition(&status, DEGRADED, ("False", "AsExpected", ""));
    assert_eq!(status.ready_replicas, Some(1));
    assert_eq!(
        next_action(&status),
        Action::requeue(Duration::from_secs(15))
    );
}

#[test]
fn missing_optional_crds_degrade_a_relay_whose_pods_are_ready() {
    let status = Fixture {
        problems: vec![
            "tls.issuerRef is set but cert-manager is not installed (no Certificate CRD)".into(),
            "metrics.serviceMonitor is on but the Prometheus operator is not installed".into(),
        ],
        expiry: None,
        ..Fixture::ready()
    }
    .compute(&relay(), t(100));
    // The pods are fine, so the reason stays Available, but the relay is not Ready.
    assert_condition(
        &status,
        READY,
        ("False", "Available", "2/2 gateway pods ready"),
    );
    assert_condition(
        &status,
        PROGRESSING,
        (
            "False",
            "Complete",
            "all pods run the current configuration",
        ),
    );
    assert_condition(
        &status,
        DEGRADED,
        (
            "True",
            "ConfigurationProblem",
            "tls.issuerRef is set but cert-manager is not installed (no Certificate CRD); \
             metrics.serviceMonitor is on but the Prometheus operator is not installed",
        ),
    );
    assert_eq!(status.certificate_expiry, None);
    assert_eq!(
        next_action(&status),
        Action::requeue(Duration::from_secs(15))
    );
}

#[test]
fn zero_replicas_is_never_available() {
    let mut r = relay();
    r.spec.replicas = 0;
    let status = Fixture {
        ready_replicas: 0,
        ..Fixture::ready()
    }
    .compute(&r, t(100));
    assert_condition(
        &status,
        READY,
        ("False", "PodsNotReady", "0/0 gateway pods ready"),
    );
    assert_condition(
        &status,
        PROGRESSING,
        ("True", "RollingOut", "waiting for 0 pods"),
    );
}

#[test]
fn transition_times_move_only_when_a_condition_flips() {
    let mut r = relay();
    r.status = Some(Fixture::ready().compute(&r, t(100)));
    r.metadata.generation = Some(4);
    let status = Fixture {
        ready_replicas: 1,
        ..Fixture::ready()
    }
    .compute(&r, t(200));
    assert_eq!(condition(&status, READY).last_transition_time, t(200));
    assert_eq!(condition(&status, PROGRESSING).last_transition_time, t(200));
    assert_eq!(condition(&status, DEGRADED).last_transition_time, t(100));
    assert_eq!(condition(&status, DEGRADED).observed_generation, Some(4));
    assert_eq!(status.observed_generation, Some(4));
    assert_eq!(status.conditions.len(), 3);
}

#[test]
fn status_fields_reflect_this_reconcile_only() {
    let mut r = relay();
    r.status = Some(Fixture::ready().compute(&r, t(100)));
    let status = Fixture {
        generated: Vec::new(),
        expiry: None,
        ..Fixture::ready()
    }
    .compute(&r, t(200));
    assert!(status.generated_password_secrets.is_empty());
    assert_eq!(status.certificate_expiry, None);
}

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
