//! Contract §3: metadata lookups, caches, single flight and AppAPI's storage pushes.

mod common;

use common::exapp::StubExApp;
use common::nextcloud::StubNextcloud;
use common::*;
use serde_json::json;
use std::time::Duration;

fn public() -> serde_json::Value {
    json!([{"url": ".*", "access_level": 0, "bruteforce_protection": []}])
}

async fn get(h: &TestHarp, path: &str) -> reqwest::Response {
    client().get(h.url(path)).send().await.unwrap()
}

#[tokio::test]
async fn item82_index_php_base_url_is_normalised() {
    let nc = StubNextcloud::start().await;
    let app = StubExApp::start().await;
    nc.add_app("foo", meta(app.port(), public()));
    let h = Harness::builder()
        .nextcloud(&format!("http://{}/index.php/", nc.addr))
        .start()
        .await;
    assert_eq!(
        get(&h, "/exapps/foo/x").await.status(),
        200,
        "the stub only answers /index.php/apps/app_api/harp/exapp-meta"
    );
    assert_eq!(nc.state.meta_queries.lock()[0], "appId=foo");
}

#[tokio::test]
async fn item83_lookups_use_the_lowercase_id() {
    let nc = StubNextcloud::start().await;
    let app = StubExApp::start().await;
    nc.add_app("myapp", meta(app.port(), public()));
    let h = Harness::builder().nextcloud(&nc.url()).start().await;
    let r = get(&h, "/exapps/MyApp/x").await;
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().await.unwrap();
    assert_eq!(doc["headers"]["ex-app-id"], "MyApp");
    assert_eq!(nc.state.meta_queries.lock()[0], "appId=myapp");
}

#[tokio::test]
async fn item84_unknown_exapp_is_negatively_cached() {
    let nc = StubNextcloud::start().await;
    let h = Harness::builder().nextcloud(&nc.url()).start().await;
    assert_eq!(get(&h, "/exapps/ghost/x").await.status(), 404);
    assert_eq!(get(&h, "/exapps/ghost/y").await.status(), 404);
    assert_eq!(
        nc.meta_calls(),
        1,
        "second lookup within 15 s served from the negative cache"
    );
    *nc.state.meta_status.lock() = Some(404);
    assert_eq!(get(&h, "/exapps/other/x").await.status(), 404);
    assert_eq!(nc.meta_calls(), 2);
    // Expiry after 15 s is proven without waiting in nextcloud::cache::item84 (unit test).
}

#[tokio::test]
async fn item85_nextcloud_errors_are_404_uncached_unrecorded() {
    let nc = StubNextcloud::start().await;
    *nc.state.meta_status.lock() = Some(500);
    let h = Harness::builder().nextcloud(&nc.url()).start().await;
    assert_eq!(get(&h, "/exapps/foo/x").await.status(), 404);
    assert_eq!(get(&h, "/exapps/foo/x").await.status(), 404);
    assert_eq!(nc.meta_calls(), 2);
    assert_eq!(h.failures_of("127.0.0.1"), 0);
}

#[tokio::test]
async fn item85_nextcloud_down_is_404_quickly() {
    let free = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", free.local_addr().unwrap());
    drop(free);
    let h = Harness::builder().nextcloud(&url).start().await;
    let started = std::time::Instant::now();
    assert_eq!(get(&h, "/exapps/foo/x").await.status(), 404);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn item86_concurrent_misses_share_one_call() {
    let nc = StubNextcloud::start().await;
    let app = StubExApp::start().await;
    nc.add_app("foo", meta(app.port(), public()));
    *nc.state.meta_delay.lock() = Duration::from_millis(300);
    let h = Harness::builder().nextcloud(&nc.url()).start().await;
    let c = client();
    let reqs = (0..50).map(|i| c.get(h.url(&format!("/exapps/foo/{i}"))).send());
    for r in futures_util::future::join_all(reqs).await {
        assert_eq!(r.unwrap().status(), 200);
    }
    assert_eq!(nc.meta_calls(), 1);
}

#[tokio::test]
async fn cold_session_cache_asks_once_per_cookie_under_concurrency() {
    let nc = StubNextcloud::start().await;
    let app = StubExApp::start().await;
    nc.add_app(
        "foo",
        meta(
            app.port(),
            json!([{"url": ".*", "access_level": 1, "bruteforce_protection": []}]),
        ),
    );
    *nc.state.user_delay.lock() = Duration::from_millis(200);
    for i in 0..10 {
        nc.add_session(&format!("c{i}"), "alice", 1);
    }
    let h = Harness::builder().nextcloud(&nc.url()).start().await;
    let c = client();
    let reqs = (0..100).map(|i| {
        c.get(h.url("/exapps/foo/x"))
            .header("cookie", format!("oc_sessionPassphrase=c{}", i % 10))
            .send()
    });
    for r in futures_util::future::join_all(reqs).await {
        assert_eq!(r.unwrap().status(), 200);
    }
    assert_eq!(nc.user_calls(), 10);
}

#[tokio::test]
async fn item87_records_are_used_without_further_calls() {
    let nc = StubNextcloud::start().await;
    let app = StubExApp::start().await;
    nc.add_app("foo", meta(app.port(), public()));
    let h = Harness::builder().nextcloud(&nc.url()).start().await;
    for _ in 0..5 {
        assert_eq!(get(&h, "/exapps/foo/x").await.status(), 200);
    }
    assert_eq!(nc.meta_calls(), 1);
}

#[tokio::test]
async fn item88_pushed_record_takes_effect_at_once() {
    let nc = StubNextcloud::start().await;
    let app = StubExApp::start().await;
    let h = Harness::builder().nextcloud(&nc.url()).start().await;
    assert_eq!(
        get(&h, "/exapps/foo/x").await.status(),
        404,
        "negatively cached now"
    );
    push_meta(&h, "Foo", &meta(app.port(), public())).await;
    assert_eq!(get(&h, "/exapps/foo/x").await.status(), 200);
    assert_eq!(nc.meta_calls(), 1);
}

#[tokio::test]
async fn item89_delete_storage() {
    let nc = StubNextcloud::start().await;
    let h = Harness::builder().nextcloud(&nc.url()).start().await;
    push_meta(&h, "foo", &meta(1, public())).await;
    let del = || {
        client()
            .delete(h.url("/exapps/app_api/exapp_storage/foo"))
            .header("harp-shared-key", KEY)
            .send()
    };
    assert_eq!(del().await.unwrap().status(), 204);
    let r = del().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().await.unwrap(), "404: Not Found");
}

#[tokio::test]
async fn item90_storage_push_validation() {
    let nc = StubNextcloud::start().await;
    let h = Harness::builder().nextcloud(&nc.url()).start().await;
    let post = |body: &'static str| {
        client()
            .post(h.url("/exapps/app_api/exapp_storage/foo"))
            .header("harp-shared-key", KEY)
            .body(body)
            .send()
    };
    for bad in [
        r#"{"exapp_version":"1","host":"h","port":1}"#,
        r#"{"exapp_token":"t","exapp_version":"1","host":"h","port":"abc"}"#,
        "not json",
        "",
    ] {
        let r = post(bad).await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert!(r.text().await.unwrap().starts_with("400: Bad Request"));
    }
}

#[tokio::test]
async fn item91_hostnames_resolve_and_unresolvable_is_404() {
    let nc = StubNextcloud::start().await;
    let app = StubExApp::start().await;
    let mut doc = meta(app.port(), public());
    doc["host"] = json!("localhost");
    nc.add_app("named", doc.clone());
    doc["host"] = json!("no-such-host.invalid");
    nc.add_app("lost", doc);
    let h = Harness::builder().nextcloud(&nc.url()).start().await;
    assert_eq!(get(&h, "/exapps/named/x").await.status(), 200);
    assert_eq!(get(&h, "/exapps/lost/x").await.status(), 404);
    assert_eq!(h.failures_of("127.0.0.1"), 0);
}

#[tokio::test]
async fn item92_93_target_path_and_query() {
    let nc = StubNextcloud::start().await;
    let app = StubExApp::start().await;
    nc.add_app("foo", meta(app.port(), public()));
    let h = Harness::builder().nextcloud(&nc.url()).start().await;
    for (path, target) in [
        ("/exapps/foo", "/"),
        ("/exapps/foo?q=1", "/?q=1"),
        ("/exapps/foo/a?x=1&y=%20", "/a?x=1&y=%20"),
        // Other escapes are forwarded with upper-case hex (path normalisation; `%2F` is a 400).
        ("/exapps/foo/a%3ab/c", "/a%3Ab/c"),
    ] {
        let doc: serde_json::Value = get(&h, path).await.json().await.unwrap();
        assert_eq!(doc["target"], target, "{path}");
    }
}

#[tokio::test]
async fn pushed_hostname_is_resolved_again_after_a_connect_failure() {
    let nc = StubNextcloud::start().await;
    let h = Harness::builder().nextcloud(&nc.url()).start().await;
    let free = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let mut doc = meta(port, public());
    doc["host"] = json!("localhost");
    push_meta(&h, "foo", &doc).await;
    assert_eq!(get(&h, "/exapps/foo/x").await.status(), 503);
    let resolved = h.cached_resolved_ip("foo");
    assert_eq!(
        resolved, None,
        "a connect failure forgets the resolved address"
    );
    let app = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let serve = tokio::spawn(async move {
        let (mut s, _) = app.accept().await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
    });
    assert_eq!(get(&h, "/exapps/foo/x").await.status(), 200);
    assert!(h.cached_resolved_ip("foo").is_some());
    serve.await.unwrap();
}
