//! `postern-operator`: reconciles MailRelay resources. Serves its own metrics and
//! health on `--metrics-address`. It never installs its CRD (the Helm chart does).

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::Parser;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use postern_operator::metrics::OperatorMetrics;

#[derive(Parser)]
#[command(
    name = "postern-operator",
    version,
    about = "Reconciles MailRelay resources into Postern gateways"
)]
struct Cli {
    /// Gateway image for MailRelays that name none.
    #[arg(long, env = "POSTERN_GATEWAY_IMAGE", default_value = concat!("postern:", env!("CARGO_PKG_VERSION")))]
    gateway_image: String,
    /// Namespace of the leader-election Lease (usually the operator's own, from the
    /// downward API). Without it there is no election: run one replica only.
    #[arg(long, env = "POD_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// How long a Lease stays valid without renewal.
    #[arg(long, default_value = "15s", value_parser = humantime_serde::re::humantime::parse_duration)]
    lease_duration: std::time::Duration,
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(
        long,
        env = "POSTERN_OPERATOR_METRICS_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    metrics_address: SocketAddr,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    // kube's TLS stack and ours both link rustls providers; choose one for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let metrics = OperatorMetrics::new().context("registering metrics")?;
    let listener = tokio::net::TcpListener::bind(cli.metrics_address)
        .await
        .with_context(|| format!("binding {}", cli.metrics_address))?;
    let m = metrics.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let m = m.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let m = m.clone();
                    async move {
                        let (status, body) = match req.uri().path() {
                            "/metrics" => (StatusCode::OK, Bytes::from(m.render())),
                            "/healthz" | "/readyz" => (StatusCode::OK, Bytes::from_static(b"ok\n")),
                            _ => (StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n")),
                        };
                        let mut r = Response::new(Full::new(body));
                        *r.status_mut() = status;
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    tracing::info!(image = %cli.gateway_image, "postern-operator starting");
    let election = cli.leader_election_namespace.as_ref().map(|ns| {
        let identity = cli
            .identity
            .clone()
            .unwrap_or_else(|| format!("postern-operator-{}", std::process::id()));
        postern_operator::leader::LeaderElection::new(
            kube::Api::namespaced(client.clone(), ns),
            "postern-operator",
            &identity,
            cli.lease_duration,
        )
    });
    if let Some(e) = &election {
        e.acquire().await.context("acquiring the leader Lease")?;
    }
    let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Resolves when the Lease is lost; never without an election.
    let lease_lost = match election {
        Some(e) => {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let lost = lost.clone();
            tokio::spawn(async move {
                e.keep().await;
                lost.store(true, std::sync::atomic::Ordering::SeqCst);
                let _ = tx.send(());
            });
            Some(rx)
        }
        None => None,
    };
    let shutdown = async move {
        let lease_lost = async {
            match lease_lost {
                Some(rx) => {
                    let _ = rx.await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = lease_lost => {}
        }
    };
    postern_operator::controller::run(client, cli.gateway_image, metrics, shutdown).await;
    if lost.load(std::sync::atomic::Ordering::SeqCst) {
        anyhow::bail!("leadership lost; exiting so a follower can take over");
    }
    Ok(())
}
