//! Bans that survive a restart (issue #11 part 2): the real harp binary as a child process,
//! banned over HTTP, stopped (SIGTERM or SIGKILL) and started again on the same `HP_DATA_DIR`.

mod common;

use common::process::{info_request, raw_exchange, HarpProcess};
use common::{wait_until, Harness};
use std::path::Path;
use std::time::{Duration, Instant};

/// Failures that ban, and the window: long enough to outlast a restart, short enough to wait out.
const COUNT: &str = "2";
const WINDOW: Duration = Duration::from_secs(8);
/// The store promises a ban is on disk within a second.
const PERSISTED_WITHIN: Duration = Duration::from_secs(1);
/// How long a graceful stop may take.
const STOP_DEADLINE: Duration = Duration::from_secs(20);
/// A ban must lift within this after its window (the window plus start-up and polling slack).
const LIFT_DEADLINE: Duration = Duration::from_secs(20);
const ME: &str = "127.0.0.1";

fn start(data_dir: &Path) -> HarpProcess {
    Harness::builder()
        .envs(&[
            ("HP_BLACKLIST_COUNT", COUNT),
            ("HP_BLACKLIST_WINDOW", &WINDOW.as_secs().to_string()),
            ("HP_DATA_DIR", data_dir.to_str().unwrap()),
        ])
        .spawn_process()
}

/// Whether harp drops this client (a banned client gets no answer at all).
async fn banned(h: &HarpProcess) -> bool {
    raw_exchange(h.addr, &info_request(), Duration::from_secs(5))
        .await
        .expect("harp closes or answers")
        .is_empty()
}

/// Bans this client (two refused requests) and waits until the ban is on disk.
async fn ban_me(h: &HarpProcess, data_dir: &Path) -> Instant {
    assert!(!banned(h).await, "not banned before any failure");
    // Taken before the failures, so the ban cannot have started earlier.
    let at = Instant::now();
    for _ in 0..2 {
        let req = b"GET /exapps/ HTTP/1.1\r\nHost: harp\r\nConnection: close\r\n\r\n";
        raw_exchange(h.addr, req, Duration::from_secs(5))
            .await
            .unwrap();
    }
    assert!(banned(h).await, "two failures ban; logs: {:#?}", h.logs());
    let log = data_dir.join("bans.log");
    assert!(
        wait_until(PERSISTED_WITHIN, || std::fs::read_to_string(&log)
            .is_ok_and(|t| t.lines().any(|l| l.starts_with(&format!("{ME} ")))))
        .await,
        "the ban was not in {} within {PERSISTED_WITHIN:?}",
        log.display()
    );
    at
}

/// After a restart the address is still banned, and the ban lifts when its window ends.
async fn still_banned_then_lifts(h: &HarpProcess, banned_at: Instant) {
    assert!(
        banned(h).await,
        "the ban did not survive; logs: {:#?}",
        h.logs()
    );
    let deadline = Instant::now() + LIFT_DEADLINE;
    while banned(h).await {
        assert!(Instant::now() < deadline, "the ban never lifted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        banned_at.elapsed() >= WINDOW,
        "the restored ban lifted after {:?}, before its {WINDOW:?} window",
        banned_at.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ban_survives_a_graceful_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = start(dir.path());
    let at = ban_me(&h, dir.path()).await;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(h.pid as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert!(
        wait_until(STOP_DEADLINE, || !h.alive()).await,
        "harp did not stop on SIGTERM"
    );
    drop(h);
    let h = start(dir.path());
    still_banned_then_lifts(&h, at).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ban_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path());
    let at = ban_me(&h, dir.path()).await;
    // Dropping a HarpProcess sends SIGKILL (std's Child::kill) and reaps it.
    drop(h);
    let h = start(dir.path());
    still_banned_then_lifts(&h, at).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_ban_log_is_set_aside_and_harp_starts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bans.log"), b"\x00garbage\nnot a ban\n").unwrap();
    let h = start(dir.path());
    assert!(!banned(&h).await, "harp serves with an empty ban list");
    let logs = h.logs();
    assert!(
        logs.iter()
            .any(|l| l.contains("WARN") && l.contains("unreadable") && l.contains("bans.log")),
        "no warning naming the file: {logs:#?}"
    );
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("bans.log.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "the corrupt log is kept aside once");
    let kept = std::fs::read(dir.path().join(&aside[0])).unwrap();
    assert_eq!(kept, b"\x00garbage\nnot a ban\n");
    // And the fresh log works: a new ban is persisted.
    ban_me(&h, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_data_dir_runs_in_memory_with_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    // A directory cannot be made under a regular file, even by root.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let h = start(&file.join("data"));
    assert!(!banned(&h).await);
    for _ in 0..2 {
        let req = b"GET /exapps/ HTTP/1.1\r\nHost: harp\r\nConnection: close\r\n\r\n";
        raw_exchange(h.addr, req, Duration::from_secs(5))
            .await
            .unwrap();
    }
    assert!(banned(&h).await, "bans still work in memory");
    let about_it: Vec<String> = h
        .logs()
        .into_iter()
        .filter(|l| {
            l.contains("cannot be used") || l.contains("memory only") || l.contains("audit log")
        })
        .collect();
    assert_eq!(about_it.len(), 1, "exactly one warning: {:#?}", h.logs());
    assert!(about_it[0].contains("memory only") && about_it[0].contains("no audit log"));
}
