//! The gateway's configuration file (TOML): the contract between whoever writes the
//! file (a person, the Helm chart, the operator) and the gateway that reads it.
//!
//! Every struct denies unknown fields so a typo is an error, not a silently ignored
//! setting. Every field has a named default, stated in docs/configuration.md.
//! This crate does no I/O beyond reading the one file it is given.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Errors from loading or validating a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole gateway configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Name the gateway uses in its greeting, EHLO reply and Received headers.
    pub hostname: String,
    /// SMTP listeners; at least one.
    pub listeners: Vec<ListenerConfig>,
    /// Server certificate and key for STARTTLS and implicit TLS.
    pub tls: TlsConfig,
    /// Where accepted messages are stored durably.
    pub spool: SpoolConfig,
    /// SMTP AUTH credentials and brute-force protection.
    pub auth: AuthConfig,
    /// Who may relay without authenticating.
    pub relay: RelayConfig,
    /// Bounds on every input.
    pub limits: LimitsConfig,
    /// RFC 5321 section 4.5.3.2 server timeouts.
    pub timeouts: TimeoutsConfig,
    /// Log output.
    pub log: LogConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            hostname: "localhost".to_owned(),
            listeners: vec![
                ListenerConfig::new(ListenerKind::Relay, ([0, 0, 0, 0], 25).into()),
                ListenerConfig::new(ListenerKind::Submission, ([0, 0, 0, 0], 587).into()),
                ListenerConfig::new(ListenerKind::Submissions, ([0, 0, 0, 0], 465).into()),
            ],
            tls: TlsConfig::default(),
            spool: SpoolConfig::default(),
            auth: AuthConfig::default(),
            relay: RelayConfig::default(),
            limits: LimitsConfig::default(),
            timeouts: TimeoutsConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// What a listener is for; decides TLS and AUTH behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// Port 25 style: relay for trusted networks only; STARTTLS offered; AUTH after STARTTLS.
    Relay,
    /// Port 587 (RFC 6409): STARTTLS offered; AUTH and MAIL only after TLS; AUTH required.
    Submission,
    /// Port 465 (RFC 8314): implicit TLS; AUTH required.
    Submissions,
}

impl ListenerKind {
    /// A short, stable name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Relay => "relay",
            ListenerKind::Submission => "submission",
            ListenerKind::Submissions => "submissions",
        }
    }
}

/// One SMTP listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// relay, submission or submissions.
    pub kind: ListenerKind,
    /// Address and port to bind, e.g. "0.0.0.0:587" or "[::]:587".
    pub address: SocketAddr,
}

impl ListenerConfig {
    pub fn new(kind: ListenerKind, address: SocketAddr) -> Self {
        Self { kind, address }
    }
}

/// Server TLS material.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub certificate: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
    /// When both files are missing at start, write a self-signed certificate for `hostname`
    /// there. Meant for trying the gateway out; clients will not trust it.
    pub self_signed_if_missing: bool,
    /// How often the files are checked for changes; a change is loaded without a restart.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            certificate: PathBuf::from("/etc/postern/tls/tls.crt"),
            private_key: PathBuf::from("/etc/postern/tls/tls.key"),
            self_signed_if_missing: false,
            reload_interval: Duration::from_secs(5),
        }
    }
}

/// The durable message store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Directory holding queued messages; created when missing.
    pub directory: PathBuf,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            directory: PathBuf::from("/var/spool/postern"),
        }
    }
}

/// SMTP AUTH.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Credentials file: one `name:hash:senders` line per user (see docs/configuration.md).
    /// Without it no user can authenticate and AUTH is not offered.
    pub credentials_file: Option<PathBuf>,
    /// How often the credentials file is checked for changes.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Failed AUTH attempts from one client IP, within `failure_window`, after which every
    /// further AUTH reply to that IP is delayed.
    pub delay_after_failures: u32,
    /// Delay added per failure beyond `delay_after_failures`.
    #[serde(with = "humantime_serde")]
    pub failure_delay: Duration,
    /// Failed attempts within `failure_window` after which the client IP gets 421 and is
    /// blocked for `block_duration`.
    pub block_after_failures: u32,
    /// Window over which failures are counted.
    #[serde(with = "humantime_serde")]
    pub failure_window: Duration,
    /// How long a blocked client IP is refused.
    #[serde(with = "humantime_serde")]
    pub block_duration: Duration,
    /// Name the authenticated user in the Received header (off: the user stays private).
    pub received_header_shows_user: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            credentials_file: None,
            reload_interval: Duration::from_secs(5),
            delay_after_failures: 3,
            failure_delay: Duration::from_secs(1),
            block_after_failures: 10,
            failure_window: Duration::from_secs(600),
            block_duration: Duration::from_secs(900),
            received_header_shows_user: false,
        }
    }
}

/// Relay policy for unauthenticated clients.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Client networks that may relay through a `relay` listener without AUTH. Default: none.
    pub trusted_networks: Vec<IpNet>,
}

impl RelayConfig {
    /// Whether `ip` is inside a trusted network.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.trusted_networks.iter().any(|n| n.contains(&ip))
    }
}

/// IPv4-mapped IPv6 addresses (from a dual-stack socket) compared as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// What to do with a bare CR or bare LF in commands or message data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BareLineEndings {
    /// Refuse the command or message (RFC 5321 section 2.3.8).
    Refuse,
    /// Treat the bare CR or LF as CRLF. End of data is still only CRLF.CRLF.
    Normalize,
}

/// Bounds on every input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest message accepted, in octets (advertised in SIZE, enforced during transfer).
    pub max_message_size: u64,
    /// Recipients per message; more get 452 4.5.3.
    pub max_recipients: usize,
    /// Concurrent sessions over all listeners.
    pub max_sessions: usize,
    /// Concurrent sessions from one client IP.
    pub max_sessions_per_ip: usize,
    /// Refused commands in one session after which it is closed with 421 (like Postfix's
    /// smtpd_hard_error_limit).
    pub max_errors: u32,
    /// Bare CR or LF handling.
    pub bare_line_endings: BareLineEndings,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_sessions: 1000,
            max_sessions_per_ip: 50,
            max_errors: 20,
            bare_line_endings: BareLineEndings::Refuse,
        }
    }
}

/// Server-side timeouts (RFC 5321 section 4.5.3.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsConfig {
    /// Waiting for the next command (RFC: at least 5 minutes).
    #[serde(with = "humantime_serde")]
    pub command: Duration,
    /// Waiting for the next block of message data.
    #[serde(with = "humantime_serde")]
    pub data: Duration,
    /// Completing a TLS handshake.
    #[serde(with = "humantime_serde")]
    pub tls_handshake: Duration,
    /// On shutdown, how long sessions in a transaction may take to finish.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        Self {
            command: Duration::from_secs(300),
            data: Duration::from_secs(180),
            tls_handshake: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// "text" or "json".
    pub format: LogFormat,
    /// A tracing filter, e.g. "info" or "postern_gateway=debug".
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl GatewayConfig {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: GatewayConfig = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Renders the configuration as TOML (what the operator writes into a ConfigMap).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(self).map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.hostname.is_empty()
            || !self
                .hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return bad(format!(
                "hostname {:?} must be a non-empty DNS name (letters, digits, '.', '-')",
                self.hostname
            ));
        }
        if self.listeners.is_empty() {
            return bad("at least one listener is needed".into());
        }
        for (i, a) in self.listeners.iter().enumerate() {
            if self.listeners[..i].iter().any(|b| b.address == a.address) {
                return bad(format!("two listeners bind {}", a.address));
            }
        }
        if self.limits.max_message_size < 1024 {
            return bad("limits.max_message_size must be at least 1024 octets".into());
        }
        if self.limits.max_recipients == 0 {
            return bad("limits.max_recipients must be at least 1".into());
        }
        if self.limits.max_sessions == 0 || self.limits.max_sessions_per_ip == 0 {
            return bad("limits.max_sessions and max_sessions_per_ip must be at least 1".into());
        }
        if self.auth.block_after_failures == 0 {
            return bad("auth.block_after_failures must be at least 1".into());
        }
        for (name, d) in [
            ("timeouts.command", self.timeouts.command),
            ("timeouts.data", self.timeouts.data),
            ("timeouts.tls_handshake", self.timeouts.tls_handshake),
            ("tls.reload_interval", self.tls.reload_interval),
            ("auth.reload_interval", self.auth.reload_interval),
        ] {
            if d.is_zero() {
                return bad(format!("{name} must be longer than zero"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip() {
        let c = GatewayConfig::default();
        c.validate().expect("defaults are valid");
        let text = c.to_toml().expect("renders");
        let back: GatewayConfig = toml::from_str(&text).expect("parses");
        assert_eq!(back, c);
    }

    #[test]
    fn unknown_fields_are_errors() {
        let err = toml::from_str::<GatewayConfig>("hostnme = \"x\"").unwrap_err();
        assert!(err.to_string().contains("hostnme"), "{err}");
        let err = toml::from_str::<GatewayConfig>("[limits]\nmax_size = 1").unwrap_err();
        assert!(err.to_string().contains("max_size"), "{err}");
    }

    #[test]
    fn partial_file_takes_defaults() {
        let c: GatewayConfig = toml::from_str(
            r#"
hostname = "mail.example.com"
[[listeners]]
kind = "submission"
address = "127.0.0.1:2587"
[relay]
trusted_networks = ["10.0.0.0/8"]
[timeouts]
command = "1m 30s"
"#,
        )
        .expect("parses");
        c.validate().expect("valid");
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(c.timeouts.command, Duration::from_secs(90));
        assert_eq!(c.limits, LimitsConfig::default());
        assert!(c.relay.is_trusted("10.1.2.3".parse().unwrap()));
        assert!(c.relay.is_trusted("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.relay.is_trusted("192.168.1.1".parse().unwrap()));
    }

    #[test]
    fn default_trusts_nobody() {
        let c = GatewayConfig::default();
        assert!(!c.relay.is_trusted("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn validation_catches_nonsense() {
        let mut c = GatewayConfig::default();
        c.listeners.push(c.listeners[0].clone());
        assert!(c.validate().is_err());
        let mut c = GatewayConfig::default();
        c.hostname = "bad host".into();
        assert!(c.validate().is_err());
        let mut c = GatewayConfig::default();
        c.timeouts.command = Duration::ZERO;
        assert!(c.validate().is_err());
    }
}
