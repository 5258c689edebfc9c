//! The one byte relay of harp: upgraded connections (WebSockets, contract §6.1), the FRP
//! loopback listeners, `harp tunnel`'s work connections and the Docker 24000 relay all use
//! [`splice`]. It ends after `idle` without traffic in either direction (None = never); when
//! one side finished, its end of stream is passed on (half-close propagated) and the other
//! direction may go on, but only until it stays silent for `half_close`, so a peer that
//! half-closes and then goes quiet cannot hold the relay open even with no idle limit.
//!
//! Hand-written instead of `tokio::io::copy_bidirectional` for memory: that keeps a heap buffer
//! per direction for the tunnel's whole life (16 KiB per idle WebSocket with 8 KiB buffers).
//! Here each read lands in a stack buffer and is written straight on; heap memory is taken only
//! while a slow reader holds data back, so an idle WebSocket costs no copy buffer at all. It is
//! one future polling both directions (no stream splitting, no locks), and it tracks activity
//! and end-of-stream itself for the idle and half-close limits.

use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Longest silence allowed on a relay once one side has finished sending: long enough for a
/// server to compute and send its answer after the request's end, short enough that
/// half-closed relays do not pile up.
pub(crate) const HALF_CLOSE_IDLE: Duration = Duration::from_secs(30);

/// Largest single read: big enough for bulk transfers, small enough for a worker's stack.
/// 64 KiB is loopback's segment size: a bulk transfer through `harp tunnel` makes a quarter
/// of the read and write calls it made with 16 KiB (issue #14).
const READ_CHUNK: usize = 64 * 1024;

/// One direction of the tunnel.
#[derive(Default)]
struct Pipe {
    /// Bytes read but not yet accepted by the writer (only while it applies back-pressure).
    held: Vec<u8>,
    held_pos: usize,
    eof: bool,
    shut_down: bool,
    needs_flush: bool,
    moved: u64,
}

enum Progress {
    /// Some bytes moved (the idle clock restarts), and the pump then waited on its reader or
    /// writer, which will wake the task when there is more to do.
    Moved,
    /// This direction is finished (end of stream or error) and the writer was shut down.
    Done,
}

impl Pipe {
    fn poll_pump<R, W>(&mut self, cx: &mut Context<'_>, r: &mut R, w: &mut W) -> Poll<Progress>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut moved = false;
        loop {
            while self.held_pos < self.held.len() {
                match Pin::new(&mut *w).poll_write(cx, &self.held[self.held_pos..]) {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        self.held_pos += n;
                        self.moved += n as u64;
                        self.needs_flush = true;
                        moved = true;
                    }
                    Poll::Ready(_) => return self.finish(cx, w),
                    Poll::Pending => {
                        return if moved {
                            Poll::Ready(Progress::Moved)
                        } else {
                            Poll::Pending
                        }
                    }
                }
            }
            if !self.held.is_empty() {
                self.held = Vec::new();
                self.held_pos = 0;
            }
            if self.eof {
                return self.finish(cx, w);
            }
            let mut stack = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut buf = ReadBuf::uninit(&mut stack);
            match Pin::new(&mut *r).poll_read(cx, &mut buf) {
                Poll::Pending => {
                    if self.needs_flush {
                        if let Poll::Ready(res) = Pin::new(&mut *w).poll_flush(cx) {
                            self.needs_flush = false;
                            if res.is_err() {
                                return self.finish(cx, w);
                            }
                        }
                    }
                    return if moved {
                        Poll::Ready(Progress::Moved)
                    } else {
                        Poll::Pending
                    };
                }
                Poll::Ready(Err(_)) => {
                    self.eof = true;
                    continue;
                }
                Poll::Ready(Ok(())) => {}
            }
            let data = buf.filled();
            if data.is_empty() {
                self.eof = true;
                continue;
            }
            moved = true;
            let mut off = 0;
            while off < data.len() {
                match Pin::new(&mut *w).poll_write(cx, &data[off..]) {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        off += n;
                        self.moved += n as u64;
                        self.needs_flush = true;
                    }
                    Poll::Ready(_) => return self.finish(cx, w),
                    Poll::Pending => {
                        self.held = data[off..].to_vec();
                        self.held_pos = 0;
                        return Poll::Ready(Progress::Moved);
                    }
                }
            }
        }
    }

    /// Ends this direction: no more reads, and the peer learns it through a shutdown.
    fn finish<W: AsyncWrite + Unpin>(&mut self, cx: &mut Context<'_>, w: &mut W) -> Poll<Progress> {
        self.eof = true;
        self.held = Vec::new();
        self.held_pos = 0;
        if !self.shut_down {
            // Errors are irrelevant here: the direction is over either way.
            let _ = ready!(Pin::new(&mut *w).poll_shutdown(cx));
            self.shut_down = true;
        }
        Poll::Ready(Progress::Done)
    }
}

/// Copies both ways until both sides finished, or a timeout ends the tunnel (dropping both
/// sides closes them). Returns bytes moved (a→b, b→a).
pub(crate) async fn splice<A, B>(
    mut a: A,
    mut b: B,
    idle: Option<Duration>,
    half_close: Duration,
) -> (u64, u64)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut up = Pipe::default();
    let mut down = Pipe::default();
    let (mut up_done, mut down_done) = (false, false);
    let mut last_activity = Instant::now();
    let mut half_closed_at: Option<Instant> = None;
    let mut timer: Option<Pin<Box<Sleep>>> = None;
    std::future::poll_fn(|cx| loop {
        let mut moved = false;
        if !up_done {
            match up.poll_pump(cx, &mut a, &mut b) {
                Poll::Ready(Progress::Moved) => moved = true,
                Poll::Ready(Progress::Done) => up_done = true,
                Poll::Pending => {}
            }
        }
        if !down_done {
            match down.poll_pump(cx, &mut b, &mut a) {
                Poll::Ready(Progress::Moved) => moved = true,
                Poll::Ready(Progress::Done) => down_done = true,
                Poll::Pending => {}
            }
        }
        if up_done && down_done {
            return Poll::Ready(());
        }
        let now = Instant::now();
        if moved {
            last_activity = now;
        }
        if (up_done || down_done) && half_closed_at.is_none() {
            half_closed_at = Some(now);
        }
        // No second round after progress: a pump reports progress only once its reader or
        // writer returned Pending (which registered this task to be woken) or it finished, so
        // polling both again would only repeat two reads that return Pending: four of the ten
        // socket polls per echoed message (issue #14).
        let idle_deadline = idle.map(|d| last_activity + d);
        // Silence is measured from the half-close or the last byte, whichever is later.
        let half_deadline = half_closed_at.map(|t| t.max(last_activity) + half_close);
        let deadline = match (idle_deadline, half_deadline) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        let Some(deadline) = deadline else {
            return Poll::Pending;
        };
        if now >= deadline {
            return Poll::Ready(());
        }
        let sleep = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        // Re-armed lazily: traffic pushes the deadline later on every message, and moving a
        // timer per message is a timer-wheel update per message (issue #14). A timer left at an
        // older deadline just fires early and is re-armed here then; an earlier deadline (a
        // half-close starting) re-arms it at once.
        if deadline < sleep.deadline() || sleep.deadline() <= now {
            sleep.as_mut().reset(deadline);
        }
        if sleep.as_mut().poll(cx).is_ready() {
            continue;
        }
        return Poll::Pending;
    })
    .await;
    (up.moved, down.moved)
}

/// A test stream that counts the reads asked of it: how often a relay or a TLS client polls its
/// socket is the cost issue #14 measures.
#[cfg(test)]
pub(crate) mod counting {
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

    pub(crate) struct CountedReads {
        io: DuplexStream,
        /// Every read asked of it, Pending ones included.
        pub(crate) polls: Arc<AtomicUsize>,
        /// Reads that returned data.
        pub(crate) filled: Arc<AtomicUsize>,
    }

    impl CountedReads {
        pub(crate) fn new(io: DuplexStream) -> CountedReads {
            CountedReads {
                io,
                polls: Arc::default(),
                filled: Arc::default(),
            }
        }
    }

    impl AsyncRead for CountedReads {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            let before = buf.filled().len();
            let res = Pin::new(&mut self.io).poll_read(cx, buf);
            if buf.filled().len() > before {
                self.filled.fetch_add(1, Ordering::SeqCst);
            }
            res
        }
    }

    impl AsyncWrite for CountedReads {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.io).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.io).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.io).poll_shutdown(cx)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::counting::CountedReads;
    use super::*;
    use std::sync::atomic::Ordering;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    /// Issue #14: every read the relay makes is a socket poll (and a system call when the
    /// socket has data). Per message each way, the relay needs the read that gets it and the
    /// read that finds nothing more, and one look at the other, idle, side: three per hop,
    /// six per echoed message. Polling both sides again after progress made it ten.
    #[tokio::test]
    async fn an_echoed_message_costs_six_reads() {
        const MESSAGES: usize = 200;
        let (mut client, a) = duplex(1024);
        let (b, mut server) = duplex(1024);
        let a = CountedReads::new(a);
        let b = CountedReads::new(b);
        let (a_reads, b_reads) = (a.polls.clone(), b.polls.clone());
        let relay = tokio::spawn(splice(a, b, None, Duration::from_secs(5)));
        let echo = tokio::spawn(async move {
            let mut buf = [0u8; 32];
            for _ in 0..MESSAGES {
                server.read_exact(&mut buf).await.unwrap();
                server.write_all(&buf).await.unwrap();
            }
            server
        });
        let mut back = [0u8; 32];
        for i in 0..MESSAGES {
            let message = [i as u8; 32];
            client.write_all(&message).await.unwrap();
            client.read_exact(&mut back).await.unwrap();
            assert_eq!(back, message);
        }
        let server = echo.await.unwrap();
        let reads = a_reads.load(Ordering::Relaxed) + b_reads.load(Ordering::Relaxed);
        let per_message = reads as f64 / MESSAGES as f64;
        assert!(
            per_message <= 6.5,
            "{per_message:.2} reads per echoed message"
        );
        drop((client, server));
        assert_eq!(
            relay.await.unwrap(),
            (32 * MESSAGES as u64, 32 * MESSAGES as u64)
        );
    }

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

    #[tokio::test]
    async fn slow_reader_gets_everything_in_order() {
        let (mut client, a) = duplex(1024);
        let (b, mut server) = duplex(16);
        let task = tokio::spawn(splice(a, b, None, Duration::from_secs(5)));
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&data).await.unwrap();
            client.shutdown().await.unwrap();
            client
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(
            got, expected,
            "back-pressure must not lose or reorder bytes"
        );
        drop(writer.await.unwrap());
        drop(server);
        assert_eq!(task.await.unwrap().0, 200_000);
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

    #[tokio::test(start_paused = true)]
    async fn half_closed_side_may_stream_on_but_not_stay_silent() {
        let (client, a) = duplex(64);
        let (b, mut server) = duplex(64);
        let (mut client_r, mut client_w) = tokio::io::split(client);
        client_w.shutdown().await.unwrap();
        let started = Instant::now();
        let tunnel = tokio::spawn(splice(a, b, None, Duration::from_secs(30)));
        // The server learns of the half-close...
        let mut buf = [0u8; 8];
        assert_eq!(server.read(&mut buf).await.unwrap(), 0, "EOF passed on");
        // ...and answers for 100 s in 20 s steps: never silent for 30 s, so the relay stays.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(20)).await;
            server.write_all(b"x").await.unwrap();
            let mut one = [0u8; 1];
            client_r.read_exact(&mut one).await.unwrap();
        }
        // Then it goes quiet: closed 30 s after the last byte.
        tunnel.await.unwrap();
        assert_eq!(started.elapsed().as_secs(), 130);
        assert_eq!(
            client_r.read(&mut buf).await.unwrap(),
            0,
            "client side closed"
        );
    }
}
