//! The lean upstream client's response-head parser (`upstream::lean`, reached through the
//! public `Forwarder` as a bodiless GET or HEAD): the upstream answers with the fuzz input (in
//! fuzzer-chosen pieces) and closes. The body is read to its end, so whatever framing the head
//! chose runs too.
//!
//! Invariants besides "never panics": the exchange finishes under paused time (an expired
//! timeout is an error, not a hang); a 1xx is never the final response; HEAD, 204 and 304 have
//! no body; a body is never longer than what the upstream sent.
#![no_main]

use harp_fuzz::{cap_heap, lean_fetch, Pieces};
use http::{Method, StatusCode};
use libfuzzer_sys::fuzz_target;

cap_heap!();

fuzz_target!(|input: &[u8]| {
    set_heap_limit();
    let Some((&flags, rest)) = input.split_first() else {
        return;
    };
    let (plan, response) = Pieces::split(rest);
    let head_request = flags & 1 == 1;
    let method = if head_request {
        Method::HEAD
    } else {
        Method::GET
    };
    let Some(got) = lean_fetch(method, response, plan) else {
        return;
    };
    assert!(
        !got.status.is_informational(),
        "1xx {} passed as final",
        got.status
    );
    if let Ok(body) = &got.body {
        assert!(body.len() <= response.len());
        if head_request
            || got.status == StatusCode::NO_CONTENT
            || got.status == StatusCode::NOT_MODIFIED
        {
            assert!(
                body.is_empty(),
                "{} to a HEAD={head_request} has a body",
                got.status
            );
        }
    }
});
