//! Shared pieces of the fuzz targets: an in-memory reader that hands out bytes in fuzzer-chosen
//! pieces (with `Pending` in between, so the readers' resume paths run), a no-op executor for
//! futures that never wait on anything outside the input, a paused-time runtime for the targets
//! that need tasks and timers, and the heap cap that turns an oversized allocation into a crash.
//!
//! Every target is deterministic: no network, no files, no wall-clock sleeps.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, ReadBuf};

/// The Rust heap of a fuzz process may not exceed this. Parsers bound their buffers by limits
/// of at most a few MiB (yamux's 6 MiB window is the largest), so 256 MiB only trips on an
/// allocation sized from untrusted input without a bound. Without ASan, libFuzzer's own
/// `-malloc_limit_mb` sees no allocations at all.
pub const HEAP_LIMIT: usize = 256 * 1024 * 1024;

/// The global allocator of every target (each binary registers it with [`cap_heap!`]).
pub type CappedAlloc = cap::Cap<std::alloc::System>;

/// Declares the capped global allocator and a `set_heap_limit()` the target calls first thing.
#[macro_export]
macro_rules! cap_heap {
    () => {
        #[global_allocator]
        static ALLOC: $crate::CappedAlloc =
            $crate::CappedAlloc::new(std::alloc::System, usize::MAX);
        fn set_heap_limit() {
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                let limit = ALLOC.allocated() + $crate::HEAP_LIMIT;
                ALLOC.set_limit(limit).expect("limit above current use");
            });
        }
    };
}

/// Polls `fut` with a no-op waker until it is ready. For futures that only wait on
/// [`Pieces`] (which wakes itself before returning `Pending`), so progress is guaranteed;
/// `max_polls` turns a future that stops making progress into a crash instead of a hang.
pub fn block_on<F: Future>(fut: F, max_polls: usize) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..max_polls {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("future still pending after {max_polls} polls");
}

/// A current-thread runtime with paused time: timers fire as soon as every task is idle, so a
/// target's deadlines cost no wall-clock time and a hang shows up as an expired deadline.
pub fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("current-thread runtime")
}

/// Reads `data` in pieces whose sizes come from `plan` (cycled; 0 = one `Pending`, never two in
/// a row, so every second poll makes progress), then reports end of stream.
pub struct Pieces<'a> {
    data: &'a [u8],
    plan: &'a [u8],
    step: usize,
    pended: bool,
}

impl<'a> Pieces<'a> {
    /// An empty `plan` hands out everything at once.
    pub fn new(data: &'a [u8], plan: &'a [u8]) -> Pieces<'a> {
        Pieces {
            data,
            plan,
            step: 0,
            pended: false,
        }
    }

    /// Splits a fuzz input into (plan, data): the first byte says how many plan bytes follow
    /// (at most 15, so most of the input stays data).
    pub fn split(input: &'a [u8]) -> (&'a [u8], &'a [u8]) {
        let Some((&n, rest)) = input.split_first() else {
            return (&[], &[]);
        };
        rest.split_at(usize::from(n & 0x0f).min(rest.len()))
    }
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.data.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let piece = if self.plan.is_empty() {
            usize::MAX
        } else {
            let p = self.plan[self.step % self.plan.len()];
            self.step += 1;
            if p == 0 && !self.pended {
                self.pended = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            usize::from(p.max(1))
        };
        self.pended = false;
        let n = piece.min(buf.remaining()).min(self.data.len());
        let (now, later) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = later;
        Poll::Ready(Ok(()))
    }
}

/// What [`lean_fetch`] saw: the status and head, and the body or the error that ended it.
pub struct Fetched {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Result<Vec<u8>, String>,
}

/// A scripted peer (an upstream connection, a yamux peer): reads give `data` in pieces whose
/// sizes cycle through `plan` (all at once when it is empty), then EOF; whatever is written to
/// it is swallowed.
pub struct ScriptedPeer {
    data: Vec<u8>,
    pos: usize,
    plan: Vec<u8>,
    step: usize,
}

impl ScriptedPeer {
    pub fn new(data: &[u8], plan: &[u8]) -> ScriptedPeer {
        ScriptedPeer {
            data: data.to_vec(),
            pos: 0,
            plan: plan.to_vec(),
            step: 0,
        }
    }
}

impl AsyncRead for ScriptedPeer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let piece = if self.plan.is_empty() {
            usize::MAX
        } else {
            let p = self.plan[self.step % self.plan.len()];
            self.step += 1;
            usize::from(p.max(1))
        };
        let n = piece.min(buf.remaining()).min(self.data.len() - self.pos);
        let start = self.pos;
        buf.put_slice(&self.data[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for ScriptedPeer {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Serves the one port the fuzzed upstream listens on; a second dial finds nobody.
struct OneShot(std::sync::Mutex<Option<ScriptedPeer>>);

/// The loopback port of the fuzzed upstream (any port works: the dialer owns it).
const UPSTREAM_PORT: u16 = 23000;

impl harp::upstream::LocalDialer for OneShot {
    fn dial(
        &self,
        port: u16,
    ) -> Option<futures_util::future::BoxFuture<'static, io::Result<harp::upstream::BoxedIo>>> {
        if port != UPSTREAM_PORT {
            return None;
        }
        let up = self.0.lock().expect("not poisoned").take();
        Some(Box::pin(async move {
            up.map(harp::upstream::BoxedIo::new)
                .ok_or_else(|| io::ErrorKind::ConnectionRefused.into())
        }))
    }
}

/// Bodies are read up to this many bytes (more than any fuzz input holds).
const BODY_CAP: usize = 1 << 20;

/// Sends one bodiless request through harp's `Forwarder` (the lean in-task client takes
/// GET and HEAD) to an upstream that answers `response`, and reads the body to its end.
/// Runs under paused time, so the connect/server/idle timeouts expire instantly if the client
/// waits for bytes that will never come. `None` when the exchange failed before a head.
pub fn lean_fetch(method: http::Method, response: &[u8], plan: &[u8]) -> Option<Fetched> {
    use harp::upstream::{empty, Forwarder, LocalDialers, Target, UpstreamRequest};
    use http_body_util::BodyExt;
    use std::sync::Arc;
    use std::time::Duration;

    let upstream = ScriptedPeer::new(response, plan);
    let dialers = LocalDialers::new(vec![Arc::new(OneShot(std::sync::Mutex::new(Some(
        upstream,
    ))))]);
    let timeout = Duration::from_secs(30);
    let forwarder = Forwarder::new(timeout, timeout, Some(timeout), dialers);
    let request = UpstreamRequest {
        method,
        target: Target::new(std::net::Ipv4Addr::LOCALHOST.into(), UPSTREAM_PORT),
        path_and_query: "/fuzz?x=1".into(),
        headers: http::HeaderMap::new(),
        body: empty(),
        client_upgrade: None,
    };
    paused_runtime().block_on(async move {
        let response = forwarder.send(request).await.ok()?;
        let (parts, mut body) = response.into_parts();
        let mut data = Vec::new();
        let body = loop {
            match body.frame().await {
                None => break Ok(data),
                Some(Err(e)) => break Err(e.to_string()),
                Some(Ok(frame)) => {
                    if let Ok(chunk) = frame.into_data() {
                        data.extend_from_slice(&chunk);
                        assert!(data.len() <= BODY_CAP, "body larger than the response");
                    }
                }
            }
        };
        Some(Fetched {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    })
}
