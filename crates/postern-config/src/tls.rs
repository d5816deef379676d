//! `[tls]`: the server certificate and key for STARTTLS and implicit TLS.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
    /// TLS sessions remembered for resumption by session ID (TLS 1.2); 0 turns it off.
    pub session_cache_size: usize,
    /// Stateless session tickets (RFC 5077, and TLS 1.3's), under keys that rotate every
    /// few hours: a client that comes back resumes without a full handshake, whatever
    /// the cache holds.
    pub session_tickets: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            certificate: PathBuf::from("/etc/postern/tls/tls.crt"),
            private_key: PathBuf::from("/etc/postern/tls/tls.key"),
            self_signed_if_missing: false,
            reload_interval: Duration::from_secs(5),
            session_cache_size: 4096,
            session_tickets: true,
        }
    }
}
