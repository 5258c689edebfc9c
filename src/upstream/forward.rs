//! One request/response exchange with an upstream over the pooled client, and which client
//! headers may travel with it (hop-by-hop stripping, the one upgrade harp forwards).

use super::body::{empty, Body, ClientBodyError, IdleTimeoutBody};
use super::connector::{Connector, LocalDialers};
use super::lean::{self, Lean, LeanError};
use super::pool::{Pool, PoolError};
use super::splice::{splice, HALF_CLOSE_IDLE};
use super::{Target, UpstreamError};
use http::header::HeaderName;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Connection-scoped headers that must not be relayed (RFC 9110 §7.6.1). Constants, not
/// strings: removing by `&str` parses and hashes each name on every request.
pub(super) const HOP_BY_HOP: [HeaderName; 7] = [
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::TRANSFER_ENCODING,
    http::header::TE,
    http::header::TRAILER,
    http::header::UPGRADE,
];

pub struct UpstreamRequest {
    pub method: Method,
    pub target: Target,
    /// Origin-form request target (`/path?query`).
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Body,
    /// Present when the client asked to upgrade; the tunnel starts after a 101.
    pub client_upgrade: Option<OnUpgrade>,
}

#[derive(Clone)]
pub struct Forwarder {
    /// Bodiless GET and HEAD: the in-task client.
    lean: Arc<Lean>,
    /// Everything else: hyper's client.
    pool: Arc<Pool>,
    server_timeout: Duration,
    tunnel_timeout: Option<Duration>,
    /// Raised while an upgraded (WebSocket) connection is spliced; `None` with metrics off.
    upgraded: Option<prometheus_client::metrics::gauge::Gauge>,
}

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
        Forwarder {
            lean: Arc::new(Lean::new(connector.clone(), server_timeout)),
            pool: Arc::new(Pool::new(connector)),
            server_timeout,
            tunnel_timeout,
            upgraded: None,
        }
    }

    /// Counts spliced upgraded connections into `gauge` (front-door forwarders only).
    pub(crate) fn with_upgraded_gauge(
        mut self,
        gauge: prometheus_client::metrics::gauge::Gauge,
    ) -> Forwarder {
        self.upgraded = Some(gauge);
        self
    }

    /// Sends `req` and returns the upstream's response. The caller has already passed the
    /// client's headers through [`prepare_client_headers`] (before adding its own).
    pub async fn send(&self, req: UpstreamRequest) -> Result<Response<Body>, UpstreamError> {
        let addr = req.target.addr;
        let mut headers = req.headers;
        if !headers.contains_key(http::header::HOST) {
            // HTTP/1.0 clients may omit it; HTTP/1.1 upstreams require one.
            if let Ok(v) = http::HeaderValue::from_str(&addr.to_string()) {
                headers.insert(http::header::HOST, v);
            }
        }
        let upgrading = req.client_upgrade.is_some();
        let mut response = if lean::eligible(&req.method, &req.body, upgrading) {
            self.send_lean(addr, &req.method, &req.path_and_query, &headers)
                .await?
        } else {
            // Origin-form target: the pooled connection already knows where it goes.
            let uri = Uri::try_from(req.path_and_query).map_err(|e| {
                UpstreamError::BadResponse(addr, format!("invalid request target: {e}"))
            })?;
            let mut out = Request::new(req.body);
            *out.method_mut() = req.method;
            *out.uri_mut() = uri;
            *out.headers_mut() = headers;
            // Boxed: hyper's client state machine is large, and inline it would make every
            // request's future (lean ones included) as large.
            let (response, sender) = Box::pin(self.exchange(addr, out)).await?;
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                return match req.client_upgrade {
                    Some(client_side) => Ok(self.tunnel(addr, client_side, response)),
                    // Switching would hand the client a connection to the ExApp on which no
                    // later request is decided; the upstream connection is dropped with it.
                    None => Err(UpstreamError::BadResponse(
                        addr,
                        "101 to a request that did not upgrade".into(),
                    )),
                };
            }
            // Both framings at once is a smuggling attempt or a confused server (RFC 9112
            // §6.3): the body is read as chunked below, and the connection is not reused.
            let ambiguous = response
                .headers()
                .contains_key(http::header::TRANSFER_ENCODING)
                && response
                    .headers()
                    .contains_key(http::header::CONTENT_LENGTH);
            let (parts, body) = response.into_parts();
            let body = ReturnToPool {
                inner: body,
                back: if ambiguous {
                    None
                } else {
                    Some((self.pool.clone(), addr, sender))
                },
            };
            let body = IdleTimeoutBody::new(body, self.server_timeout).boxed_unsync();
            Response::from_parts(parts, body)
        };
        let headers = response.headers_mut();
        // RFC 9112 §6.3: a Content-Length next to a Transfer-Encoding must be removed before
        // forwarding; harp re-frames the decoded body itself.
        if headers.contains_key(http::header::TRANSFER_ENCODING) {
            headers.remove(http::header::CONTENT_LENGTH);
        }
        strip_hop_by_hop(headers);
        Ok(response)
    }

    async fn send_lean(
        &self,
        addr: SocketAddr,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
    ) -> Result<Response<Body>, UpstreamError> {
        let head = lean::request_head(method, path_and_query, headers)
            .map_err(|e| UpstreamError::BadResponse(addr, e))?;
        let sent = self.lean.send(addr, &head, *method == Method::HEAD);
        match tokio::time::timeout(self.server_timeout, sent).await {
            Err(_) => Err(UpstreamError::Timeout(addr)),
            Ok(Err(LeanError::Connect(e))) => Err(UpstreamError::Connect(addr, e.to_string())),
            Ok(Err(e)) => Err(UpstreamError::BadResponse(addr, e.to_string())),
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// One hyper request/response with the server timeout, errors classified for the status
    /// mapping.
    async fn exchange(
        &self,
        addr: SocketAddr,
        req: Request<Body>,
    ) -> Result<(Response<Incoming>, SendRequest<Body>), UpstreamError> {
        match tokio::time::timeout(self.server_timeout, self.pool.send(addr, req)).await {
            Err(_) => Err(UpstreamError::Timeout(addr)),
            Ok(Err(PoolError::Connect(e))) => Err(UpstreamError::Connect(addr, e.to_string())),
            Ok(Err(PoolError::Exchange(e))) => match ClientBodyError::find(&e) {
                Some(fault) => Err(UpstreamError::ClientBody(fault)),
                None => Err(UpstreamError::BadResponse(addr, root_cause(&e))),
            },
            Ok(Ok(pair)) => Ok(pair),
        }
    }

    /// After a 101: splices client and upstream in a task of their own; the client gets the
    /// 101 head now.
    fn tunnel(
        &self,
        addr: SocketAddr,
        client_side: OnUpgrade,
        mut response: Response<Incoming>,
    ) -> Response<Body> {
        let upstream_side = hyper::upgrade::on(&mut response);
        let idle = self.tunnel_timeout;
        let upgraded = self.upgraded.clone();
        tokio::spawn(async move {
            match tokio::try_join!(client_side, upstream_side) {
                Ok((c, u)) => {
                    let _open = upgraded.as_ref().map(crate::metrics::GaugeGuard::raise);
                    let (up, down) =
                        splice(TokioIo::new(c), TokioIo::new(u), idle, HALF_CLOSE_IDLE).await;
                    tracing::debug!(%addr, bytes_up = up, bytes_down = down, "upgraded connection closed");
                }
                Err(e) => tracing::debug!(%addr, error = %e, "upgrade did not complete"),
            }
        });
        let (parts, _) = response.into_parts();
        Response::from_parts(parts, empty())
    }
}

/// Sent only with an h2c upgrade, which harp never forwards (RFC 9113 §3.2.1).
const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Whether the client asks for a WebSocket upgrade: exactly one `Upgrade` protocol, `websocket`
/// in any case (RFC 6455 §4.1). The only upgrade harp forwards: after any other 101 (h2c, TLS,
/// a custom protocol) the ExApp would get requests that no access decision saw.
pub(crate) fn websocket_upgrade(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(http::header::UPGRADE).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket"),
        _ => false,
    }
}

/// Readies the client's headers for the upstream; called *before* harp adds its own headers,
/// so the names a client lists in `Connection` can never remove them. Removes the hop-by-hop
/// headers, the names `Connection` lists (except `Host`, which is never removable), and any
/// upgrade offer; a WebSocket upgrade (`websocket`) is then offered again in canonical form.
pub(crate) fn prepare_client_headers(headers: &mut HeaderMap, websocket: bool) {
    let upgrade = if websocket {
        headers.get(http::header::UPGRADE).cloned()
    } else {
        None
    };
    strip(headers, &[HTTP2_SETTINGS], &[http::header::HOST]);
    if let Some(protocol) = upgrade {
        headers.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("upgrade"),
        );
        headers.insert(http::header::UPGRADE, protocol);
    }
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip(headers, &[], &[]);
}

/// Removes [`HOP_BY_HOP`], `also`, and the names `Connection` lists unless they are in `keep`.
fn strip(headers: &mut HeaderMap, also: &[HeaderName], keep: &[HeaderName]) {
    // Nearly every message has none but `Connection`: one pass over the (few) names costs less
    // than hashing all seven candidates for lookups.
    if !headers
        .keys()
        .any(|n| HOP_BY_HOP.contains(n) || also.contains(n))
    {
        return;
    }
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
        .filter(|n| !keep.contains(n))
        .collect();
    for name in HOP_BY_HOP.iter().chain(also).chain(named.iter()) {
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

/// The upstream response body; gives its connection back to the pool once read to the end.
/// A body dropped early leaves the connection to close with it (it is mid-message).
struct ReturnToPool {
    inner: Incoming,
    back: Option<(Arc<Pool>, SocketAddr, SendRequest<Body>)>,
}

impl ReturnToPool {
    fn give_back(&mut self) {
        if let Some((pool, addr, sender)) = self.back.take() {
            pool.put(addr, sender);
        }
    }
}

impl HttpBody for ReturnToPool {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.give_back();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ReturnToPool {
    fn drop(&mut self) {
        // An empty body is complete without ever being polled (HEAD, 204, 304, length 0).
        if self.inner.is_end_stream() {
            self.give_back();
        }
    }
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

    #[test]
    fn client_connection_header_cannot_remove_host_and_only_websocket_is_offered() {
        let mut h = HeaderMap::new();
        h.insert("host", "x".parse().unwrap());
        h.insert(
            "connection",
            "Upgrade, HTTP2-Settings, host, x-private".parse().unwrap(),
        );
        h.insert("upgrade", "h2c".parse().unwrap());
        h.insert(
            "http2-settings",
            "AAMAAABkAAQCAAAAAAIAAAAA".parse().unwrap(),
        );
        h.insert("x-private", "1".parse().unwrap());
        assert!(!websocket_upgrade(&h));
        prepare_client_headers(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["host"], "x");

        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            "keep-alive, Upgrade, x-private".parse().unwrap(),
        );
        h.insert("upgrade", "WebSocket".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("sec-websocket-key", "k".parse().unwrap());
        assert!(websocket_upgrade(&h));
        prepare_client_headers(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "WebSocket");
        assert!(!h.contains_key("x-private"));
        assert!(h.contains_key("sec-websocket-key"));

        for offer in ["websocket, h2c", "h2c", ""] {
            let mut h = HeaderMap::new();
            h.insert("upgrade", offer.parse().unwrap());
            assert!(!websocket_upgrade(&h), "{offer:?}");
        }
        let mut h = HeaderMap::new();
        h.append("upgrade", "websocket".parse().unwrap());
        h.append("upgrade", "h2c".parse().unwrap());
        assert!(!websocket_upgrade(&h), "two Upgrade lines");
    }
}
