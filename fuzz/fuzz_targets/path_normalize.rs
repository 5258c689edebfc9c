//! The request-path normaliser (`pipeline::path::normalize_path`, landing on the `decide`
//! branch). Not in Cargo.toml's target list until that function exists: the lead adds a
//! `[[bin]]` entry (and `fuzz/run` picks it up from there) at merge.
//!
//! Invariants besides "never panics": normalising is idempotent, and an accepted path has no
//! parent-directory segment in any encoding.
#![no_main]

use harp::pipeline::path::{has_parent_segment, normalize_path};
use harp_fuzz::cap_heap;
use libfuzzer_sys::fuzz_target;

cap_heap!();

fuzz_target!(|input: &[u8]| {
    set_heap_limit();
    let Ok(raw) = std::str::from_utf8(input) else {
        return;
    };
    if let Ok(once) = normalize_path(raw) {
        assert!(!has_parent_segment(&once), "{raw:?} normalised to {once:?}");
        let twice = normalize_path(&once).expect("a normalised path is accepted again");
        assert_eq!(once, twice, "normalising {raw:?} is not idempotent");
    }
});
