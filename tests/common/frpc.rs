//! The real Go frpc as a peer (the client ExApp images and remote engines run): where to find
//! it, its configuration, a guard that kills it, and the HTTP helpers of the FRP tests.

use super::{client, prereq, TestHarp, KEY};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Least MiB/s an upload through `harp tunnel` (mutual TLS, in-process) must reach: about a
/// fifth of the 40.8 MiB/s measured for 64 MiB on the shared 2-core machine under load
/// (debug build, checksum included), so only a path degraded to a crawl misses it.
pub const HARP_TUNNEL_FLOOR: f64 = 8.0;

/// How often frpc's log and harp's answers are polled while waiting for frpc.
const POLL: Duration = Duration::from_millis(100);

/// The real frpc: `HARP_TEST_FRPC`, else the path `tests/setup` wrote to
/// `target/harp-test-frpc`, else what `../shared/tools/get-frpc` prints. Fails with one line saying what to do when neither is there: these tests must
/// never be skipped.
pub fn frpc_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(find_frpc).clone()
}

fn find_frpc() -> PathBuf {
    const FIX: &str = "run `tests/setup` or set HARP_TEST_FRPC=/path/to/frpc";
    if let Some(p) = std::env::var_os("HARP_TEST_FRPC") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            prereq::missing(&format!(
                "HARP_TEST_FRPC={} is not a file: {FIX}",
                p.display()
            ));
        }
        return p;
    }
    // What `tests/setup` found, so no export is needed after running it.
    let recorded = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/harp-test-frpc");
    if let Ok(text) = std::fs::read_to_string(&recorded) {
        let p = PathBuf::from(text.trim());
        if !p.is_file() {
            prereq::missing(&format!(
                "{} names {}, which is not a file: {FIX}",
                recorded.display(),
                p.display()
            ));
        }
        return p;
    }
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/get-frpc");
    if !tool.is_file() {
        prereq::missing(&format!(
            "the real frpc: HARP_TEST_FRPC is not set and {} was not found: {FIX}",
            tool.display()
        ));
    }
    let out = Command::new(&tool).stderr(Stdio::inherit()).output();
    match out {
        Ok(out) if out.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string())
        }
        Ok(out) => prereq::missing(&format!(
            "the real frpc: {} failed ({}): {FIX}",
            tool.display(),
            out.status
        )),
        Err(e) => prereq::missing(&format!(
            "the real frpc: cannot run {} ({e}): {FIX}",
            tool.display()
        )),
    }
}

/// A running frpc, killed (and reaped) on drop so a failing test leaves nothing behind.
pub struct Frpc {
    child: Child,
    pub log: PathBuf,
}

impl Frpc {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until frpc's output holds `needle` at least `times` times.
    pub async fn wait_log_count(&self, needle: &str, times: usize, within: Duration) {
        let end = Instant::now() + within;
        loop {
            if self.log_text().matches(needle).count() >= times {
                return;
            }
            assert!(
                Instant::now() < end,
                "frpc did not log {needle:?} {times} times within {within:?}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for `needle` in frpc's output.
    pub async fn wait_log(&self, needle: &str, within: Duration) {
        self.wait_log_count(needle, 1, within).await
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Frpc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Which transport settings the client config gets.
pub enum Tls<'a> {
    /// Client certificate, key and CA from this directory, server name harp.nc.
    Certs(&'a Path),
    /// TLS without a client certificate.
    NoClientCert(&'a Path),
    Off,
}

pub struct ProxySpec<'a> {
    pub name: &'a str,
    pub port: u16,
    pub unix: &'a Path,
}

/// frpc.toml for one ExApp-style proxy: mutual TLS with harp's certificates, the shared key,
/// and the unix-socket plugin pointing at `unix`.
pub fn single_proxy_toml(h: &TestHarp, name: &str, port: u16, unix: &Path) -> String {
    frpc_toml(
        h.frp,
        KEY,
        Tls::Certs(&h.certs()),
        &[ProxySpec { name, port, unix }],
    )
}

/// The frpc TOML HaRP's ExApp images generate (plus a debug log level).
pub fn frpc_toml(frp: SocketAddr, token: &str, tls: Tls<'_>, proxies: &[ProxySpec<'_>]) -> String {
    let mut s = format!(
        "serverAddr = \"127.0.0.1\"\nserverPort = {}\nloginFailExit = false\nmetadatas.token = \"{token}\"\nlog.level = \"debug\"\n",
        frp.port()
    );
    match tls {
        Tls::Certs(d) => s.push_str(&format!(
            "transport.tls.enable = true\ntransport.tls.certFile = \"{0}/client.crt\"\ntransport.tls.keyFile = \"{0}/client.key\"\ntransport.tls.trustedCaFile = \"{0}/ca.crt\"\ntransport.tls.serverName = \"harp.nc\"\n",
            d.display()
        )),
        Tls::NoClientCert(d) => s.push_str(&format!(
            "transport.tls.enable = true\ntransport.tls.trustedCaFile = \"{0}/ca.crt\"\ntransport.tls.serverName = \"harp.nc\"\n",
            d.display()
        )),
        Tls::Off => s.push_str("transport.tls.enable = false\n"),
    }
    for p in proxies {
        s.push_str(&format!(
            "\n[[proxies]]\nname = \"{}\"\ntype = \"tcp\"\nremotePort = {}\n[proxies.plugin]\ntype = \"unix_domain_socket\"\nunixPath = \"{}\"\n",
            p.name,
            p.port,
            p.unix.display()
        ));
    }
    s
}

/// Starts the real frpc with `toml` written under `dir/<tag>.toml`.
pub fn start_frpc(dir: &Path, tag: &str, toml: &str) -> Frpc {
    let cfg = dir.join(format!("{tag}.toml"));
    std::fs::write(&cfg, toml).unwrap();
    let log = dir.join(format!("{tag}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(frpc_path())
        .arg("-c")
        .arg(&cfg)
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("frpc starts");
    Frpc { child, log }
}

/// A port from `base..base+100` derived from a test tag, so parallel tests do not collide on
/// the loopback compatibility listeners.
pub fn port_for(base: u16, tag: &str) -> u16 {
    let h = tag
        .bytes()
        .fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32));
    base + 1 + (h % 98) as u16
}

/// Pushes ExApp metadata for an app behind a tunnel (host 127.0.0.1, the tunnel's port, one
/// public route).
pub async fn push_tunnel_meta(h: &TestHarp, app: &str, port: u16) {
    super::push_meta(h, app, &super::meta(port, super::public_routes())).await
}

/// GET through harp's front door; returns (status, body).
pub async fn get(h: &TestHarp, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut rb = client().get(h.url(path));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// Polls `path` until it answers 200 (frpc needs a moment to log in and register).
pub async fn wait_ok(
    h: &TestHarp,
    path: &str,
    headers: &[(&str, &str)],
    within: Duration,
) -> String {
    let end = Instant::now() + within;
    loop {
        let (s, b) = get(h, path, headers).await;
        if s == 200 {
            return b;
        }
        assert!(
            Instant::now() < end,
            "{path} still {s} after {within:?}: {b}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Uploads `mib` MiB of a patterned payload to `path` (an [`super::exapp::unix_app`] or
/// [`super::exapp::tcp_app`]), checks that every byte arrived intact (length and checksum as
/// the app saw them), and returns the MiB/s achieved.
pub async fn upload_rate(h: &TestHarp, path: &str, mib: usize) -> f64 {
    let payload: Vec<u8> = (0..mib * 1024 * 1024)
        .map(|i| (i % 251) as u8 ^ (i >> 20) as u8)
        .collect();
    let want = format!(
        "body={} fnv={:016x}",
        payload.len(),
        super::exapp::fnv1a(&payload)
    );
    let t0 = Instant::now();
    let r = client()
        .post(h.url(&format!("{path}?checksum")))
        .body(payload)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let rate = mib as f64 / t0.elapsed().as_secs_f64();
    assert!(text.ends_with(&want), "{path}: sent {want}, app saw {text}");
    rate
}
