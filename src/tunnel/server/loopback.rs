//! Compatibility listeners on `127.0.0.1:<remotePort>` while a proxy is registered (contract
//! decision 2; documented troubleshooting `curl 127.0.0.1:24001/_ping`). harp's own proxying
//! never uses them. Joins the two sides like frps: the first EOF in either direction ends both.

use super::registry::Registry;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// Binds synchronously so the listener exists when NewProxyResp goes out; `None` (logged)
/// when the port is taken — routing through harp still works then.
pub fn spawn(
    registry: Arc<Registry>,
    ip: IpAddr,
    port: u16,
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
    Some(tokio::spawn(async move {
        loop {
            let Ok((mut user, src)) = listener.accept().await else {
                continue;
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                let Ok(work) = registry.connect(port, Some(src)).await else {
                    return;
                };
                let (mut wr, mut ww) = tokio::io::split(work);
                let (mut ur, mut uw) = user.split();
                tokio::select! {
                    _ = tokio::io::copy(&mut ur, &mut ww) => {}
                    _ = tokio::io::copy(&mut wr, &mut uw) => {}
                }
                let _ = uw.shutdown().await;
            });
        }
    }))
}
