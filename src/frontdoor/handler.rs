//! One request: framing checks → client IP → `pipeline::decide` (30 s cap) → dispatch
//! (`dispatch`) → response and access line. Everything logged while the request is served
//! carries its span: client address, app id, and the `aa-request-id` it came with.

use super::access_log::AccessLine;
use super::dispatch;
use super::gate::Gate;
use super::respond;
use super::stall::StallDisarm;
use crate::control::Control;
use crate::pipeline::{decide, Decision, Refusal, RequestFacts};
use crate::security::client_ip;
use crate::upstream::{websocket_upgrade, Body, Forwarder, Resolver};
use http::{HeaderMap, Request, Response};
use hyper::body::Incoming;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Contract §2.2: the whole access decision must be made within this time.
const DECISION_DEADLINE: Duration = Duration::from_secs(30);
/// A decision slower than this is worth a warning.
const SLOW_DECISION: Duration = Duration::from_secs(1);
/// Longest `aa-request-id` copied into the request's span; longer ones are left out.
const MAX_REQUEST_ID: usize = 128;

/// Returned to hyper to close the connection without writing a response (the DROP outcome).
#[derive(Debug, thiserror::Error)]
#[error("request dropped by policy")]
pub struct Dropped;

/// What one worker thread serves requests with. Everything is shared between workers except
/// `forwarder`: pooled connections belong to the worker's runtime, so requests never hop threads.
pub struct FrontDoor {
    /// The pipeline's context: shared key, ban list, Nextcloud.
    pub gate: Arc<Gate>,
    pub control: Arc<Control>,
    pub forwarder: Forwarder,
    pub resolver: Arc<Resolver>,
    pub trusted_proxies: Arc<[IpNet]>,
    /// HP_TIMEOUT_CLIENT: request heads, request bodies, TLS handshakes, stalled readers.
    pub client_timeout: Duration,
}

/// Serves one request of the connection from `peer`; `stall` lets a WebSocket that switched
/// protocols leave the connection's stalled-reader timeout behind (the tunnel timeout governs
/// it from then on).
pub async fn handle(
    door: Arc<FrontDoor>,
    peer: SocketAddr,
    req: Request<Incoming>,
    stall: StallDisarm,
) -> Result<Response<Body>, Dropped> {
    let started = Instant::now();
    if ambiguous_host(&req) {
        tracing::info!("request with an ambiguous Host refused");
        return Ok(respond::bad_request());
    }
    let (client, _) = client_ip(peer.ip(), req.headers(), &door.trusted_proxies);
    // Only pay for the access-log fields when the line will be written.
    let mut access = tracing::enabled!(target: "harp::access", tracing::Level::INFO).then(|| {
        let (method, path) = (req.method().clone(), req.uri().path().to_string());
        let (app, upstream) = (String::new(), None);
        AccessLine {
            method,
            path,
            app,
            client,
            started,
            upstream,
        }
    });
    let span = request_span(client, req.headers());
    let response = serve(&door, req, client, stall, access.as_mut())
        .instrument(span)
        .await;
    // Outside the request's span: the access line's format is fixed.
    if let Some(line) = &access {
        line.write(response.as_ref().map(|r| r.status().as_u16()));
    }
    response.ok_or(Dropped)
}

/// Decides and dispatches; `None` is the DROP outcome.
async fn serve(
    door: &FrontDoor,
    mut req: Request<Incoming>,
    client: IpAddr,
    stall: StallDisarm,
    mut access: Option<&mut AccessLine>,
) -> Option<Response<Body>> {
    let started = Instant::now();
    let facts = RequestFacts {
        method: req.method(),
        raw_path: req.uri().path(),
        headers: req.headers(),
        client_ip: client,
    };
    let decision = tokio::time::timeout(DECISION_DEADLINE, decide(&facts, &*door.gate))
        .await
        .unwrap_or_else(|_| {
            tracing::warn!(
                path = facts.raw_path,
                "access decision took longer than 30 s"
            );
            Decision::Refuse(Refusal::AgentError)
        });
    let decided = started.elapsed();
    if decided > SLOW_DECISION {
        tracing::warn!(
            elapsed_ms = decided.as_millis() as u64,
            "slow access decision"
        );
    }
    let app = match &decision {
        Decision::Control { .. } | Decision::Engine { .. } => "app_api",
        Decision::Forward(plan) => plan.app_id.as_str(),
        _ => "",
    };
    tracing::Span::current().record("app", app);
    if let Some(line) = access.as_deref_mut() {
        line.app.push_str(app);
    }
    let upstream_started = Instant::now();
    let response = match decision {
        Decision::Drop => return None,
        Decision::Refuse(r) => return Some(respond::refusal(&r)),
        Decision::EngineForbidden => return Some(respond::engine_forbidden()),
        Decision::Control { target_path } => {
            return Some(dispatch::control_call(door, req, &target_path).await)
        }
        Decision::Engine { port, target_path } => {
            dispatch::engine_call(door, req, port, &target_path).await
        }
        Decision::Forward(plan) => {
            // hyper upgrades HTTP/1.1 connections only; an HTTP/1.0 offer is dropped like h2c.
            let websocket =
                req.version() == http::Version::HTTP_11 && websocket_upgrade(req.headers());
            let upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
            let r = dispatch::forward(door, req, plan, upgrade, client).await;
            if r.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                stall.disarm();
            }
            r
        }
    };
    if let Some(line) = access {
        line.upstream = Some(upstream_started.elapsed());
    }
    Some(response)
}

/// The span every line logged while serving a request carries. At ERROR level so it is there
/// at every log level: its fields matter most on the warnings.
fn request_span(client: IpAddr, headers: &HeaderMap) -> tracing::Span {
    let span = tracing::error_span!(
        "request",
        %client,
        app = tracing::field::Empty,
        request_id = tracing::field::Empty
    );
    if !span.is_disabled() {
        if let Some(id) = request_id(headers) {
            span.record("request_id", id);
        }
    }
    span
}

/// The `aa-request-id` header when it is short printable ASCII (it ends up in log lines).
fn request_id(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get("aa-request-id")?.as_bytes();
    let printable = v.iter().all(|b| b.is_ascii_graphic());
    if v.is_empty() || v.len() > MAX_REQUEST_ID || !printable {
        return None;
    }
    std::str::from_utf8(v).ok()
}

/// RFC 9112 §3.2: more than one `Host`, or a `Host` that names another authority than an
/// absolute-form target, leaves open which site is meant (and harp forwards `Host` as sent).
fn ambiguous_host(req: &Request<Incoming>) -> bool {
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return true;
    }
    match (req.uri().authority(), first) {
        (Some(target), Some(host)) => !target
            .as_str()
            .as_bytes()
            .eq_ignore_ascii_case(host.as_bytes().trim_ascii()),
        _ => false,
    }
}
