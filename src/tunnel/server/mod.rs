//! harp's FRP server: listener and TLS ([`listener`]), logins and the control loop
//! ([`control`]), the port policy ([`policy`]), live tunnels and the upstream dialer
//! ([`registry`]), and loopback compatibility listeners ([`loopback`]).

mod control;
mod listener;
mod loopback;
pub mod policy;
pub mod registry;

use crate::state::AppState;
use registry::Registry;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use registry::TunnelDialer;

/// What every server task shares.
pub struct ServerCtx {
    pub registry: Arc<Registry>,
    /// Key and ban list for the login check.
    pub state: Arc<AppState>,
    /// `None` = plaintext (HP_FRP_DISABLE_TLS); otherwise TLS is forced with client certs.
    pub tls: Option<TlsAcceptor>,
    pub loopback_listeners: bool,
}

/// Serves FRP clients on `listener` until `stop` turns true; then every session is closed.
pub async fn serve(listener: TcpListener, ctx: ServerCtx, stop: watch::Receiver<bool>) {
    listener::accept_loop(listener, Arc::new(ctx), stop).await;
}
