//! The `harp` binary: configuration errors exit 1 naming the variable, `check` masks secrets,
//! `--help` lists every variable, SIGTERM stops it with status 0, logs never carry secrets.
//!
//! These tests drive the binary's command line directly (exact environments, signals, exit
//! codes), so they spawn it themselves rather than through `common::Harness`.

mod common;

use common::prereq;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_harp");
/// A data directory that cannot be created (not even by root: its parent is a device), so a
/// harp run by these tests never writes to the host's default `/var/lib/harp`.
const NO_DATA_DIR: &str = "/dev/null/harp";

fn harp(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut all = vec![("HP_DATA_DIR", NO_DATA_DIR)];
    all.extend_from_slice(env);
    common::process::run_once(args, &all)
}

const OK_ENV: [(&str, &str); 2] = [
    ("HP_SHARED_KEY", "s3cr3t-value"),
    ("NC_INSTANCE_URL", "http://nc"),
];

#[test]
fn item01_missing_key_exits_1_with_a_message() {
    let (code, text) = harp(&["check"], &[("NC_INSTANCE_URL", "http://nc")]);
    assert_eq!(code, 1);
    assert!(text.contains("HP_SHARED_KEY"), "{text}");
}

#[test]
fn item02_03_key_sources() {
    let (code, _) = harp(
        &["check"],
        &[
            ("HP_SHARED_KEY", "a"),
            ("HP_SHARED_KEY_FILE", "/etc/hostname"),
            ("NC_INSTANCE_URL", "http://nc"),
        ],
    );
    assert_eq!(code, 1);
    let (code, text) = harp(
        &["check"],
        &[
            ("HP_SHARED_KEY_FILE", "/no/such/file"),
            ("NC_INSTANCE_URL", "http://nc"),
        ],
    );
    assert_eq!(code, 1);
    assert!(text.contains("HP_SHARED_KEY_FILE"), "{text}");
}

#[test]
fn item05_bad_key_bytes_exit_1_without_echoing_the_key() {
    let (code, text) = harp(
        &["check"],
        &[
            ("HP_SHARED_KEY", "bad\tkey-XYZ"),
            ("NC_INSTANCE_URL", "http://nc"),
        ],
    );
    assert_eq!(code, 1);
    assert!(text.contains("tab") && !text.contains("key-XYZ"), "{text}");
}

#[test]
fn item08_09_invalid_values_name_their_variable() {
    for (var, value) in [
        ("NC_INSTANCE_URL", ""),
        ("HP_FRP_ADDRESS", ""),
        ("HP_SESSION_LIFETIME", "10.5"),
        ("HP_SESSION_LIFETIME", "abc"),
        ("HP_BLACKLIST_COUNT", "x"),
        ("HP_TIMEOUT_SERVER", "forever"),
    ] {
        let mut env = OK_ENV.to_vec();
        env.retain(|(k, _)| *k != var);
        env.push((var, value));
        let (code, text) = harp(&["check"], &env);
        assert_eq!(code, 1, "{var}={value}");
        assert!(text.contains(var), "{var}: {text}");
        assert_eq!(text.lines().count(), 1, "one clear line: {text}");
    }
}

#[test]
fn item16_unknown_log_level_does_not_crash() {
    let mut env = OK_ENV.to_vec();
    env.push(("HP_LOG_LEVEL", "verbose"));
    let (code, text) = harp(&["check"], &env);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("HP_LOG_LEVEL=warn"));
}

#[test]
fn check_masks_the_key_and_help_lists_variables() {
    let (code, text) = harp(&["check"], &OK_ENV);
    assert_eq!(code, 0);
    assert!(!text.contains("s3cr3t-value"));
    assert!(text.contains("HP_SHARED_KEY=********"));
    let (code, help) = harp(&["--help"], &[]);
    assert_eq!(code, 0);
    for v in harp::config::VARIABLES {
        assert!(help.contains(v.name), "--help lacks {}", v.name);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn item26_sigterm_exits_0_and_logs_carry_no_secrets() {
    let port = free_port();
    let mut child = Command::new(BIN)
        .env_clear()
        .env("HP_DATA_DIR", NO_DATA_DIR)
        .env("HP_SHARED_KEY", "s3cr3t-value")
        .env("NC_INSTANCE_URL", "http://127.0.0.1:9")
        .env("HP_EXAPPS_ADDRESS", format!("127.0.0.1:{port}"))
        .env("HP_FRP_ADDRESS", "127.0.0.1:0")
        .env("HP_FRP_DISABLE_TLS", "true")
        .env("HP_CERTS_DIR", "/nonexistent")
        .env("HP_LOG_LEVEL", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "harp did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(
            b"GET /exapps/app_api/info?token=q HTTP/1.1\r\nHost: x\r\nharp-shared-key: s3cr3t-value\r\nCookie: oc_sessionPassphrase=cookie-secret\r\nAuthorization: Basic YXV0aC1zZWNyZXQ=\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    }
    let started = Instant::now();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "harp ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let mut logs = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(
        logs.contains("/exapps/app_api/info") && logs.contains("status=200"),
        "access log line missing: {logs}"
    );
    for secret in [
        "s3cr3t-value",
        "cookie-secret",
        "YXV0aC1zZWNyZXQ=",
        "token=q",
    ] {
        assert!(!logs.contains(secret), "{secret} leaked into logs: {logs}");
    }
}

#[test]
fn bind_failure_exits_1_naming_the_variable() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut env = OK_ENV.to_vec();
    env.push(("HP_EXAPPS_ADDRESS", &addr));
    env.push(("HP_CERTS_DIR", "/nonexistent"));
    // FRP certificates would otherwise be generated under /nonexistent before the bind fails.
    env.push(("HP_FRP_DISABLE_TLS", "true"));
    let (code, text) = harp(&[], &env);
    assert_eq!(code, 1);
    assert!(text.contains("HP_EXAPPS_ADDRESS"), "{text}");
}

#[test]
fn healthcheck_fails_when_nothing_listens() {
    let port = free_port().to_string();
    let mut env = OK_ENV.to_vec();
    let addr = format!("127.0.0.1:{port}");
    env.push(("HP_EXAPPS_ADDRESS", &addr));
    let (code, text) = harp(&["healthcheck"], &env);
    assert_eq!(code, 1);
    assert!(text.contains("unhealthy"), "{text}");
}

/// The image's `/healthcheck.sh` is the binary under that name (a scratch image has no shell):
/// invoked so, with no arguments, it runs the health probe instead of starting harp. (The
/// healthy case is Docker's own health status in tests/container.rs.)
#[test]
fn invoked_as_healthcheck_sh_runs_the_probe() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("healthcheck.sh");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    let port = free_port().to_string();
    let addr = format!("127.0.0.1:{port}");
    let out = Command::new(&link)
        .env_clear()
        .envs(OK_ENV)
        .env("HP_EXAPPS_ADDRESS", &addr)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("harp: unhealthy: cannot connect to 127.0.0.1:"),
        "{text}"
    );
}

fn write_cert(dir: &std::path::Path) -> rcgen::CertifiedKey {
    let ck = rcgen::generate_simple_self_signed(vec!["harp.test".to_string()]).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("cert.pem"),
        format!("{}{}", ck.cert.pem(), ck.key_pair.serialize_pem()),
    )
    .unwrap();
    ck
}

fn https_status(port: u16, ca: &rcgen::CertifiedKey) -> Result<u16, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let root = reqwest::Certificate::from_pem(ca.cert.pem().as_bytes()).unwrap();
        let c = reqwest::Client::builder()
            .no_proxy()
            .tls_built_in_root_certs(false)
            .add_root_certificate(root)
            .resolve("harp.test", ([127, 0, 0, 1], port).into())
            .build()
            .unwrap();
        c.get(format!("https://harp.test:{port}/exapps/app_api/info"))
            .header("harp-shared-key", "s3cr3t-value")
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    })
}

#[test]
fn item27_sighup_reloads_the_https_certificate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let first = write_cert(&certs);
    let (http, https) = (free_port(), free_port());
    let mut child = Command::new(BIN)
        .env_clear()
        .env("HP_DATA_DIR", NO_DATA_DIR)
        .env("HP_SHARED_KEY", "s3cr3t-value")
        .env("NC_INSTANCE_URL", "http://127.0.0.1:9")
        .env("HP_EXAPPS_ADDRESS", format!("127.0.0.1:{http}"))
        .env("HP_EXAPPS_HTTPS_ADDRESS", format!("127.0.0.1:{https}"))
        .env("HP_FRP_ADDRESS", format!("127.0.0.1:{}", free_port()))
        .env("HP_FRP_DISABLE_TLS", "true")
        .env("HP_CERTS_DIR", &certs)
        .env("HP_DOCKER_SOCKET", dir.path().join("none.sock"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", https)).is_err() {
        assert!(Instant::now() < deadline, "HTTPS listener never opened");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(https_status(https, &first), Ok(200));
    let second = write_cert(&certs);
    Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while https_status(https, &second) != Ok(200) {
        assert!(
            Instant::now() < deadline,
            "new certificate not served after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        https_status(https, &first).is_err(),
        "old certificate still served"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP must not stop harp"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// Soft and hard "Max open files" of a process, from `/proc/<pid>/limits`.
fn open_file_limits(pid: u32) -> Option<(String, String)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    Some((fields.next()?.to_string(), fields.next()?.to_string()))
}

#[test]
fn soft_open_file_limit_is_raised_to_the_hard_limit() {
    let (_, hard) = open_file_limits(std::process::id()).expect("own limits");
    let low = "256";
    assert_ne!(hard, low, "the test needs a hard limit above {low}");
    // `prlimit` sets the limits and execs harp, so the child's pid is harp's.
    prereq::require_command("prlimit", "util-linux");
    let mut child = Command::new("prlimit")
        .arg(format!("--nofile={low}:{hard}"))
        .arg(BIN)
        .env_clear()
        .env("HP_DATA_DIR", NO_DATA_DIR)
        .env("HP_SHARED_KEY", "s3cr3t-value")
        .env("NC_INSTANCE_URL", "http://127.0.0.1:9")
        .env("HP_EXAPPS_ADDRESS", "127.0.0.1:0")
        .env("HP_EXAPPS_HTTPS_ADDRESS", "127.0.0.1:0")
        .env("HP_FRP_ADDRESS", "127.0.0.1:0")
        .env("HP_FRP_DISABLE_TLS", "true")
        .env("HP_CERTS_DIR", "/nonexistent")
        .env("HP_LOG_LEVEL", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("util-linux prlimit is installed");
    let pid = child.id();
    // harp logs to stdout; collect it as it comes, to know when harp is up.
    let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let logs = logs.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let mut logs = logs.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !logs.lock().unwrap().contains("harp is listening") {
        assert!(
            Instant::now() < deadline,
            "harp did not start: {}",
            logs.lock().unwrap()
        );
        assert!(child.try_wait().unwrap().is_none(), "harp exited early");
        std::thread::sleep(Duration::from_millis(20));
    }
    let seen = open_file_limits(pid);
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let logs = logs.lock().unwrap().clone();
    assert_eq!(
        seen,
        Some((hard.clone(), hard.clone())),
        "soft limit not raised; logs: {logs}"
    );
    assert!(
        logs.contains(&format!("from {low} to {hard}")),
        "the raise is logged at info: {logs}"
    );
    assert_eq!(status.code(), Some(0), "{logs}");
}

/// The variables of a running process, from `/proc/<pid>/environ`.
fn environ(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("the process is running");
    raw.split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// On AMD CPUs, harp re-executes itself once with glibc's `rep movsb` copies turned off
/// (src/memcopy.rs): the running process (same pid) carries the tunable, and serves. On other
/// CPUs its environment is what it was given. An admin's own value of the tunable is kept.
#[test]
fn glibc_copies_avoid_rep_movsb_on_amd_cpus() {
    let amd = harp::memcopy::is_amd(&std::fs::read_to_string("/proc/cpuinfo").unwrap());
    let ours = format!(
        "GLIBC_TUNABLES={}={}",
        harp::memcopy::TUNABLE,
        harp::memcopy::NEVER
    );
    let mut h = common::Harness::builder().spawn_process();
    let vars = environ(h.pid);
    assert_eq!(vars.contains(&ours), amd, "amd={amd}: {vars:?}");
    h.assert_alive();
    drop(h);

    let admins = format!("{}=4096", harp::memcopy::TUNABLE);
    let mut h = common::Harness::builder()
        .envs(&[("GLIBC_TUNABLES", &admins)])
        .spawn_process();
    let tunables: Vec<_> = environ(h.pid)
        .into_iter()
        .filter(|v| v.starts_with("GLIBC_TUNABLES="))
        .collect();
    assert_eq!(tunables, [format!("GLIBC_TUNABLES={admins}")]);
    h.assert_alive();
}
