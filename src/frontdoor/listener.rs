//! Listening sockets and the accept loop: connection cap, HTTP/1.1 keep-alive with upgrades,
//! the client timeout on request heads, optional TLS, graceful shutdown.

use super::handler::handle;
use super::tls::TlsReloader;
use crate::config::BindAddr;
use crate::state::AppState;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Generous header-count limit: AppAPI and browsers send far fewer, reverse proxies add some.
const MAX_HEADERS: usize = 256;
/// How long in-flight requests may run on after a shutdown signal.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Binds `addr`, resolving a hostname first (first address wins).
pub async fn bind(addr: &BindAddr) -> io::Result<TcpListener> {
    let mut last_err = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{addr} resolves to no address"),
    );
    for sa in tokio::net::lookup_host((addr.host.as_str(), addr.port)).await? {
        match TcpListener::bind(sa).await {
            Ok(l) => return Ok(l),
            Err(e) => last_err = e,
        }
    }
    Err(last_err)
}

/// One listening socket, plain or TLS.
pub struct Listener {
    pub tcp: TcpListener,
    pub tls: Option<TlsReloader>,
}

impl Listener {
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Accepts until `stop` turns true, then lets open requests finish (up to 10 s).
    pub async fn serve(
        self,
        state: Arc<AppState>,
        limit: Arc<Semaphore>,
        stop: watch::Receiver<bool>,
    ) {
        let mut stop_accepting = stop.clone();
        loop {
            let permit = tokio::select! {
                p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = stopped(&mut stop_accepting) => break,
            };
            let (stream, peer) = tokio::select! {
                r = self.tcp.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stopped(&mut stop_accepting) => break,
            };
            let _ = stream.set_nodelay(true);
            let (state, stop) = (state.clone(), stop.clone());
            let tls = self.tls.as_ref().map(|t| t.current.load_full());
            tokio::spawn(async move {
                match tls {
                    None => serve_connection(state, peer, stream, stop).await,
                    Some(acceptor) => {
                        let limit = state.config.timeouts.client;
                        match tokio::time::timeout(limit, acceptor.accept(stream)).await {
                            Ok(Ok(tls_stream)) => {
                                serve_connection(state, peer, tls_stream, stop).await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                }
                drop(permit);
            });
        }
        drop(self.tcp);
    }
}

/// Waits until every connection has returned its permit, or the drain time is over.
pub async fn drain(limit: Arc<Semaphore>, total: usize) {
    let all = u32::try_from(total).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN_TIME, limit.acquire_many(all)).await;
}

async fn serve_connection<S>(
    state: Arc<AppState>,
    peer: SocketAddr,
    stream: S,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let client_timeout = state.config.timeouts.client;
    let service = service_fn(move |req| handle(state.clone(), peer, req));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(client_timeout)
        .keep_alive(true)
        .max_headers(MAX_HEADERS)
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
