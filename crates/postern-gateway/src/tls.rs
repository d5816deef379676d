//! Server TLS: rustls (TLS 1.2 and 1.3, ring provider) with a certificate resolver
//! whose key pair is replaced when the files change, so rotation (cert-manager,
//! a renewed Secret) needs no restart and drops no session. A self-signed pair can be
//! written on first start for trying the gateway out.

// TODO(structure): ensure_self_signed checks (Path::exists) and writes the certificate
// and key with std::fs inside the async gateway start; move it to spawn_blocking.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::ring::sign::any_supported_type;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Errors loading TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate chain {path}: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("cannot read private key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("cannot write self-signed certificate to {path}: {reason}")]
    SelfSigned { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Loads a PEM chain and key into a rustls key pair.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certificate {
            path: cert.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Certificate {
            path: cert.to_owned(),
            reason: "no CERTIFICATE block found".into(),
        });
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let signing = any_supported_type(&der).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|e| TlsError::Key {
        path: key.to_owned(),
        reason: format!("does not match the certificate: {e}"),
    })?;
    Ok(ck)
}

/// Writes a self-signed certificate for `names` when neither file exists yet.
/// Returns whether it wrote one.
pub fn ensure_self_signed(cert: &Path, key: &Path, names: &[String]) -> Result<bool, TlsError> {
    if cert.exists() || key.exists() {
        return Ok(false);
    }
    let fail = |path: &Path, reason: String| TlsError::SelfSigned {
        path: path.to_owned(),
        reason,
    };
    let generated = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| fail(cert, e.to_string()))?;
    for p in [cert, key] {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(|e| fail(p, e.to_string()))?;
        }
    }
    write_private(key, generated.signing_key.serialize_pem().as_bytes())
        .map_err(|e| fail(key, e.to_string()))?;
    std::fs::write(cert, generated.cert.pem()).map_err(|e| fail(cert, e.to_string()))?;
    Ok(true)
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Serves whatever key pair was loaded last.
#[derive(Debug)]
pub struct ReloadingResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|k| k.clone())
    }
}

/// The TLS side of the gateway: an acceptor and the watcher that keeps it current.
pub struct ServerTls {
    pub acceptor: TlsAcceptor,
    resolver: Arc<ReloadingResolver>,
    cert: PathBuf,
    key: PathBuf,
}

impl ServerTls {
    /// Loads the files and builds a rustls server config (TLS 1.2+) with session
    /// resumption per `cfg`.
    pub fn load(cfg: &postern_config::TlsConfig) -> Result<Self, TlsError> {
        let (cert, key) = (cfg.certificate.as_path(), cfg.private_key.as_path());
        let ck = load_certified_key(cert, key)?;
        let resolver = Arc::new(ReloadingResolver {
            current: RwLock::new(Arc::new(ck)),
        });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.session_storage = if cfg.session_cache_size > 0 {
            rustls::server::ServerSessionMemoryCache::new(cfg.session_cache_size)
        } else {
            Arc::new(rustls::server::NoServerSessionStorage {})
        };
        if cfg.session_tickets {
            // Keys rotate (rustls: every 6 hours, the previous one still accepted).
            config.ticketer = rustls::crypto::ring::Ticketer::new()?;
        }
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            resolver,
            cert: cert.to_owned(),
            key: key.to_owned(),
        })
    }

    /// Checks the files every `interval` and swaps in a changed pair. A pair that
    /// fails to load (mid-rotation the two files may not match yet) is logged and the
    /// old one kept.
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        crate::reload::spawn_watcher(
            "TLS certificate",
            vec![self.cert.clone(), self.key.clone()],
            interval,
            move || {
                let ck = load_certified_key(&this.cert, &this.key).map_err(|e| e.to_string())?;
                if let Ok(mut cur) = this.resolver.current.write() {
                    *cur = Arc::new(ck);
                }
                Ok(())
            },
        )
    }
}
