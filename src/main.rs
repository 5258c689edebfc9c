//! The `harp` command: configuration from the environment, logging, signals.

#![forbid(unsafe_code)]

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use harp::config::{Config, VARIABLES};
use harp::logging::Lines;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "harp", version, about = "Drop-in Rust replacement for Nextcloud's HaRP (AppAPI reverse proxy)", after_help = variables_help())]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Run,
    /// Validate the configuration and print it with secrets masked.
    Check {
        /// Also ask the Kubernetes API server's /readyz (HP_K8S_*); fails if it is not ready.
        #[arg(long = "reach-k8s")]
        reach_k8s: bool,
    },
    /// Exit 0 when the running harp answers a heartbeat through its front door within 5 s.
    Healthcheck,
    /// Print the FRP certificates' subjects, SHA-256 fingerprints and expiry.
    Certs,
    /// Run an FRP client (frpc subset) from a TOML file, reconnecting forever.
    Tunnel {
        /// frpc-style TOML configuration.
        #[arg(short = 'c', long = "config", required_unless_present = "from_env")]
        config: Option<std::path::PathBuf>,
        /// Build the configuration from an ExApp container's environment as HaRP's ExApp
        /// start.sh does (HP_SHARED_KEY, HP_FRP_ADDRESS, HP_FRP_PORT, APP_ID, APP_PORT;
        /// TLS when /certs/frp exists; the app on /tmp/exapp.sock unless HP_TUNNEL_LOCAL).
        #[arg(long = "from-env", conflicts_with = "config")]
        from_env: bool,
    },
    /// Read the audit log (default: the `audit` folder in HP_DATA_DIR).
    Audit {
        #[command(subcommand)]
        action: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain (across rotated files when given the folder); names the first
    /// broken record and exits 1.
    Verify {
        /// An audit file, or the audit folder for all its files.
        file: Option<std::path::PathBuf>,
    },
    /// Print the last records readably.
    Tail {
        /// How many records.
        #[arg(short = 'n', default_value_t = 20)]
        n: usize,
        /// An audit file, or the audit folder for all its files.
        file: Option<std::path::PathBuf>,
    },
}

/// `harp audit …`: needs no shared key, only the files.
fn audit(action: &AuditCommand) -> ExitCode {
    match action {
        AuditCommand::Verify { file } => {
            let target = file
                .clone()
                .unwrap_or_else(harp::config::audit_dir_from_env);
            match harp::audit::verify(&target) {
                Ok(v) => {
                    println!(
                        "ok: {} records, seq {} to {}; head {}",
                        v.records, v.first_seq, v.head_seq, v.head_hash
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("broken: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        AuditCommand::Tail { n, file } => {
            let target = file
                .clone()
                .unwrap_or_else(harp::config::audit_dir_from_env);
            match harp::audit::tail(&target, *n) {
                Ok(lines) => {
                    for l in lines {
                        println!("{l}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("harp: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Under this file name the binary is the image's health probe: HaRP's users call
/// `/healthcheck.sh` from compose files, and a scratch image has no shell to run a script, so
/// the image ships the binary (a link to it) under that name.
const HEALTHCHECK_NAME: &str = "healthcheck.sh";

/// A multi-call binary: the command line when invoked as `healthcheck.sh`, else clap's.
fn command_line() -> Cli {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let invoked_as = std::path::Path::new(&argv0).file_name();
    if invoked_as.is_some_and(|n| n == HEALTHCHECK_NAME) {
        return Cli {
            command: Some(Command::Healthcheck),
        };
    }
    Cli::parse()
}

fn variables_help() -> String {
    let mut s = String::from("Configuration (environment variables):\n");
    for v in VARIABLES {
        s.push_str(&format!(
            "  {:<26} default {:<22} {}\n",
            v.name, v.default, v.meaning
        ));
    }
    s
}

/// mimalloc instead of glibc's malloc: 10 % fewer user-space instructions per USER request
/// (`bench/instructions`, issue #14), and per-thread heaps, so the two workers share no
/// allocator lock. Built without transparent huge pages (`no_thp`): with them idle RSS went
/// from 10 to 23 MB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = command_line();
    // The long-running modes move bulk data; the short commands are not worth an exec.
    if matches!(
        cli.command,
        None | Some(Command::Run | Command::Tunnel { .. })
    ) {
        harp::memcopy::use_vector_copies();
    }
    if let Some(Command::Audit { action }) = &cli.command {
        return audit(action);
    }
    if let Some(Command::Tunnel { config, from_env }) = &cli.command {
        return tunnel(config.as_deref(), *from_env);
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("harp: invalid configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Some(Command::Check { reach_k8s }) => {
            for line in config.describe() {
                println!("{line}");
            }
            for w in &config.warnings {
                println!("warning: {w}");
            }
            if reach_k8s {
                return reach_kubernetes(&config);
            }
            ExitCode::SUCCESS
        }
        Some(Command::Healthcheck) => match healthcheck(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("harp: unhealthy: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Certs) => certs(&config),
        Some(Command::Tunnel { config, from_env }) => tunnel(config.as_deref(), from_env),
        Some(Command::Audit { action }) => audit(&action),
        None | Some(Command::Run) => match serve(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("harp: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Contract §6.5: a heartbeat through the whole front-door pipeline (a wedged harp that still
/// accepts fails it), then the FRP listener and, when a certificate is configured, the HTTPS
/// listener accept TCP.
fn healthcheck(config: &Config) -> Result<(), String> {
    use harp::health::{accepts_tcp, probe, PROBE_TIMEOUT};
    let http = &config.exapps_addr;
    probe(
        http.local_dial_host(),
        http.port,
        &config.shared_key,
        PROBE_TIMEOUT,
    )?;
    let frp = &config.frp_addr;
    accepts_tcp(frp.local_dial_host(), frp.port, PROBE_TIMEOUT)?;
    if config.certs_dir.join("cert.pem").exists() {
        let https = &config.exapps_https_addr;
        accepts_tcp(https.local_dial_host(), https.port, PROBE_TIMEOUT)?;
    }
    Ok(())
}

fn reach_kubernetes(config: &Config) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("harp: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(config.reach_kubernetes()) {
        Ok(()) => {
            println!("kubernetes: API server ready");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("harp: {e}");
            ExitCode::FAILURE
        }
    }
}

fn certs(config: &Config) -> ExitCode {
    let dir = harp::certs::frp_dir(&config.certs_dir);
    match harp::certs::describe(&dir) {
        Ok(infos) => {
            for i in infos {
                let warn = if i.days_left < harp::certs::EXPIRY_WARNING_DAYS {
                    "  WARNING: expires soon"
                } else {
                    ""
                };
                println!(
                    "{}: subject {}; SHA256 {}; expires {} ({} days){warn}",
                    i.file, i.subject, i.sha256, i.not_after, i.days_left
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("harp: {e}");
            ExitCode::FAILURE
        }
    }
}

fn tunnel(path: Option<&std::path::Path>, from_env: bool) -> ExitCode {
    use harp::tunnel::client::{ClientConfig, EXAPP_FRP_CERTS_DIR};
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_target(false)
        .init();
    let loaded = match path {
        Some(path) if !from_env => ClientConfig::load(path).map_err(|e| e.to_string()),
        _ => {
            // Contract §5.2: TLS exactly when AppAPI installed the FRP certificates.
            let certs = std::path::Path::new(EXAPP_FRP_CERTS_DIR);
            ClientConfig::from_env(|k| std::env::var(k).ok(), certs.is_dir().then_some(certs))
                .map_err(|e| format!("--from-env: {e}"))
        }
    };
    let cfg = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("harp tunnel: {e}");
            return ExitCode::FAILURE;
        }
    };
    // One thread: the session's reader, writer and every stream copy then wake each other
    // without crossing threads, which cut the client's CPU per tunnelled request from ~26 to
    // ~17 µs (bench rig, 32 connections); one TLS session does not use a second core anyway.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("harp tunnel: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(harp::tunnel::client::run(cfg, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("harp tunnel: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    init_logging(&config);
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    raise_open_file_limit();
    if config.verbose_start {
        tracing::warn!(
            "starting harp {} with: {}",
            env!("CARGO_PKG_VERSION"),
            config.describe().join(" ")
        );
    }
    // Worker 0 and the background tasks share this thread; further workers bring their own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let harp = harp::Harp::bind(config).await?;
        tracing::warn!(http = %harp.http_addr(), https = ?harp.https_addr(), frp = %harp.frp_addr(), "harp is listening");
        if let Some(reloader) = harp.tls_reloader() {
            tokio::spawn(reload_on_sighup(reloader));
        }
        harp.serve(shutdown_signal()).await?;
        Ok(())
    })
}

/// Raises the soft RLIMIT_NOFILE to the hard limit. Every client, upstream, tunnel and Nextcloud
/// connection is a descriptor, and Docker's default soft limit (1024) is reached by ~500
/// proxied connections; the hard limit is what the administrator allowed. Failing only warns:
/// harp still works, with fewer connections.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    // `None` is "unlimited"; Linux never reports that for RLIMIT_NOFILE (capped by nr_open).
    let (Some(soft), Some(hard)) = (limit.current, limit.maximum) else {
        return;
    };
    if soft >= hard {
        return;
    }
    let raised = Rlimit {
        current: Some(hard),
        maximum: Some(hard),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::info!("raised the open-file limit (RLIMIT_NOFILE) from {soft} to {hard}")
        }
        Err(e) => tracing::warn!(
            "cannot raise the open-file limit (RLIMIT_NOFILE) from {soft} to {hard}: {e}"
        ),
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::new(config.log_level.as_filter());
    // Colour codes only for a terminal: container logs and log files stay greppable.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    // The line format (no target) is set on `Lines`' inner format, which replaces the builder's.
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // Same fields either way: JSON only changes how a line is written, for log collectors.
    // `Lines` adds the request context to lines logged while a request is served.
    match config.log_format {
        harp::config::LogFormat::Text => {
            let format = tracing_subscriber::fmt::format()
                .with_target(false)
                .with_ansi(ansi);
            builder
                .with_ansi(ansi)
                .event_format(Lines::text(format))
                .init()
        }
        harp::config::LogFormat::Json => {
            let format = tracing_subscriber::fmt::format().with_target(false).json();
            builder.json().event_format(Lines::json(format)).init()
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut usr1 = signal(SignalKind::user_defined1()).expect("SIGUSR1 handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = usr1.recv() => {}
    }
}

async fn reload_on_sighup(reloader: harp::frontdoor::TlsReloader) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        if let Err(e) = reloader.reload() {
            tracing::error!("SIGHUP: keeping the previous certificate: {e}");
        }
    }
}
