//! The control API of contract §4, reached as `/exapps/app_api/<path>` behind the shared-key
//! gate: heartbeat, info, the ExApp metadata store, the FRP login check and the Docker wrapper
//! endpoints. Handlers return typed [`ControlError`]s; `frontdoor` turns them into statuses.
//!
//! Does not forward anything to ExApps and never decides access (the gate already did).

mod frp_login;
mod storage;

pub use frp_login::{check_login, frp_login_check, FrpLoginVerdict, LoginChecker};

use crate::docker::Wrappers;
use crate::nextcloud::MetaCache;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::json;
use std::sync::Arc;

/// Largest control request body accepted (metadata with many routes stays far below).
pub const MAX_BODY: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ControlError {
    #[error("404: Not Found")]
    NotFound,
    #[error("405: Method Not Allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    BadRequest(String),
    #[error("request body larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("{0}")]
    Unavailable(String),
    /// 404 with a message naming what is missing (the Docker wrappers).
    #[error("{0}")]
    NotFoundMessage(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Internal(String),
}

impl ControlError {
    pub fn status(&self) -> StatusCode {
        match self {
            ControlError::NotFound => StatusCode::NOT_FOUND,
            ControlError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ControlError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ControlError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ControlError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ControlError::NotFoundMessage(_) => StatusCode::NOT_FOUND,
            ControlError::Conflict(_) => StatusCode::CONFLICT,
            ControlError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ControlError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A successful control answer.
#[derive(Debug, PartialEq)]
pub enum ControlReply {
    Json(StatusCode, serde_json::Value),
    Text(StatusCode, String),
    NoContent,
}

/// A control request with its body already read (bodies are small and bounded).
pub struct ControlRequest<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
}

/// What the control API works with, and nothing else.
pub struct Control {
    /// The FRP login check of `/frp_handler`.
    pub login: LoginChecker,
    /// Where `/exapp_storage` writes.
    pub metadata: Arc<MetaCache>,
    /// The Docker wrappers' engine access.
    pub docker: Wrappers,
}

pub async fn handle(ctl: &Control, req: ControlRequest<'_>) -> Result<ControlReply, ControlError> {
    let get = req.method == Method::GET || req.method == Method::HEAD;
    let post = req.method == Method::POST;
    match req.path {
        "/heartbeat" if get => Ok(ControlReply::Json(StatusCode::OK, json!({"status": "ok"}))),
        "/info" if get => Ok(ControlReply::Json(StatusCode::OK, info())),
        "/frp_handler" if post => Ok(ctl.login.check_body(&req.body).into_reply()),
        "/heartbeat" | "/info" | "/frp_handler" => Err(ControlError::MethodNotAllowed),
        p if p.starts_with("/exapp_storage/") => {
            storage::handle(&ctl.metadata, req.method, p, &req.body)
        }
        p if p.starts_with("/docker/exapp/") => {
            if !post {
                return Err(ControlError::MethodNotAllowed);
            }
            let op = &p["/docker/exapp/".len()..];
            crate::docker::handle(&ctl.docker, op, req.headers, &req.body).await
        }
        p if p.starts_with("/k8s/exapp/") => {
            if !post {
                return Err(ControlError::MethodNotAllowed);
            }
            Err(ControlError::Unavailable(
                "Kubernetes support is not enabled in this harp instance".into(),
            ))
        }
        _ => Err(ControlError::NotFound),
    }
}

/// The `/info` document. `version` is harp's own semver (project decision 4).
pub fn info() -> serde_json::Value {
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "implementation": "harp",
        "docker": true,
        "kubernetes": {"enabled": false},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_reports_a_semver_at_least_0_4_4() {
        let v = info();
        let version = v["version"].as_str().unwrap();
        let parts: Vec<u32> = version.split('.').map(|p| p.parse().unwrap()).collect();
        assert_eq!(parts.len(), 3);
        assert!((parts[0], parts[1], parts[2]) >= (0, 4, 4));
        assert_eq!(v["docker"], true);
        assert_eq!(v["kubernetes"]["enabled"], false);
    }
}
