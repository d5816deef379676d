//! `[relay]`: who may relay without authenticating.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

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
