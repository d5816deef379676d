//! Where and how mail for a destination goes: the smarthost, or the destination
//! domain's mail exchangers by DNS ([`super::dns`]); the TLS policy for the route;
//! and what a DNS answer that names no host means for the recipients (a null MX, a
//! domain that does not exist or has no address bounce; trouble defers).

use std::sync::Arc;

use postern_config::{DeliveryMode, GatewayConfig, SmarthostTls, TlsPolicy};
use postern_proto::EnhancedCode;

use super::dns::{Resolution, Resolver};
use super::outcome::{Outcome, Reason};

/// A host to try and its addresses, in the order to try them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub name: String,
    pub addrs: Vec<std::net::SocketAddr>,
}

/// How TLS is used on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// STARTTLS when offered; plain text otherwise or when the handshake fails.
    Opportunistic { verify: bool },
    /// STARTTLS or nothing: without TLS the mail is deferred.
    Require { verify: bool },
    /// TLS from the first byte.
    Implicit { verify: bool },
    /// Plain text.
    None,
}

/// Where and how to deliver.
#[derive(Debug, Clone)]
pub struct Route {
    pub hops: Vec<Hop>,
    pub tls: TlsMode,
    /// AUTH user name and password (smarthost).
    pub auth: Option<(String, String)>,
}

/// Chooses routes per the delivery configuration.
pub struct Router {
    pub mode: DeliveryMode,
    pub resolver: Resolver,
    pub config: Arc<GatewayConfig>,
    /// The smarthost's AUTH user name and password, when it has them.
    pub smarthost_auth: Option<(String, String)>,
}

impl Router {
    /// The TLS policy for an MX destination: required for the configured domains or
    /// everywhere, opportunistic otherwise.
    pub fn tls_for(&self, dest: &str) -> TlsMode {
        let t = &self.config.delivery.tls;
        let verify = t.verify_certificates;
        if t.policy == TlsPolicy::Require
            || t.require_domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(dest))
        {
            TlsMode::Require { verify }
        } else {
            TlsMode::Opportunistic { verify }
        }
    }

    /// The route to `dest`, or the outcome for all its recipients when there is none.
    pub async fn route(&self, dest: &str) -> Result<Route, Outcome> {
        let defer = |code: (u8, u16, u16), why: String| {
            Outcome::Deferred(Reason::new(EnhancedCode(code.0, code.1, code.2), why))
        };
        let bounce = |code: (u8, u16, u16), why: String| {
            Outcome::Bounced(Reason::new(EnhancedCode(code.0, code.1, code.2), why))
        };
        if self.mode == DeliveryMode::Smarthost {
            let Some(sh) = &self.config.delivery.smarthost else {
                return Err(defer((4, 3, 5), "no smarthost configured".to_owned()));
            };
            let hop = self
                .resolver
                .host(&sh.host)
                .await
                .map_err(|why| defer((4, 4, 3), why))?;
            let verify = sh.verify_certificate;
            return Ok(Route {
                hops: vec![hop],
                tls: match sh.tls {
                    SmarthostTls::Starttls => TlsMode::Require { verify },
                    SmarthostTls::Implicit => TlsMode::Implicit { verify },
                    SmarthostTls::None => TlsMode::None,
                },
                auth: self.smarthost_auth.clone(),
            });
        }
        match self.resolver.mx(dest).await {
            Resolution::Hops(hops) => Ok(Route {
                hops,
                tls: self.tls_for(dest),
                auth: None,
            }),
            Resolution::NullMx => Err(bounce(
                (5, 1, 10),
                format!("domain {dest} does not accept mail (null MX, RFC 7505)"),
            )),
            Resolution::NoSuchDomain(why) => Err(bounce((5, 1, 2), why)),
            Resolution::NoAddress(why) => Err(bounce((5, 4, 4), why)),
            Resolution::TempFail(why) => Err(defer((4, 4, 3), why)),
        }
    }
}
