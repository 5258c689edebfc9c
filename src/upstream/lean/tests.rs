use super::head::{parse_head, Framing};
use super::*;
use crate::upstream::connector::LocalDialers;
use http::{HeaderMap, HeaderValue, StatusCode};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn parsed(raw: &str, head_request: bool) -> Result<Option<head::Head>, LeanError> {
    let mut buf = BytesMut::from(raw.as_bytes());
    parse_head(&mut buf, head_request)
}

fn framing(raw: &str) -> (Framing, bool) {
    let h = parsed(raw, false).unwrap().expect("complete head");
    (h.framing, h.keep_alive)
}

#[test]
fn request_head_is_written_as_given_and_raw_targets_are_checked() {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("app:1"));
    headers.insert("ex-app-id", HeaderValue::from_static("Foo"));
    let head = request_head(&Method::GET, "/a/b?c=d", &headers).unwrap();
    assert_eq!(
        head,
        b"GET /a/b?c=d HTTP/1.1\r\nhost: app:1\r\nex-app-id: Foo\r\n\r\n"
    );
    for bad in ["/a b", "/a\r\nx: y", "relative", ""] {
        assert!(
            request_head(&Method::GET, bad, &headers).is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn framing_follows_rfc9112() {
    let cases = [
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
            (Framing::Length(5), true),
        ),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            (Framing::Chunked, true),
        ),
        // Transfer-Encoding wins over Content-Length; the connection is not reused after.
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 9\r\ntransfer-encoding: chunked\r\n\r\n",
            (Framing::Chunked, false),
        ),
        // A final coding other than chunked: the body runs until the close.
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
            (Framing::UntilClose, false),
        ),
        ("HTTP/1.1 200 OK\r\n\r\n", (Framing::UntilClose, false)),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            (Framing::Empty, true),
        ),
        ("HTTP/1.1 204 No Content\r\n\r\n", (Framing::Empty, true)),
        (
            "HTTP/1.1 304 Not Modified\r\ncontent-length: 7\r\n\r\n",
            (Framing::Empty, true),
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n",
            (Framing::Length(2), false),
        ),
        (
            "HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n",
            (Framing::Length(2), false),
        ),
        (
            "HTTP/1.0 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\n",
            (Framing::Length(2), true),
        ),
    ];
    for (raw, want) in cases {
        assert_eq!(framing(raw), want, "{raw:?}");
    }
    let head = parsed("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", true)
        .unwrap()
        .unwrap();
    assert_eq!(head.framing, Framing::Empty, "a HEAD response has no body");
}

#[test]
fn content_length_beside_transfer_encoding_is_not_forwarded() {
    for raw in [
        "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: gzip\r\n\r\n",
    ] {
        let head = parsed(raw, false).unwrap().unwrap();
        assert!(
            !head.headers.contains_key(http::header::CONTENT_LENGTH),
            "{raw:?}"
        );
        assert!(!head.keep_alive, "{raw:?}");
    }
}

#[test]
fn heads_that_are_wrong_or_incomplete() {
    for bad in [
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: two\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
        "SSH-2.0-OpenSSH\r\n\r\n",
    ] {
        assert!(parsed(bad, false).is_err(), "{bad:?}");
    }
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-le"[..]);
    assert!(parse_head(&mut buf, false).unwrap().is_none());
    assert_eq!(buf.len(), 27, "an incomplete head stays in the buffer");
    // Interim responses are skipped; the bytes after the final head stay for the body.
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"[..],
    );
    let head = parse_head(&mut buf, false).unwrap().unwrap();
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(&buf[..], b"ok");
}

#[test]
fn chunk_size_lines() {
    assert_eq!(body::chunk_size(b"1a"), Some(26));
    assert_eq!(body::chunk_size(b"1A;name=value"), Some(26));
    assert_eq!(body::chunk_size(b"0"), Some(0));
    for bad in [&b""[..], b"+1", b"xyz", b"1 2", b"10000000000000000"] {
        assert_eq!(body::chunk_size(bad), None, "{bad:?}");
    }
}

/// One scripted reply: pieces written 20 ms apart, then maybe a close.
struct Reply {
    pieces: Vec<&'static [u8]>,
    close: bool,
}

fn reply(pieces: &[&'static [u8]]) -> Reply {
    Reply {
        pieces: pieces.to_vec(),
        close: false,
    }
}

fn reply_then_close(pieces: &[&'static [u8]]) -> Reply {
    Reply {
        pieces: pieces.to_vec(),
        close: true,
    }
}

/// A scripted upstream on 127.0.0.1: each request read (up to its blank line) is answered with
/// the next reply, whichever connection it came on.
struct Upstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

async fn upstream(replies: Vec<Reply>) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (c, r) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let (replies, requests) = (replies.clone(), r.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                loop {
                    let mut byte = [0u8; 1];
                    while !seen.ends_with(b"\r\n\r\n") {
                        match s.read(&mut byte).await {
                            Ok(1) => seen.push(byte[0]),
                            _ => return,
                        }
                    }
                    requests
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&seen).into_owned());
                    seen.clear();
                    let Some(next) = replies.lock().unwrap().pop_front() else {
                        return;
                    };
                    for piece in next.pieces {
                        if s.write_all(piece).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    if next.close {
                        return;
                    }
                }
            });
        }
    });
    Upstream {
        addr,
        connections,
        requests,
    }
}

fn lean() -> Lean {
    let connector = Connector {
        connect_timeout: Duration::from_secs(2),
        local: LocalDialers::default(),
    };
    Lean::new(connector, Duration::from_secs(5))
}

async fn get(lean: &Lean, addr: SocketAddr) -> Result<(StatusCode, Bytes), LeanError> {
    let head = request_head(&Method::GET, "/x", &HeaderMap::new()).unwrap();
    let response = lean.send(addr, &head, false).await?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| LeanError::Io(io::Error::other(e.to_string())))?
        .to_bytes();
    Ok((status, body))
}

#[tokio::test]
async fn keep_alive_connection_serves_every_framing_in_turn() {
    let up = upstream(vec![
        reply(&[b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"]),
        // Length body arriving in pieces.
        reply(&[
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
            b"defg",
            b"hij",
        ]),
        // Chunked with an extension and a trailer, split mid-line and mid-data.
        reply(&[
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=y\r\nhel",
            b"lo\r\n",
            b"6\r\n wor",
            b"ld\r\n0\r\ntrailer: t\r\n",
            b"\r\n",
        ]),
        reply(&[b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"]),
    ])
    .await;
    let lean = lean();
    assert_eq!(get(&lean, up.addr).await.unwrap().1, "hello");
    assert_eq!(get(&lean, up.addr).await.unwrap().1, "abcdefghij");
    assert_eq!(get(&lean, up.addr).await.unwrap().1, "hello world");
    let (status, body) = get(&lean, up.addr).await.unwrap();
    assert_eq!((status, body.len()), (StatusCode::NOT_FOUND, 0));
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "one connection, reused"
    );
    assert_eq!(up.requests.lock().unwrap()[0], "GET /x HTTP/1.1\r\n\r\n");
}

#[tokio::test]
async fn body_until_close_is_read_to_the_end_and_its_connection_not_reused() {
    let up = upstream(vec![
        reply_then_close(&[b"HTTP/1.1 200 OK\r\n\r\nstream", b"ed to the end"]),
        reply(&[b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]),
    ])
    .await;
    let lean = lean();
    assert_eq!(get(&lean, up.addr).await.unwrap().1, "streamed to the end");
    assert_eq!(get(&lean, up.addr).await.unwrap().1, "ok");
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn request_on_a_connection_closed_while_idle_goes_again_on_a_new_one() {
    // The server closes after its first response without saying so (a keep-alive timeout,
    // or a restart): the pooled connection is dead when the second request is written.
    let up = upstream(vec![
        reply_then_close(&[b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na"]),
        reply(&[b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nb"]),
    ])
    .await;
    let lean = lean();
    assert_eq!(get(&lean, up.addr).await.unwrap().1, "a");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(get(&lean, up.addr).await.unwrap().1, "b");
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn unanswered_request_on_a_new_connection_fails_without_resending() {
    let up = upstream(vec![reply_then_close(&[])]).await;
    let err = get(&lean(), up.addr).await.unwrap_err();
    assert!(matches!(err, LeanError::Unanswered(_)), "{err:?}");
    assert_eq!(up.requests.lock().unwrap().len(), 1, "sent once");
}

#[tokio::test]
async fn truncated_or_malformed_bodies_fail_and_are_not_pooled() {
    let up = upstream(vec![
        reply_then_close(&[b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", b"de"]),
        reply_then_close(&[b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"]),
        reply(&[b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]),
    ])
    .await;
    let lean = lean();
    assert!(get(&lean, up.addr).await.is_err(), "closed 5 bytes short");
    assert!(get(&lean, up.addr).await.is_err(), "bad chunk size");
    assert_eq!(get(&lean, up.addr).await.unwrap().1, "ok");
    assert_eq!(up.connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn body_dropped_early_closes_its_connection() {
    let up = upstream(vec![
        reply(&[b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nabc", b"def"]),
        reply(&[b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]),
    ])
    .await;
    let lean = lean();
    let head = request_head(&Method::GET, "/x", &HeaderMap::new()).unwrap();
    let mut body = lean.send(up.addr, &head, false).await.unwrap().into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "abc");
    drop(body);
    assert_eq!(get(&lean, up.addr).await.unwrap().1, "ok");
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        2,
        "the half-read connection was not reused"
    );
}
