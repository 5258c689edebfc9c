//! The Snappy framed-stream reader of per-proxy `use_compression` (`tunnel::wire::compress`).
//!
//! Raw mode: arbitrary bytes are read through `SnappyStream` in fuzzer-chosen pieces. Besides
//! "never panics" and the heap cap (a tiny chunk must not make the reader allocate gigabytes):
//! the output is bounded by the format (at most 64 KiB per chunk of at least 8 bytes), and
//! when both our reader and the `snap` crate's reference decoder accept the stream, they agree.
//! Round-trip mode: the input is written through `SnappyStream` in fuzzer-chosen writes, read
//! back in pieces, and must come out unchanged.
#![no_main]

use harp::tunnel::wire::compress::SnappyStream;
use harp_fuzz::{block_on, cap_heap, Pieces};
use libfuzzer_sys::fuzz_target;
use std::io::Read;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

cap_heap!();

/// The framing format's limit of uncompressed bytes per chunk.
const MAX_BLOCK: usize = 65_536;

fn read_all(data: &[u8], plan: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut reader = SnappyStream::new(Pieces::new(data, plan));
    let mut out = Vec::new();
    // Only `Pieces` returns `Pending`, at most once per piece.
    block_on(reader.read_to_end(&mut out), 4 * data.len() + 64)?;
    Ok(out)
}

fuzz_target!(|input: &[u8]| {
    set_heap_limit();
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let (plan, data) = Pieces::split(rest);
    if mode & 1 == 0 {
        let ours = read_all(data, plan);
        if let Ok(out) = &ours {
            assert!(out.len() <= (data.len() / 8 + 1) * MAX_BLOCK);
            let mut reference = Vec::new();
            if snap::read::FrameDecoder::new(data)
                .read_to_end(&mut reference)
                .is_ok()
            {
                assert!(*out == reference, "disagrees with the reference decoder");
            }
        }
    } else {
        let mut wire = Vec::new();
        let mut writer = SnappyStream::new(&mut wire);
        let mut rest = data;
        let mut i = 0;
        while !rest.is_empty() {
            let n = plan
                .get(i % plan.len().max(1))
                .map_or(rest.len(), |p| usize::from(*p).max(1))
                .min(rest.len());
            block_on(writer.write_all(&rest[..n]), 8).expect("Vec accepts everything");
            rest = &rest[n..];
            i += 1;
        }
        block_on(writer.flush(), 8).expect("Vec flushes");
        drop(writer);
        let back = read_all(&wire, plan).expect("own stream decodes");
        assert!(back == data, "round trip changed the data");
    }
});
