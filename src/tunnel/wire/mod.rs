//! The FRP "v1" wire format: message framing ([`frame`]), message bodies ([`messages`]) and
//! the AES-128-CFB stream encryption plus token hashing ([`crypto`]). Pure codecs over
//! `AsyncRead`/`AsyncWrite`; no sockets, no policy.

pub mod compress;
pub mod crypto;
pub mod frame;
pub mod messages;

pub use frame::{read_msg, write_msg};
pub use messages::Message;

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::AsyncWrite;

/// Writes `pending[*pos..]` to `inner`, then empties the buffer. Shared by the writers that
/// transform data (encryption, compression) and must keep transformed bytes until written.
pub(crate) fn poll_drain<W: AsyncWrite + Unpin>(
    inner: &mut W,
    pending: &mut Vec<u8>,
    pos: &mut usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while *pos < pending.len() {
        let n = ready!(Pin::new(&mut *inner).poll_write(cx, &pending[*pos..]))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        *pos += n;
    }
    pending.clear();
    *pos = 0;
    Poll::Ready(Ok(()))
}
