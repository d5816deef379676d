//! Self-signed TLS for relays without cert-manager or an existing Secret: a CA
//! (published so clients can trust it) and a serving certificate for the Service's
//! DNS names, renewed when two thirds of its life have passed.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};

/// Lifetimes: the CA lives long; the leaf is renewed at two thirds of its life.
pub const CA_DAYS: i64 = 3650;
pub const LEAF_DAYS: i64 = 90;

/// Errors making certificates.
#[derive(Debug, thiserror::Error)]
#[error("certificate generation failed: {0}")]
pub struct CertError(String);

impl From<rcgen::Error> for CertError {
    fn from(e: rcgen::Error) -> Self {
        CertError(e.to_string())
    }
}

/// A CA's certificate and key in PEM.
#[derive(Debug, Clone)]
pub struct CaPem {
    pub cert: String,
    pub key: String,
}

/// A serving certificate (chain: leaf then CA) and key in PEM, with its expiry.
#[derive(Debug, Clone)]
pub struct LeafPem {
    pub chain: String,
    pub key: String,
    pub not_after: OffsetDateTime,
}

/// The CA's parameters: the same subject every time, so a stored CA key can issue
/// again without parsing its certificate.
fn ca_params(relay: &str, now: OffsetDateTime) -> Result<CertificateParams, CertError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name
        .push(DnType::CommonName, format!("{relay} Postern CA"));
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(CA_DAYS);
    Ok(p)
}

/// A new CA.
pub fn new_ca(relay: &str, now: OffsetDateTime) -> Result<CaPem, CertError> {
    let p = ca_params(relay, now)?;
    let key = KeyPair::generate()?;
    let cert = p.self_signed(&key)?;
    Ok(CaPem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A serving certificate for `names`, signed by relay `relay`'s `ca`.
pub fn new_leaf(
    relay: &str,
    ca: &CaPem,
    names: &[String],
    now: OffsetDateTime,
) -> Result<LeafPem, CertError> {
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let issuer = Issuer::new(ca_params(relay, now)?, ca_key);
    let mut p = CertificateParams::new(names.to_vec())?;
    if let Some(first) = names.first() {
        p.distinguished_name.push(DnType::CommonName, first.clone());
    }
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(LEAF_DAYS);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &issuer)?;
    Ok(LeafPem {
        chain: format!("{}{}", cert.pem(), ca.cert),
        key: key.serialize_pem(),
        not_after: p.not_after,
    })
}

/// Whether a certificate issued for `LEAF_DAYS` and expiring at `not_after` is due
/// for renewal (two thirds of its life gone).
pub fn due_for_renewal(not_after: OffsetDateTime, now: OffsetDateTime) -> bool {
    let life = Duration::days(LEAF_DAYS);
    now >= not_after - life / 3
}

/// The DNS names a relay's certificate covers.
pub fn service_names(relay: &str, namespace: &str, extra: &[String]) -> Vec<String> {
    let mut names = vec![
        format!("{relay}.{namespace}.svc.cluster.local"),
        format!("{relay}.{namespace}.svc"),
        format!("{relay}.{namespace}"),
        relay.to_owned(),
    ];
    names.extend(extra.iter().cloned());
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_signs_a_leaf_for_the_service_names() {
        let now = OffsetDateTime::now_utc();
        let ca = new_ca("mail", now).unwrap();
        let names = service_names("mail", "apps", &["smtp.example.com".into()]);
        let leaf = new_leaf("mail", &ca, &names, now).unwrap();
        assert!(leaf.chain.matches("BEGIN CERTIFICATE").count() == 2);
        assert!(leaf.key.contains("PRIVATE KEY"));
        assert!(!due_for_renewal(leaf.not_after, now));
        assert!(due_for_renewal(leaf.not_after, now + Duration::days(61)));
        assert!(!due_for_renewal(leaf.not_after, now + Duration::days(59)));
    }
}
