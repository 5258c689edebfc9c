//! One request/response exchange with an upstream over the pooled client.

use super::body::{empty, Body, IdleTimeoutBody};
use super::connector::{Connector, LocalDialers};
use super::splice::splice;
use super::{Target, UpstreamError};
use http::header::HeaderName;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Connection-scoped headers that must not be relayed (RFC 9110 §7.6.1). Constants, not
/// strings: removing by `&str` parses and hashes each name on every request.
pub const HOP_BY_HOP: [HeaderName; 7] = [
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::TRANSFER_ENCODING,
    http::header::TE,
    http::header::TRAILER,
    http::header::UPGRADE,
];

/// Half-closed upgraded connections are reaped after this (contract §6.1 client-fin).
const HALF_CLOSE_REAP: Duration = Duration::from_secs(30);

pub struct UpstreamRequest {
    pub method: Method,
    pub target: Target,
    /// Origin-form request target (`/path?query`).
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Body,
    /// Present when the client asked to upgrade; the tunnel starts after a 101.
    pub client_upgrade: Option<OnUpgrade>,
    /// Retry a bodiless GET/HEAD once on a fresh connection when a pooled connection turns out
    /// to be dead (the peer restarted while it sat idle). Costs a header copy per request, so
    /// it is used for Docker engines (restarted daemons) and not on the ExApp hot path.
    pub retry_stale: bool,
}

#[derive(Clone)]
pub struct Forwarder {
    client: Client<Connector, Body>,
    server_timeout: Duration,
    tunnel_timeout: Option<Duration>,
    authorities: Arc<Mutex<HashMap<SocketAddr, Authority>>>,
}

/// Upstreams are few (one per ExApp and engine); the bound only guards against churn.
const MAX_CACHED_AUTHORITIES: usize = 1024;

impl Forwarder {
    pub fn new(
        connect_timeout: Duration,
        server_timeout: Duration,
        tunnel_timeout: Option<Duration>,
        local: LocalDialers,
    ) -> Forwarder {
        let connector = Connector {
            connect_timeout,
            local,
        };
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .http1_writev(false)
            .build(connector);
        Forwarder {
            client,
            server_timeout,
            tunnel_timeout,
            authorities: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// One request/response with the server timeout, errors classified for the status mapping.
    async fn exchange(
        &self,
        addr: SocketAddr,
        req: Request<Body>,
    ) -> Result<Response<hyper::body::Incoming>, UpstreamError> {
        match tokio::time::timeout(self.server_timeout, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout(addr)),
            Ok(Err(e)) if e.is_connect() => Err(UpstreamError::Connect(addr, root_cause(&e))),
            Ok(Err(e)) => Err(UpstreamError::BadResponse(addr, root_cause(&e))),
            Ok(Ok(r)) => Ok(r),
        }
    }

    /// `ip:port` as a URI authority, formatted once per upstream instead of once per request.
    fn authority(&self, addr: SocketAddr) -> Authority {
        let mut cache = self.authorities.lock();
        if let Some(a) = cache.get(&addr) {
            return a.clone();
        }
        if cache.len() >= MAX_CACHED_AUTHORITIES {
            cache.clear();
        }
        let a = Authority::try_from(addr.to_string().as_str())
            .expect("a socket address is a valid authority");
        cache.insert(addr, a.clone());
        a
    }

    pub async fn send(&self, req: UpstreamRequest) -> Result<Response<Body>, UpstreamError> {
        let addr = req.target.addr;
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.authority(addr))
            .path_and_query(req.path_and_query)
            .build()
            .map_err(|e| {
                UpstreamError::BadResponse(addr, format!("invalid request target: {e}"))
            })?;
        let mut out = Request::builder()
            .method(req.method)
            .uri(uri)
            .body(req.body)
            .map_err(|e| UpstreamError::BadResponse(addr, format!("cannot build request: {e}")))?;
        *out.headers_mut() = req.headers;
        let upgrading = req.client_upgrade.is_some();
        if !upgrading {
            strip_hop_by_hop(out.headers_mut());
        }
        let replay = (req.retry_stale
            && !upgrading
            && http_body::Body::is_end_stream(out.body())
            && matches!(*out.method(), Method::GET | Method::HEAD))
        .then(|| {
            (
                out.method().clone(),
                out.uri().clone(),
                out.headers().clone(),
            )
        });

        let mut response = match self.exchange(addr, out).await {
            Err(UpstreamError::BadResponse(..)) if replay.is_some() => {
                let (method, uri, headers) = replay.expect("checked above");
                let mut again = Request::new(empty());
                *again.method_mut() = method;
                *again.uri_mut() = uri;
                *again.headers_mut() = headers;
                tracing::debug!(%addr, "pooled connection was dead; retrying on a fresh one");
                self.exchange(addr, again).await?
            }
            other => other?,
        };

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_side) = req.client_upgrade {
                let upstream_side = hyper::upgrade::on(&mut response);
                let idle = self.tunnel_timeout;
                tokio::spawn(async move {
                    match tokio::try_join!(client_side, upstream_side) {
                        Ok((c, u)) => {
                            let (up, down) =
                                splice(TokioIo::new(c), TokioIo::new(u), idle, HALF_CLOSE_REAP)
                                    .await;
                            tracing::debug!(%addr, bytes_up = up, bytes_down = down, "upgraded connection closed");
                        }
                        Err(e) => tracing::debug!(%addr, error = %e, "upgrade did not complete"),
                    }
                });
                let (parts, _) = response.into_parts();
                return Ok(Response::from_parts(parts, empty()));
            }
        }
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let body = IdleTimeoutBody::new(body, self.server_timeout).boxed_unsync();
        Ok(Response::from_parts(parts, body))
    }
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // `Connection` usually says only keep-alive/close: skip the allocation unless it names more.
    let named: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| {
            !s.eq_ignore_ascii_case("keep-alive")
                && !s.eq_ignore_ascii_case("close")
                && !s.is_empty()
        })
        .filter_map(|s| HeaderName::from_bytes(s.as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(named.iter()) {
        if headers.contains_key(name) {
            headers.remove(name);
        }
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_removed() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, X-Private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }
}
