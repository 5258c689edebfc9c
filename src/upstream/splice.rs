//! Byte tunnel between two upgraded connections (contract §6.1): ends after `idle` without
//! traffic in either direction (None = never), and `half_close` after one side finished.
//!
//! Hand-written instead of `tokio::io::copy_bidirectional` because that has neither an idle
//! timeout nor half-close reaping, and its fixed 8 KiB buffers per direction would cost
//! 160 MB for 10,000 idle WebSockets; buffers here start small and grow only with traffic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

const INITIAL_BUFFER: usize = 1024;
const MAX_BUFFER: usize = 64 * 1024;

/// Copies both ways until both sides finished, or a timeout ends the tunnel. Returns bytes
/// moved (a→b, b→a).
pub async fn splice<A, B>(a: A, b: B, idle: Option<Duration>, half_close: Duration) -> (u64, u64)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last_activity_ms = AtomicU64::new(0);
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let forward = pump(ar, bw, &last_activity_ms, start);
    let backward = pump(br, aw, &last_activity_ms, start);
    tokio::pin!(forward, backward);
    let (mut sent, mut received): (Option<u64>, Option<u64>) = (None, None);
    let mut half_closed_at: Option<Instant> = None;
    loop {
        if let (Some(s), Some(r)) = (sent, received) {
            return (s, r);
        }
        let last = start + Duration::from_millis(last_activity_ms.load(Ordering::Relaxed));
        let idle_deadline = idle.map(|d| last + d);
        let half_deadline = half_closed_at.map(|t| t + half_close);
        let deadline = match (idle_deadline, half_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            n = &mut forward, if sent.is_none() => {
                sent = Some(n);
                half_closed_at.get_or_insert_with(Instant::now);
            }
            n = &mut backward, if received.is_none() => {
                received = Some(n);
                half_closed_at.get_or_insert_with(Instant::now);
            }
            _ = sleep => {
                let now = Instant::now();
                let last = start + Duration::from_millis(last_activity_ms.load(Ordering::Relaxed));
                let idle_hit = idle.is_some_and(|d| now >= last + d);
                let half_hit = half_closed_at.is_some_and(|t| now >= t + half_close);
                if idle_hit || half_hit {
                    return (sent.unwrap_or(0), received.unwrap_or(0));
                }
            }
        }
    }
}

async fn pump<R, W>(mut from: R, mut to: W, activity: &AtomicU64, start: Instant) -> u64
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; INITIAL_BUFFER];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        activity.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        total += n as u64;
        if n == buf.len() && buf.len() < MAX_BUFFER {
            buf.resize(buf.len() * 2, 0);
        }
        activity.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown().await;
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

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
    async fn half_closed_tunnel_reaped_even_when_unlimited() {
        let (client, a) = duplex(64);
        let (b, _server) = duplex(64);
        drop(client);
        let started = Instant::now();
        splice(a, b, None, Duration::from_secs(30)).await;
        assert_eq!(started.elapsed().as_secs(), 30);
    }
}
