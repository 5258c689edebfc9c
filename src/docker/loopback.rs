//! The loopback TCP listener on 127.0.0.1:24000 that relays to the local Docker socket
//! (project decision 2: documented troubleshooting `curl 127.0.0.1:24000/_ping` keeps working).

use crate::net::accept::accept_loop;
use crate::upstream::splice::{splice, HALF_CLOSE_IDLE};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::{TcpListener, UnixStream};

pub(crate) struct LocalEngineListener {
    tcp: TcpListener,
    socket: PathBuf,
}

/// Binds the relay; a taken port is only a warning because the proxy itself never needs it.
pub(crate) async fn bind_local_engine_listener(
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
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp.local_addr().ok()
    }

    /// Accepts until the task is aborted; each connection dials the socket fresh and is
    /// relayed by the shared relay with `idle` (`HP_TIMEOUT_TUNNEL`) as its idle limit.
    pub(crate) async fn serve(self, idle: Option<Duration>) {
        let path = self.socket;
        accept_loop(
            self.tcp,
            "local engine relay",
            None,
            || async { Some(()) },
            move |client, _peer, ()| {
                let path = path.clone();
                async move {
                    match UnixStream::connect(&path).await {
                        Ok(engine) => {
                            splice(client, engine, idle, HALF_CLOSE_IDLE).await;
                        }
                        Err(e) => {
                            // The connection span names the peer.
                            tracing::warn!(socket = %path.display(), error = %e, "local Docker engine unreachable");
                        }
                    }
                }
            },
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpStream, UnixListener};
    use tokio::time::Instant;

    /// A stand-in engine on a unix socket that echoes until its client half-closes.
    fn echo_engine(path: &std::path::Path) -> tokio::task::JoinHandle<()> {
        let listener = UnixListener::bind(path).unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn relay_passes_half_close_and_ends_idle_connections() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("engine.sock");
        let _engine = echo_engine(&sock);
        let relay = bind_local_engine_listener("127.0.0.1:0".parse().unwrap(), sock)
            .await
            .expect("bound");
        let addr = relay.local_addr().unwrap();
        let idle = Duration::from_secs(10);
        let _serving = tokio::spawn(relay.serve(Some(idle)));

        // Half-close reaches the engine, whose answer and EOF come back.
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"_ping").await.unwrap();
        c.shutdown().await.unwrap();
        let mut back = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut back))
            .await
            .expect("engine's EOF passed back")
            .unwrap();
        assert_eq!(back, b"_ping");

        // A client that goes quiet is closed after the idle limit.
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        c.read_exact(&mut one).await.unwrap();
        let quiet_since = Instant::now();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), c.read_to_end(&mut rest))
            .await
            .expect("idle relay closed")
            .unwrap();
        let took = quiet_since.elapsed();
        assert!(
            took >= idle && took < idle + Duration::from_secs(1),
            "closed after {took:?}"
        );
    }
}
