//! Idle HTTP/2 connections: hyper's HTTP/2 server has no idle timeout (HTTP/1 has the
//! header-read timeout), so a client could hold a connection slot forever by opening it and
//! sending nothing. [`ReadClock`] notes when the client last sent a byte; the listener sends
//! GOAWAY after `HP_TIMEOUT_CLIENT` of silence. GOAWAY is graceful: streams in progress (a long
//! download, a slow ExApp) finish; only new streams need a new connection.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Instant;

/// When the client last sent bytes, in milliseconds since the connection started.
#[derive(Clone)]
pub(super) struct LastRead {
    start: Instant,
    millis: Arc<AtomicU64>,
}

impl LastRead {
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.millis.store(ms, Ordering::Relaxed);
    }

    /// Resolves once the client has sent nothing for `limit`.
    pub(super) async fn silent_for(&self, limit: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.millis.load(Ordering::Relaxed));
            let deadline = last + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

pin_project_lite::pin_project! {
    /// A client stream that records the time of every read that returned bytes.
    pub(super) struct ReadClock<S> {
        #[pin]
        io: S,
        last: LastRead,
    }
}

impl<S> ReadClock<S> {
    pub(super) fn new(io: S) -> (Self, LastRead) {
        let last = LastRead {
            start: Instant::now(),
            millis: Arc::new(AtomicU64::new(0)),
        };
        (
            ReadClock {
                io,
                last: last.clone(),
            },
            last,
        )
    }
}

impl<S: AsyncRead> AsyncRead for ReadClock<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.io.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.last.touch();
        }
        polled
    }
}

pass_writes_through!(ReadClock);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn silence_is_measured_from_the_last_byte_read() {
        let (mut client, server) = tokio::io::duplex(64);
        let (mut io, last) = ReadClock::new(server);
        let limit = Duration::from_secs(30);
        tokio::time::advance(Duration::from_secs(20)).await;
        client.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        io.read_exact(&mut b).await.unwrap();
        let from = Instant::now();
        last.silent_for(limit).await;
        assert!(from.elapsed() >= limit, "the read restarted the clock");
    }
}
