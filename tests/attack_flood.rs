//! Attack suite, resource exhaustion (issue #13): floods and descriptor limits against the real
//! `harp` binary, measured through `/proc/<pid>` while normal requests are timed alongside.

mod common;

use common::exapp::*;
use common::nextcloud::StubNextcloud;
use common::process::*;
use common::{meta, wait_until, Harness};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Shape of a request flood: parallel keep-alive connections, requests pipelined per batch.
#[derive(Clone, Copy)]
struct Shape {
    conns: usize,
    batch: usize,
}

/// Cheap, locally decided requests: few connections, deep pipelines (throughput).
const DEEP: Shape = Shape {
    conns: 4,
    batch: 64,
};
/// Requests that each wait on Nextcloud: many connections, short pipelines (concurrency).
const WIDE: Shape = Shape {
    conns: 32,
    batch: 16,
};

/// Sends up to `total` requests made by `make(i)` in `shape`, until `time` passes; reconnects
/// when harp closes. Returns how many requests were answered.
async fn request_flood(
    addr: SocketAddr,
    total: usize,
    time: Duration,
    shape: Shape,
    make: fn(usize) -> String,
) -> usize {
    let Shape { conns, batch } = shape;
    let next = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let end = Instant::now() + time;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let next = next.clone();
        let answered = answered.clone();
        set.spawn(async move {
            let mut conn: Option<TcpStream> = None;
            let mut buf = vec![0u8; 256 * 1024];
            while Instant::now() < end {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= total {
                    return;
                }
                let n = batch.min(total - first);
                let mut out = String::new();
                for i in first..first + n {
                    out.push_str(&make(i));
                }
                if conn.is_none() {
                    conn = Some(TcpStream::connect(addr).await.unwrap());
                }
                let s = conn.as_mut().expect("connected");
                if s.write_all(out.as_bytes()).await.is_err() {
                    conn = None;
                    continue;
                }
                let mut got = 0usize;
                let mut tail = Vec::new();
                while got < n {
                    let read = tokio::time::timeout_at(
                        tokio::time::Instant::from_std(end + Duration::from_secs(2)),
                        s.read(&mut buf),
                    )
                    .await;
                    match read {
                        Ok(Ok(k)) if k > 0 => {
                            tail.extend_from_slice(&buf[..k]);
                            got += count_status_lines(&mut tail);
                        }
                        _ => break,
                    }
                }
                answered.fetch_add(got, Ordering::Relaxed);
                if got < n {
                    conn = None;
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    answered.load(Ordering::Relaxed)
}

/// Counts complete `HTTP/1.1 ` status-line starts in `tail`, keeping the last 8 bytes (a
/// status line split across reads) for the next call.
fn count_status_lines(tail: &mut Vec<u8>) -> usize {
    const MARK: &[u8] = b"HTTP/1.1 ";
    let n = tail.windows(MARK.len()).filter(|w| *w == MARK).count();
    let keep = tail.len().saturating_sub(MARK.len() - 1);
    tail.drain(..keep);
    n
}

/// Times a normal request every 50 ms until `stop`; returns the latencies.
fn sample_normal(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Duration>> {
    tokio::spawn(async move {
        let mut lat = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            // A normal request unanswered within 5 s counts as 5 s (the flood goes on).
            let took = match try_timed_status(addr, &info_request()).await {
                Some((status, took)) => {
                    assert_eq!(status, 200, "normal request failed during the flood");
                    took
                }
                None => NORMAL_LATENCY * 5,
            };
            lat.push(took);
            // The pace of the latency probes (a sample every 50 ms), not a synchronisation.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        lat
    })
}

fn p99(mut lat: Vec<Duration>) -> Duration {
    assert!(!lat.is_empty(), "no normal request was sampled");
    lat.sort();
    lat[(lat.len() * 99 / 100).min(lat.len() - 1)]
}

/// p99 latency allowed for normal requests during a flood.
const FLOOD_P99: Duration = Duration::from_millis(500);

/// Distinct client IPs of the ban-churn attack (beyond the ban list's 100k capacity).
const CHURN_IPS: usize = 150_000;
/// Time bound of the ban-churn attack.
const CHURN_TIME: Duration = Duration::from_secs(20);

fn churn_request(i: usize) -> String {
    // 10.0.0.0/8 holds 16M addresses; every request is a new client behind the trusted proxy.
    format!(
        "GET /exapps/ HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.{}.{}.{}\r\n\r\n",
        (i >> 16) & 255,
        (i >> 8) & 255,
        i & 255
    )
}

/// Attack 7 (100k-IP ban churn): behind a trusted proxy, 150k failing requests (no app id:
/// 404, failure recorded) each from a different `X-Forwarded-For` address, over keep-alive
/// connections for at most 20 s. Proves recording a failure stays cheap when the ban list is
/// full: sampled normal requests keep a p99 under 500 ms throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack07_ban_churn_keeps_normal_requests_fast() {
    let _g = serial().await;
    let nc = StubNextcloud::start().await;
    let mut harp = Harness::builder()
        .nextcloud(&nc.url())
        .envs(&[("HP_TRUSTED_PROXY_IPS", "127.0.0.1"), ("HP_WORKERS", "2")])
        .spawn_process();
    let baseline = harp.rss_kib();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_normal(harp.addr, stop.clone());
    let started = Instant::now();
    let answered = request_flood(harp.addr, CHURN_IPS, CHURN_TIME, DEEP, churn_request).await;
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let lat = sampler.await.unwrap();
    let worst = lat.iter().max().copied().unwrap_or_default();
    let p = p99(lat);
    eprintln!(
        "ban churn: {answered} failing requests from distinct IPs in {took:?} ({:.0} req/s); normal p99 {p:?}, max {worst:?}",
        answered as f64 / took.as_secs_f64()
    );
    harp.assert_alive();
    assert!(
        p < FLOOD_P99,
        "normal requests p99 {p:?} during ban churn ({answered} IPs in {took:?})"
    );
    harp.rss_settle(baseline, "after ban churn").await;
}

/// Attack 10 (RLIMIT_NOFILE): harp started with a soft fd limit of 1024 raises it to the hard
/// limit, so a busy proxy is not capped at 1024 connections by a container default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack10_soft_nofile_limit_is_raised_to_the_hard_limit() {
    let _g = serial().await;
    let nc = StubNextcloud::start().await;
    let (_, hard) = nofile_limits(std::process::id());
    let arg = format!("--nofile=1024:{hard}");
    let harp = Harness::builder()
        .nextcloud(&nc.url())
        .wrapped_in(&["prlimit", &arg, "--"])
        .spawn_process();
    let (soft, harp_hard) = nofile_limits(harp.pid);
    assert_eq!(harp_hard, hard, "the wrapper set the hard limit");
    assert_eq!(
        soft, hard,
        "harp kept the soft RLIMIT_NOFILE at {soft} instead of raising it to {hard}"
    );
}

/// The fd limit of the exhaustion attack.
const TIGHT_NOFILE: &str = "--nofile=128:128";
/// Idle connections opened against the tight limit (more than harp can hold).
const EXHAUST_CONNS: usize = 200;
/// CPU harp may burn during 2 s of fd exhaustion, in clock ticks (100/s): 20 % of one core.
const EXHAUSTED_CPU_TICKS: u64 = 40;

/// Attack 11 (fd exhaustion recovers): under `RLIMIT_NOFILE=128`, idle connections fill harp's
/// descriptor table (HTTP and FRP ports). Proves the accept loops back off instead of spinning
/// (CPU time over 2 s of exhaustion stays low) and harp serves again once the connections go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack11_fd_exhaustion_backs_off_and_recovers() {
    let _g = serial().await;
    let nc = StubNextcloud::start().await;
    let mut harp = Harness::builder()
        .nextcloud(&nc.url())
        .wrapped_in(&["prlimit", TIGHT_NOFILE, "--"])
        .spawn_process();
    assert_normal_fast(harp.addr, "before").await;
    let mut conns = Vec::new();
    for _ in 0..EXHAUST_CONNS {
        if let Ok(s) = TcpStream::connect(harp.addr).await {
            conns.push(s);
        }
    }
    let pid = harp.pid;
    let full = wait_until(Duration::from_secs(5), || fds(pid) >= 126).await;
    assert!(full, "harp never ran out of fds: {} open", harp.fds());
    // Pending connections on the FRP port too: its accept loop must not spin either.
    for _ in 0..10 {
        if let Ok(s) = TcpStream::connect(harp.frp).await {
            conns.push(s);
        }
    }
    // Measurement window, not synchronisation: CPU used over 2 s of exhaustion.
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_ticks(pid) - before;
    harp.assert_alive();
    drop(conns);
    assert!(
        used <= EXHAUSTED_CPU_TICKS,
        "harp burned {used} CPU ticks in 2 s of fd exhaustion (limit {EXHAUSTED_CPU_TICKS})"
    );
    let end = Instant::now() + Duration::from_secs(10);
    let (served, last) = loop {
        let last = timed_status(harp.addr, &info_request()).await;
        if last.0 == 200 || Instant::now() > end {
            break (last.0 == 200, last);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(served, "harp did not recover after fd exhaustion: {last:?}");
}

/// Slowloris connections and their pace.
const SLOW_CONNS: usize = 500;
const SLOW_PACE: Duration = Duration::from_millis(200);
const SLOW_CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// Attack 17c (slowloris, holds today): 500 connections send a request head one byte per
/// 200 ms. Proves harp's head deadline (`HP_TIMEOUT_CLIENT=2s`) is total, not per byte: all are
/// closed within the timeout plus slack, fds return to baseline, normal requests stay fast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack17_slowloris_is_closed_after_the_client_timeout() {
    let _g = serial().await;
    let nc = StubNextcloud::start().await;
    let mut harp = Harness::builder()
        .nextcloud(&nc.url())
        .envs(&[("HP_TIMEOUT_CLIENT", "2s")])
        .spawn_process();
    let baseline = harp.fds();
    let started = Instant::now();
    let deadline = SLOW_CLIENT_TIMEOUT + Duration::from_secs(3);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..SLOW_CONNS {
        let addr = harp.addr;
        set.spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let opened = Instant::now();
            let _ = s
                .write_all(b"GET /exapps/app_api/info HTTP/1.1\r\nX-Slow: ")
                .await;
            let mut buf = [0u8; 512];
            while opened.elapsed() < deadline + Duration::from_secs(2) {
                if s.write_all(b"a").await.is_err() {
                    return Some(opened.elapsed());
                }
                // Data (a 408) or EOF both mean harp is done with us.
                if tokio::time::timeout(SLOW_PACE, s.read(&mut buf))
                    .await
                    .is_ok()
                {
                    return Some(opened.elapsed());
                }
            }
            None
        });
    }
    let mut normal = Vec::new();
    while started.elapsed() < SLOW_CLIENT_TIMEOUT {
        normal.push(assert_normal_fast(harp.addr, "during slowloris").await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut open_too_long = 0;
    let mut latest = Duration::ZERO;
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Some(t) if t <= deadline => latest = latest.max(t),
            _ => open_too_long += 1,
        }
    }
    assert_eq!(
        open_too_long, 0,
        "slowloris connections outlived HP_TIMEOUT_CLIENT + 3 s (latest close {latest:?})"
    );
    harp.fds_settle(baseline, "after slowloris").await;
    assert!(!normal.is_empty());
}

/// Distinct session cookies of the cookie flood, and its time bound.
const COOKIES: usize = 200_000;
const COOKIE_TIME: Duration = Duration::from_secs(8);

fn cookie_request(i: usize) -> String {
    format!(
        "GET /exapps/atk/api/x HTTP/1.1\r\nHost: x\r\nCookie: oc_sessionPassphrase=flood{i}\r\n\r\n"
    )
}

/// Attack 17d (distinct-cookie flood, holds today): up to 200k requests with distinct session
/// cookies against a USER route (each a Nextcloud user-info lookup and a session-cache entry),
/// bounded to 8 s. Proves the session cache is bounded (RSS within the margin) and normal
/// requests stay fast meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack17_cookie_flood_keeps_memory_bounded() {
    let _g = serial().await;
    let nc = StubNextcloud::start().await;
    let app = RecordingExApp::start().await;
    nc.add_app("atk", meta(app.port(), attack_routes()));
    let mut harp = Harness::builder()
        .nextcloud(&nc.url())
        .envs(&[("HP_BLACKLIST_COUNT", "100000000")])
        .spawn_process();
    let baseline = harp.rss_kib();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_normal(harp.addr, stop.clone());
    let started = Instant::now();
    let answered = request_flood(harp.addr, COOKIES, COOKIE_TIME, WIDE, cookie_request).await;
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let p = p99(sampler.await.unwrap());
    let peak = harp.rss_kib();
    eprintln!(
        "cookie flood: {answered} distinct cookies in {took:?} ({:.0} req/s), {} user-info calls; RSS {baseline} -> {peak} KiB; normal p99 {p:?}",
        answered as f64 / took.as_secs_f64(),
        nc.user_calls()
    );
    assert!(answered > 0, "the flood reached harp");
    assert!(p < FLOOD_P99, "normal p99 {p:?} during the cookie flood");
    harp.rss_settle(baseline, "during/after the cookie flood")
        .await;
}
