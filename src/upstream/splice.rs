//! Byte tunnel between two upgraded connections (contract §6.1): ends after `idle` without
//! traffic in either direction (None = never), and `half_close` after one side finished.
//!
//! The copying itself is tokio's `copy_bidirectional_with_sizes` (one future, no locks, no
//! stream splitting). It has no notion of idleness, so both ends are wrapped in [`Watched`],
//! which stamps the time of the last byte and of the first end-of-stream; a small watchdog
//! ends the tunnel when either limit is reached.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Per-direction copy buffer. Small on purpose: 10,000 idle WebSockets must stay cheap, and
/// WebSocket frames are small; bulk transfers still reach full speed with 8 KiB reads.
const BUFFER: usize = 8 * 1024;
const NEVER: u64 = u64::MAX;

/// Shared clock readings of one tunnel, in milliseconds since its start.
struct Stamps {
    start: Instant,
    last_activity: AtomicU64,
    first_eof: AtomicU64,
    /// Wakes the watchdog when the first end-of-stream starts the half-close clock.
    eof_seen: tokio::sync::Notify,
}

impl Stamps {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

pin_project_lite::pin_project! {
    struct Watched<T> {
        #[pin]
        io: T,
        stamps: Arc<Stamps>,
    }
}

impl<T: AsyncRead> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let res = this.io.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            let now = this.stamps.now_ms();
            if buf.filled().len() > before {
                this.stamps.last_activity.store(now, Ordering::Relaxed);
            } else {
                let first = this.stamps.first_eof.compare_exchange(
                    NEVER,
                    now,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                if first.is_ok() {
                    this.stamps.eof_seen.notify_one();
                }
            }
        }
        res
    }
}

impl<T: AsyncWrite> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let res = this.io.poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = res {
            if n > 0 {
                this.stamps
                    .last_activity
                    .store(this.stamps.now_ms(), Ordering::Relaxed);
            }
        }
        res
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

/// Copies both ways until both sides finished, or a timeout ends the tunnel. Returns bytes
/// moved (a→b, b→a) when the copy finished by itself, zeros when a timeout ended it.
pub async fn splice<A, B>(a: A, b: B, idle: Option<Duration>, half_close: Duration) -> (u64, u64)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let stamps = Arc::new(Stamps {
        start: Instant::now(),
        last_activity: AtomicU64::new(0),
        first_eof: AtomicU64::new(NEVER),
        eof_seen: tokio::sync::Notify::new(),
    });
    let mut a = Watched {
        io: a,
        stamps: stamps.clone(),
    };
    let mut b = Watched {
        io: b,
        stamps: stamps.clone(),
    };
    let copy = tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, BUFFER, BUFFER);
    tokio::pin!(copy);
    loop {
        let deadline_ms = next_deadline(&stamps, idle, half_close);
        let sleep = async {
            match deadline_ms {
                Some(ms) => {
                    tokio::time::sleep_until(stamps.start + Duration::from_millis(ms)).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            done = &mut copy => return done.unwrap_or((0, 0)),
            _ = stamps.eof_seen.notified() => continue,
            _ = sleep => {
                if let Some(ms) = next_deadline(&stamps, idle, half_close) {
                    if stamps.now_ms() >= ms {
                        return (0, 0);
                    }
                }
            }
        }
    }
}

/// The earliest time (ms since start) at which the tunnel must end, given what happened so far.
fn next_deadline(stamps: &Stamps, idle: Option<Duration>, half_close: Duration) -> Option<u64> {
    let idle_at = idle.map(|d| stamps.last_activity.load(Ordering::Relaxed) + d.as_millis() as u64);
    let eof = stamps.first_eof.load(Ordering::Relaxed);
    let half_at = (eof != NEVER).then(|| eof + half_close.as_millis() as u64);
    match (idle_at, half_at) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn moves_bytes_both_ways_until_both_close() {
        let (client, a) = duplex(64);
        let (b, server) = duplex(64);
        let task = tokio::spawn(splice(
            a,
            b,
            Some(Duration::from_secs(5)),
            Duration::from_secs(5),
        ));
        let (mut c, mut s) = (client, server);
        c.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        let writer = tokio::spawn(async move {
            s.write_all(&vec![7u8; 100_000]).await.unwrap();
            s
        });
        let mut got = vec![0u8; 100_000];
        c.read_exact(&mut got).await.unwrap();
        let s = writer.await.unwrap();
        drop(c);
        drop(s);
        assert_eq!(task.await.unwrap(), (4, 100_000));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_ends_the_tunnel() {
        let (_client, a) = duplex(64);
        let (b, _server) = duplex(64);
        let started = Instant::now();
        splice(a, b, Some(Duration::from_secs(10)), Duration::from_secs(30)).await;
        assert_eq!(started.elapsed().as_secs(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn traffic_postpones_the_idle_timeout() {
        let (mut client, a) = duplex(64);
        let (b, mut server) = duplex(64);
        let started = Instant::now();
        let tunnel = tokio::spawn(splice(
            a,
            b,
            Some(Duration::from_secs(10)),
            Duration::from_secs(30),
        ));
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(8)).await;
            client.write_all(b"x").await.unwrap();
            let mut one = [0u8; 1];
            server.read_exact(&mut one).await.unwrap();
        }
        tunnel.await.unwrap();
        assert_eq!(
            started.elapsed().as_secs(),
            34,
            "8 s gaps keep it open; ends 10 s after the last byte"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn half_closed_tunnel_reaped_even_when_unlimited() {
        let (client, a) = duplex(64);
        let (b, _server) = duplex(64);
        drop(client);
        let started = Instant::now();
        splice(a, b, None, Duration::from_secs(30)).await;
        assert_eq!(started.elapsed().as_secs(), 30);
    }
}
