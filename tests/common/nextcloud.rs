//! A stub Nextcloud implementing exactly `exapp-meta` and `user-info` (contract §2.6, §3.2),
//! including 401 for unknown apps and wrong keys, with call counting.

use super::KEY;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How user-info answers (when not the normal session lookup).
#[derive(Clone, Debug)]
pub enum UserMode {
    Normal,
    Status(u16),
    Garbage,
}

#[derive(Default)]
pub struct NcState {
    pub apps: Mutex<HashMap<String, serde_json::Value>>,
    /// cookie value → (user_id, level)
    pub sessions: Mutex<HashMap<String, (String, u8)>>,
    /// full Authorization header value → (user_id, level)
    pub basic: Mutex<HashMap<String, (String, u8)>>,
    pub meta_status: Mutex<Option<u16>>,
    pub meta_delay: Mutex<Duration>,
    pub user_delay: Mutex<Duration>,
    pub user_mode: Mutex<Option<UserMode>>,
    pub meta_calls: AtomicUsize,
    pub user_calls: AtomicUsize,
    pub meta_queries: Mutex<Vec<String>>,
    pub user_headers: Mutex<Vec<http::HeaderMap>>,
    /// Hang mode: accept connections, read what harp sends, never answer.
    pub hang: std::sync::atomic::AtomicBool,
    /// Connections accepted in hang mode that harp has not closed yet.
    pub hanging_open: AtomicUsize,
}

pub struct StubNextcloud {
    pub addr: SocketAddr,
    pub state: Arc<NcState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StubNextcloud {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StubNextcloud {
    pub async fn start() -> StubNextcloud {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(NcState::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                if st.hang.load(Ordering::SeqCst) {
                    tokio::spawn(hang_until_closed(st, stream));
                    continue;
                }
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(st.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        StubNextcloud { addr, state, task }
    }

    /// The value for NC_INSTANCE_URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn add_app(&self, id: &str, doc: serde_json::Value) {
        self.state.apps.lock().insert(id.to_string(), doc);
    }

    pub fn add_session(&self, cookie: &str, user: &str, level: u8) {
        self.state
            .sessions
            .lock()
            .insert(cookie.to_string(), (user.to_string(), level));
    }

    /// From now on every new connection is held open unanswered (see [`NcState::hang`]).
    pub fn hang(&self) {
        self.state.hang.store(true, Ordering::SeqCst);
    }

    /// Hang-mode connections harp still holds open.
    pub fn hanging_open(&self) -> usize {
        self.state.hanging_open.load(Ordering::SeqCst)
    }

    pub fn meta_calls(&self) -> usize {
        self.state.meta_calls.load(Ordering::SeqCst)
    }

    pub fn user_calls(&self) -> usize {
        self.state.user_calls.load(Ordering::SeqCst)
    }
}

/// Reads and discards until harp closes the connection, counting it open meanwhile.
async fn hang_until_closed(st: Arc<NcState>, mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    st.hanging_open.fetch_add(1, Ordering::SeqCst);
    let mut buf = [0u8; 4096];
    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
    st.hanging_open.fetch_sub(1, Ordering::SeqCst);
}

fn reply(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

const BAD_KEY: &str = r#"{"message":"Harp shared key is not valid"}"#;

async fn handle(
    st: Arc<NcState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let app = query.strip_prefix("appId=").unwrap_or("").to_string();
    let key_ok = req
        .headers()
        .get("harp-shared-key")
        .is_some_and(|v| v == KEY);
    match path.as_str() {
        "/index.php/apps/app_api/harp/exapp-meta" => {
            st.meta_calls.fetch_add(1, Ordering::SeqCst);
            st.meta_queries.lock().push(query.clone());
            let delay = *st.meta_delay.lock();
            tokio::time::sleep(delay).await;
            if let Some(status) = *st.meta_status.lock() {
                return Ok(reply(status, "{}"));
            }
            if !key_ok {
                return Ok(reply(401, BAD_KEY));
            }
            match st.apps.lock().get(&app) {
                Some(doc) => Ok(reply(200, doc.to_string())),
                None => Ok(reply(401, BAD_KEY)),
            }
        }
        "/index.php/apps/app_api/harp/user-info" => {
            st.user_calls.fetch_add(1, Ordering::SeqCst);
            st.user_headers.lock().push(req.headers().clone());
            let delay = *st.user_delay.lock();
            tokio::time::sleep(delay).await;
            match st.user_mode.lock().clone() {
                Some(UserMode::Status(s)) => return Ok(reply(s, "{}")),
                Some(UserMode::Garbage) => return Ok(reply(200, "<html>oops</html>")),
                _ => {}
            }
            if !key_ok || !st.apps.lock().contains_key(&app) {
                return Ok(reply(401, BAD_KEY));
            }
            let cookie = req
                .headers()
                .get("cookie")
                .and_then(|v| v.to_str().ok())
                .and_then(|c| {
                    c.split(';')
                        .find_map(|p| p.trim().strip_prefix("oc_sessionPassphrase="))
                })
                .unwrap_or("")
                .to_string();
            let auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let user = st
                .sessions
                .lock()
                .get(&cookie)
                .cloned()
                .or_else(|| st.basic.lock().get(&auth).cloned());
            let (id, level) = user.unwrap_or_default();
            let mut r = reply(
                200,
                serde_json::json!({"user_id": id, "access_level": level}).to_string(),
            );
            // A real Nextcloud sets cookies on this answer; harp must never reuse them.
            r.headers_mut().insert(
                "set-cookie",
                "nc_leak=from-nextcloud; Path=/".parse().unwrap(),
            );
            Ok(r)
        }
        _ => Ok(reply(404, "{}")),
    }
}
