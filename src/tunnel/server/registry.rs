//! Live tunnel state shared by the server tasks and the upstream dialer: logged-in controls
//! (by run id), registered proxies (by port), and each control's pool of idle work streams.
//! Owns port ownership and work-connection hand-out; never reads or writes control messages
//! itself (it asks the control task to send ReqWorkConn through a channel).

use super::policy::{self, port_kind, PortKind, Refusal};
use crate::tunnel::mux::MuxStream;
use crate::tunnel::wire::compress::SnappyStream;
use crate::tunnel::wire::crypto::{derive_key, CryptoStream};
use crate::tunnel::wire::messages::{ReqWorkConn, StartWorkConn};
use crate::tunnel::wire::{write_msg, Message};
use crate::upstream::{BoxedIo, LocalDialer};
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};

/// frps `userConnTimeout`: how long a user connection waits for a work stream.
const WORK_CONN_WAIT: Duration = Duration::from_secs(10);
/// frps `maxPoolCount`.
pub(crate) const MAX_POOL: usize = 5;
/// Control messages queued for one client. Pongs answer the client's Pings, so a client that
/// pings without reading must not grow the queue: beyond this many, messages are dropped (the
/// write-stall deadline of the mux session disconnects such a client soon anyway). A burst of
/// ReqWorkConn for every connection the front door admits at once stays far below it.
pub(crate) const CONTROL_QUEUE: usize = 1024;

/// One logged-in frpc session's control.
pub struct Control {
    pub run_id: String,
    pub client: SocketAddr,
    /// The mux session whose control stream logged in: work streams must arrive on it.
    session_id: u64,
    serial: u64,
    to_client: mpsc::Sender<Message>,
    pool: Mutex<VecDeque<MuxStream>>,
    pool_cap: usize,
    pool_ready: Notify,
    stop: watch::Sender<bool>,
}

impl Control {
    /// Queues a message on the (encrypted) control stream; dropped when [`CONTROL_QUEUE`]
    /// messages are already waiting (the client is not reading).
    pub fn send(&self, msg: Message) {
        if let Err(mpsc::error::TrySendError::Full(m)) = self.to_client.try_send(msg) {
            tracing::debug!(run_id = %self.run_id, "control queue full; {} dropped", m.name());
        }
    }

    /// Asks the client for one more work stream.
    pub(crate) fn request_work_conn(&self) {
        self.send(Message::ReqWorkConn(ReqWorkConn {}));
    }

    /// Resolves when the registry replaced or removed this control.
    pub async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Takes an idle work stream, asking for a fresh one to keep the pool full.
    async fn take_work_conn(&self) -> io::Result<MuxStream> {
        let deadline = tokio::time::Instant::now() + WORK_CONN_WAIT;
        let mut asked = false;
        loop {
            let ready = self.pool_ready.notified();
            let popped = self.pool.lock().pop_front();
            if let Some(s) = popped {
                self.request_work_conn();
                if s.is_dead() {
                    continue;
                }
                return Ok(s);
            }
            if *self.stop.borrow() {
                return Err(refused("tunnel closed"));
            }
            if !asked {
                self.request_work_conn();
                asked = true;
            }
            if tokio::time::timeout_at(deadline, ready).await.is_err() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no work connection from the tunnel client within 10 s",
                ));
            }
        }
    }
}

/// The per-proxy stream layers NewProxy asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wrapping {
    pub encryption: bool,
    pub compression: bool,
}

pub struct Proxy {
    pub name: String,
    pub port: u16,
    pub wrapping: Wrapping,
    pub control: Arc<Control>,
    /// Loopback compatibility listener (aborted on removal).
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Default)]
struct Inner {
    controls: HashMap<String, Arc<Control>>,
    proxies: HashMap<u16, Arc<Proxy>>,
}

/// Logged-in FRP sessions, registered proxies by port range, idle work streams.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TunnelCounts {
    pub(crate) sessions: usize,
    pub(crate) exapp_proxies: usize,
    pub(crate) engine_proxies: usize,
    /// Ports a user frps.toml allows outside HaRP's two ranges.
    pub(crate) other_proxies: usize,
    pub(crate) work_conns: usize,
}

pub struct Registry {
    inner: Mutex<Inner>,
    serial: AtomicU64,
    allow: Vec<std::ops::RangeInclusive<u16>>,
    max_ports: usize,
    /// Stream-encryption key for proxies with `use_encryption` (from frp's auth.token).
    key: [u8; 16],
}

fn refused(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionRefused, why.to_string())
}

impl Registry {
    /// HaRP's policy: its two port ranges, one proxy per client, empty auth.token. Production
    /// builds the registry from `FrpSettings` (which may come from a user frps.toml) instead.
    #[cfg(test)]
    pub(crate) fn new() -> Arc<Registry> {
        Self::with_policy(
            policy::HARP_ALLOW.to_vec(),
            policy::MAX_PORTS_PER_CLIENT,
            "",
        )
    }

    pub(crate) fn with_policy(
        allow: Vec<std::ops::RangeInclusive<u16>>,
        max_ports: usize,
        auth_token: &str,
    ) -> Arc<Registry> {
        Arc::new(Registry {
            inner: Mutex::new(Inner::default()),
            serial: AtomicU64::new(0),
            allow,
            max_ports,
            key: derive_key(auth_token),
        })
    }

    /// What the registry holds now, for the metrics scrape: one lock, a pass over its maps
    /// (bounded by the session and port caps).
    pub(crate) fn counts(&self) -> TunnelCounts {
        let g = self.inner.lock();
        let mut counts = TunnelCounts {
            sessions: g.controls.len(),
            work_conns: g.controls.values().map(|c| c.pool.lock().len()).sum(),
            ..TunnelCounts::default()
        };
        for port in g.proxies.keys() {
            match port_kind(*port) {
                Some(PortKind::ExApp) => counts.exapp_proxies += 1,
                Some(PortKind::Engine) => counts.engine_proxies += 1,
                None => counts.other_proxies += 1,
            }
        }
        counts
    }

    /// Registers a control logged in on mux session `session_id`; one with the same run id is
    /// stopped first (frps semantics: a reconnecting frpc replaces its previous session).
    pub(crate) fn add_control(
        &self,
        run_id: String,
        client: SocketAddr,
        session_id: u64,
        pool_count: usize,
        to_client: mpsc::Sender<Message>,
    ) -> Arc<Control> {
        let control = Arc::new(Control {
            run_id: run_id.clone(),
            client,
            session_id,
            serial: self.serial.fetch_add(1, Ordering::Relaxed),
            to_client,
            pool: Mutex::new(VecDeque::new()),
            pool_cap: pool_count + 10,
            pool_ready: Notify::new(),
            stop: watch::channel(false).0,
        });
        let old = self.inner.lock().controls.insert(run_id, control.clone());
        if let Some(old) = old {
            tracing::info!(run_id = %old.run_id, client = %old.client, "FRP client re-logged in; previous session replaced");
            self.release(&old);
        }
        control
    }

    /// Drops a control and everything it owned (no-op if it was already replaced).
    pub(crate) fn remove_control(&self, control: &Arc<Control>) {
        {
            let mut g = self.inner.lock();
            if g.controls
                .get(&control.run_id)
                .is_some_and(|c| c.serial == control.serial)
            {
                g.controls.remove(&control.run_id);
            }
        }
        self.release(control);
    }

    fn release(&self, control: &Arc<Control>) {
        let _ = control.stop.send(true);
        let removed: Vec<Arc<Proxy>> = {
            let mut g = self.inner.lock();
            let ports: Vec<u16> = g
                .proxies
                .iter()
                .filter(|(_, p)| p.control.serial == control.serial)
                .map(|(port, _)| *port)
                .collect();
            ports.iter().filter_map(|p| g.proxies.remove(p)).collect()
        };
        for p in removed {
            tracing::info!(proxy = %p.name, port = p.port, client = %control.client, "FRP proxy removed");
            if let Some(h) = p.listener.lock().take() {
                h.abort();
            }
        }
        control.pool.lock().clear();
        control.pool_ready.notify_waiters();
    }

    /// Pools a work stream announced with `run_id` on mux session `session_id`. Only the
    /// session that logged in with that run id may supply its work streams: the run id travels
    /// in clear and is no secret (rathole binds work connections to its session the same way),
    /// and frpc always opens them on its own session. Anything else is dropped (closing the
    /// stream), like frps drops unknown run ids; false then.
    pub(crate) fn add_work_conn(&self, run_id: &str, session_id: u64, stream: MuxStream) -> bool {
        let control = self.inner.lock().controls.get(run_id).cloned();
        let Some(control) = control else {
            tracing::debug!("work connection for unknown run id dropped");
            return false;
        };
        if control.session_id != session_id {
            return false;
        }
        let mut pool = control.pool.lock();
        if pool.len() >= control.pool_cap {
            return false;
        }
        pool.push_back(stream);
        drop(pool);
        control.pool_ready.notify_one();
        true
    }

    /// Applies the policy and registers the proxy; the caller opens the loopback listener.
    pub(crate) fn add_proxy(
        &self,
        control: &Arc<Control>,
        name: &str,
        proxy_type: &str,
        remote_port: i64,
        wrapping: Wrapping,
    ) -> Result<Arc<Proxy>, Refusal> {
        let mut g = self.inner.lock();
        let held = g
            .proxies
            .values()
            .filter(|p| p.control.serial == control.serial)
            .count();
        let port_taken = u16::try_from(remote_port)
            .map(|p| g.proxies.contains_key(&p))
            .unwrap_or(false);
        let port = policy::check(&policy::Request {
            allow: &self.allow,
            max_ports: self.max_ports,
            proxy_type,
            name,
            remote_port,
            held_by_client: held,
            name_taken: g.proxies.values().any(|p| p.name == name),
            port_taken,
            client_is_loopback: control.client.ip().is_loopback(),
        })?;
        let proxy = Arc::new(Proxy {
            name: name.to_string(),
            port,
            wrapping,
            control: control.clone(),
            listener: Mutex::new(None),
        });
        g.proxies.insert(port, proxy.clone());
        Ok(proxy)
    }

    pub(crate) fn set_listener(&self, proxy: &Proxy, handle: tokio::task::JoinHandle<()>) {
        let live = self
            .inner
            .lock()
            .proxies
            .get(&proxy.port)
            .is_some_and(|p| std::ptr::eq(&**p, proxy));
        if live {
            *proxy.listener.lock() = Some(handle);
        } else {
            handle.abort();
        }
    }

    pub(crate) fn remove_proxy(&self, control: &Arc<Control>, name: &str) {
        let removed = {
            let mut g = self.inner.lock();
            let port = g
                .proxies
                .iter()
                .find(|(_, p)| p.name == name && p.control.serial == control.serial)
                .map(|(port, _)| *port);
            port.and_then(|p| g.proxies.remove(&p))
        };
        if let Some(p) = removed {
            tracing::info!(proxy = %p.name, port = p.port, client = %control.client, "FRP proxy closed by client");
            if let Some(h) = p.listener.lock().take() {
                h.abort();
            }
        }
    }

    /// The proxy currently owning `port`.
    pub fn proxy(&self, port: u16) -> Option<Arc<Proxy>> {
        self.inner.lock().proxies.get(&port).cloned()
    }

    /// Opens a connection to whatever the tunnel client serves on `port`.
    pub async fn connect(&self, port: u16, src: Option<SocketAddr>) -> io::Result<BoxedIo> {
        let proxy = self
            .proxy(port)
            .ok_or_else(|| refused("no live FRP tunnel owns this port"))?;
        // frps retries a failed StartWorkConn write on the next pooled stream.
        for _ in 0..=MAX_POOL + 1 {
            let mut stream = proxy.control.take_work_conn().await?;
            let start = Message::StartWorkConn(StartWorkConn {
                proxy_name: proxy.name.clone(),
                src_addr: src.map_or("127.0.0.1".into(), |s| s.ip().to_string()),
                src_port: src.map_or(0, |s| s.port()),
                dst_addr: "127.0.0.1".into(),
                dst_port: port,
                error: String::new(),
            });
            if write_msg(&mut stream, &start).await.is_err() {
                continue;
            }
            // frp layers application → Snappy → AES-CFB → stream.
            let key = self.key;
            return Ok(
                match (proxy.wrapping.encryption, proxy.wrapping.compression) {
                    (false, false) => BoxedIo::new(stream),
                    (true, false) => BoxedIo::new(CryptoStream::new(stream, key)),
                    (false, true) => BoxedIo::new(SnappyStream::new(stream)),
                    (true, true) => BoxedIo::new(SnappyStream::new(CryptoStream::new(stream, key))),
                },
            );
        }
        Err(refused("tunnel work connections keep failing"))
    }
}

/// The upstream side of the registry: `127.0.0.1:<tunnel port>` dials go through tunnels.
pub(crate) struct TunnelDialer(pub Arc<Registry>);

impl LocalDialer for TunnelDialer {
    fn dial(&self, port: u16) -> Option<BoxFuture<'static, io::Result<BoxedIo>>> {
        let owned = self.0.proxy(port).is_some();
        // 24000 may be served by the local Docker socket when no tunnel holds it; every other
        // HaRP tunnel port fails at once without a live tunnel so the proxy answers 503
        // immediately. Other ports (a user frps.toml may allow them) only while owned.
        let claim = owned
            || matches!(port_kind(port), Some(PortKind::ExApp))
            || matches!(port_kind(port), Some(PortKind::Engine) if port != policy::LOCAL_ENGINE_PORT);
        if !claim {
            return None;
        }
        let registry = self.0.clone();
        Some(Box::pin(async move { registry.connect(port, None).await }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dialer_claims_tunnel_ports_and_fails_fast_without_a_tunnel() {
        let dialer = TunnelDialer(Registry::new());
        assert!(dialer.dial(8080).is_none());
        assert!(dialer.dial(24100).is_none());
        // The local engine port stays with whoever serves the Docker socket.
        assert!(dialer.dial(24000).is_none());
        for port in [23000, 23999, 24001, 24099] {
            let t0 = std::time::Instant::now();
            let err = match dialer.dial(port).expect("claimed").await {
                Err(e) => e,
                Ok(_) => panic!("no tunnel, yet connected"),
            };
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
            assert!(t0.elapsed() < Duration::from_millis(100));
        }
    }

    /// A stream opened on a session of its own (the registry only holds it); the returned
    /// peer end keeps the session alive.
    fn stream_on_new_session() -> (
        crate::tunnel::mux::Session,
        MuxStream,
        tokio::io::DuplexStream,
    ) {
        use crate::tunnel::mux::{Role, Session, SessionConfig};
        let (a, peer) = tokio::io::duplex(1024);
        let (session, _) = Session::start(a, Role::Client, SessionConfig::default());
        let stream = session.open().expect("open");
        (session, stream, peer)
    }

    #[tokio::test]
    async fn work_streams_only_from_the_session_that_logged_in() {
        let registry = Registry::new();
        let (owner, owner_stream, _p1) = stream_on_new_session();
        let (intruder, intruder_stream, _p2) = stream_on_new_session();
        assert_ne!(owner.id(), intruder.id());
        let (tx, _rx) = mpsc::channel(CONTROL_QUEUE);
        let control = registry.add_control(
            "ea197c1226270fe4".into(),
            "127.0.0.1:5000".parse().unwrap(),
            owner.id(),
            1,
            tx,
        );
        assert!(
            !registry.add_work_conn("ea197c1226270fe4", intruder.id(), intruder_stream),
            "someone else's run id on another session is refused"
        );
        assert_eq!(control.pool.lock().len(), 0, "nothing pooled");
        assert!(registry.add_work_conn("ea197c1226270fe4", owner.id(), owner_stream));
        assert_eq!(control.pool.lock().len(), 1);
    }

    #[tokio::test]
    async fn counts_report_sessions_proxies_by_range_and_idle_work_streams() {
        let registry = Registry::new();
        assert_eq!(registry.counts(), TunnelCounts::default());
        let (session, stream, _peer) = stream_on_new_session();
        let (tx, _rx) = mpsc::channel(CONTROL_QUEUE);
        let control = registry.add_control(
            "ea197c1226270fe4".into(),
            "127.0.0.1:5000".parse().unwrap(),
            session.id(),
            1,
            tx,
        );
        registry
            .add_proxy(&control, "app", "tcp", 23001, Wrapping::default())
            .expect("exapp port");
        assert!(registry.add_work_conn("ea197c1226270fe4", session.id(), stream));
        let expected = TunnelCounts {
            sessions: 1,
            exapp_proxies: 1,
            work_conns: 1,
            ..TunnelCounts::default()
        };
        assert_eq!(registry.counts(), expected);
        registry.remove_control(&control);
        assert_eq!(registry.counts(), TunnelCounts::default());
    }

    #[tokio::test]
    async fn control_queue_of_a_client_that_does_not_read_stays_bounded() {
        let registry = Registry::new();
        let (tx, mut rx) = mpsc::channel(CONTROL_QUEUE);
        let control = registry.add_control("r".into(), "127.0.0.1:5000".parse().unwrap(), 1, 0, tx);
        // What a Ping flood makes the control loop answer, without the client reading.
        for _ in 0..4 * CONTROL_QUEUE {
            control.send(Message::Pong(Default::default()));
        }
        let mut queued = 0;
        while rx.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, CONTROL_QUEUE);
    }
}
