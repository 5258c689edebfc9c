//! How glibc copies memory in this process: vector loops instead of `rep movsb` on AMD CPUs.
//!
//! Owns one decision taken before anything else runs (no threads, no sockets, no logging yet);
//! touches nothing else.
//!
//! Why: glibc (2.36 in Debian 12, the image's static glibc too) copies every block from
//! 2,112 bytes up to its non-temporal threshold (240 MiB here) with `rep movsb`
//! (`ld.so --list-tunables`: `x86_rep_movsb_threshold: 0x840`). On the AMD EPYC hosts harp is
//! measured on, that instruction runs at 3.0–3.5 GB/s instead of 50–88 GB/s whenever the
//! destination is a few bytes off the source's alignment (`harp-bench memcpy` prints the table
//! for any host; aligned copies lose 5–15 % without `rep movsb`). That is exactly what a TLS
//! tunnel does: rustls copies each 16 KiB record's plaintext 5 bytes into its buffer (after the
//! record header), and the yamux queue copies payloads 12 bytes in (after the frame header). In
//! a 256 MiB upload through `harp tunnel`, the server's tunnel thread spent 43 % of its time in
//! that copy against 10 % in AES-GCM; with the tunable, harp + `harp tunnel` spend 18 % less CPU
//! per MiB. glibc's `x86_rep_movsb_threshold` tunable moves the `rep movsb` range out of reach;
//! tunables are read only at process start, so harp re-executes itself once with the tunable
//! added (same pid, arguments, descriptors and environment; about 2.5 ms of start-up).
//!
//! An admin's own `GLIBC_TUNABLES` setting of that tunable is kept as it is. Other CPU vendors
//! and other C libraries are left alone.

/// The glibc tunable that sets where `rep movsb` starts being used.
pub const TUNABLE: &str = "glibc.cpu.x86_rep_movsb_threshold";
/// Its value: above any block harp copies below glibc's non-temporal threshold, so `rep movsb`
/// is never chosen.
pub const NEVER: &str = "2147483647";
/// The environment variable glibc reads tunables from (colon-separated `name=value`).
const VARIABLE: &str = "GLIBC_TUNABLES";

/// How much of `/proc/cpuinfo` is read: the first processor's `vendor_id` is in its first
/// lines. Reading the whole file costs a frequency query per CPU on large hosts.
const CPUINFO_HEAD: u64 = 4096;

/// Whether `cpuinfo` (the head of `/proc/cpuinfo`) names an AMD CPU.
pub fn is_amd(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("vendor_id"))
        .is_some_and(|l| l.ends_with("AuthenticAMD"))
}

/// The `GLIBC_TUNABLES` value to re-execute with, or None when nothing should change: the
/// tunable is already set (checked first, so the re-executed process does no more work), or
/// `amd` says the CPU is not AMD.
pub fn tunables_for(existing: Option<&str>, amd: impl FnOnce() -> bool) -> Option<String> {
    if existing.is_some_and(|v| v.split(':').any(|t| t.split('=').next() == Some(TUNABLE))) {
        return None;
    }
    if !amd() {
        return None;
    }
    let ours = format!("{TUNABLE}={NEVER}");
    match existing {
        None | Some("") => Some(ours),
        Some(v) => Some(format!("{v}:{ours}")),
    }
}

/// Re-executes this program with the tunable when [`tunables_for`] asks for it; returns when
/// it does not, or when the re-execution is impossible (then harp runs with glibc's default).
/// Call first thing in `main`, before any thread exists.
pub fn use_vector_copies() {
    if !cfg!(all(
        target_os = "linux",
        target_arch = "x86_64",
        target_env = "gnu"
    )) {
        return;
    }
    let existing = match std::env::var(VARIABLE) {
        Ok(v) => Some(v),
        Err(std::env::VarError::NotPresent) => None,
        // Not ours to rewrite: the admin set something we cannot read back faithfully.
        Err(std::env::VarError::NotUnicode(_)) => return,
    };
    let amd = || {
        use std::io::Read;
        let mut head = String::new();
        let _ = std::fs::File::open("/proc/cpuinfo")
            .and_then(|f| f.take(CPUINFO_HEAD).read_to_string(&mut head));
        is_amd(&head)
    };
    let Some(value) = tunables_for(existing.as_deref(), amd) else {
        return;
    };
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let Some(argv0) = args.next() else { return };
    use std::os::unix::process::CommandExt;
    // Only returns on failure; the program then goes on unchanged.
    let _ = std::process::Command::new(exe)
        .arg0(argv0)
        .args(args)
        .env(VARIABLE, value)
        .exec();
}

#[cfg(test)]
mod tests {
    use super::*;

    const AMD: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n";
    const INTEL: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\n";

    #[test]
    fn only_amd_cpus_get_the_tunable() {
        assert!(is_amd(AMD));
        assert!(!is_amd(INTEL));
        assert!(!is_amd(""), "no /proc/cpuinfo");
        assert_eq!(
            tunables_for(None, || is_amd(AMD)).as_deref(),
            Some("glibc.cpu.x86_rep_movsb_threshold=2147483647")
        );
        assert_eq!(tunables_for(None, || is_amd(INTEL)), None);
    }

    #[test]
    fn other_tunables_are_kept_and_an_admins_choice_wins() {
        assert_eq!(
            tunables_for(Some("glibc.malloc.arena_max=2"), || true).as_deref(),
            Some("glibc.malloc.arena_max=2:glibc.cpu.x86_rep_movsb_threshold=2147483647")
        );
        assert_eq!(
            tunables_for(Some(""), || true).as_deref(),
            Some("glibc.cpu.x86_rep_movsb_threshold=2147483647")
        );
        // Set by the admin (or by the first run, which makes the re-executed one stop here).
        assert_eq!(
            tunables_for(Some("a=1:glibc.cpu.x86_rep_movsb_threshold=4096"), || {
                panic!("the CPU is not asked about once the tunable is set")
            }),
            None
        );
        // A prefix of the name is another tunable.
        assert!(tunables_for(Some("glibc.cpu.x86_rep_movsb_threshold_x=1"), || true).is_some());
    }
}
