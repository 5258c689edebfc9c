//! Shared test peers: a stub Nextcloud (exactly the two HaRP endpoints), a stub ExApp, and an
//! in-process harp on ephemeral ports.
#![allow(dead_code)]

pub mod exapp;
pub mod nextcloud;
pub mod tunnel;

pub use tunnel::EngineTunnel;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;

pub const KEY: &str = "test-shared-key";

/// A running in-process harp; shut down on drop.
pub struct TestHarp {
    pub addr: SocketAddr,
    pub https: Option<SocketAddr>,
    pub state: Inspect,
    pub tls: Option<harp::frontdoor::TlsReloader>,
    /// The FRP listener and its registry (for in-process tunnels, see [`engine_tunnel`]).
    pub frp: SocketAddr,
    pub tunnels: Arc<harp::tunnel::server::registry::Registry>,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<Result<(), harp::CoreTaskDied>>>,
    pub dir: tempfile::TempDir,
}

/// harp's inspection handles (bans, Nextcloud caches, the resolver memo).
pub struct Inspect {
    pub bans: Arc<harp::security::BanList>,
    pub nextcloud: Arc<harp::nextcloud::Nextcloud>,
    pub resolver: Arc<harp::upstream::Resolver>,
}

impl TestHarp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops accepting and waits for the server task (graceful shutdown).
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let ended = t.await.expect("server task did not panic");
            assert!(
                ended.is_ok(),
                "a requested shutdown must not report a dead core task: {ended:?}"
            );
        }
    }
}

impl Drop for TestHarp {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub fn base_vars(nc: &str) -> HashMap<String, String> {
    [
        ("HP_SHARED_KEY", KEY),
        ("NC_INSTANCE_URL", nc),
        ("HP_EXAPPS_ADDRESS", "127.0.0.1:0"),
        ("HP_EXAPPS_HTTPS_ADDRESS", "127.0.0.1:0"),
        ("HP_FRP_ADDRESS", "127.0.0.1:0"),
        ("HP_FRP_DISABLE_TLS", "true"),
        ("HP_DOCKER_SOCKET", "/nonexistent/docker.sock"),
        ("HP_WORKERS", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Starts harp with the base settings plus `extra`.
pub async fn start_harp(nc: &str, extra: &[(&str, &str)]) -> TestHarp {
    let dir = tempfile::tempdir().unwrap();
    start_harp_in(dir, nc, extra).await
}

pub async fn start_harp_in(dir: tempfile::TempDir, nc: &str, extra: &[(&str, &str)]) -> TestHarp {
    let mut vars = base_vars(nc);
    vars.insert(
        "HP_CERTS_DIR".into(),
        dir.path().join("certs").display().to_string(),
    );
    vars.insert(
        "HP_CONFIG_DIR".into(),
        dir.path().join("run").display().to_string(),
    );
    vars.insert(
        "HP_DATA_DIR".into(),
        dir.path().join("data").display().to_string(),
    );
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    let config = harp::config::Config::from_vars(&vars).expect("valid test config");
    let harp = harp::Harp::bind(config).await.expect("harp binds");
    let (stop, stopped) = oneshot::channel::<()>();
    let addr = harp.http_addr();
    let https = harp.https_addr();
    let state = Inspect {
        bans: harp.bans(),
        nextcloud: harp.nextcloud(),
        resolver: harp.resolver(),
    };
    let tls = harp.tls_reloader();
    let frp = harp.frp_addr();
    let tunnels = harp.tunnels();
    let task = tokio::spawn(harp.serve(async move {
        let _ = stopped.await;
    }));
    TestHarp {
        addr,
        https,
        state,
        tls,
        frp,
        tunnels,
        stop: Some(stop),
        task: Some(task),
        dir,
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
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

pub fn meta(port: u16, routes: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "exapp_token": "apptoken",
        "exapp_version": "1.2.3",
        "host": "127.0.0.1",
        "port": port,
        "routes": routes,
    })
}

/// Sends raw bytes and returns everything the server sent until it closed (or `limit` passed).
pub async fn raw_exchange(
    addr: SocketAddr,
    request: &[u8],
    limit: std::time::Duration,
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

/// Whether `ip` has recorded failures in harp's ban list.
pub fn failures(h: &TestHarp, ip: &str) -> usize {
    h.state.bans.failures_of(ip.parse().unwrap())
}

/// Makes engine port `remote_port` (24001–24099) of `h` reach the TCP server at `local`, the
/// way a remote engine's frpc does, and waits until harp has registered it.
pub async fn engine_tunnel(h: &TestHarp, remote_port: u16, local: SocketAddr) -> EngineTunnel {
    tunnel::engine_tunnel(h.frp, KEY, &h.tunnels, remote_port, local).await
}
