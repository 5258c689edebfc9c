//! HTTPS certificate: `<certs>/cert.pem` holds chain and key in one PEM (HAProxy's `crt`
//! format). SIGHUP swaps in a freshly read certificate; open connections keep theirs.

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: no certificate found ({detail})")]
    NoCertificate { path: PathBuf, detail: String },
    #[error("{path}: no private key found ({detail})")]
    NoKey { path: PathBuf, detail: String },
    #[error("{path}: certificate and key do not form a usable TLS configuration: {detail}")]
    Invalid { path: PathBuf, detail: String },
}

pub(crate) fn load_tls_acceptor(path: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::NoCertificate {
            path: path.into(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.into(),
            detail: "no CERTIFICATE block".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::NoKey {
        path: path.into(),
        detail: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| TlsError::Invalid {
            path: path.into(),
            detail: e.to_string(),
        })?;
    // HTTP/2 first: a client offering both gets it (the listener serves what was agreed).
    config.alpn_protocols = vec![super::listener::ALPN_H2.to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The HTTPS listener's current certificate, replaceable at run time.
#[derive(Clone)]
pub struct TlsReloader {
    pub path: PathBuf,
    pub current: Arc<ArcSwap<TlsAcceptor>>,
}

impl TlsReloader {
    /// Re-reads the PEM; on error the old certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load_tls_acceptor(&self.path)?;
        self.current.store(Arc::new(fresh));
        tracing::info!(path = %self.path.display(), "HTTPS certificate reloaded");
        Ok(())
    }
}
