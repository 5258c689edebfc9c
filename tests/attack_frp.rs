//! Attack suite, FRP tunnel server (issue #13): hostile peers on harp's FRP port (plain mode,
//! `HP_FRP_DISABLE_TLS=true`) against the real `harp` binary. Raw yamux frames are written by
//! hand (harp's own frame codec is private); logged-in peers use harp's public mux session and
//! FRP message codecs, as `harp tunnel` does.

mod attack_support;
mod common;

use attack_support::*;
use common::nextcloud::StubNextcloud;
use harp::tunnel::mux::{MuxStream, Role, Session, SessionConfig};
use harp::tunnel::wire::crypto::privilege_key;
use harp::tunnel::wire::messages::{Login, NewProxy, NewWorkConn};
use harp::tunnel::wire::{read_msg, write_msg, Message};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// yamux frame types and flags (hashicorp spec; harp's constants are private to its mux).
const TYPE_DATA: u8 = 0;
const TYPE_WINDOW_UPDATE: u8 = 1;
const TYPE_PING: u8 = 2;
const FLAG_SYN: u16 = 1;

/// The 12-byte yamux header: version 0, type, flags, stream id, length (big endian).
fn yamux(ty: u8, flags: u16, stream: u32, length: u32) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[1] = ty;
    b[2..4].copy_from_slice(&flags.to_be_bytes());
    b[4..8].copy_from_slice(&stream.to_be_bytes());
    b[8..12].copy_from_slice(&length.to_be_bytes());
    b
}

/// frpc's first frame: SYN for stream 1, raising its window to frp's 6 MiB.
fn open_stream_1() -> [u8; 12] {
    yamux(
        TYPE_WINDOW_UPDATE,
        FLAG_SYN,
        1,
        6 * 1024 * 1024 - 256 * 1024,
    )
}

/// Largest number of bytes a flood may send, so a vulnerable harp cannot take the box down.
const FLOOD_BYTES: usize = 200 * 1024 * 1024;
/// Longest a flood may run.
const FLOOD_TIME: Duration = Duration::from_secs(5);
/// A flood stops early once harp's RSS grew by this much: the flaw is shown, the box is spared.
const FLOOD_ABORT_KIB: u64 = 1024 * 1024;

/// What a bounded flood observed.
struct Flood {
    sent: usize,
    peak_rss_kib: u64,
    /// harp closed (or reset) the connection while we were writing.
    closed_by_harp: bool,
}

/// Writes `chunk` repeatedly (never reading) until harp closes the connection, or the byte,
/// time or RSS bound is hit; samples harp's RSS throughout.
async fn flood(harp: &Harp, s: &mut TcpStream, chunk: &[u8], baseline_rss: u64) -> Flood {
    let started = Instant::now();
    let mut f = Flood {
        sent: 0,
        peak_rss_kib: baseline_rss,
        closed_by_harp: false,
    };
    while f.sent < FLOOD_BYTES && started.elapsed() < FLOOD_TIME {
        match tokio::time::timeout(Duration::from_millis(500), s.write_all(chunk)).await {
            Ok(Ok(())) => f.sent += chunk.len(),
            Ok(Err(_)) => {
                f.closed_by_harp = true;
                break;
            }
            // harp stopped reading without closing; keep sampling until the time bound.
            Err(_) => {}
        }
        let rss = harp.rss_kib();
        f.peak_rss_kib = f.peak_rss_kib.max(rss);
        if rss > baseline_rss + FLOOD_ABORT_KIB {
            break;
        }
    }
    f
}

/// Waits until harp has closed `s` (EOF or reset on read), draining what it sent.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let end = tokio::time::Instant::now() + within;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

async fn frp_harp(vars: &[(&str, &str)]) -> (StubNextcloud, Harp) {
    let nc = StubNextcloud::start().await;
    let harp = Harp::spawn(&nc.url(), vars);
    (nc, harp)
}

/// Attack 2 (pre-login PING flood): a peer opens the yamux session and floods PING requests
/// without ever reading the answers. Proves harp bounds its queued answers: it closes the
/// connection and its RSS stays within the margin (bounded flood: ≤ 200 MB or 5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack02_prelogin_ping_flood_is_closed_with_bounded_memory() {
    let _g = serial();
    let (_nc, mut harp) = frp_harp(&[]).await;
    let baseline_fds = harp.fds();
    let baseline = harp.rss_kib();
    let mut s = TcpStream::connect(harp.frp).await.unwrap();
    s.write_all(&open_stream_1()).await.unwrap();
    let chunk: Vec<u8> = (0..8192u32)
        .flat_map(|i| yamux(TYPE_PING, FLAG_SYN, 0, i))
        .collect();
    let f = flood(&harp, &mut s, &chunk, baseline).await;
    assert_normal_fast(harp.http, "during the PING flood").await;
    harp.assert_alive();
    assert!(
        f.peak_rss_kib <= baseline + RSS_MARGIN_KIB,
        "PING flood ({} MB sent): harp's RSS peaked at {} KiB, baseline {baseline} KiB",
        f.sent >> 20,
        f.peak_rss_kib
    );
    drop(s);
    assert!(
        f.closed_by_harp,
        "harp kept reading a {} MB PING flood from a peer that never reads",
        f.sent >> 20
    );
    harp.fds_settle(baseline_fds, "after the PING flood").await;
}

/// Attack 3 (oversized DATA frame): before any login, a DATA frame header announcing
/// 4 GiB − 1 bytes on a freshly opened stream. Proves harp refuses a frame beyond the stream's
/// window: it closes the connection, and memory stays bounded while the body streams in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack03_oversized_data_frame_is_refused() {
    let _g = serial();
    let (_nc, mut harp) = frp_harp(&[]).await;
    let baseline_fds = harp.fds();
    let baseline = harp.rss_kib();
    let mut s = TcpStream::connect(harp.frp).await.unwrap();
    s.write_all(&open_stream_1()).await.unwrap();
    s.write_all(&yamux(TYPE_DATA, 0, 1, u32::MAX))
        .await
        .unwrap();
    let chunk = vec![0x41u8; 1024 * 1024];
    let f = flood(&harp, &mut s, &chunk, baseline).await;
    harp.assert_alive();
    assert!(
        f.peak_rss_kib <= baseline + RSS_MARGIN_KIB,
        "oversized DATA frame ({} MB sent): RSS peaked at {} KiB, baseline {baseline} KiB",
        f.sent >> 20,
        f.peak_rss_kib
    );
    let closed = f.closed_by_harp || closed_within(&mut s, Duration::from_secs(2)).await;
    assert!(
        closed,
        "harp accepted {} MB of a 4 GiB DATA frame",
        f.sent >> 20
    );
    drop(s);
    harp.fds_settle(baseline_fds, "after the oversized frame")
        .await;
}

/// Connections the flood opens.
const PRELOGIN_FLOOD: usize = 2_000;
/// Most pre-login connections harp may hold at once (its cap must be at or below this).
const PRELOGIN_CAP_MAX: usize = 1_024;
/// harp's login deadline plus slack for closing them.
const LOGIN_DEADLINE: Duration = Duration::from_secs(13);

/// Attack 5 (pre-login connection flood): 2,000 TCP connections open a yamux session and
/// never log in. Proves harp caps pre-login connections (its fd count never grows by more than
/// the cap) and closes them all by the login deadline, with HTTP unaffected meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack05_prelogin_connection_flood_is_capped_and_expires() {
    let _g = serial();
    let (_nc, mut harp) = frp_harp(&[]).await;
    let baseline = harp.fds();
    let started = Instant::now();
    let mut conns = Vec::with_capacity(PRELOGIN_FLOOD);
    let mut peak = baseline;
    for i in 0..PRELOGIN_FLOOD {
        match TcpStream::connect(harp.frp).await {
            Ok(mut s) => {
                let _ = s.write_all(&open_stream_1()).await;
                conns.push(s);
            }
            Err(_) => continue,
        }
        if i % 100 == 0 {
            peak = peak.max(harp.fds());
        }
    }
    let opened = started.elapsed();
    assert_normal_fast(harp.http, "during the pre-login flood").await;
    let pid = harp.pid;
    let mut peak_after = peak;
    let all_gone = wait_until(LOGIN_DEADLINE.saturating_sub(opened), || {
        let n = fds(pid);
        peak_after = peak_after.max(n);
        n <= baseline + FD_MARGIN
    })
    .await;
    let peak = peak.max(peak_after);
    harp.assert_alive();
    assert!(
        peak <= baseline + PRELOGIN_CAP_MAX,
        "harp held {} fds for {PRELOGIN_FLOOD} idle pre-login connections (baseline {baseline}, cap at most {PRELOGIN_CAP_MAX})",
        peak
    );
    assert!(
        all_gone,
        "pre-login connections still open {:?} after the flood: {} fds, baseline {baseline}",
        started.elapsed(),
        harp.fds()
    );
    drop(conns);
}

/// A logged-in FRP client session (plain mode), driven with harp's own mux and codecs.
struct FrpPeer {
    session: Session,
    _accept: tokio::sync::mpsc::Receiver<MuxStream>,
    control: Option<MuxStream>,
    run_id: String,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Opens a session; logs in with the shared key unless `login` is false.
async fn frp_peer(harp: &Harp, login: bool) -> FrpPeer {
    let tcp = TcpStream::connect(harp.frp).await.unwrap();
    let (session, accept) = Session::start(tcp, Role::Client, SessionConfig::default());
    let mut peer = FrpPeer {
        session,
        _accept: accept,
        control: None,
        run_id: String::new(),
    };
    if login {
        let mut ctl = peer.session.open().unwrap();
        let ts = now_secs();
        let msg = Message::Login(Login {
            version: "0.65.0".into(),
            privilege_key: privilege_key("", ts),
            timestamp: ts,
            metas: [("token".to_string(), KEY.to_string())].into(),
            ..Default::default()
        });
        write_msg(&mut ctl, &msg).await.unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(5), read_msg(&mut ctl))
            .await
            .expect("LoginResp in time")
            .unwrap();
        let Message::LoginResp(resp) = resp else {
            panic!("expected LoginResp, got {resp:?}")
        };
        assert!(resp.error.is_empty(), "login refused: {}", resp.error);
        peer.run_id = resp.run_id;
        peer.control = Some(ctl);
    }
    peer
}

/// Registers a tcp proxy on the control stream (encrypted with the empty auth token's key).
async fn register_proxy(peer: &mut FrpPeer, name: &str, port: u16, compression: bool) {
    use harp::tunnel::wire::crypto::{derive_key, CryptoWriter};
    let ctl = peer.control.as_mut().expect("logged in");
    let mut w = CryptoWriter::new(ctl, derive_key(""));
    let msg = Message::NewProxy(NewProxy {
        proxy_name: name.into(),
        proxy_type: "tcp".into(),
        use_compression: compression,
        remote_port: i64::from(port),
        ..Default::default()
    });
    write_msg(&mut w, &msg).await.unwrap();
}

/// A tunnel port for this process, spread so parallel suites rarely collide.
fn tunnel_port(salt: u16) -> u16 {
    23_100 + ((std::process::id() as u16).wrapping_add(salt * 97) % 800)
}

/// Attack 16 (work connection with a foreign run_id): session A logs in; session B never logs
/// in and offers a work connection carrying A's run_id. Proves harp binds work connections to
/// their own session: B's stream is closed and never receives A's traffic (no StartWorkConn),
/// even while a request for A's proxy is waiting for a work connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack16_foreign_run_id_work_connection_is_refused() {
    let _g = serial();
    let (nc, harp) = frp_harp(&[("HP_TIMEOUT_SERVER", "5s")]).await;
    let port = tunnel_port(16);
    let mut a = frp_peer(&harp, true).await;
    register_proxy(&mut a, "atkfrp", port, false).await;
    nc.add_app("atkfrp", meta(port, attack_routes()));

    let b = frp_peer(&harp, false).await;
    let mut work = b.session.open().unwrap();
    let ts = now_secs();
    let msg = Message::NewWorkConn(NewWorkConn {
        run_id: a.run_id.clone(),
        privilege_key: privilege_key("", ts),
        timestamp: ts,
    });
    write_msg(&mut work, &msg).await.unwrap();

    // A request for A's proxy now needs a work connection; it must not be B's.
    let url = harp.url("/exapps/atkfrp/public/x");
    let request = tokio::spawn(async move {
        let c = reqwest::Client::builder().no_proxy().build().unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(6), c.get(url).send()).await;
    });
    let got = tokio::time::timeout(Duration::from_secs(4), read_msg(&mut work)).await;
    match got {
        Ok(Ok(Message::StartWorkConn(s))) => panic!(
            "a foreign session's work connection carried A's traffic (StartWorkConn for {})",
            s.proxy_name
        ),
        Ok(Ok(other)) => panic!("unexpected {other:?} on the foreign work connection"),
        Ok(Err(_)) => {}
        Err(_) => panic!("harp kept the foreign session's work connection open"),
    }
    request.abort();
    drop(a);
}
