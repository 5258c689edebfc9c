//! Attack suite, HTTP front door (issue #13): hostile clients against the real `harp` binary,
//! with a stub Nextcloud and a recording stub ExApp in this process. Each test names the
//! attack it repeats and what it proves; see `common::process` for the shared expectations.

mod common;

use common::exapp::*;
use common::nextcloud::StubNextcloud;
use common::process::*;
use common::{meta, Harness, KEY};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The attack app id used throughout.
const APP: &str = "atk";
/// How long a refused or dropped request may take to be answered or closed.
const ANSWER: Duration = Duration::from_secs(3);

/// A stub Nextcloud serving [`APP`] with [`attack_routes`] on a recording ExApp, and harp.
struct World {
    nc: StubNextcloud,
    app: RecordingExApp,
    harp: HarpProcess,
}

async fn world(vars: &[(&str, &str)]) -> World {
    let nc = StubNextcloud::start().await;
    let app = RecordingExApp::start().await;
    nc.add_app(APP, meta(app.port(), attack_routes()));
    // Many of these attacks are failures harp records; the suite must not ban itself.
    let mut all = vec![("HP_BLACKLIST_COUNT", "1000000")];
    all.extend_from_slice(vars);
    let harp = Harness::builder()
        .nextcloud(&nc.url())
        .envs(&all)
        .spawn_process();
    World { nc, app, harp }
}

/// A PUBLIC request through harp to the ExApp must succeed (the world works).
async fn assert_public_reaches(w: &World) {
    let req =
        format!("GET /exapps/{APP}/public/ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (status, _) = timed_status(w.harp.addr, req.as_bytes()).await;
    assert_eq!(status, 200, "a PUBLIC request must reach the ExApp");
    assert!(w.app.saw("/public/ok"));
}

/// Attack 1 (abandoned lookups): Nextcloud accepts `exapp-meta`/`user-info` and never answers;
/// 1,200 anonymous clients send a request and disconnect. Proves harp releases a lookup's
/// resources when its client is gone: fds return to baseline, and a normal request stays fast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack01_abandoned_lookups_release_their_fds() {
    let _g = serial().await;
    let (silent, _task) = common::exapp::silent_server().await;
    let mut harp = Harness::builder()
        .nextcloud(&format!("http://{silent}/"))
        .spawn_process();
    assert_normal_fast(harp.addr, "before").await;
    let baseline = harp.fds();
    const REQUESTS: usize = 1_200;
    const BATCH: usize = 100;
    let started = Instant::now();
    for batch in 0..REQUESTS / BATCH {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..BATCH {
            let addr = harp.addr;
            set.spawn(async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                // Distinct app ids: every request starts its own lookup.
                let req = format!(
                    "GET /exapps/app{}/x HTTP/1.1\r\nHost: x\r\n\r\n",
                    batch * BATCH + i
                );
                s.write_all(req.as_bytes()).await.unwrap();
                // Dropped here: the client is gone before harp can answer.
            });
        }
        while set.join_next().await.is_some() {}
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "attack too slow"
        );
        // Between batches, so the measure is harp's, not a 1,200-deep accept backlog's.
        if batch % 3 == 2 {
            assert_normal_fast(harp.addr, "during abandoned lookups").await;
        }
    }
    harp.fds_settle(baseline, "after 1,200 abandoned lookups")
        .await;
}

/// Attack 6a (authorization on undecoded paths): internal endpoints spelled with escapes or
/// extra segments (`%65nabled`, `//enabled`, `/./enabled`, `/%2e/enabled`) are decided as
/// `/enabled`: an anonymous PUT never reaches the ExApp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack06_escaped_internal_endpoints_never_reach_the_exapp() {
    let _g = serial().await;
    let w = world(&[]).await;
    assert_public_reaches(&w).await;
    for path in ["/%65nabled", "//enabled", "/./enabled", "/%2e/enabled"] {
        let req = format!(
            "PUT /exapps/{APP}{path}?enabled=0 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let _ = raw_exchange(w.harp.addr, req.as_bytes(), ANSWER).await;
        assert!(
            !w.app.saw("nabled"),
            "anonymous PUT {path} reached the ExApp: {:?}",
            w.app.targets()
        );
    }
}

/// Attack 6b: a USER's `/api/%61dmin/` is matched as `/api/admin/` and refused by the ADMIN
/// route `^/api/admin`, instead of falling through to the USER route `^/api`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack06_escaped_admin_path_is_not_a_user_route() {
    let _g = serial().await;
    let w = world(&[]).await;
    w.nc.add_session("user-cookie", "alice", 1);
    let req = format!(
        "GET /exapps/{APP}/api/%61dmin/ HTTP/1.1\r\nHost: x\r\nCookie: oc_sessionPassphrase=user-cookie\r\nConnection: close\r\n\r\n"
    );
    let _ = raw_exchange(w.harp.addr, req.as_bytes(), ANSWER).await;
    assert!(
        !w.app.saw("dmin"),
        "a USER passed ^/api/admin with an escaped path: {:?}",
        w.app.targets()
    );
    // Control: the same user does reach the USER route.
    let req = format!(
        "GET /exapps/{APP}/api/list HTTP/1.1\r\nHost: x\r\nCookie: oc_sessionPassphrase=user-cookie\r\nConnection: close\r\n\r\n"
    );
    let (status, _) = timed_status(w.harp.addr, req.as_bytes()).await;
    assert_eq!(status, 200, "the USER reaches ^/api");
}

/// Attack 6c: an escaped separator or NUL (`%2F`, `%5C`, `%00`) in a path has no single meaning
/// for every ExApp framework; harp answers 400 and the ExApp never sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack06_escaped_separators_and_nul_are_400() {
    let _g = serial().await;
    let w = world(&[]).await;
    for esc in ["%2F", "%2f", "%5C", "%5c", "%00"] {
        let req =
            format!("GET /exapps/{APP}/a{esc}b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let out = raw_exchange(w.harp.addr, req.as_bytes(), ANSWER)
            .await
            .unwrap_or_else(|o| o);
        assert_eq!(
            status_of(&out),
            BAD_REQUEST,
            "{esc} in a path: {}",
            String::from_utf8_lossy(&out)
        );
    }
    assert!(!w.app.saw("/a%"), "escaped separators reached the ExApp");
}

/// Attack 8 (h2c upgrade smuggling): an ExApp that answers 101 to any upgrade must not turn
/// the client connection into an undecided tunnel: harp does not relay the 101, and a following
/// request on the same connection (anonymous, ADMIN route) is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack08_h2c_upgrade_does_not_open_a_tunnel() {
    let _g = serial().await;
    let w = world(&[]).await;
    let mut s = TcpStream::connect(w.harp.addr).await.unwrap();
    let req = format!(
        "GET /exapps/{APP}/public/h2c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let head = tokio::time::timeout(ANSWER, read_head(&mut s))
        .await
        .expect("harp answers the h2c request")
        .unwrap();
    assert_ne!(
        status_of(&head),
        101,
        "harp relayed an h2c 101: {}",
        String::from_utf8_lossy(&head)
    );
    let second = format!(
        "GET /exapps/{APP}/admin/smuggled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let _ = s.write_all(second.as_bytes()).await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(ANSWER, s.read_to_end(&mut rest)).await;
    assert!(
        !w.app.saw("smuggled"),
        "a request after the upgrade reached the ExApp undecided: {:?}",
        w.app.targets()
    );
    for status in statuses(&rest) {
        assert!(
            status == 401 || status == 403,
            "anonymous ADMIN request answered {status}"
        );
    }
}

/// Attack 9 (Connection header naming harp's headers): a client listing harp's injected
/// headers and `host` in `Connection` cannot make harp strip them after injecting: the ExApp
/// still receives `authorization-app-api`, `ex-app-id`, `aa-version`, `ex-app-version`, `host`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack09_connection_header_cannot_strip_injected_headers() {
    let _g = serial().await;
    let w = world(&[]).await;
    let req = format!(
        "GET /exapps/{APP}/public/conn HTTP/1.1\r\nHost: x\r\nConnection: authorization-app-api, ex-app-id, aa-version, ex-app-version, host\r\n\r\n"
    );
    let out = raw_exchange(w.harp.addr, req.as_bytes(), ANSWER)
        .await
        .unwrap_or_else(|o| o);
    assert_eq!(status_of(&out), 200, "{}", String::from_utf8_lossy(&out));
    let seen = w.app.seen.lock().clone();
    let got = seen
        .iter()
        .find(|s| s.target.contains("/public/conn"))
        .expect("the ExApp got the request");
    for h in [
        "authorization-app-api",
        "ex-app-id",
        "aa-version",
        "ex-app-version",
        "host",
    ] {
        assert!(
            got.headers.contains_key(h),
            "the ExApp did not receive {h}: {:?}",
            got.headers
        );
    }
}

/// Attack 12 (stalled upload): with `HP_TIMEOUT_CLIENT=500ms` and a 60 s server timeout, a POST
/// announcing 1 MB that sends 10 bytes and stalls is answered 408 (or closed) within ~2 s,
/// instead of holding an upstream request until the server timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack12_stalled_upload_times_out_on_the_client_timeout() {
    let _g = serial().await;
    let w = world(&[("HP_TIMEOUT_CLIENT", "500ms"), ("HP_TIMEOUT_SERVER", "60s")]).await;
    let mut s = TcpStream::connect(w.harp.addr).await.unwrap();
    let req = format!(
        "POST /exapps/{APP}/public/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n0123456789"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(4), s.read_to_end(&mut out)).await;
    let took = started.elapsed();
    assert!(
        ended.is_ok() && took < Duration::from_millis(2_500),
        "stalled upload still open after {took:?}: {}",
        String::from_utf8_lossy(&out)
    );
    let status = status_of(&out);
    assert!(
        status == 0 || status == REQUEST_TIMEOUT,
        "stalled upload answered {status}, expected {REQUEST_TIMEOUT} or a close"
    );
}

/// Attack 13a (framing): a duplicate `Host` is ambiguous (which authority was meant?) and is
/// refused 400 instead of being forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack13_duplicate_host_is_refused() {
    let _g = serial().await;
    let w = world(&[]).await;
    let req = format!(
        "GET /exapps/{APP}/public/dup HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n"
    );
    let out = raw_exchange(w.harp.addr, req.as_bytes(), ANSWER)
        .await
        .unwrap_or_else(|o| o);
    assert_eq!(status_of(&out), BAD_REQUEST, "duplicate Host");
    assert!(
        !w.app.saw("/public/dup"),
        "a duplicate Host reached the ExApp"
    );
}

/// Attack 13b (framing): a malformed chunked request body is the client's fault: 400, not a
/// 502 blamed on the ExApp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack13_malformed_chunked_body_is_400() {
    let _g = serial().await;
    let w = world(&[]).await;
    let req = format!(
        "POST /exapps/{APP}/public/chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nZZ\r\nhello\r\n0\r\n\r\n"
    );
    let out = raw_exchange(w.harp.addr, req.as_bytes(), ANSWER)
        .await
        .unwrap_or_else(|o| o);
    assert_eq!(
        status_of(&out),
        BAD_REQUEST,
        "malformed chunked body: {}",
        String::from_utf8_lossy(&out)
    );
}

/// Attack 13c (framing): an ExApp answer carrying both `Content-Length` and chunked encoding
/// reaches the client without the contradicting `Content-Length` (a downstream cache or proxy
/// would otherwise split the response differently).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack13_response_with_cl_and_te_drops_content_length() {
    let _g = serial().await;
    let w = world(&[]).await;
    let (raw, _task) = fixed_response_server(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    w.nc.add_app("rawapp", meta(raw.port(), attack_routes()));
    let out = raw_exchange(
        w.harp.addr,
        b"GET /exapps/rawapp/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        ANSWER,
    )
    .await
    .unwrap_or_else(|o| o);
    let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    // Refusing the ambiguous answer outright (502) is also safe.
    if status_of(&out) != 502 {
        assert!(
            !head.contains("content-length:") && text.contains("hello"),
            "client got the ExApp's contradicting Content-Length (or lost the body): {text}"
        );
    }
}

/// Attack 14 (Docker wrapper hostile payloads): each signed `create` payload with a hostile
/// field (foreign network namespaces, bind sources with `..` or relative, `:` in a path, null
/// mode, unknown restart policies, names starting with `-`/`.`/`_` or 64 chars long, negative
/// memory, string nanoCPUs) is refused 400 before any engine call (the engine socket does not
/// exist, so a payload that got through would answer 5xx).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack14_docker_create_rejects_hostile_payloads() {
    let _g = serial().await;
    let w = world(&[]).await;
    let base = || {
        serde_json::json!({
            "name": "atkapp",
            "instance_id": "",
            "image_id": "ghcr.io/nextcloud/atk:1",
            "network_mode": "bridge",
            "environment_variables": ["APP_ID=atkapp"],
            "mount_points": [],
            "resource_limits": {"memory": null, "nanoCPUs": null},
            "restart_policy": "unless-stopped",
            "compute_device": "cpu",
        })
    };
    let mount = |source: &str, mode: serde_json::Value| serde_json::json!([{"source": source, "target": "/data", "mode": mode}]);
    let long = "a".repeat(64);
    let cases: Vec<(&str, &str, serde_json::Value)> = vec![
        ("network_mode", "container:x", "container:x".into()),
        ("network_mode", "ns", "ns:/proc/1/ns/net".into()),
        ("mount_points", "dotdot", mount("/mnt/../etc", "rw".into())),
        ("mount_points", "relative", mount("models", "rw".into())),
        ("mount_points", "colon", mount("/mnt/a:b", "rw".into())),
        (
            "mount_points",
            "null mode",
            mount("/mnt/a", serde_json::Value::Null),
        ),
        ("restart_policy", "on-failure:3", "on-failure:3".into()),
        ("restart_policy", "Always", "Always".into()),
        ("restart_policy", "sometimes", "sometimes".into()),
        ("restart_policy", "null", serde_json::Value::Null),
        ("name", "-x", "-x".into()),
        ("name", ".x", ".x".into()),
        ("name", "_x", "_x".into()),
        ("name", "64 chars", long.as_str().into()),
        (
            "resource_limits",
            "negative memory",
            serde_json::json!({"memory": -1, "nanoCPUs": null}),
        ),
        (
            "resource_limits",
            "string nanoCPUs",
            serde_json::json!({"memory": null, "nanoCPUs": "lots"}),
        ),
    ];
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut wrong = Vec::new();
    for (field, label, value) in cases {
        let mut body = base();
        body[field] = value;
        let r = client
            .post(w.harp.url("/exapps/app_api/docker/exapp/create"))
            .header("harp-shared-key", KEY)
            .header("docker-engine-port", "24000")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        if status != BAD_REQUEST {
            wrong.push(format!(
                "{field} {label}: {status} {}",
                r.text().await.unwrap_or_default()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "payloads not refused with {BAD_REQUEST}: {wrong:#?}"
    );
}

/// Attack 15 (engine port outside the plan): a signed Docker pass-through call naming
/// `docker-engine-port` 8780 or harp's own HTTP port is refused 400 instead of being relayed to
/// whatever listens there; the `/docker/exapp/*` wrappers refuse it the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack15_engine_port_outside_the_plan_is_refused() {
    let _g = serial().await;
    let w = world(&[]).await;
    let own = w.harp.addr.port().to_string();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for port in ["8780", own.as_str(), "22"] {
        let r = client
            .get(w.harp.url("/exapps/app_api/v1.44/_ping"))
            .header("harp-shared-key", KEY)
            .header("docker-engine-port", port)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            BAD_REQUEST,
            "docker-engine-port {port}: {}",
            r.text().await.unwrap_or_default()
        );
        // The `/docker/exapp/*` wrappers read the same header: same plan, same refusal.
        let r = client
            .post(w.harp.url("/exapps/app_api/docker/exapp/exists"))
            .header("harp-shared-key", KEY)
            .header("docker-engine-port", port)
            .body(r#"{"name": "x"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), BAD_REQUEST, "wrapper on port {port}");
    }
}

/// The smuggled request each framing variant hides; it names an ADMIN route, so if harp ever
/// decided it, it would be refused — it may only reach the ExApp undecided.
const SMUGGLED: &str = "GET /exapps/atk/admin/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

/// Attack 17a (request smuggling, holds today): CL.TE, TE.CL, two differing Content-Length,
/// `Transfer-Encoding: chunked, identity`, obs-fold continuation and a TE with odd spacing
/// are answered 400 or read as one request; the hidden request never reaches the ExApp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack17_request_smuggling_variants_never_reach_the_exapp() {
    let _g = serial().await;
    let w = world(&[]).await;
    let post = format!("POST /exapps/{APP}/public/front HTTP/1.1\r\nHost: x\r\n");
    let cl_te = format!(
        "{post}Content-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}",
        5 + SMUGGLED.len()
    );
    let te_cl = format!(
        "{post}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n",
        SMUGGLED.len()
    );
    let two_cl = format!(
        "{post}Content-Length: 0\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
        SMUGGLED.len()
    );
    let te_identity =
        format!("{post}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{SMUGGLED}");
    let obs_fold = format!(
        "{post}X-Pad: a\r\n Transfer-Encoding: chunked\r\nContent-Length: {}\r\n\r\n0\r\n\r\n{SMUGGLED}",
        5 + SMUGGLED.len()
    );
    let te_space = format!(
        "{post}Transfer-Encoding : chunked\r\nContent-Length: {}\r\n\r\n0\r\n\r\n{SMUGGLED}",
        5 + SMUGGLED.len()
    );
    let te_tab = format!("{post}Transfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n{SMUGGLED}");
    for (name, raw) in [
        ("CL.TE", cl_te),
        ("TE.CL", te_cl),
        ("two Content-Length", two_cl),
        ("chunked, identity", te_identity),
        ("obs-fold", obs_fold),
        ("TE with space", te_space),
        ("TE with tab", te_tab),
    ] {
        let out = raw_exchange(w.harp.addr, raw.as_bytes(), ANSWER)
            .await
            .unwrap_or_else(|o| o);
        for status in statuses(&out).into_iter().skip(1) {
            assert!(
                status == 401 || status == 403 || status == BAD_REQUEST,
                "{name}: a second request was answered {status}"
            );
        }
        assert!(
            !w.app.saw("smuggled"),
            "{name}: the hidden request reached the ExApp: {:?}",
            w.app.targets()
        );
    }
    assert_public_reaches(&w).await;
}

/// Attack 17b (spoofed identity, holds today): identity headers a client sends
/// (`authorization-app-api`, `ex-app-id`, `aa-version`, a wrong `harp-shared-key`, and
/// `X-Forwarded-For` from an untrusted peer) never reach the ExApp as sent and never admit an
/// anonymous client to an ADMIN route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack17_spoofed_identity_headers_never_pass() {
    let _g = serial().await;
    let w = world(&[]).await;
    let spoof = "authorization-app-api: c3B5OnNweQ==\r\nex-app-id: evil\r\naa-version: 99.0.0\r\nex-app-version: 6.6.6\r\nharp-shared-key: wrong-key\r\nX-Forwarded-For: 10.9.9.9\r\n";
    let req = format!(
        "GET /exapps/{APP}/public/spoof HTTP/1.1\r\nHost: x\r\n{spoof}Connection: close\r\n\r\n"
    );
    let out = raw_exchange(w.harp.addr, req.as_bytes(), ANSWER)
        .await
        .unwrap_or_else(|o| o);
    let seen = w.app.seen.lock().clone();
    if let Some(got) = seen.iter().find(|s| s.target.contains("/public/spoof")) {
        let h = |n: &str| {
            got.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        assert_ne!(h("authorization-app-api"), "c3B5OnNweQ==");
        assert_ne!(h("ex-app-id"), "evil");
        assert_ne!(h("aa-version"), "99.0.0");
        assert_ne!(h("ex-app-version"), "6.6.6");
        assert!(!got.headers.contains_key("harp-shared-key"));
    } else {
        assert_ne!(status_of(&out), 200, "answered 200 without the ExApp");
    }
    let req = format!(
        "GET /exapps/{APP}/admin/spoof HTTP/1.1\r\nHost: x\r\n{spoof}Connection: close\r\n\r\n"
    );
    let out = raw_exchange(w.harp.addr, req.as_bytes(), ANSWER)
        .await
        .unwrap_or_else(|o| o);
    assert_ne!(status_of(&out), 200);
    assert!(
        !w.app.saw("/admin/spoof"),
        "spoofed headers passed an ADMIN route"
    );
}
