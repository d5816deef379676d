//! The operator binary against a real kube-apiserver, etcd and kube-controller-manager:
//! MailRelays of each flavour become their children with owner references and
//! honest status; a spec change rolls the configuration; cert-manager and Prometheus
//! operator CRDs switch on a Certificate and a ServiceMonitor; deleting a relay
//! garbage-collects its children.

use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Client, Resource};
use postern_api::MailRelay;
use postern_config::GatewayConfig;
use postern_tests::kube::{TestCluster, create_relay, nudge, third_party_crds};
use postern_tests::process::{ChildGuard, SpawnGuarded};
use postern_tests::repo_file;
use postern_tests::wait::eventually_async;
use serde_json::json;

const NS: &str = "mail";

fn owned_by(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    relay: &str,
) -> bool {
    meta.owner_references.as_ref().is_some_and(|o| {
        o.iter()
            .any(|r| r.kind == "MailRelay" && r.name == relay && r.controller == Some(true))
    })
}

fn secret_text(s: &Secret, key: &str) -> String {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .unwrap_or_default()
}

fn condition<'a>(
    r: &'a MailRelay,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    r.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// `cluster` with the MailRelay CRD applied and Established, and `namespaces` created.
fn with_crd(cluster: TestCluster, namespaces: &[&str]) -> TestCluster {
    let crd = repo_file("crds/mailrelays.postern.dev.yaml");
    cluster.apply_files(&[&crd]).unwrap();
    cluster
        .wait_crds_established(&["mailrelays.postern.dev"], Duration::from_secs(60))
        .unwrap();
    for ns in namespaces {
        cluster.kubectl_ok(&["create", "namespace", ns]).unwrap();
    }
    cluster
}

/// A cluster (with kube-controller-manager, which garbage-collects) that has the
/// MailRelay CRD, the namespace [`NS`] with the Secret `app2-pw`, and the operator
/// running: shared by the reconcile tests of this binary, each with relays of its own.
struct Reconciling {
    cluster: TestCluster,
    _operator: ChildGuard,
}

fn reconciling() -> &'static Reconciling {
    static RECONCILING: OnceLock<Reconciling> = OnceLock::new();
    RECONCILING.get_or_init(|| {
        let cluster = with_crd(TestCluster::start_with_controller_manager().unwrap(), &[NS]);
        cluster
            .kubectl_ok(&[
                "create",
                "secret",
                "generic",
                "app2-pw",
                "-n",
                NS,
                "--from-literal=password=s3cret-pw",
            ])
            .unwrap();
        let operator = cluster
            .operator("postern:test")
            .env("RUST_LOG", "info,postern_operator=debug")
            .spawn_guarded()
            .expect("starting postern-operator");
        Reconciling {
            cluster,
            _operator: operator,
        }
    })
}

/// The shared cluster, a client of this test's runtime, and its APIs in [`NS`].
struct Apis {
    cluster: &'static TestCluster,
    client: Client,
    relays: Api<MailRelay>,
    configmaps: Api<ConfigMap>,
    secrets: Api<Secret>,
    services: Api<Service>,
    statefulsets: Api<StatefulSet>,
    deployments: Api<Deployment>,
    pdbs: Api<PodDisruptionBudget>,
}

async fn apis() -> Apis {
    let cluster = &reconciling().cluster;
    let client = cluster.client().await.unwrap();
    let api = || client.clone();
    Apis {
        cluster,
        relays: Api::namespaced(api(), NS),
        configmaps: Api::namespaced(api(), NS),
        secrets: Api::namespaced(api(), NS),
        services: Api::namespaced(api(), NS),
        statefulsets: Api::namespaced(api(), NS),
        deployments: Api::namespaced(api(), NS),
        pdbs: Api::namespaced(api(), NS),
        client,
    }
}

/// Persistent queue, self-signed TLS, a generated and a given password.
fn persistent_spec() -> serde_json::Value {
    json!({
        "users": [
            {"name": "app", "allowedSenders": ["@example.com"]},
            {"name": "app2", "allowedSenders": ["a@example.org"], "passwordSecretRef": {"name": "app2-pw", "key": "password"}}
        ],
        "trustedNetworks": ["10.0.0.0/8"]
    })
}

/// Creates relay `name` with [`persistent_spec`] and waits for its StatefulSet.
async fn persistent_relay(client: &Client, name: &str) -> StatefulSet {
    create_relay(NS, client, name, persistent_spec()).await;
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    eventually_async(
        &format!("StatefulSet {name}"),
        Duration::from_secs(60),
        || async { statefulsets.get_opt(name).await.ok().flatten() },
    )
    .await
}

fn config_hash(sts: &StatefulSet) -> Option<String> {
    sts.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get("postern.dev/config-hash")
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_relay_becomes_its_children_with_owner_references() {
    let a = apis().await;
    let sts = persistent_relay(&a.client, "relay1").await;
    assert!(owned_by(&sts.metadata, "relay1"));
    let sts_spec = sts.spec.clone().unwrap();
    assert_eq!(sts_spec.replicas, Some(2));
    assert_eq!(
        sts_spec.volume_claim_templates.as_ref().unwrap()[0]
            .metadata
            .name
            .as_deref(),
        Some("spool")
    );
    let pod = sts_spec.template.spec.clone().unwrap();
    assert_eq!(pod.containers[0].image.as_deref(), Some("postern:test"));
    assert_eq!(
        pod.containers[0]
            .security_context
            .as_ref()
            .unwrap()
            .read_only_root_filesystem,
        Some(true)
    );
    assert!(config_hash(&sts).is_some());

    let cm = a.configmaps.get("relay1-config").await.unwrap();
    assert!(owned_by(&cm.metadata, "relay1"));
    let toml = cm.data.unwrap()["gateway.toml"].clone();
    let config: GatewayConfig = toml::from_str(&toml).unwrap();
    config.validate().unwrap();
    assert_eq!(config.hostname, "relay1.mail.svc.cluster.local");
    assert_eq!(
        config.relay.trusted_networks,
        vec!["10.0.0.0/8".parse().unwrap()]
    );

    let creds = a.secrets.get("relay1-credentials").await.unwrap();
    assert!(owned_by(&creds.metadata, "relay1"));
    let file = secret_text(&creds, "credentials");
    assert!(
        file.contains("\napp:$argon2id$") && file.contains("\napp2:$argon2id$"),
        "{file}"
    );
    assert!(
        !file.contains("s3cret-pw"),
        "only hashes in the credentials file"
    );
    let generated = a.secrets.get("relay1-user-app").await.unwrap();
    assert!(owned_by(&generated.metadata, "relay1"));
    assert_eq!(secret_text(&generated, "password").len(), 20);
    let tls = a.secrets.get("relay1-tls").await.unwrap();
    assert_eq!(tls.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(
        secret_text(&tls, "tls.crt")
            .matches("BEGIN CERTIFICATE")
            .count(),
        2
    );
    assert!(owned_by(
        &a.secrets.get("relay1-ca").await.unwrap().metadata,
        "relay1"
    ));

    let svc = a.services.get("relay1").await.unwrap();
    assert!(owned_by(&svc.metadata, "relay1"));
    let ports: Vec<(i32, String)> = svc
        .spec
        .unwrap()
        .ports
        .unwrap()
        .iter()
        .map(|p| (p.port, format!("{:?}", p.target_port)))
        .collect();
    assert!(
        ports.contains(&(587, "Some(Int(2587))".into())),
        "{ports:?}"
    );
    assert!(ports.contains(&(25, "Some(Int(2525))".into())), "{ports:?}");
    assert_eq!(
        a.services
            .get("relay1-pods")
            .await
            .unwrap()
            .spec
            .unwrap()
            .cluster_ip
            .as_deref(),
        Some("None")
    );
    assert!(owned_by(
        &a.pdbs.get("relay1").await.unwrap().metadata,
        "relay1"
    ));
}

/// No kubelet runs here, so no pod is ever ready: the status says so, and what to
/// publish in DNS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_honest_without_a_kubelet() {
    let a = apis().await;
    persistent_relay(&a.client, "honest").await;
    let r = eventually_async("honest status", Duration::from_secs(60), || async {
        let r = a.relays.get("honest").await.ok()?;
        (r.status.as_ref()?.observed_generation == r.metadata.generation).then_some(r)
    })
    .await;
    let st = r.status.clone().unwrap();
    assert_eq!(condition(&r, "Ready").unwrap().status, "False");
    assert_eq!(condition(&r, "Ready").unwrap().reason, "PodsNotReady");
    assert_eq!(condition(&r, "Progressing").unwrap().status, "True");
    assert_eq!(condition(&r, "Degraded").unwrap().status, "False");
    assert_eq!(st.ready_replicas, Some(0));
    assert!(
        st.endpoint
            .unwrap()
            .starts_with("honest.mail.svc.cluster.local")
    );
    assert_eq!(
        st.generated_password_secrets,
        vec!["honest-user-app".to_owned()]
    );
    assert!(st.certificate_expiry.is_some());
    // What to publish: SPF for the users' sender domains.
    assert!(
        st.dns_records
            .iter()
            .any(|r| r.starts_with("example.com. IN TXT \"v=spf1")),
        "{:?}",
        st.dns_records
    );
    assert!(
        st.dns_records
            .iter()
            .any(|r| r.starts_with("example.org. IN TXT")),
        "{:?}",
        st.dns_records
    );
    let table = a
        .cluster
        .kubectl_ok(&["get", "mailrelays", "-n", NS])
        .unwrap();
    assert!(
        table.contains("honest") && table.contains("False"),
        "{table}"
    );
}

/// A spec change reaches the ConfigMap and rolls the pods (a new config hash); the
/// password hashes stay; events say what changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_change_rolls_the_configuration_and_keeps_the_hashes() {
    let a = apis().await;
    let hash1 = config_hash(&persistent_relay(&a.client, "rolling").await).unwrap();
    let file = secret_text(
        &a.secrets.get("rolling-credentials").await.unwrap(),
        "credentials",
    );
    a.relays
        .patch(
            "rolling",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"limits": {"maxRecipients": 7}}})),
        )
        .await
        .unwrap();
    eventually_async("the new configuration", Duration::from_secs(60), || async {
        let cm = a.configmaps.get("rolling-config").await.ok()?;
        cm.data?
            .get("gateway.toml")?
            .contains("max_recipients = 7")
            .then_some(())
    })
    .await;
    let hash2 = eventually_async("a new config hash", Duration::from_secs(60), || async {
        let sts = a.statefulsets.get("rolling").await.ok()?;
        let h = sts
            .spec?
            .template
            .metadata?
            .annotations?
            .get("postern.dev/config-hash")?
            .clone();
        (h != hash1).then_some(h)
    })
    .await;
    assert_ne!(hash1, hash2);
    // Events say what changed.
    let reasons = || {
        let json: serde_json::Value = serde_json::from_str(
            &a.cluster
                .kubectl_ok(&["get", "events.events.k8s.io", "-n", NS, "-o", "json"])
                .unwrap(),
        )
        .unwrap();
        json["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["regarding"]["name"] == "rolling")
            .map(|e| e["reason"].as_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    };
    eventually_async(
        "Created and ConfigurationChanged events",
        Duration::from_secs(30),
        || async {
            let r = reasons();
            (r.iter().any(|x| x == "Created") && r.iter().any(|x| x == "ConfigurationChanged"))
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        secret_text(
            &a.secrets.get("rolling-credentials").await.unwrap(),
            "credentials"
        ),
        file,
        "password hashes are kept"
    );
}

/// No persistence: a Deployment with an emptyDir spool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_without_persistence_is_a_deployment() {
    let a = apis().await;
    create_relay(
        NS,
        &a.client,
        "relay2",
        json!({"queue": {"persistence": false}, "replicas": 1}),
    )
    .await;
    let dep = eventually_async("Deployment relay2", Duration::from_secs(60), || async {
        a.deployments.get_opt("relay2").await.ok().flatten()
    })
    .await;
    let vols = dep.spec.unwrap().template.spec.unwrap().volumes.unwrap();
    assert!(
        vols.iter()
            .any(|v| v.name == "spool" && v.empty_dir.is_some())
    );
    assert!(a.statefulsets.get_opt("relay2").await.unwrap().is_none());
}

/// A cert-manager issuer and a ServiceMonitor asked for while neither project is
/// installed: Degraded; once their CRDs are installed, the next reconcile creates a
/// Certificate and a ServiceMonitor (and none for a relay that did not ask).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_manager_and_prometheus_operator_crds_switch_on_certificate_and_servicemonitor() {
    let a = apis().await;
    persistent_relay(&a.client, "plain").await;
    let spec3 =
        json!({"tls": {"issuerRef": {"name": "letsencrypt"}}, "metrics": {"serviceMonitor": true}});
    create_relay(NS, &a.client, "relay3", spec3).await;
    let r3 = eventually_async("relay3 degraded", Duration::from_secs(60), || async {
        let r = a.relays.get("relay3").await.ok()?;
        (condition(&r, "Degraded")?.status == "True").then_some(r)
    })
    .await;
    let msg = &condition(&r3, "Degraded").unwrap().message;
    assert!(
        msg.contains("cert-manager") && msg.contains("Prometheus operator"),
        "{msg}"
    );
    // Install both projects' CRDs: the next reconcile creates a Certificate and a ServiceMonitor.
    let mut files = Vec::new();
    for project in ["cert-manager", "prometheus-operator"] {
        for e in std::fs::read_dir(third_party_crds(project).unwrap()).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "yaml") {
                files.push(path);
            }
        }
    }
    let refs: Vec<&std::path::Path> = files.iter().map(|p| p.as_path()).collect();
    a.cluster.apply_files(&refs).unwrap();
    a.cluster
        .wait_crds_established(
            &[
                "certificates.cert-manager.io",
                "servicemonitors.monitoring.coreos.com",
            ],
            Duration::from_secs(60),
        )
        .unwrap();
    // Nudge a reconcile now rather than at the next requeue.
    nudge(&a.relays, "relay3").await;
    let certs: Api<DynamicObject> = Api::namespaced_with(
        a.client.clone(),
        NS,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
            "certificates",
        ),
    );
    let cert = eventually_async(
        "Certificate relay3-tls",
        Duration::from_secs(90),
        || async { certs.get_opt("relay3-tls").await.ok().flatten() },
    )
    .await;
    assert_eq!(cert.data["spec"]["issuerRef"]["name"], "letsencrypt");
    assert_eq!(cert.data["spec"]["secretName"], "relay3-tls");
    assert!(owned_by(&cert.metadata, "relay3"));
    let monitors: Api<DynamicObject> = Api::namespaced_with(
        a.client.clone(),
        NS,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
            "servicemonitors",
        ),
    );
    let sm = eventually_async("ServiceMonitor relay3", Duration::from_secs(90), || async {
        monitors.get_opt("relay3").await.ok().flatten()
    })
    .await;
    assert_eq!(sm.data["spec"]["endpoints"][0]["port"], "metrics");
    // "plain" did not ask for a ServiceMonitor.
    assert!(monitors.get_opt("plain").await.unwrap().is_none());
}

/// How many of relay `name`'s ConfigMap, StatefulSet, Service and credentials Secret
/// exist; None when the API server did not answer.
async fn children(a: &Apis, name: &str) -> Option<usize> {
    Some(
        [
            a.configmaps
                .get_opt(&format!("{name}-config"))
                .await
                .ok()?
                .is_some(),
            a.statefulsets.get_opt(name).await.ok()?.is_some(),
            a.services.get_opt(name).await.ok()?.is_some(),
            a.secrets
                .get_opt(&format!("{name}-credentials"))
                .await
                .ok()?
                .is_some(),
        ]
        .into_iter()
        .filter(|&e| e)
        .count(),
    )
}

/// Deleting a relay deletes its children (garbage collection by owner references).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_relay_garbage_collects_its_children() {
    let a = apis().await;
    persistent_relay(&a.client, "doomed").await;
    eventually_async("doomed's children", Duration::from_secs(60), || async {
        (children(&a, "doomed").await? == 4).then_some(())
    })
    .await;
    a.relays
        .delete("doomed", &Default::default())
        .await
        .unwrap();
    eventually_async(
        "doomed's children to go",
        Duration::from_secs(90),
        || async { (children(&a, "doomed").await? == 0).then_some(()) },
    )
    .await;
    let _ = MailRelay::kind(&());
}

/// Two replicas with leader election: only the Lease holder reconciles; when it dies,
/// the other takes over after the lease expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_hands_over() {
    use k8s_openapi::api::coordination::v1::Lease;
    let cluster = with_crd(TestCluster::start().unwrap(), &[NS, "postern-system"]);
    let client = cluster.client().await.unwrap();
    let start = |name: &str| {
        cluster
            .operator("postern:test")
            .env("POD_NAMESPACE", "postern-system")
            .env("POD_NAME", name)
            .args(["--lease-duration", "4s"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn_guarded()
            .expect("starting postern-operator")
    };
    let leases: Api<Lease> = Api::namespaced(client.clone(), "postern-system");
    let holder = || async {
        leases
            .get_opt("postern-operator")
            .await
            .ok()
            .flatten()?
            .spec?
            .holder_identity
    };
    let a = start("operator-a");
    let first = eventually_async("a leader", Duration::from_secs(30), || async {
        holder().await
    })
    .await;
    assert_eq!(first, "operator-a");
    let _b = start("operator-b");
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    create_relay(NS, &client, "one", json!({})).await;
    eventually_async(
        "the leader to reconcile",
        Duration::from_secs(60),
        || async { statefulsets.get_opt("one").await.ok().flatten() },
    )
    .await;
    assert_eq!(
        holder().await.as_deref(),
        Some("operator-a"),
        "the follower must not take over a live lease"
    );
    drop(a);
    let second = eventually_async(
        "the follower to take over",
        Duration::from_secs(60),
        || async { holder().await.filter(|h| h == "operator-b") },
    )
    .await;
    assert_eq!(second, "operator-b");
    create_relay(NS, &client, "two", json!({})).await;
    eventually_async(
        "the new leader to reconcile",
        Duration::from_secs(60),
        || async { statefulsets.get_opt("two").await.ok().flatten() },
    )
    .await;
}
