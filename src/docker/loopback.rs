//! The loopback TCP listener on 127.0.0.1:24000 that relays to the local Docker socket
//! (project decision 2: documented troubleshooting `curl 127.0.0.1:24000/_ping` keeps working).

use crate::net::accept::accept_loop;
use crate::upstream::splice::{splice, HALF_CLOSE_IDLE};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::{TcpListener, UnixStream};

pub struct LocalEngineListener {
    tcp: TcpListener,
    socket: PathBuf,
}

/// Binds the relay; a taken port is only a warning because the proxy itself never needs it.
pub async fn bind_local_engine_listener(
    addr: SocketAddr,
    socket: PathBuf,
) -> Option<LocalEngineListener> {
    match TcpListener::bind(addr).await {
        Ok(tcp) => Some(LocalEngineListener { tcp, socket }),
        Err(e) => {
            tracing::warn!(%addr, error = %e, "cannot open the local Docker engine relay; continuing without it");
            None
        }
    }
}

impl LocalEngineListener {
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp.local_addr().ok()
    }

    /// Accepts until the task is aborted; each connection dials the socket fresh and is
    /// relayed by the shared relay with `idle` (`HP_TIMEOUT_TUNNEL`) as its idle limit.
    pub async fn serve(self, idle: Option<Duration>) {
        let path = self.socket;
        accept_loop(
            self.tcp,
            "local engine relay",
            None,
            || async { Some(()) },
            move |client, peer, ()| {
                let path = path.clone();
                async move {
                    match UnixStream::connect(&path).await {
                        Ok(engine) => {
                            splice(client, engine, idle, HALF_CLOSE_IDLE).await;
                        }
                        Err(e) => {
                            tracing::warn!(%peer, socket = %path.display(), error = %e, "local Docker engine unreachable");
                        }
                    }
                }
            },
        )
        .await;
    }
}
