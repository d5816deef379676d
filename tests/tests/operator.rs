//! The operator binary against a real kube-apiserver, etcd and kube-controller-manager:
//! MailRelays of each flavour become their children with owner references and
//! honest status; a spec change rolls the configuration; cert-manager and Prometheus
//! operator CRDs switch on a Certificate and a ServiceMonitor; deleting a relay
//! garbage-collects its children.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::{Client, Resource};
use postern_api::MailRelay;
use postern_config::GatewayConfig;
use postern_tests::gateway::{built_bin, free_port};
use postern_tests::kube::{TestCluster, third_party_crds};
use serde_json::json;

const NS: &str = "mail";

struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_operator(cluster: &TestCluster) -> Operator {
    let child = Command::new(built_bin("postern-operator"))
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .env("RUST_LOG", "info,postern_operator=debug")
        .args(["--gateway-image", "postern:test", "--metrics-address"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting postern-operator");
    Operator(child)
}

/// Polls until `f` gives Some, or fails after `secs`.
async fn eventually<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn create_relay(client: &Client, name: &str, spec: serde_json::Value) {
    let api: Api<MailRelay> = Api::namespaced(client.clone(), NS);
    let relay: MailRelay = serde_json::from_value(json!({
        "apiVersion": "postern.dev/v1alpha1", "kind": "MailRelay",
        "metadata": {"name": name, "namespace": NS}, "spec": spec
    }))
    .unwrap();
    // Discovery of a new CRD can lag a moment behind Established.
    for _ in 0..50 {
        if api.create(&PostParams::default(), &relay).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("could not create MailRelay {name}");
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_reconciles_mailrelays_on_a_real_api_server() {
    let cluster = TestCluster::start_with_controller_manager().unwrap();
    let client = cluster.client().await.unwrap();
    let crd = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crds/mailrelays.postern.dev.yaml");
    cluster.apply_files(&[&crd]).unwrap();
    cluster
        .wait_crds_established(&["mailrelays.postern.dev"], Duration::from_secs(60))
        .unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap(),
        )
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "app2-pw"}, "stringData": {"password": "s3cret-pw"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let _operator = start_operator(&cluster);
    let relays: Api<MailRelay> = Api::namespaced(client.clone(), NS);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), NS);

    // Flavour 1: persistent queue, self-signed TLS, a generated and a given password.
    create_relay(&client, "relay1", json!({
        "users": [
            {"name": "app", "allowedSenders": ["@example.com"]},
            {"name": "app2", "allowedSenders": ["a@example.org"], "passwordSecretRef": {"name": "app2-pw", "key": "password"}}
        ],
        "trustedNetworks": ["10.0.0.0/8"]
    })).await;
    let sts = eventually("StatefulSet relay1", 60, || async {
        statefulsets.get_opt("relay1").await.ok().flatten()
    })
    .await;
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
    let hash1 = sts_spec
        .template
        .metadata
        .clone()
        .unwrap()
        .annotations
        .unwrap()["postern.dev/config-hash"]
        .clone();

    let cm = configmaps.get("relay1-config").await.unwrap();
    assert!(owned_by(&cm.metadata, "relay1"));
    let toml = cm.data.unwrap()["gateway.toml"].clone();
    let config: GatewayConfig = toml::from_str(&toml).unwrap();
    config.validate().unwrap();
    assert_eq!(config.hostname, "relay1.mail.svc.cluster.local");
    assert_eq!(
        config.relay.trusted_networks,
        vec!["10.0.0.0/8".parse().unwrap()]
    );

    let creds = secrets.get("relay1-credentials").await.unwrap();
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
    let generated = secrets.get("relay1-user-app").await.unwrap();
    assert!(owned_by(&generated.metadata, "relay1"));
    assert_eq!(secret_text(&generated, "password").len(), 20);
    let tls = secrets.get("relay1-tls").await.unwrap();
    assert_eq!(tls.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(
        secret_text(&tls, "tls.crt")
            .matches("BEGIN CERTIFICATE")
            .count(),
        2
    );
    assert!(owned_by(
        &secrets.get("relay1-ca").await.unwrap().metadata,
        "relay1"
    ));

    let svc = services.get("relay1").await.unwrap();
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
        services
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
        &pdbs.get("relay1").await.unwrap().metadata,
        "relay1"
    ));

    // Honest status: no kubelet runs here, so no pod is ever ready.
    let r = eventually("relay1 status", 60, || async {
        let r = relays.get("relay1").await.ok()?;
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
            .starts_with("relay1.mail.svc.cluster.local")
    );
    assert_eq!(
        st.generated_password_secrets,
        vec!["relay1-user-app".to_owned()]
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
    let table = cluster
        .kubectl_ok(&["get", "mailrelays", "-n", NS])
        .unwrap();
    assert!(
        table.contains("relay1") && table.contains("False"),
        "{table}"
    );

    // A spec change reaches the ConfigMap and rolls the pods; hashes stay stable.
    relays
        .patch(
            "relay1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"limits": {"maxRecipients": 7}}})),
        )
        .await
        .unwrap();
    eventually("the new configuration", 60, || async {
        let cm = configmaps.get("relay1-config").await.ok()?;
        cm.data?
            .get("gateway.toml")?
            .contains("max_recipients = 7")
            .then_some(())
    })
    .await;
    let hash2 = eventually("a new config hash", 60, || async {
        let sts = statefulsets.get("relay1").await.ok()?;
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
            &cluster
                .kubectl_ok(&["get", "events.events.k8s.io", "-n", NS, "-o", "json"])
                .unwrap(),
        )
        .unwrap();
        json["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["regarding"]["name"] == "relay1")
            .map(|e| e["reason"].as_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    };
    eventually("Created and ConfigurationChanged events", 30, || async {
        let r = reasons();
        (r.iter().any(|x| x == "Created") && r.iter().any(|x| x == "ConfigurationChanged"))
            .then_some(())
    })
    .await;
    assert_eq!(
        secret_text(
            &secrets.get("relay1-credentials").await.unwrap(),
            "credentials"
        ),
        file,
        "password hashes are kept"
    );

    // Flavour 2: no persistence → a Deployment with an emptyDir spool.
    create_relay(
        &client,
        "relay2",
        json!({"queue": {"persistence": false}, "replicas": 1}),
    )
    .await;
    let dep = eventually("Deployment relay2", 60, || async {
        deployments.get_opt("relay2").await.ok().flatten()
    })
    .await;
    let vols = dep.spec.unwrap().template.spec.unwrap().volumes.unwrap();
    assert!(
        vols.iter()
            .any(|v| v.name == "spool" && v.empty_dir.is_some())
    );
    assert!(statefulsets.get_opt("relay2").await.unwrap().is_none());

    // Flavour 3: cert-manager issuer and ServiceMonitor asked for, neither installed → Degraded.
    let spec3 =
        json!({"tls": {"issuerRef": {"name": "letsencrypt"}}, "metrics": {"serviceMonitor": true}});
    create_relay(&client, "relay3", spec3).await;
    let r3 = eventually("relay3 degraded", 60, || async {
        let r = relays.get("relay3").await.ok()?;
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
    cluster.apply_files(&refs).unwrap();
    cluster
        .wait_crds_established(
            &[
                "certificates.cert-manager.io",
                "servicemonitors.monitoring.coreos.com",
            ],
            Duration::from_secs(60),
        )
        .unwrap();
    // Nudge a reconcile now rather than at the next requeue.
    relays
        .patch(
            "relay3",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"test/nudge": "1"}}})),
        )
        .await
        .unwrap();
    let certs: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        NS,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
            "certificates",
        ),
    );
    let cert = eventually("Certificate relay3-tls", 90, || async {
        certs.get_opt("relay3-tls").await.ok().flatten()
    })
    .await;
    assert_eq!(cert.data["spec"]["issuerRef"]["name"], "letsencrypt");
    assert_eq!(cert.data["spec"]["secretName"], "relay3-tls");
    assert!(owned_by(&cert.metadata, "relay3"));
    let monitors: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        NS,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
            "servicemonitors",
        ),
    );
    let sm = eventually("ServiceMonitor relay3", 90, || async {
        monitors.get_opt("relay3").await.ok().flatten()
    })
    .await;
    assert_eq!(sm.data["spec"]["endpoints"][0]["port"], "metrics");
    // relay1 did not ask for a ServiceMonitor.
    assert!(monitors.get_opt("relay1").await.unwrap().is_none());

    // Deleting a relay deletes its children (garbage collection by owner references).
    relays.delete("relay1", &Default::default()).await.unwrap();
    eventually("relay1's children to go", 90, || async {
        let gone = configmaps.get_opt("relay1-config").await.ok()?.is_none()
            && statefulsets.get_opt("relay1").await.ok()?.is_none()
            && services.get_opt("relay1").await.ok()?.is_none()
            && secrets.get_opt("relay1-credentials").await.ok()?.is_none();
        gone.then_some(())
    })
    .await;
    let _ = MailRelay::kind(&());
}

/// Two replicas with leader election: only the Lease holder reconciles; when it dies,
/// the other takes over after the lease expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_hands_over() {
    use k8s_openapi::api::coordination::v1::Lease;
    let cluster = TestCluster::start().unwrap();
    let client = cluster.client().await.unwrap();
    let crd = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crds/mailrelays.postern.dev.yaml");
    cluster.apply_files(&[&crd]).unwrap();
    cluster
        .wait_crds_established(&["mailrelays.postern.dev"], Duration::from_secs(60))
        .unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in [NS, "postern-system"] {
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
            )
            .await
            .unwrap();
    }
    let start = |name: &str| {
        let child = Command::new(built_bin("postern-operator"))
            .env("KUBECONFIG", cluster.kubeconfig_path())
            .env("POD_NAMESPACE", "postern-system")
            .env("POD_NAME", name)
            .args([
                "--gateway-image",
                "postern:test",
                "--lease-duration",
                "4s",
                "--metrics-address",
            ])
            .arg(format!("127.0.0.1:{}", free_port()))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting postern-operator");
        Operator(child)
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
    let first = eventually("a leader", 30, || async { holder().await }).await;
    assert_eq!(first, "operator-a");
    let _b = start("operator-b");
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    create_relay(&client, "one", json!({})).await;
    eventually("the leader to reconcile", 60, || async {
        statefulsets.get_opt("one").await.ok().flatten()
    })
    .await;
    assert_eq!(
        holder().await.as_deref(),
        Some("operator-a"),
        "the follower must not take over a live lease"
    );
    drop(a);
    let second = eventually("the follower to take over", 60, || async {
        holder().await.filter(|h| h == "operator-b")
    })
    .await;
    assert_eq!(second, "operator-b");
    create_relay(&client, "two", json!({})).await;
    eventually("the new leader to reconcile", 60, || async {
        statefulsets.get_opt("two").await.ok().flatten()
    })
    .await;
}
