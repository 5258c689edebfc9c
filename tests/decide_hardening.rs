//! Decision-side hardening (issue #13) through a real socket: abandoned Nextcloud lookups are
//! released, paths are normalised before every decision, engine ports stay inside the port plan.

mod common;

use common::exapp::StubExApp;
use common::nextcloud::StubNextcloud;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Polls `cond` until it holds; fails naming `what` when `within` passes.
async fn eventually(what: &str, within: Duration, cond: impl FnMut() -> bool) {
    assert!(
        wait_until(within, cond).await,
        "timed out waiting for: {what}"
    );
}

#[tokio::test]
async fn abandoned_lookups_close_their_nextcloud_connections() {
    let nc = StubNextcloud::start().await;
    nc.hang();
    let h = Harness::builder().nextcloud(&nc.url()).start().await;
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
    eventually(
        "every lookup reached Nextcloud",
        Duration::from_secs(10),
        || nc.hanging_open() == 2 * EACH,
    )
    .await;
    assert_eq!(h.lookups_in_flight(), 2 * EACH);
    drop(clients);
    eventually(
        "harp closed every connection to Nextcloud",
        Duration::from_secs(10),
        || nc.hanging_open() == 0,
    )
    .await;
    assert_eq!(
        h.lookups_in_flight(),
        0,
        "no stale single-flight entry is left"
    );
}

/// The bypass set-up of the attack run: routes `^/admin` ADMIN and `^/` PUBLIC.
async fn admin_and_public() -> (StubNextcloud, StubExApp, TestHarp) {
    let nc = StubNextcloud::start().await;
    let app = StubExApp::start().await;
    let routes = json!([
        {"url": "^/admin", "access_level": 2, "bruteforce_protection": []},
        {"url": "^/", "access_level": 0, "bruteforce_protection": []},
    ]);
    nc.add_app("foo", meta(app.port(), routes));
    let h = Harness::builder().nextcloud(&nc.url()).start().await;
    (nc, app, h)
}

#[tokio::test]
async fn encoded_internal_endpoints_never_reach_the_exapp_unsigned() {
    let (_nc, app, h) = admin_and_public().await;
    for path in [
        "/exapps/foo/%65nabled?enabled=0",
        "/exapps/foo//enabled?enabled=0",
        "/exapps/foo/./enabled?enabled=0",
        "/exapps/foo/%61dmin",
    ] {
        let method = if path.contains("admin") { "GET" } else { "PUT" };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let out = raw_exchange(h.addr, request.as_bytes(), Duration::from_secs(5))
            .await
            .unwrap();
        let head = String::from_utf8_lossy(&out);
        assert!(
            out.is_empty() || head.starts_with("HTTP/1.1 403"),
            "{path}: dropped (internal endpoint) or 403 (admin route), got {head:?}"
        );
    }
    assert_eq!(
        app.requests.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing reached the ExApp"
    );
}

#[tokio::test]
async fn the_exapp_receives_the_normalised_path_and_the_original_query() {
    let (_nc, _app, h) = admin_and_public().await;
    let r = client()
        .get(h.url("/exapps/%66oo//api/./%7Euser%3a/x?q=%2F..%2f&r=./"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["target"], "/api/~user%3A/x?q=%2F..%2f&r=./");
}

#[tokio::test]
async fn ambiguous_paths_are_400_and_not_recorded() {
    let (_nc, app, h) = admin_and_public().await;
    for path in [
        "/exapps/foo/a%2Fb",
        "/exapps/foo/a%5Cb",
        "/exapps/foo/a%00b",
        "/exapps/foo/a%zz",
        "/exapps/foo/a%C3",
        "/exapps/foo%2Fx/y",
        "/exapps/app_api/exapp_storage/foo%5Cbar",
    ] {
        let r = client().get(h.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
        assert!(
            r.text().await.unwrap().starts_with("invalid path"),
            "{path}"
        );
    }
    assert_eq!(h.failures_of("127.0.0.1"), 0);
    assert_eq!(app.requests.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn engine_ports_outside_the_plan_are_400_and_nothing_is_dialled() {
    let (_nc, app, h) = admin_and_public().await;
    // The stub ExApp stands in for any loopback service an attacker would aim at.
    for port in [app.port().to_string(), "23999".into(), "24100".into()] {
        let r = client()
            .get(h.url("/exapps/app_api/v1.44/_ping"))
            .header("harp-shared-key", KEY)
            .header("docker-engine-port", &port)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{port}");
        let body = r.text().await.unwrap();
        assert!(
            body.contains("docker-engine-port") && body.contains("24000-24099"),
            "{body}"
        );
    }
    assert_eq!(
        app.connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing was dialled"
    );
}

#[tokio::test]
async fn encoded_image_names_pass_through_to_the_engine() {
    let (_nc, app, h) = admin_and_public().await;
    let engine = std::net::SocketAddr::from(([127, 0, 0, 1], app.port()));
    let _tunnel = h.engine_tunnel(24094, engine).await;
    let r = client()
        .get(h.url("/exapps/app_api/v1.44/images/ghcr.io%2Fnextcloud%2Fapp%3alatest/json"))
        .header("harp-shared-key", KEY)
        .header("docker-engine-port", "24094")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(
        doc["target"],
        "/v1.44/images/ghcr.io%2Fnextcloud%2Fapp%3Alatest/json"
    );
}
