//! An idle frpc session must survive: frpc closes the whole session when a stream it opened
//! (the pooled work stream it keeps idle for the next visitor) is not ACKed within yamux's
//! 75 s stream-open timeout, or when its keep-alive pings go unanswered. Rather than idling
//! past those timeouts (they are frpc's, fixed at 75 s, not settable from its config), this
//! test watches the two events they wait for, on the wire between the real frpc and harp:
//! every stream frpc opens is ACKed by harp, and every keep-alive ping frpc sends (once a
//! second here, `transport.tcpMuxKeepaliveInterval = 1`) is answered. Then the pooled stream
//! still carries a request, on the first session and the same run id.

mod common;

use common::exapp::unix_app;
use common::frpc::*;
use common::*;
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the test waits for frpc to log in, and for each watched event.
const T: Duration = Duration::from_secs(30);
/// Answered keep-alive pings to see (one a second) before the idle session counts as kept
/// alive.
const PINGS: usize = 3;
/// The longest harp may take to ACK a stream or answer a ping (frpc would wait 75 s for an
/// ACK; a prompt peer answers in milliseconds).
const PROMPT: Duration = Duration::from_secs(2);

/// yamux (hashicorp's, as frp uses it): a 12-byte header of version, type, flags, stream id
/// and length; only data frames carry `length` bytes of payload.
const HEADER: usize = 12;
const TYPE_DATA: u8 = 0;
const TYPE_PING: u8 = 2;
const FLAG_SYN: u16 = 1;
const FLAG_ACK: u16 = 2;

/// A yamux event seen on the wire, with when it was seen.
#[derive(Clone, Debug)]
enum Event {
    /// frpc opened stream `id`.
    Open(u32, Instant),
    /// harp acknowledged stream `id`.
    Ack(u32, Instant),
    /// frpc sent keep-alive ping `opaque`.
    Ping(u32, Instant),
    /// harp answered ping `opaque`.
    Pong(u32, Instant),
}

/// Forwards bytes from `from` to `to` unchanged, recording the yamux events in them
/// (`client` tells which side `from` is).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    client: bool,
    events: Arc<Mutex<Vec<Event>>>,
) {
    let mut pending: Vec<u8> = Vec::new();
    // Payload bytes of the current data frame still to skip.
    let mut skip = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        pending.extend_from_slice(&buf[..n]);
        loop {
            if skip > 0 {
                let k = skip.min(pending.len());
                pending.drain(..k);
                skip -= k;
                if skip > 0 {
                    break;
                }
            }
            if pending.len() < HEADER {
                break;
            }
            let h: Vec<u8> = pending.drain(..HEADER).collect();
            let kind = h[1];
            let flags = u16::from_be_bytes([h[2], h[3]]);
            let id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
            let len = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
            let now = Instant::now();
            let event = match (kind, client) {
                (TYPE_PING, true) if flags & FLAG_SYN != 0 => Some(Event::Ping(len, now)),
                (TYPE_PING, false) if flags & FLAG_ACK != 0 => Some(Event::Pong(len, now)),
                (TYPE_PING, _) => None,
                (_, true) if flags & FLAG_SYN != 0 => Some(Event::Open(id, now)),
                (_, false) if flags & FLAG_ACK != 0 => Some(Event::Ack(id, now)),
                _ => None,
            };
            if let Some(e) = event {
                events.lock().push(e);
            }
            if kind == TYPE_DATA {
                skip = len as usize;
            }
        }
    }
}

/// A TCP relay in front of harp's FRP port that records the yamux events crossing it.
async fn watching_relay(frp: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<Event>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(frp).await else {
                return;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pump(cr, sw, true, ev.clone()));
            tokio::spawn(pump(sr, cw, false, ev.clone()));
        }
    });
    (addr, events)
}

/// Streams frpc opened (at least [`PROMPT`] before `now`) that harp has not ACKed within
/// [`PROMPT`], and how many such streams there are.
fn late_acks(events: &[Event], now: Instant) -> (Vec<u32>, usize) {
    let opened: Vec<(u32, Instant)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Open(id, t) if now - *t > PROMPT => Some((*id, *t)),
            _ => None,
        })
        .collect();
    let late = opened
        .iter()
        .filter(|(id, t)| {
            !events
                .iter()
                .any(|e| matches!(e, Event::Ack(a, at) if a == id && *at - *t <= PROMPT))
        })
        .map(|(id, _)| *id)
        .collect();
    (late, opened.len())
}

/// Keep-alive pings harp answered within [`PROMPT`].
fn answered_pings(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| match e {
            Event::Ping(op, t) => events
                .iter()
                .any(|p| matches!(p, Event::Pong(o, at) if o == op && *at - *t <= PROMPT)),
            _ => false,
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_session_streams_acked_and_keepalives_answered() {
    let tmp = tempfile::tempdir().unwrap();
    // Plain TCP between frpc and harp, so the relay can read the yamux frames.
    let h = Harness::builder().in_dir(tmp.path()).start().await;
    let (relay, events) = watching_relay(h.frp).await;
    let port = port_for(23000, "idle");
    let sock = tmp.path().join("exapp.sock");
    let _app = unix_app(&sock, "appidle").await;
    let toml = frpc_toml(
        relay,
        KEY,
        Tls::Off,
        &[ProxySpec {
            name: "appidle",
            port,
            unix: &sock,
        }],
    )
    .replace(
        "log.level",
        "transport.tcpMuxKeepaliveInterval = 1\nlog.level",
    );
    let frpc = start_frpc(tmp.path(), "frpc", &toml);
    push_tunnel_meta(&h, "appidle", port).await;
    wait_ok(&h, "/exapps/appidle/warm", &[], T).await;
    let run_id = h.tunnel_run_id(port);

    // The session is idle now; frpc keeps a pooled work stream open for the next visitor.
    let kept_alive = wait_until(T, || answered_pings(&events.lock()) >= PINGS).await;
    let seen = events.lock().clone();
    let now = Instant::now();
    assert!(
        kept_alive,
        "harp answered {} of frpc's keep-alive pings within {PROMPT:?}: {seen:?}",
        answered_pings(&seen)
    );
    let (late, opened) = late_acks(&seen, now);
    // The control stream, the visitor's work stream and the pooled one at least.
    assert!(opened >= 2, "frpc opened {opened} streams: {seen:?}");
    assert!(
        late.is_empty(),
        "streams {late:?} not ACKed within {PROMPT:?}: {seen:?}"
    );

    let (status, body) = get(&h, "/exapps/appidle/late", &[]).await;
    assert_eq!((status, body.as_str()), (200, "appidle: GET /late body=0"));
    let log = frpc.log_text();
    assert_eq!(
        log.matches("login to server success").count(),
        1,
        "frpc reconnected:\n{log}"
    );
    assert_eq!(h.tunnel_run_id(port), run_id);
    h.shutdown().await;
}
