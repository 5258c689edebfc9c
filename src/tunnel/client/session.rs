//! The client's connection loop: dial (optionally mutual TLS), yamux client session, Login,
//! encrypted control (NewProxy with frpc's 30 s retry, ReqWorkConn → new work stream), and
//! relaying each StartWorkConn to the local TCP port or unix socket.

use super::config::{ClientConfig, Local, ProxyConfig};
use crate::tunnel::mux::{MuxStream, Role, Session, SessionConfig};
use crate::tunnel::wire::crypto::{derive_key, privilege_key, CryptoReader, CryptoWriter};
use crate::tunnel::wire::messages::*;
use crate::tunnel::wire::{read_msg, write_msg, Message};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
const PROXY_RETRY: Duration = Duration::from_secs(30);
const VERSION: &str = "0.65.0";
/// What one read of the TLS socket may take in. rustls asks its transport for one record at a
/// time (16 KiB), so without this buffer a bulk transfer costs one system call per record;
/// reading through it takes up to sixteen records per call (issue #14: one-record reads were
/// four in five of the tunnel client's system calls on a bulk upload). One buffer per client
/// process, since the client holds one session.
const TLS_READ_BUFFER: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect to server error: {0}")]
    Connect(String),
    #[error("login to the server failed: {0}")]
    LoginRejected(String),
    #[error("TLS configuration: {0}")]
    Tls(#[from] crate::certs::CertError),
}

/// Runs until `shutdown`; returns an error only when `loginFailExit` ends the client.
pub async fn run(cfg: ClientConfig, shutdown: impl Future<Output = ()>) -> Result<(), ClientError> {
    let cfg = Arc::new(cfg);
    let tls = match &cfg.tls {
        Some(t) => Some(tokio_rustls::TlsConnector::from(Arc::new(
            crate::certs::client_config(
                &t.ca,
                t.cert_key.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
            )?,
        ))),
        None => None,
    };
    let mut shutdown = std::pin::pin!(shutdown);
    let mut run_id = String::new();
    let mut ever_logged_in = false;
    let mut backoff = Duration::from_secs(1);
    loop {
        let attempt = session(&cfg, tls.clone(), &mut run_id);
        let result = tokio::select! {
            r = attempt => r,
            _ = &mut shutdown => return Ok(()),
        };
        match result {
            Ok(()) => {
                // A session existed and ended: reconnect at once, like frpc.
                ever_logged_in = true;
                backoff = Duration::from_secs(1);
                tracing::warn!("tunnel session ended; reconnecting");
                continue;
            }
            Err(e) => {
                if !ever_logged_in && cfg.login_fail_exit {
                    return Err(e);
                }
                tracing::warn!("{e}; retrying in {backoff:?}");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = &mut shutdown => return Ok(()),
        }
        backoff = (backoff * 2).min(Duration::from_secs(if ever_logged_in { 20 } else { 10 }));
    }
}

/// One session: Ok(()) once it was logged in and later ended.
async fn session(
    cfg: &Arc<ClientConfig>,
    tls: Option<tokio_rustls::TlsConnector>,
    run_id: &mut String,
) -> Result<(), ClientError> {
    let addr = (cfg.server_addr.as_str(), cfg.server_port);
    let tcp = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| ClientError::Connect("dial timeout".into()))?
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    match (tls, &cfg.tls) {
        (Some(conn), Some(t)) => {
            let name = rustls::pki_types::ServerName::try_from(t.server_name.clone())
                .map_err(|e| ClientError::Connect(format!("serverName: {e}")))?;
            let io = tokio::time::timeout(DIAL_TIMEOUT, conn.connect(name, tls_transport(tcp)))
                .await
                .map_err(|_| ClientError::Connect("TLS handshake timeout".into()))?
                .map_err(|e| ClientError::Connect(e.to_string()))?;
            logged_in_session(io, cfg, run_id).await
        }
        _ => logged_in_session(tcp, cfg, run_id).await,
    }
}

/// The socket as TLS sees it: behind a [`TLS_READ_BUFFER`] read buffer.
fn tls_transport<T: AsyncRead + AsyncWrite>(io: T) -> tokio::io::BufReader<T> {
    tokio::io::BufReader::with_capacity(TLS_READ_BUFFER, io)
}

async fn logged_in_session<T>(
    io: T,
    cfg: &Arc<ClientConfig>,
    run_id: &mut String,
) -> Result<(), ClientError>
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (session, _inbound) = Session::start(io, Role::Client, SessionConfig::default());
    let result = control(&session, cfg, run_id).await;
    session.close();
    result
}

async fn control(
    session: &Session,
    cfg: &Arc<ClientConfig>,
    run_id: &mut String,
) -> Result<(), ClientError> {
    let conn_err = |e: std::io::Error| ClientError::Connect(e.to_string());
    let mut ctl = session.open().map_err(conn_err)?;
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let login = Login {
        version: VERSION.into(),
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
        privilege_key: privilege_key("", timestamp),
        timestamp,
        run_id: run_id.clone(),
        metas: cfg
            .token
            .iter()
            .map(|t| ("token".to_string(), t.clone()))
            .collect(),
        pool_count: 1,
        ..Default::default()
    };
    write_msg(&mut ctl, &Message::Login(login))
        .await
        .map_err(conn_err)?;
    let resp = match tokio::time::timeout(LOGIN_TIMEOUT, read_msg(&mut ctl)).await {
        Ok(Ok(Message::LoginResp(r))) => r,
        Ok(Ok(other)) => return Err(ClientError::Connect(format!("unexpected {}", other.name()))),
        Ok(Err(e)) => return Err(ClientError::Connect(e.to_string())),
        Err(_) => return Err(ClientError::Connect("no LoginResp within 10 s".into())),
    };
    if !resp.error.is_empty() {
        return Err(ClientError::LoginRejected(resp.error));
    }
    *run_id = resp.run_id.clone();
    tracing::info!(run_id = %run_id, "login to server success");

    let key = derive_key("");
    let (r, w) = tokio::io::split(ctl);
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        let mut w = CryptoWriter::new(w, key);
        while let Some(m) = rx.recv().await {
            if write_msg(&mut w, &m).await.is_err() {
                break;
            }
        }
    });
    for p in &cfg.proxies {
        let _ = tx.send(new_proxy(p));
    }
    let mut reader = CryptoReader::new(r, key);
    loop {
        let msg = tokio::select! {
            m = read_msg(&mut reader) => m,
            _ = session.closed() => break,
        };
        let Ok(msg) = msg else { break };
        match msg {
            Message::ReqWorkConn(_) => {
                if let Ok(stream) = session.open() {
                    tokio::spawn(work_conn(stream, run_id.clone(), cfg.clone()));
                }
            }
            Message::NewProxyResp(r) if r.error.is_empty() => {
                tracing::info!(proxy = %r.proxy_name, remote = %r.remote_addr, "start proxy success");
            }
            Message::NewProxyResp(r) => {
                tracing::warn!(proxy = %r.proxy_name, "start error: {}", r.error);
                if let Some(p) = cfg.proxies.iter().find(|p| p.name == r.proxy_name) {
                    let (tx, msg) = (tx.clone(), new_proxy(p));
                    tokio::spawn(async move {
                        tokio::time::sleep(PROXY_RETRY).await;
                        let _ = tx.send(msg);
                    });
                }
            }
            _ => {}
        }
    }
    writer.abort();
    Ok(())
}

fn new_proxy(p: &ProxyConfig) -> Message {
    Message::NewProxy(NewProxy {
        proxy_name: p.name.clone(),
        proxy_type: "tcp".into(),
        remote_port: i64::from(p.remote_port),
        ..Default::default()
    })
}

async fn work_conn(mut stream: MuxStream, run_id: String, cfg: Arc<ClientConfig>) {
    let hello = Message::NewWorkConn(NewWorkConn {
        run_id,
        ..Default::default()
    });
    if write_msg(&mut stream, &hello).await.is_err() {
        return;
    }
    let start = match read_msg(&mut stream).await {
        Ok(Message::StartWorkConn(s)) if s.error.is_empty() => s,
        _ => return,
    };
    let Some(proxy) = cfg.proxies.iter().find(|p| p.name == start.proxy_name) else {
        return;
    };
    // Unlike frpc 0.61–0.65 the stream is closed (dropped) when the local dial fails, so the
    // server's user sees an error at once instead of hanging.
    match &proxy.local {
        Local::Unix(path) => match tokio::net::UnixStream::connect(path).await {
            Ok(local) => join(stream, local).await,
            Err(e) => {
                tracing::warn!(proxy = %proxy.name, "dial to uds {} error: {e}", path.display())
            }
        },
        Local::Tcp(host, port) => match dial_local(host, *port).await {
            Ok(local) => join(stream, local).await,
            Err(e) => tracing::warn!(proxy = %proxy.name, "dial to {host}:{port} error: {e}"),
        },
    }
}

/// Connects to a proxy's local TCP target with Nagle off: a relay must not hold a frame's tail
/// back waiting for an ACK. Go's net, and so frpc, sets this on every TCP connection.
async fn dial_local(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let local = TcpStream::connect((host, port)).await?;
    local.set_nodelay(true)?;
    Ok(local)
}

/// Joins a work stream and its local target through the shared relay: half-close passed on
/// (where frp's join ends both sides at the first EOF), no idle limit (the server enforces
/// `HP_TIMEOUT_TUNNEL`), and a half-closed pair that then stays silent is closed.
async fn join<A, B>(a: A, b: B)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    crate::upstream::splice::splice(a, b, None, crate::upstream::splice::HALF_CLOSE_IDLE).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::splice::counting::CountedReads;
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn local_tcp_targets_are_dialled_without_nagle() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let local = dial_local("127.0.0.1", port).await.unwrap();
        assert!(local.nodelay().unwrap());
    }

    /// With data waiting, the client reads the socket many TLS records at a time, not one
    /// 16 KiB record per read.
    #[tokio::test]
    async fn tls_socket_is_read_many_records_at_a_time() {
        const DATA: usize = 1024 * 1024;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("frp");
        crate::certs::ensure_frp_certs(&dir, || Ok(40)).unwrap();
        let acceptor = crate::certs::frp_server_acceptor(&dir).unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(
            crate::certs::client_config(
                &dir.join("ca.crt"),
                Some((&dir.join("client.crt"), &dir.join("client.key"))),
            )
            .unwrap(),
        ));
        let (ours, theirs) = tokio::io::duplex(4 * DATA);
        let counted = CountedReads::new(ours);
        // Reads that returned data: a read that finds the pipe empty costs no record.
        let reads = counted.filled.clone();
        let server = tokio::spawn(async move {
            let mut tls = acceptor.accept(theirs).await.unwrap();
            tls.write_all(&vec![0x42; DATA]).await.unwrap();
            tls.flush().await.unwrap();
            tls
        });
        let name = rustls::pki_types::ServerName::try_from("harp.nc").unwrap();
        let mut tls = connector
            .connect(name, tls_transport(counted))
            .await
            .unwrap();
        // Everything is in the pipe before the first read.
        let _server_side = server.await.unwrap();
        let during_handshake = reads.load(Ordering::SeqCst);
        let mut got = vec![0u8; DATA];
        tls.read_exact(&mut got).await.unwrap();
        assert!(got.iter().all(|&b| b == 0x42));
        let socket_reads = reads.load(Ordering::SeqCst) - during_handshake;
        let records = DATA / (16 * 1024);
        assert!(
            socket_reads <= 2 * DATA.div_ceil(TLS_READ_BUFFER),
            "{socket_reads} socket reads for {records} records"
        );
    }
}
