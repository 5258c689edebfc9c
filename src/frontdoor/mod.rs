//! The front door: HTTP and HTTPS listeners, the per-request handler that runs the pipeline and
//! acts on its decision, the one place where errors become HTTP statuses, and the access log.
//!
//! Owns connections and responses; owns no access rules (`pipeline`) and moves no upstream bytes
//! itself (`upstream`).

mod access_log;
mod dispatch;
mod gate;
mod handler;
mod idle;
mod listener;
mod request;
pub mod respond;
mod sniff;
mod stall;
mod tls;

pub(crate) use gate::Gate;
pub(crate) use handler::FrontDoor;
pub(crate) use listener::accept_loop;
pub(crate) use listener::{bind, bind_sockets, drain, Listener};
pub(crate) use tls::load_tls_acceptor;
pub use tls::{TlsError, TlsReloader};

#[cfg(test)]
mod tests;
