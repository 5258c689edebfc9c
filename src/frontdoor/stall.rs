//! The client timeout for clients that stop reading (contract §6.1): a client connection whose
//! writes make no progress for `HP_TIMEOUT_CLIENT` fails, which ends the response and releases
//! its upstream connection. A client that keeps reading, however slowly, is never cut.
//!
//! Hand-written rather than taken from `tokio-io-timeout`: that crate's write timeout also
//! fires on a connection that is merely idle between writes, and it cannot be switched off
//! once a WebSocket takes the connection over (the tunnel timeout governs it then).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Turns a connection's stalled-reader timeout off for good (after a WebSocket upgrade).
#[derive(Clone, Debug, Default)]
pub(super) struct StallDisarm(Arc<AtomicBool>);

impl StallDisarm {
    pub(crate) fn disarm(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn disarmed(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

pin_project_lite::pin_project! {
    /// A client stream whose writes fail after `limit` without progress.
    ///
    /// The timer exists only while a write is blocked, so a connection whose writes complete at
    /// once (the usual case) never touches the timer wheel.
    pub(crate) struct StallGuard<S> {
        #[pin]
        io: S,
        timer: StallTimer,
    }
}

/// The write-side state of a [`StallGuard`]: every write-like poll goes through [`Self::check`].
struct StallTimer {
    limit: Duration,
    blocked: Option<Pin<Box<Sleep>>>,
    progressed: bool,
    disarm: StallDisarm,
}

impl<S> StallGuard<S> {
    pub(crate) fn new(io: S, limit: Duration) -> (Self, StallDisarm) {
        let disarm = StallDisarm::default();
        let guard = StallGuard {
            io,
            timer: StallTimer {
                limit,
                blocked: None,
                progressed: false,
                disarm: disarm.clone(),
            },
        };
        (guard, disarm)
    }
}

impl StallTimer {
    /// Passes a ready write result through (noting progress), or checks the stall timer.
    fn check<T>(
        &mut self,
        polled: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.progressed = true;
            return polled;
        }
        if self.disarm.disarmed() {
            self.blocked = None;
            return Poll::Pending;
        }
        let limit = self.limit;
        let timer = self
            .blocked
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if std::mem::take(&mut self.progressed) {
            timer.as_mut().reset(Instant::now() + limit);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("client read nothing for {limit:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead> AsyncRead for StallGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl<S: AsyncWrite> AsyncWrite for StallGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        this.timer.check(this.io.poll_write(cx, buf), cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        this.timer.check(this.io.poll_write_vectored(cx, bufs), cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        this.timer.check(this.io.poll_flush(cx), cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        this.timer.check(this.io.poll_shutdown(cx), cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn blocked_writes_fail_after_the_limit_unless_disarmed() {
        let limit = Duration::from_millis(300);
        // A 64-byte pipe whose far end reads nothing: the second write blocks.
        let (near, _far) = tokio::io::duplex(64);
        let (guard, _) = StallGuard::new(near, limit);
        let mut guard = std::pin::pin!(guard);
        guard.write_all(&[0; 64]).await.unwrap();
        let started = Instant::now();
        let err = guard.write_all(&[0; 1]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), limit);

        let (near, _far) = tokio::io::duplex(64);
        let (guard, disarm) = StallGuard::new(near, limit);
        let mut guard = std::pin::pin!(guard);
        guard.write_all(&[0; 64]).await.unwrap();
        disarm.disarm();
        let blocked = tokio::time::timeout(limit * 10, guard.write_all(&[0; 1])).await;
        assert!(
            blocked.is_err(),
            "a disarmed guard waits like the bare stream"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_but_steady_reader_is_not_cut() {
        let limit = Duration::from_millis(300);
        let (near, mut far) = tokio::io::duplex(64);
        let (guard, _) = StallGuard::new(near, limit);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let mut total = 0;
            while total < 640 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                total += far.read(&mut buf).await.unwrap();
            }
        });
        let mut guard = std::pin::pin!(guard);
        guard.write_all(&[0; 640]).await.unwrap();
        reader.await.unwrap();
    }
}
