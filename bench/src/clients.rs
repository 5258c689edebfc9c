//! Load clients the benchmark needs beyond wrk: WebSocket echo load, idle WebSockets, and the
//! cold-cache burst of concurrent requests with distinct cookies.

use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct WsResult {
    pub msgs_per_sec: f64,
    pub p99_us: f64,
    pub errors: u64,
}

async fn open(
    url: &str,
) -> anyhow::Result<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>> {
    let hostport = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    let tcp = tokio::net::TcpStream::connect(&hostport).await?;
    tcp.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async(url, tcp).await?;
    Ok(ws)
}

/// `conns` WebSockets each doing send → await echo for `secs` seconds.
pub async fn ws_load(url: &str, conns: usize, secs: u64) -> anyhow::Result<WsResult> {
    let mut sockets = Vec::with_capacity(conns);
    for _ in 0..conns {
        sockets.push(open(url).await?);
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut rtts = Vec::new();
                let mut errors = 0u64;
                let payload = "x".repeat(32);
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    if ws.send(Message::text(payload.clone())).await.is_err() {
                        errors += 1;
                        break;
                    }
                    match ws.next().await {
                        Some(Ok(_)) => rtts.push(t0.elapsed().as_micros() as u64),
                        _ => {
                            errors += 1;
                            break;
                        }
                    }
                }
                let _ = ws.close(None).await;
                (rtts, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (r, e) = t.await?;
        all.extend(r);
        errors += e;
    }
    all.sort_unstable();
    let p99 = all
        .get(all.len().saturating_mul(99) / 100)
        .copied()
        .unwrap_or(0) as f64;
    Ok(WsResult {
        msgs_per_sec: all.len() as f64 / secs as f64,
        p99_us: p99,
        errors,
    })
}

/// Opens `conns` WebSockets, prints `ready`, and holds them until killed.
pub async fn ws_idle(url: &str, conns: usize) -> anyhow::Result<()> {
    let mut held = Vec::with_capacity(conns);
    for chunk in 0..conns.div_ceil(250) {
        let n = 250.min(conns - chunk * 250);
        let opened = futures_util::future::join_all((0..n).map(|_| open(url))).await;
        for ws in opened {
            held.push(ws?);
        }
    }
    println!("ready {}", held.len());
    std::future::pending::<()>().await;
    Ok(())
}

/// `total` concurrent GETs spread over `cookies` distinct, never-seen session cookies.
pub async fn burst(
    addr: &str,
    path: &str,
    total: usize,
    cookies: usize,
    tag: &str,
) -> anyhow::Result<usize> {
    let tasks: Vec<_> = (0..total)
        .map(|i| {
            let (addr, path) = (addr.to_string(), path.to_string());
            let cookie = format!("oc_sessionPassphrase={tag}-{}", i % cookies);
            tokio::spawn(async move {
                let tcp = tokio::net::TcpStream::connect(&addr).await?;
                let (mut send, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                        .await?;
                tokio::spawn(conn);
                let req = hyper::Request::get(path)
                    .header("host", "bench")
                    .header("cookie", cookie)
                    .body(http_body_util::Empty::<bytes::Bytes>::new())?;
                let resp = send.send_request(req).await?;
                anyhow::Ok(resp.status().is_success())
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        if matches!(t.await, Ok(Ok(true))) {
            ok += 1;
        }
    }
    Ok(ok)
}

/// Uploads `mib` MiB in 64 KiB chunks to `url` (host:port + path) and returns MiB/s.
pub async fn bulk(addr: &str, path: &str, mib: usize) -> anyhow::Result<f64> {
    use http_body_util::StreamBody;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let chunk = bytes::Bytes::from(vec![0u8; 64 * 1024]);
    let chunks = mib * 16;
    let stream =
        futures_util::stream::iter((0..chunks).map(move |_| {
            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(chunk.clone()))
        }));
    let req = hyper::Request::post(path)
        .header("host", "bench")
        .header("content-length", (chunks * 64 * 1024).to_string())
        .body(StreamBody::new(stream))?;
    let started = Instant::now();
    let resp = send.send_request(req).await?;
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await?
        .to_bytes();
    let received: usize = std::str::from_utf8(&body)?.trim().parse()?;
    anyhow::ensure!(
        received == chunks * 64 * 1024,
        "the ExApp received {received} bytes"
    );
    Ok(mib as f64 / started.elapsed().as_secs_f64())
}
