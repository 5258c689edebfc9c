//! `harp tunnel` (the Rust client) against harp's own FRP server: TLS with client
//! certificates, unix-socket and TCP targets, reconnect after a server restart, and
//! loginFailExit on a refused first login.

mod common;

use common::exapp::{tcp_app, unix_app};
use common::frpc::*;
use common::tunnel::start_rust_client;
use common::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_tls_unix_socket_and_tcp_target_reachable() {
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::builder()
        .with_frp_tls()
        .in_dir(tmp.path())
        .start()
        .await;
    let port = port_for(23000, "rustclient");
    let sock = tmp.path().join("exapp.sock");
    let _app = unix_app(&sock, "rapp").await;
    let toml = single_proxy_toml(&h, "rapp", port, &sock);
    let _c = start_rust_client(&toml);
    push_tunnel_meta(&h, "rapp", port).await;
    assert_eq!(
        wait_ok(&h, "/exapps/rapp/x", &[], T).await,
        "rapp: GET /x body=0"
    );
    let rate = upload_rate(&h, "/exapps/rapp/up", 16).await;
    eprintln!("harp tunnel client: 16 MiB upload at {rate:.1} MiB/s");
    assert!(
        rate >= HARP_TUNNEL_FLOOR,
        "16 MiB through harp tunnel at {rate:.1} MiB/s, floor {HARP_TUNNEL_FLOOR} MiB/s"
    );
    h.shutdown().await;

    // A plain localIP/localPort target, TLS off on both sides.
    let tmp2 = tempfile::tempdir().unwrap();
    let h2 = Harness::builder()
        .with_frp_tls()
        .in_dir(tmp2.path())
        .envs(&[("HP_FRP_DISABLE_TLS", "true")])
        .start()
        .await;
    let (addr, _tcp) = tcp_app("tapp").await;
    let toml = format!(
        "serverAddr = \"127.0.0.1\"\nserverPort = {}\ntransport.tls.enable = false\nmetadatas.token = \"{KEY}\"\n[[proxies]]\nname = \"tapp\"\ntype = \"tcp\"\nlocalIP = \"127.0.0.1\"\nlocalPort = {}\nremotePort = {}\n",
        h2.frp.port(),
        addr.port(),
        port + 1
    );
    let _c2 = start_rust_client(&toml);
    push_tunnel_meta(&h2, "tapp", port + 1).await;
    assert_eq!(
        wait_ok(&h2, "/exapps/tapp/y", &[], T).await,
        "tapp: GET /y body=0"
    );
    h2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_reconnects_after_server_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::builder()
        .with_frp_tls()
        .in_dir(tmp.path())
        .start()
        .await;
    let port = port_for(23000, "rustreconnect");
    let sock = tmp.path().join("exapp.sock");
    let _app = unix_app(&sock, "rre").await;
    let toml = format!(
        "loginFailExit = false\n{}",
        frpc_toml(
            h.frp,
            KEY,
            Tls::Certs(&h.certs()),
            &[ProxySpec {
                name: "rre",
                port,
                unix: &sock
            }]
        )
        .replace("loginFailExit = false\n", "")
    );
    let _c = start_rust_client(&toml);
    push_tunnel_meta(&h, "rre", port).await;
    wait_ok(&h, "/exapps/rre/a", &[], T).await;
    let frp_addr = h.frp.to_string();
    h.shutdown().await;
    let h2 = Harness::builder()
        .with_frp_tls()
        .in_dir(tmp.path())
        .envs(&[("HP_FRP_ADDRESS", &frp_addr)])
        .start()
        .await;
    push_tunnel_meta(&h2, "rre", port).await;
    assert_eq!(
        wait_ok(&h2, "/exapps/rre/b", &[], T).await,
        "rre: GET /b body=0"
    );
    h2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_login_fail_exit_on_wrong_token() {
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::builder()
        .with_frp_tls()
        .in_dir(tmp.path())
        .start()
        .await;
    let sock = tmp.path().join("exapp.sock");
    let toml = frpc_toml(
        h.frp,
        "wrong",
        Tls::Certs(&h.certs()),
        &[ProxySpec {
            name: "x",
            port: 23999,
            unix: &sock,
        }],
    )
    .replace("loginFailExit = false\n", "");
    let mut c = start_rust_client(&toml);
    let res = tokio::time::timeout(T, &mut c.task).await.unwrap().unwrap();
    let err = res.unwrap_err().to_string();
    assert!(err.contains("send Login request to plugin error"), "{err}");
    assert_eq!(h.failures_of("127.0.0.1"), 1);
    h.shutdown().await;
}
