//! One benchmark run: start the peers, HAProxy and harp on 127.0.0.1, then measure every
//! target side by side, alternating targets and repeating each.

use crate::clients::WsResult;
use crate::procs::{cpu_seconds, cpu_seconds_of, free_port, status_kib, wait_for_port, Proc};
use crate::wrk;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub struct Options {
    pub harp: PathBuf,
    pub secs: u32,
    pub reps: u32,
    pub idle_websockets: usize,
    /// Sections to run (`http`, `h2`, `burst`, `bulk`, `ws`, `cold-start`, `memory`); empty
    /// means all. Partial runs are for checking one change, not for the README table.
    pub only: Vec<String>,
    /// FRP client run instead of `harp tunnel` (`<path> -c <toml>`, environment kept).
    pub tunnel_client: Option<PathBuf>,
}

/// Size of one bulk upload.
const BULK_MIB: usize = 256;
/// Every section name `--only` accepts; one list so a typo is refused instead of silently
/// running nothing.
const SECTIONS: [&str; 7] = ["http", "h2", "burst", "bulk", "ws", "cold-start", "memory"];

impl Options {
    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct HttpRow {
    pub target: String,
    pub conns: u32,
    pub rep: u32,
    pub wrk: wrk::WrkResult,
    /// CPU µs per request of the proxy in front (harp or HAProxy); None for direct.
    pub proxy_cpu_us: Option<f64>,
}

/// One HTTP/2 measurement (h2c with prior knowledge, h2load).
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct H2Row {
    pub target: String,
    pub conns: u32,
    pub streams: u32,
    pub rep: u32,
    pub h2load: crate::h2load::H2Result,
    pub proxy_cpu_us: Option<f64>,
}

#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct WsRow {
    pub target: String,
    pub conns: usize,
    pub rep: u32,
    pub result: WsResult,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Default)]
pub struct Results {
    pub date: String,
    pub machine: String,
    pub http: Vec<HttpRow>,
    #[serde(default)]
    pub h2: Vec<H2Row>,
    pub ws: Vec<WsRow>,
    pub burst_requests: usize,
    pub burst_cookies: usize,
    pub burst_ok: usize,
    pub burst_user_info_calls: u64,
    pub bulk_direct_mib_s: Vec<f64>,
    pub bulk_tunnel_mib_s: Vec<f64>,
    /// CPU milliseconds per MiB: harp without a tunnel; harp plus `harp tunnel` through it.
    /// Steadier than MiB/s on a shared host, so a change to the bulk path can be judged.
    #[serde(default)]
    pub bulk_direct_cpu_ms_per_mib: Vec<f64>,
    #[serde(default)]
    pub bulk_tunnel_cpu_ms_per_mib: Vec<f64>,
    pub bulk_mib: usize,
    pub rss_idle_kib: u64,
    pub rss_peak_load_kib: u64,
    pub rss_with_idle_ws_kib: u64,
    pub idle_websockets: usize,
    pub haproxy_version: String,
    /// Exec → first answered request, certificates present, one value per start (ms).
    #[serde(default)]
    pub cold_start_ms: Vec<f64>,
}

const KEY: &str = "bench-shared-key";
/// HTTP/2 rows: connections, and concurrent streams on each.
pub(crate) const H2_CONNS: u32 = 32;
pub(crate) const H2_STREAMS: u32 = 10;
/// Cold starts measured; the median is reported.
const COLD_STARTS: usize = 7;

struct Target {
    name: &'static str,
    via: &'static str,
    path: &'static str,
    headers: Vec<String>,
}

fn targets() -> Vec<Target> {
    let signed = vec![
        "ex-app-version: 1.0.0".to_string(),
        "ex-app-id: bench".into(),
        "ex-app-host: 127.0.0.1".into(),
        "ex-app-port: 1".into(),
        "authorization-app-api: YmVuY2g6dG9rZW4=".into(),
        format!("harp-shared-key: {KEY}"),
    ];
    vec![
        Target {
            name: "direct",
            via: "direct",
            path: "/public",
            headers: vec![],
        },
        Target {
            name: "haproxy",
            via: "haproxy",
            path: "/exapps/bench/public",
            headers: vec![],
        },
        Target {
            name: "harp public",
            via: "harp",
            path: "/exapps/bench/public",
            headers: vec![],
        },
        Target {
            name: "harp user (cookie)",
            via: "harp",
            path: "/exapps/bench/user",
            headers: vec!["Cookie: oc_sessionPassphrase=bench-session".into()],
        },
        // The same route on a second harp with HP_METRICS_ADDRESS set: the cost of counting.
        Target {
            name: "harp user (cookie, metrics on)",
            via: "harp-metrics",
            path: "/exapps/bench/user",
            headers: vec!["Cookie: oc_sessionPassphrase=bench-session".into()],
        },
        Target {
            name: "harp user + bruteforce",
            via: "harp",
            path: "/exapps/bench/guarded",
            headers: vec!["Cookie: oc_sessionPassphrase=bench-session".into()],
        },
        Target {
            name: "harp signed",
            via: "harp",
            path: "/exapps/bench/public",
            headers: signed,
        },
        Target {
            name: "harp user via tunnel",
            via: "harp-tunnel",
            path: "/exapps/benchtun/user",
            headers: vec!["Cookie: oc_sessionPassphrase=bench-session".into()],
        },
        Target {
            name: "harp user (basic auth)",
            via: "harp",
            path: "/exapps/bench/user",
            headers: vec!["Authorization: Basic YmVuY2g6cGFzcw==".into()],
        },
    ]
}

pub fn self_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(std::env::current_exe().expect("own path"));
    c.args(args);
    c
}

pub fn run(opts: &Options) -> anyhow::Result<Results> {
    if let Some(bad) = opts.only.iter().find(|s| !SECTIONS.contains(&s.as_str())) {
        anyhow::bail!(
            "--only: unknown section {bad:?}; known: {}",
            SECTIONS.join(", ")
        );
    }
    let tmp = std::env::temp_dir().join(format!("harp-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;

    let (_echo, echo_addr) = Proc::spawn(
        "echo exapp",
        self_cmd(&["echo", "--addr", "127.0.0.1:0"]),
        Some("ready"),
    )?;
    let echo_port: u16 = echo_addr.rsplit(':').next().unwrap_or("0").parse()?;
    let (_nc, nc_addr) = Proc::spawn(
        "stub nextcloud",
        self_cmd(&[
            "nextcloud",
            "--addr",
            "127.0.0.1:0",
            "--app-port",
            &echo_port.to_string(),
        ]),
        Some("ready"),
    )?;

    let haproxy_port = free_port();
    let haproxy_h2_port = free_port();
    let cfg = tmp.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 4000\n  nbthread 2\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  timeout tunnel 1h\nfrontend fe\n  bind 127.0.0.1:{haproxy_port}\n  default_backend be\nfrontend fe_h2\n  bind 127.0.0.1:{haproxy_h2_port} proto h2\n  default_backend be\nbackend be\n  http-reuse always\n  server echo 127.0.0.1:{echo_port}\n"
        ),
    )?;
    let mut hc = Command::new("haproxy");
    hc.args(["-db", "-f"]).arg(&cfg);
    let (haproxy, _) = Proc::spawn("haproxy", hc, None)?;
    wait_for_port(haproxy_port, Duration::from_secs(10))?;

    let harp_port = free_port();
    let frp_port = free_port();
    let harp_cmd = |port: u16, frp: u16, dir: &str| {
        let mut c = Command::new(&opts.harp);
        c.env_clear()
            .env("HP_SHARED_KEY", KEY)
            .env("NC_INSTANCE_URL", format!("http://{nc_addr}"))
            .env("HP_EXAPPS_ADDRESS", format!("127.0.0.1:{port}"))
            .env("HP_FRP_ADDRESS", format!("127.0.0.1:{frp}"))
            .env("HP_CERTS_DIR", tmp.join(dir).join("certs"))
            .env("HP_CONFIG_DIR", tmp.join(dir).join("run"))
            // Its own data directory: bans and the audit log on, as in production, and nothing
            // written to the machine's /var/lib/harp.
            .env("HP_DATA_DIR", tmp.join(dir).join("data"))
            .env("HP_DOCKER_SOCKET", tmp.join("no-docker.sock"))
            .env("HP_LOG_LEVEL", "error")
            .env("HP_VERBOSE_START", "0")
            .env("HP_SESSION_LIFETIME", "10");
        c
    };
    let (harp, _) = Proc::spawn("harp", harp_cmd(harp_port, frp_port, "."), None)?;
    wait_for_port(harp_port, Duration::from_secs(10))?;
    let metrics_harp_port = free_port();
    let mut mc = harp_cmd(metrics_harp_port, free_port(), "metrics-on");
    mc.env("HP_METRICS_ADDRESS", format!("127.0.0.1:{}", free_port()));
    let (metrics_harp, _) = Proc::spawn("harp (metrics on)", mc, None)?;
    wait_for_port(metrics_harp_port, Duration::from_secs(10))?;

    // The tunnel path: the same echo ExApp behind `harp tunnel` with mutual TLS, as ExApps run.
    let frp_certs = tmp.join("certs").join("frp");
    let toml = tmp.join("tunnel.toml");
    std::fs::write(
        &toml,
        format!(
            "serverAddr = \"127.0.0.1\"\nserverPort = {frp_port}\nloginFailExit = false\nmetadatas.token = \"{KEY}\"\ntransport.tls.enable = true\ntransport.tls.certFile = \"{c}\"\ntransport.tls.keyFile = \"{k}\"\ntransport.tls.trustedCaFile = \"{ca}\"\ntransport.tls.serverName = \"harp.nc\"\n\n[[proxies]]\nname = \"{app}\"\ntype = \"tcp\"\nlocalIP = \"127.0.0.1\"\nlocalPort = {echo_port}\nremotePort = {port}\n",
            c = frp_certs.join("client.crt").display(),
            k = frp_certs.join("client.key").display(),
            ca = frp_certs.join("ca.crt").display(),
            app = crate::servers::TUNNEL_APP,
            port = crate::servers::TUNNEL_PORT,
        ),
    )?;
    let (tunnel, _) = match &opts.tunnel_client {
        None => {
            let mut tc = Command::new(&opts.harp);
            tc.env_clear().arg("tunnel").arg("-c").arg(&toml);
            Proc::spawn("harp tunnel", tc, None)?
        }
        Some(client) => {
            eprintln!(
                "tunnel rows use {} instead of harp tunnel",
                client.display()
            );
            let mut tc = Command::new(client);
            tc.arg("-c").arg(&toml);
            Proc::spawn("tunnel client", tc, None)?
        }
    };
    wait_for_route(
        harp_port,
        &format!("/exapps/{}/public", crate::servers::TUNNEL_APP),
    )?;

    let base = |via: &str| match via {
        "harp-tunnel" => format!("http://127.0.0.1:{harp_port}"),
        "direct" => format!("http://127.0.0.1:{echo_port}"),
        "haproxy" => format!("http://127.0.0.1:{haproxy_port}"),
        "harp-metrics" => format!("http://127.0.0.1:{metrics_harp_port}"),
        _ => format!("http://127.0.0.1:{harp_port}"),
    };
    let mut results = Results {
        date: String::from_utf8(
            Command::new("date")
                .arg("-u")
                .arg("+%Y-%m-%d %H:%M UTC")
                .output()?
                .stdout,
        )?
        .trim()
        .to_string(),
        machine: machine(),
        haproxy_version: String::from_utf8_lossy(
            &Command::new("haproxy").arg("-v").output()?.stdout,
        )
        .lines()
        .next()
        .unwrap_or("")
        .to_string(),
        idle_websockets: opts.idle_websockets,
        ..Default::default()
    };

    // Warm caches and pools, then take the idle footprint.
    for t in targets().into_iter().filter(|_| opts.wants("http")) {
        wrk::run(&format!("{}{}", base(t.via), t.path), 4, 1, &t.headers)?;
    }
    std::thread::sleep(Duration::from_secs(1));
    results.rss_idle_kib = status_kib(harp.pid(), "VmRSS:");

    for rep in (0..opts.reps).filter(|_| opts.wants("http")) {
        for conns in [32u32, 128] {
            for t in targets() {
                // The tunnel path costs harp and the tunnel client: count both.
                let proxy: Vec<u32> = match t.via {
                    "harp" => vec![harp.pid()],
                    "harp-tunnel" => vec![harp.pid(), tunnel.pid()],
                    "harp-metrics" => vec![metrics_harp.pid()],
                    "haproxy" => vec![haproxy.pid()],
                    _ => vec![],
                };
                let before = cpu_seconds_of(&proxy);
                let r = wrk::run(
                    &format!("{}{}", base(t.via), t.path),
                    conns,
                    opts.secs,
                    &t.headers,
                )?;
                let proxy_cpu_us = (!proxy.is_empty())
                    .then(|| (cpu_seconds_of(&proxy) - before) * 1e6 / r.requests.max(1) as f64);
                eprintln!(
                    "{:<24} c={conns:<4} rep={rep} {:>10.0} req/s p99 {:.2} ms",
                    t.name, r.req_per_sec, r.p99_ms
                );
                results.http.push(HttpRow {
                    target: t.name.into(),
                    conns,
                    rep,
                    wrk: r,
                    proxy_cpu_us,
                });
            }
        }
    }
    // HTTP/2 side by side: HAProxy with `proto h2` on its bind against harp's h2c, both
    // forwarding HTTP/1.1 to the echo app. Targets alternate within each repetition.
    let h2_targets = [
        (
            "haproxy h2",
            format!("http://127.0.0.1:{haproxy_h2_port}/exapps/bench/public"),
            haproxy.pid(),
            vec![],
        ),
        (
            "harp h2 user (cookie)",
            format!("http://127.0.0.1:{harp_port}/exapps/bench/user"),
            harp.pid(),
            vec!["cookie: oc_sessionPassphrase=bench-session".to_string()],
        ),
    ];
    for rep in (0..opts.reps).filter(|_| opts.wants("h2")) {
        for (name, url, pid, headers) in &h2_targets {
            let before = cpu_seconds(*pid);
            let r = crate::h2load::run(url, H2_CONNS, H2_STREAMS, opts.secs, headers)?;
            let cpu_us = (cpu_seconds(*pid) - before) * 1e6 / r.requests.max(1) as f64;
            eprintln!(
                "{name:<24} c={H2_CONNS} m={H2_STREAMS} rep={rep} {:>10.0} req/s, {} of {} 2xx",
                r.req_per_sec, r.status_2xx, r.requests
            );
            results.h2.push(H2Row {
                target: name.to_string(),
                conns: H2_CONNS,
                streams: H2_STREAMS,
                rep,
                h2load: r,
                proxy_cpu_us: Some(cpu_us),
            });
        }
    }
    results.rss_peak_load_kib = status_kib(harp.pid(), "VmHWM:");

    if opts.wants("cold-start") {
        results.cold_start_ms = cold_starts(opts, &tmp, &nc_addr)?;
        eprintln!("cold start (ms): {:?}", results.cold_start_ms);
    }

    // Cold-cache burst: fresh cookies never seen before.
    let rt = tokio::runtime::Runtime::new()?;
    let nc_get = |path: &str| -> anyhow::Result<String> {
        let out = Command::new("curl")
            .args(["-s", &format!("http://{nc_addr}{path}")])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    if opts.wants("burst") {
        nc_get("/reset")?;
        results.burst_requests = 1000;
        results.burst_cookies = 100;
        results.burst_ok = rt.block_on(crate::clients::burst(
            &format!("127.0.0.1:{harp_port}"),
            "/exapps/bench/user",
            1000,
            100,
            "burst",
        ))?;
        results.burst_user_info_calls = nc_get("/stats")?.parse().unwrap_or(u64::MAX);
    }

    results.bulk_mib = BULK_MIB;
    let harp_addr = format!("127.0.0.1:{harp_port}");
    let ms_per_mib =
        |pids: &[u32], before: f64| (cpu_seconds_of(pids) - before) * 1e3 / BULK_MIB as f64;
    for _ in (0..opts.reps).filter(|_| opts.wants("bulk")) {
        let direct_pids = [harp.pid()];
        let tunnel_pids = [harp.pid(), tunnel.pid()];
        let before = cpu_seconds_of(&direct_pids);
        let d = rt.block_on(crate::clients::bulk(
            &harp_addr,
            "/exapps/bench/public/upload",
            results.bulk_mib,
        ))?;
        let d_cpu = ms_per_mib(&direct_pids, before);
        let before = cpu_seconds_of(&tunnel_pids);
        let t = rt.block_on(crate::clients::bulk(
            &harp_addr,
            &format!("/exapps/{}/public/upload", crate::servers::TUNNEL_APP),
            results.bulk_mib,
        ))?;
        let t_cpu = ms_per_mib(&tunnel_pids, before);
        eprintln!(
            "bulk upload {} MiB: without tunnel {d:.0} MiB/s ({d_cpu:.2} CPU ms/MiB), through harp tunnel {t:.0} MiB/s ({t_cpu:.2} CPU ms/MiB)",
            results.bulk_mib
        );
        results.bulk_direct_mib_s.push(d);
        results.bulk_tunnel_mib_s.push(t);
        results.bulk_direct_cpu_ms_per_mib.push(d_cpu);
        results.bulk_tunnel_cpu_ms_per_mib.push(t_cpu);
    }

    for rep in (0..opts.reps).filter(|_| opts.wants("ws")) {
        for conns in [32usize, 256] {
            for (name, url) in [
                ("direct", format!("ws://127.0.0.1:{echo_port}/ws")),
                // The ceiling for any proxy: the same hop with no decision at all.
                ("haproxy", format!("ws://127.0.0.1:{haproxy_port}/ws")),
                (
                    "harp",
                    format!("ws://127.0.0.1:{harp_port}/exapps/bench/public/ws"),
                ),
            ] {
                let r = rt.block_on(crate::clients::ws_load(&url, conns, opts.secs.into()))?;
                eprintln!(
                    "ws {name:<8} c={conns:<4} rep={rep} {:>10.0} msg/s p99 {:.0} us",
                    r.msgs_per_sec, r.p99_us
                );
                results.ws.push(WsRow {
                    target: name.into(),
                    conns,
                    rep,
                    result: r,
                });
            }
        }
    }

    if !opts.wants("memory") {
        let _ = std::fs::remove_dir_all(&tmp);
        return Ok(results);
    }
    let (idle, _) = Proc::spawn(
        "idle websockets",
        self_cmd(&[
            "ws-idle",
            "--url",
            &format!("ws://127.0.0.1:{harp_port}/exapps/bench/public/ws"),
            "--conns",
            &opts.idle_websockets.to_string(),
        ]),
        Some("ready"),
    )?;
    std::thread::sleep(Duration::from_secs(2));
    results.rss_with_idle_ws_kib = status_kib(harp.pid(), "VmRSS:");
    drop(idle);
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(results)
}

/// Starts harp [`COLD_STARTS`] times with the certificates already in place (the FRP ones the
/// first harp generated, and an HTTPS `cert.pem`), each time measuring from just before
/// exec to the first answered request (any HTTP status on a request harp must decide).
fn cold_starts(opts: &Options, tmp: &std::path::Path, nc_addr: &str) -> anyhow::Result<Vec<f64>> {
    let certs = tmp.join("certs");
    let pem = certs.join("cert.pem");
    if !pem.exists() {
        let (key, crt) = (tmp.join("https.key"), tmp.join("https.crt"));
        let ok = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=harp.bench", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&crt)
            .stderr(std::process::Stdio::null())
            .status()?
            .success();
        anyhow::ensure!(ok, "openssl could not make the HTTPS certificate");
        std::fs::write(&pem, [std::fs::read(&crt)?, std::fs::read(&key)?].concat())?;
    }
    let mut times = Vec::with_capacity(COLD_STARTS);
    for _ in 0..COLD_STARTS {
        let (port, https, frp) = (free_port(), free_port(), free_port());
        let mut c = Command::new(&opts.harp);
        c.env_clear()
            .env("HP_SHARED_KEY", KEY)
            .env("NC_INSTANCE_URL", format!("http://{nc_addr}"))
            .env("HP_EXAPPS_ADDRESS", format!("127.0.0.1:{port}"))
            .env("HP_EXAPPS_HTTPS_ADDRESS", format!("127.0.0.1:{https}"))
            .env("HP_FRP_ADDRESS", format!("127.0.0.1:{frp}"))
            .env("HP_CERTS_DIR", &certs)
            .env("HP_CONFIG_DIR", tmp.join("run-cold"))
            .env("HP_DOCKER_SOCKET", tmp.join("no-docker.sock"))
            .env("HP_LOG_LEVEL", "error")
            .env("HP_VERBOSE_START", "0")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let started = std::time::Instant::now();
        let mut child = c.spawn()?;
        let answered = first_answer(port, started + Duration::from_secs(10));
        let took = started.elapsed();
        let _ = child.kill();
        let _ = child.wait();
        anyhow::ensure!(answered, "harp did not answer within 10 s of exec");
        times.push(took.as_secs_f64() * 1000.0);
    }
    Ok(times)
}

/// Polls harp's HTTP port every 0.2 ms until a request gets a status line, or `deadline`.
fn first_answer(port: u16, deadline: std::time::Instant) -> bool {
    use std::io::{Read, Write};
    while std::time::Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = write!(
                s,
                "GET /exapps/bench/public HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
            );
            let mut head = [0u8; 12];
            if s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 ") {
                return true;
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    false
}

/// Polls `path` on harp until it answers 200 (the tunnel is up and registered).
fn wait_for_route(port: u16, path: &str) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
            );
            let mut head = [0u8; 12];
            if s.read_exact(&mut head).is_ok() && &head[9..12] == b"200" {
                return Ok(());
            }
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{path} never answered 200 through harp"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown CPU")
        .trim()
        .to_string();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    format!(
        "{cpu}, {cores} cores, {} GiB RAM, load generator and all servers on the same machine",
        mem_kib / 1024 / 1024
    )
}
