//! Bulk transfer through a real-frpc tunnel vs the same transfer to a plain TCP ExApp, in one
//! run (prints both rates). Asserts only a loose floor so a slow CI machine does not flake:
//! the point is that large single writes cross the tunnel intact and at a usable speed.

mod common;

use common::exapp::{tcp_app, unix_app};
use common::frpc::*;
use common::tunnel::start_rust_client;
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_upload_through_tunnel_vs_direct() {
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::builder()
        .with_frp_tls()
        .in_dir(tmp.path())
        .start()
        .await;
    let port = port_for(23000, "throughput");
    let sock = tmp.path().join("exapp.sock");
    let _app = unix_app(&sock, "bulk").await;
    let (direct, _tcp) = tcp_app("direct").await;
    let _frpc = start_frpc(
        tmp.path(),
        "frpc",
        &single_proxy_toml(&h, "bulk", port, &sock),
    );
    push_tunnel_meta(&h, "bulk", port).await;
    let body = format!(
        r#"{{"exapp_token":"t","exapp_version":"1","host":"127.0.0.1","port":{},"routes":[{{"url":".*","access_level":0,"bruteforce_protection":[]}}]}}"#,
        direct.port()
    );
    let r = client()
        .post(h.url("/exapps/app_api/exapp_storage/direct"))
        .header("harp-shared-key", KEY)
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    wait_ok(&h, "/exapps/bulk/warm", &[], Duration::from_secs(30)).await;
    // The same ExApp also behind `harp tunnel` (native client) on a second port.
    let port2 = port + 1;
    let _rust = start_rust_client(&single_proxy_toml(&h, "bulkrs", port2, &sock));
    push_tunnel_meta(&h, "bulkrs", port2).await;
    wait_ok(&h, "/exapps/bulkrs/warm", &[], Duration::from_secs(30)).await;

    let tunnel = upload_rate(&h, "/exapps/bulk/up", 64).await;
    let rust = upload_rate(&h, "/exapps/bulkrs/up", 64).await;
    let plain = upload_rate(&h, "/exapps/direct/up", 64).await;
    eprintln!("THROUGHPUT 64 MiB upload: through Go frpc tunnel (mTLS, frpc under qemu) {tunnel:.1} MiB/s; through harp tunnel (mTLS) {rust:.1} MiB/s; direct TCP {plain:.1} MiB/s");
    assert!(tunnel > 5.0, "tunnel throughput {tunnel:.1} MiB/s");
    h.shutdown().await;
}
