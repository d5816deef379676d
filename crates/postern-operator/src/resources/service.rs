//! The client Service (25/587/465 → the gateway's unprivileged ports, plus metrics)
//! and the headless Service that gives StatefulSet pods stable names.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec as K8sServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use postern_api::{MailRelay, ServiceType};

use super::meta;
use crate::config::ports;
use crate::names::{Names, selector};

fn port(name: &str, port: i32, target: u16) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::Int(i32::from(target))),
        protocol: Some("TCP".into()),
        app_protocol: Some(if name == "metrics" { "http" } else { "smtp" }.into()),
        ..Default::default()
    }
}

fn ports_of(relay: &MailRelay) -> Vec<ServicePort> {
    let p = &relay.spec.service.ports;
    let mut v = Vec::new();
    if p.smtp != 0 {
        v.push(port("smtp", p.smtp, ports::RELAY));
    }
    if p.submission != 0 {
        v.push(port("submission", p.submission, ports::SUBMISSION));
    }
    if p.submissions != 0 {
        v.push(port("submissions", p.submissions, ports::SUBMISSIONS));
    }
    v.push(port("metrics", i32::from(ports::METRICS), ports::METRICS));
    v
}

/// The Service clients use.
pub fn client(relay: &MailRelay) -> Service {
    let name = super::relay_name(relay);
    let n = Names::new(&name);
    let mut metadata = meta(relay, n.service());
    if !relay.spec.service.annotations.is_empty() {
        metadata.annotations = Some(relay.spec.service.annotations.clone());
    }
    let type_ = match relay.spec.service.type_ {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    Service {
        metadata,
        spec: Some(K8sServiceSpec {
            type_: Some(type_.into()),
            selector: Some(selector(&name)),
            ports: Some(ports_of(relay)),
            // Keep the client IP visible to the gateway (relay policy, limits).
            external_traffic_policy: (type_ != "ClusterIP").then(|| "Local".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The headless Service of the StatefulSet.
pub fn headless(relay: &MailRelay) -> Service {
    let name = super::relay_name(relay);
    let n = Names::new(&name);
    Service {
        metadata: meta(relay, n.headless()),
        spec: Some(K8sServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(selector(&name)),
            ports: Some(ports_of(relay)),
            publish_not_ready_addresses: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_map_to_unprivileged_targets() {
        let r = super::super::testing::relay(
            serde_json::json!({"service": {"type": "LoadBalancer", "ports": {"smtp": 0}, "annotations": {"a": "b"}}}),
        );
        let s = client(&r);
        let spec = s.spec.unwrap();
        let ports = spec.ports.unwrap();
        let names: Vec<_> = ports
            .iter()
            .map(|p| (p.name.clone().unwrap(), p.port, p.target_port.clone()))
            .collect();
        assert_eq!(
            names[0],
            ("submission".into(), 587, Some(IntOrString::Int(2587)))
        );
        assert_eq!(
            names[1],
            ("submissions".into(), 465, Some(IntOrString::Int(2465)))
        );
        assert_eq!(names.len(), 3, "smtp left out, metrics kept");
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
        assert_eq!(s.metadata.annotations.unwrap()["a"], "b");
        assert_eq!(
            headless(&r).spec.unwrap().cluster_ip.as_deref(),
            Some("None")
        );
    }
}
