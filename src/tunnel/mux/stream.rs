//! One yamux stream as `AsyncRead + AsyncWrite`: receive buffer and window credit, send
//! window, FIN/RST. Frames go out through the session's writer; this file never touches the
//! socket.

use super::frame::*;
use super::session::Shared;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Largest Data frame we emit; the peer accepts anything within its window, smaller frames
/// just keep one busy stream from hogging the writer.
pub(super) const MAX_FRAME: usize = 128 * 1024;

pub(super) struct StreamState {
    pub id: u32,
    /// Receive window granted to the peer; re-granted once half of it was read.
    max_window: u32,
    inner: Mutex<Inner>,
}

/// The payload of one received DATA frame, read from `pos` on; its buffer goes back to the
/// session's pool once consumed.
struct Chunk {
    data: Vec<u8>,
    pos: usize,
}

struct Inner {
    recv: VecDeque<Chunk>,
    /// Credit the peer still has for sending to us.
    recv_window: u32,
    /// Bytes read by the application and not yet re-granted.
    consumed: u32,
    send_window: u32,
    remote_fin: bool,
    local_fin: bool,
    reset: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl StreamState {
    pub(super) fn new(id: u32, send_window: u32, recv_window: u32) -> StreamState {
        StreamState {
            id,
            max_window: recv_window,
            inner: Mutex::new(Inner {
                recv: VecDeque::new(),
                recv_window,
                consumed: 0,
                send_window,
                remote_fin: false,
                local_fin: false,
                reset: false,
                read_waker: None,
                write_waker: None,
            }),
        }
    }

    pub(super) fn fits_window(&self, len: u32) -> bool {
        len <= self.inner.lock().recv_window
    }

    pub(super) fn push_data(&self, data: Vec<u8>) {
        let mut g = self.inner.lock();
        g.recv_window = g.recv_window.saturating_sub(data.len() as u32);
        g.recv.push_back(Chunk { data, pos: 0 });
        if let Some(w) = g.read_waker.take() {
            w.wake();
        }
    }

    pub(super) fn add_send_window(&self, delta: u32) {
        let mut g = self.inner.lock();
        g.send_window = g.send_window.saturating_add(delta);
        if let Some(w) = g.write_waker.take() {
            w.wake();
        }
    }

    /// Returns true when both directions are now finished.
    pub(super) fn on_remote_fin(&self) -> bool {
        let mut g = self.inner.lock();
        g.remote_fin = true;
        if let Some(w) = g.read_waker.take() {
            w.wake();
        }
        g.local_fin
    }

    pub(super) fn reset(&self) {
        let mut g = self.inner.lock();
        g.reset = true;
        if let Some(w) = g.read_waker.take() {
            w.wake();
        }
        if let Some(w) = g.write_waker.take() {
            w.wake();
        }
    }
}

/// A multiplexed stream. Dropping it without shutdown still sends FIN (frp closes both
/// directions on the first EOF anyway).
pub struct MuxStream {
    state: Arc<StreamState>,
    shared: Arc<Shared>,
}

impl MuxStream {
    pub(super) fn new(state: Arc<StreamState>, shared: Arc<Shared>) -> MuxStream {
        MuxStream { state, shared }
    }

    pub fn id(&self) -> u32 {
        self.state.id
    }

    /// True once the peer reset the stream or the session died.
    pub(crate) fn is_dead(&self) -> bool {
        self.state.inner.lock().reset || self.shared.closed()
    }
}

/// Stores the task to wake, keeping the stored waker when it already wakes that task: a relay
/// polls an idle direction after every message of the other, and cloning its waker each time
/// is a reference-count round trip for nothing.
fn park(slot: &mut Option<Waker>, cx: &Context<'_>) {
    if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        *slot = Some(cx.waker().clone());
    }
}

fn broken() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "tunnel stream closed")
}

impl AsyncRead for MuxStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut g = self.state.inner.lock();
        let mut copied = 0usize;
        while buf.remaining() > 0 {
            let Some(front) = g.recv.front_mut() else {
                break;
            };
            let n = (front.data.len() - front.pos).min(buf.remaining());
            buf.put_slice(&front.data[front.pos..front.pos + n]);
            front.pos += n;
            if front.pos == front.data.len() {
                if let Some(done) = g.recv.pop_front() {
                    self.shared.recycle(done.data);
                }
            }
            copied += n;
        }
        if copied > 0 {
            g.consumed += copied as u32;
            // hashicorp re-grants once half the window is used; fewer, larger updates.
            if g.consumed >= self.state.max_window / 2 && !g.reset {
                let delta = g.consumed;
                g.consumed = 0;
                g.recv_window += delta;
                self.shared.send_flags(self.state.id, 0, delta);
            }
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() == 0 || g.remote_fin {
            return Poll::Ready(Ok(()));
        }
        if g.reset {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "tunnel stream reset",
            )));
        }
        park(&mut g.read_waker, cx);
        Poll::Pending
    }
}

impl AsyncWrite for MuxStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    /// Gathers the slices into one DATA frame (up to the send window and [`MAX_FRAME`]),
    /// copied straight into the session's write queue: hyper then hands over its head and
    /// body buffers as they are instead of first flattening them into a buffer of its own.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut g = self.state.inner.lock();
        if g.reset || g.local_fin || self.shared.closed() {
            return Poll::Ready(Err(broken()));
        }
        let total = bufs.iter().fold(0usize, |t, b| t.saturating_add(b.len()));
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        if g.send_window == 0 {
            park(&mut g.write_waker, cx);
            return Poll::Pending;
        }
        let n = total.min(g.send_window as usize).min(MAX_FRAME);
        let header = Header {
            ty: TYPE_DATA,
            flags: 0,
            stream: self.state.id,
            length: n as u32,
        };
        // Back-pressure: wait while the session's write queue is full.
        let queued = std::task::ready!(self.shared.poll_push(cx, &header, bufs));
        if !queued {
            return Poll::Ready(Err(broken()));
        }
        g.send_window -= n as u32;
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let both = {
            let mut g = self.state.inner.lock();
            if g.local_fin || g.reset {
                return Poll::Ready(Ok(()));
            }
            g.local_fin = true;
            g.remote_fin
        };
        self.shared.send_flags(self.state.id, FLAG_FIN, 0);
        if both {
            self.shared.forget(&self.state);
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for MuxStream {
    fn drop(&mut self) {
        let send_fin = {
            let mut g = self.state.inner.lock();
            let send = !g.local_fin && !g.reset;
            g.local_fin = true;
            send
        };
        if send_fin && !self.shared.closed() {
            self.shared.send_flags(self.state.id, FLAG_FIN, 0);
        }
        // Late frames for a forgotten id are discarded by the reader.
        self.shared.forget(&self.state);
    }
}

#[cfg(test)]
mod tests {
    use crate::tunnel::mux::{Role, Session, SessionConfig};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn nine_mib_single_write_both_ways() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (client, _) = Session::start(a, Role::Client, SessionConfig::default());
        let (_server, mut accept) = Session::start(b, Role::Server, SessionConfig::default());
        let data: Vec<u8> = (0..9 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let mut s = client.open().unwrap();
        let expected = data.clone();
        let echo = tokio::spawn(async move {
            let mut st = accept.recv().await.unwrap();
            let mut got = vec![0u8; expected.len()];
            st.read_exact(&mut got).await.unwrap();
            assert!(got == expected);
            st.write_all(&got).await.unwrap();
            st.shutdown().await.unwrap();
        });
        s.write_all(&data).await.unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.unwrap();
        assert!(back == data);
        echo.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn keepalive_failure_closes_session() {
        // The peer never reads, so it never answers our pings.
        let (a, _b) = tokio::io::duplex(1024);
        let cfg = SessionConfig::default();
        let (s, _) = Session::start(a, Role::Server, cfg);
        tokio::time::timeout(std::time::Duration::from_secs(45), s.closed())
            .await
            .expect("closed after 30 s + 10 s");
    }

    /// Found by the `yamux_frames` fuzz target: the peer resets a stream and opens a new one
    /// with the same id; dropping the old handle afterwards used to remove the new stream from
    /// the table, so its data and FIN were discarded and its reader waited forever.
    #[tokio::test]
    async fn dropping_a_reset_stream_keeps_a_new_stream_with_its_id() {
        use crate::tunnel::mux::frame::{Header, FLAG_FIN, FLAG_RST, FLAG_SYN, TYPE_DATA};
        let frame = |flags, length| {
            Header {
                ty: TYPE_DATA,
                flags,
                stream: 5,
                length,
            }
            .encode()
        };
        let (a, mut peer) = tokio::io::duplex(64 * 1024);
        let (_s, mut accept) = Session::start(a, Role::Server, SessionConfig::default());
        peer.write_all(&frame(FLAG_SYN | FLAG_RST, 0))
            .await
            .unwrap();
        peer.write_all(&frame(FLAG_SYN, 0)).await.unwrap();
        let old = accept.recv().await.unwrap();
        let mut new = accept.recv().await.unwrap();
        drop(old);
        peer.write_all(&frame(FLAG_FIN, 1)).await.unwrap();
        peer.write_all(b"x").await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), new.read_to_end(&mut got))
            .await
            .expect("the new stream sees its data and FIN")
            .unwrap();
        assert_eq!(got, b"x");
    }

    #[tokio::test]
    async fn garbage_header_ends_session() {
        let (a, mut b) = tokio::io::duplex(1024);
        let (s, _) = Session::start(a, Role::Server, SessionConfig::default());
        b.write_all(&[7u8; 12]).await.unwrap();
        s.closed().await;
        assert!(s.open().is_err());
    }
}
