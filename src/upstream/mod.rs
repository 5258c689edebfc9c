//! Upstream forwarding: the only module that moves request and response bytes to ExApps and
//! Docker engines. Pooled HTTP/1.1 keep-alive connections (`lean` for bodiless GET/HEAD inside
//! the request's task, hyper's client for bodies and upgrades), streamed bodies in both directions,
//! upgrades (WebSocket only) turned into idle-timed byte tunnels, upstream faults mapped to
//! 502/503/504 quickly, and a client's stalled or malformed request body reported as the
//! client's fault ([`ClientBodyError`]), never the upstream's.
//!
//! Where bytes go is decided elsewhere: callers pass a [`Target`]; tunnels and the Docker socket
//! plug in through [`LocalDialer`] for loopback ports they own.

mod body;
mod connector;
mod forward;
mod lean;
mod pool;
mod resolve;
pub(crate) mod splice;

pub use body::empty;
pub(crate) use body::{client_body, full, Body, ClientBodyError, IdleTimeoutBody};
pub use connector::{BoxedIo, LocalDialer, LocalDialers};
pub(crate) use forward::{prepare_client_headers, websocket_upgrade};
pub use forward::{Forwarder, UpstreamRequest};
pub use resolve::{ResolveError, Resolver};

use std::net::{IpAddr, SocketAddr};

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
}

impl Target {
    pub fn new(ip: IpAddr, port: u16) -> Target {
        Target {
            addr: SocketAddr::new(ip, port),
        }
    }
}

/// Why an upstream exchange failed, each with the status the client sees (contract §2.8).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {0}: {1}")]
    Connect(SocketAddr, String),
    #[error("{0} did not answer within the server timeout")]
    Timeout(SocketAddr),
    #[error("{0} closed the connection or sent an invalid response: {1}")]
    BadResponse(SocketAddr, String),
    /// The client's request body failed (stalled or malformed) before a response arrived: the
    /// client's fault (408 / 400), nothing is blamed on the upstream.
    #[error("{0}")]
    ClientBody(#[from] ClientBodyError),
}
