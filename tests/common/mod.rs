//! The one test harness of harp's integration tests: every `tests/*.rs` file that needs harp
//! or one of its peers does `mod common;` and starts them from here.
//!
//! - [`Harness`] is the only way to start harp: a builder over the environment harp reads
//!   (contract §1), started in-process ([`Harness::start`] → [`TestHarp`]) or as the real
//!   binary in a child process ([`Harness::spawn_process`] → [`process::HarpProcess`], for
//!   tests that read its fds, memory and CPU time from `/proc`).
//! - Peers: [`nextcloud`] (the stub Nextcloud), [`exapp`] (the stub ExApps), [`tunnel`]
//!   (`harp tunnel` in-process), [`frpc`] (the real Go frpc), [`docker`] (the real Docker
//!   Engine), [`process`] (harp as a child and `/proc` readers).
//! - [`k8s`]: the real kube-apiserver (one shared per test run), an admin client, test
//!   namespaces, and AppAPI's `/k8s/exapp/*` calls.
//! - [`prereq`] turns a missing tool or daemon into one line saying what to install or set.
//!
//! What this module must not do: reach into harp's internals anywhere but the one
//! `impl TestHarp` block marked "harp internals" below, so a change to harp's wiring is
//! followed in one place.
//!
//! Time: helpers here never sleep to synchronise; they poll an observable condition with a
//! deadline ([`wait_until`], [`TestHarp::wait_tunnel`]).
#![allow(dead_code)]

pub mod docker;
pub mod exapp;
pub mod frpc;
pub mod k8s;
pub mod nextcloud;
pub mod prereq;
pub mod process;
pub mod tunnel;

pub use tunnel::EngineTunnel;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// The shared key every test harp and its peers use.
pub const KEY: &str = "test-shared-key";

/// How long a whole request may take before the test client gives up: far above anything a
/// passing test needs, so it only turns a hang into a failure.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);

/// How long a requested shutdown may take before the test fails.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(20);

/// How often [`wait_until`] looks at its condition.
const POLL: Duration = Duration::from_millis(20);

/// A harp to start: the settings every test shares plus what the test adds.
///
/// Defaults: shared key [`KEY`], an unreachable Nextcloud, every listener on an ephemeral
/// loopback port, FRP without TLS, no Docker engine, one worker, and the certificate, run and
/// data directories in a fresh temporary directory.
pub struct Harness {
    vars: BTreeMap<String, String>,
    dir: Option<PathBuf>,
    local_engine_listen: Option<SocketAddr>,
    frp_placeholder_certs: bool,
    wrapper: Vec<String>,
}

impl Harness {
    pub fn builder() -> Harness {
        let vars = [
            ("HP_SHARED_KEY", KEY),
            // Port 1 refuses connections: a test that needs Nextcloud says so.
            ("NC_INSTANCE_URL", "http://127.0.0.1:1/"),
            ("HP_EXAPPS_ADDRESS", "127.0.0.1:0"),
            ("HP_EXAPPS_HTTPS_ADDRESS", "127.0.0.1:0"),
            ("HP_FRP_ADDRESS", "127.0.0.1:0"),
            ("HP_FRP_DISABLE_TLS", "true"),
            ("HP_DOCKER_SOCKET", "/nonexistent/docker.sock"),
            ("HP_WORKERS", "1"),
            ("HP_LOG_LEVEL", "warning"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Harness {
            vars,
            dir: None,
            local_engine_listen: None,
            frp_placeholder_certs: false,
            wrapper: Vec::new(),
        }
    }

    /// Sets one environment variable (later calls win).
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Harness {
        self.vars.insert(key.to_string(), value.into());
        self
    }

    /// Sets several environment variables.
    pub fn envs(mut self, vars: &[(&str, &str)]) -> Harness {
        for (k, v) in vars {
            self.vars.insert(k.to_string(), v.to_string());
        }
        self
    }

    /// The Nextcloud harp asks (`NC_INSTANCE_URL`), e.g. [`nextcloud::StubNextcloud::url`].
    pub fn nextcloud(self, url: &str) -> Harness {
        self.env("NC_INSTANCE_URL", url)
    }

    /// FRP with mutual TLS, as in production: harp generates its certificates under
    /// `<dir>/certs/frp` at start (see [`TestHarp::certs`]); the real frpc needs this.
    pub fn with_frp_tls(mut self) -> Harness {
        self.vars.remove("HP_FRP_DISABLE_TLS");
        self
    }

    /// The real Docker Engine of this machine; fails with one line when it is unreachable.
    pub fn with_docker(self) -> Harness {
        docker::require_docker();
        self.env("HP_DOCKER_SOCKET", docker::DOCKER_SOCKET)
    }

    /// Keeps harp's directories (and the test's own files) under `dir` instead of a fresh
    /// temporary directory the harness owns.
    pub fn in_dir(mut self, dir: &Path) -> Harness {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// Where the loopback relay to the local engine listens (harp's default is the fixed
    /// 127.0.0.1:24000, which parallel tests would compete for; the harness's default is
    /// port 0).
    pub fn local_engine_listen(mut self, addr: SocketAddr) -> Harness {
        self.local_engine_listen = Some(addr);
        self
    }

    /// Writes placeholder `<certs>/frp/{ca.crt,client.crt,client.key}` before start (the
    /// contents of [`docker::FRP_CA`] and its siblings) for tests of how certificates reach
    /// ExApp containers.
    pub fn frp_placeholder_certs(mut self) -> Harness {
        self.frp_placeholder_certs = true;
        self
    }

    /// Runs the child process through `wrapper` (e.g. `prlimit --nofile=… --`), which must
    /// `exec` harp so the child's pid is harp's. Only for [`Harness::spawn_process`].
    pub fn wrapped_in(mut self, wrapper: &[&str]) -> Harness {
        self.wrapper = wrapper.iter().map(|s| s.to_string()).collect();
        self
    }

    /// The directory harp's files go in, and the temporary directory that owns it (if the
    /// harness made one). Also fills in the directory variables.
    fn prepare_dir(&mut self) -> (PathBuf, Option<tempfile::TempDir>) {
        let (dir, tmp) = match &self.dir {
            Some(d) => (d.clone(), None),
            None => {
                let t = tempfile::tempdir().unwrap();
                (t.path().to_path_buf(), Some(t))
            }
        };
        let certs = dir.join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        if self.frp_placeholder_certs {
            let frp = certs.join("frp");
            std::fs::create_dir_all(&frp).unwrap();
            std::fs::write(frp.join("ca.crt"), docker::FRP_CA).unwrap();
            std::fs::write(frp.join("client.crt"), docker::FRP_CLIENT_CRT).unwrap();
            std::fs::write(frp.join("client.key"), docker::FRP_CLIENT_KEY).unwrap();
        }
        for (k, v) in [
            ("HP_CERTS_DIR", certs),
            ("HP_CONFIG_DIR", dir.join("run")),
            ("HP_DATA_DIR", dir.join("data")),
            // A missing file: an `/frps.toml` on the test machine must not change the tests.
            ("HP_FRPS_CONFIG", dir.join("no-frps.toml")),
        ] {
            self.vars
                .entry(k.to_string())
                .or_insert_with(|| v.display().to_string());
        }
        (dir, tmp)
    }

    /// Starts harp in-process on the current tokio runtime.
    pub async fn start(mut self) -> TestHarp {
        let (dir, tmp) = self.prepare_dir();
        let vars: std::collections::HashMap<String, String> = self.vars.into_iter().collect();
        let mut config = harp::config::Config::from_vars(&vars).expect("valid test config");
        config.local_engine_listen = self
            .local_engine_listen
            .unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
        let harp = harp::Harp::bind(config).await.expect("harp binds");
        let (stop, stopped) = oneshot::channel::<()>();
        let mut out = TestHarp {
            addr: harp.http_addr(),
            https: harp.https_addr(),
            tls: harp.tls_reloader(),
            frp: harp.frp_addr(),
            local_engine: harp.local_engine_addr(),
            metrics: harp.metrics_addr(),
            internals: Internals::of(&harp),
            dir,
            _tmp: tmp,
            stop: Some(stop),
            task: None,
        };
        out.task = Some(tokio::spawn(harp.serve(async move {
            let _ = stopped.await;
        })));
        out
    }

    /// Starts the real `harp` binary as a child process with exactly these settings (the
    /// parent's environment is not inherited).
    pub fn spawn_process(mut self) -> process::HarpProcess {
        let (_, tmp) = self.prepare_dir();
        let tmp = tmp.expect("a child-process harp owns its temporary directory");
        process::HarpProcess::spawn(&self.wrapper, &self.vars, tmp)
    }
}

/// A running in-process harp; stops serving when dropped.
pub struct TestHarp {
    pub addr: SocketAddr,
    pub https: Option<SocketAddr>,
    pub tls: Option<harp::frontdoor::TlsReloader>,
    /// The FRP listener.
    pub frp: SocketAddr,
    /// The loopback relay to the local engine, when it could bind.
    pub local_engine: Option<SocketAddr>,
    /// `/metrics`, when HP_METRICS_ADDRESS is set.
    pub metrics: Option<SocketAddr>,
    /// Where harp's certificate, run and data directories are.
    pub dir: PathBuf,
    internals: Internals,
    _tmp: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<Result<(), harp::CoreTaskDied>>>,
}

impl TestHarp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// harp's FRP certificate directory (`<certs>/frp`).
    pub fn certs(&self) -> PathBuf {
        self.dir.join("certs/frp")
    }

    /// Stops accepting and waits for the server task (graceful shutdown), which must end
    /// without reporting a dead core task.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let ended = tokio::time::timeout(SHUTDOWN_DEADLINE, t)
                .await
                .unwrap_or_else(|_| panic!("harp did not stop within {SHUTDOWN_DEADLINE:?}"))
                .expect("server task did not panic");
            assert!(
                ended.is_ok(),
                "a requested shutdown must not report a dead core task: {ended:?}"
            );
        }
    }

    /// Waits until a tunnel owns `port`.
    pub async fn wait_tunnel(&self, port: u16, within: Duration) {
        let ok = wait_until(within, || self.has_tunnel(port)).await;
        assert!(ok, "no tunnel registered port {port} within {within:?}");
    }

    /// Makes engine port `remote_port` (24001–24099) reach the TCP server at `local` through
    /// an in-process `harp tunnel`, as a remote engine's frpc does, and waits until harp has
    /// registered it.
    pub async fn engine_tunnel(&self, remote_port: u16, local: SocketAddr) -> EngineTunnel {
        let t = tunnel::engine_tunnel(self.frp, KEY, remote_port, local);
        self.wait_tunnel(remote_port, Duration::from_secs(10)).await;
        t
    }
}

impl Drop for TestHarp {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// What the tests look at inside a running harp. Harp internals: the only place the tests
/// touch harp's handles, so a change to its wiring is followed here alone.
struct Internals {
    bans: Arc<harp::security::BanList>,
    nextcloud: Arc<harp::nextcloud::Nextcloud>,
    resolver: Arc<harp::upstream::Resolver>,
    tunnels: Arc<harp::tunnel::server::registry::Registry>,
}

impl Internals {
    fn of(harp: &harp::Harp) -> Internals {
        Internals {
            bans: harp.bans(),
            nextcloud: harp.nextcloud(),
            resolver: harp.resolver(),
            tunnels: harp.tunnels(),
        }
    }
}

/// Harp internals (see [`Internals`]).
impl TestHarp {
    /// Whether `ip` is banned now.
    pub fn is_banned(&self, ip: &str) -> bool {
        self.internals.bans.is_banned(ip.parse().unwrap())
    }

    /// Failures recorded against `ip` in the ban list.
    pub fn failures_of(&self, ip: &str) -> usize {
        self.internals.bans.failures_of(ip.parse().unwrap())
    }

    /// Nextcloud look-ups harp has in flight.
    pub fn lookups_in_flight(&self) -> usize {
        self.internals.nextcloud.lookups_in_flight()
    }

    /// Whether a tunnel owns the engine or ExApp port `port`.
    pub fn has_tunnel(&self, port: u16) -> bool {
        self.internals.tunnels.proxy(port).is_some()
    }

    /// The run id of the FRP session that owns `port` (panics when no tunnel does).
    pub fn tunnel_run_id(&self, port: u16) -> String {
        self.tunnel(port).control.run_id.clone()
    }

    /// Whether the tunnel on `port` asked for (encryption, compression).
    pub fn tunnel_wrapping(&self, port: u16) -> (bool, bool) {
        let w = self.tunnel(port).wrapping;
        (w.encryption, w.compression)
    }

    fn tunnel(&self, port: u16) -> Arc<harp::tunnel::server::registry::Proxy> {
        self.internals
            .tunnels
            .proxy(port)
            .unwrap_or_else(|| panic!("no tunnel owns port {port}"))
    }

    /// Whether harp holds metadata for `app` in its cache.
    pub fn is_meta_cached(&self, app: &str) -> bool {
        self.internals.nextcloud.meta_cache().get(app).is_some()
    }

    /// The upstream (host, port) harp's metadata cache holds for `app`, if any.
    pub fn cached_upstream(&self, app: &str) -> Option<(String, u16)> {
        self.internals
            .nextcloud
            .meta_cache()
            .get(app)
            .map(|r| (r.host.clone(), r.port))
    }

    /// The address harp remembers for `app`'s host (panics when `app` is not cached).
    pub fn cached_resolved_ip(&self, app: &str) -> Option<std::net::IpAddr> {
        let record = self
            .internals
            .nextcloud
            .meta_cache()
            .get(app)
            .unwrap_or_else(|| panic!("no cached metadata for {app}"));
        self.internals.resolver.memoised(&record.host)
    }
}

/// The HTTP client of the tests (no proxy; a generous whole-request timeout).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .unwrap()
}

/// Pushes metadata for `app` the way AppAPI does after enabling it.
pub async fn push_meta(h: &TestHarp, app: &str, doc: &serde_json::Value) {
    let r = client()
        .post(h.url(&format!("/exapps/app_api/exapp_storage/{app}")))
        .header("harp-shared-key", KEY)
        .json(doc)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        204,
        "storage push failed: {}",
        r.text().await.unwrap_or_default()
    );
}

/// ExApp metadata in the shape Nextcloud's `exapp-meta` returns.
pub fn meta(port: u16, routes: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "exapp_token": "apptoken",
        "exapp_version": "1.2.3",
        "host": "127.0.0.1",
        "port": port,
        "routes": routes,
    })
}

/// One route that lets everybody through.
pub fn public_routes() -> serde_json::Value {
    serde_json::json!([{"url": ".*", "access_level": 0, "bruteforce_protection": []}])
}

/// Sends raw bytes and returns everything the server sent until it closed (or `limit` passed).
pub async fn raw_exchange(
    addr: SocketAddr,
    request: &[u8],
    limit: Duration,
) -> Result<Vec<u8>, &'static str> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    match tokio::time::timeout(limit, s.read_to_end(&mut out)).await {
        Ok(_) => Ok(out),
        Err(_) => Err("server kept the connection open"),
    }
}

/// Polls `cond` until it holds (true) or `within` passes (false). On tokio's clock, so a
/// test on paused time waits its deadline without spending it.
pub async fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}
