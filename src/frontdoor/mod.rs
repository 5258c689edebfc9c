//! The front door: HTTP and HTTPS listeners, the per-request handler that runs the pipeline and
//! acts on its decision, the one place where errors become HTTP statuses, and the access log.
//!
//! Owns connections and responses; owns no access rules (`pipeline`) and moves no upstream bytes
//! itself (`upstream`).

mod handler;
mod listener;
pub(crate) mod respond;
mod stall;
mod tls;

pub(crate) use handler::Worker;
pub(crate) use listener::{accept_loop, bind, bind_sockets, drain, Listener};
pub(crate) use tls::load_tls_acceptor;
pub use tls::{TlsError, TlsReloader};
