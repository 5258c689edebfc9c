//! The tamper-evident audit log of control operations, in `HP_DATA_DIR/audit/`.
//!
//! Owns the audit files, the one writer thread that appends to them, and the readers behind
//! `harp audit verify` and `harp audit tail`. Must not decide anything about the operations it
//! records: callers hand it finished facts (operation, caller address, subject, outcome).
//!
//! Format: one JSON object per line, fields in this order: `seq` (1, 2, …), `time` (unix
//! milliseconds), `op`, `caller`, `subject`, `outcome`, `prev` = hex SHA3-256 of the previous
//! record's exact line bytes (without the newline; 64 zeros before the first record). Editing,
//! deleting or reordering a record makes the next record's `prev` (or `seq`) disagree. The last
//! record has no successor, which is why the chain head (seq + hash) is logged at info every
//! [`HEAD_EVERY`] and when the writer stops, so it can be anchored elsewhere.
//!
//! Never recorded: the shared key, cookies, `Authorization` values; subjects are app ids,
//! container names and engine ports only.
//!
//! Bounds: callers `try_send` into a queue of [`QUEUE`] records and never wait; a full queue
//! drops the record and counts it, and the writer then writes an `audit_dropped` record saying
//! how many were lost. Files rotate by size (`HP_AUDIT_ROTATE_BYTES`): `audit.log` becomes
//! `audit.log.1` (… up to `audit.log.`[`KEEP`], the oldest is deleted), and the new file's first
//! record chains to the last of the previous one, so verification runs across files. Each record
//! is one `write(2)`, so a `kill -9` loses only records still queued (see `store` for why the
//! page cache survives a process kill).

use serde::{Deserialize, Serialize};
use sha3::{Digest, Sha3_256};
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Folder of the audit files inside `HP_DATA_DIR`.
pub const AUDIT_DIR: &str = "audit";
/// The file being written; rotated ones add `.1` … `.KEEP`.
pub const AUDIT_FILE: &str = "audit.log";
/// Rotated files kept besides the current one.
pub(crate) const KEEP: usize = 5;
/// Records waiting for the writer; past this they are dropped and counted.
const QUEUE: usize = 8192;
/// How often the chain head is logged.
const HEAD_EVERY: Duration = Duration::from_secs(60);
/// How often the writer wakes without records (to report drops and the head).
const TICK: Duration = Duration::from_secs(1);
/// `prev` of the very first record.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// A line longer than this is not a record harp wrote (subjects are short): reading stops there.
const MAX_LINE: usize = 64 * 1024;

#[derive(Serialize, Deserialize, Debug, Clone)]
struct Record {
    seq: u64,
    time: u64,
    op: String,
    caller: Option<String>,
    subject: String,
    outcome: String,
    prev: String,
}

/// What the writer thread receives: a record, or the order to finish (see [`Audit::stop`]).
enum Msg {
    Record(Event),
    Stop,
}

struct Event {
    op: &'static str,
    caller: Option<IpAddr>,
    subject: String,
    outcome: String,
}

/// Where operations are recorded; cheap to clone. Off when the data directory is unusable.
#[derive(Clone, Default)]
pub(crate) struct Audit {
    tx: Option<SyncSender<Msg>>,
    dropped: Arc<AtomicU64>,
    /// Disconnects when the writer thread has returned; taken by the first `stop`.
    finished: Arc<Mutex<Option<Receiver<()>>>>,
}

impl Audit {
    /// Records one operation without waiting (a full queue drops and counts it).
    pub(crate) fn record(
        &self,
        op: &'static str,
        caller: Option<IpAddr>,
        subject: impl Into<String>,
        outcome: impl Into<String>,
    ) {
        let Some(tx) = &self.tx else { return };
        let event = Event {
            op,
            caller,
            subject: subject.into(),
            outcome: outcome.into(),
        };
        if tx.try_send(Msg::Record(event)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes what is queued, logs the chain head and ends the writer, waiting at most `wait`;
    /// true when the writer finished in time. Called once harp has drained its requests: the
    /// writer is a detached thread and the process would otherwise exit under it, losing the
    /// head line (and queued records). Other clones may still record; those are dropped.
    pub(crate) fn stop(&self, wait: Duration) -> bool {
        let Some(tx) = &self.tx else { return true };
        let Some(finished) = self.finished.lock().ok().and_then(|mut f| f.take()) else {
            return true;
        };
        let end = Instant::now() + wait;
        // The queue may be full: retry until the writer makes room or the deadline passes.
        let mut msg = Msg::Stop;
        loop {
            match tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return true,
                Err(TrySendError::Full(back)) if Instant::now() < end => {
                    msg = back;
                    std::thread::yield_now();
                }
                Err(TrySendError::Full(_)) => return false,
            }
        }
        let left = end.saturating_duration_since(Instant::now());
        matches!(
            finished.recv_timeout(left),
            Err(RecvTimeoutError::Disconnected) | Ok(())
        )
    }
}

/// Why the audit log could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuditError {
    #[error("cannot use {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_owned(),
        source,
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Hex SHA3-256 of one record's line bytes.
fn hash(line: &[u8]) -> String {
    hex::encode(Sha3_256::digest(line))
}

/// Opens the audit log in `data_dir/audit`, continuing its chain; off (one warning) when the
/// directory cannot be used.
pub(crate) fn open(data_dir: &Path, rotate_bytes: u64) -> Audit {
    match start(data_dir, rotate_bytes) {
        Ok(audit) => audit,
        Err(e) => {
            tracing::warn!("the audit log is off: {e}");
            Audit::default()
        }
    }
}

fn start(data_dir: &Path, rotate_bytes: u64) -> Result<Audit, AuditError> {
    if data_dir.as_os_str().is_empty() {
        return Ok(Audit::default());
    }
    let dir = data_dir.join(AUDIT_DIR);
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let current = dir.join(AUDIT_FILE);
    let (seq, prev) = head_of(&dir);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&current)
        .map_err(io(&current))?;
    let size = file.metadata().map_err(io(&current))?.len();
    let (tx, rx) = sync_channel(QUEUE);
    let (finished_tx, finished_rx) = sync_channel::<()>(0);
    let dropped = Arc::new(AtomicU64::new(0));
    let writer = Writer {
        dir,
        file,
        size,
        rotate_bytes,
        seq,
        prev,
        dropped: dropped.clone(),
    };
    std::thread::Builder::new()
        .name("harp-audit".into())
        .spawn(move || {
            writer.run(rx);
            // Dropping it disconnects `stop`'s wait.
            drop(finished_tx);
        })
        .map_err(io(&current))?;
    Ok(Audit {
        tx: Some(tx),
        dropped,
        finished: Arc::new(Mutex::new(Some(finished_rx))),
    })
}

/// The files of a chain, oldest first.
fn chain_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..=KEEP)
        .rev()
        .map(|k| dir.join(format!("{AUDIT_FILE}.{k}")))
        .filter(|p| p.exists())
        .collect();
    let current = dir.join(AUDIT_FILE);
    if current.exists() {
        files.push(current);
    }
    files
}

/// The last record's seq and hash, from the newest file that has one; a chain that cannot be
/// read is set aside (warning naming the file) and a new one starts.
fn head_of(dir: &Path) -> (u64, String) {
    for path in chain_files(dir).iter().rev() {
        let Ok(bytes) = fs::read(path) else { continue };
        if bytes.is_empty() {
            continue;
        }
        let last = bytes
            .strip_suffix(b"\n")
            .and_then(|b| b.rsplit(|c| *c == b'\n').next());
        if let Some(rec) = last.and_then(|l| serde_json::from_slice::<Record>(l).ok()) {
            return (rec.seq, hash(last.unwrap_or_default()));
        }
        let aside = path.with_file_name(format!(
            "{}.corrupt-{}",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(AUDIT_FILE),
            unix_ms() / 1000
        ));
        let _ = fs::rename(path, &aside);
        tracing::warn!(
            file = %path.display(),
            "the audit log's last record is unreadable; moved to {} and a new chain starts",
            aside.display()
        );
        return (0, GENESIS.into());
    }
    (0, GENESIS.into())
}

/// The one thread that writes the audit files.
struct Writer {
    dir: PathBuf,
    file: File,
    size: u64,
    rotate_bytes: u64,
    seq: u64,
    prev: String,
    dropped: Arc<AtomicU64>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut head_logged = Instant::now();
        loop {
            let next = rx.recv_timeout(TICK);
            let dropped = self.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                self.write(Event {
                    op: "audit_dropped",
                    caller: None,
                    subject: String::new(),
                    outcome: format!("{dropped} records dropped: the audit queue was full"),
                });
            }
            match next {
                Ok(Msg::Record(event)) => self.write(event),
                Err(RecvTimeoutError::Timeout) => {}
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    self.log_head();
                    return;
                }
            }
            if head_logged.elapsed() >= HEAD_EVERY {
                self.log_head();
                head_logged = Instant::now();
            }
        }
    }

    fn log_head(&self) {
        tracing::info!(seq = self.seq, hash = %self.prev, "audit chain head");
    }

    fn write(&mut self, e: Event) {
        let rec = Record {
            seq: self.seq + 1,
            time: unix_ms(),
            op: e.op.into(),
            caller: e.caller.map(|ip| ip.to_string()),
            subject: e.subject,
            outcome: e.outcome,
            prev: self.prev.clone(),
        };
        let Ok(mut line) = serde_json::to_vec(&rec) else {
            return;
        };
        let digest = hash(&line);
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.rotate_bytes {
            if let Err(e) = self.rotate() {
                tracing::warn!("cannot rotate the audit log: {e}");
            }
        }
        // One write per record (see the module doc).
        if let Err(e) = self.file.write_all(&line) {
            tracing::warn!(dir = %self.dir.display(), "cannot write an audit record: {e}");
            return;
        }
        self.size += line.len() as u64;
        self.seq = rec.seq;
        self.prev = digest;
    }

    fn rotate(&mut self) -> Result<(), AuditError> {
        let name = |k: usize| self.dir.join(format!("{AUDIT_FILE}.{k}"));
        let oldest = name(KEEP);
        if oldest.exists() {
            fs::remove_file(&oldest).map_err(io(&oldest))?;
        }
        for k in (1..KEEP).rev() {
            let from = name(k);
            if from.exists() {
                fs::rename(&from, name(k + 1)).map_err(io(&from))?;
            }
        }
        let current = self.dir.join(AUDIT_FILE);
        fs::rename(&current, name(1)).map_err(io(&current))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&current)
            .map_err(io(&current))?;
        self.size = 0;
        Ok(())
    }
}

/// The first place the chain breaks.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{file}: cannot read: {why}")]
    Unreadable { file: PathBuf, why: String },
    #[error("no audit files in {0}")]
    Empty(PathBuf),
    #[error("{file} line {line} (seq {seq}): {why}")]
    Broken {
        file: PathBuf,
        line: usize,
        seq: String,
        why: String,
    },
}

/// What a passing verification saw.
#[derive(Debug)]
pub struct Verified {
    pub records: u64,
    pub first_seq: u64,
    pub head_seq: u64,
    pub head_hash: String,
}

/// The files `target` names: a directory means its whole chain (rotated files, oldest first).
fn files_of(target: &Path) -> Vec<PathBuf> {
    if target.is_dir() {
        chain_files(target)
    } else {
        vec![target.to_owned()]
    }
}

/// Checks the chain in `target` (a file, or the audit directory for all its files). The oldest
/// record present is trusted as the anchor (older files may have been rotated away).
pub fn verify(target: &Path) -> Result<Verified, VerifyError> {
    let files = files_of(target);
    if files.is_empty() {
        return Err(VerifyError::Empty(target.to_owned()));
    }
    let mut state: Option<(u64, String)> = None;
    let mut out = Verified {
        records: 0,
        first_seq: 0,
        head_seq: 0,
        head_hash: String::new(),
    };
    for file in files {
        let bytes = fs::read(&file).map_err(|e| VerifyError::Unreadable {
            file: file.clone(),
            why: e.to_string(),
        })?;
        let body = match bytes.strip_suffix(b"\n") {
            Some(b) => b,
            None if bytes.is_empty() => continue,
            None => {
                let line = bytes.split(|c| *c == b'\n').count();
                return Err(VerifyError::Broken {
                    file,
                    line,
                    seq: "?".into(),
                    why: "the last record is not terminated (cut or edited)".into(),
                });
            }
        };
        for (i, line) in body.split(|c| *c == b'\n').enumerate() {
            let broken = |seq: String, why: String| VerifyError::Broken {
                file: file.clone(),
                line: i + 1,
                seq,
                why,
            };
            if line.len() > MAX_LINE {
                return Err(broken("?".into(), "line too long".into()));
            }
            let rec: Record = serde_json::from_slice(line)
                .map_err(|e| broken("?".into(), format!("not a record: {e}")))?;
            // Re-encoding must give the same bytes: a record is only valid in harp's own form.
            if serde_json::to_vec(&rec).ok().as_deref() != Some(line) {
                return Err(broken(rec.seq.to_string(), "not in canonical form".into()));
            }
            if let Some((seq, prev)) = &state {
                if rec.seq != seq + 1 {
                    return Err(broken(
                        rec.seq.to_string(),
                        format!("expected seq {} (a record was removed or moved)", seq + 1),
                    ));
                }
                if &rec.prev != prev {
                    return Err(broken(
                        rec.seq.to_string(),
                        "prev does not match the previous record (it was changed or moved)".into(),
                    ));
                }
            } else {
                out.first_seq = rec.seq;
            }
            state = Some((rec.seq, hash(line)));
            out.records += 1;
        }
    }
    let (seq, hash) = state.ok_or_else(|| VerifyError::Empty(target.to_owned()))?;
    out.head_seq = seq;
    out.head_hash = hash;
    Ok(out)
}

/// The last `n` records of `target` (a file or the audit directory), one readable line each.
pub fn tail(target: &Path, n: usize) -> Result<Vec<String>, VerifyError> {
    let mut last: VecDeque<String> = VecDeque::with_capacity(n.min(10_000));
    for file in files_of(target) {
        let text = fs::read_to_string(&file).map_err(|e| VerifyError::Unreadable {
            file: file.clone(),
            why: e.to_string(),
        })?;
        for line in text.lines() {
            let shown = match serde_json::from_str::<Record>(line) {
                Ok(r) => {
                    let t = time::OffsetDateTime::from_unix_timestamp_nanos(
                        i128::from(r.time) * 1_000_000,
                    )
                    .ok()
                    .and_then(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .unwrap_or_else(|| r.time.to_string());
                    format!(
                        "#{} {t} {} caller={} {} -> {}",
                        r.seq,
                        r.op,
                        r.caller.as_deref().unwrap_or("-"),
                        if r.subject.is_empty() {
                            "-"
                        } else {
                            &r.subject
                        },
                        r.outcome
                    )
                }
                Err(_) => format!("(unreadable) {line}"),
            };
            if n == 0 {
                continue;
            }
            if last.len() == n {
                last.pop_front();
            }
            last.push_back(shown);
        }
    }
    Ok(last.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_records(dir: &Path, n: u64) -> Verified {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(v) = verify(&dir.join(AUDIT_DIR)) {
                if v.records >= n {
                    return v;
                }
            }
            assert!(Instant::now() < end, "records not written");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_full_queue_drops_counts_and_writes_how_many() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(AUDIT_DIR);
        fs::create_dir_all(&dir).unwrap();
        let (tx, rx) = sync_channel(1);
        let audit = Audit {
            tx: Some(tx),
            dropped: Arc::new(AtomicU64::new(0)),
            finished: Default::default(),
        };
        // No writer yet: the first record fills the queue, the next two are dropped at once.
        for _ in 0..3 {
            audit.record("frp_login", None, "", "refused: wrong token");
        }
        assert_eq!(audit.dropped.load(Ordering::Relaxed), 2);
        let current = dir.join(AUDIT_FILE);
        let writer = Writer {
            file: OpenOptions::new()
                .create(true)
                .append(true)
                .open(&current)
                .unwrap(),
            dir: dir.clone(),
            size: 0,
            rotate_bytes: 1 << 20,
            seq: 0,
            prev: GENESIS.into(),
            dropped: audit.dropped.clone(),
        };
        drop(audit);
        writer.run(rx);
        let text = fs::read_to_string(&current).unwrap();
        assert!(
            text.contains("\"op\":\"audit_dropped\"") && text.contains("2 records dropped"),
            "{text}"
        );
        assert_eq!(verify(&dir).unwrap().records, 2);
    }

    #[test]
    fn chain_continues_across_rotation_and_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let audit = open(tmp.path(), 2000);
        for i in 0..20 {
            audit.record(
                "frp_login",
                Some([192, 0, 2, 1].into()),
                format!("app{i}"),
                "accepted",
            );
        }
        let v = wait_records(tmp.path(), 20);
        assert_eq!((v.first_seq, v.head_seq), (1, 20));
        assert!(tmp
            .path()
            .join(AUDIT_DIR)
            .join(format!("{AUDIT_FILE}.1"))
            .exists());
        drop(audit);
        // A new writer continues the chain from the last record.
        let again = open(tmp.path(), 2000);
        again.record("ban", Some([192, 0, 2, 1].into()), "", "banned");
        let v = wait_records(tmp.path(), 21);
        assert_eq!(v.head_seq, 21);
    }

    /// `stop` returns only once every queued record is on disk and the writer is gone, even
    /// while other clones still hold the queue open (they do in a running harp).
    #[test]
    fn stop_writes_what_is_queued_and_ends_the_writer() {
        let tmp = tempfile::tempdir().unwrap();
        let audit = open(tmp.path(), 1 << 20);
        let other = audit.clone();
        for i in 0..100 {
            audit.record("ban", None, format!("s{i}"), "banned");
        }
        assert!(audit.stop(Duration::from_secs(10)), "writer ended in time");
        let v = verify(&tmp.path().join(AUDIT_DIR)).unwrap();
        assert_eq!(v.records, 100);
        // After the stop nothing is written and nothing waits.
        other.record("ban", None, "late", "banned");
        assert!(other.stop(Duration::from_secs(10)));
        assert_eq!(verify(&tmp.path().join(AUDIT_DIR)).unwrap().records, 100);
    }
}
