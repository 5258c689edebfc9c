//! The front door with real sockets: what its logs carry.

use super::handler::FrontDoor;
use super::{accept_loop, Gate};
use crate::control::{Control, LoginChecker};
use crate::docker::Wrappers;
use crate::logging::capture::Captured;
use crate::nextcloud::{MetaCache, Nextcloud, NextcloudClient};
use crate::security::{BanList, SharedKey};
use crate::upstream::{Forwarder, LocalDialers, Resolver};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};

/// A front door whose Nextcloud is unreachable (the requests here never need it).
fn door() -> FrontDoor {
    let key = SharedKey::new("test-key");
    let bans = Arc::new(BanList::new(Duration::from_secs(60), 5));
    let client = NextcloudClient::new("http://127.0.0.1:1", key.clone()).expect("client");
    let forwarder = || {
        let s = Duration::from_secs(5);
        Forwarder::new(s, s, None, LocalDialers::new(Vec::new()))
    };
    FrontDoor {
        gate: Arc::new(Gate {
            key: key.clone(),
            bans: bans.clone(),
            nextcloud: Arc::new(Nextcloud::new(client.clone(), Duration::from_secs(60))),
        }),
        control: Arc::new(Control {
            login: LoginChecker::new(key, bans),
            metadata: Arc::new(MetaCache::default()),
            docker: Wrappers {
                forwarder: forwarder(),
                frp_certs: "/nonexistent".into(),
                calls: None,
            },
            audit: Default::default(),
            k8s: None,
            nextcloud: client,
            k8s_calls: None,
        }),
        forwarder: forwarder(),
        resolver: Arc::new(Resolver::default()),
        trusted_proxies: Arc::new([]),
        client_timeout: Duration::from_secs(5),
        metrics: None,
    }
}

/// Sends one raw request to a front door serving on a fresh port; returns the response bytes
/// and every log line written meanwhile.
async fn exchange(request: &[u8]) -> (String, String) {
    let (captured, _guard) = Captured::start();
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket.set_nonblocking(true).unwrap();
    let addr = socket.local_addr().unwrap();
    let (stop_tx, stop_rx) = watch::channel(false);
    let limit = Arc::new(Semaphore::new(4));
    let server = tokio::spawn(accept_loop(socket, None, Arc::new(door()), limit, stop_rx));
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client.write_all(request).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut response))
        .await
        .expect("the server closes after a `Connection: close` request")
        .unwrap();
    let _ = stop_tx.send(true);
    server.await.unwrap();
    let logs = captured.text();
    (String::from_utf8_lossy(&response).into_owned(), logs)
}

fn line_with<'a>(logs: &'a str, needle: &str) -> &'a str {
    logs.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{logs}"))
}

#[tokio::test]
async fn lines_logged_while_serving_a_request_carry_its_client_and_request_id() {
    // No app id in the path: the pipeline records a failure (a warning) and answers 404.
    let (response, logs) = exchange(
        b"GET /x HTTP/1.1\r\nHost: h\r\naa-request-id: req-42\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    let warning = line_with(&logs, "brute-force failure recorded");
    assert!(warning.contains("request{client=127.0.0.1"), "{warning}");
    assert!(warning.contains("request_id=\"req-42\""), "{warning}");
    assert!(
        warning.contains("conn{listener=\"front door\" peer=127.0.0.1:"),
        "{warning}"
    );
    // The access line keeps its own format: its fields, not the request's context.
    let access = line_with(&logs, "harp::access");
    assert!(!access.contains("request{"), "{access}");
    assert!(access.contains("status=404"), "{access}");
}

#[tokio::test]
async fn a_request_id_that_is_not_short_printable_text_is_left_out() {
    let long = "a".repeat(200);
    let request =
        format!("GET /x HTTP/1.1\r\nHost: h\r\naa-request-id: {long}\r\nConnection: close\r\n\r\n");
    let (_, logs) = exchange(request.as_bytes()).await;
    let warning = line_with(&logs, "brute-force failure recorded");
    assert!(!warning.contains("request_id"), "{warning}");
    let (_, logs) = exchange(
        b"GET /x HTTP/1.1\r\nHost: h\r\naa-request-id: two words\r\nConnection: close\r\n\r\n",
    )
    .await;
    let warning = line_with(&logs, "brute-force failure recorded");
    assert!(!warning.contains("request_id"), "{warning}");
}
