//! An in-process `harp tunnel` for one engine port: how tests reach a stub engine through the
//! port plan (harp refuses `docker-engine-port` values outside 24000–24099). Shared by the
//! `common` and `docker_support` harnesses.

use std::net::SocketAddr;
use tokio::sync::oneshot;

/// `harp tunnel` running in-process for one engine port; stops when dropped.
pub struct EngineTunnel {
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for EngineTunnel {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Makes engine port `remote_port` (24001–24099) of the harp whose FRP listener is `frp` (and
/// shared key `key`) reach the TCP server at `local`, the way a remote engine's frpc does, and
/// waits until harp has registered it.
pub async fn engine_tunnel(
    frp: SocketAddr,
    key: &str,
    tunnels: &harp::tunnel::server::registry::Registry,
    remote_port: u16,
    local: SocketAddr,
) -> EngineTunnel {
    let toml = format!(
        "serverAddr = \"127.0.0.1\"\nserverPort = {}\nloginFailExit = false\nmetadatas.token = \"{key}\"\ntransport.tls.enable = false\n\n[[proxies]]\nname = \"engine\"\ntype = \"tcp\"\nremotePort = {remote_port}\nlocalIP = \"{}\"\nlocalPort = {}\n",
        frp.port(),
        local.ip(),
        local.port()
    );
    let cfg = harp::tunnel::client::ClientConfig::parse(&toml).expect("tunnel config");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(harp::tunnel::client::run(cfg, async move {
        let _ = stopped.await;
    }));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while tunnels.proxy(remote_port).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "no tunnel registered port {remote_port}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    EngineTunnel { stop: Some(stop) }
}
