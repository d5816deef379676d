//! `[delivery]`: how accepted mail reaches its recipients (next hop, DNS, outbound
//! TLS, retries, connection limits and client-side timeouts).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
