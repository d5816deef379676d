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
