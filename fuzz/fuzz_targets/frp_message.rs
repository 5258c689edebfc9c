//! FRP message decoder: arbitrary bytes must yield a message or an error, never a panic, and
//! whatever decodes must re-encode to something that decodes to the same message.
#![no_main]

use harp::tunnel::wire::frame::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = decode(data) {
        let again = decode(&encode(&msg)).expect("re-encoded message decodes");
        assert_eq!(again, msg);
    }
});
