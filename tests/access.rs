//! Contract §2 through a real socket: the access pipeline against a stub Nextcloud and ExApp.
//! Test names carry the checklist item (contract §9) they prove.

mod common;

use base64::Engine as _;
use common::exapp::StubExApp;
use common::nextcloud::{StubNextcloud, UserMode};
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// How long a test waits for a ban or a cache entry to expire (its lifetime is far shorter).
const LIFT_DEADLINE: Duration = Duration::from_secs(10);
/// How often a test looks again while waiting for an expiry.
const POLL: Duration = Duration::from_millis(20);

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn routes() -> Value {
    json!([
        {"url": "^/public", "access_level": 0, "bruteforce_protection": []},
        {"url": "^/api/admin", "access_level": 2, "bruteforce_protection": []},
        {"url": "^/api", "access_level": 1, "bruteforce_protection": []},
        {"url": "^/(unclosed", "access_level": 0, "bruteforce_protection": []},
        {"url": "^/API_UPPER", "access_level": 0, "bruteforce_protection": []},
        {"url": "^/open/(?!private)", "access_level": 0, "bruteforce_protection": []},
        {"url": "^/status/", "access_level": 0, "bruteforce_protection": [401]},
        {"url": "^$", "access_level": 0, "bruteforce_protection": []},
        {"url": "^/$", "access_level": 0, "bruteforce_protection": []},
    ])
}

struct World {
    nc: StubNextcloud,
    app: StubExApp,
    harp: TestHarp,
}

async fn world(extra: &[(&str, &str)]) -> World {
    let nc = StubNextcloud::start().await;
    let app = StubExApp::start().await;
    nc.add_app("foo", meta(app.port(), routes()));
    let harp = Harness::builder()
        .nextcloud(&nc.url())
        .envs(extra)
        .start()
        .await;
    World { nc, app, harp }
}

async fn get(w: &World, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut rb = client().get(w.harp.url(path));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

async fn echo(w: &World, path: &str, headers: &[(&str, &str)]) -> Value {
    let r = get(w, path, headers).await;
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

fn signed(key: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("ex-app-version", "9.9.9"),
        ("ex-app-id", "foo"),
        ("ex-app-host", "127.0.0.1"),
        ("ex-app-port", "1"),
        ("authorization-app-api", "YWRtaW46YXBwc2VjcmV0"),
        ("harp-shared-key", key),
    ]
}

const ME: &str = "127.0.0.1";

#[tokio::test]
async fn item31_no_app_id_is_404_and_recorded() {
    let w = world(&[]).await;
    let r = get(&w, "/exapps/", &[]).await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.text().await.unwrap(), "404 Not Found");
    assert_eq!(w.harp.failures_of(ME), 1);
}

#[tokio::test]
async fn item32_no_app_id_with_key_is_not_recorded() {
    let w = world(&[]).await;
    assert_eq!(
        get(&w, "/exapps/", &[("harp-shared-key", KEY)])
            .await
            .status(),
        404
    );
    assert_eq!(w.harp.failures_of(ME), 0);
}

#[tokio::test]
async fn item33_parent_segments_drop_the_connection() {
    let w = world(&[]).await;
    for p in [
        "/exapps/foo/a/../b",
        "/exapps/foo/a/%2e%2E/b",
        "/exapps/foo/a%2F..%2Fb",
        "/exapps/foo/..",
    ] {
        let req = format!("GET {p} HTTP/1.1\r\nHost: x\r\n\r\n");
        let out = raw_exchange(w.harp.addr, req.as_bytes(), Duration::from_secs(5))
            .await
            .unwrap();
        assert!(
            out.is_empty(),
            "{p}: expected no response bytes, got {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    assert_eq!(w.harp.failures_of(ME), 4);
    assert_eq!(w.app.requests.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn item34_triple_dots_are_not_parent_segments() {
    let w = world(&[]).await;
    let doc = echo(&w, "/exapps/foo/public/.../b", &[]).await;
    assert_eq!(doc["target"], "/public/.../b");
}

#[tokio::test]
async fn item35_ban_drops_even_requests_with_a_valid_key() {
    let w = world(&[("HP_BLACKLIST_COUNT", "3")]).await;
    for _ in 0..3 {
        assert_eq!(get(&w, "/exapps/", &[]).await.status(), 404);
    }
    let req =
        format!("GET /exapps/app_api/info HTTP/1.1\r\nHost: x\r\nharp-shared-key: {KEY}\r\n\r\n");
    let out = raw_exchange(w.harp.addr, req.as_bytes(), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(out.is_empty(), "banned client must get no response");
}

#[tokio::test]
async fn item36_ban_lifts_after_the_window() {
    let w = world(&[("HP_BLACKLIST_COUNT", "2"), ("HP_BLACKLIST_WINDOW", "1")]).await;
    // The window counts from the first failure, so the clock starts before it is made: taken
    // after it, a slow first request let the lift look early under load.
    let before_ban = Instant::now();
    get(&w, "/exapps/", &[]).await;
    get(&w, "/exapps/", &[]).await;
    assert!(w.harp.is_banned(ME));
    // Poll for the lift itself rather than sleeping "a bit longer than" the window.
    assert!(
        wait_until(LIFT_DEADLINE, || !w.harp.is_banned(ME)).await,
        "the ban did not lift within {LIFT_DEADLINE:?}"
    );
    assert!(
        before_ban.elapsed() >= Duration::from_secs(1),
        "the ban lifted before its 1 s window ({:?})",
        before_ban.elapsed()
    );
    assert_eq!(get(&w, "/exapps/foo/public", &[]).await.status(), 200);
}

#[tokio::test]
async fn item37_refused_requests_do_not_extend_the_ban() {
    let w = world(&[("HP_BLACKLIST_COUNT", "2"), ("HP_BLACKLIST_WINDOW", "300")]).await;
    get(&w, "/exapps/", &[]).await;
    get(&w, "/exapps/", &[]).await;
    for _ in 0..5 {
        let _ = raw_exchange(
            w.harp.addr,
            b"GET /exapps/ HTTP/1.1\r\nHost: x\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
    }
    assert_eq!(w.harp.failures_of(ME), 2);
}

#[tokio::test]
async fn item38_trusted_proxy_failures_hit_the_forwarded_client() {
    let w = world(&[("HP_TRUSTED_PROXY_IPS", "127.0.0.1")]).await;
    get(
        &w,
        "/exapps/",
        &[("x-forwarded-for", "203.0.113.5, 10.0.0.1")],
    )
    .await;
    assert_eq!(w.harp.failures_of("203.0.113.5"), 1);
    assert_eq!(w.harp.failures_of(ME), 0);
    let untrusted = world(&[("HP_TRUSTED_PROXY_IPS", "10.0.0.0/8")]).await;
    get(
        &untrusted,
        "/exapps/",
        &[("x-forwarded-for", "203.0.113.5")],
    )
    .await;
    assert_eq!(untrusted.harp.failures_of(ME), 1);
    assert_eq!(untrusted.harp.failures_of("203.0.113.5"), 0);
}

#[tokio::test]
async fn item39_garbage_forwarded_for_falls_back_to_real_ip() {
    let w = world(&[("HP_TRUSTED_PROXY_IPS", "127.0.0.1")]).await;
    get(
        &w,
        "/exapps/",
        &[
            ("x-forwarded-for", "garbage"),
            ("x-real-ip", "198.51.100.7"),
        ],
    )
    .await;
    assert_eq!(w.harp.failures_of("198.51.100.7"), 1);
}

#[tokio::test]
async fn item40_each_keepalive_request_is_authorised() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = world(&[]).await;
    let mut s = tokio::net::TcpStream::connect(w.harp.addr).await.unwrap();
    s.write_all(b"GET /exapps/foo/public HTTP/1.1\r\nHost: x\r\n\r\nGET /exapps/foo/api/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("HTTP/1.1 403 Forbidden"), "{text}");
}

#[tokio::test]
async fn item41_app_api_without_key_is_401_and_recorded() {
    let w = world(&[]).await;
    let r = get(&w, "/exapps/app_api/info", &[]).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.text().await.unwrap(), "401 Unauthorized");
    assert_eq!(
        get(&w, "/exapps/app_api/info", &[("harp-shared-key", "nope")])
            .await
            .status(),
        401
    );
    assert_eq!(w.harp.failures_of(ME), 2);
}

#[tokio::test]
async fn item42_info_with_key() {
    let w = world(&[]).await;
    let r = get(&w, "/exapps/app_api/info", &[("harp-shared-key", KEY)]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let doc: Value = r.json().await.unwrap();
    // Project decision 4: harp reports its own semver, always >= the reference's 0.4.4.
    let v: Vec<u32> = doc["version"]
        .as_str()
        .unwrap()
        .split('.')
        .map(|p| p.parse().unwrap())
        .collect();
    assert!((v[0], v[1], v[2]) >= (0, 4, 4), "{doc}");
    assert_eq!(doc["docker"], true);
    assert_eq!(doc["kubernetes"]["enabled"], false);
    assert_eq!(w.harp.failures_of(ME), 0);
}

#[tokio::test]
async fn item43_uppercase_app_api_is_an_ordinary_exapp() {
    let w = world(&[]).await;
    assert_eq!(
        get(&w, "/exapps/APP_API/info", &[("harp-shared-key", KEY)])
            .await
            .status(),
        404
    );
    assert_eq!(w.nc.meta_calls(), 1, "looked up as an ExApp");
    assert!(w.nc.state.meta_queries.lock()[0].ends_with("appId=app_api"));
}

#[tokio::test]
async fn item49_engine_header_on_info_hits_the_allow_list() {
    let w = world(&[]).await;
    let r = get(
        &w,
        "/exapps/app_api/info",
        &[("harp-shared-key", KEY), ("docker-engine-port", "24000")],
    )
    .await;
    assert_eq!(r.status(), 403);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("not in harp's Docker API allow-list"));
    assert_eq!(w.harp.failures_of(ME), 0);
}

#[tokio::test]
async fn item51_non_numeric_engine_port_is_400() {
    let w = world(&[]).await;
    let r = get(
        &w,
        "/exapps/app_api/_ping",
        &[("harp-shared-key", KEY), ("docker-engine-port", "abc")],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("docker-engine-port"));
}

#[tokio::test]
async fn item52_engine_refused_is_503_and_silent_engine_is_504() {
    let w = world(&[("HP_TIMEOUT_SERVER", "500ms")]).await;
    // A port of the plan that no tunnel holds answers 503 at once.
    let r = get(
        &w,
        "/exapps/app_api/_ping",
        &[("harp-shared-key", KEY), ("docker-engine-port", "24098")],
    )
    .await;
    assert_eq!(r.status(), 503);
    let (silent, _t) = common::exapp::silent_server().await;
    let _tunnel = w.harp.engine_tunnel(24097, silent).await;
    let started = std::time::Instant::now();
    let r = get(
        &w,
        "/exapps/app_api/_ping",
        &[("harp-shared-key", KEY), ("docker-engine-port", "24097")],
    )
    .await;
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn engine_passthrough_keeps_path_query_and_strips_harp_headers() {
    let w = world(&[]).await;
    let app = std::net::SocketAddr::from(([127, 0, 0, 1], w.app.port()));
    let _tunnel = w.harp.engine_tunnel(24096, app).await;
    let r = client()
        .post(
            w.harp
                .url("/exapps/app_api/v1.44/images/create?fromImage=x%2Fy&tag=1"),
        )
        .header("harp-shared-key", KEY)
        .header("docker-engine-port", "24096")
        .header("authorization", "Basic c2VjcmV0")
        .header("x-registry-auth", "e30=")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["target"], "/v1.44/images/create?fromImage=x%2Fy&tag=1");
    let h = &doc["headers"];
    assert_eq!(h["x-registry-auth"], "e30=");
    for gone in ["harp-shared-key", "docker-engine-port", "authorization"] {
        assert!(h.get(gone).is_none(), "{gone} must not reach the engine");
    }
}

#[tokio::test]
async fn item53_signed_with_wrong_key_is_dropped_and_recorded() {
    let w = world(&[]).await;
    let mut req = String::from("GET /exapps/foo/heartbeat HTTP/1.1\r\nHost: x\r\n");
    for (k, v) in signed("wrong") {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let out = raw_exchange(w.harp.addr, req.as_bytes(), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(out.is_empty());
    assert_eq!(w.harp.failures_of(ME), 1);
}

#[tokio::test]
async fn item54_signed_unknown_exapp_goes_to_header_host_and_port() {
    let w = world(&[]).await;
    let port = w.app.port().to_string();
    let mut h = signed(KEY);
    h[3] = ("ex-app-port", Box::leak(port.into_boxed_str()));
    let doc = echo(&w, "/exapps/newapp/init", &h).await;
    assert_eq!(doc["target"], "/init");
    assert_eq!(
        doc["headers"]["authorization-app-api"],
        "YWRtaW46YXBwc2VjcmV0"
    );
    assert_eq!(doc["headers"]["ex-app-version"], "9.9.9");
    // Fallback records are never cached: an unsigned request still finds no such ExApp.
    assert_eq!(get(&w, "/exapps/newapp/", &[]).await.status(), 404);
    assert!(!w.harp.is_meta_cached("newapp"));
}

#[tokio::test]
async fn item55_56_signed_known_exapp_uses_metadata_and_skips_routes() {
    let w = world(&[]).await;
    // ex-app-port says 1 (nothing there): the record's port must win.
    let doc = echo(&w, "/exapps/foo/no/route/matches", &signed(KEY)).await;
    assert_eq!(doc["target"], "/no/route/matches");
    assert_eq!(doc["headers"]["ex-app-version"], "1.2.3");
    assert_eq!(w.harp.failures_of(ME), 0);
}

#[tokio::test]
async fn item57_signed_internal_endpoints_reach_the_exapp() {
    let w = world(&[]).await;
    for ep in ["/heartbeat", "/init", "/enabled?enabled=1"] {
        let doc = echo(&w, &format!("/exapps/foo{ep}"), &signed(KEY)).await;
        assert_eq!(doc["target"], ep);
    }
}

#[tokio::test]
async fn item58_unsigned_internal_endpoints() {
    let w = world(&[]).await;
    for ep in ["/heartbeat", "/init", "/enabled?enabled=1"] {
        let req = format!("GET /exapps/foo{ep} HTTP/1.1\r\nHost: x\r\n\r\n");
        let out = raw_exchange(w.harp.addr, req.as_bytes(), Duration::from_secs(5))
            .await
            .unwrap();
        assert!(out.is_empty(), "{ep} must be dropped");
    }
    assert_eq!(w.harp.failures_of(ME), 3);
    assert_eq!(
        get(&w, "/exapps/unknown/heartbeat", &[]).await.status(),
        404
    );
}

#[tokio::test]
async fn item59_60_injected_headers_replace_client_copies() {
    let w = world(&[]).await;
    let doc = echo(
        &w,
        "/exapps/Foo/public",
        &[
            ("ex-app-id", "evil"),
            ("ex-app-version", "0"),
            ("aa-version", "1"),
            ("authorization-app-api", "forged"),
            ("x-custom", "kept"),
        ],
    )
    .await;
    let h = &doc["headers"];
    assert_eq!(h["ex-app-id"], "Foo");
    assert_eq!(h["ex-app-version"], "1.2.3");
    assert_eq!(h["aa-version"], "32");
    assert_eq!(h["authorization-app-api"], b64(":apptoken"));
    assert_eq!(h["x-custom"], "kept");
    for added in [
        "x-forwarded-for",
        "x-real-ip",
        "forwarded",
        "via",
        "harp-shared-key",
    ] {
        assert!(h.get(added).is_none(), "{added}");
    }
}

#[tokio::test]
async fn item61_five_signed_headers_are_an_unsigned_request() {
    let w = world(&[]).await;
    let h: Vec<_> = signed(KEY)
        .into_iter()
        .filter(|(k, _)| *k != "ex-app-host")
        .collect();
    let req = format!(
        "GET /exapps/foo/heartbeat HTTP/1.1\r\nHost: x\r\n{}\r\n",
        h.iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect::<String>()
    );
    let out = raw_exchange(w.harp.addr, req.as_bytes(), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        out.is_empty(),
        "treated as unsigned internal endpoint → dropped"
    );
}

#[tokio::test]
async fn item62_63_anonymous_public_route_without_user_info() {
    let w = world(&[]).await;
    let doc = echo(&w, "/exapps/foo/public", &[]).await;
    assert_eq!(doc["headers"]["authorization-app-api"], b64(":apptoken"));
    assert_eq!(w.nc.user_calls(), 0);
}

#[tokio::test]
async fn item64_user_route_without_credentials_is_403_and_recorded() {
    let w = world(&[]).await;
    let r = get(&w, "/exapps/foo/api/x", &[]).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().await.unwrap(), "403 Forbidden");
    assert_eq!(w.harp.failures_of(ME), 1);
}

#[tokio::test]
async fn item65_user_with_level_1_is_forwarded_with_their_id() {
    let w = world(&[]).await;
    w.nc.add_session("sess1", "alice", 1);
    let doc = echo(
        &w,
        "/exapps/foo/api/x",
        &[("cookie", "oc_sessionPassphrase=sess1")],
    )
    .await;
    assert_eq!(
        doc["headers"]["authorization-app-api"],
        b64("alice:apptoken")
    );
}

#[tokio::test]
async fn item66_admin_route_needs_level_2() {
    let w = world(&[]).await;
    w.nc.add_session("u", "alice", 1);
    w.nc.add_session("a", "root", 2);
    assert_eq!(
        get(
            &w,
            "/exapps/foo/api/admin/x",
            &[("cookie", "oc_sessionPassphrase=u")]
        )
        .await
        .status(),
        403
    );
    let doc = echo(
        &w,
        "/exapps/foo/api/admin/x",
        &[("cookie", "oc_sessionPassphrase=a")],
    )
    .await;
    assert_eq!(
        doc["headers"]["authorization-app-api"],
        b64("root:apptoken")
    );
}

#[tokio::test]
async fn item67_first_matching_route_decides() {
    let w = world(&[]).await;
    w.nc.add_session("u", "alice", 1);
    assert_eq!(
        get(
            &w,
            "/exapps/foo/api/admin/x",
            &[("cookie", "oc_sessionPassphrase=u")]
        )
        .await
        .status(),
        403
    );
    assert_eq!(
        get(
            &w,
            "/exapps/foo/api/other",
            &[("cookie", "oc_sessionPassphrase=u")]
        )
        .await
        .status(),
        200
    );
}

#[tokio::test]
async fn item68_routes_are_start_anchored_only() {
    let w = world(&[]).await;
    assert_eq!(
        get(&w, "/exapps/foo/publicity/stunt", &[]).await.status(),
        200
    );
    assert_eq!(get(&w, "/exapps/foo/x/public", &[]).await.status(), 404);
}

#[tokio::test]
async fn item69_routes_are_case_sensitive() {
    let w = world(&[]).await;
    assert_eq!(get(&w, "/exapps/foo/API_UPPER", &[]).await.status(), 200);
    assert_eq!(
        get(&w, "/exapps/foo/api_upper", &[]).await.status(),
        403,
        "falls to ^/api (USER)"
    );
}

#[tokio::test]
async fn item70_invalid_route_is_skipped() {
    let w = world(&[]).await;
    // `^/(unclosed` is invalid; nothing else matches `/(unclosed`, so 404 — not a 500 or a panic.
    assert_eq!(get(&w, "/exapps/foo/(unclosed", &[]).await.status(), 404);
}

#[tokio::test]
async fn item71_lookahead_routes_work() {
    let w = world(&[]).await;
    assert_eq!(
        get(&w, "/exapps/foo/open/anything", &[]).await.status(),
        200
    );
    assert_eq!(get(&w, "/exapps/foo/open/private", &[]).await.status(), 404);
}

#[tokio::test]
async fn item72_no_route_is_404_and_recorded() {
    let w = world(&[]).await;
    assert_eq!(get(&w, "/exapps/foo/nothing", &[]).await.status(), 404);
    assert_eq!(w.harp.failures_of(ME), 1);
}

#[tokio::test]
async fn item73_user_info_4xx_means_anonymous() {
    let w = world(&[]).await;
    *w.nc.state.user_mode.lock() = Some(UserMode::Status(403));
    let cookie = [("cookie", "oc_sessionPassphrase=x")];
    assert_eq!(get(&w, "/exapps/foo/public", &cookie).await.status(), 200);
    assert_eq!(get(&w, "/exapps/foo/api/x", &cookie).await.status(), 403);
}

#[tokio::test]
async fn item74_user_info_errors_fall_back_to_anonymous() {
    for mode in [
        UserMode::Status(500),
        UserMode::Status(503),
        UserMode::Garbage,
    ] {
        let w = world(&[]).await;
        *w.nc.state.user_mode.lock() = Some(mode.clone());
        let cookie = [("cookie", "oc_sessionPassphrase=x")];
        let doc = echo(&w, "/exapps/foo/public", &cookie).await;
        assert_eq!(
            doc["headers"]["authorization-app-api"],
            b64(":apptoken"),
            "{mode:?}"
        );
        assert_eq!(w.harp.failures_of(ME), 0);
        assert_eq!(
            get(&w, "/exapps/foo/api/x", &cookie).await.status(),
            403,
            "{mode:?}"
        );
    }
}

#[tokio::test]
async fn item75_user_info_gets_client_credentials_and_the_key() {
    let w = world(&[]).await;
    let r = client()
        .post(w.harp.url("/exapps/foo/public"))
        .header("cookie", "oc_sessionPassphrase=s; other=1")
        .header("authorization", "Basic YWxpY2U6cHc=")
        .header("harp-shared-key", "client-supplied")
        .header("host", "client.example")
        .body("some body")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = w.nc.state.user_headers.lock()[0].clone();
    assert_eq!(seen["cookie"], "oc_sessionPassphrase=s; other=1");
    assert_eq!(seen["authorization"], "Basic YWxpY2U6cHc=");
    assert_eq!(seen["harp-shared-key"], KEY);
    assert_ne!(seen["host"], "client.example");
    assert!(seen.get("content-length").is_none());
}

#[tokio::test]
async fn item76_session_cache_within_lifetime() {
    let w = world(&[("HP_SESSION_LIFETIME", "0.5")]).await;
    w.nc.add_session("s", "alice", 1);
    let c = [("cookie", "oc_sessionPassphrase=s")];
    let before_lookup = Instant::now();
    echo(&w, "/exapps/foo/api/x", &c).await;
    echo(&w, "/exapps/foo/api/y", &c).await;
    assert_eq!(w.nc.user_calls(), 1);
    // Ask again until harp asks Nextcloud again (the entry expired), with a deadline, rather
    // than sleeping "a bit longer than" the lifetime; then check it was not early.
    let end = before_lookup + LIFT_DEADLINE;
    while w.nc.user_calls() == 1 {
        assert!(Instant::now() < end, "the session entry never expired");
        tokio::time::sleep(POLL).await;
        echo(&w, "/exapps/foo/api/z", &c).await;
    }
    assert_eq!(w.nc.user_calls(), 2);
    assert!(
        before_lookup.elapsed() >= Duration::from_millis(500),
        "the session entry expired before its 0.5 s lifetime ({:?})",
        before_lookup.elapsed()
    );
}

#[tokio::test]
async fn item77_zero_lifetime_asks_every_time() {
    let w = world(&[("HP_SESSION_LIFETIME", "0")]).await;
    w.nc.add_session("s", "alice", 1);
    for _ in 0..3 {
        echo(
            &w,
            "/exapps/foo/api/x",
            &[("cookie", "oc_sessionPassphrase=s")],
        )
        .await;
    }
    assert_eq!(w.nc.user_calls(), 3);
}

/// Contract §2.6 ("never cached") holds with the improvement turned off; the cache itself is
/// tested in tests/basic_auth_cache.rs.
#[tokio::test]
async fn item78_authorization_only_is_never_cached_with_the_cache_off() {
    let w = world(&[("HP_BASIC_AUTH_CACHE", "false")]).await;
    w.nc.state
        .basic
        .lock()
        .insert("Basic YWxpY2U6cHc=".into(), ("alice".into(), 1));
    for _ in 0..3 {
        let doc = echo(
            &w,
            "/exapps/foo/api/x",
            &[("authorization", "Basic YWxpY2U6cHc=")],
        )
        .await;
        assert_eq!(
            doc["headers"]["authorization-app-api"],
            b64("alice:apptoken")
        );
    }
    assert_eq!(w.nc.user_calls(), 3);
}

#[tokio::test]
async fn item79_nextcloud_set_cookie_is_never_replayed() {
    let w = world(&[("HP_SESSION_LIFETIME", "0")]).await;
    echo(
        &w,
        "/exapps/foo/public",
        &[("cookie", "oc_sessionPassphrase=one")],
    )
    .await;
    echo(&w, "/exapps/foo/public", &[("authorization", "Basic eDp5")]).await;
    let seen = w.nc.state.user_headers.lock().clone();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[1].get("cookie").is_none(),
        "second caller sent no cookie: {:?}",
        seen[1].get("cookie")
    );
}

#[tokio::test]
async fn item80_bruteforce_statuses_from_the_exapp_are_recorded() {
    let w = world(&[]).await;
    assert_eq!(get(&w, "/exapps/foo/status/401", &[]).await.status(), 401);
    assert_eq!(w.harp.failures_of(ME), 1);
    assert_eq!(get(&w, "/exapps/foo/status/200", &[]).await.status(), 200);
    assert_eq!(get(&w, "/exapps/foo/status/500", &[]).await.status(), 500);
    assert_eq!(w.harp.failures_of(ME), 1);
}

#[tokio::test]
async fn item81_signed_requests_never_record_bruteforce_statuses() {
    let w = world(&[]).await;
    assert_eq!(
        get(&w, "/exapps/foo/status/401", &signed(KEY))
            .await
            .status(),
        401
    );
    assert_eq!(w.harp.failures_of(ME), 0);
}
