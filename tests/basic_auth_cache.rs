//! The Basic-auth cache (issue #14 item 2, an improvement over contract §2.6): requests carrying
//! only `Authorization` are answered from a cache keyed by a keyed digest of the credential, with
//! one user-info call per credential under a burst, never for a wrong password.

mod common;

use common::exapp::StubExApp;
use common::nextcloud::StubNextcloud;
use common::*;
use futures_util::future::join_all;
use serde_json::json;
use std::time::Duration;

/// `alice:secret-pw` and `bob:other-pw`, as clients send them.
const ALICE: &str = "Basic YWxpY2U6c2VjcmV0LXB3";
const BOB: &str = "Basic Ym9iOm90aGVyLXB3";
/// `alice:wrong-guess`: Nextcloud answers it as anonymous (`user_id: ""`).
const WRONG: &str = "Basic YWxpY2U6d3JvbmctZ3Vlc3M=";
/// Concurrent requests in one burst.
const BURST: usize = 40;

struct World {
    nc: StubNextcloud,
    _app: StubExApp,
    harp: TestHarp,
}

fn routes() -> serde_json::Value {
    json!([{"url": "^/api", "access_level": 1, "bruteforce_protection": []}])
}

async fn world(extra: &[(&str, &str)]) -> World {
    let nc = StubNextcloud::start().await;
    let app = StubExApp::start().await;
    nc.add_app("foo", meta(app.port(), routes()));
    {
        let mut basic = nc.state.basic.lock();
        basic.insert(ALICE.into(), ("alice".into(), 1));
        basic.insert(BOB.into(), ("bob".into(), 1));
    }
    // Long enough that every request of a burst is waiting while the first call is in flight.
    *nc.state.user_delay.lock() = Duration::from_millis(300);
    let harp = Harness::builder()
        .nextcloud(&nc.url())
        .envs(&[("HP_SESSION_LIFETIME", "10")])
        .envs(extra)
        .start()
        .await;
    World {
        nc,
        _app: app,
        harp,
    }
}

async fn status(w: &World, authorization: &str) -> u16 {
    client()
        .get(w.harp.url("/exapps/foo/api/x"))
        .header("authorization", authorization)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn burst(w: &World, authorization: &str) -> Vec<u16> {
    join_all((0..BURST).map(|_| status(w, authorization))).await
}

#[tokio::test]
async fn a_burst_with_one_credential_asks_nextcloud_once() {
    let w = world(&[]).await;
    assert!(burst(&w, ALICE).await.iter().all(|s| *s == 200));
    assert_eq!(
        w.nc.user_calls(),
        1,
        "one user-info call for the whole burst"
    );
    assert!(burst(&w, ALICE).await.iter().all(|s| *s == 200));
    assert_eq!(
        w.nc.user_calls(),
        1,
        "later requests are served from the cache"
    );
}

#[tokio::test]
async fn different_credentials_ask_once_each() {
    let w = world(&[]).await;
    let (a, b) = tokio::join!(burst(&w, ALICE), burst(&w, BOB));
    assert!(a.iter().chain(&b).all(|s| *s == 200));
    assert_eq!(w.nc.user_calls(), 2);
}

#[tokio::test]
async fn the_off_switch_asks_for_every_request() {
    let w = world(&[("HP_BASIC_AUTH_CACHE", "false")]).await;
    for _ in 0..3 {
        assert_eq!(status(&w, ALICE).await, 200);
    }
    assert_eq!(w.nc.user_calls(), 3);
}

#[tokio::test]
async fn a_wrong_password_is_never_served_from_the_cache() {
    let w = world(&[]).await;
    assert_eq!(status(&w, ALICE).await, 200);
    assert_eq!(w.nc.user_calls(), 1);
    for n in 1..=3 {
        assert_ne!(status(&w, WRONG).await, 200, "a wrong password is refused");
        assert_eq!(w.nc.user_calls(), 1 + n, "every wrong guess asks Nextcloud");
    }
    assert_eq!(
        w.harp.failures_of("127.0.0.1"),
        3,
        "every wrong guess is recorded"
    );
    // A wrong answer cached under the right credential's key would show here.
    assert_eq!(status(&w, ALICE).await, 200);
    assert_eq!(w.nc.user_calls(), 4);
}

#[tokio::test]
async fn a_cookie_header_bypasses_the_cache() {
    let w = world(&[]).await;
    for _ in 0..2 {
        let r = client()
            .get(w.harp.url("/exapps/foo/api/x"))
            .header("authorization", ALICE)
            .header("cookie", "nc_other=1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        w.nc.user_calls(),
        2,
        "Nextcloud may read other cookies: no caching"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credential_never_reaches_a_log_line() {
    let nc = StubNextcloud::start().await;
    let app = StubExApp::start().await;
    nc.add_app("foo", meta(app.port(), routes()));
    nc.state
        .basic
        .lock()
        .insert(ALICE.into(), ("alice".into(), 1));
    let harp = Harness::builder()
        .nextcloud(&nc.url())
        .envs(&[("HP_LOG_LEVEL", "debug")])
        .spawn_process();
    for auth in [ALICE, ALICE, WRONG] {
        client()
            .get(harp.url("/exapps/foo/api/x"))
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
    }
    // The access line for the last request is written after its answer: wait for it.
    let logged = wait_until(Duration::from_secs(5), || {
        harp.logs().iter().filter(|l| l.contains("/api/x")).count() >= 3
    })
    .await;
    let logs = harp.logs();
    assert!(logged, "three access lines expected: {logs:#?}");
    for secret in [
        "YWxpY2U6c2VjcmV0LXB3",
        "secret-pw",
        "YWxpY2U6d3JvbmctZ3Vlc3M",
        "wrong-guess",
    ] {
        assert!(
            logs.iter().all(|l| !l.contains(secret)),
            "{secret} logged: {logs:#?}"
        );
    }
}

/// The sample of `series` (exact name and labels) in harp's /metrics text.
async fn metric(w: &World, series: &str) -> Option<f64> {
    let addr = w.harp.metrics.expect("metrics listener bound");
    let text = client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn basic_auth_lookups_count_as_nextcloud_calls_and_cache_hits() {
    let w = world(&[("HP_METRICS_ADDRESS", "127.0.0.1:0")]).await;
    for _ in 0..3 {
        assert_eq!(status(&w, ALICE).await, 200);
    }
    assert_eq!(w.nc.user_calls(), 1);
    assert_eq!(
        metric(
            &w,
            r#"harp_nextcloud_calls_total{call="user_info",result="ok"}"#
        )
        .await,
        Some(1.0)
    );
    assert_eq!(
        metric(
            &w,
            r#"harp_nextcloud_cache_total{call="user_info",result="hit"}"#
        )
        .await,
        Some(2.0)
    );
    assert_eq!(
        metric(
            &w,
            r#"harp_nextcloud_cache_total{call="user_info",result="miss"}"#
        )
        .await,
        Some(1.0)
    );
}
