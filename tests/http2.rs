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

/// hyper's HTTP/2 client on one TCP connection: an allowed, a refused, a dropped and again an
/// allowed request. (curl 7.88 with `--http2-prior-knowledge` fails every reused-connection
/// transfer here with "Error in the HTTP2 framing layer" while h2load and hyper reuse the same
/// connection fine, so this test drives the streams itself.)
#[tokio::test]
async fn each_stream_on_one_connection_gets_its_own_decision() {
    let w = world(None).await;
    let tcp = tokio::net::TcpStream::connect(w.harp.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let connection = tokio::spawn(conn);
    let mut ask = |path: &str| {
        let req = http::Request::get(format!("http://{}{path}", w.harp.addr))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        send.send_request(req)
    };
    let first = ask("/exapps/foo/public/a").await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.version(), http::Version::HTTP_2);
    let refused = ask("/exapps/foo/api/a").await.unwrap();
    assert_eq!(refused.status(), 403, "anonymous on a user route");
    let dropped = ask("/exapps/foo/a/../b").await;
    let reset = dropped.expect_err("a dropped request gets no answer");
    assert!(
        format!("{reset:?}").contains("INTERNAL_ERROR") || format!("{reset:?}").contains("Reset"),
        "its stream was reset: {reset:?}"
    );
    let last = ask("/exapps/foo/public/b").await.unwrap();
    assert_eq!(last.status(), 200, "only the stream was reset");
    assert!(!connection.is_finished(), "the connection serves on");
    assert_eq!(w.harp.failures_of("127.0.0.1"), 2, "both failures recorded");
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
    let tcp = tokio::net::TcpStream::connect(w.harp.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let connection = tokio::spawn(conn);
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
    let tcp = tokio::net::TcpStream::connect(w.harp.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
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
