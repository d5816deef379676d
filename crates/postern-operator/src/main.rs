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
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    postern_operator::controller::run(client, cli.gateway_image, metrics, shutdown).await;
    Ok(())
}
