//! A small yamux (hashicorp spec) session, written for frp's peers instead of using the
//! `yamux` crate: that crate ACKs an inbound stream only on its first write, and frpc tears
//! down the whole session when a pooled (idle) work stream stays un-ACKed for 75 s; it also
//! caps frame sizes by its own window. Here every inbound stream is ACKed at once with the
//! 6 MiB window frp uses, pings are answered by the reader task, and our own keep-alive pings
//! detect dead peers like frps does. Owns framing, windows and stream lifecycle only; it knows
//! nothing about FRP messages.

mod frame;
mod session;
mod stream;

pub use frame::{INITIAL_WINDOW, MAX_WINDOW};
pub use session::{Role, Session, SessionConfig, DEFAULT_MAX_STREAMS};
pub use stream::MuxStream;
