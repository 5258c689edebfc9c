//! Accepting FRP connections: admission (connection caps), frps's first-byte sniffing (0x17
//! custom TLS byte, 0x16 TLS, anything else plaintext or refused when TLS is forced), the
//! mutual-TLS handshake, the yamux session with its login deadline, and dispatching each new
//! stream by its first message (Login or NewWorkConn).
//!
//! Before its login a connection is cheap for us and possibly hostile (in plain mode anyone,
//! with TLS anyone holding the client certificate every ExApp image carries), so it gets a
//! small session (two streams, the initial yamux window), [`LOGIN_DEADLINE`] to log in, and a
//! place among at most [`MAX_PRE_LOGIN`] such connections; the session grows to full size only
//! after the shared key was checked.

use super::{control, ServerCtx};
use crate::net::accept::accept_loop;
use crate::net::LogRate;
use crate::tunnel::mux::{MuxStream, Role, Session, SessionConfig, DEFAULT_MAX_STREAMS};
use crate::tunnel::wire::{read_msg, Message};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

/// frps's deadline for the first message of a stream.
const FIRST_READ: Duration = Duration::from_secs(10);
/// From TCP accept to a successful Login (first byte, TLS handshake and Login included).
/// frpc sends Login right after connecting, so a legitimate client needs milliseconds; frps
/// gives the first message the same 10 s.
pub(crate) const LOGIN_DEADLINE: Duration = Duration::from_secs(10);
/// Connections that have not logged in yet, at once. A restart makes every frpc reconnect at
/// the same moment, but each logs in within milliseconds, so 128 slots absorb a storm of the
/// ~1100 clients HaRP's port ranges allow while capping what unauthenticated peers can hold:
/// each costs at most about 1.5 MiB (two 256 KiB stream windows, the 512 KiB write queue,
/// read and TLS buffers), so ~200 MiB in all. Beyond it, connections are closed at once and
/// the client retries with its backoff.
pub(crate) const MAX_PRE_LOGIN: usize = 128;
/// FRP connections at once, logged in or not: HaRP's port ranges hold 1100 proxies of one per
/// client, so 2048 leaves room for sessions being replaced by reconnecting clients.
pub(crate) const MAX_CONNECTIONS: usize = 2048;
/// Streams before login: frpc opens exactly one (the control stream) before LoginResp.
const PRE_LOGIN_STREAMS: usize = 2;
/// At most one "connection refused: cap reached" / "no login" line per interval.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);
const CUSTOM_TLS_BYTE: u8 = 0x17;
const TLS_HANDSHAKE: u8 = 0x16;

/// Counts connections against the caps; one per FRP listener.
pub(crate) struct Gate {
    total: AtomicUsize,
    pre_login: AtomicUsize,
    max_total: usize,
    max_pre_login: usize,
    login_deadline: Duration,
    refusals: LogRate,
    no_login: LogRate,
}

impl Gate {
    pub(crate) fn new(max_total: usize, max_pre_login: usize, login_deadline: Duration) -> Gate {
        Gate {
            total: AtomicUsize::new(0),
            pre_login: AtomicUsize::new(0),
            max_total,
            max_pre_login,
            login_deadline,
            refusals: LogRate::new(REFUSAL_LOG_INTERVAL),
            no_login: LogRate::new(REFUSAL_LOG_INTERVAL),
        }
    }

    /// A place for a new connection, or `None` (logged at a limited rate) when a cap is reached.
    fn admit(self: &Arc<Self>, peer: SocketAddr) -> Option<Admission> {
        let total = self.total.fetch_add(1, Ordering::AcqRel);
        let pre = self.pre_login.fetch_add(1, Ordering::AcqRel);
        let admission = Admission {
            gate: self.clone(),
            pre_login: AtomicBool::new(true),
        };
        if total < self.max_total && pre < self.max_pre_login {
            return Some(admission);
        }
        drop(admission);
        if let Some(held_back) = self.refusals.check() {
            tracing::warn!(client = %peer, held_back, "FRP connection refused: too many connections (cap {} in all, {} not logged in)", self.max_total, self.max_pre_login);
        }
        None
    }
}

/// One admitted connection's place; dropping it frees the place.
pub(crate) struct Admission {
    gate: Arc<Gate>,
    pre_login: AtomicBool,
}

impl Admission {
    /// Moves the connection from the pre-login count to the logged-in ones.
    pub(crate) fn logged_in(&self) {
        if self.pre_login.swap(false, Ordering::AcqRel) {
            self.gate.pre_login.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn is_logged_in(&self) -> bool {
        !self.pre_login.load(Ordering::Acquire)
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.logged_in();
        self.gate.total.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(super) async fn accept_loop_frp(
    listener: TcpListener,
    ctx: Arc<ServerCtx>,
    stop: watch::Receiver<bool>,
) {
    let gate = Arc::new(Gate::new(MAX_CONNECTIONS, MAX_PRE_LOGIN, LOGIN_DEADLINE));
    serve_with(listener, ctx, stop, gate).await;
}

pub(crate) async fn serve_with(
    listener: TcpListener,
    ctx: Arc<ServerCtx>,
    stop: watch::Receiver<bool>,
    gate: Arc<Gate>,
) {
    let conn_stop = stop.clone();
    accept_loop(
        listener,
        "frp",
        Some(stop),
        || async { Some(()) },
        move |tcp, peer, ()| {
            let admission = gate.admit(peer);
            let (ctx, stop) = (ctx.clone(), conn_stop.clone());
            async move {
                // Beyond a cap the connection is closed at once (dropped here).
                if let Some(admission) = admission {
                    handle_conn(tcp, peer, ctx, stop, Arc::new(admission)).await;
                }
            }
        },
    )
    .await;
}

async fn handle_conn(
    mut tcp: TcpStream,
    peer: SocketAddr,
    ctx: Arc<ServerCtx>,
    stop: watch::Receiver<bool>,
    admission: Arc<Admission>,
) {
    let login_by = Instant::now() + admission.gate.login_deadline;
    let _ = tcp.set_nodelay(true);
    let mut first = [0u8; 1];
    let first = match tokio::time::timeout_at(login_by, tcp.peek(&mut first)).await {
        Ok(Ok(1)) => first[0],
        _ => return,
    };
    match (&ctx.tls, first) {
        (Some(acceptor), CUSTOM_TLS_BYTE | TLS_HANDSHAKE) => {
            if first == CUSTOM_TLS_BYTE {
                let _ = tcp.read_exact(&mut [0u8; 1]).await;
            }
            match tokio::time::timeout_at(login_by, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => run_session(tls, peer, ctx, stop, admission, login_by).await,
                Ok(Err(e)) => tracing::warn!("FRP TLS handshake failed: {e}"),
                Err(_) => tracing::warn!("FRP TLS handshake timed out"),
            }
        }
        (Some(_), _) if ctx.force_tls => {
            tracing::warn!("non-TLS connection received on a TlsOnly server; closed (the FRP client needs transport.tls.enable = true and harp's certificates)");
        }
        (None, CUSTOM_TLS_BYTE | TLS_HANDSHAKE) => {
            tracing::warn!("TLS FRP client refused: harp runs with HP_FRP_DISABLE_TLS=true (set transport.tls.enable = false)");
        }
        (_, 0) => run_session(tcp, peer, ctx, stop, admission, login_by).await,
        (_, b'F') => tracing::warn!("unsupported frp wire protocol v2; closed"),
        (_, _) => {
            tracing::warn!("FRP client without tcpMux is not supported; closed");
        }
    }
}

/// The session grows to full size once a login on it succeeded (see [`LoginGrant`]).
async fn run_session<T>(
    io: T,
    peer: SocketAddr,
    ctx: Arc<ServerCtx>,
    mut stop: watch::Receiver<bool>,
    admission: Arc<Admission>,
    login_by: Instant,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let cfg = SessionConfig {
        max_streams: PRE_LOGIN_STREAMS,
        stream_window: crate::tunnel::mux::INITIAL_WINDOW,
        ..SessionConfig::default()
    };
    let (session, mut accept) = Session::start(io, Role::Server, cfg);
    let login_deadline = tokio::time::sleep_until(login_by);
    tokio::pin!(login_deadline);
    let mut waiting_for_login = true;
    loop {
        tokio::select! {
            s = accept.recv() => match s {
                Some(stream) => {
                    let grant = LoginGrant { session: session.clone(), admission: admission.clone() };
                    tokio::spawn(dispatch(stream, peer, grant, ctx.clone()).in_current_span());
                }
                None => break,
            },
            _ = &mut login_deadline, if waiting_for_login => {
                waiting_for_login = false;
                if !admission.is_logged_in() {
                    if let Some(held_back) = admission.gate.no_login.check() {
                        tracing::warn!(held_back, "FRP connection closed: no successful login within {:?}", admission.gate.login_deadline);
                    }
                    break;
                }
            }
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    session.close();
}

/// What a successful login on this connection unlocks: the session's full size, and its
/// place among logged-in connections.
pub(crate) struct LoginGrant {
    pub session: Session,
    admission: Arc<Admission>,
}

impl LoginGrant {
    pub(crate) fn logged_in(&self) {
        self.admission.logged_in();
        self.session
            .set_limits(DEFAULT_MAX_STREAMS, crate::tunnel::mux::MAX_WINDOW);
    }
}

async fn dispatch(mut stream: MuxStream, peer: SocketAddr, grant: LoginGrant, ctx: Arc<ServerCtx>) {
    let first = match tokio::time::timeout(FIRST_READ, read_msg(&mut stream)).await {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            tracing::warn!("FRP stream closed: {e}");
            return;
        }
        Err(_) => return,
    };
    match first {
        Message::Login(login) => {
            // Inside the connection's span (peer); the run id is filled in once logged in.
            let span = tracing::error_span!("frp_session", run_id = tracing::field::Empty);
            control::run(ctx, stream, login, peer, grant)
                .instrument(span)
                .await
        }
        Message::NewWorkConn(w) if !control::work_conn_key_ok(&ctx.auth_token, &w) => {
            tracing::warn!(
                "work connection refused: its privilege_key does not match the server's auth.token"
            );
        }
        Message::NewWorkConn(w) => {
            if !ctx
                .registry
                .add_work_conn(&w.run_id, grant.session.id(), stream)
            {
                tracing::debug!(
                    "work connection refused: run id unknown or logged in on another connection"
                );
            }
        }
        other => tracing::warn!("FRP stream opened with {}; closed", other.name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::capture::Captured;
    use tokio::io::AsyncWriteExt;

    /// A plain-TCP FRP server context with HaRP's policy and a fresh shared key.
    fn plain_ctx() -> Arc<ServerCtx> {
        let bans = crate::security::BanList::new(Duration::from_secs(60), 5);
        Arc::new(ServerCtx {
            registry: super::super::registry::Registry::new(),
            login: crate::control::LoginChecker::new(
                crate::security::SharedKey::new("test-key"),
                Arc::new(bans),
            ),
            tunnel_idle: None,
            tls: None,
            force_tls: false,
            auth_token: String::new(),
            loopback_listeners: None,
        })
    }

    async fn start(gate: Arc<Gate>) -> (SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(serve_with(listener, plain_ctx(), stop_rx, gate));
        (addr, stop_tx)
    }

    /// A peer that starts a plaintext yamux session (the version byte) and then stays silent.
    async fn silent_peer(addr: SocketAddr) -> TcpStream {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&[0]).await.unwrap();
        tcp
    }

    /// Reads until the server closes; ignores what it sends (keep-alive pings).
    async fn until_closed(tcp: &mut TcpStream) {
        let mut buf = [0u8; 256];
        while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
    }

    #[tokio::test(start_paused = true)]
    async fn no_login_within_the_deadline_closes_the_connection() {
        let gate = Arc::new(Gate::new(8, 8, LOGIN_DEADLINE));
        let (addr, _stop) = start(gate.clone()).await;
        let started = Instant::now();
        let mut tcp = silent_peer(addr).await;
        tokio::time::timeout(Duration::from_secs(60), until_closed(&mut tcp))
            .await
            .expect("closed");
        let took = started.elapsed();
        assert!(
            took >= LOGIN_DEADLINE && took < LOGIN_DEADLINE + Duration::from_secs(1),
            "closed after {took:?}, not at the login deadline"
        );
        // Its places are given back.
        let deadline = Instant::now() + Duration::from_secs(5);
        while gate.total.load(Ordering::Acquire) != 0 || gate.pre_login.load(Ordering::Acquire) != 0
        {
            assert!(Instant::now() < deadline, "places not released");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn connections_beyond_the_pre_login_cap_are_closed_at_once() {
        let gate = Arc::new(Gate::new(8, 2, LOGIN_DEADLINE));
        let (addr, _stop) = start(gate.clone()).await;
        let mut first = silent_peer(addr).await;
        let _second = silent_peer(addr).await;
        let started = Instant::now();
        let mut third = silent_peer(addr).await;
        tokio::time::timeout(Duration::from_secs(60), until_closed(&mut third))
            .await
            .expect("closed");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the third pre-login connection is refused at once, not at the deadline"
        );
        assert_eq!(gate.pre_login.load(Ordering::Acquire), 2);
        // A freed place admits the next connection.
        first.shutdown().await.unwrap();
        drop(first);
        let deadline = Instant::now() + Duration::from_secs(5);
        while gate.pre_login.load(Ordering::Acquire) != 1 {
            assert!(Instant::now() < deadline, "place not released");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _fourth = silent_peer(addr).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while gate.pre_login.load(Ordering::Acquire) != 2 {
            assert!(Instant::now() < deadline, "fourth not admitted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn total_cap_counts_logged_in_connections() {
        let gate = Arc::new(Gate::new(2, 2, LOGIN_DEADLINE));
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let a = gate.admit(peer).expect("first");
        a.logged_in();
        let b = gate.admit(peer).expect("second");
        b.logged_in();
        assert!(gate.admit(peer).is_none(), "total cap of 2 reached");
        drop(a);
        assert!(gate.admit(peer).is_some(), "a freed place is reusable");
        assert_eq!(gate.pre_login.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn lines_of_a_logged_in_session_carry_its_peer_and_run_id() {
        use crate::tunnel::wire::crypto::privilege_key;
        use crate::tunnel::wire::messages::Login;
        use crate::tunnel::wire::write_msg;
        let (captured, _guard) = Captured::start();
        let (addr, _stop) = start(Arc::new(Gate::new(8, 8, LOGIN_DEADLINE))).await;
        let tcp = TcpStream::connect(addr).await.unwrap();
        let local = tcp.local_addr().unwrap();
        let (session, _inbound) = Session::start(tcp, Role::Client, SessionConfig::default());
        let mut ctl = session.open().unwrap();
        let login = Login {
            privilege_key: privilege_key("", 1),
            timestamp: 1,
            run_id: "run-7".into(),
            metas: [("token".to_string(), "test-key".to_string())].into(),
            ..Default::default()
        };
        write_msg(&mut ctl, &Message::Login(login)).await.unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), read_msg(&mut ctl))
            .await
            .expect("a LoginResp")
            .unwrap();
        assert!(matches!(resp, Message::LoginResp(r) if r.error.is_empty() && r.run_id == "run-7"));
        // The line is written right after the LoginResp; wait for it with a deadline.
        let deadline = Instant::now() + Duration::from_secs(10);
        let line = loop {
            let logs = captured.text();
            if let Some(l) = logs.lines().find(|l| l.contains("FRP client logged in")) {
                break l.to_string();
            }
            assert!(Instant::now() < deadline, "no login line in:\n{logs}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let conn = format!("conn{{listener=\"frp\" peer={local}}}");
        assert!(line.contains(&conn), "{line}");
        assert!(line.contains("frp_session{run_id=\"run-7\"}"), "{line}");
        session.close();
    }
}
