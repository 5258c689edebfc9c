//! Interop with the real Go frpc 0.65.0 against harp's native FRP server (contract §9 items
//! 20, 121–127). Each test runs its own harp and frpc; frpc is killed on drop.

mod common;

use common::exapp::unix_app;
use common::frpc::*;
use common::*;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item121_exapp_behind_frpc_tls_reachable_with_64mib_upload() {
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::builder()
        .with_frp_tls()
        .in_dir(tmp.path())
        .start()
        .await;
    let port = port_for(23000, "item121");
    let sock = tmp.path().join("exapp.sock");
    let _app = unix_app(&sock, "app121").await;
    let _frpc = start_frpc(
        tmp.path(),
        "frpc",
        &single_proxy_toml(&h, "app121", port, &sock),
    );
    push_tunnel_meta(&h, "app121", port).await;
    let body = wait_ok(&h, "/exapps/app121/hello", &[], T).await;
    assert_eq!(body, "app121: GET /hello body=0");

    let payload = vec![0x5au8; 64 * 1024 * 1024];
    let r = client()
        .post(h.url("/exapps/app121/upload"))
        .body(payload)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        "app121: POST /upload body=67108864"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item124_remote_engine_reachable_via_docker_engine_port() {
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::builder()
        .with_frp_tls()
        .in_dir(tmp.path())
        .start()
        .await;
    let sock = tmp.path().join("docker.sock");
    let _engine = unix_app(&sock, "engine").await;
    let _frpc = start_frpc(
        tmp.path(),
        "engine",
        &single_proxy_toml(&h, "remote-engine", 24001, &sock),
    );
    let hdrs = [("harp-shared-key", KEY), ("docker-engine-port", "24001")];
    assert_eq!(wait_ok(&h, "/exapps/app_api/_ping", &hdrs, T).await, "OK");
    assert_eq!(
        wait_ok(&h, "/exapps/app_api/v1.44/_ping", &hdrs, T).await,
        "OK"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item122_wrong_token_rejected_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::builder()
        .with_frp_tls()
        .in_dir(tmp.path())
        .envs(&[("HP_BLACKLIST_COUNT", "2")])
        .start()
        .await;
    let port = port_for(23000, "item122");
    let sock = tmp.path().join("exapp.sock");
    let frpc = start_frpc(
        tmp.path(),
        "bad",
        &frpc_toml(
            h.frp,
            "not-the-key",
            Tls::Certs(&h.certs()),
            &[ProxySpec {
                name: "app122",
                port,
                unix: &sock,
            }],
        ),
    );
    frpc.wait_log("send Login request to plugin error", T).await;
    // frpc retries (loginFailExit = false) after ~2 s: the second failure bans 127.0.0.1.
    assert!(
        wait_until(T, || h.is_banned("127.0.0.1")).await,
        "wrong-token logins were not counted"
    );
    frpc.wait_log("banned", T).await;
    assert!(!h.has_tunnel(port));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item123_frpc_without_client_certificate_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::builder()
        .with_frp_tls()
        .in_dir(tmp.path())
        .start()
        .await;
    let port = port_for(23000, "item123");
    let sock = tmp.path().join("exapp.sock");
    let frpc = start_frpc(
        tmp.path(),
        "nocert",
        &frpc_toml(
            h.frp,
            KEY,
            Tls::NoClientCert(&h.certs()),
            &[ProxySpec {
                name: "app123",
                port,
                unix: &sock,
            }],
        ),
    );
    frpc.wait_log("connect to server error", T).await;
    assert!(!frpc.log_text().contains("login to server success"));
    // A plaintext client against the TLS-only server is dropped at the first byte too.
    let plain = start_frpc(
        tmp.path(),
        "plain",
        &frpc_toml(
            h.frp,
            KEY,
            Tls::Off,
            &[ProxySpec {
                name: "app123",
                port,
                unix: &sock,
            }],
        ),
    );
    plain.wait_log("connect to server error", T).await;
    assert!(!h.has_tunnel(port));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item125_port_outside_ranges_and_second_proxy_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::builder()
        .with_frp_tls()
        .in_dir(tmp.path())
        .start()
        .await;
    let port = port_for(23000, "item125");
    let second = port_for(23000, "second125");
    let bad = port_for(23000, "badname125");
    let sock = tmp.path().join("exapp.sock");
    let _app = unix_app(&sock, "app125").await;
    let two = start_frpc(
        tmp.path(),
        "two",
        &frpc_toml(
            h.frp,
            KEY,
            Tls::Certs(&h.certs()),
            &[
                ProxySpec {
                    name: "app125",
                    port,
                    unix: &sock,
                },
                ProxySpec {
                    name: "second",
                    port: second,
                    unix: &sock,
                },
            ],
        ),
    );
    two.wait_log("exceed the max_ports_per_client", T).await;
    // frpc registers its proxies in no fixed order: whichever came first wins, the other is
    // refused. Ports come from distinct tags so no other test's tunnel can sit on them.
    let registered = wait_until(T, || h.has_tunnel(port) || h.has_tunnel(second)).await;
    assert!(registered, "neither proxy was registered");
    assert!(
        !h.has_tunnel(port) || !h.has_tunnel(second),
        "one client may register only one proxy"
    );
    let outside = start_frpc(
        tmp.path(),
        "outside",
        &single_proxy_toml(&h, "app125b", 8080, &sock),
    );
    outside.wait_log("port not allowed", T).await;
    let bad_name = start_frpc(
        tmp.path(),
        "badname",
        &single_proxy_toml(&h, "Not-An-App", bad, &sock),
    );
    bad_name.wait_log("is not a valid app id", T).await;
    assert!(!h.has_tunnel(bad));
    h.shutdown().await;
}

/// Local address of listening TCP sockets on `port` from /proc/net/tcp{,6}.
fn listeners_on(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 3 && cols[3] == "0A" && cols[1].ends_with(&format!(":{port:04X}")) {
                out.push(cols[1].to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item126_tunnel_ports_bound_to_loopback_only() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::builder()
        .with_frp_tls()
        .in_dir(tmp.path())
        .start()
        .await;
    let port = port_for(23000, "item126");
    let sock = tmp.path().join("exapp.sock");
    let _app = unix_app(&sock, "app126").await;
    let frpc = start_frpc(
        tmp.path(),
        "frpc",
        &single_proxy_toml(&h, "app126", port, &sock),
    );
    h.wait_tunnel(port, T).await;
    assert_eq!(listeners_on(port), vec![format!("0100007F:{port:04X}")]);
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    c.write_all(b"GET /direct HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).await.unwrap();
    assert!(resp.ends_with("app126: GET /direct body=0"), "{resp}");
    drop(frpc);
    assert!(
        wait_until(T, || listeners_on(port).is_empty()).await,
        "loopback listener outlived its tunnel"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item127_frpc_and_harp_restarts_resume_routing() {
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::builder()
        .with_frp_tls()
        .in_dir(tmp.path())
        .start()
        .await;
    let port = port_for(23000, "item127");
    let sock = tmp.path().join("exapp.sock");
    let _app = unix_app(&sock, "app127").await;
    let toml = single_proxy_toml(&h, "app127", port, &sock);
    let mut frpc = start_frpc(tmp.path(), "frpc", &toml);
    push_tunnel_meta(&h, "app127", port).await;
    wait_ok(&h, "/exapps/app127/a", &[], T).await;

    // frpc gone: 503 at once (no connect timeout, no hang).
    frpc.kill();
    assert!(
        wait_until(T, || !h.has_tunnel(port)).await,
        "tunnel not dropped after frpc died"
    );
    let t0 = Instant::now();
    let (status, _) = get(&h, "/exapps/app127/a", &[]).await;
    assert_eq!(status, 503);
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "503 took {:?}",
        t0.elapsed()
    );

    // frpc back: routing resumes without restarting harp.
    let frpc2 = start_frpc(tmp.path(), "frpc2", &toml);
    wait_ok(&h, "/exapps/app127/b", &[], T).await;

    // harp restarted on the same FRP port: frpc reconnects by itself.
    let frp_addr = h.frp.to_string();
    h.shutdown().await;
    let h2 = Harness::builder()
        .with_frp_tls()
        .in_dir(tmp.path())
        .envs(&[("HP_FRP_ADDRESS", &frp_addr)])
        .start()
        .await;
    push_tunnel_meta(&h2, "app127", port).await;
    assert_eq!(
        wait_ok(&h2, "/exapps/app127/c", &[], Duration::from_secs(60)).await,
        "app127: GET /c body=0"
    );
    drop(frpc2);
    h2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item20_plain_tcp_mode_generates_no_certs_and_accepts_plain_frpc() {
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::builder()
        .with_frp_tls()
        .in_dir(tmp.path())
        .envs(&[("HP_FRP_DISABLE_TLS", "true")])
        .start()
        .await;
    assert!(!h.certs().exists());
    let port = port_for(23000, "item20");
    let sock = tmp.path().join("exapp.sock");
    let _app = unix_app(&sock, "app20").await;
    let _frpc = start_frpc(
        tmp.path(),
        "frpc",
        &frpc_toml(
            h.frp,
            KEY,
            Tls::Off,
            &[ProxySpec {
                name: "app20",
                port,
                unix: &sock,
            }],
        ),
    );
    push_tunnel_meta(&h, "app20", port).await;
    assert_eq!(
        wait_ok(&h, "/exapps/app20/x", &[], T).await,
        "app20: GET /x body=0"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_proxy_encryption_and_compression_honoured_with_real_frpc() {
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::builder()
        .with_frp_tls()
        .in_dir(tmp.path())
        .start()
        .await;
    let port = port_for(23000, "encrypted");
    let sock = tmp.path().join("exapp.sock");
    let _app = unix_app(&sock, "appenc").await;
    let toml = single_proxy_toml(&h, "appenc", port, &sock)
    .replace(
        &format!("remotePort = {port}\n"),
        &format!("remotePort = {port}\ntransport.useEncryption = true\ntransport.useCompression = true\n"),
    );
    let _frpc = start_frpc(tmp.path(), "frpc", &toml);
    push_tunnel_meta(&h, "appenc", port).await;
    wait_ok(&h, "/exapps/appenc/x", &[], T).await;
    assert_eq!(h.tunnel_wrapping(port), (true, true));
    let r = client()
        .post(h.url("/exapps/appenc/up"))
        .body(vec![7u8; 3 * 1024 * 1024 + 5])
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "appenc: POST /up body=3145733");
    h.shutdown().await;
}

#[tokio::test]
async fn unsupported_first_bytes_are_closed_without_reply() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::builder()
        .with_frp_tls()
        .in_dir(tmp.path())
        .envs(&[("HP_FRP_DISABLE_TLS", "true")])
        .start()
        .await;
    // frp wire protocol v2 magic, a raw (non-mux) Login, and garbage.
    for first in [
        &b"FRP\x00\x02\r\n"[..],
        b"o\x00\x00\x00\x00\x00\x00\x00\x02{}",
        b"\xff\xff",
    ] {
        let mut c = tokio::net::TcpStream::connect(h.frp).await.unwrap();
        c.write_all(first).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("closed promptly")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_level_heartbeats_answered_with_pong() {
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::builder()
        .with_frp_tls()
        .in_dir(tmp.path())
        .start()
        .await;
    let port = port_for(23000, "heartbeat");
    let sock = tmp.path().join("exapp.sock");
    let _app = unix_app(&sock, "apphb").await;
    let toml = single_proxy_toml(&h, "apphb", port, &sock).replace(
        "log.level",
        "transport.heartbeatInterval = 1\ntransport.heartbeatTimeout = 3\nlog.level",
    );
    let frpc = start_frpc(tmp.path(), "frpc", &toml);
    h.wait_tunnel(port, T).await;
    // Five answered heartbeats, 1 s apart, span more than frpc's 3 s heartbeat timeout: a
    // harp that stopped answering would have made frpc give up on the session by then.
    frpc.wait_log_count("receive heartbeat from server", 5, T)
        .await;
    assert_eq!(
        frpc.log_text().matches("login to server success").count(),
        1,
        "{}",
        frpc.log_text()
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_tls_first_byte_0x17_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::builder()
        .with_frp_tls()
        .in_dir(tmp.path())
        .start()
        .await;
    let port = port_for(23000, "firstbyte");
    let sock = tmp.path().join("exapp.sock");
    let _app = unix_app(&sock, "app17").await;
    let toml = single_proxy_toml(&h, "app17", port, &sock).replace(
        "log.level",
        "transport.tls.disableCustomTLSFirstByte = false\nlog.level",
    );
    let _frpc = start_frpc(tmp.path(), "frpc", &toml);
    push_tunnel_meta(&h, "app17", port).await;
    assert_eq!(
        wait_ok(&h, "/exapps/app17/z", &[], T).await,
        "app17: GET /z body=0"
    );
    h.shutdown().await;
}
