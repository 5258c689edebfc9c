//! Path normaliser: any string yields a path or a refusal, never a panic; what it yields is
//! canonical (normalising again changes nothing) and holds none of the spellings it removes.
#![no_main]

use harp::pipeline::normalize::normalize_path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &str| {
    if let Ok(path) = normalize_path(raw) {
        let again = normalize_path(&path).expect("a normalised path is accepted");
        assert_eq!(again, path, "normalising is idempotent");
        assert!(!path.contains("//"), "{path}");
        assert!(!path.split('/').any(|s| s == "." || s == ".."), "{path}");
        assert!(!path.contains('\\') && !path.chars().any(char::is_control), "{path}");
        assert!(!path.to_ascii_uppercase().contains("%2F"), "{path}");
    }
});
