//! One yamux session: a reader task (dispatches frames, ACKs new streams at once, answers
//! pings), a writer task (serialises frames from every stream), and a keep-alive task.
//! Owns the stream table and the bounded write queue; stream I/O itself lives in `stream.rs`.
//!
//! Hostile-peer bounds: the write queue holds at most [`QUEUE_LIMIT`] bytes (stream writers
//! and the reader wait for room, so a peer that floods pings without reading stalls its own
//! reader instead of growing our memory), a peer that accepts none of our bytes for
//! [`WRITE_STALL`] is disconnected, every length from the wire is checked against the stream's
//! window before anything is allocated, and streams beyond the session's cap are reset.
//!
//! Speed (issue #14): stream writes encode their frames straight into the queue's buffer, the
//! writer swaps that whole buffer for its empty one and hands it to TLS in one write, so
//! frames from every stream leave coalesced with no allocation per frame; both buffers are
//! given back after [`IDLE_RELEASE`] without traffic.

use super::frame::*;
use super::stream::{MuxStream, StreamState, MAX_FRAME};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch, Notify};

/// frps keeps at most this many streams waiting to be accepted; more are reset.
const ACCEPT_BACKLOG: usize = 256;
/// Bytes the write queue may hold before stream writers and the reader wait for the socket.
/// The writer takes everything queued as one batch (one TLS write of many frames), so the
/// next batch fills while the previous one is on the wire: a peer that never reads pins at
/// most this much queued plus one batch in the writer's hands.
pub(crate) const QUEUE_LIMIT: usize = 512 * 1024;
/// What a queued frame is charged besides its payload: far more than its 12-byte header, so a
/// flood of empty control frames (ping answers, ACKs) exhausts the queue's budget long before
/// its memory matters.
pub(crate) const FRAME_COST: usize = 64;
/// A peer that accepts none of our bytes for this long is disconnected: hashicorp yamux's
/// `ConnectionWriteTimeout`, the same deadline frpc's own session applies to its writes.
pub(crate) const WRITE_STALL: Duration = Duration::from_secs(10);
/// Streams one session may hold open unless the owner sets another cap: frpc opens one work
/// stream per user connection, so this matches the front door's default connection cap.
pub const DEFAULT_MAX_STREAMS: usize = 8192;

/// Write buffers larger than this are given back once the session has been idle for
/// [`IDLE_RELEASE`]: a bulk transfer grows the queue's and the writer's buffers to about
/// [`QUEUE_LIMIT`] each, and thousands of mostly idle sessions must not keep that.
const IDLE_RETAIN: usize = 64 * 1024;
/// How long the writer waits with nothing to send before it releases large buffers; short
/// pauses in a transfer keep them (reallocating costs page faults on every batch).
const IDLE_RELEASE: Duration = Duration::from_secs(1);

/// Received payloads of at least this size are read into buffers kept for reuse: allocating
/// and freeing one large buffer per frame made the allocator grow and trim the heap (a
/// `brk` call and fresh zeroed pages) for nearly every frame of a bulk transfer. Smaller
/// payloads are cheap to allocate and are not pooled.
const POOL_MIN: usize = 16 * 1024;
/// Largest buffer kept: harp's own frames ([`MAX_FRAME`]); larger ones are freed.
const POOL_MAX: usize = MAX_FRAME;
/// Buffers kept per session (at most 2 MiB, a third of one stream's window), given back
/// after [`IDLE_RELEASE`] idle: when the local side drains slower than the tunnel delivers,
/// frames queue up in the stream, and four buffers left most of them allocated afresh.
const POOL_BUFFERS: usize = 16;

/// Source of [`Session::id`].
static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opens streams with odd ids (frpc, `harp tunnel`).
    Client,
    /// Accepts streams (harp's FRP server).
    Server,
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// frp's `tcpMuxKeepaliveInterval` default.
    pub keepalive: Duration,
    /// hashicorp's ConnectionWriteTimeout, the ping reply deadline.
    pub ping_timeout: Duration,
    /// Streams open at once; a SYN beyond it is answered with RST (see [`Session::set_limits`]).
    pub max_streams: usize,
    /// Receive window granted to each new stream ([`INITIAL_WINDOW`]..=[`MAX_WINDOW`]); it
    /// bounds what the peer can make us buffer per stream.
    pub stream_window: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            keepalive: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(10),
            max_streams: DEFAULT_MAX_STREAMS,
            stream_window: MAX_WINDOW,
        }
    }
}

/// Frames waiting for the writer task, already encoded into one buffer: a stream's write
/// copies its bytes straight in (no allocation per frame, one copy fewer than a queue of
/// owned payloads), and the writer takes the whole buffer in exchange for its empty one.
#[derive(Default)]
struct Queue {
    buf: Vec<u8>,
    /// Accounted size of the frames in `buf` (each at [`FRAME_COST`] plus its payload).
    bytes: usize,
    /// Largest `bytes` ever reached (the tests' proof of the bound).
    high_water: usize,
    /// Tasks waiting for room (stream writers, the reader).
    waiters: Vec<Waker>,
}

impl Queue {
    /// Appends `header` and, for a DATA frame, its `header.length` payload bytes taken in
    /// order from `bufs` (the caller checked that they hold that many).
    fn put(&mut self, header: &Header, bufs: &[io::IoSlice<'_>]) {
        let mut left = if header.ty == TYPE_DATA {
            header.length as usize
        } else {
            0
        };
        self.buf.reserve(12 + left);
        self.buf.extend_from_slice(&header.encode());
        self.bytes += FRAME_COST + left;
        for b in bufs {
            if left == 0 {
                break;
            }
            let n = b.len().min(left);
            self.buf.extend_from_slice(&b[..n]);
            left -= n;
        }
        debug_assert_eq!(left, 0, "payload shorter than the header says");
        self.high_water = self.high_water.max(self.bytes);
    }
}

pub(super) struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the writer task when frames arrive or a drain is asked for.
    writer_wake: Notify,
    /// Set by [`Session::close_after_flush`]: the writer ends once the queue is empty.
    draining: AtomicBool,
    streams: Mutex<HashMap<u32, Arc<StreamState>>>,
    max_streams: AtomicUsize,
    stream_window: AtomicU32,
    next_id: AtomicU32,
    closed_tx: watch::Sender<bool>,
    is_closed: AtomicBool,
    last_pong: AtomicU32,
    pong: Notify,
    /// Payload buffers for reuse (see [`POOL_MIN`]).
    pool: Mutex<Vec<Vec<u8>>>,
    /// Pooled-size payload buffers allocated because the pool was empty (tests).
    #[cfg(test)]
    fresh_buffers: AtomicUsize,
    /// Capacity of the writer task's own buffer, published for the tests.
    #[cfg(test)]
    writer_capacity: AtomicUsize,
}

impl Shared {
    /// Queues a frame without payload regardless of the limit: only for frames bounded by
    /// something else (window updates follow data the reader admitted, FIN/RST one per
    /// stream, one keep-alive ping per interval, SYN of streams we open ourselves).
    pub(super) fn send(&self, header: Header) {
        if self.closed() {
            return;
        }
        self.queue.lock().put(&header, &[]);
        self.writer_wake.notify_one();
    }

    /// Queues `header` with its payload from `bufs` (DATA: `header.length` bytes, which
    /// `bufs` must hold) if the queue is below [`QUEUE_LIMIT`]; otherwise registers `cx` to be
    /// woken when the writer made room. `Ready(false)`: session closed. The check and the
    /// push happen under one lock, so the queue never exceeds the limit by more than one frame.
    pub(super) fn poll_push(
        &self,
        cx: &mut Context<'_>,
        header: &Header,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<bool> {
        if self.closed() {
            return Poll::Ready(false);
        }
        let mut q = self.queue.lock();
        if q.bytes >= QUEUE_LIMIT {
            if !q.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                q.waiters.push(cx.waker().clone());
            }
            return Poll::Pending;
        }
        q.put(header, bufs);
        drop(q);
        self.writer_wake.notify_one();
        Poll::Ready(true)
    }

    /// Queues a frame once there is room (back-pressure for the reader task).
    async fn send_with_room(&self, header: Header) {
        std::future::poll_fn(|cx| self.poll_push(cx, &header, &[]).map(|_| ())).await;
    }

    /// Swaps the queued frames into `buf` (which the writer emptied) and wakes the tasks that
    /// waited for room; false when the queue was empty. The queue keeps `buf`'s allocation,
    /// so a busy session reuses two buffers instead of allocating.
    fn take_batch(&self, buf: &mut Vec<u8>) -> bool {
        let waiters = {
            let mut q = self.queue.lock();
            if q.buf.is_empty() {
                return false;
            }
            std::mem::swap(&mut q.buf, buf);
            q.bytes = 0;
            std::mem::take(&mut q.waiters)
        };
        for w in waiters {
            w.wake();
        }
        true
    }

    fn queue_capacity(&self) -> usize {
        self.queue.lock().buf.capacity()
    }

    /// Frees the queue's buffer if it is large and empty, and the pooled payload buffers (the
    /// writer found nothing to send for [`IDLE_RELEASE`]).
    fn release_idle_buffer(&self) {
        {
            let mut q = self.queue.lock();
            if q.buf.is_empty() && q.buf.capacity() > IDLE_RETAIN {
                q.buf = Vec::new();
            }
        }
        self.pool.lock().clear();
    }

    fn pooled(&self) -> usize {
        self.pool.lock().len()
    }

    /// An empty buffer with room for a `len`-byte payload, from the pool when it is of a
    /// pooled size.
    fn payload_buffer(&self, len: usize) -> Vec<u8> {
        if len < POOL_MIN {
            return Vec::with_capacity(len);
        }
        let pooled = self.pool.lock().pop();
        #[cfg(test)]
        if pooled.is_none() {
            self.fresh_buffers.fetch_add(1, Ordering::Relaxed);
        }
        let mut buf = pooled.unwrap_or_default();
        buf.reserve(len);
        buf
    }

    /// Takes back a consumed payload buffer if it is of a pooled size and there is room.
    pub(super) fn recycle(&self, mut buf: Vec<u8>) {
        if (POOL_MIN..=POOL_MAX).contains(&buf.capacity()) {
            let mut pool = self.pool.lock();
            if pool.len() < POOL_BUFFERS {
                buf.clear();
                pool.push(buf);
            }
        }
    }

    pub(super) fn send_flags(&self, stream: u32, flags: u16, delta: u32) {
        self.send(Header {
            ty: TYPE_WINDOW_UPDATE,
            flags,
            stream,
            length: delta,
        });
    }

    /// Drops `state` from the table, but only if its id still maps to it: a peer may reuse an
    /// id once the stream is gone, and a late drop of the old handle must not orphan the new
    /// stream (it would never see its frames, nor a reset when the session closes).
    pub(super) fn forget(&self, state: &StreamState) {
        let mut streams = self.streams.lock();
        if streams
            .get(&state.id)
            .is_some_and(|s| std::ptr::eq(Arc::as_ptr(s), state))
        {
            streams.remove(&state.id);
        }
    }

    pub(super) fn closed(&self) -> bool {
        self.is_closed.load(Ordering::Acquire)
    }

    fn close(&self) {
        if self.is_closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let streams: Vec<_> = self.streams.lock().drain().map(|(_, s)| s).collect();
        for s in streams {
            s.reset();
        }
        let waiters = {
            let mut q = self.queue.lock();
            q.buf = Vec::new();
            q.bytes = 0;
            std::mem::take(&mut q.waiters)
        };
        for w in waiters {
            w.wake();
        }
        self.writer_wake.notify_one();
        let _ = self.closed_tx.send(true);
    }

    /// Lets the writer send what is queued, then closes; `deadline` bounds the wait.
    async fn flush_and_close(&self, deadline: Duration) {
        self.draining.store(true, Ordering::Release);
        self.writer_wake.notify_one();
        let mut rx = self.closed_tx.subscribe();
        let _ = tokio::time::timeout(deadline, rx.wait_for(|c| *c)).await;
        self.close();
    }
}

/// A handle on a running session; cloning shares it. Dropping handles does not close it:
/// call [`Session::close`] or let the peer go away.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
    closed_rx: watch::Receiver<bool>,
    id: u64,
}

impl Session {
    /// Starts the session tasks on `io`. The receiver yields inbound streams (already ACKed).
    pub fn start<T>(io: T, role: Role, cfg: SessionConfig) -> (Session, mpsc::Receiver<MuxStream>)
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (closed_tx, closed_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            writer_wake: Notify::new(),
            draining: AtomicBool::new(false),
            streams: Mutex::new(HashMap::new()),
            max_streams: AtomicUsize::new(cfg.max_streams),
            stream_window: AtomicU32::new(cfg.stream_window.clamp(INITIAL_WINDOW, MAX_WINDOW)),
            next_id: AtomicU32::new(if role == Role::Client { 1 } else { 2 }),
            closed_tx,
            is_closed: AtomicBool::new(false),
            last_pong: AtomicU32::new(u32::MAX),
            pong: Notify::new(),
            pool: Mutex::new(Vec::new()),
            #[cfg(test)]
            fresh_buffers: AtomicUsize::new(0),
            #[cfg(test)]
            writer_capacity: AtomicUsize::new(0),
        });
        let (accept_tx, accept_rx) = mpsc::channel(ACCEPT_BACKLOG);
        let (r, w) = tokio::io::split(io);
        tokio::spawn(write_loop(w, shared.clone(), closed_rx.clone()));
        tokio::spawn(read_loop(r, accept_tx, shared.clone(), closed_rx.clone()));
        tokio::spawn(keepalive(shared.clone(), cfg, closed_rx.clone()));
        let id = NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed);
        (
            Session {
                shared,
                closed_rx,
                id,
            },
            accept_rx,
        )
    }

    /// Unique for the life of the process: tells sessions apart (work streams must arrive on
    /// the session whose control stream logged in).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Changes the stream cap and the window granted to streams opened from now on (the FRP
    /// server starts a session small and widens it after a successful login).
    pub(crate) fn set_limits(&self, max_streams: usize, stream_window: u32) {
        self.shared
            .max_streams
            .store(max_streams, Ordering::Release);
        self.shared.stream_window.store(
            stream_window.clamp(INITIAL_WINDOW, MAX_WINDOW),
            Ordering::Release,
        );
    }

    /// Opens an outbound stream (SYN with the session's window); data may follow before the ACK.
    pub fn open(&self) -> io::Result<MuxStream> {
        if self.shared.closed() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "session closed",
            ));
        }
        let id = self.shared.next_id.fetch_add(2, Ordering::AcqRel);
        let window = self.shared.stream_window.load(Ordering::Acquire);
        let state = Arc::new(StreamState::new(id, INITIAL_WINDOW, window));
        self.shared.streams.lock().insert(id, state.clone());
        self.shared
            .send_flags(id, FLAG_SYN, window - INITIAL_WINDOW);
        Ok(MuxStream::new(state, self.shared.clone()))
    }

    #[cfg(test)]
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed()
    }

    /// Resolves once the session is gone (peer closed, protocol error, keep-alive failure).
    pub async fn closed(&self) {
        let mut rx = self.closed_rx.clone();
        let _ = rx.wait_for(|c| *c).await;
    }

    pub fn close(&self) {
        self.shared.close();
    }

    /// Sends what is already queued (say, a refusal message), shuts the connection down, and
    /// closes the session; gives up and closes anyway after `deadline`.
    pub(crate) async fn close_after_flush(&self, deadline: Duration) {
        self.shared.flush_and_close(deadline).await;
    }

    /// Capacities of the write queue's and the writer's buffers (tests check that idle
    /// sessions give them back).
    #[cfg(test)]
    pub(crate) fn buffer_capacities(&self) -> (usize, usize) {
        (
            self.shared.queue_capacity(),
            self.shared.writer_capacity.load(Ordering::Acquire),
        )
    }

    /// Pooled-size payload buffers allocated because the pool was empty.
    #[cfg(test)]
    pub(crate) fn fresh_payload_buffers(&self) -> usize {
        self.shared.fresh_buffers.load(Ordering::Relaxed)
    }

    /// Largest number of bytes the write queue ever held (tests check the bound).
    #[cfg(test)]
    pub(crate) fn queue_high_water(&self) -> usize {
        self.shared.queue.lock().high_water
    }
}

/// Why the writer stopped.
enum WriteEnd {
    /// The queue was flushed after [`Session::close_after_flush`].
    Drained,
    /// Closed by someone else, or the socket failed or stalled.
    Gone,
}

async fn write_loop<W: AsyncWrite>(w: W, shared: Arc<Shared>, mut closed: watch::Receiver<bool>) {
    let mut w = std::pin::pin!(w);
    // Grows to the largest batch and is then reused (swapped with the queue's buffer).
    let mut buf = Vec::new();
    let end = loop {
        buf.clear();
        if !shared.take_batch(&mut buf) {
            if shared.draining.load(Ordering::Acquire) {
                break WriteEnd::Drained;
            }
            // The timer is armed only while a large buffer is held (after bulk traffic), so
            // the request-sized traffic that keeps buffers small pays nothing for it.
            let large = buf.capacity() > IDLE_RETAIN
                || shared.queue_capacity() > IDLE_RETAIN
                || shared.pooled() > 0;
            tokio::select! {
                _ = shared.writer_wake.notified() => continue,
                _ = closed.wait_for(|c| *c) => break WriteEnd::Gone,
                _ = tokio::time::sleep(IDLE_RELEASE), if large => {
                    buf = Vec::new();
                    shared.release_idle_buffer();
                    #[cfg(test)]
                    shared.writer_capacity.store(0, Ordering::Release);
                    continue;
                }
            }
        }
        #[cfg(test)]
        shared
            .writer_capacity
            .store(buf.capacity(), Ordering::Release);
        let res = tokio::select! {
            r = write_all_or_stall(w.as_mut(), &buf) => r,
            _ = closed.wait_for(|c| *c) => break WriteEnd::Gone,
        };
        if let Err(e) = res {
            tracing::debug!("tunnel write failed: {e}");
            break WriteEnd::Gone;
        }
    };
    if let WriteEnd::Gone = end {
        shared.close();
    }
    // Bounded: a peer that stopped reading must not hold the task (TLS sends close_notify).
    let _ = tokio::time::timeout(WRITE_STALL, w.shutdown()).await;
    shared.close();
}

/// `write_all` + `flush`, failing when the peer accepts nothing for [`WRITE_STALL`]; any
/// progress restarts the clock, so a slow but reading peer is fine.
async fn write_all_or_stall<W: AsyncWrite>(
    mut w: std::pin::Pin<&mut W>,
    buf: &[u8],
) -> io::Result<()> {
    let stalled = || {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "tunnel peer accepted no data within the write deadline",
        )
    };
    let mut pos = 0;
    while pos < buf.len() {
        match tokio::time::timeout(WRITE_STALL, w.as_mut().write(&buf[pos..])).await {
            Err(_) => return Err(stalled()),
            Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(Ok(n)) => pos += n,
            Ok(Err(e)) => return Err(e),
        }
    }
    tokio::time::timeout(WRITE_STALL, w.as_mut().flush())
        .await
        .map_err(|_| stalled())?
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("protocol error: {0}")]
    Protocol(&'static str),
}

/// How long a protocol-error GoAway may take to reach the peer before we close regardless.
const GO_AWAY_FLUSH: Duration = Duration::from_secs(1);

async fn read_loop<R: AsyncRead>(
    r: R,
    accept: mpsc::Sender<MuxStream>,
    shared: Arc<Shared>,
    mut closed: watch::Receiver<bool>,
) {
    let mut r = Box::pin(BufReader::with_capacity(64 * 1024, r));
    let res = tokio::select! {
        res = read_frames(&mut r, &accept, &shared) => res,
        _ = closed.wait_for(|c| *c) => Ok(()),
    };
    if let Err(e) = res {
        if let ReadError::Protocol(_) = e {
            shared.send(Header {
                ty: TYPE_GO_AWAY,
                flags: 0,
                stream: 0,
                length: GO_AWAY_PROTOCOL_ERROR,
            });
            tracing::warn!("tunnel session ended: {e}");
            shared.flush_and_close(GO_AWAY_FLUSH).await;
        } else {
            tracing::debug!("tunnel session ended: {e}");
        }
    }
    shared.close();
}

async fn read_frames<R: AsyncRead + Unpin>(
    r: &mut R,
    accept: &mpsc::Sender<MuxStream>,
    shared: &Arc<Shared>,
) -> Result<(), ReadError> {
    let mut raw = [0u8; 12];
    loop {
        match r.read_exact(&mut raw).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let h = Header::decode(&raw).ok_or(ReadError::Protocol("bad version or frame type"))?;
        match h.ty {
            TYPE_PING => {
                if h.flags & FLAG_SYN != 0 {
                    // Waits for room: a peer that pings without reading stalls here.
                    shared
                        .send_with_room(Header {
                            ty: TYPE_PING,
                            flags: FLAG_ACK,
                            stream: 0,
                            length: h.length,
                        })
                        .await;
                } else if h.flags & FLAG_ACK != 0 {
                    shared.last_pong.store(h.length, Ordering::Release);
                    shared.pong.notify_waiters();
                }
            }
            TYPE_GO_AWAY => return Ok(()),
            TYPE_DATA | TYPE_WINDOW_UPDATE => {
                let state = if h.flags & FLAG_SYN != 0 {
                    incoming(&h, accept, shared).await?
                } else {
                    shared.streams.lock().get(&h.stream).cloned()
                };
                if h.ty == TYPE_DATA && h.length > 0 {
                    read_payload(r, &h, state.as_deref(), shared).await?;
                }
                if let Some(s) = state {
                    if h.ty == TYPE_WINDOW_UPDATE && h.flags & FLAG_SYN == 0 {
                        s.add_send_window(h.length);
                    }
                    if h.flags & FLAG_RST != 0 {
                        s.reset();
                        shared.forget(&s);
                    } else if h.flags & FLAG_FIN != 0 && s.on_remote_fin() {
                        shared.forget(&s);
                    }
                }
            }
            _ => return Err(ReadError::Protocol("unknown frame type")),
        }
    }
}

/// Reads a DATA payload into the stream's buffer. The announced length is checked against
/// the stream's receive window *before* anything is allocated; a payload for a stream we do
/// not know (reset, refused, finished) is skipped without being buffered.
async fn read_payload<R: AsyncRead + Unpin>(
    r: &mut R,
    h: &Header,
    state: Option<&StreamState>,
    shared: &Shared,
) -> Result<(), ReadError> {
    let Some(s) = state else {
        if h.length > MAX_WINDOW {
            return Err(ReadError::Protocol("oversized frame for unknown stream"));
        }
        let skipped =
            tokio::io::copy(&mut r.take(u64::from(h.length)), &mut tokio::io::sink()).await?;
        if skipped < u64::from(h.length) {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        return Ok(());
    };
    if !s.fits_window(h.length) {
        return Err(ReadError::Protocol("data beyond the granted window"));
    }
    // Filled without zeroing it first; `take` keeps the reads within this frame even when
    // the buffer has more room.
    let len = h.length as usize;
    let mut payload = shared.payload_buffer(len);
    let mut frame = (&mut *r).take(u64::from(h.length));
    while payload.len() < len {
        if frame.read_buf(&mut payload).await? == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
    }
    s.push_data(payload);
    Ok(())
}

/// A SYN from the peer: register the stream, ACK it now (frpc kills the session after 75 s
/// without an ACK, and pooled work streams stay silent much longer), hand it to the acceptor.
/// Beyond the stream cap, or with a full accept backlog, the stream is reset instead.
async fn incoming(
    h: &Header,
    accept: &mpsc::Sender<MuxStream>,
    shared: &Arc<Shared>,
) -> Result<Option<Arc<StreamState>>, ReadError> {
    let peer_window = if h.ty == TYPE_WINDOW_UPDATE {
        INITIAL_WINDOW.saturating_add(h.length)
    } else {
        INITIAL_WINDOW
    };
    let window = shared.stream_window.load(Ordering::Acquire);
    let state = Arc::new(StreamState::new(h.stream, peer_window, window));
    let admitted = {
        let mut streams = shared.streams.lock();
        if streams.contains_key(&h.stream) {
            return Err(ReadError::Protocol("duplicate stream id"));
        }
        let room = streams.len() < shared.max_streams.load(Ordering::Acquire);
        if room {
            streams.insert(h.stream, state.clone());
        }
        room
    };
    if !admitted {
        tracing::debug!(stream = h.stream, "tunnel stream cap reached; stream reset");
        shared.send_with_room(rst(h.stream)).await;
        return Ok(None);
    }
    shared
        .send_with_room(Header {
            ty: TYPE_WINDOW_UPDATE,
            flags: FLAG_ACK,
            stream: h.stream,
            length: window - INITIAL_WINDOW,
        })
        .await;
    if accept
        .try_send(MuxStream::new(state.clone(), shared.clone()))
        .is_err()
    {
        // Dropping the refused MuxStream already sent FIN and forgot the id; RST tells the
        // peer the stream is dead.
        tracing::warn!(
            stream = h.stream,
            "tunnel accept backlog full; stream reset"
        );
        state.reset();
        shared.send_with_room(rst(h.stream)).await;
        return Ok(None);
    }
    Ok(Some(state))
}

fn rst(stream: u32) -> Header {
    Header {
        ty: TYPE_WINDOW_UPDATE,
        flags: FLAG_RST,
        stream,
        length: 0,
    }
}

async fn keepalive(shared: Arc<Shared>, cfg: SessionConfig, mut closed: watch::Receiver<bool>) {
    let mut value: u32 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(cfg.keepalive) => {}
            _ = closed.wait_for(|c| *c) => return,
        }
        let deadline = tokio::time::Instant::now() + cfg.ping_timeout;
        shared.send(Header {
            ty: TYPE_PING,
            flags: FLAG_SYN,
            stream: 0,
            length: value,
        });
        loop {
            let notified = shared.pong.notified();
            if shared.last_pong.load(Ordering::Acquire) == value {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                tracing::warn!("tunnel peer did not answer a keep-alive ping; closing session");
                shared.close();
                return;
            }
        }
        value = value.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    fn frame(ty: u8, flags: u16, stream: u32, length: u32) -> [u8; 12] {
        Header {
            ty,
            flags,
            stream,
            length,
        }
        .encode()
    }

    /// Reads frame headers (and skips payloads) until the session closes the connection.
    async fn read_all_frames(peer: &mut DuplexStream) -> Vec<Header> {
        let mut out = Vec::new();
        let mut raw = [0u8; 12];
        while peer.read_exact(&mut raw).await.is_ok() {
            let h = Header::decode(&raw).expect("valid frame from the session");
            if h.ty == TYPE_DATA {
                let mut skip = vec![0u8; h.length as usize];
                peer.read_exact(&mut skip).await.expect("payload");
            }
            out.push(h);
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn ping_flood_without_reading_is_bounded_and_disconnected() {
        let (ours, mut peer) = tokio::io::duplex(4096);
        let (s, _) = Session::start(ours, Role::Server, SessionConfig::default());
        let started = tokio::time::Instant::now();
        // Far more ping answers than the queue may hold; the peer never reads one.
        let pings = 4 * QUEUE_LIMIT / FRAME_COST;
        let mut sent = 0;
        for i in 0..pings {
            if peer
                .write_all(&frame(TYPE_PING, FLAG_SYN, 0, i as u32))
                .await
                .is_err()
            {
                break;
            }
            sent += 1;
        }
        tokio::time::timeout(Duration::from_secs(60), s.closed())
            .await
            .expect("a peer that never reads is disconnected");
        assert!(sent < pings, "the flood was cut off by the disconnect");
        assert!(
            started.elapsed() <= WRITE_STALL + Duration::from_secs(1),
            "closed by the write deadline, not the keep-alive: {:?}",
            started.elapsed()
        );
        let high = s.queue_high_water();
        assert!(
            high <= QUEUE_LIMIT + FRAME_COST,
            "write queue reached {high} bytes, bound {QUEUE_LIMIT}"
        );
        assert!(high >= QUEUE_LIMIT, "the flood did fill the queue: {high}");
    }

    /// The process's peak virtual size (Linux), which grows with any large allocation even
    /// when its pages are never touched.
    fn vm_peak_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmPeak:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmPeak line")
    }

    #[tokio::test(start_paused = true)]
    async fn data_beyond_the_window_is_refused_before_allocation() {
        let peak_before = vm_peak_kib();
        for window in [INITIAL_WINDOW, MAX_WINDOW] {
            let (ours, mut peer) = tokio::io::duplex(64 * 1024);
            let cfg = SessionConfig {
                stream_window: window,
                ..SessionConfig::default()
            };
            let (s, mut accept) = Session::start(ours, Role::Server, cfg);
            peer.write_all(&frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0))
                .await
                .unwrap();
            let _stream = accept.recv().await.expect("stream accepted");
            // 4 GiB announced, nothing sent: refused from the header alone.
            peer.write_all(&frame(TYPE_DATA, 0, 1, u32::MAX))
                .await
                .unwrap();
            tokio::time::timeout(Duration::from_secs(5), s.closed())
                .await
                .expect("protocol error closes the session at once");
            let frames = read_all_frames(&mut peer).await;
            assert!(
                frames
                    .iter()
                    .any(|h| h.ty == TYPE_GO_AWAY && h.length == GO_AWAY_PROTOCOL_ERROR),
                "GoAway(protocol error) reached the peer before the close: {frames:?}"
            );
            // One byte more than the window is refused the same way.
            let (ours, mut peer) = tokio::io::duplex(64 * 1024);
            let cfg = SessionConfig {
                stream_window: window,
                ..SessionConfig::default()
            };
            let (s, mut accept) = Session::start(ours, Role::Server, cfg);
            peer.write_all(&frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0))
                .await
                .unwrap();
            let _stream = accept.recv().await.expect("stream accepted");
            peer.write_all(&frame(TYPE_DATA, 0, 1, window + 1))
                .await
                .unwrap();
            tokio::time::timeout(Duration::from_secs(5), s.closed())
                .await
                .expect("window + 1 is refused");
        }
        let grown_mib = (vm_peak_kib() - peak_before) / 1024;
        assert!(
            grown_mib < 1024,
            "peak virtual size grew by {grown_mib} MiB"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn data_for_an_unknown_stream_is_skipped_and_oversized_refused() {
        let (ours, mut peer) = tokio::io::duplex(64 * 1024);
        let (s, _accept) = Session::start(ours, Role::Server, SessionConfig::default());
        peer.write_all(&frame(TYPE_DATA, 0, 9, 5)).await.unwrap();
        peer.write_all(b"hello").await.unwrap();
        peer.write_all(&frame(TYPE_PING, FLAG_SYN, 0, 77))
            .await
            .unwrap();
        let mut raw = [0u8; 12];
        peer.read_exact(&mut raw).await.unwrap();
        assert_eq!(
            Header::decode(&raw).unwrap(),
            Header {
                ty: TYPE_PING,
                flags: FLAG_ACK,
                stream: 0,
                length: 77
            },
            "skipped payload kept the framing in step"
        );
        peer.write_all(&frame(TYPE_DATA, 0, 11, MAX_WINDOW + 1))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), s.closed())
            .await
            .expect("oversized frame for an unknown stream closes the session");
    }

    #[tokio::test(start_paused = true)]
    async fn streams_beyond_the_cap_are_reset() {
        let (ours, mut peer) = tokio::io::duplex(64 * 1024);
        let cfg = SessionConfig {
            max_streams: 2,
            stream_window: INITIAL_WINDOW,
            ..SessionConfig::default()
        };
        let (s, mut accept) = Session::start(ours, Role::Server, cfg);
        for id in [1, 3, 5] {
            peer.write_all(&frame(TYPE_WINDOW_UPDATE, FLAG_SYN, id, 0))
                .await
                .unwrap();
        }
        let a = accept.recv().await.unwrap();
        let b = accept.recv().await.unwrap();
        assert_eq!((a.id(), b.id()), (1, 3));
        let mut got = Vec::new();
        let mut raw = [0u8; 12];
        for _ in 0..3 {
            peer.read_exact(&mut raw).await.unwrap();
            got.push(Header::decode(&raw).unwrap());
        }
        assert_eq!(
            got,
            [
                // ACK with no extra window: this session grants only the initial window.
                Header {
                    ty: TYPE_WINDOW_UPDATE,
                    flags: FLAG_ACK,
                    stream: 1,
                    length: 0
                },
                Header {
                    ty: TYPE_WINDOW_UPDATE,
                    flags: FLAG_ACK,
                    stream: 3,
                    length: 0
                },
                Header {
                    ty: TYPE_WINDOW_UPDATE,
                    flags: FLAG_RST,
                    stream: 5,
                    length: 0
                },
            ]
        );
        assert!(!s.is_closed());
    }

    /// Counts flushes: the writer flushes once per batch it takes from the queue.
    struct CountFlushes {
        io: DuplexStream,
        flushes: Arc<AtomicUsize>,
    }

    impl AsyncRead for CountFlushes {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for CountFlushes {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
        }
        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<io::Result<()>> {
            self.flushes.fetch_add(1, Ordering::SeqCst);
            std::pin::Pin::new(&mut self.io).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<io::Result<()>> {
            std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
        }
    }

    /// Frames queued by many streams while the writer had not run yet leave in one batch (one
    /// TLS write and flush), in the order they were queued, each stream's bytes intact.
    #[tokio::test]
    async fn frames_queued_together_leave_in_one_batch() {
        let (ours, mut peer) = tokio::io::duplex(1 << 20);
        let flushes = Arc::new(AtomicUsize::new(0));
        let io = CountFlushes {
            io: ours,
            flushes: flushes.clone(),
        };
        let (s, _) = Session::start(io, Role::Client, SessionConfig::default());
        // No await until everything is queued: on this single-threaded runtime the writer
        // task cannot run in between.
        let mut streams = Vec::new();
        for i in 0..20u8 {
            let mut st = s.open().unwrap();
            let data = [i; 100];
            let n = std::future::poll_fn(|cx| std::pin::Pin::new(&mut st).poll_write(cx, &data))
                .await
                .unwrap();
            assert_eq!(n, 100);
            streams.push(st);
        }
        let mut got = Vec::new();
        let mut raw = [0u8; 12];
        while got.len() < 40 {
            peer.read_exact(&mut raw).await.unwrap();
            let h = Header::decode(&raw).unwrap();
            let mut payload = vec![
                0u8;
                if h.ty == TYPE_DATA {
                    h.length as usize
                } else {
                    0
                }
            ];
            peer.read_exact(&mut payload).await.unwrap();
            got.push((h, payload));
        }
        for (i, pair) in got.chunks(2).enumerate() {
            let id = 1 + 2 * i as u32;
            assert_eq!(
                (pair[0].0.ty, pair[0].0.flags, pair[0].0.stream),
                (TYPE_WINDOW_UPDATE, FLAG_SYN, id)
            );
            assert_eq!((pair[1].0.ty, pair[1].0.stream), (TYPE_DATA, id));
            assert_eq!(pair[1].1, vec![i as u8; 100]);
        }
        assert_eq!(
            flushes.load(Ordering::SeqCst),
            1,
            "one batch for all 40 frames"
        );
    }

    /// A vectored write becomes one DATA frame holding every slice in order (hyper writes
    /// head and body this way), cut at the stream's send window.
    #[tokio::test]
    async fn vectored_write_gathers_slices_into_one_frame() {
        let (ours, mut peer) = tokio::io::duplex(1 << 20);
        let (_s, mut accept) = Session::start(ours, Role::Server, SessionConfig::default());
        // The peer opens the stream granting only the initial window.
        peer.write_all(&frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0))
            .await
            .unwrap();
        let mut st = accept.recv().await.unwrap();
        assert!(st.is_write_vectored());
        let mut raw = [0u8; 12];
        peer.read_exact(&mut raw).await.unwrap();
        assert_eq!(Header::decode(&raw).unwrap().flags, FLAG_ACK);
        let head = b"POST / HTTP/1.1\r\n\r\n".to_vec();
        let body = vec![7u8; 100 * 1024];
        let bufs = [
            io::IoSlice::new(&head),
            io::IoSlice::new(&[]),
            io::IoSlice::new(&body),
        ];
        let n = st.write_vectored(&bufs).await.unwrap();
        let first = head.len() + body.len();
        assert_eq!(n, first, "every slice in one frame");
        peer.read_exact(&mut raw).await.unwrap();
        let h = Header::decode(&raw).unwrap();
        assert_eq!((h.ty, h.stream, h.length as usize), (TYPE_DATA, 1, first));
        let mut payload = vec![0u8; first];
        peer.read_exact(&mut payload).await.unwrap();
        assert_eq!(&payload[..head.len()], &head[..]);
        assert!(payload[head.len()..].iter().all(|&b| b == 7));
        // Larger gathers are cut at MAX_FRAME, then at what is left of the send window.
        let big = vec![8u8; 2 * MAX_FRAME];
        let bufs = [io::IoSlice::new(&head), io::IoSlice::new(&big)];
        assert_eq!(st.write_vectored(&bufs).await.unwrap(), MAX_FRAME);
        let left = INITIAL_WINDOW as usize - first - MAX_FRAME;
        assert_eq!(st.write_vectored(&bufs).await.unwrap(), left);
        for want in [MAX_FRAME, left] {
            peer.read_exact(&mut raw).await.unwrap();
            let h = Header::decode(&raw).unwrap();
            assert_eq!((h.ty, h.length as usize), (TYPE_DATA, want));
            let mut payload = vec![0u8; want];
            peer.read_exact(&mut payload).await.unwrap();
            assert_eq!(&payload[..head.len()], &head[..]);
        }
    }

    /// A bulk transfer grows both write buffers; once the session has nothing to send for
    /// IDLE_RELEASE they are given back, and the session still works afterwards.
    #[tokio::test(start_paused = true)]
    async fn idle_session_releases_large_write_buffers() {
        let (ours, mut peer) = tokio::io::duplex(64 * 1024);
        let (s, _) = Session::start(ours, Role::Client, SessionConfig::default());
        let reader = tokio::spawn(async move {
            let mut sink = vec![0u8; 1 << 20];
            while peer.read(&mut sink).await.is_ok_and(|n| n > 0) {}
        });
        let mut st = s.open().unwrap();
        // Within the initial window (the peer sends no window updates).
        st.write_all(&vec![1u8; INITIAL_WINDOW as usize])
            .await
            .unwrap();
        // Queued at once (the writer task has not run yet on this single-threaded runtime).
        let grown = s.buffer_capacities().0;
        assert!(grown > IDLE_RETAIN, "the transfer grew the queue: {grown}");
        let deadline = tokio::time::Instant::now() + IDLE_RELEASE * 3;
        loop {
            let (q, w) = s.buffer_capacities();
            if q <= IDLE_RETAIN && w <= IDLE_RETAIN {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "buffers kept while idle: queue {q}, writer {w}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!s.is_closed());
        let mut again = s.open().unwrap();
        again.write_all(b"still works").await.unwrap();
        s.close_after_flush(Duration::from_secs(5)).await;
        reader.await.unwrap();
    }

    /// Payload buffers go back to the pool once read, so a transfer whose reader keeps up
    /// allocates one buffer, not one per frame; small payloads stay out of the pool.
    #[tokio::test]
    async fn received_payload_buffers_are_reused() {
        let (ours, mut peer) = tokio::io::duplex(1 << 20);
        let (s, mut accept) = Session::start(ours, Role::Server, SessionConfig::default());
        peer.write_all(&frame(
            TYPE_WINDOW_UPDATE,
            FLAG_SYN,
            1,
            MAX_WINDOW - INITIAL_WINDOW,
        ))
        .await
        .unwrap();
        let mut st = accept.recv().await.unwrap();
        let mut got = vec![0u8; MAX_FRAME];
        for i in 0..32u8 {
            let len = if i % 2 == 0 { MAX_FRAME } else { POOL_MIN };
            peer.write_all(&frame(TYPE_DATA, 0, 1, len as u32))
                .await
                .unwrap();
            peer.write_all(&vec![i; len]).await.unwrap();
            st.read_exact(&mut got[..len]).await.unwrap();
            assert!(got[..len].iter().all(|&b| b == i), "frame {i} intact");
        }
        peer.write_all(&frame(TYPE_DATA, 0, 1, 100)).await.unwrap();
        peer.write_all(&[9u8; 100]).await.unwrap();
        st.read_exact(&mut got[..100]).await.unwrap();
        assert_eq!(
            s.fresh_payload_buffers(),
            1,
            "one buffer served all 32 frames"
        );
        assert_eq!(
            s.shared.pooled(),
            1,
            "the small payload's buffer was not pooled"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn close_after_flush_delivers_what_was_queued() {
        let (ours, mut peer) = tokio::io::duplex(1024);
        let (s, mut accept) = Session::start(ours, Role::Server, SessionConfig::default());
        peer.write_all(&frame(
            TYPE_WINDOW_UPDATE,
            FLAG_SYN,
            1,
            MAX_WINDOW - INITIAL_WINDOW,
        ))
        .await
        .unwrap();
        let mut stream = accept.recv().await.unwrap();
        // More than the queue and the pipe hold at once: the peer must read while we flush.
        let data = vec![0x5a; QUEUE_LIMIT];
        let writer = tokio::spawn(async move {
            stream.write_all(&data).await.unwrap();
            stream
        });
        let reader = tokio::spawn(async move { read_all_frames(&mut peer).await });
        let _stream = writer.await.unwrap();
        s.close_after_flush(Duration::from_secs(5)).await;
        let frames = reader.await.unwrap();
        let delivered: u64 = frames
            .iter()
            .filter(|h| h.ty == TYPE_DATA && h.stream == 1)
            .map(|h| u64::from(h.length))
            .sum();
        assert_eq!(
            delivered, QUEUE_LIMIT as u64,
            "every queued byte went out before the close"
        );
    }
}
