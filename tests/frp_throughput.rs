//! Bulk transfer through a real-frpc tunnel and through `harp tunnel`, vs the same transfer
//! to a plain TCP ExApp, in one run (prints the three rates). Every upload must arrive byte
//! for byte (length and checksum as the ExApp saw them) and each path must reach a floor: a
//! fixed fraction of what this path measured on the project's shared 2-core machine, low
//! enough for a loaded CI runner, high enough that a path degraded to a crawl (a stalled
//! flow-control window, per-byte copies, a lost wake-up) fails.

mod common;

use common::exapp::{tcp_app, unix_app};
use common::frpc::*;
use common::tunnel::start_rust_client;
use common::*;
use std::time::Duration;

// Floors in MiB/s for a 64 MiB upload (debug build, the checksum computed on the way).
// Measured on the shared 2-core machine with four other builds running (load average 6):
// Go frpc (emulated with qemu there) 8.7, harp tunnel 40.8 (floor: HARP_TUNNEL_FLOOR in
// common::frpc), direct 65.6. The direct floor is about a fifth of that; the Go frpc floor is
// the 5 MiB/s this test always asserted (about 60 %, since qemu leaves less headroom).
const FRPC_FLOOR: f64 = 5.0;
const DIRECT_FLOOR: f64 = 12.0;

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
    push_tunnel_meta(&h, "direct", direct.port()).await;
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
    assert!(
        tunnel >= FRPC_FLOOR,
        "through the Go frpc tunnel: {tunnel:.1} MiB/s, floor {FRPC_FLOOR} MiB/s"
    );
    assert!(
        rust >= HARP_TUNNEL_FLOOR,
        "through harp tunnel: {rust:.1} MiB/s, floor {HARP_TUNNEL_FLOOR} MiB/s"
    );
    assert!(
        plain >= DIRECT_FLOOR,
        "direct: {plain:.1} MiB/s, floor {DIRECT_FLOOR} MiB/s"
    );
    h.shutdown().await;
}
