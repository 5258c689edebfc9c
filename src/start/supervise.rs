//! Supervision while serving, the periodic sweep, and the drain at shutdown.

use super::workers::Workers;
use crate::frontdoor;
use crate::nextcloud::Nextcloud;
use crate::security::BanList;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

/// How often expired bans and sessions are swept from memory.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// A task harp cannot run without ended while harp was meant to be serving.
#[derive(Debug, thiserror::Error)]
#[error("{0} stopped unexpectedly")]
pub struct CoreTaskDied(pub &'static str);

pub(super) type CoreTasks = Vec<(&'static str, JoinHandle<()>)>;

/// Waits for `shutdown`, or for the first core task to finish by itself (returning its name).
pub(super) async fn supervise(
    shutdown: impl Future<Output = ()>,
    core: &mut [(&'static str, JoinHandle<()>)],
) -> Option<&'static str> {
    let any_finished = futures_util::future::select_all(core.iter_mut().map(|(_, t)| t));
    tokio::select! {
        _ = shutdown => None,
        (_, index, _) = any_finished => Some(core[index].0),
    }
}

/// Stops accepting, lets in-flight requests finish (bounded by the drain time), then lets the
/// worker threads end.
pub(super) async fn drain(
    stop: watch::Sender<bool>,
    core: CoreTasks,
    limit: Arc<Semaphore>,
    max_connections: usize,
    done: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
) {
    let _ = stop.send(true);
    for (_, task) in core {
        let _ = task.await;
    }
    frontdoor::drain(limit, max_connections).await;
    let _ = done.send(true);
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
}

/// The core tasks: the FRP server and worker 0's accept loops.
pub(super) fn core_tasks(frp: JoinHandle<()>, workers: &mut Workers) -> CoreTasks {
    let mut core: CoreTasks = vec![("FRP server", frp)];
    core.extend(
        std::mem::take(&mut workers.local_loops)
            .into_iter()
            .map(|l| ("front-door accept loop", l)),
    );
    core
}

/// Sweeps expired bans and sessions every [`SWEEP_INTERVAL`], forever.
pub(super) async fn sweep(bans: Arc<BanList>, nextcloud: Arc<Nextcloud>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tick.tick().await;
        bans.sweep_at(std::time::Instant::now());
        nextcloud.sweep_sessions();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn item28_a_core_task_ending_is_reported() {
        let mut core = vec![
            ("long", tokio::spawn(std::future::pending::<()>())),
            ("short", tokio::spawn(async {})),
        ];
        let died = supervise(std::future::pending(), &mut core).await;
        assert_eq!(died, Some("short"));
    }

    #[tokio::test]
    async fn shutdown_wins_while_core_tasks_run() {
        let mut core = vec![("long", tokio::spawn(std::future::pending::<()>()))];
        assert_eq!(supervise(async {}, &mut core).await, None);
    }
}
