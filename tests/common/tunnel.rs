//! `harp tunnel` (the Rust FRP client) running in-process: for engine ports (how tests reach a
//! stub engine through the port plan, since harp refuses `docker-engine-port` values outside
//! 24000–24099) and for any client configuration a test writes. The real Go frpc is in
//! [`super::frpc`].

use std::net::SocketAddr;
use tokio::sync::oneshot;

/// `harp tunnel` running in-process; stops when dropped.
pub struct RustClient {
    stop: Option<oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<Result<(), harp::tunnel::client::ClientError>>,
}

impl Drop for RustClient {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Starts `harp tunnel` with the client configuration `toml` (frpc's TOML format).
pub fn start_rust_client(toml: &str) -> RustClient {
    let cfg = harp::tunnel::client::ClientConfig::parse(toml).expect("client config");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(harp::tunnel::client::run(cfg, async move {
        let _ = stopped.await;
    }));
    RustClient {
        stop: Some(stop),
        task,
    }
}

/// An engine-port tunnel (see [`super::TestHarp::engine_tunnel`]); stops when dropped.
pub type EngineTunnel = RustClient;

/// Starts a tunnel that makes engine port `remote_port` of the harp whose FRP listener is
/// `frp` (plain TCP, shared key `key`) reach the TCP server at `local`. Does not wait for
/// the registration: [`super::TestHarp::engine_tunnel`] does.
pub fn engine_tunnel(
    frp: SocketAddr,
    key: &str,
    remote_port: u16,
    local: SocketAddr,
) -> EngineTunnel {
    start_rust_client(&format!(
        "serverAddr = \"127.0.0.1\"\nserverPort = {}\nloginFailExit = false\nmetadatas.token = \"{key}\"\ntransport.tls.enable = false\n\n[[proxies]]\nname = \"engine\"\ntype = \"tcp\"\nremotePort = {remote_port}\nlocalIP = \"{}\"\nlocalPort = {}\n",
        frp.port(),
        local.ip(),
        local.port()
    ))
}
