//! The pooled work stream frpc opens stays idle for more than 80 s: harp must ACK it at once
//! (frpc drops the whole session after 75 s without an ACK) and answer frpc's keep-alive
//! pings, so the session — and the run id — survive and the ExApp stays reachable.

mod common;

use common::exapp::unix_app;
use common::frpc::*;
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_work_stream_and_session_survive_85s() {
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::builder()
        .with_frp_tls()
        .in_dir(tmp.path())
        .start()
        .await;
    let port = port_for(23000, "idle");
    let sock = tmp.path().join("exapp.sock");
    let _app = unix_app(&sock, "appidle").await;
    let frpc = start_frpc(
        tmp.path(),
        "frpc",
        &single_proxy_toml(&h, "appidle", port, &sock),
    );
    push_tunnel_meta(&h, "appidle", port).await;
    wait_ok(&h, "/exapps/appidle/warm", &[], Duration::from_secs(30)).await;
    let run_id = h.tunnels.proxy(port).unwrap().control.run_id.clone();
    tokio::time::sleep(Duration::from_secs(85)).await;
    let (status, body) = get(&h, "/exapps/appidle/late", &[]).await;
    assert_eq!((status, body.as_str()), (200, "appidle: GET /late body=0"));
    let log = frpc.log_text();
    assert_eq!(
        log.matches("login to server success").count(),
        1,
        "frpc reconnected:\n{log}"
    );
    assert_eq!(h.tunnels.proxy(port).unwrap().control.run_id, run_id);
    h.shutdown().await;
}
