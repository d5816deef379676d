//! The gateway's configuration file (TOML): the contract between whoever writes the
//! file (a person, the Helm chart, the operator) and the gateway that reads it.
//!
//! Every struct denies unknown fields so a typo is an error, not a silently ignored
//! setting. Every field has a named default, stated in docs/configuration.md.
//! This crate does no I/O beyond reading the one file it is given.

// TODO(structure): GatewayConfig::load reads the file with std::fs (blocking; its
// callers are the CLI and start-up). The disallowed-methods ban in clippy.toml is aimed
// at the gateway's async code; scope it to postern-gateway, or give the gateway an async
// load.
#![allow(clippy::disallowed_methods)]

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
    /// How accepted mail reaches its recipients.
    pub delivery: DeliveryConfig,
    /// Prometheus metrics and health endpoints.
    pub metrics: MetricsConfig,
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
            delivery: DeliveryConfig::default(),
            metrics: MetricsConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// The HTTP endpoint for Prometheus and probes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve the HTTP endpoint at all.
    pub enabled: bool,
    /// Address of the HTTP listener serving /metrics, /healthz and /readyz.
    pub address: SocketAddr,
    /// Recipient domains that get their own `destination` label on delivery metrics;
    /// every other domain is counted as "other", so label cardinality stays bounded.
    pub destination_domains: Vec<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            address: ([0, 0, 0, 0], 9098).into(),
            destination_domains: Vec::new(),
        }
    }
}

/// Where accepted mail goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryMode {
    /// To each recipient domain's mail exchangers, found by DNS MX lookup.
    Mx,
    /// Everything to one relay host (`delivery.smarthost`).
    Smarthost,
    /// Keep everything queued (nothing is sent): for trying out, or to hold mail
    /// during maintenance, like Postfix's hold queue.
    Hold,
}

/// Delivery: next hop, TLS, retries and connection limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// mx, smarthost or hold.
    pub mode: DeliveryMode,
    /// Name sent in EHLO; empty means `hostname`.
    pub helo_name: String,
    /// DNS used for MX, A and AAAA lookups.
    pub dns: DnsConfig,
    /// TCP port of mail exchangers (25 everywhere in practice).
    pub mx_port: u16,
    /// The relay host for `mode = "smarthost"`.
    pub smarthost: Option<SmarthostConfig>,
    /// TLS towards mail exchangers.
    pub tls: OutboundTlsConfig,
    /// Retry schedule and lifetime.
    pub retry: RetryConfig,
    /// Outbound connection limits and batching.
    pub limits: OutboundLimits,
    /// Client-side timeouts (RFC 5321 section 4.5.3.2).
    pub timeouts: OutboundTimeouts,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            mode: DeliveryMode::Mx,
            helo_name: String::new(),
            dns: DnsConfig::default(),
            mx_port: 25,
            smarthost: None,
            tls: OutboundTlsConfig::default(),
            retry: RetryConfig::default(),
            limits: OutboundLimits::default(),
            timeouts: OutboundTimeouts::default(),
        }
    }
}

/// DNS resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Name servers as `ip:port`; empty means those of /etc/resolv.conf (in
    /// Kubernetes, the cluster DNS).
    pub nameservers: Vec<SocketAddr>,
    /// Per query.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Tries per query.
    pub attempts: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(5),
            attempts: 2,
        }
    }
}

/// How TLS is used with the smarthost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmarthostTls {
    /// STARTTLS, required: without it nothing is sent.
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// Plain text (only for a smarthost on a trusted network).
    None,
}

/// The relay host everything goes to in smarthost mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmarthostConfig {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    #[serde(default = "default_smarthost_port")]
    pub port: u16,
    /// starttls, implicit or none.
    #[serde(default = "default_smarthost_tls")]
    pub tls: SmarthostTls,
    /// File with one line `username:password` for AUTH; none means no AUTH.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Verify the smarthost's certificate (against the system roots and `ca_file`).
    #[serde(default = "default_true")]
    pub verify_certificate: bool,
    /// Extra PEM CA certificates to trust.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_smarthost_port() -> u16 {
    587
}
fn default_smarthost_tls() -> SmarthostTls {
    SmarthostTls::Starttls
}
fn default_true() -> bool {
    true
}

/// STARTTLS use towards mail exchangers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsPolicy {
    /// Use STARTTLS when offered; fall back to plain text when it is not offered or
    /// the handshake fails (Postfix's `may`).
    Opportunistic,
    /// Never send in plain text: no STARTTLS or a failed handshake defers the mail.
    Require,
}

/// Outbound TLS for MX delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundTlsConfig {
    /// Default policy for every destination.
    pub policy: TlsPolicy,
    /// Destination domains that get `require` whatever the default.
    pub require_domains: Vec<String>,
    /// Verify certificates (names and chains against the system roots and `ca_file`).
    /// Off by default, as most MX certificates do not match the MX name.
    pub verify_certificates: bool,
    /// Extra PEM CA certificates to trust.
    pub ca_file: Option<PathBuf>,
}

impl Default for OutboundTlsConfig {
    fn default() -> Self {
        Self {
            policy: TlsPolicy::Opportunistic,
            require_domains: Vec::new(),
            verify_certificates: false,
            ca_file: None,
        }
    }
}

/// When failed deliveries are tried again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Wait after the first failure.
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// Longest wait between tries.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// Each wait is this many times the previous one.
    pub factor: f64,
    /// Random spread of each wait, as a fraction (0.2 = ±20 %).
    pub jitter: f64,
    /// A message still undelivered this long after arrival is bounced (4.4.7).
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(300),
            max: Duration::from_secs(3600),
            factor: 2.0,
            jitter: 0.2,
            max_lifetime: Duration::from_secs(5 * 24 * 3600),
        }
    }
}

/// Outbound connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundLimits {
    /// Concurrent outbound connections in total.
    pub max_connections: usize,
    /// Concurrent connections to one destination (domain, or the smarthost).
    pub max_connections_per_destination: usize,
    /// Messages sent over one connection before it is closed.
    pub max_messages_per_connection: usize,
    /// Recipients in one transaction; more are sent in further transactions.
    pub max_recipients_per_transaction: usize,
    /// How long a connection with nothing more to send stays open for the
    /// destination's next messages (Postfix's `smtp_connection_cache_time_limit`).
    /// 0 closes it as soon as its messages are sent.
    #[serde(with = "humantime_serde")]
    pub idle_connection_time: Duration,
    /// A connection is not given more messages once it is this old (Postfix's
    /// `smtp_connection_reuse_time_limit`).
    #[serde(with = "humantime_serde")]
    pub max_connection_age: Duration,
}

impl Default for OutboundLimits {
    fn default() -> Self {
        Self {
            max_connections: 100,
            max_connections_per_destination: 10,
            max_messages_per_connection: 100,
            max_recipients_per_transaction: 100,
            idle_connection_time: Duration::from_secs(2),
            max_connection_age: Duration::from_secs(300),
        }
    }
}

/// Client-side timeouts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundTimeouts {
    #[serde(with = "humantime_serde")]
    pub connect: Duration,
    #[serde(with = "humantime_serde")]
    pub greeting: Duration,
    #[serde(with = "humantime_serde")]
    pub command: Duration,
    #[serde(with = "humantime_serde")]
    pub data_init: Duration,
    #[serde(with = "humantime_serde")]
    pub data_block: Duration,
    #[serde(with = "humantime_serde")]
    pub data_done: Duration,
}

impl Default for OutboundTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(30),
            greeting: Duration::from_secs(300),
            command: Duration::from_secs(300),
            data_init: Duration::from_secs(120),
            data_block: Duration::from_secs(180),
            data_done: Duration::from_secs(600),
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
    /// Below this much free space new mail is refused with 452 4.3.1 and the gateway
    /// reports itself not ready, so queued mail always has room to be delivered.
    pub min_free_bytes: u64,
    /// Files of delivered messages kept (in `free/` under the directory) for new
    /// messages to reuse, so that a busy spool does not allocate and free an inode per
    /// message; only files of at most 64 KiB are kept. 0 removes every delivered file.
    pub recycle_files: usize,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            directory: PathBuf::from("/var/spool/postern"),
            min_free_bytes: 100 * 1024 * 1024,
            recycle_files: 1000,
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
    /// New connections one client IP may open per minute; more get 421 4.7.0 (like
    /// Postfix's smtpd_client_connection_rate_limit). 0: no limit.
    pub connections_per_minute_per_ip: u32,
    /// Messages (MAIL commands) one client IP may send per minute; more get 450 4.7.1
    /// (like Postfix's smtpd_client_message_rate_limit). 0: no limit.
    pub messages_per_minute_per_ip: u32,
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
            connections_per_minute_per_ip: 0,
            messages_per_minute_per_ip: 0,
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
        if self.delivery.mode == DeliveryMode::Smarthost && self.delivery.smarthost.is_none() {
            return bad("delivery.mode = \"smarthost\" needs a [delivery.smarthost] table".into());
        }
        let r = &self.delivery.retry;
        // Written so that a NaN factor fails too.
        if r.factor.is_nan()
            || r.factor < 1.0
            || !(0.0..1.0).contains(&r.jitter)
            || r.initial.is_zero()
            || r.max < r.initial
        {
            return bad("delivery.retry: factor >= 1, 0 <= jitter < 1, 0 < initial <= max".into());
        }
        let l = &self.delivery.limits;
        if l.max_connections == 0
            || l.max_connections_per_destination == 0
            || l.max_messages_per_connection == 0
            || l.max_recipients_per_transaction == 0
        {
            return bad("delivery.limits values must be at least 1".into());
        }
        if self.delivery.dns.attempts == 0 {
            return bad("delivery.dns.attempts must be at least 1".into());
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
        let c = GatewayConfig {
            hostname: "bad host".into(),
            ..Default::default()
        };
        assert!(c.validate().is_err());
        let mut c = GatewayConfig::default();
        c.timeouts.command = Duration::ZERO;
        assert!(c.validate().is_err());
    }
}
