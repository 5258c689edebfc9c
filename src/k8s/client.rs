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
/// How much of an API server's answer harp keeps for messages.
const MAX_MESSAGE: usize = 512;
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
    #[error("Kubernetes API server {url} refused harp's token (401): check HP_K8S_BEARER_TOKEN / HP_K8S_BEARER_TOKEN_FILE")]
    Unauthorized { url: String },
    #[error("Kubernetes RBAC refused harp to {verb} {resource} in namespace '{namespace}' (403: {message}); grant it in harp's Role (README: Kubernetes)")]
    Forbidden {
        verb: &'static str,
        resource: &'static str,
        namespace: String,
        message: String,
    },
    #[error("Kubernetes API server {url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
}

/// The body of a write: its JSON and how the API server is to read it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BodyKind {
    Json,
    StrategicMerge,
}

impl BodyKind {
    fn mime(self) -> &'static str {
        match self {
            BodyKind::Json => "application/json",
            BodyKind::StrategicMerge => "application/strategic-merge-patch+json",
        }
    }
}

/// One request to the API server, with the RBAC words (`verb`, `resource`, `namespace`) a 403
/// is reported in.
pub(crate) struct Call<'a> {
    verb: &'static str,
    resource: &'static str,
    namespace: &'a str,
    method: reqwest::Method,
    path: String,
    query: &'a [(&'a str, &'a str)],
    body: Option<(BodyKind, &'a serde_json::Value)>,
}

impl<'a> Call<'a> {
    pub(crate) fn new(
        verb: &'static str,
        resource: &'static str,
        namespace: &'a str,
        method: reqwest::Method,
        path: String,
    ) -> Call<'a> {
        Call {
            verb,
            resource,
            namespace,
            method,
            path,
            query: &[],
            body: None,
        }
    }

    /// A call on `resource` in namespace `ns`: the named object, or the collection when `name`
    /// is `None`. The method follows from the RBAC verb and the path from the resource's API
    /// group, so the words a 403 is reported in always match the request that was refused.
    pub(crate) fn on(
        verb: &'static str,
        resource: &'static str,
        namespace: &'a str,
        name: Option<&str>,
    ) -> Call<'a> {
        let method = match verb {
            "create" => reqwest::Method::POST,
            "patch" => reqwest::Method::PATCH,
            "delete" => reqwest::Method::DELETE,
            _ => reqwest::Method::GET,
        };
        // Of the kinds harp touches, only Deployments live outside the core group.
        let group = if resource == "deployments" {
            "/apis/apps/v1"
        } else {
            "/api/v1"
        };
        let mut path = format!("{group}/namespaces/{namespace}/{resource}");
        if let Some(name) = name {
            path.push('/');
            path.push_str(name);
        }
        Call::new(verb, resource, namespace, method, path)
    }

    pub(crate) fn query(mut self, query: &'a [(&'a str, &'a str)]) -> Call<'a> {
        self.query = query;
        self
    }

    pub(crate) fn body(mut self, kind: BodyKind, body: &'a serde_json::Value) -> Call<'a> {
        self.body = Some((kind, body));
        self
    }
}

/// An API server's answer: status, the JSON (`Null` when the body is not JSON) and the start
/// of the raw text for messages.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) json: serde_json::Value,
    text: String,
}

impl Answer {
    /// The API server's own explanation (`message` of a Status object), else the raw text.
    pub(crate) fn message(&self) -> String {
        let m = match self.json.get("message").and_then(|m| m.as_str()) {
            Some(m) => m.to_string(),
            None => self.text.clone(),
        };
        m.chars().take(MAX_MESSAGE).collect()
    }
}

/// reqwest's outer error says little ("error sending request"); the cause names the refusal.
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
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

    /// One API call. A 401 or 403 becomes an error naming the token or the refused verb and
    /// resource; every other status is the caller's to judge.
    pub(crate) async fn call(&self, call: Call<'_>) -> Result<Answer, K8sError> {
        let url = format!("{}{}", self.base, call.path);
        let token = self.token()?;
        let unreachable = |e: reqwest::Error| K8sError::Unreachable {
            url: self.base.clone(),
            reason: describe(&e),
        };
        let mut req = self
            .http
            .request(call.method.clone(), &url)
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, "application/json");
        if !call.query.is_empty() {
            req = req.query(call.query);
        }
        if let Some((content_type, body)) = call.body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, content_type.mime())
                .body(body.to_string());
        }
        let mut resp = req.send().await.map_err(unreachable)?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(K8sError::BodyTooLarge { url });
            }
            body.extend_from_slice(&chunk);
        }
        let answer = Answer {
            status,
            json: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            text: String::from_utf8_lossy(&body[..body.len().min(MAX_MESSAGE)]).into_owned(),
        };
        match status {
            401 => Err(K8sError::Unauthorized {
                url: self.base.clone(),
            }),
            403 => Err(K8sError::Forbidden {
                verb: call.verb,
                resource: call.resource,
                namespace: call.namespace.to_string(),
                message: answer.message(),
            }),
            _ => Ok(answer),
        }
    }

    /// `GET <path>` with no RBAC context (health endpoints): status and the bounded body.
    pub(crate) async fn get(&self, path: &str) -> Result<(u16, Vec<u8>), K8sError> {
        let answer = self
            .call(Call::new(
                "get",
                "",
                "",
                reqwest::Method::GET,
                path.to_string(),
            ))
            .await?;
        Ok((answer.status, answer.text.into_bytes()))
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
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// The URL of the API server this client talks to.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }
}

#[cfg(test)]
mod tests {
    use super::Call;

    #[test]
    fn a_call_on_a_resource_derives_method_and_path_from_verb_and_group() {
        let c = Call::on("patch", "deployments", "ns", Some("d"));
        assert_eq!(
            (c.method, c.path.as_str()),
            (
                reqwest::Method::PATCH,
                "/apis/apps/v1/namespaces/ns/deployments/d"
            )
        );
        let c = Call::on("list", "pods", "ns", None);
        assert_eq!(
            (c.method, c.path.as_str()),
            (reqwest::Method::GET, "/api/v1/namespaces/ns/pods")
        );
        let c = Call::on("create", "services", "ns", None);
        assert_eq!(
            (c.method, c.path.as_str()),
            (reqwest::Method::POST, "/api/v1/namespaces/ns/services")
        );
        let c = Call::on("delete", "persistentvolumeclaims", "ns", Some("p"));
        assert_eq!(
            (c.method, c.path.as_str()),
            (
                reqwest::Method::DELETE,
                "/api/v1/namespaces/ns/persistentvolumeclaims/p"
            )
        );
    }
}
