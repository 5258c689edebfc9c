//! The FRP "v1" wire format: message framing ([`frame`]), message bodies ([`messages`]) and
//! the AES-128-CFB stream encryption plus token hashing ([`crypto`]). Pure codecs over
//! `AsyncRead`/`AsyncWrite`; no sockets, no policy.

pub mod compress;
pub mod crypto;
pub mod frame;
pub mod messages;

pub use frame::{read_msg, write_msg, FrameError};
pub use messages::Message;
