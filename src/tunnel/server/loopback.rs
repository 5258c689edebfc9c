//! Compatibility listeners on `127.0.0.1:<remotePort>` while a proxy is registered (contract
//! decision 2; documented troubleshooting `curl 127.0.0.1:24001/_ping`). harp's own proxying
//! never uses them. Each connection is joined to a fresh work stream by the shared relay
//! ([`splice`]): half-close passed on, idle limit `HP_TIMEOUT_TUNNEL`.

use super::registry::Registry;
use crate::net::accept::accept_loop;
use crate::upstream::splice::{splice, HALF_CLOSE_IDLE};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Binds synchronously so the listener exists when NewProxyResp goes out; `None` (logged)
/// when the port is taken — routing through harp still works then. The listener lives until
/// the returned task is aborted (when the proxy goes away).
pub(super) fn spawn(
    registry: Arc<Registry>,
    ip: IpAddr,
    port: u16,
    idle: Option<Duration>,
) -> Option<tokio::task::JoinHandle<()>> {
    let addr = SocketAddr::new(ip, port);
    let std_listener = match std::net::TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(port, "cannot open listener {addr} for the tunnel: {e}");
            return None;
        }
    };
    let _ = std_listener.set_nonblocking(true);
    let listener = TcpListener::from_std(std_listener).ok()?;
    Some(tokio::spawn(accept_loop(
        listener,
        "tunnel loopback",
        None,
        || async { Some(()) },
        move |user, src, ()| {
            let registry = registry.clone();
            async move {
                let work = match registry.connect(port, Some(src)).await {
                    Ok(w) => w,
                    Err(e) => {
                        tracing::debug!(port, "loopback connection without a tunnel: {e}");
                        return;
                    }
                };
                let _ = user.set_nodelay(true);
                splice(user, work, idle, HALF_CLOSE_IDLE).await;
            }
        },
    )))
}
