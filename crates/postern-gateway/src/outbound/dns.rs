//! DNS for delivery (RFC 5321 §5.1, RFC 7505) with hickory-resolver, using
//! configured name servers (the cluster DNS in Kubernetes; a test server in tests)
//! or those of /etc/resolv.conf:
//!
//! - MX records in preference order, equal preferences shuffled;
//! - no MX records (the domain exists) → the domain itself is the implicit MX;
//! - a null MX (`MX 0 .`) → the domain accepts no mail: permanent failure 5.1.10;
//! - NXDOMAIN → the domain does not exist: permanent failure 5.1.2;
//! - SERVFAIL, timeouts, refusals → temporary failure 4.4.3;
//! - each host's IPv6 and IPv4 addresses (AAAA first, then A).

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use postern_config::DnsConfig;

use super::route::Hop;

/// What DNS said about a destination domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Hosts to try, in order.
    Hops(Vec<Hop>),
    /// The domain publishes a null MX: it takes no mail.
    NullMx,
    /// The domain does not exist, or has no mail exchanger and no address.
    NoSuchDomain(String),
    /// Every mail exchanger's name failed to resolve (permanently).
    NoAddress(String),
    /// Try again later.
    TempFail(String),
}

/// Errors setting up the resolver.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up DNS resolution: {0}")]
pub struct ResolverError(String);

/// The DNS side of delivery.
pub struct Resolver {
    inner: TokioResolver,
    port: u16,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

enum HostAddrs {
    Found(Vec<IpAddr>),
    Missing,
    Temp(String),
}

impl Resolver {
    /// A resolver per `cfg`; `port` is the SMTP port of every resolved host.
    pub fn new(
        cfg: &DnsConfig,
        port: u16,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Result<Self, ResolverError> {
        let (config, mut opts) = if cfg.nameservers.is_empty() {
            hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| ResolverError(e.to_string()))?
        } else {
            let servers = cfg
                .nameservers
                .iter()
                .map(|ns| {
                    let mut server = NameServerConfig::udp_and_tcp(ns.ip());
                    server.connections = [ProtocolConfig::Udp, ProtocolConfig::Tcp]
                        .into_iter()
                        .map(|protocol| {
                            let mut c = ConnectionConfig::new(protocol);
                            c.port = ns.port();
                            c
                        })
                        .collect();
                    server
                })
                .collect();
            (
                ResolverConfig::from_name_servers(servers),
                Default::default(),
            )
        };
        opts.timeout = cfg.timeout;
        opts.attempts = cfg.attempts;
        opts.use_hosts_file = ResolveHosts::Never;
        let inner = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| ResolverError(e.to_string()))?;
        Ok(Self {
            inner,
            port,
            metrics,
        })
    }

    /// Resolves a recipient domain to the hosts to try.
    pub async fn mx(&self, domain: &str) -> Resolution {
        if let Some(lit) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
            let ip = lit.strip_prefix("IPv6:").unwrap_or(lit).parse::<IpAddr>();
            return match ip {
                Ok(ip) => Resolution::Hops(vec![Hop {
                    name: ip.to_string(),
                    addrs: vec![SocketAddr::new(ip, self.port)],
                }]),
                Err(_) => Resolution::NoSuchDomain(format!("bad address literal {domain}")),
            };
        }
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        let lookup = self.inner.mx_lookup(fqdn.as_str()).await;
        self.count("MX", &lookup);
        let mut mxs: Vec<(u16, String)> = match lookup {
            Ok(lookup) => lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                    _ => None,
                })
                .collect(),
            Err(e) if e.is_nx_domain() => {
                return Resolution::NoSuchDomain(format!(
                    "domain {domain} does not exist (NXDOMAIN)"
                ));
            }
            Err(e) if e.is_no_records_found() => Vec::new(),
            Err(e) => {
                return Resolution::TempFail(format!(
                    "MX lookup for {domain} failed: {}",
                    describe(&e)
                ));
            }
        };
        if mxs.is_empty() {
            // RFC 5321 §5.1: the domain itself is the implicit MX.
            return match self.addresses(&fqdn).await {
                HostAddrs::Found(addrs) => Resolution::Hops(vec![self.hop(domain, addrs)]),
                HostAddrs::Missing => {
                    Resolution::NoSuchDomain(format!("{domain} has no MX and no address records"))
                }
                HostAddrs::Temp(why) => Resolution::TempFail(why),
            };
        }
        let is_null = |(_, ex): &(u16, String)| ex == "." || ex.is_empty();
        if mxs.iter().all(is_null) {
            return Resolution::NullMx;
        }
        mxs.retain(|m| !is_null(m));
        shuffle_equal_preferences(&mut mxs);
        let mut hops = Vec::new();
        let mut temp = None;
        let mut missing = Vec::new();
        for (_, exchange) in &mxs {
            match self.addresses(exchange).await {
                HostAddrs::Found(addrs) => {
                    hops.push(self.hop(exchange.trim_end_matches('.'), addrs))
                }
                HostAddrs::Missing => missing.push(exchange.trim_end_matches('.').to_owned()),
                HostAddrs::Temp(why) => temp = Some(why),
            }
        }
        if !hops.is_empty() {
            return Resolution::Hops(hops);
        }
        match temp {
            Some(why) => Resolution::TempFail(why),
            None => Resolution::NoAddress(format!(
                "no address for the mail exchangers of {domain}: {}",
                missing.join(", ")
            )),
        }
    }

    /// Resolves a host name (smarthost) to its addresses.
    pub async fn host(&self, name: &str) -> Result<Hop, String> {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(self.hop(name, vec![ip]));
        }
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match self.addresses(&fqdn).await {
            HostAddrs::Found(addrs) => Ok(self.hop(name, addrs)),
            HostAddrs::Missing => Err(format!("host {name} has no address records")),
            HostAddrs::Temp(why) => Err(why),
        }
    }

    fn hop(&self, name: &str, addrs: Vec<IpAddr>) -> Hop {
        Hop {
            name: name.trim_end_matches('.').to_owned(),
            addrs: addrs
                .into_iter()
                .map(|ip| SocketAddr::new(ip, self.port))
                .collect(),
        }
    }

    /// AAAA then A records of `name` (an FQDN).
    async fn addresses(&self, name: &str) -> HostAddrs {
        let (v6, v4) = tokio::join!(self.inner.ipv6_lookup(name), self.inner.ipv4_lookup(name));
        self.count("AAAA", &v6);
        self.count("A", &v4);
        let mut addrs = Vec::new();
        let mut temp = None;
        for result in [v6, v4] {
            match result {
                Ok(lookup) => addrs.extend(lookup.answers().iter().filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })),
                Err(e) if e.is_no_records_found() => {}
                Err(e) => {
                    temp = Some(format!(
                        "address lookup for {name} failed: {}",
                        describe(&e)
                    ))
                }
            }
        }
        match (addrs.is_empty(), temp) {
            (false, _) => HostAddrs::Found(addrs),
            (true, Some(why)) => HostAddrs::Temp(why),
            (true, None) => HostAddrs::Missing,
        }
    }
}

impl Resolver {
    fn count<T>(&self, rtype: &str, r: &Result<T, NetError>) {
        let result = match r {
            Ok(_) => "ok",
            Err(e) if e.is_nx_domain() => "nxdomain",
            Err(e) if e.is_no_records_found() => "nodata",
            Err(_) => "error",
        };
        self.metrics
            .dns_lookups
            .with_label_values(&[rtype, result])
            .inc();
    }
}

fn describe(e: &NetError) -> String {
    e.to_string()
}

/// Sorts by preference and shuffles hosts of equal preference (RFC 5321 §5.1), so
/// load spreads over equal mail exchangers.
fn shuffle_equal_preferences(mxs: &mut [(u16, String)]) {
    let mut seed = [0u8; 8];
    let _ = getrandom::fill(&mut seed);
    let mut state = u64::from_le_bytes(seed) | 1;
    let mut next = || {
        // xorshift: plenty for spreading load.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    mxs.sort_by_key(|(pref, _)| *pref);
    let mut start = 0;
    while start < mxs.len() {
        let pref = mxs[start].0;
        let end = start + mxs[start..].iter().take_while(|(p, _)| *p == pref).count();
        for i in (start + 1..end).rev() {
            let j = start + (next() as usize) % (i - start + 1);
            mxs.swap(i, j);
        }
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preference_order_with_equal_shuffle() {
        let mut seen_first = std::collections::HashSet::new();
        for _ in 0..200 {
            let mut mxs = vec![
                (20, "c".to_owned()),
                (10, "a".to_owned()),
                (10, "b".to_owned()),
                (30, "d".to_owned()),
            ];
            shuffle_equal_preferences(&mut mxs);
            let prefs: Vec<u16> = mxs.iter().map(|m| m.0).collect();
            assert_eq!(prefs, [10, 10, 20, 30]);
            seen_first.insert(mxs[0].1.clone());
        }
        assert_eq!(
            seen_first.len(),
            2,
            "both equal-preference hosts come first sometimes"
        );
    }
}
