//! The yamux session reader (`tunnel::mux`), which runs every frame header through the header
//! decoder: a session is started on an in-memory connection whose peer sends the fuzz input
//! (in fuzzer-chosen pieces) and then closes; whatever we send is discarded. Inbound streams
//! are accepted and read to their end; optionally we open a stream and write more than the
//! initial window, so window updates from the input matter.
//!
//! Invariants besides "never panics": after the peer's EOF the session ends (checked under
//! paused time with keep-alive out of the way, so a hang is an expired deadline, not a slow
//! run), and the streams never yield more bytes than the peer sent.
#![no_main]

use harp::tunnel::mux::{
    Role, Session, SessionConfig, DEFAULT_MAX_STREAMS, INITIAL_WINDOW, MAX_WINDOW,
};
use harp_fuzz::{cap_heap, paused_runtime, ScriptedPeer};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

cap_heap!();

/// Virtual time allowed for the session to end once the peer's bytes are consumed.
const DEADLINE: Duration = Duration::from_secs(3600);
/// Bytes we offer on our own stream: above the 256 KiB initial window.
const OUR_WRITE: usize = 300 * 1024;

fuzz_target!(|input: &[u8]| {
    set_heap_limit();
    let Some((&flags, rest)) = input.split_first() else {
        return;
    };
    let (plan, data) = harp_fuzz::Pieces::split(rest);
    let sent = data.len();
    let peer = ScriptedPeer::new(data, plan);
    let role = if flags & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    // Bit 2: the limits the FRP server gives a connection before it logs in.
    let (max_streams, stream_window) = if flags & 4 == 0 {
        (DEFAULT_MAX_STREAMS, MAX_WINDOW)
    } else {
        (2, INITIAL_WINDOW)
    };
    let cfg = SessionConfig {
        keepalive: Duration::from_secs(86_400),
        ping_timeout: Duration::from_secs(10),
        max_streams,
        stream_window,
    };
    let rt = paused_runtime();
    rt.block_on(async move {
        let (session, mut inbound) = Session::start(peer, role, cfg);
        let ours = async {
            if flags & 2 == 0 {
                return;
            }
            let Ok(mut stream) = session.open() else {
                return;
            };
            let _ = stream.write_all(&vec![0x5a; OUR_WRITE]).await;
            let _ = stream.shutdown().await;
        };
        let theirs = async {
            let mut received = 0usize;
            let mut buf = vec![0u8; 16 * 1024];
            while let Some(mut stream) = inbound.recv().await {
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    received += n;
                }
            }
            received
        };
        let all = async {
            let ((), received, ()) = tokio::join!(ours, theirs, session.closed());
            received
        };
        let received = tokio::time::timeout(DEADLINE, all)
            .await
            .expect("session and its streams end after the peer's EOF");
        assert!(
            received <= sent,
            "streams yielded {received} bytes of {sent} sent"
        );
    });
});
