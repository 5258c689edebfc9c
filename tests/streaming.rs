//! Forwarding behaviour: streamed bodies, SSE, WebSockets and their timeouts, upstream faults,
//! HTTPS, and a table of malformed input.

mod common;

use bytes::Bytes;
use common::exapp::{garbage_server, silent_server, StubExApp};
use common::nextcloud::StubNextcloud;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn public() -> serde_json::Value {
    json!([{"url": ".*", "access_level": 0, "bruteforce_protection": []}])
}

async fn setup(extra: &[(&str, &str)]) -> (StubNextcloud, StubExApp, TestHarp) {
    let nc = StubNextcloud::start().await;
    let app = StubExApp::start().await;
    let h = Harness::builder()
        .nextcloud(&nc.url())
        .envs(extra)
        .start()
        .await;
    push_meta(&h, "foo", &meta(app.port(), public())).await;
    (nc, app, h)
}

fn vm_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test]
async fn item94_large_uploads_stream_without_buffering() {
    let (_nc, _app, h) = setup(&[]).await;
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 256;
    let baseline = vm_kib("VmRSS:");
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let stream = futures_util::stream::iter(
        (0..CHUNKS).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    let r = client()
        .post(h.url("/exapps/foo/upload"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().await.unwrap();
    assert_eq!(doc["bytes"], (CHUNK * CHUNKS) as u64);
    let peak = vm_kib("VmHWM:");
    let growth_mib = peak.saturating_sub(baseline) / 1024;
    assert!(
        growth_mib < 64,
        "peak RSS grew by {growth_mib} MiB while 256 MiB passed through"
    );
}

#[tokio::test]
async fn item95_sse_events_arrive_one_by_one() {
    let (_nc, _app, h) = setup(&[]).await;
    let r = client().get(h.url("/exapps/foo/sse")).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut body = r.bytes_stream();
    let started = Instant::now();
    let first = body.next().await.unwrap().unwrap();
    assert_eq!(&first[..], b"data: 0\n\n");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "first event not held back"
    );
    let second = body.next().await.unwrap().unwrap();
    assert_eq!(&second[..], b"data: 1\n\n");
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "events were not batched"
    );
}

/// HEAD answers carry the length of the body they do not have: harp must not wait for one,
/// and the upstream connection must stay usable for the requests after it.
#[tokio::test]
async fn head_requests_end_at_the_head_and_keep_the_connection_usable() {
    let (_nc, app, h) = setup(&[("HP_WORKERS", "1")]).await;
    let c = client();
    for round in 0..3 {
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            c.head(h.url("/exapps/foo/x")).send(),
        )
        .await
        .expect("HEAD answered without waiting for a body")
        .unwrap();
        assert_eq!(r.status(), 200, "round {round}");
        let length: u64 = r.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(length > 0, "the ExApp's length is passed on");
        assert!(r.bytes().await.unwrap().is_empty());
        let doc: serde_json::Value = c
            .get(h.url("/exapps/foo/x"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["method"], "GET", "round {round}");
    }
    assert_eq!(
        app.connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "every HEAD and GET went over one kept-alive upstream connection"
    );
}

#[tokio::test]
async fn item97_exapp_down_is_503_and_not_recorded() {
    let nc = StubNextcloud::start().await;
    let h = Harness::builder().nextcloud(&nc.url()).start().await;
    let free = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    push_meta(&h, "foo", &meta(port, public())).await;
    let started = Instant::now();
    assert_eq!(
        client()
            .get(h.url("/exapps/foo/x"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(h.failures_of("127.0.0.1"), 0);
}

#[tokio::test]
async fn garbage_from_the_exapp_is_502() {
    let nc = StubNextcloud::start().await;
    let h = Harness::builder().nextcloud(&nc.url()).start().await;
    let (addr, _t) = garbage_server().await;
    push_meta(&h, "foo", &meta(addr.port(), public())).await;
    assert_eq!(
        client()
            .get(h.url("/exapps/foo/x"))
            .send()
            .await
            .unwrap()
            .status(),
        502
    );
}

#[tokio::test]
async fn server_timeout_gives_504_and_client_timeout_does_not_cut_slow_answers() {
    let nc = StubNextcloud::start().await;
    let app = StubExApp::start().await;
    let h = Harness::builder()
        .nextcloud(&nc.url())
        .envs(&[
            ("HP_TIMEOUT_SERVER", "800ms"),
            ("HP_TIMEOUT_CLIENT", "200ms"),
        ])
        .start()
        .await;
    push_meta(&h, "foo", &meta(app.port(), public())).await;
    let r = client()
        .get(h.url("/exapps/foo/slow?ms=500"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "client timeout applies only to the request head"
    );
    let (silent, _t) = silent_server().await;
    push_meta(&h, "bar", &meta(silent.port(), public())).await;
    let started = Instant::now();
    assert_eq!(
        client()
            .get(h.url("/exapps/bar/x"))
            .send()
            .await
            .unwrap()
            .status(),
        504
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn slow_request_head_is_cut_by_the_client_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_nc, _app, h) = setup(&[("HP_TIMEOUT_CLIENT", "300ms")]).await;
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    s.write_all(b"GET /exapps/foo/x HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    assert!(
        closed.is_ok(),
        "connection with an unfinished head must be closed"
    );
}

async fn ws_connect(
    h: &TestHarp,
    path: &str,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(format!("ws://{}{}", h.addr, path), tcp)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

async fn ws_roundtrip(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    text: &str,
) -> bool {
    if ws.send(Message::text(text)).await.is_err() {
        return false;
    }
    matches!(tokio::time::timeout(Duration::from_secs(5), ws.next()).await, Ok(Some(Ok(Message::Text(t)))) if t.as_str() == text)
}

#[tokio::test]
async fn websocket_echo_through_harp() {
    let (_nc, _app, h) = setup(&[]).await;
    let mut ws = ws_connect(&h, "/exapps/foo/ws").await;
    for i in 0..20 {
        assert!(ws_roundtrip(&mut ws, &format!("msg {i}")).await);
    }
    let big = "y".repeat(300_000);
    assert!(ws_roundtrip(&mut ws, &big).await);
}

/// Idles a WebSocket on paused time (harp's timers run on the same clock), then checks it.
async fn idle_then_check(extra: &[(&str, &str)], idle: Duration) -> bool {
    let (_nc, _app, h) = setup(extra).await;
    let mut ws = ws_connect(&h, "/exapps/foo/ws").await;
    assert!(ws_roundtrip(&mut ws, "before").await);
    tokio::time::pause();
    tokio::time::sleep(idle).await;
    tokio::time::resume();
    ws_roundtrip(&mut ws, "after").await
}

#[tokio::test]
async fn item11_tunnel_timeout_follows_server_timeout() {
    assert!(idle_then_check(&[("HP_TIMEOUT_SERVER", "3600s")], Duration::from_secs(3500)).await);
    assert!(!idle_then_check(&[("HP_TIMEOUT_SERVER", "3600s")], Duration::from_secs(3601)).await);
}

#[tokio::test]
async fn item12_zero_tunnel_timeout_keeps_idle_websockets_open() {
    assert!(idle_then_check(&[("HP_TIMEOUT_TUNNEL", "0")], Duration::from_secs(11 * 60)).await);
}

#[tokio::test]
async fn item13_default_settings_survive_120s_of_silence() {
    assert!(idle_then_check(&[], Duration::from_secs(120)).await);
}

#[tokio::test]
async fn explicit_tunnel_timeout_closes_idle_websockets() {
    assert!(!idle_then_check(&[("HP_TIMEOUT_TUNNEL", "10s")], Duration::from_secs(11)).await);
}

#[tokio::test]
async fn item14_half_closed_upgrade_is_reaped_after_30s() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_nc, app, h) = setup(&[("HP_TIMEOUT_TUNNEL", "0")]).await;
    let _ = app;
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    s.write_all(
        b"GET /exapps/foo/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = vec![0u8; 4096];
    let n = s.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 101"));
    s.shutdown().await.unwrap(); // half-close: we send no more
    tokio::time::pause();
    tokio::time::sleep(Duration::from_secs(31)).await;
    tokio::time::resume();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "half-closed tunnel still open after 31 s");
}

#[tokio::test]
async fn item96_slow_user_info_degrades_to_anonymous() {
    let (nc, _app, h) = setup(&[]).await;
    nc.add_app("foo", meta(1, public()));
    *nc.state.user_delay.lock() = Duration::from_secs(27);
    let started = Instant::now();
    let r = client()
        .get(h.url("/exapps/foo/x"))
        .header("cookie", "oc_sessionPassphrase=s")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "PUBLIC route served after the 25 s user-info cap"
    );
    assert!(started.elapsed() < Duration::from_secs(27));
}

#[tokio::test]
async fn item96_slow_metadata_is_404_and_two_slow_calls_are_503() {
    let nc = StubNextcloud::start().await;
    let app = StubExApp::start().await;
    nc.add_app("foo", meta(app.port(), public()));
    *nc.state.meta_delay.lock() = Duration::from_secs(27);
    let h = Harness::builder().nextcloud(&nc.url()).start().await;
    let started = Instant::now();
    assert_eq!(
        client()
            .get(h.url("/exapps/foo/x"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert!(started.elapsed() < Duration::from_secs(27));

    let nc2 = StubNextcloud::start().await;
    nc2.add_app("foo", meta(app.port(), public()));
    *nc2.state.meta_delay.lock() = Duration::from_secs(20);
    *nc2.state.user_delay.lock() = Duration::from_secs(20);
    let h2 = Harness::builder().nextcloud(&nc2.url()).start().await;
    let started = Instant::now();
    let r = client()
        .get(h2.url("/exapps/foo/x"))
        .header("cookie", "oc_sessionPassphrase=s")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.text().await.unwrap(), "503 Service Unavailable (HaRP)");
    // The deadline cancelled the pending user-info lookup instead of leaving it behind.
    assert_eq!(h2.lookups_in_flight(), 0);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(29) && took < Duration::from_secs(33),
        "{took:?}"
    );
}

/// Bad input: each case gets its status and harp keeps serving.
#[tokio::test]
async fn bad_input_table() {
    let (_nc, _app, h) = setup(&[]).await;
    let big_header = format!("x-big: {}\r\n", "a".repeat(20 * 1024));
    let huge_header = format!("x-big: {}\r\n", "a".repeat(1024 * 1024));
    let k = format!("harp-shared-key: {KEY}\r\n");
    // Header count: HAProxy, the reference, allows 101; harp allows 100.
    let many_headers = |n: usize| (0..n).map(|i| format!("x-h{i}: v\r\n")).collect::<String>();
    let cases: Vec<(String, u16)> = vec![
        ("GARBAGE\r\n\r\n".into(), 400),
        ("GET /exapps/foo/x HTTP/9.9\r\nHost: x\r\n\r\n".into(), 400),
        (format!("GET /exapps/foo/x HTTP/1.1\r\nHost: x\r\n{big_header}\r\n"), 200),
        (format!("GET /exapps/foo/x HTTP/1.1\r\nHost: x\r\n{huge_header}\r\n"), 431),
        (format!("GET /exapps/foo/x HTTP/1.1\r\nHost: x\r\n{}\r\n", many_headers(90)), 200),
        (format!("GET /exapps/foo/x HTTP/1.1\r\nHost: x\r\n{}\r\n", many_headers(150)), 431),
        // Malformed percent-escapes are refused before any decision (path normalisation).
        ("GET /exapps/foo/%zz HTTP/1.1\r\nHost: x\r\n\r\n".into(), 400),
        (format!("GET /exapps/app_api/containers/nc_app_%zz/json HTTP/1.1\r\nHost: x\r\n{k}docker-engine-port: 24000\r\n\r\n"), 400),
        (format!("POST /exapps/app_api/exapp_storage/foo HTTP/1.1\r\nHost: x\r\n{k}content-length: 5\r\n\r\n{{bad}}"), 400),
        (format!("GET /exapps/app_api/_ping HTTP/1.1\r\nHost: x\r\n{k}docker-engine-port: 12ab\r\n\r\n"), 400),
        (format!("GET /exapps/app_api/no/such/path HTTP/1.1\r\nHost: x\r\n{k}\r\n"), 404),
        (format!("GET /exapps/app_api/exapp_storage/foo HTTP/1.1\r\nHost: x\r\n{k}\r\n"), 405),
        (format!("GET /exapps/app_api/docker/exapp/exists HTTP/1.1\r\nHost: x\r\n{k}docker-engine-port: 24000\r\n\r\n"), 405),
        (format!("POST /exapps/app_api/heartbeat HTTP/1.1\r\nHost: x\r\n{k}content-length: 0\r\n\r\n"), 405),
        (format!("POST /exapps/app_api/k8s/exapp/exists HTTP/1.1\r\nHost: x\r\n{k}content-length: 2\r\n\r\n{{}}"), 503),
    ];
    for (req, want) in cases {
        let wire = if req.len() > 2000 {
            req[..60].to_string()
        } else {
            req.clone()
        };
        let req = req.replace(
            "HTTP/1.1\r\nHost: x\r\n",
            "HTTP/1.1\r\nHost: x\r\nConnection: close\r\n",
        );
        let out = raw_exchange(h.addr, req.as_bytes(), Duration::from_secs(5))
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out);
        let status: u16 = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        assert_eq!(
            status,
            want,
            "request {wire:?} answered {:?}",
            &text[..text.len().min(200)]
        );
    }
    assert_eq!(
        client()
            .get(h.url("/exapps/foo/still-alive"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

fn write_cert(dir: &std::path::Path, name: &str) -> rcgen::CertifiedKey {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let pem = format!("{}{}", ck.cert.pem(), ck.key_pair.serialize_pem());
    std::fs::write(dir.join("cert.pem"), pem).unwrap();
    ck
}

async fn https_get(
    h: &TestHarp,
    ca: &rcgen::CertifiedKey,
    name: &str,
) -> reqwest::Result<reqwest::Response> {
    let root = reqwest::Certificate::from_pem(ca.cert.pem().as_bytes()).unwrap();
    let c = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .resolve(name, h.https.unwrap())
        .build()
        .unwrap();
    c.get(format!(
        "https://{name}:{}/exapps/app_api/info",
        h.https.unwrap().port()
    ))
    .header("harp-shared-key", KEY)
    .send()
    .await
}

#[tokio::test]
async fn item17_https_only_with_a_certificate_and_item27_reload() {
    let nc = StubNextcloud::start().await;
    let without = Harness::builder().nextcloud(&nc.url()).start().await;
    assert!(without.https.is_none(), "no cert.pem, no HTTPS listener");

    let dir = tempfile::tempdir().unwrap();
    let first = write_cert(&dir.path().join("certs"), "harp.test");
    let h = Harness::builder()
        .in_dir(dir.path())
        .nextcloud(&nc.url())
        .start()
        .await;
    let r = https_get(&h, &first, "harp.test").await.unwrap();
    assert_eq!(r.status(), 200);

    let second = write_cert(&h.dir.join("certs"), "harp.test");
    h.tls.as_ref().unwrap().reload().unwrap();
    assert!(
        https_get(&h, &first, "harp.test").await.is_err(),
        "old certificate still served"
    );
    assert_eq!(
        https_get(&h, &second, "harp.test").await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn connection_cap_queues_extra_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_nc, _app, h) = setup(&[("HP_MAX_CONNECTIONS", "1")]).await;
    let req = b"GET /exapps/foo/x HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut first = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    first.write_all(req).await.unwrap();
    let mut buf = vec![0u8; 8192];
    assert!(
        first.read(&mut buf).await.unwrap() > 0,
        "first connection served"
    );
    let mut second = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    second.write_all(req).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(500), second.read(&mut buf)).await;
    assert!(
        waited.is_err(),
        "second connection must wait while the first holds the only slot"
    );
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn healthcheck_probe_passes_on_harp_and_fails_on_a_wedged_listener() {
    let (_nc, _app, h) = setup(&[]).await;
    let key = harp::security::SharedKey::new(KEY);
    let port = h.addr.port();
    let k = key.clone();
    let ok = tokio::task::spawn_blocking(move || {
        harp::health::probe("127.0.0.1", port, &k, Duration::from_secs(2))
    });
    assert_eq!(ok.await.unwrap(), Ok(()));
    let (silent, _t) = silent_server().await;
    let started = Instant::now();
    let bad = tokio::task::spawn_blocking(move || {
        harp::health::probe("127.0.0.1", silent.port(), &key, Duration::from_millis(500))
    });
    assert!(bad.await.unwrap().is_err());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn several_workers_share_the_port_and_stop_cleanly() {
    let nc = StubNextcloud::start().await;
    let app = StubExApp::start().await;
    let h = Harness::builder()
        .nextcloud(&nc.url())
        .envs(&[("HP_WORKERS", "3")])
        .start()
        .await;
    push_meta(&h, "foo", &meta(app.port(), public())).await;
    let reqs = (0..120).map(|i| {
        // A fresh client per request: new connections are spread over the workers' sockets.
        let url = h.url(&format!("/exapps/foo/{i}"));
        async move { client().get(url).send().await.map(|r| r.status().as_u16()) }
    });
    let statuses = futures_util::future::join_all(reqs).await;
    assert!(
        statuses.iter().all(|s| matches!(s, Ok(200))),
        "{statuses:?}"
    );
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(15), h.shutdown())
        .await
        .expect("graceful shutdown finishes");
    assert!(started.elapsed() < Duration::from_secs(12));
}

/// An engine whose kept-alive connections die after one answer (like a restarted daemon):
/// the second request on a reused connection is read and the connection closed unanswered.
async fn flaky_engine() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                if s.read(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nOK")
                    .await;
                let _ = s.read(&mut buf).await;
                // Dropping here closes the reused connection without an answer.
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn engine_calls_survive_a_dead_pooled_connection() {
    let (_nc, _app, h) = setup(&[]).await;
    let (engine, _t) = flaky_engine().await;
    // Engine ports are limited to the port plan: reach the flaky engine through a tunnel.
    let _tunnel = h.engine_tunnel(24095, engine).await;
    let port = "24095";
    let c = client();
    for round in 0..3 {
        let r = c
            .get(h.url("/exapps/app_api/_ping"))
            .header("harp-shared-key", KEY)
            .header("docker-engine-port", port)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "round {round}: a dead pooled connection must be retried on a fresh one"
        );
    }
}
