//! Child processes of a run (killed on drop) and their CPU time and memory from /proc.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Proc {
    pub child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Spawns `cmd`; when `ready_line` is set, waits for a stdout line starting with it and
    /// returns the rest of that line.
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        ready_line: Option<&str>,
    ) -> anyhow::Result<(Proc, String)> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {name}: {e}"))?;
        let mut rest = String::new();
        if let Some(prefix) = ready_line {
            let stdout = child.stdout.take().expect("piped");
            let mut lines = BufReader::new(stdout).lines();
            loop {
                match lines.next() {
                    Some(Ok(line)) if line.starts_with(prefix) => {
                        rest = line[prefix.len()..].trim().to_string();
                        break;
                    }
                    Some(Ok(_)) => continue,
                    _ => anyhow::bail!("{name} exited before it was ready"),
                }
            }
            // Keep draining so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
        }
        Ok((Proc { child }, rest))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Total CPU seconds (user + system) of several processes, e.g. harp and `harp tunnel`.
pub fn cpu_seconds_of(pids: &[u32]) -> f64 {
    pids.iter().map(|p| cpu_seconds(*p)).sum()
}

/// Total CPU seconds (user + system) of `pid` and its threads.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_comm = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields after ")" start at index 0 = state; utime is field 14 overall → index 11 here.
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().ok();
    out.and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A `/proc/<pid>/status` field in KiB (VmRSS, VmHWM).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for_port(port: u16, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            anyhow::bail!("nothing listens on {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
