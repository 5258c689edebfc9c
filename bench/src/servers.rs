//! The two peers of the benchmark: a fast echo ExApp (HTTP + WebSocket) and a stub Nextcloud
//! that knows one app and treats every cookie or Basic credential as a level-1 user.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

async fn serve<F, Fut>(addr: &str, handler: F) -> anyhow::Result<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("ready {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let h = handler.clone();
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(h))
                .with_upgrades()
                .await;
        });
    }
}

pub async fn echo(addr: &str) -> anyhow::Result<()> {
    serve(addr, |mut req: Request<Incoming>| async move {
        if let Some(key) = req.headers().get("sec-websocket-key").cloned() {
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(up) = upgrade.await else { return };
                let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    TokioIo::new(up),
                    Role::Server,
                    None,
                )
                .await;
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_close()
                        || ((msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err())
                    {
                        break;
                    }
                }
            });
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
            let h = r.headers_mut();
            h.insert("upgrade", "websocket".parse().unwrap());
            h.insert("connection", "Upgrade".parse().unwrap());
            h.insert(
                "sec-websocket-accept",
                derive_accept_key(key.as_bytes()).parse().unwrap(),
            );
            return Ok(r);
        }
        if req.method() == hyper::Method::POST {
            // Bulk uploads: count what arrived so the client can check nothing was lost.
            use http_body_util::BodyExt;
            let mut body = req.into_body();
            let mut total = 0usize;
            while let Some(Ok(frame)) = body.frame().await {
                total += frame.data_ref().map_or(0, |d| d.len());
            }
            return Ok(Response::new(Full::new(Bytes::from(total.to_string()))));
        }
        Ok(Response::new(Full::new(Bytes::from_static(
            b"hello from the echo exapp\n",
        ))))
    })
    .await
}

/// App id and port of the ExApp that sits behind `harp tunnel` in the tunnel measurements.
pub const TUNNEL_APP: &str = "benchtun";
pub const TUNNEL_PORT: u16 = 23001;

pub async fn nextcloud(addr: &str, app_port: u16) -> anyhow::Result<()> {
    let meta = |port: u16| {
        serde_json::json!({
            "exapp_token": "benchtoken",
            "exapp_version": "1.0.0",
            "host": "127.0.0.1",
            "port": port,
            "routes": [
                {"url": "^/public", "access_level": 0, "bruteforce_protection": []},
                {"url": "^/user", "access_level": 1, "bruteforce_protection": []},
                {"url": "^/guarded", "access_level": 1, "bruteforce_protection": [401, 429]},
            ],
        })
        .to_string()
    };
    let direct_meta = Bytes::from(meta(app_port));
    let tunnel_meta = Bytes::from(meta(TUNNEL_PORT));
    let user_calls = Arc::new(AtomicU64::new(0));
    serve(addr, move |req: Request<Incoming>| {
        let (direct_meta, tunnel_meta) = (direct_meta.clone(), tunnel_meta.clone());
        let user_calls = user_calls.clone();
        async move {
            let body = match req.uri().path() {
                "/index.php/apps/app_api/harp/exapp-meta" => {
                    if req.uri().query() == Some(&format!("appId={TUNNEL_APP}")) {
                        tunnel_meta
                    } else {
                        direct_meta
                    }
                }
                "/index.php/apps/app_api/harp/user-info" => {
                    user_calls.fetch_add(1, Ordering::Relaxed);
                    Bytes::from_static(br#"{"user_id":"bench","access_level":1}"#)
                }
                "/stats" => Bytes::from(format!("{}", user_calls.load(Ordering::Relaxed))),
                "/reset" => {
                    user_calls.store(0, Ordering::Relaxed);
                    Bytes::from_static(b"0")
                }
                _ => Bytes::from_static(b"{}"),
            };
            Ok(Response::new(Full::new(body)))
        }
    })
    .await
}
