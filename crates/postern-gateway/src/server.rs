//! Serving: binding the configured SMTP listeners and the metrics/health server
//! (port 0 allowed: the kernel picks, and [`Listeners::addresses`] says what was
//! bound), then serving them until shutdown. The caller owns the bound sockets, so
//! it can learn their addresses before mail flows and pass them in.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use postern_config::{GatewayConfig, ListenerKind};
use tokio::net::TcpListener;

use crate::{Gateway, StartError};

/// Bound sockets, not yet accepting.
pub struct Listeners {
    pub smtp: Vec<(TcpListener, ListenerKind)>,
    /// The metrics and health HTTP server's socket, when it is enabled.
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// The addresses bound, as the JSON document `run --ready-file` writes:
    /// `{"listeners":[{"kind":"relay","address":"127.0.0.1:2525"},…],"metrics":"…"}`.
    pub fn addresses(&self) -> serde_json::Value {
        let listeners: Vec<_> = self
            .smtp
            .iter()
            .filter_map(|(sock, kind)| {
                let addr = sock.local_addr().ok()?;
                Some(serde_json::json!({"kind": kind.as_str(), "address": addr.to_string()}))
            })
            .collect();
        let metrics = self
            .metrics
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.to_string());
        serde_json::json!({ "listeners": listeners, "metrics": metrics })
    }
}

async fn bind_one(address: SocketAddr, kind: &'static str) -> Result<TcpListener, StartError> {
    let sock = TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Bind {
            address,
            kind,
            source,
        })?;
    let bound = sock.local_addr().unwrap_or(address);
    tracing::info!(address = %bound, kind, "listening");
    Ok(sock)
}

/// Binds every configured listener and, when enabled, the metrics server.
pub async fn bind(config: &GatewayConfig) -> Result<Listeners, StartError> {
    let mut smtp = Vec::new();
    for l in &config.listeners {
        smtp.push((bind_one(l.address, l.kind.as_str()).await?, l.kind));
    }
    let metrics = match config.metrics.enabled {
        true => Some(bind_one(config.metrics.address, "metrics").await?),
        false => None,
    };
    Ok(Listeners { smtp, metrics })
}

/// Serves until the gateway's shutdown switch turns: new sessions get 421, open
/// transactions may finish within the grace period.
pub async fn run(gateway: Arc<Gateway>, listeners: Listeners) {
    gateway
        .health
        .listeners_bound
        .store(true, Ordering::Relaxed);
    if let Some(l) = listeners.metrics {
        tokio::spawn(crate::http::serve(l, gateway.clone()));
    }
    crate::http::spawn_spool_monitor(gateway.clone());
    crate::listener::serve(gateway, listeners.smtp).await;
}
