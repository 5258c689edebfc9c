//! Listening sockets and the per-connection work of the shared accept loop
//! ([`crate::net::accept`]): connection cap, HTTP/1.1 keep-alive with upgrades, HTTP/2 (h2c
//! with prior knowledge on HTTP, ALPN `h2` on HTTPS; every stream decided like an HTTP/1
//! request, a DROP closing the whole connection), the client timeout on request heads and on clients that stop reading, optional
//! TLS, graceful shutdown.

use super::handler::{handle, FrontDoor};
use super::idle::ReadClock;
use super::sniff::{sniff, HttpVersion};
use super::stall::StallGuard;
use super::tls::TlsReloader;
use crate::config::BindAddr;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};

/// Pending-connection queue per socket; beyond the connection cap, clients wait here.
const LISTEN_BACKLOG: i32 = 4096;
/// How long in-flight requests may run on after a shutdown signal.
const DRAIN_TIME: Duration = Duration::from_secs(10);
/// ALPN name of HTTP/2 over TLS (RFC 9113 §3.2).
pub(super) const ALPN_H2: &[u8] = b"h2";

// HTTP/2 bounds, chosen so one connection costs no more than the HTTP/1 limits allow.
/// Streams a client may have open at once (HAProxy's default `tune.h2.max-concurrent-streams`);
/// each is one decided request, so this also caps the Nextcloud lookups one connection starts.
const H2_MAX_STREAMS: u32 = 100;
/// Decoded request header list (HPACK-expanded): an HTTP/1 head is capped by hyper's 100
/// headers and ~400 KiB buffer; 64 KiB fits any real cookie set and bounds HPACK bombs.
const H2_MAX_HEADER_LIST: u32 = 64 * 1024;
/// Client-reset streams hyper still has to accept before the connection is closed with
/// GOAWAY: the "rapid reset" flood (CVE-2023-44487) is cut after this many.
const H2_MAX_PENDING_RESETS: usize = 20;
/// Streams harp itself may reset (a handler error; a DROP closes the connection anyway)
/// before the connection goes away.
const H2_MAX_LOCAL_RESETS: usize = 64;
/// Request body bytes buffered per connection / per stream before the client must wait for
/// harp (flow control): the memory bound of one connection's uploads.
const H2_CONNECTION_WINDOW: u32 = 1024 * 1024;
const H2_STREAM_WINDOW: u32 = 256 * 1024;
// Left at h2's behaviour deliberately: a SETTINGS or PING flood cannot queue work, because h2
// answers one SETTINGS (or PING) before it reads the next frame, so a client that does not
// read the acknowledgements is throttled by its own socket buffer (and then by the stall guard).

/// Binds one ordinary listening socket (for listeners served by a single task, like FRP).
pub(crate) async fn bind(addr: &BindAddr) -> io::Result<TcpListener> {
    let socket = bind_sockets(addr, 1)?
        .pop()
        .expect("one socket was asked for");
    TcpListener::from_std(socket)
}

/// Binds `workers` sockets to `addr` with SO_REUSEPORT so each worker thread accepts on its
/// own socket and the kernel spreads connections between them (no shared accept queue, no
/// cross-thread hand-off). A hostname is resolved first; the first address that binds wins.
pub(crate) fn bind_sockets(
    addr: &BindAddr,
    workers: usize,
) -> io::Result<Vec<std::net::TcpListener>> {
    let mut last_err = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{addr} resolves to no address"),
    );
    for candidate in (addr.host.as_str(), addr.port).to_socket_addrs()? {
        match bind_group(candidate, workers.max(1)) {
            Ok(group) => return Ok(group),
            Err(e) => last_err = e,
        }
    }
    Err(last_err)
}

fn bind_group(first: SocketAddr, n: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let mut group: Vec<std::net::TcpListener> = Vec::with_capacity(n);
    let mut at = first;
    for _ in 0..n {
        let socket = Socket::new(Domain::for_address(at), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        // Only a group shares the port; a lone socket keeps it to itself.
        socket.set_reuse_port(n > 1)?;
        socket.set_nonblocking(true)?;
        socket.bind(&at.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        let listener: std::net::TcpListener = socket.into();
        // Port 0 means "any": the rest of the group must join the port the first one got.
        at = listener.local_addr()?;
        group.push(listener);
    }
    Ok(group)
}

/// One listening address (plain or TLS), bound once per worker.
pub(crate) struct Listener {
    pub sockets: Vec<std::net::TcpListener>,
    pub tls: Option<TlsReloader>,
}

impl Listener {
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sockets
            .first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no socket"))?
            .local_addr()
    }
}

/// Accepts on one worker's socket until `stop` turns true. Must run inside the worker's runtime,
/// which then owns the socket and every connection accepted from it.
pub(crate) async fn accept_loop(
    socket: std::net::TcpListener,
    tls: Option<TlsReloader>,
    door: Arc<FrontDoor>,
    limit: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
) {
    let tcp = match TcpListener::from_std(socket) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot register listening socket");
            return;
        }
    };
    let stop_accepting = stop.clone();
    let permits = move || {
        let limit = limit.clone();
        async move { limit.acquire_owned().await.ok() }
    };
    let serve = move |stream: tokio::net::TcpStream, peer: SocketAddr, permit| {
        let _ = stream.set_nodelay(true);
        let (door, stop) = (door.clone(), stop.clone());
        let acceptor = tls.as_ref().map(|t| t.current.load_full());
        async move {
            match acceptor {
                None => {
                    // h2c with prior knowledge or HTTP/1, told apart under the client timeout.
                    if let Some((protocol, stream)) = sniff(stream, door.client_timeout).await {
                        serve_connection(door, peer, stream, protocol, stop).await;
                    }
                }
                Some(acceptor) => {
                    let limit = door.client_timeout;
                    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            let protocol =
                                if tls_stream.get_ref().1.alpn_protocol() == Some(ALPN_H2) {
                                    HttpVersion::Http2
                                } else {
                                    HttpVersion::Http1
                                };
                            serve_connection(door, peer, tls_stream, protocol, stop).await
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        }
    };
    crate::net::accept::accept_loop(tcp, "front door", Some(stop_accepting), permits, serve).await;
}

/// Waits until every connection has returned its permit, or the drain time is over.
pub(crate) async fn drain(limit: Arc<Semaphore>, total: usize) {
    let all = u32::try_from(total).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN_TIME, limit.acquire_many(all)).await;
}

async fn serve_connection<S>(
    door: Arc<FrontDoor>,
    peer: SocketAddr,
    stream: S,
    protocol: HttpVersion,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let client_timeout = door.client_timeout;
    let _open = door
        .metrics
        .as_ref()
        .map(|m| crate::metrics::GaugeGuard::raise(&m.open_connections));
    if protocol == HttpVersion::Http2 {
        let (stream, last_read) = ReadClock::new(stream);
        // The client timeout also covers a client that stops reading a response.
        let (stream, stall) = StallGuard::new(stream, client_timeout);
        // Contract §2.2: a DROP closes the whole HTTP/2 connection, every stream with it, so a
        // client caught probing loses what it multiplexed alongside.
        let dropped = Arc::new(Notify::new());
        let on_drop = dropped.clone();
        let service = service_fn(move |req| {
            let answer = handle(door.clone(), peer, req, stall.clone());
            let on_drop = on_drop.clone();
            async move {
                let answer = answer.await;
                if answer.is_err() {
                    // `notify_one` keeps the signal if the listener is not waiting yet.
                    on_drop.notify_one();
                }
                answer
            }
        });
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(H2_MAX_STREAMS)
            .max_header_list_size(H2_MAX_HEADER_LIST)
            .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
            .max_local_error_reset_streams(H2_MAX_LOCAL_RESETS)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .initial_stream_window_size(H2_STREAM_WINDOW)
            // No keep-alive PINGs: their answers would count as client activity below. A dead
            // peer is silent, so it gets GOAWAY like an idle one; a stream still writing to it
            // fails through the stall guard.
            .keep_alive_interval(None)
            // RFC 8441: WebSockets over HTTP/2 (extended CONNECT, see `request::websocket_over_h2`).
            .enable_connect_protocol()
            .serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => return,
            // Returning drops the connection: the socket closes without GOAWAY or answer.
            _ = dropped.notified() => return,
            _ = stopped(&mut stop) => {}
            // The HTTP/2 counterpart of HTTP/1's header-read timeout (see `idle`).
            _ = last_read.silent_for(client_timeout) => {}
        }
        // GOAWAY: streams in progress finish, no new ones are accepted.
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
        return;
    }
    // The client timeout also covers a client that stops reading a response.
    let (stream, stall) = StallGuard::new(stream, client_timeout);
    let service = service_fn(move |req| handle(door.clone(), peer, req, stall.clone()));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(client_timeout)
        .keep_alive(true)
        // One flattened write per response beats writev with separate header and body slices
        // for the small messages typical of ExApp traffic (measured with the bench).
        .writev(false)
        // hyper's default limit of 100 headers (parsed into a stack array; a configured limit
        // costs a heap array per request) matches the reference: HAProxy allows 101.
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stopped(&mut stop) => {}
    }
    // Finish the request in progress, then close instead of waiting for the next one.
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Resolves once the stop flag is set (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
