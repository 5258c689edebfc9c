//! FRP message decoder (`tunnel::wire::frame`): arbitrary bytes must yield a message or an
//! error, never a panic. Whatever decodes re-encodes to something that decodes to the same
//! message, and the streaming reader (`read_msg`, fed in fuzzer-chosen pieces) agrees with the
//! one-shot decoder on every frame it reads.
#![no_main]

use harp::tunnel::wire::frame::{decode, encode, read_msg};
use harp_fuzz::{block_on, cap_heap, Pieces};
use libfuzzer_sys::fuzz_target;

cap_heap!();

fuzz_target!(|input: &[u8]| {
    set_heap_limit();
    let (plan, data) = Pieces::split(input);
    if let Ok(msg) = decode(data) {
        let again = decode(&encode(&msg)).expect("re-encoded message decodes");
        assert_eq!(again, msg);
    }
    // The stream may hold several frames back to back; read until the first error.
    let mut reader = Pieces::new(data, plan);
    let polls = 4 * data.len() + 64;
    let mut consumed = 0usize;
    while let Ok(msg) = block_on(read_msg(&mut reader), polls) {
        let len = 9 + usize::try_from(i64::from_be_bytes(
            data[consumed + 1..consumed + 9]
                .try_into()
                .expect("8 bytes"),
        ))
        .expect("accepted length is not negative");
        let frame = &data[consumed..consumed + len];
        assert_eq!(decode(frame).expect("one-shot decoder accepts it too"), msg);
        consumed += len;
    }
});
