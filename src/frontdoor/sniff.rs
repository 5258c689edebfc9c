//! Which HTTP version a plaintext connection speaks: HTTP/2 with prior knowledge (h2c, RFC 9113
//! §3.3) starts with a fixed 24-byte preface, anything else is HTTP/1. The bytes read to tell
//! are handed back to the protocol through [`Prefixed`].
//!
//! Hand-written rather than hyper-util's `auto` builder: that one waits for the preface without
//! a deadline, so a client sending one byte (or nothing) would hold a connection past
//! `HP_TIMEOUT_CLIENT`; here the whole sniff runs under it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// RFC 9113 §3.4: the client connection preface.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol a connection is served with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HttpVersion {
    Http1,
    Http2,
}

/// Reads until the first bytes match or leave the HTTP/2 preface (at most 24 bytes), within
/// `limit`. `None`: the client closed, failed or stayed silent (the connection is dropped, as
/// hyper's header-read timeout does for HTTP/1).
pub(super) async fn sniff<S: AsyncRead + Unpin>(
    mut io: S,
    limit: Duration,
) -> Option<(HttpVersion, Prefixed<S>)> {
    let mut seen = [0u8; H2_PREFACE.len()];
    let mut len = 0;
    let decided = tokio::time::timeout(limit, async {
        loop {
            let n = io.read(&mut seen[len..]).await.ok()?;
            if n == 0 {
                return None;
            }
            len += n;
            if seen[..len] != H2_PREFACE[..len] {
                return Some(HttpVersion::Http1);
            }
            if len == H2_PREFACE.len() {
                return Some(HttpVersion::Http2);
            }
        }
    })
    .await
    .ok()??;
    Some((
        decided,
        Prefixed {
            prefix: seen,
            at: 0,
            len,
            io,
        },
    ))
}

pin_project_lite::pin_project! {
    /// A stream whose first bytes were already read: they are read again before the rest.
    pub(super) struct Prefixed<S> {
        prefix: [u8; 24],
        at: usize,
        len: usize,
        #[pin]
        io: S,
    }
}

impl<S: AsyncRead> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if *this.at < *this.len {
            let n = (*this.len - *this.at).min(buf.remaining());
            buf.put_slice(&this.prefix[*this.at..*this.at + n]);
            *this.at += n;
            return Poll::Ready(Ok(()));
        }
        this.io.poll_read(cx, buf)
    }
}

pass_writes_through!(Prefixed);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn sniffed(sent: &[u8]) -> Option<(HttpVersion, Vec<u8>)> {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(sent).await.unwrap();
        drop(client);
        let (protocol, mut io) = sniff(server, Duration::from_secs(5)).await?;
        let mut replay = Vec::new();
        io.read_to_end(&mut replay).await.unwrap();
        Some((protocol, replay))
    }

    #[tokio::test]
    async fn the_preface_means_http2_and_every_byte_is_replayed() {
        let mut h2 = H2_PREFACE.to_vec();
        h2.extend_from_slice(b"\x00\x00\x00\x04");
        assert_eq!(sniffed(&h2).await, Some((HttpVersion::Http2, h2)));
        let h1 = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
        assert_eq!(sniffed(&h1).await, Some((HttpVersion::Http1, h1)));
        let post = b"POST /x HTTP/1.1\r\n".to_vec();
        assert_eq!(sniffed(&post).await, Some((HttpVersion::Http1, post)));
        assert_eq!(sniffed(b"PRI * HTTP/2.0").await, None, "closed mid-preface");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_preface_gives_up_after_the_limit() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"PRI * ").await.unwrap();
        assert!(sniff(server, Duration::from_secs(30)).await.is_none());
        drop(client);
    }
}
