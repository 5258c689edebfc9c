//! One yamux session: a reader task (dispatches frames, ACKs new streams at once, answers
//! pings), a writer task (serialises frames from every stream), and a keep-alive task.
//! Owns the stream table; stream I/O itself lives in `stream.rs`.

use super::frame::*;
use super::stream::{MuxStream, StreamState};
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch, Notify};

/// frps keeps at most this many streams waiting to be accepted; more are reset.
const ACCEPT_BACKLOG: usize = 256;
/// Frames are coalesced into writes of about this size.
const WRITE_BATCH: usize = 256 * 1024;

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
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            keepalive: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(10),
        }
    }
}

pub(super) struct Out {
    pub header: Header,
    pub payload: Bytes,
}

pub(super) struct Shared {
    out: mpsc::UnboundedSender<Out>,
    streams: Mutex<HashMap<u32, Arc<StreamState>>>,
    next_id: AtomicU32,
    closed_tx: watch::Sender<bool>,
    is_closed: AtomicBool,
    last_pong: AtomicU32,
    pong: Notify,
}

impl Shared {
    pub(super) fn send(&self, header: Header, payload: Bytes) {
        let _ = self.out.send(Out { header, payload });
    }

    pub(super) fn send_flags(&self, stream: u32, flags: u16, delta: u32) {
        self.send(
            Header {
                ty: TYPE_WINDOW_UPDATE,
                flags,
                stream,
                length: delta,
            },
            Bytes::new(),
        );
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
        let _ = self.closed_tx.send(true);
    }
}

/// A handle on a running session; cloning shares it. Dropping handles does not close it:
/// call [`Session::close`] or let the peer go away.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
    closed_rx: watch::Receiver<bool>,
}

impl Session {
    /// Starts the session tasks on `io`. The receiver yields inbound streams (already ACKed).
    pub fn start<T>(io: T, role: Role, cfg: SessionConfig) -> (Session, mpsc::Receiver<MuxStream>)
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (closed_tx, closed_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            out: out_tx,
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(if role == Role::Client { 1 } else { 2 }),
            closed_tx,
            is_closed: AtomicBool::new(false),
            last_pong: AtomicU32::new(u32::MAX),
            pong: Notify::new(),
        });
        let (accept_tx, accept_rx) = mpsc::channel(ACCEPT_BACKLOG);
        let (r, w) = tokio::io::split(io);
        tokio::spawn(write_loop(w, out_rx, shared.clone(), closed_rx.clone()));
        tokio::spawn(read_loop(r, accept_tx, shared.clone(), closed_rx.clone()));
        tokio::spawn(keepalive(shared.clone(), cfg, closed_rx.clone()));
        (Session { shared, closed_rx }, accept_rx)
    }

    /// Opens an outbound stream (SYN with frp's 6 MiB window); data may follow before the ACK.
    pub fn open(&self) -> io::Result<MuxStream> {
        if self.shared.closed() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "session closed",
            ));
        }
        let id = self.shared.next_id.fetch_add(2, Ordering::AcqRel);
        let state = Arc::new(StreamState::new(id, INITIAL_WINDOW));
        self.shared.streams.lock().insert(id, state.clone());
        self.shared
            .send_flags(id, FLAG_SYN, MAX_WINDOW - INITIAL_WINDOW);
        Ok(MuxStream::new(state, self.shared.clone()))
    }

    pub fn is_closed(&self) -> bool {
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
}

async fn write_loop<W: AsyncWrite>(
    w: W,
    mut rx: mpsc::UnboundedReceiver<Out>,
    shared: Arc<Shared>,
    mut closed: watch::Receiver<bool>,
) {
    let mut w = std::pin::pin!(w);
    let mut buf = Vec::with_capacity(WRITE_BATCH + 64 * 1024);
    loop {
        let first = tokio::select! {
            m = rx.recv() => m,
            _ = closed.wait_for(|c| *c) => None,
        };
        let Some(first) = first else { break };
        buf.clear();
        push(&mut buf, first);
        while buf.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(m) => push(&mut buf, m),
                Err(_) => break,
            }
        }
        let res = async {
            w.write_all(&buf).await?;
            w.flush().await
        }
        .await;
        if let Err(e) = res {
            tracing::debug!("tunnel write failed: {e}");
            break;
        }
    }
    shared.close();
    let _ = w.shutdown().await;
}

fn push(buf: &mut Vec<u8>, m: Out) {
    buf.extend_from_slice(&m.header.encode());
    buf.extend_from_slice(&m.payload);
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("protocol error: {0}")]
    Protocol(&'static str),
}

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
            shared.send(
                Header {
                    ty: TYPE_GO_AWAY,
                    flags: 0,
                    stream: 0,
                    length: GO_AWAY_PROTOCOL_ERROR,
                },
                Bytes::new(),
            );
            tracing::warn!("tunnel session ended: {e}");
            // Let the writer get the GoAway out before the session is torn down.
            tokio::time::sleep(Duration::from_millis(50)).await;
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
                    shared.send(
                        Header {
                            ty: TYPE_PING,
                            flags: FLAG_ACK,
                            stream: 0,
                            length: h.length,
                        },
                        Bytes::new(),
                    );
                } else if h.flags & FLAG_ACK != 0 {
                    shared.last_pong.store(h.length, Ordering::Release);
                    shared.pong.notify_waiters();
                }
            }
            TYPE_GO_AWAY => return Ok(()),
            TYPE_DATA | TYPE_WINDOW_UPDATE => {
                let state = if h.flags & FLAG_SYN != 0 {
                    Some(incoming(&h, accept, shared)?)
                } else {
                    shared.streams.lock().get(&h.stream).cloned()
                };
                if h.ty == TYPE_DATA && h.length > 0 {
                    if let Some(s) = &state {
                        if !s.fits_window(h.length) {
                            return Err(ReadError::Protocol("data beyond the granted window"));
                        }
                    } else if h.length > MAX_WINDOW {
                        return Err(ReadError::Protocol("oversized frame for unknown stream"));
                    }
                    // Allocated only once the length is known to fit a window (at most 6 MiB):
                    // the header is the peer's claim, up to 4 GiB.
                    let mut payload = BytesMut::zeroed(h.length as usize);
                    r.read_exact(&mut payload).await?;
                    if let Some(s) = &state {
                        s.push_data(payload.freeze());
                    }
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

/// A SYN from the peer: register the stream, ACK it now (frpc kills the session after 75 s
/// without an ACK, and pooled work streams stay silent much longer), hand it to the acceptor.
fn incoming(
    h: &Header,
    accept: &mpsc::Sender<MuxStream>,
    shared: &Arc<Shared>,
) -> Result<Arc<StreamState>, ReadError> {
    let peer_window = if h.ty == TYPE_WINDOW_UPDATE {
        INITIAL_WINDOW.saturating_add(h.length)
    } else {
        INITIAL_WINDOW
    };
    let state = Arc::new(StreamState::new(h.stream, peer_window));
    {
        let mut streams = shared.streams.lock();
        if streams.contains_key(&h.stream) {
            return Err(ReadError::Protocol("duplicate stream id"));
        }
        streams.insert(h.stream, state.clone());
    }
    shared.send_flags(h.stream, FLAG_ACK, MAX_WINDOW - INITIAL_WINDOW);
    if accept
        .try_send(MuxStream::new(state.clone(), shared.clone()))
        .is_err()
    {
        tracing::warn!(
            stream = h.stream,
            "tunnel accept backlog full; stream reset"
        );
    }
    Ok(state)
}

async fn keepalive(shared: Arc<Shared>, cfg: SessionConfig, mut closed: watch::Receiver<bool>) {
    let mut value: u32 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(cfg.keepalive) => {}
            _ = closed.wait_for(|c| *c) => return,
        }
        let deadline = tokio::time::Instant::now() + cfg.ping_timeout;
        shared.send(
            Header {
                ty: TYPE_PING,
                flags: FLAG_SYN,
                stream: 0,
                length: value,
            },
            Bytes::new(),
        );
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
