//! harp-bench: one command that measures harp against bare HAProxy and direct access.
//! `harp-bench run` orchestrates; the other subcommands are the processes it starts.

mod clients;
mod h2load;
mod instructions;
mod memcpy;
mod procs;
mod report;
mod run;
mod servers;
mod wrk;

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(about = "Side-by-side benchmark: harp vs bare HAProxy vs direct")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the whole benchmark and write bench/results/.
    Run {
        #[arg(long, default_value = "target/release/harp")]
        harp: PathBuf,
        #[arg(long, default_value_t = 5)]
        secs: u32,
        #[arg(long, default_value_t = 3)]
        reps: u32,
        /// Each idle WebSocket costs harp two descriptors; machines of this kind cap a process
        /// at 20,000, so 9,000 is the most that fits beside harp's own.
        #[arg(long, default_value_t = 9_000)]
        idle_websockets: usize,
        #[arg(long, default_value = "bench/results")]
        out: PathBuf,
        /// Run only these sections (comma-separated: http, h2, burst, bulk, ws, cold-start,
        /// memory); for checking one change, with `--out` elsewhere than bench/results.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Another FRP client in place of `harp tunnel` for the tunnel rows, e.g. Go's frpc
        /// (`FRPC=$(../shared/tools/get-frpc)`); it is started as `<path> -c <frpc.toml>` with
        /// the environment kept; rows keep their `harp tunnel` names. For checking
        /// interoperability speed, not for the README table.
        #[arg(long)]
        tunnel_client: Option<PathBuf>,
    },
    /// Re-render the markdown and chart of a stored run (its .json file).
    Report {
        json: PathBuf,
        #[arg(long, default_value = "bench/results")]
        out: PathBuf,
    },
    /// The echo ExApp (HTTP + WebSocket).
    Echo {
        #[arg(long)]
        addr: String,
    },
    /// The stub Nextcloud.
    Nextcloud {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        app_port: u16,
    },
    /// Hold idle WebSockets open until killed.
    WsIdle {
        #[arg(long)]
        url: String,
        #[arg(long)]
        conns: usize,
    },
    /// User-space instructions harp spends per request, counted by callgrind (±1 %): for
    /// judging a hot-path change without req/s noise. Needs valgrind and h2load.
    Instructions {
        #[arg(long, default_value = "target/release/harp")]
        harp: PathBuf,
        #[arg(long, default_value = "/exapps/bench/user")]
        route: String,
        #[arg(long, default_value = "cookie: oc_sessionPassphrase=bench-session")]
        header: String,
        /// Extra harp setting, NAME=value (repeatable), e.g. HP_METRICS_ADDRESS=127.0.0.1:0.
        #[arg(long)]
        env: Vec<String>,
    },
    /// memcpy speed by destination offset, with glibc's defaults and with the tunable harp
    /// sets on AMD CPUs (src/memcopy.rs).
    Memcpy {
        /// Measure in this process and print raw lines (what the comparison runs twice).
        #[arg(long, hide = true)]
        inner: bool,
    },
    /// WebSocket echo load alone (for profiling one proxy): prints messages/s and p99.
    WsLoad {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 32)]
        conns: usize,
        #[arg(long, default_value_t = 5)]
        secs: u64,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Run {
            harp,
            secs,
            reps,
            idle_websockets,
            out,
            only,
            tunnel_client,
        } => {
            let results = run::run(&run::Options {
                harp,
                secs,
                reps,
                idle_websockets,
                only,
                tunnel_client,
            })?;
            write_report(&results, &out)
        }
        Cmd::Report { json, out } => {
            let results: run::Results = serde_json::from_slice(&std::fs::read(json)?)?;
            write_report(&results, &out)
        }
        Cmd::Echo { addr } => rt()?.block_on(servers::echo(&addr)),
        Cmd::Nextcloud { addr, app_port } => rt()?.block_on(servers::nextcloud(&addr, app_port)),
        Cmd::WsIdle { url, conns } => rt()?.block_on(clients::ws_idle(&url, conns)),
        Cmd::Instructions {
            harp,
            route,
            header,
            env,
        } => {
            let per_request = instructions::run(&instructions::Options {
                harp: &harp,
                route: &route,
                header: &header,
                env: &env,
            })?;
            println!("{per_request} user-space instructions per request ({route})");
            Ok(())
        }
        Cmd::Memcpy { inner: true } => {
            for (size, off, gbs) in memcpy::measure() {
                println!("{size} {off} {gbs:.1}");
            }
            Ok(())
        }
        Cmd::Memcpy { inner: false } => memcpy::compare(memcpy::HARP_TUNABLES),
        Cmd::WsLoad { url, conns, secs } => {
            let r = rt()?.block_on(clients::ws_load(&url, conns, secs))?;
            println!(
                "{:.0} msg/s, p99 {:.0} µs, {} errors",
                r.msgs_per_sec, r.p99_us, r.errors
            );
            Ok(())
        }
    }
}

/// Writes `<day>-<HHMM>.md`, `.json`, `.png` (the run's UTC start, so runs on one day do not
/// overwrite each other) and the `latest.*` copies.
fn write_report(results: &run::Results, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let day = run_name(&results.date);
    let md = report::markdown(results);
    let png = out.join(format!("{day}.png"));
    let md = match report::chart(results, out, &png) {
        Ok(()) => format!("{md}\n![requests per second]({day}.png)\n"),
        Err(e) => {
            eprintln!("chart skipped: {e}");
            md
        }
    };
    std::fs::write(out.join(format!("{day}.md")), &md)?;
    std::fs::write(
        out.join(format!("{day}.json")),
        serde_json::to_string_pretty(results)?,
    )?;
    std::fs::write(out.join("latest.md"), &md)?;
    if png.exists() {
        std::fs::copy(&png, out.join("latest.png"))?;
    }
    println!("{md}");
    Ok(())
}

/// `2026-12-01 14:07 UTC` → `2026-12-01-1407`; "run" when the date is missing.
fn run_name(date: &str) -> String {
    let mut parts = date.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(day), Some(time)) => format!("{day}-{}", time.replace(':', "")),
        (Some(day), None) => day.to_string(),
        _ => "run".to_string(),
    }
}

fn rt() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_on_one_day_get_their_own_file_names() {
        assert_eq!(super::run_name("2026-12-01 14:07 UTC"), "2026-12-01-1407");
        assert_eq!(super::run_name("2026-12-01 09:19 UTC"), "2026-12-01-0919");
        assert_eq!(super::run_name("2026-12-01"), "2026-12-01");
        assert_eq!(super::run_name(""), "run");
    }
}
