//! The server certificate, from one of three sources: a cert-manager Certificate the
//! operator creates, an existing Secret the user names, or (the default) a
//! self-signed CA and leaf the operator makes and renews.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject};
use kube::{Client, ResourceExt};
use postern_api::{IssuerRef, MailRelay, TlsSpec};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::cluster::{self, apply, secret_value};
use super::{Error, Target};
use crate::names::Names;
use crate::{certs, resources};

/// Annotation on the operator-made TLS Secret: when its certificate expires.
const NOT_AFTER: &str = "postern.dev/not-after";

/// Where the certificate comes from, as the spec chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// `tls.issuerRef`: cert-manager issues into the Secret `<name>-tls`.
    CertManager(&'a IssuerRef),
    /// `tls.secretName`: the user's own Secret.
    ExistingSecret(&'a str),
    /// Neither: the operator's own CA signs a leaf into `<name>-tls`.
    SelfSigned,
}

impl<'a> Source<'a> {
    /// The source `tls` selects; an issuer wins over a Secret name.
    pub fn of(tls: &'a TlsSpec) -> Self {
        if let Some(issuer) = &tls.issuer_ref {
            Source::CertManager(issuer)
        } else if let Some(existing) = &tls.secret_name {
            Source::ExistingSecret(existing)
        } else {
            Source::SelfSigned
        }
    }
}

/// What the TLS step settled on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// The Secret holding tls.crt and tls.key that the pods mount.
    pub secret: String,
    /// When the serving certificate expires; known only for self-signed ones.
    pub expiry: Option<OffsetDateTime>,
    /// Why the certificate cannot come from where the spec says (a Degraded reason).
    pub problem: Option<String>,
}

/// Makes sure the certificate exists where the spec says it comes from.
pub async fn ensure(target: &Target<'_>, now: OffsetDateTime) -> Result<Tls, Error> {
    let (relay, names, ns) = (target.relay, &target.names, target.namespace);
    let secrets: Api<Secret> = target.api();
    let dns_names = certs::service_names(&relay.name_any(), ns, &relay.spec.tls.dns_names);
    match Source::of(&relay.spec.tls) {
        Source::CertManager(issuer) => {
            cert_manager(relay, target.client, ns, issuer, &dns_names, names).await
        }
        Source::ExistingSecret(existing) => existing_secret(&secrets, existing).await,
        Source::SelfSigned => self_signed(relay, &secrets, names, &dns_names, now).await,
    }
}

/// Applies a cert-manager Certificate, when cert-manager is installed.
async fn cert_manager(
    relay: &MailRelay,
    client: &Client,
    ns: &str,
    issuer: &IssuerRef,
    dns_names: &[String],
    names: &Names,
) -> Result<Tls, Error> {
    let mut problem = None;
    if cluster::crd_exists(client, cluster::CERTIFICATE_CRD).await? {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), ns, &resources::certificate::api_resource());
        apply(
            &api,
            &resources::certificate::build(relay, issuer, dns_names),
        )
        .await?;
    } else {
        problem = Some(
            "tls.issuerRef is set but cert-manager is not installed (no Certificate CRD)".into(),
        );
    }
    Ok(Tls {
        secret: names.tls(),
        expiry: None,
        problem,
    })
}

/// Checks that the user's Secret exists.
async fn existing_secret(secrets: &Api<Secret>, existing: &str) -> Result<Tls, Error> {
    let problem = match secrets.get_opt(existing).await? {
        Some(_) => None,
        None => Some(format!("tls.secretName {existing} does not exist")),
    };
    Ok(Tls {
        secret: existing.to_owned(),
        expiry: None,
        problem,
    })
}

/// Keeps the operator's CA (made once) and a leaf it signs, renewed when due.
async fn self_signed(
    relay: &MailRelay,
    secrets: &Api<Secret>,
    names: &Names,
    dns_names: &[String],
    now: OffsetDateTime,
) -> Result<Tls, Error> {
    let name = relay.name_any();
    let ca = match secrets.get_opt(&names.ca()).await? {
        Some(s) => match (secret_value(&s, "ca.crt"), secret_value(&s, "ca.key")) {
            (Some(cert), Some(key)) => certs::CaPem { cert, key },
            _ => {
                return Err(Error::Secret {
                    secret: names.ca(),
                    what: "lacks ca.crt or ca.key".into(),
                });
            }
        },
        None => {
            let ca = certs::new_ca(&name, now)?;
            apply(secrets, &resources::secret::ca(relay, &ca.cert, &ca.key)).await?;
            ca
        }
    };
    let current = secrets.get_opt(&names.tls()).await?;
    let not_after = current
        .as_ref()
        .and_then(|s| s.annotations().get(NOT_AFTER).cloned())
        .and_then(|v| OffsetDateTime::parse(&v, &Rfc3339).ok());
    let expiry = match not_after {
        Some(t) if !certs::due_for_renewal(t, now) => t,
        _ => {
            let leaf = certs::new_leaf(&name, &ca, dns_names, now)?;
            let mut s = resources::secret::tls(relay, &leaf.chain, &leaf.key);
            let stamp = leaf.not_after.format(&Rfc3339).unwrap_or_default();
            s.metadata.annotations = Some([(NOT_AFTER.to_owned(), stamp)].into());
            apply(secrets, &s).await?;
            leaf.not_after
        }
    };
    Ok(Tls {
        secret: names.tls(),
        expiry: Some(expiry),
        problem: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issuer_wins_then_a_secret_then_self_signed() {
        let tls: TlsSpec = serde_json::from_value(serde_json::json!({
            "issuerRef": {"name": "letsencrypt"},
            "secretName": "mine"
        }))
        .unwrap();
        assert!(matches!(Source::of(&tls), Source::CertManager(i) if i.name == "letsencrypt"));
        let tls = TlsSpec {
            issuer_ref: None,
            ..tls
        };
        assert_eq!(Source::of(&tls), Source::ExistingSecret("mine"));
        assert_eq!(Source::of(&TlsSpec::default()), Source::SelfSigned);
    }
}
