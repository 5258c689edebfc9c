//! The front-door workers. Worker 0 runs on the caller's runtime; each further worker gets its
//! own thread with a single-threaded runtime, its own listening sockets (SO_REUSEPORT) and its
//! own upstream pool, so a request is handled start to finish on one thread without hand-offs.

use super::build::DoorParts;
use crate::frontdoor::{self, Listener, TlsReloader};
use std::sync::Arc;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

type Sockets = Vec<(std::net::TcpListener, Option<TlsReloader>)>;

/// The running workers: worker 0's accept loops (core tasks of the caller's runtime) and the
/// threads of the others.
pub(super) struct Workers {
    pub local_loops: Vec<JoinHandle<()>>,
    pub threads: Vec<std::thread::JoinHandle<()>>,
}

/// Starts `workers` workers on the sockets of `listeners`. Worker threads keep their runtime
/// (and its connections) alive until `done` turns true, after the drain.
pub(super) fn start(
    workers: usize,
    listeners: impl Iterator<Item = Listener>,
    parts: &DoorParts,
    limit: &Arc<Semaphore>,
    stop: &watch::Receiver<bool>,
    done: &watch::Receiver<bool>,
) -> Workers {
    let mut per_worker: Vec<Sockets> = (0..workers).map(|_| Vec::new()).collect();
    for listener in listeners {
        for (i, socket) in listener.sockets.into_iter().enumerate() {
            per_worker[i].push((socket, listener.tls.clone()));
        }
    }
    let mut running = Workers {
        local_loops: Vec::new(),
        threads: Vec::new(),
    };
    for (i, sockets) in per_worker.into_iter().enumerate() {
        let door = Arc::new(parts.door());
        let (limit, stop) = (limit.clone(), stop.clone());
        if i == 0 {
            running.local_loops = sockets
                .into_iter()
                .map(|(socket, tls)| {
                    let accept = frontdoor::accept_loop(
                        socket,
                        tls,
                        door.clone(),
                        limit.clone(),
                        stop.clone(),
                    );
                    tokio::spawn(accept)
                })
                .collect();
            continue;
        }
        let mut done = done.clone();
        let thread = move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start worker runtime");
                    return;
                }
            };
            rt.block_on(async move {
                let loops = sockets.into_iter().map(|(socket, tls)| {
                    frontdoor::accept_loop(socket, tls, door.clone(), limit.clone(), stop.clone())
                });
                futures_util::future::join_all(loops).await;
                // Keep this runtime (and the connections it owns) alive until drained.
                let _ = done.wait_for(|d| *d).await;
            });
        };
        let spawned = std::thread::Builder::new()
            .name(format!("harp-worker-{i}"))
            .spawn(thread);
        match spawned {
            Ok(handle) => running.threads.push(handle),
            Err(e) => tracing::error!(error = %e, "cannot start worker thread {i}"),
        }
    }
    running
}
