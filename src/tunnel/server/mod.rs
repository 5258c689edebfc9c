//! harp's FRP server: listener and TLS ([`listener`]), logins and the control loop
//! ([`control`]), the port policy ([`policy`]), live tunnels and the upstream dialer
//! ([`registry`]), and loopback compatibility listeners ([`loopback`]).

mod control;
mod listener;
mod loopback;
pub(crate) mod policy;
pub mod registry;
pub mod settings;

use crate::control::LoginChecker;
use registry::Registry;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub(crate) use registry::TunnelDialer;

/// What every server task shares.
pub struct ServerCtx {
    pub registry: Arc<Registry>,
    /// The login check (shared key and ban list).
    pub login: LoginChecker,
    /// Idle timeout of the loopback listeners' relayed connections (HP_TIMEOUT_TUNNEL;
    /// `None`: unlimited).
    pub tunnel_idle: Option<Duration>,
    /// TLS for clients that start a handshake; `None` = no server certificate.
    pub tls: Option<TlsAcceptor>,
    /// Close plaintext clients at the first byte (HaRP's default).
    pub force_tls: bool,
    /// frp's auth.token (HaRP: empty): privilege key and control-stream encryption.
    pub auth_token: String,
    /// Where compatibility listeners bind (HaRP: 127.0.0.1); `None` = no such listeners.
    pub loopback_listeners: Option<std::net::IpAddr>,
}

/// Serves FRP clients on `listener` until `stop` turns true; then every session is closed.
pub async fn serve(listener: TcpListener, ctx: ServerCtx, stop: watch::Receiver<bool>) {
    listener::accept_loop_frp(listener, Arc::new(ctx), stop).await;
}
