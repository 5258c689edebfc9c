//! The Kubernetes API client: typed requests over `reqwest` (rustls). Owns credentials (static
//! token, else the token file re-read on every call so rotated projected tokens work), the CA and
//! verification switch, per-call deadlines and the bound on every response body.

use super::settings::K8sSettings;
use std::time::Duration;

/// Contract §4.9: every Kubernetes call finishes within 60 s.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// An API server that does not accept a TCP connection in this time is reported unreachable,
/// so AppAPI gets a fast 503 instead of waiting out the 60 s call budget.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest response body harp reads from the API server; the objects harp reads (one
/// Deployment, Service or a namespace's pods list) are far smaller.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// A token file larger than this is not a token.
const MAX_TOKEN_BYTES: u64 = 64 * 1024;

/// Why a Kubernetes call failed; the messages name the API server or the refused verb, never
/// the token.
#[derive(Debug, thiserror::Error)]
pub(crate) enum K8sError {
    #[error("Kubernetes API server is not configured (set HP_K8S_API_SERVER or run in a cluster)")]
    NotConfigured,
    #[error(
        "no Kubernetes token: HP_K8S_BEARER_TOKEN is unset and {path} cannot be read ({reason})"
    )]
    NoToken { path: String, reason: String },
    #[error("Kubernetes CA file {path} is not a PEM certificate: {reason}")]
    BadCa { path: String, reason: String },
    #[error("Kubernetes API server {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Kubernetes API server {url} answered with more than {MAX_BODY_BYTES} bytes")]
    BodyTooLarge { url: String },
    #[error("Kubernetes API server {url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
}

/// A ready client for one API server.
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    static_token: Option<String>,
    token_file: std::path::PathBuf,
}

impl Client {
    /// Builds the client; the CA file is read now (used only if it exists, contract §4.9).
    pub(crate) fn new(settings: &K8sSettings) -> Result<Client, K8sError> {
        let base = settings.api_server.clone().ok_or(K8sError::NotConfigured)?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        if settings.ca_file.is_file() {
            let bad = |reason: String| K8sError::BadCa {
                path: settings.ca_file.display().to_string(),
                reason,
            };
            let pem = std::fs::read(&settings.ca_file).map_err(|e| bad(e.to_string()))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| bad(e.to_string()))?;
            builder = builder.add_root_certificate(cert);
        }
        if !settings.verify_tls {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| K8sError::Unreachable {
            url: base.clone(),
            reason: e.to_string(),
        })?;
        Ok(Client {
            http,
            base,
            static_token: settings.static_token.clone(),
            token_file: settings.token_file.clone(),
        })
    }

    /// The bearer token for this call: the static one, else the file as it is now.
    fn token(&self) -> Result<String, K8sError> {
        if let Some(t) = &self.static_token {
            return Ok(t.clone());
        }
        let no_token = |reason: String| K8sError::NoToken {
            path: self.token_file.display().to_string(),
            reason,
        };
        use std::io::Read;
        let file = std::fs::File::open(&self.token_file).map_err(|e| no_token(e.to_string()))?;
        let mut raw = String::new();
        file.take(MAX_TOKEN_BYTES + 1)
            .read_to_string(&mut raw)
            .map_err(|e| no_token(e.to_string()))?;
        if raw.len() as u64 > MAX_TOKEN_BYTES {
            return Err(no_token(format!("larger than {MAX_TOKEN_BYTES} bytes")));
        }
        let token = raw.trim();
        if token.is_empty() {
            return Err(no_token("the file is empty".into()));
        }
        Ok(token.to_string())
    }

    /// `GET <path>`; answers the status and the bounded body.
    pub(crate) async fn get(&self, path: &str) -> Result<(u16, Vec<u8>), K8sError> {
        let url = format!("{}{path}", self.base);
        let token = self.token()?;
        let unreachable = |e: reqwest::Error| K8sError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        };
        let mut resp = self
            .http
            .get(&url)
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(unreachable)?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(K8sError::BodyTooLarge { url });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }

    /// `GET /readyz`: Ok when the API server says it is ready.
    pub(crate) async fn readyz(&self) -> Result<(), K8sError> {
        let (status, body) = self.get("/readyz").await?;
        if status == 200 {
            return Ok(());
        }
        Err(K8sError::Status {
            url: format!("{}/readyz", self.base),
            status,
            body: String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
        })
    }
}
