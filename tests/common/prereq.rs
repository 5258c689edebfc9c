//! Missing test prerequisites: a tool, a daemon or a file the tests need but the machine
//! lacks. The test fails (never skips) with one line naming what is missing and what to
//! install or set; `tests/setup` installs all of them.

use std::path::Path;

/// Fails the test with `what` (one line: what is missing and how to get it).
///
/// The line goes to stderr and the test unwinds without running the panic hook, so no
/// location line or backtrace buries it, even under `RUST_BACKTRACE=1`.
pub fn missing(what: &str) -> ! {
    let line = format!("missing test prerequisite: {what}");
    eprintln!("{line}");
    std::panic::resume_unwind(Box::new(line))
}

/// Whether `program` is an executable file on `PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let p = dir.join(program);
            p.is_file()
                && std::fs::metadata(&p)
                    .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
                    .unwrap_or(false)
        })
    })
}

/// Requires `program` on `PATH`; `package` is the Debian package that provides it.
pub fn require_command(program: &str, package: &str) {
    if !on_path(program) {
        missing(&format!(
            "`{program}` is not on PATH: run `tests/setup` or `apt-get install {package}`"
        ));
    }
}

/// Requires the file `path`; `package` is the Debian package that provides it.
pub fn require_file(path: &str, package: &str) {
    if !Path::new(path).is_file() {
        missing(&format!(
            "{path} is missing: run `tests/setup` or `apt-get install {package}`"
        ));
    }
}
