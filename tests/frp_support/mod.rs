//! Helpers for the FRP tests: an in-process harp, the real Go frpc (killed on drop), a
//! unix-socket HTTP app standing in for an ExApp or a Docker engine, and HTTP helpers.
#![allow(dead_code)]

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UnixListener;

pub const KEY: &str = "test-shared-key";

/// The real frpc: `HARP_TEST_FRPC` (set by `.ci/run`) or `../shared/tools/get-frpc`.
/// Fails loudly: these tests must never be skipped.
pub fn frpc_path() -> PathBuf {
    if let Some(p) = std::env::var_os("HARP_TEST_FRPC") {
        return PathBuf::from(p);
    }
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/get-frpc");
    let out = Command::new(&tool)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    assert!(
        out.status.success(),
        "get-frpc failed; the real frpc is required for these tests"
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// harp's inspection handles the FRP tests read.
pub struct Inspect {
    pub bans: Arc<harp::security::BanList>,
}

pub struct TestHarp {
    pub http: SocketAddr,
    pub frp: SocketAddr,
    pub dir: PathBuf,
    pub state: Inspect,
    pub tunnels: Arc<harp::tunnel::server::registry::Registry>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), harp::CoreTaskDied>>>,
}

impl TestHarp {
    pub fn certs(&self) -> PathBuf {
        self.dir.join("certs/frp")
    }

    /// Stops serving and waits until every listener and tunnel session is gone.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), t).await;
        }
    }

    /// Waits until a tunnel owns `port`.
    pub async fn wait_tunnel(&self, port: u16, within: Duration) {
        let end = Instant::now() + within;
        while self.tunnels.proxy(port).is_none() {
            assert!(
                Instant::now() < end,
                "no tunnel registered port {port} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }
}

impl Drop for TestHarp {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Starts harp in-process with its own temp dirs (kept under `dir`).
pub async fn start_harp(dir: &Path, extra: &[(&str, &str)]) -> TestHarp {
    let mut vars: HashMap<String, String> = [
        ("HP_SHARED_KEY", KEY),
        ("NC_INSTANCE_URL", "http://127.0.0.1:1"),
        ("HP_EXAPPS_ADDRESS", "127.0.0.1:0"),
        ("HP_FRP_ADDRESS", "127.0.0.1:0"),
        ("HP_LOG_LEVEL", "info"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in [
        ("HP_CERTS_DIR", dir.join("certs")),
        ("HP_CONFIG_DIR", dir.join("run")),
        ("HP_DATA_DIR", dir.join("data")),
        ("HP_DOCKER_SOCKET", dir.join("no-docker.sock")),
        ("HP_FRPS_CONFIG", dir.join("no-frps.toml")),
    ] {
        vars.insert(k.into(), v.to_string_lossy().into_owned());
    }
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    let cfg = harp::config::Config::from_vars(&vars).expect("valid test config");
    let h = harp::Harp::bind(cfg).await.expect("harp binds");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut out = TestHarp {
        http: h.http_addr(),
        frp: h.frp_addr(),
        dir: dir.to_path_buf(),
        state: Inspect { bans: h.bans() },
        tunnels: h.tunnels(),
        stop: Some(tx),
        task: None,
    };
    out.task = Some(tokio::spawn(h.serve(async move {
        let _ = rx.await;
    })));
    out
}

/// A running frpc, killed (and reaped) on drop so a failing test leaves nothing behind.
pub struct Frpc {
    child: Child,
    pub log: PathBuf,
}

impl Frpc {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for `needle` in frpc's output.
    pub async fn wait_log(&self, needle: &str, within: Duration) {
        let end = Instant::now() + within;
        loop {
            if self.log_text().contains(needle) {
                return;
            }
            assert!(
                Instant::now() < end,
                "frpc did not log {needle:?} within {within:?}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Frpc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Which transport settings the client config gets.
pub enum Tls<'a> {
    /// Client certificate, key and CA from this directory, server name harp.nc.
    Certs(&'a Path),
    /// TLS without a client certificate.
    NoClientCert(&'a Path),
    Off,
}

pub struct ProxySpec<'a> {
    pub name: &'a str,
    pub port: u16,
    pub unix: &'a Path,
}

/// frpc.toml for one ExApp-style proxy: mutual TLS with harp's certificates, the shared key,
/// and the unix-socket plugin pointing at `unix`.
pub fn single_proxy_toml(h: &TestHarp, name: &str, port: u16, unix: &Path) -> String {
    frpc_toml(
        h.frp,
        KEY,
        Tls::Certs(&h.certs()),
        &[ProxySpec { name, port, unix }],
    )
}

/// The frpc TOML HaRP's ExApp images generate (plus a debug log level).
pub fn frpc_toml(frp: SocketAddr, token: &str, tls: Tls<'_>, proxies: &[ProxySpec<'_>]) -> String {
    let mut s = format!(
        "serverAddr = \"127.0.0.1\"\nserverPort = {}\nloginFailExit = false\nmetadatas.token = \"{token}\"\nlog.level = \"debug\"\n",
        frp.port()
    );
    match tls {
        Tls::Certs(d) => s.push_str(&format!(
            "transport.tls.enable = true\ntransport.tls.certFile = \"{0}/client.crt\"\ntransport.tls.keyFile = \"{0}/client.key\"\ntransport.tls.trustedCaFile = \"{0}/ca.crt\"\ntransport.tls.serverName = \"harp.nc\"\n",
            d.display()
        )),
        Tls::NoClientCert(d) => s.push_str(&format!(
            "transport.tls.enable = true\ntransport.tls.trustedCaFile = \"{0}/ca.crt\"\ntransport.tls.serverName = \"harp.nc\"\n",
            d.display()
        )),
        Tls::Off => s.push_str("transport.tls.enable = false\n"),
    }
    for p in proxies {
        s.push_str(&format!(
            "\n[[proxies]]\nname = \"{}\"\ntype = \"tcp\"\nremotePort = {}\n[proxies.plugin]\ntype = \"unix_domain_socket\"\nunixPath = \"{}\"\n",
            p.name,
            p.port,
            p.unix.display()
        ));
    }
    s
}

/// Starts the real frpc with `toml` written under `dir/<tag>.toml`.
pub fn start_frpc(dir: &Path, tag: &str, toml: &str) -> Frpc {
    let cfg = dir.join(format!("{tag}.toml"));
    std::fs::write(&cfg, toml).unwrap();
    let log = dir.join(format!("{tag}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(frpc_path())
        .arg("-c")
        .arg(&cfg)
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("frpc starts");
    Frpc { child, log }
}

/// A tiny HTTP/1.1 app on a unix socket: `/_ping` answers `OK` (a Docker engine's reply);
/// anything else answers `<app>: <method> <path> body=<n>` after reading the whole body.
pub async fn unix_app(path: &Path, app: &'static str) -> tokio::task::JoinHandle<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_app(stream, app));
            }
        }
    })
}

/// The same app on a TCP port (the "no tunnel" baseline).
pub async fn tcp_app(app: &'static str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_app(stream, app));
            }
        }
    });
    (addr, task)
}

async fn serve_app<S>(stream: S, app: &'static str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(
        move |req: hyper::Request<hyper::body::Incoming>| async move {
            let method = req.method().clone();
            let path = req.uri().path().to_string();
            let body = if path.ends_with("/_ping") {
                "OK".to_string()
            } else {
                let mut n = 0usize;
                let mut b = req.into_body();
                while let Some(f) = b.frame().await {
                    if let Ok(d) = f?.into_data() {
                        n += d.len();
                    }
                }
                format!("{app}: {method} {path} body={n}")
            };
            Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from(body))))
        },
    );
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
        .await;
}

/// Uploads `mib` MiB to `path` and returns the MiB/s achieved.
pub async fn upload_rate(h: &TestHarp, path: &str, mib: usize) -> f64 {
    let payload = vec![0xa5u8; mib * 1024 * 1024];
    let t0 = Instant::now();
    let r = client()
        .post(h.url(path))
        .body(payload)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.ends_with(&format!("body={}", mib * 1024 * 1024)),
        "{text}"
    );
    mib as f64 / t0.elapsed().as_secs_f64()
}

/// Runs `harp tunnel`'s client in-process until the guard is dropped.
pub struct RustClient {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<Result<(), harp::tunnel::client::ClientError>>,
}

impl Drop for RustClient {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub fn start_rust_client(toml: &str) -> RustClient {
    let cfg = harp::tunnel::client::ClientConfig::parse(toml).expect("client config");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(harp::tunnel::client::run(cfg, async move {
        let _ = rx.await;
    }));
    RustClient {
        stop: Some(tx),
        task,
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Pushes ExApp metadata (host 127.0.0.1, the tunnel port, one public route).
pub async fn push_meta(h: &TestHarp, app: &str, port: u16) {
    let body = format!(
        r#"{{"exapp_token":"t","exapp_version":"1","host":"127.0.0.1","port":{port},"routes":[{{"url":".*","access_level":0,"bruteforce_protection":[]}}]}}"#
    );
    let r = client()
        .post(h.url(&format!("/exapps/app_api/exapp_storage/{app}")))
        .header("harp-shared-key", KEY)
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "metadata push: {}", r.status());
}

/// GET through harp's front door; returns (status, body).
pub async fn get(h: &TestHarp, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut rb = client().get(h.url(path));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// Polls `path` until it answers 200 (frpc needs a moment to log in and register).
pub async fn wait_ok(
    h: &TestHarp,
    path: &str,
    headers: &[(&str, &str)],
    within: Duration,
) -> String {
    let end = Instant::now() + within;
    loop {
        let (s, b) = get(h, path, headers).await;
        if s == 200 {
            return b;
        }
        assert!(
            Instant::now() < end,
            "{path} still {s} after {within:?}: {b}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A port from `base..base+100` derived from a test tag, so parallel tests do not collide on
/// the loopback compatibility listeners.
pub fn port_for(base: u16, tag: &str) -> u16 {
    let h = tag
        .bytes()
        .fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32));
    base + 1 + (h % 98) as u16
}
