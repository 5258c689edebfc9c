//! The loopback TCP listener on 127.0.0.1:24000 that relays to the local Docker socket
//! (project decision 2: documented troubleshooting `curl 127.0.0.1:24000/_ping` keeps working).

use std::net::SocketAddr;
use std::path::PathBuf;
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

    /// Accepts until the task is aborted; each connection dials the socket fresh.
    pub async fn serve(self) {
        loop {
            let (mut client, peer) = match self.tcp.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "local engine relay accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let path = self.socket.clone();
            tokio::spawn(async move {
                match UnixStream::connect(&path).await {
                    Ok(mut engine) => {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    }
                    Err(e) => {
                        tracing::warn!(%peer, socket = %path.display(), error = %e, "local Docker engine unreachable");
                    }
                }
            });
        }
    }
}
