//! The control API of contract §4, reached as `/exapps/app_api/<path>` behind the shared-key
//! gate: heartbeat, info, the ExApp metadata store, the FRP login check, the Docker wrapper
//! endpoints and the Kubernetes ones (`k8s`), whose `expose` answers this module stores.
//! Handlers return typed [`ControlError`]s; `frontdoor` turns them into statuses.
//!
//! Does not forward anything to ExApps and never decides access (the gate already did).

mod frp_login;
mod storage;

pub(crate) use frp_login::{FrpLoginVerdict, LoginChecker};

use crate::docker::Wrappers;
use crate::metrics::WrapperCalls;
use crate::nextcloud::{MetaCache, MetaFetch, NextcloudClient};
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::json;
use std::sync::Arc;

pub(crate) use crate::contract::{ControlError, ControlReply, CONTROL_MAX_BODY as MAX_BODY};

/// A control request with its body already read (bodies are small and bounded).
pub(crate) struct ControlRequest<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
    /// The caller's address (behind trusted proxies), for the audit log.
    pub client: std::net::IpAddr,
}

/// What the control API works with, and nothing else.
pub(crate) struct Control {
    /// The FRP login check of `/frp_handler`.
    pub login: LoginChecker,
    /// Where `/exapp_storage` writes.
    pub metadata: Arc<MetaCache>,
    /// The Docker wrappers' engine access.
    pub docker: Wrappers,
    /// Where Docker wrapper calls are recorded.
    pub audit: crate::audit::Audit,
    /// The Kubernetes backend; `None` when `HP_K8S_ENABLED` is off.
    pub k8s: Option<Arc<crate::k8s::Backend>>,
    /// Nextcloud, asked for an ExApp's metadata when `expose` stores its upstream.
    pub nextcloud: NextcloudClient,
    /// Counts and times Kubernetes wrapper calls; `None` when metrics are off.
    pub k8s_calls: Option<WrapperCalls>,
}

pub(crate) async fn handle(
    ctl: &Control,
    req: ControlRequest<'_>,
) -> Result<ControlReply, ControlError> {
    let get = req.method == Method::GET || req.method == Method::HEAD;
    let post = req.method == Method::POST;
    match req.path {
        "/heartbeat" if get => Ok(ControlReply::Json(StatusCode::OK, json!({"status": "ok"}))),
        "/info" if get => Ok(ControlReply::Json(
            StatusCode::OK,
            info(ctl.k8s.as_deref()).await,
        )),
        "/frp_handler" if post => Ok(ctl.login.check_body(&req.body).into_reply()),
        "/heartbeat" | "/info" | "/frp_handler" => Err(ControlError::MethodNotAllowed),
        p if p.starts_with("/exapp_storage/") => {
            let result =
                storage::handle(&ctl.metadata, ctl.k8s.as_deref(), req.method, p, &req.body).await;
            if !get {
                ctl.audit.record(
                    "exapp_storage",
                    Some(req.client),
                    format!("{} {}", req.method, p.chars().take(256).collect::<String>()),
                    match &result {
                        Ok(_) => "ok".to_string(),
                        Err(e) => e.status().as_u16().to_string(),
                    },
                );
            }
            result
        }
        p if p.starts_with("/docker/exapp/") => {
            if !post {
                return Err(ControlError::MethodNotAllowed);
            }
            let op = &p["/docker/exapp/".len()..];
            let result = crate::docker::handle(&ctl.docker, op, req.headers, &req.body).await;
            ctl.audit.record(
                "docker_exapp",
                Some(req.client),
                wrapper_subject(
                    op,
                    Some(
                        req.headers
                            .get(crate::contract::headers::DOCKER_ENGINE_PORT)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default(),
                    ),
                    &req.body,
                ),
                match &result {
                    Ok(reply) => reply_status(reply).to_string(),
                    // The status only: an engine's error text is not ours to copy.
                    Err(e) => e.status().as_u16().to_string(),
                },
            );
            result
        }
        p if p.starts_with("/k8s/exapp/") => {
            if !post {
                return Err(ControlError::MethodNotAllowed);
            }
            let op = &p["/k8s/exapp/".len()..];
            let started = std::time::Instant::now();
            let result = k8s_call(ctl, op, &req.body).await;
            if let Some(calls) = &ctl.k8s_calls {
                let outcome = match &result {
                    Ok(_) => "ok",
                    Err(e) => e.kind(),
                };
                calls.record(k8s_op_label(op), outcome, started.elapsed());
            }
            ctl.audit.record(
                "k8s_exapp",
                Some(req.client),
                wrapper_subject(op, None, &req.body),
                match &result {
                    Ok(reply) => reply_status(reply).to_string(),
                    Err(e) => e.status().as_u16().to_string(),
                },
            );
            result
        }
        _ => Err(ControlError::NotFound),
    }
}

/// The metric label of a Kubernetes operation: its fixed name, never request text.
fn k8s_op_label(op: &str) -> &'static str {
    const OPS: [&str; 8] = [
        "exists",
        "create",
        "start",
        "stop",
        "wait_for_start",
        "remove",
        "install_certificates",
        "expose",
    ];
    OPS.iter().find(|o| **o == op).copied().unwrap_or("unknown")
}

fn reply_status(reply: &ControlReply) -> u16 {
    match reply {
        ControlReply::Json(status, _) | ControlReply::Text(status, _) => status.as_u16(),
        ControlReply::NoContent => 204,
    }
}

/// One Kubernetes operation; `expose`'s address goes into the metadata cache with the rest of
/// the ExApp's metadata from Nextcloud (contract §4.8), so the next request routes there.
async fn k8s_call(ctl: &Control, op: &str, body: &[u8]) -> Result<ControlReply, ControlError> {
    let Some(k8s) = &ctl.k8s else {
        return Err(ControlError::Unavailable(
            "Kubernetes support is not enabled in this harp instance (HP_K8S_ENABLED)".into(),
        ));
    };
    let exposed = match k8s.handle(op, body).await? {
        crate::k8s::Outcome::Reply(reply) => return Ok(reply),
        crate::k8s::Outcome::Exposed(exposed) => exposed,
    };
    let mut record = match ctl.nextcloud.exapp_meta(&exposed.app_id).await {
        MetaFetch::Found(record) => record,
        MetaFetch::NotFound => {
            return Err(ControlError::NotFoundMessage(format!(
                "No ExApp metadata for '{}' in Nextcloud",
                exposed.app_id
            )))
        }
        MetaFetch::Error(e) => {
            return Err(ControlError::Unavailable(format!(
                "Failed to fetch metadata for '{}': {e}",
                exposed.app_id
            )))
        }
    };
    record.host = exposed.host.clone();
    record.port = exposed.port;
    tracing::info!(app = %exposed.app_id, host = %exposed.host, port = exposed.port, expose_type = exposed.expose_type, "ExApp exposed on Kubernetes");
    ctl.metadata.store(&exposed.app_id, record);
    Ok(ControlReply::Json(StatusCode::OK, exposed.reply()))
}

/// The `/info` document. `version` is harp's own semver (project decision 4).
pub(crate) async fn info(k8s: Option<&crate::k8s::Backend>) -> serde_json::Value {
    let kubernetes = match k8s {
        Some(k8s) => k8s.info().await,
        None => json!({"enabled": false}),
    };
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "implementation": "harp",
        "docker": true,
        "kubernetes": kubernetes,
    })
}

/// What a Docker or Kubernetes wrapper call was about, for the audit log: the operation, the
/// engine port (Docker) and the container or app name from the payload (never other payload
/// fields: they can carry secrets such as environment variables). Lengths are capped so a
/// hostile name stays short.
fn wrapper_subject(op: &str, engine_port: Option<&str>, body: &[u8]) -> String {
    const MAX_FIELD: usize = 128;
    let cap = |s: &str| s.chars().take(MAX_FIELD).collect::<String>();
    let name = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("name").and_then(|n| n.as_str()).map(cap))
        .unwrap_or_default();
    match engine_port {
        Some(port) => format!("op={} engine_port={} name={name}", cap(op), cap(port)),
        None => format!("op={} name={name}", cap(op)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn info_reports_a_semver_at_least_0_4_4() {
        let v = info(None).await;
        let version = v["version"].as_str().unwrap();
        let parts: Vec<u32> = version.split('.').map(|p| p.parse().unwrap()).collect();
        assert_eq!(parts.len(), 3);
        assert!((parts[0], parts[1], parts[2]) >= (0, 4, 4));
        assert_eq!(v["docker"], true);
        assert_eq!(v["kubernetes"]["enabled"], false);
    }

    /// A control API without Docker, Nextcloud or Kubernetes, counting Kubernetes calls.
    fn control(calls: WrapperCalls) -> Control {
        let key = crate::security::SharedKey::new("k");
        let bans = Arc::new(crate::security::BanList::new(
            std::time::Duration::from_secs(60),
            5,
        ));
        let s = std::time::Duration::from_secs(1);
        Control {
            login: LoginChecker::new(key.clone(), bans),
            metadata: Arc::new(MetaCache::default()),
            docker: Wrappers {
                forwarder: crate::upstream::Forwarder::new(
                    s,
                    s,
                    None,
                    crate::upstream::LocalDialers::new(Vec::new()),
                ),
                frp_certs: "/nonexistent".into(),
                calls: None,
            },
            audit: Default::default(),
            k8s: None,
            nextcloud: NextcloudClient::new("http://127.0.0.1:1", key).unwrap(),
            k8s_calls: Some(calls),
        }
    }

    #[test]
    fn audit_subjects_name_the_call_and_never_other_fields() {
        let body = br#"{"name":"app","environment_variables":["APP_SECRET=s3cret"]}"#;
        assert_eq!(
            wrapper_subject("create", Some("24000"), body),
            "op=create engine_port=24000 name=app"
        );
        assert_eq!(wrapper_subject("create", None, body), "op=create name=app");
        let long = format!(r#"{{"name":"{}"}}"#, "x".repeat(1000));
        assert!(wrapper_subject("expose", None, long.as_bytes()).len() < 200);
    }

    #[tokio::test]
    async fn kubernetes_calls_are_counted_by_fixed_operation_names() {
        let calls = crate::metrics::Metrics::new().k8s;
        let ctl = control(calls.clone());
        for op in ["create", "create", "../../etc/passwd"] {
            let path = format!("/k8s/exapp/{op}");
            let err = handle(
                &ctl,
                ControlRequest {
                    method: &Method::POST,
                    path: &path,
                    headers: &HeaderMap::new(),
                    body: Bytes::from_static(b"{}"),
                    client: std::net::Ipv4Addr::LOCALHOST.into(),
                },
            )
            .await
            .unwrap_err();
            assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(err.to_string().contains("not enabled"), "{err}");
        }
        let count = |op: &'static str| calls.count(op, "unavailable");
        assert_eq!((count("create"), count("unknown")), (2, 1));
    }
}
