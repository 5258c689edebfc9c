//! harp as a child process (the real binary, started by [`super::Harness::spawn_process`]),
//! so its fds, RSS and CPU time can be read from `/proc/<pid>`; the `/proc` readers; and the
//! raw-HTTP helpers and expected answers of the attack suite (`tests/attack_*.rs`, project
//! issue #13), one constant per expected answer so they can be adjusted in one place.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::exapp::read_head;
use super::{prereq, wait_until, KEY};

const BIN: &str = env!("CARGO_BIN_EXE_harp");

/// Expected answer to a request harp refuses as malformed (bad framing, forbidden escapes,
/// hostile Docker payloads, an engine port outside the plan).
pub const BAD_REQUEST: u16 = 400;
/// Expected answer to a client that stalls its upload past `HP_TIMEOUT_CLIENT`.
pub const REQUEST_TIMEOUT: u16 = 408;
/// A normal request must be answered within this while an attack runs.
pub const NORMAL_LATENCY: Duration = Duration::from_secs(1);
/// Slack allowed on harp's fd count after an attack (listeners reopened, pooled upstreams).
pub const FD_MARGIN: usize = 16;
/// Slack allowed on harp's resident memory after (and during) an attack.
pub const RSS_MARGIN_KIB: u64 = 64 * 1024;
/// How long fds/RSS may take to come back to baseline once an attack stops.
pub const SETTLE: Duration = Duration::from_secs(5);

/// Serialises the tests of one binary: they measure one process each, but share 2 CPU cores,
/// and a neighbour's flood would make "a normal request stays fast" meaningless.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::OnceLock<tokio::sync::Mutex<()>> = std::sync::OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
        .lock()
        .await
}

/// The harp binary running as a child; killed on drop.
pub struct HarpProcess {
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    pub frp: SocketAddr,
    logs: Arc<Mutex<VecDeque<String>>>,
    _dir: tempfile::TempDir,
}

/// How many of harp's last log lines are kept for failure messages.
const LOG_TAIL: usize = 200;

/// How long a child harp may take to report its ports.
const START_DEADLINE: Duration = Duration::from_secs(20);

impl HarpProcess {
    /// Starts harp with exactly `vars` (the parent's environment is not inherited), run
    /// through `wrapper` when not empty; `dir` holds its directories and lives as long as it.
    pub(super) fn spawn(
        wrapper: &[String],
        vars: &std::collections::BTreeMap<String, String>,
        dir: tempfile::TempDir,
    ) -> HarpProcess {
        let mut cmd = match wrapper.split_first() {
            Some((prog, args)) => {
                prereq::require_command(prog, "util-linux");
                let mut c = Command::new(prog);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        cmd.env_clear().envs(vars);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn harp");
        let logs = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        // Both pipes are drained for harp's whole life: a full pipe would block its logging.
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let logs = logs.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines() {
                    let Ok(line) = line else { return };
                    if line.contains("harp is listening") {
                        let _ = tx.send(line.clone());
                    }
                    let mut l = logs.lock();
                    if l.len() == LOG_TAIL {
                        l.pop_front();
                    }
                    l.push_back(line);
                }
            });
        }
        let line = match rx.recv_timeout(START_DEADLINE) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "harp did not report its ports; logs: {:?}",
                    logs.lock().iter().collect::<Vec<_>>()
                );
            }
        };
        // HP_LOG_FORMAT=json writes the same fields as one JSON object.
        let json: Option<serde_json::Value> = serde_json::from_str(&line).ok();
        let addr = |key: &str| -> SocketAddr {
            let found = match &json {
                Some(j) => j["fields"][key.trim_end_matches('=')]
                    .as_str()
                    .and_then(|v| v.parse().ok()),
                None => line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix(key))
                    .and_then(|v| v.parse().ok()),
            };
            found.unwrap_or_else(|| panic!("no {key} in {line:?}"))
        };
        HarpProcess {
            pid: child.id(),
            addr: addr("http="),
            frp: addr("frp="),
            child,
            logs,
            _dir: dir,
        }
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Panics (with the log tail) when harp is gone.
    pub fn assert_alive(&mut self) {
        let status = self.child.try_wait().unwrap();
        assert!(
            status.is_none(),
            "harp died ({status:?}); last logs: {:#?}",
            self.logs()
        );
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().iter().cloned().collect()
    }

    pub fn fds(&self) -> usize {
        fds(self.pid)
    }

    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Waits until the fd count is within [`FD_MARGIN`] of `baseline`.
    pub async fn fds_settle(&mut self, baseline: usize, what: &str) {
        let pid = self.pid;
        let ok = wait_until(SETTLE, || fds(pid) <= baseline + FD_MARGIN).await;
        self.assert_alive();
        assert!(
            ok,
            "{what}: harp holds {} fds, baseline {baseline} (+{FD_MARGIN} allowed)",
            self.fds()
        );
    }

    /// Asserts resident memory within [`RSS_MARGIN_KIB`] of `baseline` (waits for it to drop).
    pub async fn rss_settle(&mut self, baseline: u64, what: &str) {
        let pid = self.pid;
        let ok = wait_until(SETTLE, || rss_kib(pid) <= baseline + RSS_MARGIN_KIB).await;
        self.assert_alive();
        assert!(
            ok,
            "{what}: harp's RSS is {} KiB, baseline {baseline} KiB (+{RSS_MARGIN_KIB} allowed)",
            self.rss_kib()
        );
    }
}

impl Drop for HarpProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the harp binary to completion with `args` and only `env` in its environment (nothing
/// inherited from the test runner); returns its exit code and stdout followed by stderr. For
/// the commands that finish: `check`, `audit`, `certs`, bad configurations.
pub fn run_once(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("the harp binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Open file descriptors of `pid` (0 when the process is gone).
pub fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// `VmRSS` of `pid` in KiB (0 when the process is gone).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `VmPeak` (largest virtual size so far) of `pid` in KiB: shows an allocation that RSS hides
/// because its pages were never touched (a 4 GiB `calloc` is lazily mapped).
pub fn vm_peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmPeak:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// User plus system CPU time of `pid`, in clock ticks (`/proc/<pid>/stat` fields 14 and 15).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces; the fields after it start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field n is f[n - 3].
    let get = |n: usize| {
        f.get(n - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(14) + get(15)
}

/// The soft and hard "Max open files" of `pid`.
pub fn nofile_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("limits line");
    let f: Vec<&str> = line.split_whitespace().collect();
    (f[3].to_string(), f[4].to_string())
}

/// Sends `request` on a fresh connection and returns the status of the answer (0 when harp
/// closed without answering) and the time it took; panics past [`NORMAL_LATENCY`] × 5.
pub async fn timed_status(addr: SocketAddr, request: &[u8]) -> (u16, Duration) {
    try_timed_status(addr, request)
        .await
        .expect("harp did not answer a normal request within 5 s")
}

/// Like [`timed_status`], `None` when harp took longer than [`NORMAL_LATENCY`] × 5.
pub async fn try_timed_status(addr: SocketAddr, request: &[u8]) -> Option<(u16, Duration)> {
    let start = Instant::now();
    let out = tokio::time::timeout(NORMAL_LATENCY * 5, async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(request).await?;
        read_head(&mut s).await
    })
    .await;
    let status = match out {
        Ok(Ok(head)) => status_of(&head),
        Ok(Err(_)) => 0,
        Err(_) => return None,
    };
    Some((status, start.elapsed()))
}

/// The signed `GET /exapps/app_api/info` every test can use as "a normal request": it needs
/// neither Nextcloud nor an ExApp.
pub fn info_request() -> Vec<u8> {
    format!(
        "GET /exapps/app_api/info HTTP/1.1\r\nHost: harp\r\nharp-shared-key: {KEY}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// Asserts that a normal request is answered 200 within [`NORMAL_LATENCY`].
pub async fn assert_normal_fast(addr: SocketAddr, what: &str) -> Duration {
    let (status, took) = timed_status(addr, &info_request()).await;
    assert_eq!(status, 200, "{what}: normal request failed");
    assert!(
        took < NORMAL_LATENCY,
        "{what}: normal request took {took:?} (limit {NORMAL_LATENCY:?})"
    );
    took
}

/// The status code of a response head, 0 when there is none.
pub fn status_of(head: &[u8]) -> u16 {
    std::str::from_utf8(head)
        .ok()
        .and_then(|t| t.strip_prefix("HTTP/1.1 "))
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Sends raw bytes and returns everything until harp closes (or `limit` passes: Err).
pub async fn raw_exchange(
    addr: SocketAddr,
    request: &[u8],
    limit: Duration,
) -> Result<Vec<u8>, Vec<u8>> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let end = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return Err(out),
        }
    }
}

/// All status codes in a raw byte stream of responses, in order.
pub fn statuses(raw: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(raw);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text.get(i + 9..i + 12).and_then(|c| c.parse().ok()))
        .collect()
}

/// The route table of the attack app: `^/admin` and `^/api/admin` ADMIN, `^/api` USER,
/// everything else PUBLIC.
pub fn attack_routes() -> serde_json::Value {
    serde_json::json!([
        {"url": "^/admin", "access_level": 2, "bruteforce_protection": []},
        {"url": "^/api/admin", "access_level": 2, "bruteforce_protection": []},
        {"url": "^/api", "access_level": 1, "bruteforce_protection": []},
        {"url": "^/", "access_level": 0, "bruteforce_protection": []},
    ])
}
