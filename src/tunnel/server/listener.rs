//! Accepting FRP connections: frps's first-byte sniffing (0x17 custom TLS byte, 0x16 TLS,
//! anything else plaintext or refused when TLS is forced), the mutual-TLS handshake, the yamux
//! session, and dispatching each new stream by its first message (Login or NewWorkConn).

use super::{control, ServerCtx};
use crate::tunnel::mux::{MuxStream, Role, Session, SessionConfig};
use crate::tunnel::wire::{read_msg, Message};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// frps's deadline for the first byte and for the first message of a stream.
const FIRST_READ: Duration = Duration::from_secs(10);
const CUSTOM_TLS_BYTE: u8 = 0x17;
const TLS_HANDSHAKE: u8 = 0x16;

pub async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<ServerCtx>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                tokio::spawn(handle_conn(tcp, peer, ctx.clone(), stop.clone()));
            }
            Err(e) => {
                tracing::warn!("FRP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle_conn(
    mut tcp: TcpStream,
    peer: SocketAddr,
    ctx: Arc<ServerCtx>,
    stop: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let mut first = [0u8; 1];
    let first = match tokio::time::timeout(FIRST_READ, tcp.peek(&mut first)).await {
        Ok(Ok(1)) => first[0],
        _ => return,
    };
    match (&ctx.tls, first) {
        (Some(acceptor), CUSTOM_TLS_BYTE | TLS_HANDSHAKE) => {
            if first == CUSTOM_TLS_BYTE {
                let _ = tcp.read_exact(&mut [0u8; 1]).await;
            }
            match tokio::time::timeout(FIRST_READ, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => run_session(tls, peer, ctx, stop).await,
                Ok(Err(e)) => tracing::warn!(client = %peer, "FRP TLS handshake failed: {e}"),
                Err(_) => tracing::warn!(client = %peer, "FRP TLS handshake timed out"),
            }
        }
        (Some(_), _) if ctx.force_tls => {
            tracing::warn!(client = %peer, "non-TLS connection received on a TlsOnly server; closed (the FRP client needs transport.tls.enable = true and harp's certificates)");
        }
        (None, CUSTOM_TLS_BYTE | TLS_HANDSHAKE) => {
            tracing::warn!(client = %peer, "TLS FRP client refused: harp runs with HP_FRP_DISABLE_TLS=true (set transport.tls.enable = false)");
        }
        (_, 0) => run_session(tcp, peer, ctx, stop).await,
        (_, b'F') => tracing::warn!(client = %peer, "unsupported frp wire protocol v2; closed"),
        (_, _) => {
            tracing::warn!(client = %peer, "FRP client without tcpMux is not supported; closed");
        }
    }
}

async fn run_session<T>(
    io: T,
    peer: SocketAddr,
    ctx: Arc<ServerCtx>,
    mut stop: watch::Receiver<bool>,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (session, mut accept) = Session::start(io, Role::Server, SessionConfig::default());
    loop {
        tokio::select! {
            s = accept.recv() => match s {
                Some(stream) => {
                    tokio::spawn(dispatch(stream, peer, session.clone(), ctx.clone()));
                }
                None => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    session.close();
}

async fn dispatch(mut stream: MuxStream, peer: SocketAddr, session: Session, ctx: Arc<ServerCtx>) {
    let first = match tokio::time::timeout(FIRST_READ, read_msg(&mut stream)).await {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            tracing::warn!(client = %peer, "FRP stream closed: {e}");
            return;
        }
        Err(_) => return,
    };
    match first {
        Message::Login(login) => control::run(ctx, stream, login, peer, session).await,
        Message::NewWorkConn(w) => ctx.registry.add_work_conn(&w.run_id, stream),
        other => tracing::warn!(client = %peer, "FRP stream opened with {}; closed", other.name()),
    }
}
