//! frp's AES-128-CFB stream wrappers (`tunnel::wire::crypto`).
//!
//! Raw mode: arbitrary bytes (IV first) are read through `CryptoReader` in fuzzer-chosen pieces;
//! the plaintext must equal a one-shot decryption by the `cfb-mode` crate, whatever the piece
//! boundaries; a stream shorter than the IV is an error, an empty one is empty.
//! Round-trip mode: the input is written through `CryptoWriter` in fuzzer-chosen writes, and
//! reading the ciphertext back yields the input.
#![no_main]

use aes::cipher::{AsyncStreamCipher, KeyIvInit};
use harp::tunnel::wire::crypto::{CryptoReader, CryptoWriter};
use harp_fuzz::{block_on, cap_heap, Pieces};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

cap_heap!();

const KEY: [u8; 16] = *b"harp fuzz key 16";

fn read_all(data: &[u8], plan: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut reader = CryptoReader::new(Pieces::new(data, plan), KEY);
    let mut out = Vec::new();
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
        let got = read_all(data, plan);
        match data.len() {
            0 => assert!(got.expect("empty stream").is_empty()),
            1..=15 => assert!(got.is_err(), "a stream shorter than the IV was accepted"),
            _ => {
                let (iv, body) = data.split_at(16);
                let mut want = body.to_vec();
                let iv: [u8; 16] = iv.try_into().expect("16 bytes");
                cfb_mode::Decryptor::<aes::Aes128>::new(&KEY.into(), &iv.into()).decrypt(&mut want);
                assert!(got.expect("complete IV") == want, "plaintext differs");
            }
        }
    } else {
        let iv = [mode; 16];
        let mut wire = Vec::new();
        let mut writer = CryptoWriter::with_iv(&mut wire, KEY, iv);
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
        assert_eq!(wire.len(), 16 + data.len());
        let back = read_all(&wire, plan).expect("own ciphertext decrypts");
        assert!(back == data, "round trip changed the data");
    }
});
