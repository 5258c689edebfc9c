//! HTTP protocol hardening against hostile clients and ExApps (issue #13): which upgrades pass,
//! which headers a client may strip, client timeouts on bodies and stalled readers, and RFC 9112
//! message framing. Byte-exact cases use raw sockets; misbehaving ExApps are scripted here.

mod common;

use common::exapp::StubExApp;
use common::nextcloud::StubNextcloud;
use common::*;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `/public` and `/upload` for everyone, everything else for logged-in users only.
fn routes() -> serde_json::Value {
    json!([
        {"url": "^/(public|upload)", "access_level": 0, "bruteforce_protection": []},
        {"url": ".*", "access_level": 1, "bruteforce_protection": []},
    ])
}

/// A short client timeout and a server timeout far beyond every deadline below, so whichever
/// fires first is plain.
const SHORT_CLIENT: [(&str, &str); 2] =
    [("HP_TIMEOUT_CLIENT", "300ms"), ("HP_TIMEOUT_SERVER", "60s")];

/// How long a test waits for what the client timeout must cause (300 ms plus slack for a
/// loaded machine), far below the 60 s server timeout.
const DEADLINE: Duration = Duration::from_secs(10);

async fn harp_for(port: u16, extra: &[(&str, &str)]) -> (StubNextcloud, TestHarp) {
    let nc = StubNextcloud::start().await;
    let h = Harness::builder()
        .nextcloud(&nc.url())
        .envs(extra)
        .start()
        .await;
    push_meta(&h, "foo", &meta(port, routes())).await;
    (nc, h)
}

fn status_of(response: &[u8]) -> u16 {
    String::from_utf8_lossy(response)
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Reads one response head (and its `content-length` body) off `s`.
async fn read_response(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    let read = async {
        while !out.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).await.unwrap() == 0 {
                return;
            }
            out.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&out).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        s.read_exact(&mut body).await.unwrap();
        out.extend_from_slice(&body);
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("a response in time");
    out
}

/// What a scripted ExApp does with each request head it reads.
#[derive(Clone, Copy)]
enum Script {
    /// `101` (to h2c) whenever the request offers an upgrade, else `200 ok`.
    SwitchOnUpgrade,
    /// `101` to every request, upgrade offered or not.
    AlwaysSwitch,
    /// A response with both `Content-Length` and `Transfer-Encoding: chunked`.
    BothFramings,
    /// A chunked response head and one chunk at once, then reads on without finishing.
    AnswerEarly,
    /// A chunked response that never ends; notes when writing to harp fails.
    Endless,
}

struct Scripted {
    addr: SocketAddr,
    /// Every request head received, as text.
    heads: Arc<Mutex<Vec<String>>>,
    /// Bytes received after a 101 (requests that bypassed harp's decision).
    after_switch: Arc<Mutex<Vec<u8>>>,
    /// `Endless`: harp closed the connection (it stopped relaying the response).
    released: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Upper bound on what `Endless` writes before giving up (far more than any socket buffers).
const ENDLESS_CAP: usize = 512 << 20;

async fn scripted(script: Script) -> Scripted {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let after_switch = Arc::new(Mutex::new(Vec::new()));
    let released = Arc::new(AtomicBool::new(false));
    let (h, a, r) = (heads.clone(), after_switch.clone(), released.clone());
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (heads, after_switch, released) = (h.clone(), a.clone(), r.clone());
            tokio::spawn(async move {
                loop {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match s.read(&mut byte).await {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                    heads.lock().unwrap().push(head.clone());
                    let switch = match script {
                        Script::SwitchOnUpgrade => head.contains("\nupgrade:"),
                        Script::AlwaysSwitch => true,
                        _ => false,
                    };
                    if switch {
                        let _ = s
                            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n")
                            .await;
                        let mut buf = [0u8; 4096];
                        while let Ok(n @ 1..) = s.read(&mut buf).await {
                            after_switch.lock().unwrap().extend_from_slice(&buf[..n]);
                        }
                        return;
                    }
                    match script {
                        Script::BothFramings => {
                            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
                            if s.write_all(reply).await.is_err() {
                                return;
                            }
                            // A request body, if any, is not wanted: this script only answers.
                        }
                        Script::AnswerEarly => {
                            let reply =
                                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nearly\r\n";
                            let _ = s.write_all(reply).await;
                            let mut buf = [0u8; 4096];
                            while let Ok(1..) = s.read(&mut buf).await {}
                            return;
                        }
                        Script::Endless => {
                            let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
                            let mut sent = s
                                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                                .await
                                .map(|_| 0);
                            while let Ok(n) = sent {
                                if n > ENDLESS_CAP {
                                    return;
                                }
                                sent = s.write_all(chunk.as_bytes()).await.map(|_| n + chunk.len());
                            }
                            released.store(true, Ordering::SeqCst);
                            return;
                        }
                        _ => {
                            if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    Scripted {
        addr,
        heads,
        after_switch,
        released,
        task,
    }
}

/// Polls `done` until it holds or `DEADLINE` passes.
async fn eventually(done: impl Fn() -> bool) -> bool {
    wait_until(DEADLINE, done).await
}

const H2C_OFFER: &str = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n";

#[tokio::test]
async fn h2c_upgrade_is_not_forwarded_and_later_requests_are_still_decided() {
    let app = scripted(Script::SwitchOnUpgrade).await;
    let (_nc, h) = harp_for(app.addr.port(), &[]).await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(
        format!("GET /exapps/foo/public HTTP/1.1\r\nHost: x\r\n{H2C_OFFER}\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let first = read_response(&mut s).await;
    assert_eq!(
        status_of(&first),
        200,
        "{:?}",
        String::from_utf8_lossy(&first)
    );
    let seen = app.heads.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    for name in ["\nupgrade:", "\nhttp2-settings:", "\nconnection:"] {
        assert!(
            !seen[0].contains(name),
            "{name} reached the ExApp: {}",
            seen[0]
        );
    }
    // Same connection: a route for logged-in users only, without credentials.
    s.write_all(b"GET /exapps/foo/private HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let second = read_response(&mut s).await;
    assert_eq!(
        status_of(&second),
        403,
        "{:?}",
        String::from_utf8_lossy(&second)
    );
    assert!(app.after_switch.lock().unwrap().is_empty());
    assert_eq!(app.heads.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_101_to_a_request_that_did_not_upgrade_is_502() {
    let app = scripted(Script::AlwaysSwitch).await;
    let (_nc, h) = harp_for(app.addr.port(), &[]).await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    // With a body (hyper's client), then without one (the in-task client), on one connection.
    for request in [
        format!(
            "POST /exapps/foo/public HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n{H2C_OFFER}\r\nhi"
        ),
        "GET /exapps/foo/public HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
    ] {
        s.write_all(request.as_bytes()).await.unwrap();
        let response = read_response(&mut s).await;
        assert_eq!(
            status_of(&response),
            502,
            "{:?}",
            String::from_utf8_lossy(&response)
        );
    }
    s.write_all(b"GET /exapps/foo/private HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status_of(&read_response(&mut s).await), 403);
    // The POST body may follow its 101; no later request may.
    let after = String::from_utf8_lossy(&app.after_switch.lock().unwrap()).into_owned();
    assert!(!after.contains("HTTP/1.1"), "{after:?}");
    assert_eq!(app.heads.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn websocket_upgrades_still_work() {
    let app = StubExApp::start().await;
    let (_nc, h) = harp_for(app.port(), &[]).await;
    let tcp = TcpStream::connect(h.addr).await.unwrap();
    let (_ws, resp) =
        tokio_tungstenite::client_async(format!("ws://{}/exapps/foo/public/ws", h.addr), tcp)
            .await
            .unwrap();
    assert_eq!(resp.status(), 101);
}

#[tokio::test]
async fn connection_header_cannot_remove_injected_headers_or_host() {
    let app = StubExApp::start().await;
    let (_nc, h) = harp_for(app.port(), &[]).await;
    let request = "GET /exapps/foo/public HTTP/1.1\r\nHost: example.test\r\nConnection: close, authorization-app-api, ex-app-id, aa-version, ex-app-version, host, x-private\r\nx-private: 1\r\n\r\n";
    let out = raw_exchange(h.addr, request.as_bytes(), DEADLINE)
        .await
        .unwrap();
    assert_eq!(status_of(&out), 200);
    let text = String::from_utf8_lossy(&out);
    let doc: serde_json::Value =
        serde_json::from_str(&text[text.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    let got = &doc["headers"];
    assert_eq!(got["ex-app-id"], "foo");
    assert_eq!(got["ex-app-version"], "1.2.3");
    assert_eq!(got["aa-version"], "32");
    assert!(got["authorization-app-api"].is_string(), "{got}");
    assert_eq!(got["host"], "example.test");
    assert!(
        got.get("x-private").is_none(),
        "a listed name of the client's own is removed"
    );
    assert!(got.get("connection").is_none());
}

#[tokio::test]
async fn stalled_upload_is_408_and_closed_well_before_the_server_timeout() {
    let app = StubExApp::start().await;
    let (_nc, h) = harp_for(app.port(), &SHORT_CLIENT).await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(
        b"POST /exapps/foo/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut out))
        .await
        .expect("harp closes the connection")
        .unwrap();
    assert_eq!(status_of(&out), 408, "{:?}", String::from_utf8_lossy(&out));
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(h.failures_of("127.0.0.1"), 0);
}

#[tokio::test]
async fn stalled_upload_after_the_response_started_closes_the_connection() {
    let app = scripted(Script::AnswerEarly).await;
    let (_nc, h) = harp_for(app.addr.port(), &SHORT_CLIENT).await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(
        b"POST /exapps/foo/public HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 4096];
        // A reset after the partial response also counts as closed.
        while let Ok(n @ 1..) = s.read(&mut buf).await {
            out.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(closed.is_ok(), "harp keeps the connection open");
    let text = String::from_utf8_lossy(&out);
    assert_eq!(status_of(&out), 200, "{text:?}");
    assert!(text.contains("early"), "{text:?}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "the cut response must not look complete: {text:?}"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_and_the_exapp_released() {
    let app = scripted(Script::Endless).await;
    let (_nc, h) = harp_for(app.addr.port(), &SHORT_CLIENT).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(h.addr).await.unwrap();
    s.write_all(b"GET /exapps/foo/public HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The client never reads.
    assert!(
        eventually(|| app.released.load(Ordering::SeqCst)).await,
        "the ExApp is still streaming to harp for a client that stopped reading"
    );
    drop(s);
}

#[tokio::test]
async fn content_length_beside_chunked_response_is_dropped_on_both_clients() {
    let app = scripted(Script::BothFramings).await;
    let (_nc, h) = harp_for(app.addr.port(), &[]).await;
    for request in [
        "GET /exapps/foo/public HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "POST /exapps/foo/public HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
    ] {
        let out = raw_exchange(h.addr, request.as_bytes(), DEADLINE).await.unwrap();
        let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(status_of(&out), 200, "{text:?}");
        assert!(!head.contains("content-length"), "{request:?} -> {head:?}");
        assert!(head.contains("transfer-encoding: chunked"), "{head:?}");
        assert_eq!(body, "5\r\nhello\r\n0\r\n\r\n");
    }
}

#[tokio::test]
async fn malformed_chunked_request_body_is_400() {
    let app = StubExApp::start().await;
    let (_nc, h) = harp_for(app.port(), &[]).await;
    let request = "POST /exapps/foo/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n\r\n";
    let out = raw_exchange(h.addr, request.as_bytes(), DEADLINE)
        .await
        .unwrap();
    assert_eq!(status_of(&out), 400, "{:?}", String::from_utf8_lossy(&out));
}

#[tokio::test]
async fn ambiguous_host_is_400_and_never_forwarded() {
    let app = StubExApp::start().await;
    let (_nc, h) = harp_for(app.port(), &[]).await;
    for (request, want) in [
        (
            "GET /exapps/foo/public HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            400,
        ),
        (
            "GET /exapps/foo/public HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
            400,
        ),
        (
            "GET http://a/exapps/foo/public HTTP/1.1\r\nHost: b\r\n\r\n",
            400,
        ),
        (
            "GET http://a/exapps/foo/public HTTP/1.1\r\nHost: A\r\n\r\n",
            200,
        ),
    ] {
        let request = request.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
        let out = raw_exchange(h.addr, request.as_bytes(), DEADLINE)
            .await
            .unwrap();
        assert_eq!(status_of(&out), want, "{request:?}");
    }
    assert_eq!(
        app.requests.load(Ordering::SeqCst),
        1,
        "only the unambiguous one"
    );
}

#[tokio::test]
async fn conflicting_content_lengths_are_400_and_never_forwarded() {
    let app = StubExApp::start().await;
    let (_nc, h) = harp_for(app.port(), &[]).await;
    let request = "POST /exapps/foo/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc";
    let out = raw_exchange(h.addr, request.as_bytes(), DEADLINE)
        .await
        .unwrap();
    assert_eq!(status_of(&out), 400);
    assert_eq!(app.requests.load(Ordering::SeqCst), 0);
}

/// hyper does not reject a request with both framings; it follows RFC 9112 §6.3's other
/// option: the body is read by Transfer-Encoding alone and the connection closes after the
/// response, so nothing smuggled behind the body is ever read as a request.
#[tokio::test]
async fn content_length_beside_chunked_request_cannot_smuggle() {
    let app = StubExApp::start().await;
    let (_nc, h) = harp_for(app.port(), &[]).await;
    for (first, second) in [
        ("Content-Length: 4", "Transfer-Encoding: chunked"),
        ("Transfer-Encoding: chunked", "Content-Length: 4"),
    ] {
        let request = format!(
            "POST /exapps/foo/upload HTTP/1.1\r\nHost: x\r\n{first}\r\n{second}\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /exapps/foo/private HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        let out = raw_exchange(h.addr, request.as_bytes(), DEADLINE)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out);
        assert_eq!(status_of(&out), 200, "{text:?}");
        assert!(text.ends_with(r#"{"bytes":5}"#), "{text:?}");
        assert_eq!(
            text.matches("HTTP/1.1 ").count(),
            1,
            "one response only: {text:?}"
        );
    }
    assert_eq!(app.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn stalled_control_body_is_408() {
    let nc = StubNextcloud::start().await;
    let h = Harness::builder()
        .nextcloud(&nc.url())
        .envs(&SHORT_CLIENT)
        .start()
        .await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let head = format!(
        "POST /exapps/app_api/exapp_storage/foo HTTP/1.1\r\nHost: x\r\nharp-shared-key: {KEY}\r\nContent-Length: 100\r\n\r\n{{\"exapp"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut out))
        .await
        .expect("harp closes the connection")
        .unwrap();
    assert_eq!(status_of(&out), 408, "{:?}", String::from_utf8_lossy(&out));
}

/// The stalled-reader timeout ends with the switch to a WebSocket: from then on only the
/// tunnel timeout applies, so a client may leave an echo unread longer than the client timeout.
#[tokio::test]
async fn websocket_client_that_reads_late_is_not_cut_by_the_client_timeout() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let app = StubExApp::start().await;
    let (_nc, h) = harp_for(app.port(), &SHORT_CLIENT).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 << 10).unwrap();
    let tcp = socket.connect(h.addr).await.unwrap();
    let (ws, _) =
        tokio_tungstenite::client_async(format!("ws://{}/exapps/foo/public/ws", h.addr), tcp)
            .await
            .unwrap();
    let (mut tx, mut rx) = ws.split();
    // Far more than the socket buffers hold: harp's writes to this client block.
    let message = Message::binary(vec![7u8; 8 << 20]);
    let sender = tokio::spawn(async move {
        tx.send(message).await.unwrap();
        tx
    });
    // Unread for several client timeouts (the point of the test, not a synchronisation).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let echo = tokio::time::timeout(DEADLINE, rx.next())
        .await
        .expect("an echo in time")
        .expect("the connection is still open")
        .expect("a valid frame");
    assert_eq!(echo.into_data().len(), 8 << 20);
    drop(sender.await.unwrap());
}
