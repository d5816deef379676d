//! The HTTP side of the gateway, on its own port (`metrics.address`): `/metrics` for
//! Prometheus, `/healthz` (the process answers) and `/readyz` (it should get traffic:
//! listeners bound, spool writable with enough free space, not shutting down).
//! Nothing here can change the gateway; it only reports.

// TODO(structure): the spool write probe (already in spawn_blocking) builds a path
// inside the spool directory; it belongs in the spool API.
#![allow(clippy::disallowed_methods)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::Gateway;

/// What readiness depends on, updated by the parts that know.
#[derive(Debug, Default)]
pub struct Health {
    /// Every SMTP listener is bound.
    pub listeners_bound: AtomicBool,
    /// Free space on the spool's filesystem (last check).
    pub spool_free_bytes: AtomicU64,
    /// Free space is below `spool.min_free_bytes`.
    pub low_space: AtomicBool,
    /// The last write probe of the spool failed.
    pub spool_unwritable: AtomicBool,
}

/// Serves until the process ends.
pub async fn serve(listener: TcpListener, gw: Arc<Gateway>) {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let gw = gw.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let gw = gw.clone();
                async move { Ok::<_, Infallible>(route(&gw, &req)) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// Binds the HTTP listener.
fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

fn route<B>(gw: &Gateway, req: &Request<B>) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/metrics" => {
            let mut r = text(StatusCode::OK, gw.metrics.render());
            if let Ok(v) = "text/plain; version=0.0.4; charset=utf-8".parse() {
                r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
            }
            r
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => match not_ready(gw) {
            None => text(StatusCode::OK, "ready\n"),
            Some(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n",
        ),
    }
}

fn not_ready(gw: &Gateway) -> Option<&'static str> {
    let h = &gw.health;
    if *gw.shutdown.borrow() {
        Some("shutting down")
    } else if !h.listeners_bound.load(Ordering::Relaxed) {
        Some("SMTP listeners not bound")
    } else if h.spool_unwritable.load(Ordering::Relaxed) {
        Some("spool not writable")
    } else if h.low_space.load(Ordering::Relaxed) {
        Some("spool free space below spool.min_free_bytes")
    } else {
        None
    }
}

/// Checks the spool every few seconds: free space (gauge, low-space flag) and that
/// a file can be written there.
pub fn spawn_spool_monitor(gw: Arc<Gateway>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            let root = gw.spool.root().to_owned();
            let min = gw.config.spool.min_free_bytes;
            let result = tokio::task::spawn_blocking(move || {
                let free = rustix::fs::statvfs(&root)
                    .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
                    .ok();
                let probe = root.join(".write-probe");
                let writable = std::fs::write(&probe, b"ok")
                    .and_then(|_| std::fs::remove_file(&probe))
                    .is_ok();
                (free, writable)
            })
            .await;
            let Ok((free, writable)) = result else {
                continue;
            };
            let h = &gw.health;
            if let Some(free) = free {
                h.spool_free_bytes.store(free, Ordering::Relaxed);
                gw.metrics
                    .spool_free_bytes
                    .set(i64::try_from(free).unwrap_or(i64::MAX));
                let low = free < min;
                if low != h.low_space.swap(low, Ordering::Relaxed) {
                    if low {
                        tracing::warn!(
                            free,
                            min,
                            "spool free space low: refusing new mail with 452 4.3.1"
                        );
                    } else {
                        tracing::info!(free, "spool free space back above the minimum");
                    }
                }
            }
            if writable == h.spool_unwritable.swap(!writable, Ordering::Relaxed) {
                if writable {
                    tracing::info!("spool writable again");
                } else {
                    tracing::error!("spool is not writable");
                }
            }
        }
    })
}
