//! The stub ExApps (and engines) harp forwards to:
//! - [`StubExApp`]: echoes what it received as JSON, and serves status codes, SSE, slow
//!   answers, large uploads and a WebSocket echo;
//! - [`RecordingExApp`]: records every request and answers 101 to any upgrade (the attack
//!   suite's witness of what got through);
//! - [`unix_app`] / [`tcp_app`]: a one-line text app on a unix socket (behind frpc's
//!   unix-socket plugin) or TCP, which also answers a Docker engine's `/_ping`;
//! - servers that misbehave: [`garbage_server`], [`silent_server`], [`fixed_response_server`].

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

type Body = BoxBody<Bytes, Infallible>;

pub struct StubExApp {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    /// TCP connections accepted (shows whether harp reuses its upstream connections).
    pub connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StubExApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StubExApp {
    pub async fn start() -> StubExApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let counter = counter.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        handle(req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        StubExApp {
            addr,
            requests,
            connections,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

fn full(status: u16, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r
}

async fn handle(mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    if req.headers().contains_key("upgrade") {
        return Ok(websocket(&mut req));
    }
    if let Some(code) = path.strip_prefix("/status/") {
        return Ok(full(code.parse().unwrap_or(500), format!("status {code}")));
    }
    match path.as_str() {
        "/sse" => {
            let stream = futures_util::stream::unfold(0u32, |n| async move {
                if n >= 3 {
                    return None;
                }
                if n > 0 {
                    // The pace of the event stream is the behaviour under test (events must
                    // reach the client one by one, not buffered), not a synchronisation.
                    tokio::time::sleep(Duration::from_millis(700)).await;
                }
                let frame: Result<Frame<Bytes>, Infallible> =
                    Ok(Frame::data(Bytes::from(format!("data: {n}\n\n"))));
                Some((frame, n + 1))
            });
            let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
            r.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            Ok(r)
        }
        "/upload" => {
            let mut body = req.into_body();
            let mut total = 0u64;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.map(|f| f.into_data()) {
                    total += data.map(|d| d.len() as u64).unwrap_or(0);
                } else {
                    return Ok(full(500, "body error"));
                }
            }
            Ok(full(200, serde_json::json!({"bytes": total}).to_string()))
        }
        "/slow" => {
            let ms: u64 = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            // A slow app is the behaviour under test (timeouts, concurrency), not a
            // synchronisation.
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(full(200, "slow done"))
        }
        _ => {
            let headers: serde_json::Map<String, serde_json::Value> = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        serde_json::Value::String(v.to_str().unwrap_or("").to_string()),
                    )
                })
                .collect();
            let target = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default();
            let doc = serde_json::json!({"method": req.method().as_str(), "target": target, "headers": headers});
            let mut r = full(200, doc.to_string());
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            Ok(r)
        }
    }
}

fn websocket(req: &mut Request<Incoming>) -> Response<Body> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return full(400, "not a websocket request");
    };
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() {
                break;
            }
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    let mut r = full(101, Bytes::new());
    let h = r.headers_mut();
    h.insert("upgrade", "websocket".parse().unwrap());
    h.insert("connection", "Upgrade".parse().unwrap());
    h.insert(
        "sec-websocket-accept",
        derive_accept_key(key.as_bytes()).parse().unwrap(),
    );
    r
}

/// A server that answers every connection with bytes that are not HTTP, then closes.
pub async fn garbage_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"THIS IS NOT HTTP\r\n\r\n").await;
            });
        }
    });
    (addr, task)
}

/// A server that accepts and never answers.
pub async fn silent_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    (addr, task)
}

/// What the recording ExApp saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: http::HeaderMap,
}

/// A stub ExApp that records every request, answers JSON `ok` (200), and answers **101** to
/// any `Upgrade` request, then keeps speaking HTTP/1.1 on the upgraded connection, so a proxy
/// that relays such an upgrade lets later requests through undecided (and recorded here).
pub struct RecordingExApp {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RecordingExApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RecordingExApp {
    pub async fn start() -> RecordingExApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rec = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_recording(TokioIo::new(stream), rec.clone()));
            }
        });
        RecordingExApp { addr, seen, task }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Targets received so far (path and query as the ExApp saw them).
    pub fn targets(&self) -> Vec<String> {
        self.seen.lock().iter().map(|s| s.target.clone()).collect()
    }

    /// Whether any received target contains `needle`.
    pub fn saw(&self, needle: &str) -> bool {
        self.seen.lock().iter().any(|s| s.target.contains(needle))
    }
}

fn serve_recording<I>(
    io: I,
    rec: Arc<Mutex<Vec<Seen>>>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    Box::pin(async move {
        let svc = service_fn(move |req| {
            let rec = rec.clone();
            async move { Ok::<_, Infallible>(record(req, rec).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, svc)
            .with_upgrades()
            .await;
    })
}

/// Largest request body the recording ExApp reads before answering (it reads bodies so a
/// stalled upload keeps the upstream request open, as a real app would).
const RECORD_BODY_LIMIT: usize = 16 * 1024 * 1024;

async fn record(mut req: Request<Incoming>, rec: Arc<Mutex<Vec<Seen>>>) -> Response<Body> {
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    rec.lock().push(Seen {
        method: req.method().to_string(),
        target,
        headers: req.headers().clone(),
    });
    if let Some(proto) = req.headers().get("upgrade").cloned() {
        let upgrade = hyper::upgrade::on(&mut req);
        let rec = rec.clone();
        tokio::spawn(async move {
            if let Ok(up) = upgrade.await {
                serve_recording(up, rec).await;
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()).boxed());
        *r.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert("upgrade", proto);
        r.headers_mut()
            .insert("connection", "Upgrade".parse().unwrap());
        return r;
    }
    let mut read = 0usize;
    let body = req.body_mut();
    while let Some(Ok(frame)) = body.frame().await {
        read += frame.data_ref().map_or(0, |d| d.len());
        if read > RECORD_BODY_LIMIT {
            break;
        }
    }
    let mut r = Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")).boxed());
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

/// Reads until the end of a response head (or EOF / 64 KiB).
pub async fn read_head(s: &mut tokio::net::TcpStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") && out.len() < 65_536 {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    Ok(out)
}

/// A server that answers every request with the fixed bytes `response`, then closes.
pub async fn fixed_response_server(
    response: &'static [u8],
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = read_head(&mut s).await;
                let _ = s.write_all(response).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, task)
}

/// A tiny HTTP/1.1 app on a unix socket: `/_ping` answers `OK` (a Docker engine's reply);
/// anything else answers `<app>: <method> <path> body=<n>` after reading the whole body, and
/// the query `?checksum` adds ` fnv=<FNV-1a of the body>` so uploads can be checked intact.
pub async fn unix_app(path: &Path, app: &'static str) -> tokio::task::JoinHandle<()> {
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_app(stream, app));
            }
        }
    })
}

/// The same app on a TCP port (the "no tunnel" baseline).
pub async fn tcp_app(app: &'static str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_app(stream, app));
            }
        }
    });
    (addr, task)
}

/// 64-bit FNV-1a: a checksum the test and the app compute the same way, to show an upload
/// arrived byte for byte.
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    fnv1a_update(&mut h, data);
    h
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a_update(h: &mut u64, data: &[u8]) {
    for b in data {
        *h ^= u64::from(*b);
        *h = h.wrapping_mul(FNV_PRIME);
    }
}

async fn serve_app<S>(stream: S, app: &'static str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: Request<Incoming>| async move {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let checksum = req.uri().query() == Some("checksum");
        let body = if path.ends_with("/_ping") {
            "OK".to_string()
        } else {
            let mut n = 0usize;
            let mut fnv = FNV_OFFSET;
            let mut b = req.into_body();
            while let Some(f) = b.frame().await {
                if let Ok(d) = f?.into_data() {
                    n += d.len();
                    fnv1a_update(&mut fnv, &d);
                }
            }
            if checksum {
                format!("{app}: {method} {path} body={n} fnv={fnv:016x}")
            } else {
                format!("{app}: {method} {path} body={n}")
            }
        };
        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(body))))
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}
