//! `harp-bench memcpy`: how fast this host's C library copies the blocks a TLS tunnel copies,
//! by destination offset, with glibc's defaults and with the tunable harp sets on AMD CPUs
//! (src/memcopy.rs). The evidence behind that tunable, rerunnable on any host.

use std::process::Command;
use std::time::Instant;

/// The `GLIBC_TUNABLES` value harp gives itself on AMD CPUs (src/memcopy.rs; the bench does not
/// link harp's library).
pub const HARP_TUNABLES: &str = "glibc.cpu.x86_rep_movsb_threshold=2147483647";
/// Block sizes: a small body chunk, a TLS record's plaintext, a yamux frame.
const SIZES: [usize; 3] = [4 * 1024, 16 * 1024, 128 * 1024];
/// Destination offsets against an aligned source: none, a TLS record header, a yamux header.
const OFFSETS: [usize; 3] = [0, 5, 12];
/// Bytes copied per measurement.
const VOLUME: usize = 2 << 30;

/// GB/s of `copy_from_slice` (libc `memcpy` at these sizes) for each size and offset.
pub fn measure() -> Vec<(usize, usize, f64)> {
    let src = vec![1u8; 256 * 1024];
    let mut dst = vec![0u8; 256 * 1024 + 64];
    let mut out = Vec::new();
    for size in SIZES {
        for off in OFFSETS {
            let rounds = VOLUME / size;
            let started = Instant::now();
            for _ in 0..rounds {
                dst[off..off + size].copy_from_slice(std::hint::black_box(&src[..size]));
                std::hint::black_box(&mut dst);
            }
            let gbs = (rounds * size) as f64 / started.elapsed().as_secs_f64() / 1e9;
            out.push((size, off, gbs));
        }
    }
    out
}

/// Runs [`measure`] in two child processes (the tunable is read at process start) and prints
/// both side by side.
pub fn compare(tunable: &str) -> anyhow::Result<()> {
    let me = std::env::current_exe()?;
    let run = |tunables: Option<&str>| -> anyhow::Result<String> {
        let mut c = Command::new(&me);
        c.args(["memcpy", "--inner"]).env_remove("GLIBC_TUNABLES");
        if let Some(t) = tunables {
            c.env("GLIBC_TUNABLES", t);
        }
        let out = c.output()?;
        anyhow::ensure!(out.status.success(), "memcpy child failed");
        Ok(String::from_utf8(out.stdout)?)
    };
    let plain = run(None)?;
    let tuned = run(Some(tunable))?;
    println!("| block | destination offset | glibc default | {tunable} |");
    println!("|---:|---:|---:|---:|");
    for (a, b) in plain.lines().zip(tuned.lines()) {
        let f: Vec<&str> = a.split_whitespace().collect();
        let g: Vec<&str> = b.split_whitespace().collect();
        println!(
            "| {} KiB | +{} | {} GB/s | {} GB/s |",
            f[0].parse::<usize>()? / 1024,
            f[1],
            f[2],
            g[2]
        );
    }
    Ok(())
}
