//! The gateway configuration for a MailRelay, rendered from `postern-config` types so
//! the operator writes exactly what the gateway reads (one compiler checks both).
//! Also the paths and ports inside the pod, shared with the workload builder.

use std::time::Duration;

use postern_api::{MailRelay, RelayMode, SmarthostTlsMode};
use postern_config::{
    DeliveryMode, GatewayConfig, ListenerConfig, ListenerKind, LogFormat, SmarthostConfig,
    SmarthostTls,
};

/// Where things live in the gateway container.
pub mod paths {
    pub const CONFIG_DIR: &str = "/etc/postern/config";
    pub const CONFIG_FILE: &str = "gateway.toml";
    pub const TLS_DIR: &str = "/etc/postern/tls";
    pub const CREDENTIALS_DIR: &str = "/etc/postern/credentials";
    pub const CREDENTIALS_FILE: &str = "credentials";
    pub const SMARTHOST_DIR: &str = "/etc/postern/smarthost";
    pub const SMARTHOST_FILE: &str = "credentials";
    pub const SPOOL_DIR: &str = "/var/spool/postern";
}

/// Container ports: unprivileged, so the gateway runs as non-root without
/// capabilities; the Service maps 25/587/465 to them.
pub mod ports {
    pub const RELAY: u16 = 2525;
    pub const SUBMISSION: u16 = 2587;
    pub const SUBMISSIONS: u16 = 2465;
    pub const METRICS: u16 = 9098;
}

/// How long a pod may take to drain on shutdown; the pod's grace period is longer.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);

/// Why a spec cannot be turned into a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("spec.trustedNetworks: {0:?} is not a CIDR")]
    Network(String),
    #[error("spec.queue.maxLifetime: {0:?} is not a duration like 5d or 12h")]
    Lifetime(String),
    #[error("cannot render the gateway configuration: {0}")]
    Invalid(#[from] postern_config::ConfigError),
}

/// The cluster DNS name of the relay's Service.
pub fn service_host(relay: &MailRelay, namespace: &str) -> String {
    format!(
        "{}.{namespace}.svc.cluster.local",
        relay.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Renders the gateway configuration.
pub fn gateway_config(relay: &MailRelay, namespace: &str) -> Result<GatewayConfig, ConfigError> {
    let spec = &relay.spec;
    let mut c = GatewayConfig {
        hostname: spec
            .hostname
            .clone()
            .unwrap_or_else(|| service_host(relay, namespace)),
        listeners: vec![
            ListenerConfig::new(ListenerKind::Relay, ([0, 0, 0, 0], ports::RELAY).into()),
            ListenerConfig::new(
                ListenerKind::Submission,
                ([0, 0, 0, 0], ports::SUBMISSION).into(),
            ),
            ListenerConfig::new(
                ListenerKind::Submissions,
                ([0, 0, 0, 0], ports::SUBMISSIONS).into(),
            ),
        ],
        ..GatewayConfig::default()
    };
    c.tls.certificate = format!("{}/tls.crt", paths::TLS_DIR).into();
    c.tls.private_key = format!("{}/tls.key", paths::TLS_DIR).into();
    c.spool.directory = paths::SPOOL_DIR.into();
    c.auth.credentials_file =
        Some(format!("{}/{}", paths::CREDENTIALS_DIR, paths::CREDENTIALS_FILE).into());
    c.relay.trusted_networks = spec
        .trusted_networks
        .iter()
        .map(|n| n.parse().map_err(|_| ConfigError::Network(n.clone())))
        .collect::<Result<_, _>>()?;
    let l = &spec.limits;
    if let Some(v) = l.max_message_size {
        c.limits.max_message_size = v.max(1024) as u64;
    }
    if let Some(v) = l.max_recipients {
        c.limits.max_recipients = v.max(1) as usize;
    }
    if let Some(v) = l.max_sessions {
        c.limits.max_sessions = v.max(1) as usize;
    }
    if let Some(v) = l.max_sessions_per_ip {
        c.limits.max_sessions_per_ip = v.max(1) as usize;
    }
    if let Some(v) = l.connections_per_minute_per_client {
        c.limits.connections_per_minute_per_ip = v.max(1) as u32;
    }
    if let Some(v) = l.messages_per_minute_per_client {
        c.limits.messages_per_minute_per_ip = v.max(1) as u32;
    }
    if let Some(v) = l.auth_failures_before_block {
        c.auth.block_after_failures = v.max(1) as u32;
    }
    c.timeouts.shutdown_grace = SHUTDOWN_GRACE;
    c.delivery.retry.max_lifetime =
        humantime_serde::re::humantime::parse_duration(&spec.queue.max_lifetime)
            .map_err(|_| ConfigError::Lifetime(spec.queue.max_lifetime.clone()))?;
    c.delivery.tls.require_domains = spec.relay.require_tls_domains.clone();
    match (spec.relay.mode, &spec.relay.smarthost) {
        (RelayMode::Smarthost, Some(sh)) => {
            c.delivery.mode = DeliveryMode::Smarthost;
            c.delivery.smarthost = Some(SmarthostConfig {
                host: sh.host.clone(),
                port: sh.port.clamp(1, 65535) as u16,
                tls: match sh.tls {
                    SmarthostTlsMode::Starttls => SmarthostTls::Starttls,
                    SmarthostTlsMode::Implicit => SmarthostTls::Implicit,
                    SmarthostTlsMode::None => SmarthostTls::None,
                },
                credentials_file: sh
                    .credentials_secret
                    .as_ref()
                    .map(|_| format!("{}/{}", paths::SMARTHOST_DIR, paths::SMARTHOST_FILE).into()),
                verify_certificate: true,
                ca_file: None,
            });
        }
        _ => c.delivery.mode = DeliveryMode::Mx,
    }
    c.metrics.address = ([0, 0, 0, 0], ports::METRICS).into();
    c.metrics.destination_domains = spec.metrics.destination_domains.clone();
    c.log.format = LogFormat::Json;
    c.validate()?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(spec: serde_json::Value) -> MailRelay {
        let mut r = MailRelay::new("mail", serde_json::from_value(spec).unwrap());
        r.metadata.namespace = Some("apps".into());
        r
    }

    #[test]
    fn minimal_relay_renders_a_valid_config() {
        let c = gateway_config(&relay(serde_json::json!({})), "apps").unwrap();
        assert_eq!(c.hostname, "mail.apps.svc.cluster.local");
        assert_eq!(c.listeners.len(), 3);
        assert!(
            c.relay.trusted_networks.is_empty(),
            "never an open relay by default"
        );
        assert_eq!(c.delivery.mode, DeliveryMode::Mx);
        assert_eq!(
            c.delivery.retry.max_lifetime,
            Duration::from_secs(5 * 86400)
        );
        // What the operator writes, the gateway reads back unchanged.
        let text = c.to_toml().unwrap();
        let back: GatewayConfig = toml_back(&text);
        assert_eq!(back, c);
    }

    fn toml_back(text: &str) -> GatewayConfig {
        let dir = std::env::temp_dir().join(format!("postern-op-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("gateway.toml");
        std::fs::write(&p, text).unwrap();
        GatewayConfig::load(&p).unwrap()
    }

    #[test]
    fn smarthost_limits_and_networks() {
        let c = gateway_config(
            &relay(serde_json::json!({
                "trustedNetworks": ["10.0.0.0/8"],
                                "limits": {"maxMessageSize": 1048576, "maxRecipients": 10, "messagesPerMinutePerClient": 30},
                "relay": {"mode": "smarthost", "smarthost": {"host": "smtp.example.com", "credentialsSecret": "sh"}},
                "queue": {"maxLifetime": "12h"}
            })),
            "apps",
        )
        .unwrap();
        assert_eq!(c.relay.trusted_networks.len(), 1);
        assert_eq!(c.limits.max_message_size, 1_048_576);
        assert_eq!(c.limits.max_recipients, 10);
        assert_eq!(c.limits.messages_per_minute_per_ip, 30);
        let sh = c.delivery.smarthost.unwrap();
        assert_eq!(
            (sh.host.as_str(), sh.port, sh.tls),
            ("smtp.example.com", 587, SmarthostTls::Starttls)
        );
        assert!(sh.credentials_file.is_some());
        assert_eq!(
            c.delivery.retry.max_lifetime,
            Duration::from_secs(12 * 3600)
        );
    }

    #[test]
    fn bad_values_are_errors_not_panics() {
        assert!(
            gateway_config(
                &relay(serde_json::json!({"trustedNetworks": ["nope"]})),
                "apps"
            )
            .is_err()
        );
        assert!(
            gateway_config(
                &relay(serde_json::json!({"queue": {"maxLifetime": "forever"}})),
                "apps"
            )
            .is_err()
        );
    }
}
