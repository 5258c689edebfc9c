//! The lean upstream client's body framing (`upstream::lean`: fixed length, chunked, until
//! close), through the public `Forwarder`: a valid head chosen by the first byte, then a body
//! made from the fuzz input, delivered in fuzzer-chosen pieces.
//!
//! Modes and what must come out:
//! - length = input length: exactly the input; length larger: an error, never a short body
//!   passed as complete; length smaller: the first `length` bytes.
//! - chunked, encoded from the input with fuzzer-chosen chunk sizes, extensions and a trailer:
//!   exactly the input.
//! - chunked, raw input: anything, but never more bytes than were sent.
//! - until close: exactly the input.
#![no_main]

use harp_fuzz::{cap_heap, lean_fetch, Pieces};
use http::Method;
use libfuzzer_sys::fuzz_target;
use std::fmt::Write as _;

cap_heap!();

fn head(framing: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n{framing}\r\n")
        .into_bytes()
}

/// Chunk-encodes `data` with chunk sizes from `plan` (cycled), every other chunk with an
/// extension, upper/lower-case hex alternating, and a trailer field.
fn chunked(data: &[u8], plan: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0usize;
    while !rest.is_empty() {
        let size = plan
            .get(i % plan.len().max(1))
            .map_or(rest.len(), |p| usize::from(*p).max(1))
            .min(rest.len());
        let mut line = String::new();
        if i % 2 == 0 {
            let _ = write!(line, "{size:x}");
        } else {
            let _ = write!(line, "{size:X};ext=\"v\"");
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&rest[..size]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[size..];
        i += 1;
    }
    out.extend_from_slice(b"0\r\nx-trailer: 1\r\n\r\n");
    out
}

fuzz_target!(|input: &[u8]| {
    set_heap_limit();
    let Some((&flags, rest)) = input.split_first() else {
        return;
    };
    let (plan, data) = Pieces::split(rest);
    let extra = usize::from(flags >> 3);
    let (mut response, expect): (Vec<u8>, Option<Result<&[u8], ()>>) = match flags & 7 {
        0 => (
            head(&format!("content-length: {}\r\n", data.len())),
            Some(Ok(data)),
        ),
        1 => (
            head(&format!("content-length: {}\r\n", data.len() + 1 + extra)),
            Some(Err(())),
        ),
        2 => {
            let n = data.len().saturating_sub(extra + 1);
            (
                head(&format!("content-length: {n}\r\n")),
                Some(Ok(&data[..n])),
            )
        }
        3 => {
            let mut r = head("transfer-encoding: chunked\r\n");
            r.extend_from_slice(&chunked(data, plan));
            (r, Some(Ok(data)))
        }
        4 => (head("transfer-encoding: chunked\r\n"), None),
        5 => (head("connection: close\r\n"), Some(Ok(data))),
        6 => (head("transfer-encoding: gzip, chunked\r\n"), None),
        _ => (head("transfer-encoding: gzip\r\n"), Some(Ok(data))),
    };
    if flags & 7 != 3 {
        response.extend_from_slice(data);
    }
    let got = lean_fetch(Method::GET, &response, plan).expect("a valid head is accepted");
    match (expect, &got.body) {
        (Some(Ok(want)), Ok(body)) => assert!(body == want, "body differs from what was sent"),
        (Some(Ok(_)), Err(e)) => panic!("valid body refused: {e}"),
        (Some(Err(())), Ok(body)) => {
            panic!("short body of {} bytes passed as complete", body.len())
        }
        (Some(Err(())), Err(_)) => {}
        (None, Ok(body)) => assert!(body.len() <= data.len()),
        (None, Err(_)) => {}
    }
});
