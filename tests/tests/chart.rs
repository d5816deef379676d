//! The Helm chart `charts/postern` against a real kube-apiserver: it lints strictly, its
//! manifests (default values and every optional part switched on) pass a server-side
//! dry run, and once installed, the operator binary running with the chart's
//! ServiceAccount token (not as admin) reconciles a MailRelay in another namespace
//! completely and takes the leader Lease, so a missing RBAC rule fails here. The API
//! server runs the OwnerReferencesPermissionEnforcement admission plugin, as hardened
//! clusters do, so setting owner references is checked too.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use postern_api::MailRelay;
use postern_tests::kube::{ClusterOptions, TestCluster, third_party_crds};
use postern_tests::process::{ChildGuard, SpawnGuarded};
use postern_tests::repo_file;
use postern_tests::wait::eventually_async;
use serde_json::json;

const RELEASE_NS: &str = "postern-system";
const RELAY_NS: &str = "apps";
/// The chart's full name for release `postern`, and so its ServiceAccount's name.
const SERVICE_ACCOUNT: &str = "postern";

fn chart_dir() -> PathBuf {
    repo_file("charts/postern")
}

fn helm_ok(cluster: &TestCluster, args: &[&str]) -> String {
    let out = cluster.helm(args).unwrap();
    assert!(
        out.status.success(),
        "helm {} failed ({}):\n{}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl apply --dry-run=server -f -` of `manifests`.
fn dry_run(cluster: &TestCluster, what: &str, manifests: &str) {
    let out = cluster
        .kubectl_with_stdin(
            &["apply", "--dry-run=server", "-f", "-"],
            Some(manifests.as_bytes()),
        )
        .unwrap();
    assert!(
        out.status.success(),
        "server-side dry run of the chart ({what}) failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every optional part on, every value set.
const FULL_VALUES: &str = r#"
replicas: 2
image:
  repository: registry.example/postern/postern
  tag: "0.1.0-test"
  digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
  pullPolicy: Always
imagePullSecrets:
  - name: registry-credentials
gatewayImage: registry.example/postern/postern:gateway-test
nameOverride: relay-operator
fullnameOverride: ""
serviceAccount:
  create: true
  name: postern-op
  annotations:
    example.com/owner: mail-team
rbac:
  create: true
leaderElection:
  leaseDuration: 20s
logLevel: info,postern_operator=debug
metricsPort: 9090
service:
  type: ClusterIP
  port: 9090
  annotations:
    example.com/scrape: "true"
podAnnotations:
  example.com/note: operator
podLabels:
  team: mail
resources:
  requests:
    cpu: 100m
    memory: 96Mi
  limits:
    cpu: "1"
    memory: 512Mi
nodeSelector:
  kubernetes.io/os: linux
tolerations:
  - key: dedicated
    operator: Equal
    value: mail
    effect: NoSchedule
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              app.kubernetes.io/name: relay-operator
priorityClassName: postern-test
serviceMonitor:
  enabled: true
  interval: 15s
  scrapeTimeout: 5s
  labels:
    release: kube-prometheus-stack
dashboard:
  enabled: true
  labelKey: grafana.example.com/dashboard
  labelValue: "yes"
  annotations:
    grafana_folder: Mail
  namespace: monitoring
prometheusRule:
  enabled: true
  labels:
    release: kube-prometheus-stack
exampleRelay:
  enabled: true
  name: example
  spec:
    replicas: 2
    users:
      - name: app
        allowedSenders: ["@example.com"]
    trustedNetworks: ["10.42.0.0/16"]
"#;

/// The operator process (killed when dropped) and its log, shown when a test fails.
struct Operator {
    _child: ChildGuard,
    log: PathBuf,
}

impl Operator {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails the test with the operator's lines that say `forbidden`, if any.
    fn assert_not_forbidden(&self) {
        let log = self.log();
        let forbidden: Vec<&str> = log
            .lines()
            .filter(|l| l.to_lowercase().contains("forbidden"))
            .collect();
        assert!(
            forbidden.is_empty(),
            "the chart's RBAC denied the operator:\n{}",
            forbidden.join("\n")
        );
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- the operator's log ---\n{}", self.log());
        }
    }
}

/// Polls until `f` gives Some, or fails after `secs` (with the operator's log); fails
/// at once when the operator logged that the chart's RBAC forbade something.
async fn until<T, F, Fut>(operator: &Operator, what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_async(what, Duration::from_secs(secs), || {
        operator.assert_not_forbidden();
        f()
    })
    .await
}

/// A cluster running the OwnerReferencesPermissionEnforcement admission plugin, with
/// the CRDs the manifests need (the chart's own and the Prometheus operator's), the
/// namespaces and a PriorityClass: shared by the chart tests of this binary.
fn cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let chart = chart_dir();
        let cluster = TestCluster::start_with(ClusterOptions {
            controller_manager: false,
            apiserver_args: vec![
                "--enable-admission-plugins=OwnerReferencesPermissionEnforcement".into(),
            ],
        })
        .unwrap();
        // CRDs the manifests need: the chart's own and the Prometheus operator's.
        let prom = third_party_crds("prometheus-operator").unwrap();
        let own_crd = chart.join("crds/mailrelays.postern.dev.yaml");
        cluster.apply_files(&[&own_crd, &prom]).unwrap();
        cluster
            .wait_crds_established(
                &[
                    "mailrelays.postern.dev",
                    "servicemonitors.monitoring.coreos.com",
                    "prometheusrules.monitoring.coreos.com",
                ],
                Duration::from_secs(60),
            )
            .unwrap();
        for ns in [RELEASE_NS, RELAY_NS, "monitoring"] {
            cluster.kubectl_ok(&["create", "namespace", ns]).unwrap();
        }
        cluster
            .kubectl_ok(&["create", "priorityclass", "postern-test", "--value=1000"])
            .unwrap();
        cluster
    })
}

#[test]
fn chart_lints_strictly() {
    helm_ok(
        cluster(),
        &["lint", "--strict", &chart_dir().display().to_string()],
    );
}

/// The default values render the operator and its RBAC, nothing optional, and pass a
/// server-side dry run.
#[test]
fn default_render_passes_a_server_side_dry_run() {
    let cluster = cluster();
    let chart_arg = chart_dir().display().to_string();
    let defaults = helm_ok(
        cluster,
        &["template", "postern", &chart_arg, "-n", RELEASE_NS],
    );
    for kind in [
        "kind: Deployment",
        "kind: ServiceAccount",
        "kind: ClusterRole\n",
        "kind: ClusterRoleBinding",
        "kind: Role\n",
        "kind: RoleBinding",
        "kind: Service\n",
        "kind: ConfigMap",
        "grafana_dashboard: \"1\"",
    ] {
        assert!(defaults.contains(kind), "default render lacks {kind:?}");
    }
    for kind in [
        "kind: ServiceMonitor",
        "kind: PrometheusRule",
        "kind: MailRelay",
        "kind: CustomResourceDefinition",
    ] {
        assert!(
            !defaults.contains(kind),
            "default render has {kind:?}, which is off by default"
        );
    }
    dry_run(cluster, "default values", &defaults);
}

/// Every optional part switched on renders and passes a server-side dry run.
#[test]
fn full_render_passes_a_server_side_dry_run() {
    let cluster = cluster();
    let chart_arg = chart_dir().display().to_string();
    let scratch = tempfile::tempdir().unwrap();
    let values = scratch.path().join("full-values.yaml");
    std::fs::write(&values, FULL_VALUES).unwrap();
    let full = helm_ok(
        cluster,
        &[
            "template",
            "postern",
            &chart_arg,
            "-n",
            RELEASE_NS,
            "-f",
            &values.display().to_string(),
        ],
    );
    for kind in [
        "kind: ServiceMonitor",
        "kind: PrometheusRule",
        "kind: MailRelay",
        "grafana.example.com/dashboard: \"yes\"",
        "registry.example/postern/postern@sha256:0123456789abcdef",
        "value: \"registry.example/postern/postern:gateway-test\"",
        "PosternQueueGrowing",
    ] {
        assert!(full.contains(kind), "full render lacks {kind:?}");
    }
    dry_run(cluster, "every option on", &full);
}

/// Installed, the operator running with the chart's ServiceAccount token (not as admin)
/// reconciles a MailRelay in another namespace completely and takes the leader Lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_chart_rbac_suffices_for_the_operator() {
    let cluster = cluster();
    let chart_arg = chart_dir().display().to_string();
    let scratch = tempfile::tempdir().unwrap();
    // Install; then the operator runs with the chart's ServiceAccount.
    helm_ok(
        cluster,
        &["install", "postern", &chart_arg, "-n", RELEASE_NS],
    );
    let sa = format!("system:serviceaccount:{RELEASE_NS}:{SERVICE_ACCOUNT}");
    // The identity is no admin.
    let can = cluster
        .kubectl(&["auth", "can-i", "delete", "namespaces", "--as", &sa])
        .unwrap();
    assert!(
        !can.status.success(),
        "the chart's ServiceAccount may delete namespaces"
    );
    let token = cluster
        .kubectl_ok(&[
            "create",
            "token",
            SERVICE_ACCOUNT,
            "-n",
            RELEASE_NS,
            "--duration=1h",
        ])
        .unwrap();
    let kubeconfig = scratch.path().join("operator.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    \
             insecure-skip-tls-verify: true\nusers:\n- name: operator\n  user:\n    token: {}\n\
             contexts:\n- name: test\n  context:\n    cluster: test\n    user: operator\n    \
             namespace: {RELEASE_NS}\ncurrent-context: test\n",
            cluster.server_url(),
            token.trim()
        ),
    )
    .unwrap();

    // The objects the relays need, made by the admin.
    let client = cluster.client().await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), RELAY_NS);
    for (name, data) in [
        (
            "provider-login",
            json!({"username": "relay", "password": "provider-pw"}),
        ),
        // A CA Secret without its key: reconciling relay "broken" fails, which must
        // become a ReconcileFailed event (events create).
        ("broken-ca", json!({"ca.crt": "not a certificate"})),
    ] {
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data}))
                    .unwrap(),
            )
            .await
            .unwrap();
    }

    let log = scratch.path().join("operator.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let child = cluster
        .operator_with_kubeconfig(&kubeconfig, "postern:test")
        .env("RUST_LOG", "info,postern_operator=debug,kube_runtime=debug")
        .env("POD_NAMESPACE", RELEASE_NS)
        .env("POD_NAME", "op-0")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn_guarded()
        .expect("starting postern-operator");
    let operator = Operator { _child: child, log };

    let relays: Api<MailRelay> = Api::namespaced(client.clone(), RELAY_NS);
    for (name, spec) in [
        (
            "mail",
            json!({
                "replicas": 2,
                "users": [{"name": "billing", "allowedSenders": ["invoices@example.com"]}],
                "relay": {"mode": "smarthost", "smarthost": {
                    "host": "smtp.provider.example", "port": 587, "tls": "starttls",
                    "credentialsSecret": "provider-login"}},
                "metrics": {"serviceMonitor": true},
            }),
        ),
        (
            "broken",
            json!({"users": [{"name": "app", "allowedSenders": ["@example.com"]}]}),
        ),
    ] {
        let relay: MailRelay = serde_json::from_value(json!({
            "apiVersion": "postern.dev/v1alpha1", "kind": "MailRelay",
            "metadata": {"name": name, "namespace": RELAY_NS}, "spec": spec
        }))
        .unwrap();
        relays.create(&PostParams::default(), &relay).await.unwrap();
    }

    // The Lease: held by op-0.
    let leases: Api<Lease> = Api::namespaced(client.clone(), RELEASE_NS);
    until(
        &operator,
        "the Lease postern-operator held by op-0",
        60,
        || {
            let leases = leases.clone();
            async move {
                let lease = leases.get_opt("postern-operator").await.ok()??;
                (lease.spec?.holder_identity.as_deref() == Some("op-0")).then_some(())
            }
        },
    )
    .await;

    // Every child of relay "mail".
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), RELAY_NS);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), RELAY_NS);
    let services: Api<Service> = Api::namespaced(client.clone(), RELAY_NS);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), RELAY_NS);
    let monitors: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        RELAY_NS,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
            "servicemonitors",
        ),
    );
    until(&operator, "StatefulSet mail", 90, || {
        let api = statefulsets.clone();
        async move { api.get_opt("mail").await.ok()? }
    })
    .await;
    until(&operator, "ConfigMap mail-config", 30, || {
        let api = configmaps.clone();
        async move { api.get_opt("mail-config").await.ok()? }
    })
    .await;
    for name in [
        "mail-credentials",
        "mail-user-billing",
        "mail-smarthost",
        "mail-ca",
        "mail-tls",
    ] {
        until(&operator, &format!("Secret {name}"), 30, || {
            let api = secrets.clone();
            async move { api.get_opt(name).await.ok()? }
        })
        .await;
    }
    for name in ["mail", "mail-pods"] {
        until(&operator, &format!("Service {name}"), 30, || {
            let api = services.clone();
            async move { api.get_opt(name).await.ok()? }
        })
        .await;
    }
    until(&operator, "PodDisruptionBudget mail", 30, || {
        let api = pdbs.clone();
        async move { api.get_opt("mail").await.ok()? }
    })
    .await;
    until(&operator, "ServiceMonitor mail", 30, || {
        let api = monitors.clone();
        async move { api.get_opt("mail").await.ok()? }
    })
    .await;

    // Status: written through the status subresource, for the current generation.
    let relay = until(&operator, "status of MailRelay mail", 60, || {
        let api = relays.clone();
        async move {
            let r = api.get("mail").await.ok()?;
            let st = r.status.as_ref()?;
            (st.observed_generation.is_some()
                && st.observed_generation == r.metadata.generation
                && !st.conditions.is_empty())
            .then_some(r)
        }
    })
    .await;
    let status = relay.status.unwrap();
    for t in ["Ready", "Progressing", "Degraded"] {
        assert!(
            status.conditions.iter().any(|c| c.type_ == t),
            "condition {t} missing: {:?}",
            status.conditions
        );
    }
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(
        degraded.status, "False",
        "relay mail is degraded: {}",
        degraded.message
    );
    assert_eq!(
        status.generated_password_secrets,
        vec!["mail-user-billing".to_string()]
    );

    // The failing relay: a ReconcileFailed event (events.k8s.io) on it.
    let events: Api<Event> = Api::namespaced(client.clone(), RELAY_NS);
    until(
        &operator,
        "a ReconcileFailed event on MailRelay broken",
        60,
        || {
            let api = events.clone();
            async move {
                let list = api.list(&ListParams::default()).await.ok()?;
                list.items
                    .into_iter()
                    .find(|e| {
                        e.reason.as_deref() == Some("ReconcileFailed")
                            && e.regarding.as_ref().and_then(|r| r.name.as_deref())
                                == Some("broken")
                    })
                    .map(|_| ())
            }
        },
    )
    .await;

    operator.assert_not_forbidden();
    let log = operator.log();
    assert!(
        log.contains("became the leader"),
        "the operator never led:\n{log}"
    );
}
