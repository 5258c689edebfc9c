//! One request: framing checks → client IP → `pipeline::decide` (30 s cap) → dispatch
//! (`dispatch`) → response and access line. Everything logged while the request is served
//! carries its context (`logging`): client address, app id, and the `aa-request-id` it came with.

use super::access_log::AccessLine;
use super::dispatch;
use super::gate::Gate;
use super::request::{
    ambiguous_host, http1_form, request_id, websocket_answer_as_h2, websocket_as_http1,
    websocket_over_h2,
};
use super::respond;
use super::stall::StallDisarm;
use crate::control::Control;
use crate::logging::{in_request, set_app, RequestContext};
use crate::metrics::{AppLabel, Metrics, Outcome, NO_APP};
use crate::pipeline::{decide, Decision, Refusal, RequestFacts};
use crate::security::client_ip;
use crate::upstream::{websocket_upgrade, Body, Forwarder, Resolver};
use http::{Request, Response};
use hyper::body::Incoming;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Contract §2.2: the whole access decision must be made within this time.
const DECISION_DEADLINE: Duration = Duration::from_secs(30);
/// A decision slower than this is worth a warning.
const SLOW_DECISION: Duration = Duration::from_secs(1);

/// Returned to hyper to close the connection without writing a response (the DROP outcome).
#[derive(Debug, thiserror::Error)]
#[error("request dropped by policy")]
pub(crate) struct Dropped;

/// What one worker thread serves requests with. Everything is shared between workers except
/// `forwarder`: pooled connections belong to the worker's runtime, so requests never hop threads.
pub(crate) struct FrontDoor {
    /// The pipeline's context: shared key, ban list, Nextcloud.
    pub(crate) gate: Arc<Gate>,
    pub(crate) control: Arc<Control>,
    pub(crate) forwarder: Forwarder,
    pub(crate) resolver: Arc<Resolver>,
    pub(crate) trusted_proxies: Arc<[IpNet]>,
    /// HP_TIMEOUT_CLIENT: request heads, request bodies, TLS handshakes, stalled readers.
    pub(crate) client_timeout: Duration,
    /// `None` when `HP_METRICS_ADDRESS` is empty: then nothing is counted.
    pub(crate) metrics: Option<Arc<Metrics>>,
}

/// What one request is counted as, filled in by `serve` when metrics are on.
struct Tally {
    app: AppLabel,
    outcome: Outcome,
}

/// Serves one request of the connection from `peer`; `stall` lets a WebSocket that switched
/// protocols leave the connection's stalled-reader timeout behind (the tunnel timeout governs
/// it from then on).
pub(crate) async fn handle(
    door: Arc<FrontDoor>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
    stall: StallDisarm,
) -> Result<Response<Body>, Dropped> {
    let started = Instant::now();
    http1_form(&mut req);
    if req.version() == http::Version::HTTP_2
        && req.method() == http::Method::CONNECT
        && !websocket_over_h2(&req)
    {
        // A 2xx to any other CONNECT would open a raw stream that no decision covers.
        tracing::info!("HTTP/2 CONNECT other than a WebSocket refused");
        return Ok(respond::bad_request());
    }
    if ambiguous_host(&req) {
        tracing::info!("request with an ambiguous Host refused");
        return Ok(respond::bad_request());
    }
    let client = client_ip(peer.ip(), req.headers(), &door.trusted_proxies);
    let mut access = AccessLine::start(&req, client, started);
    let context = RequestContext::new(client, request_id(req.headers()));
    let mut tally = None;
    let response = in_request(
        context,
        serve(&door, req, client, stall, access.as_mut(), &mut tally),
    )
    .await;
    if let (Some(m), Some(t)) = (&door.metrics, tally) {
        m.count(
            t.app,
            t.outcome,
            response.as_ref().map(|r| r.status().as_u16()),
        );
    }
    // Outside the request's context: the access line's format is fixed.
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
    tally: &mut Option<Tally>,
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
    set_app(app);
    if let Some(line) = access.as_deref_mut() {
        line.app.push_str(app);
    }
    if let Some(m) = &door.metrics {
        *tally = Some(Tally {
            app: m.apps.label(if app.is_empty() { NO_APP } else { app }),
            outcome: outcome_of(&decision, || door.gate.bans.is_banned(client)),
        });
    }
    let upstream_started = Instant::now();
    let response = match decision {
        Decision::Drop => return None,
        Decision::Refuse(r) => return Some(respond::refusal(&r)),
        Decision::EngineForbidden => return Some(respond::engine_forbidden()),
        Decision::Control { target_path } => {
            // Boxed, as the engine call below: their state machines (Docker, Kubernetes) are
            // large, and inline they would make every request's future as large (hyper moves
            // it into place per request).
            return Some(Box::pin(dispatch::control_call(door, req, &target_path, client)).await);
        }
        Decision::Engine { port, target_path } => {
            Box::pin(dispatch::engine_call(door, req, port, &target_path, client)).await
        }
        Decision::Forward(plan) => {
            // hyper upgrades HTTP/1.1 connections only; an HTTP/1.0 offer is dropped like h2c.
            let over_h2 = websocket_over_h2(&req);
            let websocket = over_h2
                || (req.version() == http::Version::HTTP_11 && websocket_upgrade(req.headers()));
            if over_h2 {
                websocket_as_http1(&mut req);
            }
            let upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
            let mut r = dispatch::forward(door, req, plan, upgrade, client).await;
            if r.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                if over_h2 {
                    // The stall guard stays armed: other streams share this connection, and
                    // a WebSocket stream has HTTP/2 flow control of its own.
                    websocket_answer_as_h2(&mut r);
                } else {
                    stall.disarm();
                }
            }
            r
        }
    };
    let upstream = upstream_started.elapsed();
    if let Some(line) = access {
        line.upstream = Some(upstream);
    }
    if let (Some(m), Some(t)) = (&door.metrics, tally.as_ref()) {
        m.upstream(t.app.clone(), upstream);
    }
    Some(response)
}

/// The `outcome` label of a decision; `banned` is asked only for a drop (bans drop).
fn outcome_of(decision: &Decision, banned: impl FnOnce() -> bool) -> Outcome {
    match decision {
        Decision::Drop if banned() => Outcome::banned,
        Decision::Drop => Outcome::dropped,
        Decision::Refuse(Refusal::NotFound) => Outcome::not_found,
        Decision::Refuse(_) | Decision::EngineForbidden => Outcome::denied,
        Decision::Forward(_) | Decision::Control { .. } | Decision::Engine { .. } => {
            Outcome::forwarded
        }
    }
}
