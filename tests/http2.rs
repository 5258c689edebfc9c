//! HTTP/2 on the front door (issue #14 item 5) with real clients: curl over h2c with prior
//! knowledge and over TLS with ALPN, and h2load. Every stream gets its own access decision;
//! the ExApp still sees HTTP/1.1 with a `Host` taken from `:authority`.

mod common;

use base64::Engine as _;
use common::exapp::StubExApp;
use common::nextcloud::StubNextcloud;
use common::prereq::require_command;
use common::*;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The one route needing a user, and a public one.
fn routes() -> Value {
    json!([
        {"url": "^/api", "access_level": 1, "bruteforce_protection": []},
        {"url": "^/public", "access_level": 0, "bruteforce_protection": []},
    ])
}

struct World {
    nc: StubNextcloud,
    _app: StubExApp,
    harp: TestHarp,
}

async fn world(dir: Option<&std::path::Path>) -> World {
    let nc = StubNextcloud::start().await;
    let app = StubExApp::start().await;
    nc.add_app("foo", meta(app.port(), routes()));
    nc.add_session("s", "alice", 1);
    let mut builder = Harness::builder()
        .nextcloud(&nc.url())
        .envs(&[("HP_TIMEOUT_CLIENT", "2s")]);
    if let Some(dir) = dir {
        builder = builder.in_dir(dir);
    }
    World {
        nc,
        _app: app,
        harp: builder.start().await,
    }
}

/// The client side of one HTTP/2 connection to harp (h2c, prior knowledge): the request sender
/// and the spawned connection task, which ends when harp closes the connection.
async fn h2_connect(
    addr: std::net::SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    (send, tokio::spawn(conn))
}

/// Runs `program` to completion off the runtime; (exit code, stdout, stderr).
async fn run(program: &'static str, args: Vec<String>) -> (i32, String, String) {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(program)
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn h2c_prior_knowledge_is_decided_and_forwarded_as_http1() {
    require_command("curl", "curl");
    let w = world(None).await;
    let url = w.harp.url("/exapps/foo/api/x");
    let (code, out, err) = run(
        "curl",
        args(&[
            "-sS",
            "--http2-prior-knowledge",
            "-H",
            "cookie: oc_sessionPassphrase=s",
            "-w",
            "\n%{http_version}",
            &url,
        ]),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (body, version) = out.rsplit_once('\n').unwrap();
    assert_eq!(version, "2", "curl spoke HTTP/2");
    let doc: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        doc["headers"]["host"],
        w.harp.addr.to_string(),
        "Host comes from :authority"
    );
    assert_eq!(
        doc["headers"]["authorization-app-api"],
        base64::engine::general_purpose::STANDARD.encode("alice:apptoken"),
        "the session cookie decided the stream"
    );
    assert_eq!(w.nc.user_calls(), 1);
}

/// hyper's HTTP/2 client on one TCP connection: an allowed, a refused, then a dropped request.
/// Each stream is decided on its own; a DROP closes the whole connection (contract §2.2), so a
/// stream the client had open alongside fails too. A new connection is served normally.
/// (curl 7.88 with `--http2-prior-knowledge` fails every reused-connection transfer here with
/// "Error in the HTTP2 framing layer" while h2load and hyper reuse the connection fine, so
/// this test drives the streams itself.)
#[tokio::test]
async fn each_stream_is_decided_and_a_drop_closes_the_connection() {
    let w = world(None).await;
    *w.nc.state.user_delay.lock() = Duration::from_secs(5);
    let connect = || h2_connect(w.harp.addr);
    let ask = |send: &mut hyper::client::conn::http2::SendRequest<Empty<bytes::Bytes>>,
               path: &str,
               cookie: bool| {
        let mut req = http::Request::get(format!("http://{}{path}", w.harp.addr));
        if cookie {
            req = req.header("cookie", "oc_sessionPassphrase=s");
        }
        send.send_request(req.body(Empty::new()).unwrap())
    };
    let (mut send, connection) = connect().await;
    let first = ask(&mut send, "/exapps/foo/public/a", false).await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.version(), http::Version::HTTP_2);
    let refused = ask(&mut send, "/exapps/foo/api/a", false).await.unwrap();
    assert_eq!(refused.status(), 403, "anonymous on a user route");
    // A stream waiting on its (5 s) user lookup when the connection goes.
    let pending = ask(&mut send, "/exapps/foo/api/slow", true);
    let pending = tokio::spawn(pending);
    let dropped = ask(&mut send, "/exapps/foo/a/../b", false).await;
    assert!(dropped.is_err(), "a dropped request gets no answer");
    tokio::time::timeout(Duration::from_secs(3), connection)
        .await
        .expect("the connection is closed at once")
        .unwrap()
        .expect_err("closed without GOAWAY");
    let pending = tokio::time::timeout(Duration::from_secs(3), pending)
        .await
        .expect("the other stream ends with the connection")
        .unwrap();
    assert!(pending.is_err(), "the stream alongside went with it");
    assert_eq!(w.harp.failures_of("127.0.0.1"), 2, "both failures recorded");

    let (mut send, _connection) = connect().await;
    let again = ask(&mut send, "/exapps/foo/public/b", false).await.unwrap();
    assert_eq!(again.status(), 200, "a new connection is served");
}

#[tokio::test]
async fn alpn_offers_h2_over_tls_and_http1_still_works() {
    require_command("curl", "curl");
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["harp.test".to_string()]).unwrap();
    let pem = format!("{}{}", ck.cert.pem(), ck.key_pair.serialize_pem());
    std::fs::write(certs.join("cert.pem"), pem).unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ck.cert.pem()).unwrap();
    let w = world(Some(dir.path())).await;
    let port = w.harp.https.expect("HTTPS listener").port();
    let resolve = format!("harp.test:{port}:127.0.0.1");
    let url = format!("https://harp.test:{port}/exapps/foo/public/x");
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let (code, out, err) = run(
            "curl",
            args(&[
                "-sS",
                flag,
                "--cacert",
                ca.to_str().unwrap(),
                "--resolve",
                &resolve,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
                &url,
            ]),
        )
        .await;
        assert_eq!(code, 0, "{flag}: {err}");
        assert_eq!(out, format!("200 {version}"), "{flag}");
    }
}

#[tokio::test]
async fn h2load_bounded_run_is_all_2xx() {
    require_command("h2load", "nghttp2-client");
    let w = world(None).await;
    let url = w.harp.url("/exapps/foo/api/load");
    let (code, out, err) = run(
        "h2load",
        args(&[
            "-n",
            "2000",
            "-c",
            "10",
            "-m",
            "10",
            "-H",
            "cookie: oc_sessionPassphrase=s",
            &url,
        ]),
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("requests: 2000 total, 2000 started, 2000 done, 2000 succeeded"),
        "{out}"
    );
    assert!(
        out.contains("status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx"),
        "{out}"
    );
    assert!(
        w.nc.user_calls() <= 10,
        "sessions cached across streams: {} user-info calls",
        w.nc.user_calls()
    );
}

/// A client that starts the preface and stalls is closed after the client timeout (2 s here),
/// like an HTTP/1 client that never finishes its request head.
#[tokio::test]
async fn a_stalled_preface_is_closed_after_the_client_timeout() {
    let w = world(None).await;
    let mut sock = tokio::net::TcpStream::connect(w.harp.addr).await.unwrap();
    sock.write_all(b"PRI * HTTP/2").await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf))
        .await
        .expect("harp closes a stalled preface")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

/// An HTTP/2 connection with nothing to do is closed (GOAWAY) after the client timeout (2 s
/// here), as HTTP/1's keep-alive is: it cannot hold a connection slot forever.
#[tokio::test]
async fn an_idle_connection_gets_goaway_after_the_client_timeout() {
    let w = world(None).await;
    let (mut send, connection) = h2_connect(w.harp.addr).await;
    let req = http::Request::get(format!("http://{}/exapps/foo/public/a", w.harp.addr))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(send.send_request(req).await.unwrap().status(), 200);
    let idle_from = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("harp closes the idle connection")
        .unwrap()
        .expect("a graceful GOAWAY, not an error");
    assert!(
        idle_from.elapsed() >= Duration::from_millis(1500),
        "closed before the client timeout: {:?}",
        idle_from.elapsed()
    );
}

/// The idle GOAWAY is graceful: a stream still waiting for its answer (here a 3 s user-info
/// lookup, longer than the 2 s client timeout) completes.
#[tokio::test]
async fn a_slow_stream_outlives_the_idle_goaway() {
    let w = world(None).await;
    *w.nc.state.user_delay.lock() = Duration::from_secs(3);
    let (mut send, _connection) = h2_connect(w.harp.addr).await;
    let req = http::Request::get(format!("http://{}/exapps/foo/api/slow", w.harp.addr))
        .header("cookie", "oc_sessionPassphrase=s")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("answered")
        .expect("the stream was not cut");
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() >= Duration::from_secs(3));
}

/// RFC 8441: a WebSocket over an HTTP/2 stream (extended CONNECT) is decided like any request,
/// reaches the ExApp as an HTTP/1.1 `Upgrade` handshake and echoes; a refused one gets its
/// status and no tunnel.
#[tokio::test]
async fn websockets_over_http2_are_decided_and_relayed() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{protocol::Role, Message};
    let w = world(None).await;
    let (mut send, _connection) = h2_connect(w.harp.addr).await;
    let connect = |path: &str, cookie: bool| {
        let mut req = http::Request::connect(format!("http://{}{path}", w.harp.addr))
            .header("sec-websocket-version", "13");
        if cookie {
            req = req.header("cookie", "oc_sessionPassphrase=s");
        }
        let mut req = req.body(Empty::<bytes::Bytes>::new()).unwrap();
        req.extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        req
    };
    // One ordinary exchange first, so the server's SETTINGS (extended CONNECT on) have arrived.
    let warm = http::Request::get(format!("http://{}/exapps/foo/public/a", w.harp.addr))
        .body(Empty::new())
        .unwrap();
    assert_eq!(send.send_request(warm).await.unwrap().status(), 200);

    let mut other = connect("/exapps/foo/public/ws", false);
    other
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static("connect-udp"));
    let other = send.send_request(other).await.unwrap();
    assert_eq!(
        other.status(),
        400,
        "only WebSockets may use extended CONNECT"
    );

    let refused = send
        .send_request(connect("/exapps/foo/api/ws", false))
        .await
        .unwrap();
    assert_eq!(refused.status(), 403, "anonymous on a user route");

    let mut ok = send
        .send_request(connect("/exapps/foo/api/ws", true))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "RFC 8441 success is 200");
    let stream = hyper::upgrade::on(&mut ok).await.unwrap();
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        TokioIo::new(stream),
        Role::Client,
        None,
    )
    .await;
    ws.send(Message::text("over h2")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo within 5 s")
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Message::text("over h2"));
}

/// The HTTP/2 bounds are announced to real clients in harp's SETTINGS (nghttp, from the same
/// Debian package as h2load), and a header list beyond the announced size is not served.
#[tokio::test]
async fn http2_bounds_are_announced_and_enforced() {
    require_command("nghttp", "nghttp2-client");
    let w = world(None).await;
    let (code, out, err) = run(
        "nghttp",
        args(&["-nv", &w.harp.url("/exapps/foo/public/a")]),
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let settings = out
        .lines()
        .skip_while(|l| !l.contains("recv SETTINGS frame"))
        .take(8)
        .collect::<Vec<_>>()
        .join("\n");
    for bound in [
        "SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100",
        "SETTINGS_INITIAL_WINDOW_SIZE(0x04):262144",
        "SETTINGS_MAX_HEADER_LIST_SIZE(0x06):65536",
        "SETTINGS_ENABLE_CONNECT_PROTOCOL(0x08):1",
    ] {
        assert!(settings.contains(bound), "{bound} missing in:\n{settings}");
    }

    let (mut send, _connection) = h2_connect(w.harp.addr).await;
    let warm = http::Request::get(format!("http://{}/exapps/foo/public/a", w.harp.addr))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(send.send_request(warm).await.unwrap().status(), 200);
    let big = http::Request::get(format!("http://{}/exapps/foo/public/b", w.harp.addr))
        .header("x-big", "a".repeat(70 * 1024))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let r = send.send_request(big).await.unwrap();
    assert_eq!(r.status(), 431, "a 70 KiB header list is refused");
}
