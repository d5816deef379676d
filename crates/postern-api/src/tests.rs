use super::*;

fn schema() -> serde_json::Value {
    let crd = serde_json::to_value(MailRelay::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Every property has a description, so `kubectl explain` is useful.
#[test]
fn every_field_is_described() {
    fn walk(path: &str, v: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
            for (name, prop) in props {
                let p = format!("{path}.{name}");
                // Kubernetes' own types (resources, affinity, tolerations,
                // conditions) describe themselves; ours must too.
                if prop.get("description").is_none()
                    && !["apiVersion", "kind", "metadata"].contains(&name.as_str())
                {
                    missing.push(p.clone());
                }
                walk(&p, prop, missing);
            }
        }
        if let Some(items) = v.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let mut missing = Vec::new();
    walk("", &schema(), &mut missing);
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:?}"
    );
}

#[test]
fn schema_carries_cel_rules_list_maps_and_columns() {
    let crd = serde_json::to_string(&MailRelay::crd()).unwrap();
    for needle in [
        "relay.smarthost is required when relay.mode is smarthost",
        "tls: set only one of issuerRef, secretName, selfSigned",
        "isCIDR(n)",
        "\"x-kubernetes-list-type\":\"map\"",
        "\"x-kubernetes-list-map-keys\":[\"type\"]",
        "\"x-kubernetes-list-map-keys\":[\"name\"]",
        "\"name\":\"Ready\"",
        "\"name\":\"Endpoint\"",
    ] {
        assert!(crd.contains(needle), "CRD lacks {needle}");
    }
    let crd = MailRelay::crd();
    assert_eq!(crd.spec.group, GROUP);
    assert_eq!(crd.spec.versions[0].name, VERSION);
    assert!(
        crd.spec.versions[0]
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
}

#[test]
fn minimal_spec_takes_defaults() {
    let spec: MailRelaySpec = serde_json::from_value(serde_json::json!({})).unwrap();
    assert_eq!(spec.replicas, 2);
    assert!(spec.queue.persistence);
    assert_eq!(spec.service.ports, ServicePorts::default());
    assert_eq!(spec.relay.mode, RelayMode::Mx);
}
