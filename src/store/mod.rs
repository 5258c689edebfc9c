//! Persisted state in `HP_DATA_DIR`: today the ban list (`bans.log`), so an address banned
//! before a restart or a crash stays banned until its window ends.
//!
//! Owns the files in the data directory and the one writer thread that appends to them. Must
//! not decide who is banned (that is `security::BanList`); it only records and replays bans.
//!
//! Format: an append-only text log, one line per ban, `<address> <unix seconds the ban ends>`.
//! Chosen over an embedded database because a ban is only ever added, never updated, and is
//! read back only once, at start; a line log needs no crate, and a torn last line (a crash in
//! the middle of a write) is recognisable and skipped.
//!
//! Durability: each ban is one `write(2)` of one line, issued by the writer thread as soon as it
//! receives it (within milliseconds). Once `write` returns the data is in the kernel's page cache,
//! which belongs to the kernel, not to harp: a `kill -9` of harp loses nothing written, only a
//! ban still in the channel. (A power loss can lose what the kernel has not flushed; bans are a
//! brute-force brake, not a ledger, so no `fsync` per line.)
//!
//! Off the request path: the request that triggers a ban only `try_send`s into a bounded
//! channel ([`QUEUE`]). When it is full (a flood of new bans from many addresses) the record is
//! dropped and counted: the ban still holds in memory, it is only not persisted; the writer
//! logs how many were dropped.
//!
//! Bounded: at start the log is rewritten with only the bans still running; while running, once
//! the log holds more than twice the running bans plus [`COMPACT_SLACK`] lines it is rewritten the
//! same way (temporary file + rename, so a crash leaves the old or the new log, never half).
//! Running bans are capped at [`MAX_BANS`] (the ban list's own cap on tracked addresses).
//!
//! A log that cannot be read or parsed is reported (a warning naming the file), renamed to
//! `bans.log.corrupt-<unix seconds>` and harp starts with no bans: never a reason not to start.

use crate::security::{BanList, BanSink};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// File name of the ban log inside `HP_DATA_DIR`.
pub(crate) const BAN_LOG: &str = "bans.log";
/// New bans waiting for the writer; past this they are dropped (and counted).
const QUEUE: usize = 4096;
/// Running bans kept; the same bound as the ban list's tracked addresses.
const MAX_BANS: usize = 100_000;
/// Lines a log may hold beyond twice its running bans before it is compacted.
const COMPACT_SLACK: usize = 4096;
/// A log larger than this is not read (it cannot come from harp: the cap above keeps it far
/// smaller), so a hostile or broken file cannot make start-up allocate without bound.
const MAX_LOG_BYTES: u64 = 64 * 1024 * 1024;
/// How often the writer wakes without records, to report dropped ones.
const TICK: Duration = Duration::from_secs(1);

/// Why the ban log could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("HP_DATA_DIR is empty")]
    NoDir,
    #[error("cannot use {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether harp can keep files in `data_dir`: creates it when missing and writes (then
/// removes) a probe file, so a read-only mount is found before anything relies on it.
pub(crate) fn check_data_dir(data_dir: &Path) -> Result<(), StoreError> {
    if data_dir.as_os_str().is_empty() {
        return Err(StoreError::NoDir);
    }
    fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let probe = data_dir.join(format!(".harp-probe-{}", std::process::id()));
    fs::write(&probe, b"").map_err(io(&probe))?;
    fs::remove_file(&probe).map_err(io(&probe))
}

/// Loads the running bans from `data_dir` into `bans` and returns what persists a new ban (the
/// caller sets it as the list's sink). Any failure is logged once at warning level and harp
/// keeps its bans in memory only (`None`).
pub(crate) fn persist_bans(data_dir: &Path, bans: &BanList) -> Option<BanSink> {
    match open(data_dir, bans) {
        Ok(sink) => Some(sink),
        Err(e) => {
            tracing::warn!("bans are kept in memory only and the data directory is not used: {e}");
            None
        }
    }
}

fn open(data_dir: &Path, bans: &BanList) -> Result<BanSink, StoreError> {
    if data_dir.as_os_str().is_empty() {
        return Err(StoreError::NoDir);
    }
    fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let path = data_dir.join(BAN_LOG);
    let now = unix_now();
    let running = load(&path, now);
    for (ip, until) in &running {
        bans.restore(*ip, Duration::from_secs(until.saturating_sub(now)));
    }
    if !running.is_empty() {
        tracing::info!(
            bans = running.len(),
            file = %path.display(),
            "restored bans that have not ended"
        );
    }
    rewrite(&path, &running)?;
    let file = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(io(&path))?;
    let (tx, rx) = sync_channel::<(IpAddr, u64)>(QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let writer = Writer {
        path: path.clone(),
        file,
        running,
        lines: 0,
        dropped: dropped.clone(),
    };
    std::thread::Builder::new()
        .name("harp-ban-store".into())
        .spawn(move || writer.run(rx))
        .map_err(io(&path))?;
    Ok(sink(tx, dropped))
}

/// What the ban list calls on a new ban: never blocks; a full queue drops and counts.
fn sink(tx: SyncSender<(IpAddr, u64)>, dropped: Arc<AtomicU64>) -> BanSink {
    Box::new(move |ip, lasts| {
        // Rounded up: a ban restored from whole seconds must not end before the real one.
        let end = (SystemTime::now() + lasts)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let until = end.as_secs() + u64::from(end.subsec_nanos() > 0);
        if tx.try_send((ip, until)).is_err() {
            // Full (or the writer is gone): the ban holds in memory, only not on disk.
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    })
}

/// Reads the running bans of the log at `path` (none when it does not exist). An unreadable or
/// unparsable log is set aside with a warning.
fn load(path: &Path, now: u64) -> HashMap<IpAddr, u64> {
    match read(path, now) {
        Ok(running) => running,
        Err(why) => {
            let aside = path.with_file_name(format!("{BAN_LOG}.corrupt-{now}"));
            let moved = fs::rename(path, &aside);
            tracing::warn!(
                file = %path.display(),
                "the ban log is unreadable ({why}); starting with no bans; {}",
                match moved {
                    Ok(()) => format!("it was moved to {}", aside.display()),
                    Err(e) => format!("it could not be moved aside: {e}"),
                }
            );
            HashMap::new()
        }
    }
}

fn read(path: &Path, now: u64) -> Result<HashMap<IpAddr, u64>, String> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(e.to_string()),
    };
    let mut bytes = Vec::new();
    file.take(MAX_LOG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_LOG_BYTES {
        return Err(format!("larger than {MAX_LOG_BYTES} bytes"));
    }
    parse(&bytes, now)
}

/// Parses a log; the last line may be torn (no newline: a crash mid-write) and is skipped.
fn parse(bytes: &[u8], now: u64) -> Result<HashMap<IpAddr, u64>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let complete = match text.rfind('\n') {
        Some(i) => &text[..i],
        None => "",
    };
    let mut running = HashMap::new();
    for (n, line) in complete.lines().enumerate() {
        let parsed = line
            .split_once(' ')
            .and_then(|(ip, until)| Some((ip.parse::<IpAddr>().ok()?, until.parse::<u64>().ok()?)));
        let Some((ip, until)) = parsed else {
            return Err(format!("line {} is not `<address> <unix seconds>`", n + 1));
        };
        if until > now {
            let e = running.entry(ip).or_insert(until);
            *e = (*e).max(until);
        }
    }
    keep_latest(&mut running, MAX_BANS);
    Ok(running)
}

/// Keeps at most `cap` bans, the ones that end last.
fn keep_latest(running: &mut HashMap<IpAddr, u64>, cap: usize) {
    if running.len() > cap {
        let mut ends: Vec<u64> = running.values().copied().collect();
        ends.sort_unstable_by(|a, b| b.cmp(a));
        let cut = ends[cap - 1];
        running.retain(|_, until| *until >= cut);
        // Ties at the cut can leave a few more; drop them in any order.
        let extra = running.len().saturating_sub(cap);
        let gone: Vec<IpAddr> = running
            .iter()
            .filter(|(_, u)| **u == cut)
            .map(|(ip, _)| *ip)
            .take(extra)
            .collect();
        for ip in gone {
            running.remove(&ip);
        }
    }
}

/// Replaces the log at `path` with exactly `running` (temporary file, then rename).
fn rewrite(path: &Path, running: &HashMap<IpAddr, u64>) -> Result<(), StoreError> {
    // The process id keeps two harps started on one directory from sharing a temporary file.
    let tmp = path.with_file_name(format!("{BAN_LOG}.tmp-{}", std::process::id()));
    let mut text = String::with_capacity(running.len() * 32);
    for (ip, until) in running {
        text.push_str(&format!("{ip} {until}\n"));
    }
    fs::write(&tmp, text).map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

/// The one thread that appends bans to the log.
struct Writer {
    path: PathBuf,
    file: File,
    running: HashMap<IpAddr, u64>,
    /// Lines appended since the last rewrite.
    lines: usize,
    dropped: Arc<AtomicU64>,
}

impl Writer {
    fn run(mut self, rx: Receiver<(IpAddr, u64)>) {
        loop {
            match rx.recv_timeout(TICK) {
                Ok((ip, until)) => self.append(ip, until),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let dropped = self.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                tracing::warn!(
                    dropped,
                    "bans not persisted: the ban store's queue was full (they hold in memory)"
                );
            }
        }
    }

    fn append(&mut self, ip: IpAddr, until: u64) {
        let now = unix_now();
        if !self.running.contains_key(&ip) && self.running.len() >= MAX_BANS {
            self.running.retain(|_, u| *u > now);
            keep_latest(&mut self.running, MAX_BANS - 1);
        }
        self.running.insert(ip, until);
        // One write per line: it reaches the page cache (see the module doc) at once.
        if let Err(e) = self.file.write_all(format!("{ip} {until}\n").as_bytes()) {
            tracing::warn!(file = %self.path.display(), "cannot persist a ban: {e}");
            return;
        }
        self.lines += 1;
        if self.lines > 2 * self.running.len() + COMPACT_SLACK {
            self.compact(now);
        }
    }

    fn compact(&mut self, now: u64) {
        self.running.retain(|_, u| *u > now);
        let reopened = rewrite(&self.path, &self.running).and_then(|()| {
            OpenOptions::new()
                .append(true)
                .open(&self.path)
                .map_err(io(&self.path))
        });
        match reopened {
            Ok(f) => {
                self.file = f;
                self.lines = 0;
            }
            Err(e) => tracing::warn!("cannot compact the ban log: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_keeps_running_bans_skips_a_torn_last_line_and_rejects_garbage() {
        let got = parse(
            b"192.0.2.1 200\n192.0.2.2 50\n2001:db8::1 300\n192.0.2.3 9",
            100,
        )
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[&"192.0.2.1".parse::<IpAddr>().unwrap()], 200);
        assert!(parse(b"192.0.2.1 200\nnot a ban\n", 100).is_err());
        assert!(parse(b"\xff\xfe\n", 100).is_err());
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let (tx, rx) = sync_channel(1);
        let dropped = Arc::new(AtomicU64::new(0));
        let report = sink(tx, dropped.clone());
        for i in 0..3u8 {
            report(IpAddr::from([192, 0, 2, i]), Duration::from_secs(60));
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 2);
        assert_eq!(rx.try_recv().unwrap().0, IpAddr::from([192, 0, 2, 0]));
    }

    #[test]
    fn keep_latest_bounds_the_running_bans() {
        let mut m: HashMap<IpAddr, u64> = (0..10u8)
            .map(|i| (IpAddr::from([192, 0, 2, i]), u64::from(i)))
            .collect();
        keep_latest(&mut m, 3);
        assert_eq!(m.len(), 3);
        assert!(m.values().all(|u| *u >= 7));
    }

    #[test]
    fn compaction_keeps_the_log_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let bans = BanList::new(Duration::from_secs(300), 1);
        let _sink = open(dir.path(), &bans).unwrap();
        let path = dir.path().join(BAN_LOG);
        let file = OpenOptions::new().append(true).open(&path).unwrap();
        let mut w = Writer {
            path: path.clone(),
            file,
            running: HashMap::new(),
            lines: 0,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        // The same address banned over and over: one running ban, many lines.
        for _ in 0..(COMPACT_SLACK * 3) {
            w.append("192.0.2.1".parse().unwrap(), unix_now() + 100);
        }
        let lines = fs::read_to_string(&path).unwrap().lines().count();
        assert!(
            lines <= COMPACT_SLACK + 3,
            "log not compacted: {lines} lines"
        );
    }
}
