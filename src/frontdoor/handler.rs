//! One request through the pipeline: framing checks → client IP → decision (30 s cap) → act →
//! access log.

use super::respond;
use super::stall::StallDisarm;
use crate::control::{self, ControlError, ControlRequest, MAX_BODY};
use crate::pipeline::facts::{
    AA_VERSION, AUTHORIZATION_APP_API, DOCKER_ENGINE_PORT, EX_APP_ID, EX_APP_VERSION,
    HARP_SHARED_KEY,
};
use crate::pipeline::{decide, Decision, ForwardPlan, Refusal, RequestFacts};
use crate::security::client_ip;
use crate::state::AppState;
use crate::upstream::{
    client_body, prepare_client_headers, websocket_upgrade, Body, ClientBodyError, Forwarder,
    IdleTimeoutBody, Target, UpstreamError, UpstreamRequest,
};
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Contract §2.2: the whole access decision must be made within this time.
const DECISION_DEADLINE: Duration = Duration::from_secs(30);

/// Returned to hyper to close the connection without writing a response (the DROP outcome).
#[derive(Debug, thiserror::Error)]
#[error("request dropped by policy")]
pub(super) struct Dropped;

const INJECTED: [HeaderName; 4] = [EX_APP_ID, EX_APP_VERSION, AUTHORIZATION_APP_API, AA_VERSION];

/// What one worker thread serves requests with: the shared state plus its own upstream pool
/// (pooled connections belong to the worker's runtime, so requests never hop threads).
pub(crate) struct Worker {
    pub state: Arc<AppState>,
    pub forwarder: Forwarder,
}

/// Serves one request of the connection from `peer`; `stall` lets a WebSocket that switched
/// protocols leave the connection's stalled-reader timeout behind (the tunnel timeout governs
/// it from then on).
pub(super) async fn handle(
    worker: Arc<Worker>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
    stall: StallDisarm,
) -> Result<Response<Body>, Dropped> {
    let state = &worker.state;
    let started = Instant::now();
    if ambiguous_host(&req) {
        tracing::info!(%peer, "request with an ambiguous Host refused");
        return Ok(respond::bad_request());
    }
    let ip = client_ip(peer.ip(), req.headers(), &state.config.trusted_proxies);
    let decision = {
        let facts = RequestFacts {
            method: req.method(),
            raw_path: req.uri().path(),
            headers: req.headers(),
            client_ip: ip,
        };
        let deadline = tokio::time::Instant::from_std(started) + DECISION_DEADLINE;
        match tokio::time::timeout_at(deadline, decide(&facts, &**state)).await {
            Ok(d) => d,
            Err(_) => {
                tracing::warn!(
                    path = facts.raw_path,
                    "access decision took longer than 30 s"
                );
                Decision::Refuse(Refusal::AgentError)
            }
        }
    };
    let decided = started.elapsed();
    if decided > Duration::from_secs(1) {
        tracing::warn!(
            elapsed_ms = decided.as_millis() as u64,
            "slow access decision"
        );
    }
    // Only pay for the access-log fields when the line will be written.
    let access = tracing::enabled!(target: "harp::access", tracing::Level::INFO)
        .then(|| (req.method().clone(), req.uri().path().to_string()));
    let mut app = String::new();
    let mut upstream_time = None;

    let response = match decision {
        Decision::Drop => {
            if let Some((method, path)) = &access {
                log_access(method, path, "", ip, None, started, None);
            }
            return Err(Dropped);
        }
        Decision::Refuse(r) => respond::refusal(&r),
        Decision::EngineForbidden => respond::engine_forbidden(),
        Decision::Control { target_path } => {
            app.push_str("app_api");
            control_call(state, req, &target_path).await
        }
        Decision::Engine { port, target_path } => {
            app.push_str("app_api");
            let t0 = access.is_some().then(Instant::now);
            let r = engine_call(&worker, req, port, &target_path).await;
            upstream_time = t0.map(|t| t.elapsed());
            r
        }
        Decision::Forward(plan) => {
            if access.is_some() {
                app.push_str(&plan.app_id);
            }
            // hyper upgrades HTTP/1.1 connections only; an HTTP/1.0 offer is dropped like h2c.
            let websocket =
                req.version() == http::Version::HTTP_11 && websocket_upgrade(req.headers());
            let upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
            let t0 = access.is_some().then(Instant::now);
            let r = forward(&worker, req, plan, upgrade, ip).await;
            upstream_time = t0.map(|t| t.elapsed());
            if r.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                stall.disarm();
            }
            r
        }
    };
    if let Some((method, path)) = &access {
        let status = Some(response.status().as_u16());
        log_access(method, path, &app, ip, status, started, upstream_time);
    }
    Ok(response)
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

async fn control_call(
    state: &AppState,
    req: Request<Incoming>,
    target_path: &str,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    // Concrete types, not `client_body`'s boxed one: with the box, rustc 1.95 could no longer
    // prove the connection's future `Send` (a higher-ranked lifetime in tokio's `Notified`).
    let body = IdleTimeoutBody::with_error(
        Limited::new(body, MAX_BODY),
        state.config.timeouts.client,
        |idle| Box::new(ClientBodyError::Stalled(idle)),
    );
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
    let reply = control::handle(
        state,
        ControlRequest {
            method: &parts.method,
            path: target_path,
            headers: &parts.headers,
            body,
        },
    )
    .await;
    respond::control(reply)
}

/// Docker Engine pass-through (contract §2.3): raw path and query, HaRP-only headers removed.
async fn engine_call(
    worker: &Worker,
    req: Request<Incoming>,
    port: u16,
    target_path: &str,
) -> Response<Body> {
    let path_and_query = with_query(target_path, req.uri().query());
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    prepare_client_headers(&mut headers, false);
    for h in [
        HARP_SHARED_KEY,
        DOCKER_ENGINE_PORT,
        http::header::AUTHORIZATION,
    ] {
        headers.remove(h);
    }
    let upstream = UpstreamRequest {
        method: parts.method,
        target: Target::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
        path_and_query,
        headers,
        body: client_body(body, worker.state.config.timeouts.client),
        client_upgrade: None,
    };
    match worker.forwarder.send(upstream).await {
        Ok(r) => r,
        Err(UpstreamError::ClientBody(fault)) => client_fault(&fault),
        Err(e) => {
            tracing::warn!(error = %e, "Docker Engine pass-through failed");
            respond::upstream_error(&e)
        }
    }
}

async fn forward(
    worker: &Worker,
    req: Request<Incoming>,
    plan: ForwardPlan,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    client: IpAddr,
) -> Response<Body> {
    let ip = match plan.record.upstream_ip().await {
        Ok(ip) => ip,
        Err(e) => {
            tracing::warn!(app = %plan.app_id, error = %e, "ExApp host cannot be resolved");
            return respond::refusal(&Refusal::NotFound);
        }
    };
    let target_path = if plan.target_path.is_empty() {
        "/"
    } else {
        plan.target_path.as_str()
    };
    let path_and_query = with_query(target_path, req.uri().query());
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    // Before harp adds its own headers, so `Connection` cannot name them away.
    prepare_client_headers(&mut headers, client_upgrade.is_some());
    headers.remove(HARP_SHARED_KEY);
    // Grow the map once for the injected headers, not once per insert.
    headers.reserve(INJECTED.len());
    // `insert` replaces every client-supplied copy of these names.
    let [id, version, authorization, aa_version] = INJECTED;
    let mut inject = |name: HeaderName, value: &str| match HeaderValue::from_str(value) {
        Ok(v) => {
            headers.insert(name, v);
        }
        Err(_) => {
            headers.remove(name);
        }
    };
    inject(id, &plan.app_id);
    inject(version, &plan.record.version);
    inject(authorization, &plan.authorization);
    headers.insert(aa_version, HeaderValue::from_static("32"));

    let upstream = UpstreamRequest {
        method: parts.method,
        target: Target::new(ip, plan.record.port),
        path_and_query,
        headers,
        body: client_body(body, worker.state.config.timeouts.client),
        client_upgrade,
    };
    match worker.forwarder.send(upstream).await {
        Ok(response) => {
            if plan.bruteforce.contains(&response.status().as_u16()) {
                worker.state.bans.record(client);
                tracing::warn!(%client, app = %plan.app_id, status = response.status().as_u16(), "brute-force status from ExApp recorded");
            }
            response
        }
        Err(UpstreamError::ClientBody(fault)) => client_fault(&fault),
        Err(e) => {
            if matches!(e, UpstreamError::Connect(..)) {
                plan.record.forget_resolution();
            }
            tracing::warn!(app = %plan.app_id, error = %e, "ExApp unreachable");
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

fn log_access(
    method: &http::Method,
    path: &str,
    app: &str,
    client: IpAddr,
    status: Option<u16>,
    started: Instant,
    upstream: Option<Duration>,
) {
    let total_ms = started.elapsed().as_secs_f64() * 1000.0;
    let upstream_ms = upstream.map(|d| d.as_secs_f64() * 1000.0);
    match status {
        Some(status) => {
            tracing::info!(target: "harp::access", %method, path, app, %client, status, total_ms, upstream_ms, "request")
        }
        None => {
            tracing::info!(target: "harp::access", %method, path, app, %client, status = "dropped", total_ms, "request")
        }
    }
}
