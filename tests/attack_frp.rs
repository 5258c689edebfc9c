//! Attack suite, FRP tunnel server (issue #13): hostile peers on harp's FRP port (plain mode,
//! `HP_FRP_DISABLE_TLS=true`) against the real `harp` binary. Raw yamux frames are written by
//! hand (harp's own frame codec is private); logged-in peers use harp's public mux session and
//! FRP message codecs, as `harp tunnel` does.

mod common;

use common::nextcloud::StubNextcloud;
use common::process::*;
use common::{meta, wait_until, Harness, KEY};
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
async fn flood(harp: &HarpProcess, s: &mut TcpStream, chunk: &[u8], baseline_rss: u64) -> Flood {
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

async fn frp_harp(vars: &[(&str, &str)]) -> (StubNextcloud, HarpProcess) {
    let nc = StubNextcloud::start().await;
    let harp = Harness::builder()
        .nextcloud(&nc.url())
        .envs(vars)
        .spawn_process();
    (nc, harp)
}

/// Attack 2 (pre-login PING flood): a peer opens the yamux session and floods PING requests
/// without ever reading the answers. Proves harp bounds its queued answers: it closes the
/// connection and its RSS stays within the margin (bounded flood: ≤ 200 MB or 5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack02_prelogin_ping_flood_is_closed_with_bounded_memory() {
    let _g = serial().await;
    let (_nc, mut harp) = frp_harp(&[]).await;
    let baseline_fds = harp.fds();
    let baseline = harp.rss_kib();
    let mut s = TcpStream::connect(harp.frp).await.unwrap();
    s.write_all(&open_stream_1()).await.unwrap();
    let chunk: Vec<u8> = (0..8192u32)
        .flat_map(|i| yamux(TYPE_PING, FLAG_SYN, 0, i))
        .collect();
    let started = Instant::now();
    let f = flood(&harp, &mut s, &chunk, baseline).await;
    assert_normal_fast(harp.addr, "during the PING flood").await;
    harp.assert_alive();
    assert!(
        f.peak_rss_kib <= baseline + RSS_MARGIN_KIB,
        "PING flood ({} MB sent): harp's RSS peaked at {} KiB, baseline {baseline} KiB",
        f.sent >> 20,
        f.peak_rss_kib
    );
    // We still hold the socket and never read: only harp closing its end frees its fd.
    let pid = harp.pid;
    let closed = f.closed_by_harp
        || wait_until(FLOOD_PEER_CLOSE.saturating_sub(started.elapsed()), || {
            fds(pid) <= baseline_fds + FD_MARGIN
        })
        .await;
    assert!(
        closed,
        "harp still holds the connection of a peer that flooded {} MB of PINGs and never reads ({:?} after the flood began)",
        f.sent >> 20,
        started.elapsed()
    );
    drop(s);
    harp.fds_settle(baseline_fds, "after the PING flood").await;
}

/// How long after a flood began harp may take to close a peer that never reads: its write-stall
/// and pre-login deadlines (10 s) plus slack.
const FLOOD_PEER_CLOSE: Duration = Duration::from_secs(13);

/// Attack 3 (oversized DATA frame): before any login, a DATA frame header announcing
/// 4 GiB − 1 bytes on a freshly opened stream. Proves harp refuses a frame beyond the stream's
/// window: it closes the connection, and memory stays bounded while the body streams in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack03_oversized_data_frame_is_refused() {
    let _g = serial().await;
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
const LOGIN_DEADLINE: Duration = Duration::from_secs(15);

/// Attack 5 (pre-login connection flood): 2,000 TCP connections open a yamux session and
/// never log in. Proves harp caps pre-login connections (its fd count never grows by more than
/// the cap) and closes them all by the login deadline, with HTTP unaffected meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack05_prelogin_connection_flood_is_capped_and_expires() {
    let _g = serial().await;
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
    assert_normal_fast(harp.addr, "during the pre-login flood").await;
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
async fn frp_peer(harp: &HarpProcess, login: bool) -> FrpPeer {
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
    use harp::tunnel::wire::crypto::{derive_key, CryptoReader, CryptoWriter};
    let ctl = peer.control.as_mut().expect("logged in");
    let mut w = CryptoWriter::new(&mut *ctl, derive_key(""));
    let msg = Message::NewProxy(NewProxy {
        proxy_name: name.into(),
        proxy_type: "tcp".into(),
        use_compression: compression,
        remote_port: i64::from(port),
        ..Default::default()
    });
    write_msg(&mut w, &msg).await.unwrap();
    // Synchronise on harp's answer (the control stream's first encrypted message).
    let mut r = CryptoReader::new(ctl, derive_key(""));
    let resp = tokio::time::timeout(Duration::from_secs(5), read_msg(&mut r))
        .await
        .expect("NewProxyResp in time")
        .unwrap();
    match resp {
        Message::NewProxyResp(p) => assert!(p.error.is_empty(), "proxy refused: {}", p.error),
        other => panic!("expected NewProxyResp, got {other:?}"),
    }
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
    let _g = serial().await;
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

/// Snappy framing: the stream identifier chunk every compressed stream starts with.
const SNAPPY_STREAM_ID: &[u8] = b"\xff\x06\x00\x00sNaPpY";
/// Largest compressed chunk body the framing format allows (compressed worst case + CRC).
const SNAPPY_MAX_CHUNK: usize = 4 + 76_490;

/// A compressed chunk (type 0) whose snappy block claims 4 GiB − 1 of output and holds as many
/// 64-byte back-references as fit: the most a single chunk can ask a decoder to allocate and
/// write.
fn snappy_bomb_chunk() -> Vec<u8> {
    let mut block = vec![0xff, 0xff, 0xff, 0xff, 0x0f]; // varint u32::MAX
    block.extend_from_slice(&[0x00, b'a']); // 1-byte literal
    while 4 + block.len() + 3 <= SNAPPY_MAX_CHUNK {
        block.extend_from_slice(&[(63 << 2) | 2, 0x01, 0x00]); // copy 64 bytes at offset 1
    }
    let len = 4 + block.len();
    let mut chunk = vec![0x00, len as u8, (len >> 8) as u8, (len >> 16) as u8];
    chunk.extend_from_slice(&[0, 0, 0, 0]); // CRC: never reached, the block is refused first
    chunk.extend_from_slice(&block);
    chunk
}

/// Bomb rounds (each a fresh work connection and request).
const BOMB_ROUNDS: usize = 8;

/// Attack 4 (snappy bomb after login): a logged-in client registers a `useCompression` proxy
/// and answers harp's work connections with a snappy chunk claiming 4 GiB − 1 of output.
/// Proves harp refuses the chunk before allocating for it: the work stream is closed, RSS stays
/// within the margin over repeated bombs, and no 4 GiB of address space is reserved (`VmPeak`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack04_snappy_bomb_is_refused_with_bounded_memory() {
    let _g = serial().await;
    let (nc, mut harp) = frp_harp(&[("HP_TIMEOUT_SERVER", "5s")]).await;
    let port = tunnel_port(4);
    let mut a = frp_peer(&harp, true).await;
    register_proxy(&mut a, "atkzip", port, true).await;
    nc.add_app("atkzip", meta(port, attack_routes()));
    let baseline = harp.rss_kib();
    let vm_baseline = vm_peak_kib(harp.pid);
    let mut peak = baseline;
    let bomb = snappy_bomb_chunk();
    for round in 0..BOMB_ROUNDS {
        let mut work = a.session.open().unwrap();
        let ts = now_secs();
        let msg = Message::NewWorkConn(NewWorkConn {
            run_id: a.run_id.clone(),
            privilege_key: privilege_key("", ts),
            timestamp: ts,
        });
        write_msg(&mut work, &msg).await.unwrap();
        let url = harp.url(&format!("/exapps/atkzip/public/{round}"));
        let request = tokio::spawn(async move {
            let c = reqwest::Client::builder().no_proxy().build().unwrap();
            tokio::time::timeout(Duration::from_secs(8), c.get(url).send())
                .await
                .ok()
                .and_then(|r| r.ok())
                .map(|r| r.status().as_u16())
        });
        let start = tokio::time::timeout(Duration::from_secs(5), read_msg(&mut work))
            .await
            .expect("harp uses the work connection")
            .unwrap();
        assert!(matches!(start, Message::StartWorkConn(_)), "{start:?}");
        work.write_all(SNAPPY_STREAM_ID).await.unwrap();
        let _ = work.write_all(&bomb).await;
        let _ = work.flush().await;
        let pid = harp.pid;
        let mut sampled = baseline;
        let _ = wait_until(Duration::from_millis(300), || {
            sampled = sampled.max(rss_kib(pid));
            false
        })
        .await;
        peak = peak.max(sampled);
        harp.assert_alive();
        let mut buf = vec![0u8; 64 * 1024];
        let closed = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                match work.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "round {round}: harp kept the bombed work stream open"
        );
        let status = request.await.unwrap();
        assert_ne!(
            status,
            Some(200),
            "round {round}: a bomb was served as a response"
        );
    }
    assert!(
        peak <= baseline + RSS_MARGIN_KIB,
        "snappy bombs: RSS peaked at {peak} KiB, baseline {baseline} KiB"
    );
    harp.rss_settle(baseline, "after snappy bombs").await;
    let vm_peak = vm_peak_kib(harp.pid);
    assert!(
        vm_peak <= vm_baseline + BOMB_VM_MARGIN_KIB,
        "snappy bombs: harp reserved {} MiB of address space for them (VmPeak {vm_baseline} -> {vm_peak} KiB); under strict overcommit that allocation aborts harp",
        (vm_peak - vm_baseline) >> 10
    );
}

/// Address-space growth allowed during the bombs: far below one bomb's claimed 4 GiB.
const BOMB_VM_MARGIN_KIB: u64 = 1024 * 1024;
