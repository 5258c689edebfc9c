//! The two frp TOML parsers: `harp tunnel`'s frpc.toml (`tunnel::client::config`) and the
//! server's user-supplied frps.toml (`tunnel::server::settings`). Both take the same text; only
//! "never panics, never allocates without bound" is checked (the heap cap turns an allocation
//! sized from the file, such as an expanded port range, into a crash). Neither parser touches
//! the files the settings name.
#![no_main]

use harp::tunnel::client::ClientConfig;
use harp::tunnel::server::settings::FrpSettings;
use harp_fuzz::cap_heap;
use libfuzzer_sys::fuzz_target;

cap_heap!();

fuzz_target!(|input: &[u8]| {
    set_heap_limit();
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let _ = ClientConfig::parse(text);
    if let Ok(s) = FrpSettings::parse(text) {
        // Accepting TLS forcing without files would leave the server unable to start.
        assert!(!s.force_tls || s.tls.is_some());
    }
});
