//! The accept loop every listener uses (front-door workers, the FRP listener, the tunnels'
//! loopback listeners, the Docker 24000 relay), written once.
//!
//! It waits for an optional admission permit (the front door's connection cap), accepts,
//! and spawns the per-connection work inside a `tracing` span carrying the listener's name and
//! the peer address, so every line a connection logs says whose it is. Errors that concern only
//! the connection being accepted (aborted or reset before we got it) are retried at once;
//! every other error — EMFILE, ENFILE, ENOBUFS, ENOMEM and whatever else the kernel reports —
//! backs off exponentially from [`BACKOFF_MIN`] to [`BACKOFF_MAX`], because retrying at once
//! would spin a core while the condition lasts. The loop ends when `stop` turns true, also in
//! the middle of a backoff.

use super::LogRate;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::watch;
use tracing::Instrument;

/// First pause after a failed accept: short enough that a brief fd shortage costs little.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause: the loop still notices recovery within a second (Go's net/http uses 1 s).
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one "accept failed" line per listener and interval.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A source of connections: a `TcpListener`, or a script in tests.
pub(crate) trait Acceptor {
    type Conn: Send + 'static;
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Conn, SocketAddr)>> + Send;
}

impl Acceptor for tokio::net::TcpListener {
    type Conn = tokio::net::TcpStream;
    async fn accept(&mut self) -> io::Result<(Self::Conn, SocketAddr)> {
        tokio::net::TcpListener::accept(self).await
    }
}

/// True for errors that concern only the connection being accepted: retrying at once is right.
fn only_this_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Accepts from `listener` until `stop` turns true (`None`: until the task is dropped).
/// `permit` is awaited before each accept (`None` from it ends the loop); `serve` builds the
/// per-connection future, which is spawned inside a span named `conn` with `listener` and
/// `peer` fields.
pub(crate) async fn accept_loop<L, P, G, GF, S, SF>(
    mut listener: L,
    name: &'static str,
    mut stop: Option<watch::Receiver<bool>>,
    mut permit: G,
    mut serve: S,
) where
    L: Acceptor,
    G: FnMut() -> GF,
    GF: Future<Output = Option<P>>,
    S: FnMut(L::Conn, SocketAddr, P) -> SF,
    SF: Future<Output = ()> + Send + 'static,
{
    let errors = LogRate::new(ERROR_LOG_INTERVAL);
    let mut backoff = BACKOFF_MIN;
    loop {
        let Some(p) = until_stopped(&mut stop, permit()).await.flatten() else {
            return;
        };
        let Some(accepted) = until_stopped(&mut stop, listener.accept()).await else {
            return;
        };
        match accepted {
            Ok((conn, peer)) => {
                backoff = BACKOFF_MIN;
                // ERROR level so the span exists at every log level: the warnings need it most.
                let span = tracing::error_span!("conn", listener = name, %peer);
                tokio::spawn(serve(conn, peer, p).instrument(span));
            }
            Err(e) if only_this_connection(&e) => {
                tracing::debug!(listener = name, error = %e, "accept: connection lost before it was taken");
            }
            Err(e) => {
                if let Some(held_back) = errors.check() {
                    tracing::warn!(listener = name, error = %e, held_back, "accept failed; backing off {backoff:?}");
                }
                drop(p);
                if until_stopped(&mut stop, tokio::time::sleep(backoff))
                    .await
                    .is_none()
                {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Runs `fut` unless `stop` turns true first (`None` then).
async fn until_stopped<F: Future>(
    stop: &mut Option<watch::Receiver<bool>>,
    fut: F,
) -> Option<F::Output> {
    match stop {
        None => Some(fut.await),
        Some(rx) => tokio::select! {
            out = fut => Some(out),
            _ = rx.wait_for(|s| *s) => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::capture::Captured;
    use parking_lot::Mutex;
    use std::collections::VecDeque;
    use std::sync::Arc;
    use tokio::time::Instant;

    /// Replays scripted results and records when each accept was attempted; pends when empty.
    struct Script {
        results: VecDeque<io::Result<((), SocketAddr)>>,
        attempts: Arc<Mutex<Vec<Instant>>>,
    }

    impl Acceptor for Script {
        type Conn = ();
        async fn accept(&mut self) -> io::Result<((), SocketAddr)> {
            self.attempts.lock().push(Instant::now());
            match self.results.pop_front() {
                Some(r) => r,
                None => std::future::pending().await,
            }
        }
    }

    fn emfile() -> io::Error {
        // EMFILE as the kernel reports it (errno 24 on Linux).
        io::Error::from_raw_os_error(24)
    }

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[tokio::test(start_paused = true)]
    async fn resource_errors_back_off_exponentially_and_success_resets() {
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let mut results: VecDeque<_> = (0..9).map(|_| Err(emfile())).collect();
        results.push_back(Ok(((), peer(1))));
        results.push_back(Err(emfile()));
        results.push_back(Err(io::ErrorKind::ConnectionAborted.into()));
        results.push_back(Ok(((), peer(2))));
        let script = Script {
            results,
            attempts: attempts.clone(),
        };
        let served = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn({
            let served = served.clone();
            accept_loop(
                script,
                "test",
                Some(stop_rx),
                || async { Some(()) },
                move |(), peer, ()| {
                    served.lock().push(peer.port());
                    async {}
                },
            )
        });
        // Poll with a deadline (virtual time) until the script is used up.
        let deadline = Instant::now() + Duration::from_secs(30);
        while attempts.lock().len() < 14 {
            assert!(Instant::now() < deadline, "script not consumed");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let t = attempts.lock().clone();
        let gaps: Vec<u128> = t.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
        assert_eq!(
            gaps,
            // 10 ms doubling, capped at 1 s; a success resets to 10 ms; an aborted connection
            // is retried at once.
            [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 0, 10, 0, 0]
        );
        assert_eq!(*served.lock(), [1, 2]);
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("stop ends the loop")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn stop_interrupts_a_backoff() {
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let script = Script {
            results: (0..20).map(|_| Err(emfile())).collect(),
            attempts: attempts.clone(),
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(
            script,
            "test",
            Some(stop_rx),
            || async { Some(()) },
            |(), _, ()| async {},
        ));
        let deadline = Instant::now() + Duration::from_secs(30);
        while attempts.lock().len() < 9 {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Now inside a 1 s backoff.
        let before = Instant::now();
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        assert!(before.elapsed() < BACKOFF_MAX);
    }

    #[tokio::test]
    async fn connection_work_runs_in_a_span_with_the_peer() {
        let (captured, _guard) = Captured::start();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let mut done_tx = Some(done_tx);
        let script = Script {
            results: [Ok(((), peer(4242)))].into(),
            attempts: Arc::default(),
        };
        let task = tokio::spawn(accept_loop(
            script,
            "frp",
            None,
            || async { Some(()) },
            move |(), _, ()| {
                let done = done_tx.take();
                async move {
                    tracing::info!("serving");
                    if let Some(d) = done {
                        let _ = d.send(());
                    }
                }
            },
        ));
        tokio::time::timeout(Duration::from_secs(10), done_rx)
            .await
            .expect("served")
            .unwrap();
        task.abort();
        let text = captured.text();
        assert!(
            text.contains("conn{listener=\"frp\" peer=192.0.2.1:4242}") && text.contains("serving"),
            "{text}"
        );
    }
}
