//! `harp-bench instructions`: user-space instructions harp spends per request, counted by
//! callgrind. Repeatable to about ±1 % whatever else the machine does, so a small change to the
//! hot path can be judged without the ±10 % noise of req/s on a shared host (issue #14). Kernel
//! work is not counted (`strace -c` and `perf` show it).
//!
//! harp runs under callgrind twice, for 2,000 and for 12,000 keep-alive requests from h2load
//! (8 connections) to the bench's echo ExApp; the difference / 10,000 is printed, so start-up
//! work cancels out.

use crate::procs::{free_port, wait_for_port, Proc};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const FEW: u64 = 2_000;
const MANY: u64 = 12_000;
/// harp under callgrind starts some 50 times slower than natively.
const START_WITHIN: Duration = Duration::from_secs(60);

pub struct Options<'a> {
    pub harp: &'a Path,
    pub route: &'a str,
    pub header: &'a str,
    /// Extra harp settings, `NAME=value`.
    pub env: &'a [String],
}

pub fn run(opts: &Options) -> anyhow::Result<u64> {
    for tool in ["valgrind", "h2load"] {
        if Command::new(tool).arg("--version").output().is_err() {
            anyhow::bail!("{tool} is missing (Debian: valgrind, nghttp2-client)");
        }
    }
    let tmp = std::env::temp_dir().join(format!("harp-instructions-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let (_echo, echo_addr) = Proc::spawn(
        "echo exapp",
        crate::run::self_cmd(&["echo", "--addr", "127.0.0.1:0"]),
        Some("ready"),
    )?;
    let echo_port = echo_addr.rsplit(':').next().unwrap_or("0");
    let (_nc, nc_addr) = Proc::spawn(
        "stub nextcloud",
        crate::run::self_cmd(&[
            "nextcloud",
            "--addr",
            "127.0.0.1:0",
            "--app-port",
            echo_port,
        ]),
        Some("ready"),
    )?;
    let total = |n: u64| -> anyhow::Result<u64> {
        let port = free_port();
        let out = tmp.join(format!("callgrind.{n}"));
        let mut cmd = Command::new("valgrind");
        cmd.args(["-q", "--tool=callgrind", "--cache-sim=no"])
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(opts.harp)
            .env_clear()
            .env("HP_SHARED_KEY", "bench")
            .env("NC_INSTANCE_URL", format!("http://{nc_addr}"))
            .env("HP_EXAPPS_ADDRESS", format!("127.0.0.1:{port}"))
            .env("HP_FRP_ADDRESS", format!("127.0.0.1:{}", free_port()))
            .env("HP_CERTS_DIR", tmp.join("certs"))
            .env("HP_CONFIG_DIR", tmp.join("run"))
            .env("HP_DATA_DIR", tmp.join("data"))
            .env("HP_DOCKER_SOCKET", tmp.join("no-docker.sock"))
            .env("HP_LOG_LEVEL", "error")
            .env("HP_VERBOSE_START", "0")
            .env("HP_SESSION_LIFETIME", "10")
            // Set beforehand so harp does not re-execute itself for it (src/memcopy.rs): valgrind
            // does not follow an exec, and would count nothing.
            .env("GLIBC_TUNABLES", crate::memcpy::HARP_TUNABLES);
        for kv in opts.env {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--env wants NAME=value, got {kv:?}"))?;
            cmd.env(k, v);
        }
        let (mut harp, _) = Proc::spawn("harp under callgrind", cmd, None)?;
        wait_for_port(port, START_WITHIN)?;
        let url = format!("http://127.0.0.1:{port}{}", opts.route);
        let load = Command::new("h2load")
            .args([
                "--h1",
                "-c",
                "8",
                "-n",
                &n.to_string(),
                "-H",
                opts.header,
                &url,
            ])
            .output()?;
        let summary = String::from_utf8_lossy(&load.stdout);
        let expected = format!("status codes: {n} 2xx");
        if !summary.contains(&expected) {
            anyhow::bail!("not every request was answered 2xx:\n{summary}");
        }
        // callgrind writes its counts only when harp exits on its own (not on SIGKILL).
        Command::new("kill")
            .args(["-INT", &harp.pid().to_string()])
            .status()?;
        harp.child.wait()?;
        let text = std::fs::read_to_string(&out)?;
        text.lines()
            .find_map(|l| l.strip_prefix("summary: "))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no summary in {}", out.display()))
    };
    let few = total(FEW)?;
    let many = total(MANY)?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(many.saturating_sub(few) / (MANY - FEW))
}
