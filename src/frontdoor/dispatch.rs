//! Carrying out a decision: the control API call (its body read here, bounded), the Docker
//! Engine pass-through and the forward to an ExApp. Each builds an upstream request from the
//! decision's plan, hands it to `upstream`, and maps what comes back through `respond`; none
//! decides access.

use super::handler::FrontDoor;
use super::respond;
use crate::control::{self, ControlError, ControlRequest, MAX_BODY};
use crate::pipeline::{strip_engine_headers, Context, ForwardPlan, Refusal};
use crate::upstream::{
    client_body, prepare_client_headers, Body, ClientBodyError, IdleTimeoutBody, Target,
    UpstreamError, UpstreamRequest,
};
use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use std::net::{IpAddr, Ipv4Addr};

/// The control API (contract §4): the body is read whole (bounded by [`MAX_BODY`] and the client
/// timeout), then `control` answers.
pub(super) async fn control_call(
    door: &FrontDoor,
    req: Request<Incoming>,
    target_path: &str,
    client: std::net::IpAddr,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    // Concrete types, not `client_body`'s boxed one: with the box, rustc 1.95 could no longer
    // prove the connection's future `Send` (a higher-ranked lifetime in tokio's `Notified`).
    let body =
        IdleTimeoutBody::with_error(Limited::new(body, MAX_BODY), door.client_timeout, |idle| {
            Box::new(ClientBodyError::Stalled(idle))
        });
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return respond::control(Err(ControlError::TooLarge));
        }
        Err(e) => match ClientBodyError::find(&*e) {
            Some(fault @ ClientBodyError::Stalled(_)) => {
                tracing::info!(error = %fault, "control request body timed out");
                return respond::client_body(&fault);
            }
            _ => {
                return respond::control(Err(ControlError::BadRequest(
                    "could not read the request body".into(),
                )))
            }
        },
    };
    let request = ControlRequest {
        method: &parts.method,
        path: target_path,
        headers: &parts.headers,
        body,
        client,
    };
    respond::control(control::handle(&door.control, request).await)
}

/// Docker Engine pass-through (contract §2.3): raw path and query, HaRP-only headers removed.
pub(super) async fn engine_call(
    door: &FrontDoor,
    req: Request<Incoming>,
    port: u16,
    target_path: &str,
    client: IpAddr,
) -> Response<Body> {
    let path_and_query = with_query(target_path, req.uri().query());
    // Calls that change state (image pulls) are audited; reads are not. Capped: the client
    // chooses the path and query; headers (X-Registry-Auth) are never recorded.
    let audited = (parts_changes_state(req.method())).then(|| {
        format!(
            "{} {} engine_port={port}",
            req.method(),
            path_and_query.chars().take(256).collect::<String>()
        )
    });
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    prepare_client_headers(&mut headers, false);
    strip_engine_headers(&mut headers);
    let upstream = UpstreamRequest {
        method: parts.method,
        target: Target::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
        path_and_query,
        headers,
        body: client_body(body, door.client_timeout),
        client_upgrade: None,
    };
    let response = match door.forwarder.send(upstream).await {
        Ok(r) => r,
        Err(UpstreamError::ClientBody(fault)) => client_fault(&fault),
        Err(e) => {
            tracing::warn!(error = %e, "Docker Engine pass-through failed");
            respond::engine_error(port, &e)
        }
    };
    if let Some(subject) = audited {
        door.control.audit.record(
            "docker_passthrough",
            Some(client),
            subject,
            response.status().as_u16().to_string(),
        );
    }
    response
}

/// Whether a pass-through call can change the engine's state (everything but reads).
fn parts_changes_state(method: &http::Method) -> bool {
    !matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    )
}

/// The forward to an ExApp (contract §2.2 step 9, §2.10).
pub(super) async fn forward(
    door: &FrontDoor,
    req: Request<Incoming>,
    plan: ForwardPlan,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    client: IpAddr,
) -> Response<Body> {
    let host = plan.record.host.as_str();
    let ip = match door.resolver.resolve(host).await {
        Ok(ip) => ip,
        Err(e) => {
            tracing::warn!(error = %e, "ExApp host cannot be resolved");
            return respond::refusal(&Refusal::NotFound);
        }
    };
    let path_and_query = with_query(plan.upstream_path(), req.uri().query());
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    // Before harp adds its own headers, so `Connection` cannot name them away.
    prepare_client_headers(&mut headers, client_upgrade.is_some());
    plan.apply_headers(&mut headers);
    let upstream = UpstreamRequest {
        method: parts.method,
        target: Target::new(ip, plan.record.port),
        path_and_query,
        headers,
        body: client_body(body, door.client_timeout),
        client_upgrade,
    };
    match door.forwarder.send(upstream).await {
        Ok(response) => {
            if plan.is_bruteforce_status(response.status()) {
                door.gate
                    .record_failure(client, "brute-force status from ExApp");
            }
            response
        }
        Err(UpstreamError::ClientBody(fault)) => client_fault(&fault),
        Err(e) => {
            if matches!(e, UpstreamError::Connect(..)) {
                door.resolver.forget(host);
            }
            tracing::warn!(error = %e, "ExApp unreachable");
            respond::upstream_error(&e)
        }
    }
}

/// The client's request body failed before any response: its fault, logged as such.
fn client_fault(fault: &ClientBodyError) -> Response<Body> {
    tracing::info!(error = %fault, "request ended: the client's request body failed");
    respond::client_body(fault)
}

fn with_query(path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    }
}
