//! The nginx recipe of MIGRATING.md, run with Debian's real nginx in front of harp: the config
//! is the recipe's own text (its two `nginx` blocks), so the document cannot drift from what is
//! tested. Checks a request, a WebSocket echo, and that bans hit the real client (127.0.0.2),
//! not nginx (127.0.0.1), also when the client forges its own `X-Forwarded-For`.

mod common;

use common::exapp::StubExApp;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const NGINX: &str = "/usr/sbin/nginx";
/// Where the recipe sends requests; the test replaces it with harp's ephemeral address.
const RECIPE_UPSTREAM: &str = "127.0.0.1:8780";
const CLIENT: &str = "127.0.0.2";
const OTHER_CLIENT: &str = "127.0.0.3";
const FORGED: &str = "203.0.113.9";

/// The fenced ```nginx blocks of MIGRATING.md, in order.
fn recipe_blocks() -> Vec<String> {
    let doc = include_str!("../MIGRATING.md");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match &mut current {
            None if line.trim_end() == "```nginx" => current = Some(String::new()),
            Some(block) if line.trim_end() == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// A foreground nginx serving the recipe on `port`, killed on drop.
struct Nginx {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_nginx(harp: SocketAddr) -> (Nginx, SocketAddr) {
    assert!(
        Path::new(NGINX).exists(),
        "this test needs Debian's nginx ({NGINX}); run tests/setup"
    );
    let blocks = recipe_blocks();
    assert_eq!(
        blocks.len(),
        2,
        "MIGRATING.md must hold the http-context map and the location block"
    );
    let (http_context, location) = (&blocks[0], &blocks[1]);
    assert!(
        location.contains(RECIPE_UPSTREAM),
        "the location block must proxy to {RECIPE_UPSTREAM}"
    );
    let location = location.replace(RECIPE_UPSTREAM, &harp.to_string());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    // One process (no master/worker user switch), everything it writes inside `dir`.
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
         {http_context}\n server {{\n  listen {listen};\n{location}\n }}\n}}\n"
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(NGINX)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .spawn()
        .expect("start nginx");
    let mut nginx = Nginx { child, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if tokio::net::TcpStream::connect(listen).await.is_ok() {
            break;
        }
        if let Some(status) = nginx.child.try_wait().unwrap() {
            let log = std::fs::read_to_string(nginx._dir.path().join("error.log"));
            panic!("nginx exited with {status}: {log:?}");
        }
        assert!(
            Instant::now() < deadline,
            "nginx did not listen on {listen}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (nginx, listen)
}

/// A TCP connection from `from` (a loopback address standing for a remote client).
async fn connect_from(from: &str, to: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// One `GET` through nginx from `from`, with a forged `X-Forwarded-For`; returns the status.
async fn get_from(from: &str, nginx: SocketAddr, path: &str) -> u16 {
    let mut s = connect_from(from, nginx).await;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: cloud.example\r\nX-Forwarded-For: {FORGED}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("nginx answered in time")
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    text.get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"))
}

#[tokio::test]
async fn nginx_recipe_proxies_requests_websockets_and_bans_the_real_client() {
    let app = StubExApp::start().await;
    // nginx is on harp's loopback, so 127.0.0.1 is the trusted proxy. Nextcloud is never
    // asked: the metadata is pushed, as AppAPI does.
    let h = Harness::builder()
        .envs(&[
            ("HP_TRUSTED_PROXY_IPS", "127.0.0.1"),
            ("HP_BLACKLIST_COUNT", "3"),
        ])
        .start()
        .await;
    let routes = serde_json::json!([
        {"url": "^/public", "access_level": 0, "bruteforce_protection": []},
    ]);
    push_meta(&h, "echo", &meta(app.port(), routes)).await;
    let (_nginx, nginx) = start_nginx(h.addr).await;

    // A plain request; the ExApp sees harp's forwarding, not the client's forged header.
    assert_eq!(get_from(CLIENT, nginx, "/exapps/echo/public/x").await, 200);

    // A WebSocket echo through nginx's upgrade handling and harp.
    let tcp = connect_from(CLIENT, nginx).await;
    let (mut ws, resp) =
        tokio_tungstenite::client_async(format!("ws://{nginx}/exapps/echo/public/ws"), tcp)
            .await
            .expect("WebSocket upgrade through nginx");
    assert_eq!(resp.status(), 101);
    for text in ["hello", &"z".repeat(100_000)] {
        ws.send(Message::text(text)).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo in time");
        assert!(
            matches!(&echoed, Some(Ok(Message::Text(t))) if t.as_str() == text),
            "{echoed:?}"
        );
    }
    drop(ws);

    // Failures (a path no route allows) count against the client, not nginx and not the
    // address the client forged.
    for _ in 0..3 {
        assert_eq!(get_from(CLIENT, nginx, "/exapps/echo/private").await, 404);
    }
    assert_eq!(h.failures_of(CLIENT), 3);
    assert_eq!(h.failures_of("127.0.0.1"), 0, "nginx itself was counted");
    assert_eq!(
        h.failures_of(FORGED),
        0,
        "the forged X-Forwarded-For was believed"
    );
    // The banned client is dropped (nginx: 502); another client behind nginx is still served.
    assert_eq!(get_from(CLIENT, nginx, "/exapps/echo/public/x").await, 502);
    assert_eq!(
        get_from(OTHER_CLIENT, nginx, "/exapps/echo/public/x").await,
        200
    );
}
