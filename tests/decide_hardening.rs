//! Decision-side hardening (issue #13) through a real socket: abandoned Nextcloud lookups are
//! released, paths are normalised before every decision, engine ports stay inside the port plan.

mod common;

use common::exapp::StubExApp;
use common::nextcloud::StubNextcloud;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Polls `cond` every 10 ms until it holds or `within` passes.
async fn eventually(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn abandoned_lookups_close_their_nextcloud_connections() {
    let nc = StubNextcloud::start().await;
    nc.hang();
    let h = start_harp(&nc.url(), &[]).await;
    let app = StubExApp::start().await;
    // `foo` is known (pushed), so its requests wait on user-info; `gone<i>` wait on exapp-meta.
    push_meta(&h, "foo", &meta(app.port(), json!([]))).await;
    const EACH: usize = 8;
    let mut clients = Vec::new();
    for i in 0..EACH {
        for request in [
            format!("GET /exapps/gone{i}/x HTTP/1.1\r\nHost: x\r\n\r\n"),
            format!(
                "GET /exapps/foo/x HTTP/1.1\r\nHost: x\r\nCookie: oc_sessionPassphrase=c{i}\r\n\r\n"
            ),
        ] {
            let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            clients.push(s);
        }
    }
    eventually("every lookup reached Nextcloud", Duration::from_secs(10), || {
        nc.hanging_open() == 2 * EACH
    })
    .await;
    assert_eq!(h.state.nextcloud.lookups_in_flight(), 2 * EACH);
    drop(clients);
    eventually(
        "harp closed every connection to Nextcloud",
        Duration::from_secs(10),
        || nc.hanging_open() == 0,
    )
    .await;
    assert_eq!(
        h.state.nextcloud.lookups_in_flight(),
        0,
        "no stale single-flight entry is left"
    );
}
