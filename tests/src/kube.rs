//! A real Kubernetes control plane on loopback for the operator's integration tests:
//! etcd, kube-apiserver and (optionally) kube-controller-manager, the real programs built
//! from the Go module proxy by `tests/scripts/k8s-binaries.sh` (sources in `tests/k8s/`).
//!
//! [`TestCluster::start`] runs etcd (loopback, `--unsafe-no-fsync`, a temporary data dir)
//! and kube-apiserver (loopback HTTPS with a self-signed serving certificate, an admin
//! token in `system:masters`, RBAC, service-account keys made here), waits until
//! `/readyz` answers ok, and writes a kubeconfig (token, `insecure-skip-tls-verify`) that
//! [`TestCluster::client`], [`TestCluster::kubectl`] and [`TestCluster::helm`] use.
//! [`TestCluster::start_with_controller_manager`] adds kube-controller-manager, without
//! which nothing is garbage-collected, namespaces never finish deleting and Deployments
//! and StatefulSets get no status. There are no nodes and no kubelet: pods are stored and
//! never run.
//!
//! Binaries come from `$POSTERN_K8S_BIN` or `~/.cache/postern/k8s/<kubernetes
//! version>/bin`. When `CI` is set, or when one of them is missing, the harness runs
//! `tests/scripts/k8s-binaries.sh` first (instant when everything is built; a cold build
//! takes long) and fails with what it printed if that does not help.
//!
//! Dropping the cluster kills every process and removes its directory (kept with
//! `POSTERN_KEEP_PEERS=1`, logs included, for a post-mortem).

use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;

use crate::peers::scratch_dir;
use crate::process::{ChildGuard, SpawnGuarded, free_local_addr, retry_on_new_port};

/// The field manager the tests use for server-side apply.
pub const FIELD_MANAGER: &str = "postern-tests";

/// How long the control plane may take to become ready (the machine may be busy).
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// The workspace root.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The Kubernetes release the test binaries are built from: the version of
/// k8s.io/kubernetes that `tests/k8s/apiserver/go.mod` requires (e.g. `v1.34.4`).
pub fn kubernetes_version() -> Result<String> {
    let go_mod = workspace_root().join("tests/k8s/apiserver/go.mod");
    let text = std::fs::read_to_string(&go_mod)
        .with_context(|| format!("reading {}", go_mod.display()))?;
    text.lines()
        .map(|l| l.trim().trim_start_matches("require").trim())
        .find_map(|l| l.strip_prefix("k8s.io/kubernetes "))
        .map(|v| v.split_whitespace().next().unwrap_or_default().to_string())
        .filter(|v| v.starts_with('v'))
        .ok_or_else(|| anyhow!("{} requires no k8s.io/kubernetes version", go_mod.display()))
}

fn cache_dir() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/postern/k8s")
}

/// The directory `tests/scripts/k8s-binaries.sh` builds into.
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("POSTERN_K8S_BIN").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    Ok(cache_dir().join(kubernetes_version()?).join("bin"))
}

/// Directory of another project's CRDs that the script copies out of its Go module:
/// `cert-manager` or `prometheus-operator`.
pub fn third_party_crds(project: &str) -> Result<PathBuf> {
    ensure_binaries()?;
    let dir = cache_dir().join("crds").join(project);
    if !dir.is_dir() {
        bail!(
            "no CRDs of {project} in {}: run tests/scripts/k8s-binaries.sh",
            dir.display()
        );
    }
    Ok(dir)
}

/// Every program the script builds.
const BINARIES: &[&str] = &[
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
    "helm",
];

/// Makes sure the binaries are there (running the build script when `CI` is set or one
/// is missing, once per test process) and returns their directory.
pub fn ensure_binaries() -> Result<PathBuf> {
    static DONE: OnceLock<Mutex<Option<PathBuf>>> = OnceLock::new();
    let mut done = DONE
        .get_or_init(|| Mutex::new(None))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(dir) = done.as_ref() {
        return Ok(dir.clone());
    }
    let dir = bin_dir()?;
    let missing: Vec<&str> = BINARIES
        .iter()
        .copied()
        .filter(|b| !dir.join(b).is_file())
        .collect();
    let crds_missing = ["cert-manager", "prometheus-operator"]
        .iter()
        .any(|p| !cache_dir().join("crds").join(p).is_dir());
    if std::env::var_os("CI").is_some() || !missing.is_empty() || crds_missing {
        let script = workspace_root().join("tests/scripts/k8s-binaries.sh");
        if !missing.is_empty() {
            eprintln!(
                "kube: {} missing in {}; running {} (a cold build takes long)",
                missing.join(", "),
                dir.display(),
                script.display()
            );
        }
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            bail!(
                "the Kubernetes test binaries are missing in {} and {} failed ({}); run it by hand \
                 to see why. Its last output:\n{}",
                dir.display(),
                script.display(),
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr), 40)
            );
        }
        let still: Vec<&str> = BINARIES
            .iter()
            .copied()
            .filter(|b| !dir.join(b).is_file())
            .collect();
        if !still.is_empty() {
            bail!(
                "{} ran but {} are still missing in {}",
                script.display(),
                still.join(", "),
                dir.display()
            );
        }
    }
    *done = Some(dir.clone());
    Ok(dir)
}

/// Options of [`TestCluster::start_with`].
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Also run kube-controller-manager (garbage collection, namespace deletion,
    /// Deployment/StatefulSet/ReplicaSet status, service accounts).
    pub controller_manager: bool,
    /// Extra kube-apiserver flags (`--name=value`), after the harness's own.
    pub apiserver_args: Vec<String>,
}

/// etcd + kube-apiserver (+ kube-controller-manager) on loopback; stopped on drop.
pub struct TestCluster {
    bin: PathBuf,
    server_url: String,
    token: String,
    kubeconfig: PathBuf,
    etcd: Option<ChildGuard>,
    apiserver: Option<ChildGuard>,
    controller_manager: Option<ChildGuard>,
    // Removed on drop, after the processes are stopped (fields drop after `Drop::drop`).
    dir: TempDir,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("server_url", &self.server_url)
            .field("kubeconfig", &self.kubeconfig)
            .field(
                "controller_manager",
                &self.controller_manager.as_ref().map(|c| c.id()),
            )
            .finish()
    }
}

impl TestCluster {
    /// Starts etcd and kube-apiserver and waits until the API server is ready.
    pub fn start() -> Result<Self> {
        Self::start_with(ClusterOptions::default())
    }

    /// Starts etcd, kube-apiserver and kube-controller-manager.
    pub fn start_with_controller_manager() -> Result<Self> {
        Self::start_with(ClusterOptions {
            controller_manager: true,
            ..ClusterOptions::default()
        })
    }

    /// Starts a cluster with `options`. A port that was free when picked can be taken
    /// before a server binds it, so a failed start is retried with new ports
    /// ([`retry_on_new_port`]).
    pub fn start_with(options: ClusterOptions) -> Result<Self> {
        let bin = ensure_binaries()?;
        retry_on_new_port("the test cluster", free_local_addr, |api_addr| {
            Self::try_start(&bin, &options, api_addr)
        })
    }

    fn try_start(bin: &Path, options: &ClusterOptions, api_addr: SocketAddr) -> Result<Self> {
        let dir = scratch_dir("k8s-")?;
        let token = random_hex(32);
        let mut cluster = TestCluster {
            bin: bin.to_path_buf(),
            server_url: String::new(),
            token: token.clone(),
            kubeconfig: dir.path().join("kubeconfig"),
            etcd: None,
            apiserver: None,
            controller_manager: None,
            dir,
        };
        let root = cluster.dir.path().to_path_buf();

        // etcd
        let client_addr = free_local_addr()?;
        let peer_addr = free_local_addr()?;
        let client_url = format!("http://{client_addr}");
        let peer_url = format!("http://{peer_addr}");
        let mut etcd = Command::new(bin.join("etcd"));
        etcd.arg("--name=default")
            .arg(format!("--data-dir={}", root.join("etcd").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=default={peer_url}"))
            .arg("--unsafe-no-fsync")
            .arg("--log-level=warn");
        cluster.etcd = Some(spawn_logged(etcd, &root.join("etcd.log"))?);
        cluster.wait_etcd(client_addr)?;

        // kube-apiserver
        let certs = root.join("certs");
        std::fs::create_dir_all(&certs)?;
        let tokens = root.join("tokens.csv");
        std::fs::write(&tokens, format!("{token},admin,admin,\"system:masters\"\n"))?;
        let sa_key = root.join("sa.key");
        let sa_pub = root.join("sa.pub");
        let key = rcgen::KeyPair::generate().context("making the service-account key")?;
        std::fs::write(&sa_key, key.serialize_pem())?;
        std::fs::write(&sa_pub, key.public_key_pem())?;
        cluster.server_url = format!("https://{api_addr}");
        let mut apiserver = Command::new(bin.join("kube-apiserver"));
        apiserver
            .arg(format!("--etcd-servers={client_url}"))
            .arg(format!("--cert-dir={}", certs.display()))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={}", api_addr.port()))
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            .arg("--allow-privileged=true")
            .arg("--disable-admission-plugins=ServiceAccount")
            .arg("--authorization-mode=RBAC")
            .arg(format!("--token-auth-file={}", tokens.display()))
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!("--service-account-key-file={}", sa_pub.display()))
            .arg(format!(
                "--service-account-signing-key-file={}",
                sa_key.display()
            ))
            // Endpoints may not hold loopback addresses: don't publish the API server's.
            .arg("--endpoint-reconciler-type=none")
            .arg("--profiling=false")
            .args(&options.apiserver_args);
        cluster.apiserver = Some(spawn_logged(apiserver, &root.join("kube-apiserver.log"))?);
        cluster.write_kubeconfig()?;
        cluster.wait_ready()?;

        if options.controller_manager {
            let mut kcm = Command::new(bin.join("kube-controller-manager"));
            kcm.arg(format!("--kubeconfig={}", cluster.kubeconfig.display()))
                // No cloud here: leave out the controllers that need one.
                .arg(
                    "--controllers=*,-cloud-node-lifecycle-controller,-service-lb-controller,\
                     -node-route-controller,-node-ipam-controller",
                )
                .arg("--use-service-account-credentials=false")
                .arg(format!(
                    "--service-account-private-key-file={}",
                    sa_key.display()
                ))
                .arg("--service-cluster-ip-range=10.0.0.0/24")
                .arg("--leader-elect=false")
                .arg("--bind-address=127.0.0.1")
                // No HTTPS endpoint of its own: nothing scrapes it, and no port to race for.
                .arg("--secure-port=0");
            cluster.controller_manager = Some(spawn_logged(
                kcm,
                &root.join("kube-controller-manager.log"),
            )?);
            // It has started when it is still running a moment later and has begun
            // creating service accounts in the default namespace.
            cluster.wait_controller_manager()?;
        }
        Ok(cluster)
    }

    fn write_kubeconfig(&self) -> Result<()> {
        let yaml = format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: postern-test\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\n\
             users:\n\
             - name: admin\n  user:\n    token: {token}\n\
             contexts:\n\
             - name: postern-test\n  context:\n    cluster: postern-test\n    user: admin\n    namespace: default\n\
             current-context: postern-test\n",
            server = self.server_url,
            token = self.token
        );
        std::fs::write(&self.kubeconfig, yaml)
            .with_context(|| format!("writing {}", self.kubeconfig.display()))
    }

    fn wait_etcd(&mut self, addr: SocketAddr) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(body) = http_get(addr, "/health")
                && body.contains("\"health\":\"true\"")
            {
                return Ok(());
            }
            self.check_alive("etcd")?;
            if Instant::now() > deadline {
                bail!(
                    "etcd did not become healthy on {addr} in {READY_TIMEOUT:?}; its log:\n{}",
                    self.log_tail("etcd")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::new();
        loop {
            let out = self.kubectl(&["get", "--raw=/readyz"])?;
            if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok" {
                // The bootstrap controller creates the default namespace just after.
                let ns = self.kubectl(&["get", "namespace", "default", "-o", "name"])?;
                if ns.status.success() {
                    return Ok(());
                }
            } else {
                last = String::from_utf8_lossy(&out.stderr).into_owned();
            }
            self.check_alive("kube-apiserver")?;
            self.check_alive("etcd")?;
            if Instant::now() > deadline {
                bail!(
                    "kube-apiserver was not ready at {} in {READY_TIMEOUT:?} (kubectl: {}); its log:\n{}",
                    self.server_url,
                    last.trim(),
                    self.log_tail("kube-apiserver")
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn wait_controller_manager(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.check_alive("kube-controller-manager")?;
            let out = self.kubectl(&["get", "serviceaccount", "default", "-o", "name"])?;
            if out.status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "kube-controller-manager created no default service account in {READY_TIMEOUT:?}; its log:\n{}",
                    self.log_tail("kube-controller-manager")
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Fails with the process's log when it has exited.
    fn check_alive(&mut self, component: &str) -> Result<()> {
        let child = match component {
            "etcd" => self.etcd.as_mut(),
            "kube-apiserver" => self.apiserver.as_mut(),
            "kube-controller-manager" => self.controller_manager.as_mut(),
            _ => None,
        };
        if let Some(child) = child
            && let Some(status) = child.try_wait()?
        {
            bail!(
                "{component} exited ({status}); its log:\n{}",
                self.log_tail(component)
            );
        }
        Ok(())
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The kubeconfig (admin token, `insecure-skip-tls-verify`, namespace `default`): for
    /// `KUBECONFIG=` of programs under test.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The admin bearer token (group `system:masters`).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Where the Kubernetes binaries are.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// A kube-rs client from the kubeconfig, as a program given `KUBECONFIG` makes one.
    pub async fn client(&self) -> Result<::kube::Client> {
        let kubeconfig = ::kube::config::Kubeconfig::read_from(&self.kubeconfig)?;
        let config = ::kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &::kube::config::KubeConfigOptions::default(),
        )
        .await?;
        Ok(::kube::Client::try_from(config)?)
    }

    /// Runs this cluster's kubectl with `args`; the output whatever the exit status.
    pub fn kubectl(&self, args: &[&str]) -> Result<Output> {
        self.kubectl_with_stdin(args, None)
    }

    /// Runs kubectl with `input` on its standard input (e.g. `apply -f -`).
    pub fn kubectl_with_stdin(&self, args: &[&str], input: Option<&[u8]>) -> Result<Output> {
        let mut cmd = Command::new(self.bin.join("kubectl"));
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg(format!(
                "--cache-dir={}",
                self.dir.path().join("kubectl-cache").display()
            ))
            .args(args)
            .env_remove("KUBECONFIG");
        run(cmd, input).with_context(|| format!("kubectl {}", args.join(" ")))
    }

    /// Runs kubectl and returns its standard output; a non-zero exit is an error that
    /// carries kubectl's standard error.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String> {
        checked(self.kubectl(args)?, "kubectl", args)
    }

    /// Runs this cluster's helm (with `KUBECONFIG` set to [`Self::kubeconfig_path`] and
    /// private helm cache/config dirs); the output whatever the exit status.
    pub fn helm(&self, args: &[&str]) -> Result<Output> {
        let home = self.dir.path().join("helm");
        let mut cmd = Command::new(self.bin.join("helm"));
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"));
        run(cmd, None).with_context(|| format!("helm {}", args.join(" ")))
    }

    /// A `postern-operator` command against this cluster (`KUBECONFIG` set to
    /// [`Self::kubeconfig_path`]) with `--gateway-image IMAGE` and its metrics server on
    /// a loopback port of its own (port 0); spawn it with
    /// [`crate::process::SpawnGuarded`].
    pub fn operator(&self, image: &str) -> Command {
        self.operator_with_kubeconfig(&self.kubeconfig, image)
    }

    /// [`Self::operator`] with another kubeconfig (e.g. a service account's token).
    pub fn operator_with_kubeconfig(&self, kubeconfig: &Path, image: &str) -> Command {
        let mut cmd = Command::new(crate::gateway::built_bin("postern-operator"));
        cmd.env("KUBECONFIG", kubeconfig).args([
            "--gateway-image",
            image,
            "--metrics-address",
            "127.0.0.1:0",
        ]);
        cmd
    }

    /// Applies YAML files (or directories of them) server-side with [`FIELD_MANAGER`].
    pub fn apply_files(&self, paths: &[&Path]) -> Result<String> {
        let mut args: Vec<String> = vec![
            "apply".into(),
            "--server-side".into(),
            format!("--field-manager={FIELD_MANAGER}"),
        ];
        for p in paths {
            args.push("-f".into());
            args.push(p.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.kubectl_ok(&args)
    }

    /// Waits until every CRD in `names` is Established (and served: the API server's
    /// discovery knows its resource).
    pub fn wait_crds_established(&self, names: &[&str], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for name in names {
            let arg = format!("crd/{name}");
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let out = self.kubectl(&[
                    "wait",
                    "--for=condition=Established",
                    &arg,
                    &format!("--timeout={}s", left.as_secs().max(1)),
                ])?;
                if out.status.success() {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "CRD {name} not Established in {timeout:?}: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Ok(())
    }

    /// The full log of `etcd`, `kube-apiserver` or `kube-controller-manager`.
    pub fn log(&self, component: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{component}.log")))
            .unwrap_or_default()
    }

    fn log_tail(&self, component: &str) -> String {
        tail(&self.log(component), 40)
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // Controller manager first (it talks to the API server), etcd last.
        drop(self.controller_manager.take());
        drop(self.apiserver.take());
        drop(self.etcd.take());
    }
}

fn spawn_logged(mut cmd: Command, log_file: &Path) -> Result<ChildGuard> {
    let log = std::fs::File::create(log_file)
        .with_context(|| format!("creating {}", log_file.display()))?;
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn_guarded()
        .with_context(|| format!("starting {program}"))
}

fn run(mut cmd: Command, input: Option<&[u8]>) -> Result<Output> {
    crate::peers::output(&mut cmd, input.unwrap_or_default())
}

fn checked(out: Output, program: &str, args: &[&str]) -> Result<String> {
    if !out.status.success() {
        bail!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A plain HTTP/1.0 GET (etcd's client port); the body when the status is 200.
fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("GET {path}: {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_string())
}

fn random_hex(len: usize) -> String {
    let mut s = String::with_capacity(len + 16);
    while s.len() < len {
        let mut h = RandomState::new().build_hasher();
        h.write_usize(s.len());
        let _ = write!(s, "{:016x}", h.finish());
    }
    s.truncate(len);
    s
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Creates a MailRelay `name` in `namespace` with `spec`, retrying while the API
/// server's discovery of a new CRD lags a moment behind Established.
pub async fn create_relay(
    namespace: &str,
    client: &kube::Client,
    name: &str,
    spec: serde_json::Value,
) {
    let api: kube::Api<postern_api::MailRelay> = kube::Api::namespaced(client.clone(), namespace);
    let relay: postern_api::MailRelay = serde_json::from_value(serde_json::json!({
        "apiVersion": "postern.dev/v1alpha1", "kind": "MailRelay",
        "metadata": {"name": name, "namespace": namespace}, "spec": spec
    }))
    .expect("a MailRelay from JSON");
    for _ in 0..50 {
        if api
            .create(&kube::api::PostParams::default(), &relay)
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("could not create MailRelay {name}");
}

/// Makes the operator reconcile a MailRelay now rather than at its next requeue (an
/// annotation change is a watch event).
pub async fn nudge(relays: &kube::Api<postern_api::MailRelay>, name: &str) {
    relays
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {"test/nudge": "1"}}
            })),
        )
        .await
        .expect("annotating the MailRelay");
}
