//! The few raw engine calls the wrappers make, over harp's own forwarder (so 24000 reaches the
//! socket and tunnel ports their tunnels), always with unversioned paths (§4.5).

use super::DockerError;
use crate::upstream::{empty, full, Forwarder, Target, UpstreamRequest};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use std::net::{IpAddr, Ipv4Addr};

pub(super) struct Engine<'a> {
    pub forwarder: &'a Forwarder,
    pub port: u16,
}

pub(super) struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Reply {
    pub(super) fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The engine's own explanation (`{"message": ...}`), for error texts.
    pub(super) fn message(&self) -> String {
        self.json()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).trim().to_string())
    }

    pub(super) fn unexpected(&self, what: impl Into<String>) -> DockerError {
        DockerError::UnexpectedStatus {
            what: what.into(),
            status: self.status.as_u16(),
            message: self.message(),
        }
    }
}

impl Engine<'_> {
    pub(super) async fn get(&self, path: &str) -> Result<Reply, DockerError> {
        self.call(Method::GET, path, None).await
    }

    pub(super) async fn delete(&self, path: &str) -> Result<Reply, DockerError> {
        self.call(Method::DELETE, path, None).await
    }

    pub(super) async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Reply, DockerError> {
        let bytes = Bytes::from(body.to_string());
        self.call(Method::POST, path, Some((bytes, "application/json")))
            .await
    }

    pub(super) async fn post_empty(&self, path: &str) -> Result<Reply, DockerError> {
        self.call(Method::POST, path, None).await
    }

    pub(super) async fn put_tar(&self, path: &str, tar: Vec<u8>) -> Result<Reply, DockerError> {
        self.call(
            Method::PUT,
            path,
            Some((Bytes::from(tar), "application/x-tar")),
        )
        .await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &'static str)>,
    ) -> Result<Reply, DockerError> {
        let mut headers = HeaderMap::new();
        let body = match body {
            Some((bytes, content_type)) => {
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static(content_type),
                );
                full(bytes)
            }
            None => empty(),
        };
        let request = UpstreamRequest {
            method,
            target: Target::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.port),
            path_and_query: path.to_string(),
            headers,
            body,
            client_upgrade: None,
        };
        let response = self
            .forwarder
            .send(request)
            .await
            .map_err(|e| DockerError::from_upstream(self.port, e))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| DockerError::BadResponse {
                port: self.port,
                detail: e.to_string(),
            })?
            .to_bytes();
        Ok(Reply { status, body })
    }
}
