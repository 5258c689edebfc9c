//! FRP certificates (contract §1.9): generated once into `<certs>/frp` when TLS is on and the
//! directory does not exist; an existing directory is never modified, a partial one is
//! refused naming what is missing. Also loads the server's mutual-TLS acceptor, the client's
//! TLS connector material, and describes certificates for `harp certs`.
//!
//! Keys are ECDSA P-256 (SHA-256 signatures), not the reference's RSA 2048: `rcgen` with the
//! `ring` backend cannot generate RSA keys, and Go's TLS stack (frpc 0.61+) and rustls both
//! accept ECDSA P-256 for server and client authentication. Server and client certificates
//! carry the SAN (no EKU, which Go accepts for both roles), `CA:FALSE`, and the Subject and
//! Authority Key Identifiers that OpenSSL-made certificates have: OpenSSL (`openssl verify`,
//! curl, Python `ssl`) picks a certificate's issuer by those identifiers and by subject, so a
//! leaf without them whose issuer name equals its own subject looks self-signed and is refused.
//! For the same reason the CA's subject differs from the server's.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// Files the server and the copied client configuration need; all must exist.
pub(crate) const REQUIRED: [&str; 5] = [
    "ca.crt",
    "server.crt",
    "server.key",
    "client.crt",
    "client.key",
];
pub(crate) const SERVER_NAME: &str = "harp.nc";
pub(crate) const CLIENT_NAME: &str = "harp.client.nc";
/// The CA's common name. The reference's CA shares `CN=harp.nc` with its server certificate
/// (only the key identifiers OpenSSL adds keep that chain verifiable); a distinct name keeps
/// issuer and leaf apart for every verifier, and names the CA for what it is.
pub(crate) const CA_NAME: &str = "harp.nc CA";
/// Expiry closer than this is logged at warning level on start.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// Where the FRP certificates live under `HP_CERTS_DIR` (HaRP's `/certs/frp` layout).
pub fn frp_dir(certs_dir: &Path) -> PathBuf {
    certs_dir.join("frp")
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{dir} exists but is incomplete (missing: {missing}); harp never regenerates an existing FRP certificate directory because remote engines trust its CA — restore the files, or delete the directory to generate a new CA and redistribute it")]
    Partial { dir: PathBuf, missing: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {detail}")]
    Read { path: PathBuf, detail: String },
    #[error("FRP TLS configuration: {0}")]
    Tls(String),
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Generated,
    Existing,
}

/// Generates the directory when missing (validity from `validity_days`, asked only then).
pub fn ensure_frp_certs(
    dir: &Path,
    validity_days: impl FnOnce() -> Result<u32, crate::config::ConfigError>,
) -> Result<Outcome, CertError> {
    if dir.exists() {
        let missing: Vec<&str> = REQUIRED
            .iter()
            .copied()
            .filter(|f| !dir.join(f).is_file())
            .collect();
        if !missing.is_empty() {
            return Err(CertError::Partial {
                dir: dir.into(),
                missing: missing.join(", "),
            });
        }
        return Ok(Outcome::Existing);
    }
    let days = validity_days()?;
    generate(dir, days)?;
    tracing::warn!(dir = %dir.display(), days, "generated FRP certificates (copy ca.crt, client.crt and client.key to remote engines)");
    Ok(Outcome::Generated)
}

fn write(dir: &Path, name: &str, contents: &str) -> Result<(), CertError> {
    let path = dir.join(name);
    std::fs::write(&path, contents).map_err(|source| CertError::Write { path, source })
}

fn params(cn: &str, san: Option<&str>, days: u32) -> Result<CertificateParams, CertError> {
    let mut p = CertificateParams::new(san.map(|s| vec![s.to_string()]).unwrap_or_default())?;
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = now + time::Duration::days(i64::from(days));
    p.serial_number = Some(SerialNumber::from_slice(&rand::random::<[u8; 16]>()[..]));
    Ok(p)
}

fn generate(dir: &Path, days: u32) -> Result<(), CertError> {
    // Write into a sibling temp dir and rename, so a crash never leaves a partial directory.
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|source| CertError::Write {
        path: parent.into(),
        source,
    })?;
    let tmp = parent.join(format!(".frp-gen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|source| CertError::Write {
        path: tmp.clone(),
        source,
    })?;

    let ca_key = KeyPair::generate()?;
    let mut ca_params = params(CA_NAME, None, days)?;
    // rcgen writes the Subject Key Identifier for every certificate that states its CA flag.
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key)?;
    write(&tmp, "ca.key", &ca_key.serialize_pem())?;
    write(&tmp, "ca.crt", &ca.pem())?;
    write(&tmp, "ca.srl", "02\n")?;
    for (stem, cn) in [("server", SERVER_NAME), ("client", CLIENT_NAME)] {
        let key = KeyPair::generate()?;
        let mut p = params(cn, Some(cn), days)?;
        p.is_ca = IsCa::ExplicitNoCa;
        p.use_authority_key_identifier_extension = true;
        // The CSR is kept for reference only; rcgen puts none of these in a request.
        let mut csr_params = p.clone();
        csr_params.serial_number = None;
        csr_params.is_ca = IsCa::NoCa;
        csr_params.use_authority_key_identifier_extension = false;
        let csr = csr_params.serialize_request(&key)?;
        let cert = p.signed_by(&key, &ca, &ca_key)?;
        write(&tmp, &format!("{stem}.key"), &key.serialize_pem())?;
        write(&tmp, &format!("{stem}.csr"), &csr.pem()?)?;
        write(&tmp, &format!("{stem}.crt"), &cert.pem())?;
        write(
            &tmp,
            &format!("{stem}-openssl.cnf"),
            &format!("# Written by harp for reference; harp does not use openssl.\n[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = {cn}\n[ext]\nsubjectAltName = DNS:{cn}\n"),
        )?;
    }
    std::fs::rename(&tmp, dir).map_err(|source| CertError::Write {
        path: dir.into(),
        source,
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| CertError::Read {
            path: path.into(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(CertError::Read {
            path: path.into(),
            detail: "no certificate".into(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| CertError::Read {
        path: path.into(),
        detail: e.to_string(),
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client's provider offers AES-128-GCM first, as Go's crypto/tls (frpc) does on CPUs
/// with AES instructions. ring's default order puts AES-256 first: 14 AES rounds per block
/// instead of 10, and the cipher was the largest user-space cost of a bulk transfer through
/// the tunnel (issue #14). The server keeps honouring the client's order, so what frpc
/// negotiates is unchanged.
fn client_provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    // Stable: suites keep their relative order except that AES-128 moves ahead of AES-256.
    p.cipher_suites.sort_by_key(|s| {
        !matches!(
            s.suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    Arc::new(p)
}

fn roots(ca: &Path) -> Result<rustls::RootCertStore, CertError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs(ca)? {
        roots.add(c).map_err(|e| CertError::Read {
            path: ca.into(),
            detail: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// frps's TLS with HaRP's files: client certificates required and verified against `ca.crt`.
/// The server builds its acceptor from `FrpSettings` instead; this checks the generated files.
#[cfg(test)]
pub(crate) fn frp_server_acceptor(dir: &Path) -> Result<TlsAcceptor, CertError> {
    server_acceptor(
        &dir.join("server.crt"),
        &dir.join("server.key"),
        Some(&dir.join("ca.crt")),
    )
}

/// Server certificate and key; with `ca`, client certificates are required and verified.
pub(crate) fn server_acceptor(
    cert: &Path,
    key: &Path,
    ca: Option<&Path>,
) -> Result<TlsAcceptor, CertError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| CertError::Tls(e.to_string()))?;
    let builder = match ca {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                provider(),
            )
            .build()
            .map_err(|e| CertError::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(read_certs(cert)?, read_key(key)?)
        .map_err(|e| CertError::Tls(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// frpc's TLS: optional client certificate, server verified against `ca` when given
/// (frpc skips verification without `trustedCaFile`; harp's client insists on a CA).
pub(crate) fn client_config(
    ca: &Path,
    cert_key: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, CertError> {
    let builder = rustls::ClientConfig::builder_with_provider(client_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| CertError::Tls(e.to_string()))?
        .with_root_certificates(roots(ca)?);
    match cert_key {
        Some((cert, key)) => builder
            .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
            .map_err(|e| CertError::Tls(e.to_string())),
        None => Ok(builder.with_no_client_auth()),
    }
}

#[derive(Debug)]
pub struct CertInfo {
    pub file: String,
    pub subject: String,
    pub sha256: String,
    pub not_after: String,
    pub days_left: i64,
}

/// Subject, SHA-256 fingerprint and expiry of the `.crt` files in `dir`.
pub fn describe(dir: &Path) -> Result<Vec<CertInfo>, CertError> {
    let mut out = Vec::new();
    for file in ["ca.crt", "server.crt", "client.crt"] {
        let path = dir.join(file);
        let der = read_certs(&path)?.remove(0);
        let (_, x) = x509_parser::parse_x509_certificate(&der).map_err(|e| CertError::Read {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let not_after = x.validity().not_after;
        let days_left =
            (not_after.timestamp() - time::OffsetDateTime::now_utc().unix_timestamp()) / 86_400;
        let digest = ring::digest::digest(&ring::digest::SHA256, &der);
        out.push(CertInfo {
            file: file.into(),
            subject: x.subject().to_string(),
            sha256: digest
                .as_ref()
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(":"),
            not_after: not_after.to_string(),
            days_left,
        });
    }
    Ok(out)
}

/// Logs a warning for each certificate expiring within [`EXPIRY_WARNING_DAYS`].
pub(crate) fn warn_if_expiring(dir: &Path) {
    if let Ok(infos) = describe(dir) {
        for i in infos.iter().filter(|i| i.days_left < EXPIRY_WARNING_DAYS) {
            tracing::warn!(file = %i.file, not_after = %i.not_after, days_left = i.days_left, "FRP certificate expires soon: delete {} and restart harp to renew, then redistribute ca.crt/client.*", dir.display());
        }
    }
}

#[cfg(test)]
mod tests;
