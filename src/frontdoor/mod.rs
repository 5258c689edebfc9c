//! The front door: HTTP and HTTPS listeners, the per-request handler that runs the pipeline and
//! acts on its decision, the one place where errors become HTTP statuses, and the access log.
//!
//! Owns connections and responses; owns no access rules (`pipeline`) and moves no upstream bytes
//! itself (`upstream`).

/// `AsyncWrite` for a wrapper that only watches or rewrites reads: every write call goes to its
/// pinned `io` field unchanged (the connection wrappers `idle::ReadClock`, `sniff::Prefixed`).
macro_rules! pass_writes_through {
    ($wrapper:ident) => {
        impl<S: tokio::io::AsyncWrite> tokio::io::AsyncWrite for $wrapper<S> {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.project().io.poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.project().io.poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.io.is_write_vectored()
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                self.project().io.poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                self.project().io.poll_shutdown(cx)
            }
        }
    };
}

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
