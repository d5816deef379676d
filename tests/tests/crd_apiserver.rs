//! The MailRelay CRD on a real Kubernetes API server (kube-apiserver and etcd built from
//! the Go module proxy, see `postern_tests::kube`): it installs, the API server fills in
//! its defaults, `kubectl explain` shows its descriptions, `kubectl get` its printer
//! columns, and invalid specs are rejected by the API server itself with the messages of
//! our CEL rules and schema bounds. Also: the CRDs of cert-manager and the Prometheus
//! operator, which the operator tests need, install and become Established, and
//! kube-controller-manager does its part (garbage collection, namespace deletion,
//! Deployments).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::core::ApiResource;
use kube::runtime::wait::{await_condition, conditions};
use postern_api::{MailRelay, RelayMode};
use postern_tests::kube::{TestCluster, kubernetes_version, third_party_crds};
use postern_tests::repo_file;
use postern_tests::wait::{eventually, eventually_async};
use serde_json::json;

const NS: &str = "default";

async fn wait_established(client: &kube::Client, name: &str) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(crds, name, conditions::is_crd_established()),
    )
    .await
    .unwrap_or_else(|_| panic!("CRD {name} not Established within 60 s"))
    .unwrap();
}

fn relay(name: &str, spec: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "postern.dev/v1alpha1",
        "kind": "MailRelay",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .unwrap()
}

/// A cluster with the committed, generated MailRelay CRD applied server-side and
/// Established: shared by the CRD tests of this binary.
fn cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let started = Instant::now();
        let cluster = TestCluster::start().unwrap();
        eprintln!("cluster ready in {:?}", started.elapsed());
        let crd_file = repo_file("crds/mailrelays.postern.dev.yaml");
        let applied = cluster.apply_files(&[&crd_file]).unwrap();
        assert!(applied.contains("mailrelays.postern.dev"), "{applied}");
        cluster
            .wait_crds_established(&["mailrelays.postern.dev"], Duration::from_secs(60))
            .unwrap();
        // Discovery of a new CRD can lag a moment behind Established.
        eventually("mailrelays to be served", Duration::from_secs(30), || {
            cluster
                .kubectl(&["get", "mailrelays"])
                .is_ok_and(|out| out.status.success())
        });
        cluster
    })
}

/// The dynamic API of MailRelays in [`NS`].
async fn relays() -> Api<DynamicObject> {
    let client = cluster().client().await.unwrap();
    Api::namespaced_with(client, NS, &ApiResource::erase::<MailRelay>(&()))
}

/// Creates `relay`, retrying while discovery of the new CRD lags behind Established.
async fn create(dynamic: &Api<DynamicObject>, relay: &DynamicObject) -> DynamicObject {
    for _ in 0..50 {
        match dynamic.create(&PostParams::default(), relay).await {
            Ok(obj) => return obj,
            Err(kube::Error::Api(s)) if s.code == 404 => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("creating a MailRelay: {e}"),
        }
    }
    panic!("the mailrelays resource never became servable");
}

#[test]
fn api_server_is_the_release_the_binaries_were_built_from() {
    let cluster = cluster();
    let version: serde_json::Value =
        serde_json::from_str(&cluster.kubectl_ok(&["version", "-o", "json"]).unwrap()).unwrap();
    let expected = kubernetes_version().unwrap();
    assert_eq!(version["serverVersion"]["gitVersion"], expected.as_str());
    assert_eq!(version["clientVersion"]["gitVersion"], expected.as_str());
}

/// A minimal relay: the API server fills in the defaults.
#[tokio::test(flavor = "multi_thread")]
async fn minimal_relay_gets_the_defaults() {
    let dynamic = relays().await;
    let typed: Api<MailRelay> = Api::namespaced(dynamic.clone().into_client(), NS);
    let created = create(&dynamic, &relay("minimal", json!({}))).await;
    assert_eq!(created.data["spec"]["replicas"], 2, "{:#}", created.data);
    assert_eq!(created.data["spec"]["queue"]["persistence"], true);
    assert_eq!(created.data["spec"]["queue"]["size"], "1Gi");
    assert_eq!(created.data["spec"]["queue"]["maxLifetime"], "5d");
    assert_eq!(created.data["spec"]["relay"]["mode"], "mx");
    let back = dynamic.get("minimal").await.unwrap();
    assert_eq!(back.data["spec"], created.data["spec"]);
    let typed_back = typed.get("minimal").await.unwrap();
    assert_eq!(typed_back.spec.replicas, 2);
    assert!(typed_back.spec.queue.persistence);
}

/// A valid relay through the Rust types (smarthost mode with its smarthost).
#[tokio::test(flavor = "multi_thread")]
async fn valid_relay_through_the_rust_types() {
    let client = relays().await.into_client();
    let typed: Api<MailRelay> = Api::namespaced(client, NS);
    let pp = PostParams::default();
    let mut spec: postern_api::MailRelaySpec = serde_json::from_value(json!({
        "relay": { "mode": "smarthost", "smarthost": { "host": "smtp.example.net" } },
        "trustedNetworks": ["10.0.0.0/8", "fd00::/8"],
        "users": [{ "name": "app", "allowedSenders": ["app@example.com", "@example.org"] }],
    }))
    .unwrap();
    spec.replicas = 3;
    let typed_created = typed
        .create(&pp, &MailRelay::new("typed", spec))
        .await
        .unwrap();
    assert_eq!(typed_created.spec.relay.mode, RelayMode::Smarthost);
    assert_eq!(
        typed_created.spec.relay.smarthost.as_ref().map(|s| s.port),
        Some(587)
    );
}

/// Invalid specs are refused by the API server with our messages, through the API and
/// through kubectl.
#[tokio::test(flavor = "multi_thread")]
async fn invalid_specs_are_refused_with_our_messages() {
    let cluster = cluster();
    let dynamic = relays().await;
    let pp = PostParams::default();
    let invalid = [
        (
            "no-smarthost",
            json!({ "relay": { "mode": "smarthost" } }),
            "relay.smarthost is required when relay.mode is smarthost",
        ),
        (
            "two-tls-sources",
            json!({ "tls": { "secretName": "mail-tls", "selfSigned": true } }),
            "tls: set only one of issuerRef, secretName, selfSigned",
        ),
        (
            "bad-network",
            json!({ "trustedNetworks": ["not-a-cidr"] }),
            "every trustedNetworks entry must be a CIDR",
        ),
        (
            "bad-sender",
            json!({ "users": [{ "name": "app", "allowedSenders": ["bad"] }] }),
            "each allowedSenders entry must be an address, @domain or *",
        ),
        (
            "negative-replicas",
            json!({ "replicas": -1 }),
            "should be greater than or equal to 0",
        ),
    ];
    for (name, spec, message) in invalid {
        match dynamic.create(&pp, &relay(name, spec.clone())).await {
            Ok(_) => panic!("{name}: the API server accepted {spec}"),
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 422, "{name}: {s:?}");
                assert!(
                    s.message.contains(message),
                    "{name}: expected {message:?} in {:?}",
                    s.message
                );
                if name == "negative-replicas" {
                    assert!(s.message.contains("spec.replicas"), "{}", s.message);
                }
            }
            Err(e) => panic!("{name}: {e}"),
        }
        let out = cluster.kubectl(&["get", "mailrelay", name]).unwrap();
        assert!(!out.status.success(), "{name} exists");
    }
    // The same rejection through kubectl, as a user sees it.
    let out = cluster
        .kubectl_with_stdin(
            &["apply", "-f", "-"],
            Some(
                b"apiVersion: postern.dev/v1alpha1\nkind: MailRelay\nmetadata:\n  name: cli\n\
                  spec:\n  relay:\n    mode: smarthost\n",
            ),
        )
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("relay.smarthost is required when relay.mode is smarthost"),
        "{stderr}"
    );
}

/// kubectl explain shows our descriptions (the published OpenAPI can lag a moment).
#[tokio::test(flavor = "multi_thread")]
async fn kubectl_explain_shows_the_descriptions() {
    let cluster = cluster();
    let mut explained = String::new();
    for _ in 0..50 {
        let out = cluster
            .kubectl(&["explain", "mailrelay.spec.relay"])
            .unwrap();
        explained = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && explained.contains("smarthost") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for text in [
        "How mail leaves: DNS MX routing or a smarthost.",
        "mx or smarthost.",
        "The smarthost, for mode smarthost.",
        "Recipient domains that must get TLS",
    ] {
        assert!(explained.contains(text), "{text:?} not in:\n{explained}");
    }
}

/// The printer columns, the short name and the category.
#[tokio::test(flavor = "multi_thread")]
async fn kubectl_get_shows_the_printer_columns() {
    let cluster = cluster();
    let dynamic = relays().await;
    create(&dynamic, &relay("listed", json!({}))).await;
    let table = cluster.kubectl_ok(&["get", "mailrelays"]).unwrap();
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "REPLICAS", "ENDPOINT", "AGE"],
        "{table}"
    );
    assert!(table.lines().any(|l| l.starts_with("listed ")), "{table}");
    // The short name and the category work too.
    assert!(cluster.kubectl_ok(&["get", "mr", "listed"]).is_ok());
    assert!(
        cluster
            .kubectl_ok(&["get", "mail"])
            .unwrap()
            .contains("listed")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn third_party_crds_and_controller_manager() {
    let started = Instant::now();
    let cluster = TestCluster::start_with_controller_manager().unwrap();
    eprintln!("cluster ready in {:?}", started.elapsed());
    let client = cluster.client().await.unwrap();

    // cert-manager's and the Prometheus operator's CRDs, from their Go modules.
    let cert_manager = third_party_crds("cert-manager").unwrap();
    let prometheus_operator = third_party_crds("prometheus-operator").unwrap();
    let applied = cluster
        .apply_files(&[&cert_manager, &prometheus_operator])
        .unwrap();
    let names: Vec<&str> = applied
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|n| n.strip_prefix("customresourcedefinition.apiextensions.k8s.io/"))
        .collect();
    for expected in [
        "certificates.cert-manager.io",
        "issuers.cert-manager.io",
        "clusterissuers.cert-manager.io",
        "servicemonitors.monitoring.coreos.com",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} not applied: {applied}"
        );
    }
    for name in &names {
        wait_established(&client, name).await;
    }

    // kube-controller-manager: garbage collection of owned objects.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({ "metadata": { "name": "gc-check" } })).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "gc-check");
    let owner: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": "owner" } })).unwrap();
    let owner = config_maps
        .create(&PostParams::default(), &owner)
        .await
        .unwrap();
    let dependent: ConfigMap = serde_json::from_value(json!({
        "metadata": {
            "name": "dependent",
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                "uid": owner.metadata.uid.clone().unwrap(),
            }],
        },
    }))
    .unwrap();
    config_maps
        .create(&PostParams::default(), &dependent)
        .await
        .unwrap();
    config_maps
        .delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    eventually_async(
        "the garbage collector deletes the dependent",
        Duration::from_secs(60),
        || async { config_maps.get_opt("dependent").await.unwrap().is_none() },
    )
    .await;

    // The deployment controller: a Deployment gets a ReplicaSet and a status (no nodes:
    // its pods are never scheduled).
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "gc-check");
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": "example.invalid/web:1" }] },
            },
        },
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    eventually_async(
        "the Deployment gets a status",
        Duration::from_secs(60),
        || async {
            let d = deployments.get("web").await.unwrap();
            d.status
                .and_then(|s| s.observed_generation)
                .is_some_and(|g| g >= 1)
        },
    )
    .await;

    // The namespace controller: a deleted namespace goes away with its contents.
    namespaces
        .delete("gc-check", &DeleteParams::default())
        .await
        .unwrap();
    eventually_async(
        "the namespace finishes deleting",
        Duration::from_secs(120),
        || async { namespaces.get_opt("gc-check").await.unwrap().is_none() },
    )
    .await;

    // helm, built alongside, talks to the cluster.
    let out = cluster.helm(&["list", "--all-namespaces"]).unwrap();
    assert!(
        out.status.success(),
        "helm list: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    eprintln!("done in {:?}", started.elapsed());
}
