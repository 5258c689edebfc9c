//! Path normaliser (`pipeline::normalize::normalize_path`): any string yields a path or a
//! refusal, never a panic; what it yields is canonical (normalising again changes nothing) and
//! holds none of the spellings it removes, nor a parent segment in any encoding.
#![no_main]

use harp::pipeline::normalize::normalize_path;
use harp::pipeline::path::has_parent_segment;
use harp_fuzz::cap_heap;
use libfuzzer_sys::fuzz_target;

cap_heap!();

fuzz_target!(|input: &[u8]| {
    set_heap_limit();
    let Ok(raw) = std::str::from_utf8(input) else {
        return;
    };
    if let Ok(path) = normalize_path(raw) {
        let again = normalize_path(&path).expect("a normalised path is accepted");
        assert_eq!(again, path, "normalising {raw:?} is not idempotent");
        assert!(!has_parent_segment(&path), "{raw:?} normalised to {path:?}");
        assert!(!path.contains("//"), "{path}");
        assert!(!path.split('/').any(|s| s == "." || s == ".."), "{path}");
        assert!(
            !path.contains('\\') && !path.chars().any(char::is_control),
            "{path}"
        );
        assert!(!path.to_ascii_uppercase().contains("%2F"), "{path}");
    }
});
