//! One control stream: Login check (in-process plugin semantics, contract §4.4, then frp's
//! token hash), LoginResp in clear, then the encrypted message loop (NewProxy, CloseProxy,
//! Ping) and ReqWorkConn requests. Owns the lifetime of the client's proxies via the
//! registry; never touches work-stream payloads.

use super::listener::LoginGrant;
use super::loopback;
use super::registry::{Registry, CONTROL_QUEUE, MAX_POOL};
use super::ServerCtx;
use crate::control::FrpLoginVerdict;
use crate::tunnel::mux::MuxStream;
use crate::tunnel::wire::crypto::{derive_key, privilege_key, CryptoReader, CryptoWriter};
use crate::tunnel::wire::messages::*;
use crate::tunnel::wire::{read_msg, write_msg, Message};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;

/// Reported to frpc as the server version (it only logs it).
const SERVER_VERSION: &str = "0.65.0";

/// The LoginResp error for a login refusal, or the accepted run id.
fn authenticate(ctx: &ServerCtx, login: &Login, peer: SocketAddr) -> Result<String, String> {
    let token = login.metas.get("token").map(String::as_str);
    match ctx.login.check(peer.ip(), token) {
        FrpLoginVerdict::Accepted(_) => {}
        FrpLoginVerdict::Banned(_) => {
            tracing::warn!("FRP login refused: client is banned");
            return Err("banned".into());
        }
        _ => {
            tracing::warn!(
                "FRP login refused: wrong or missing metadatas.token (failure recorded)"
            );
            // What frps answers when HaRP's login plugin replies 400.
            return Err("send Login request to plugin error".into());
        }
    }
    // HaRP configures no frp auth.token, so the expected hash is MD5 of the timestamp alone.
    let expected = privilege_key(&ctx.auth_token, login.timestamp);
    if !bool::from(expected.as_bytes().ct_eq(login.privilege_key.as_bytes())) {
        tracing::warn!("FRP login refused: privilege_key does not match the server's auth.token");
        return Err("token in login doesn't match token from configuration".into());
    }
    Ok(if login.run_id.is_empty() {
        hex::encode(rand::random::<[u8; 8]>())
    } else {
        login.run_id.clone()
    })
}

/// A `NewWorkConn`'s own credentials: frpc signs it (privilege key = MD5 of `auth.token` and the
/// timestamp) only when frp's `auth.additionalScopes` names NewWorkConns; by default the fields
/// are empty and the session binding alone decides. A key that is sent must match.
pub(crate) fn work_conn_key_ok(auth_token: &str, w: &NewWorkConn) -> bool {
    w.privilege_key.is_empty()
        || bool::from(
            privilege_key(auth_token, w.timestamp)
                .as_bytes()
                .ct_eq(w.privilege_key.as_bytes()),
        )
}

/// How long a refused client gets to receive its LoginResp before the connection closes.
const REFUSAL_FLUSH: Duration = Duration::from_secs(5);

pub(super) async fn run(
    ctx: Arc<ServerCtx>,
    mut stream: MuxStream,
    login: Login,
    peer: SocketAddr,
    grant: LoginGrant,
) {
    let session = grant.session.clone();
    let run_id = match authenticate(&ctx, &login, peer) {
        Ok(id) => id,
        Err(error) => {
            let resp = Message::LoginResp(LoginResp {
                version: SERVER_VERSION.into(),
                error,
                ..Default::default()
            });
            let _ = tokio::time::timeout(REFUSAL_FLUSH, write_msg(&mut stream, &resp)).await;
            // The refusal must reach frpc (it logs the reason) before TCP goes away.
            session.close_after_flush(REFUSAL_FLUSH).await;
            return;
        }
    };
    tracing::Span::current().record("run_id", run_id.as_str());
    // Full-size session before frpc learns it may open work streams.
    grant.logged_in();
    let resp = Message::LoginResp(LoginResp {
        version: SERVER_VERSION.into(),
        run_id: run_id.clone(),
        error: String::new(),
    });
    if write_msg(&mut stream, &resp).await.is_err() {
        return;
    }
    tracing::info!(version = %login.version, "FRP client logged in");

    let pool = (login.pool_count.max(0) as usize).min(MAX_POOL);
    let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
    let control = ctx
        .registry
        .add_control(run_id, peer, session.id(), pool, tx);
    let (r, w) = tokio::io::split(stream);
    let key = derive_key(&ctx.auth_token);
    let writer = tokio::spawn(write_loop(CryptoWriter::new(w, key), rx));
    for _ in 0..pool {
        control.request_work_conn();
    }
    let mut reader = CryptoReader::new(r, key);
    loop {
        let msg = tokio::select! {
            m = read_msg(&mut reader) => m,
            _ = control.stopped() => break,
            _ = session.closed() => break,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!("FRP control stream ended: {e}");
                break;
            }
        };
        match msg {
            Message::NewProxy(p) => new_proxy(&ctx.registry, &control, p, &ctx, peer),
            Message::CloseProxy(c) => ctx.registry.remove_proxy(&control, &c.proxy_name),
            Message::Ping(_) => control.send(Message::Pong(Pong::default())),
            other => {
                tracing::debug!("unexpected {} on the control stream ignored", other.name());
            }
        }
    }
    ctx.registry.remove_control(&control);
    writer.abort();
    tracing::info!("FRP client session ended");
}

fn new_proxy(
    registry: &Arc<Registry>,
    control: &Arc<super::registry::Control>,
    p: NewProxy,
    ctx: &Arc<ServerCtx>,
    peer: SocketAddr,
) {
    let mut resp = NewProxyResp {
        proxy_name: p.proxy_name.clone(),
        ..Default::default()
    };
    let result = registry
        .add_proxy(
            control,
            &p.proxy_name,
            &p.proxy_type,
            p.remote_port,
            super::registry::Wrapping {
                encryption: p.use_encryption,
                compression: p.use_compression,
            },
        )
        .map_err(|e| e.to_string());
    // Names are capped: the client chooses them.
    let subject = format!(
        "proxy={} port={}",
        p.proxy_name.chars().take(128).collect::<String>(),
        p.remote_port
    );
    let outcome = match &result {
        Ok(_) => "registered".to_string(),
        Err(e) => format!("refused: {e}"),
    };
    ctx.login
        .audit()
        .record("frp_proxy", Some(peer.ip()), subject, outcome);
    match result {
        Ok(proxy) => {
            let kind = if proxy.port >= *crate::contract::ports::ENGINE_PORTS.start() {
                "Docker engine"
            } else {
                "ExApp"
            };
            tracing::info!(proxy = %proxy.name, port = proxy.port, kind, "FRP proxy registered: {} <-> 127.0.0.1:{}", proxy.name, proxy.port);
            resp.remote_addr = format!(":{}", proxy.port);
            if let Some(ip) = ctx.loopback_listeners {
                let idle = ctx.tunnel_idle;
                let handle = loopback::spawn(registry.clone(), ip, proxy.port, idle);
                if let Some(h) = handle {
                    registry.set_listener(&proxy, h);
                }
            }
        }
        Err(error) => {
            tracing::warn!(proxy = %p.proxy_name, port = p.remote_port, "FRP proxy refused: {error}");
            resp.error = error;
        }
    }
    control.send(Message::NewProxyResp(resp));
}

async fn write_loop<W: tokio::io::AsyncWrite + Unpin>(
    mut w: CryptoWriter<W>,
    mut rx: mpsc::Receiver<Message>,
) {
    while let Some(msg) = rx.recv().await {
        if write_msg(&mut w, &msg).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work_conn(privilege_key: &str, timestamp: i64) -> NewWorkConn {
        NewWorkConn {
            run_id: "run".into(),
            privilege_key: privilege_key.into(),
            timestamp,
        }
    }

    #[test]
    fn work_connection_keys_are_checked_only_when_sent() {
        // frpc's default: no NewWorkConns scope, so no key; the session binding decides.
        assert!(work_conn_key_ok("", &work_conn("", 0)));
        let signed = privilege_key("token", 1_700_000_000);
        assert!(work_conn_key_ok(
            "token",
            &work_conn(&signed, 1_700_000_000)
        ));
        assert!(
            !work_conn_key_ok("token", &work_conn(&signed, 1_700_000_001)),
            "a key for another timestamp"
        );
        assert!(
            !work_conn_key_ok("other", &work_conn(&signed, 1_700_000_000)),
            "a key made with another auth.token"
        );
        assert!(
            !work_conn_key_ok("", &work_conn("00", 0)),
            "a malformed key"
        );
    }
}
