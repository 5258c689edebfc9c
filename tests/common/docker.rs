//! The real Docker Engine of this machine as a peer (the `docker_*` tests): the CLI, a tiny
//! test image built without any registry, a relay socket, and the AppAPI calls harp answers.
//! harp itself is started by [`super::Harness`] (`.with_docker()`).
//!
//! Every resource a test makes is named `harptest_<random>…` and registered with a [`Cleanup`]
//! guard that removes it when the test ends, also when it panics, so tests can run in parallel
//! and leave nothing behind.

use super::{client, prereq, Harness, TestHarp, KEY};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// Debian's static busybox, the whole userland of the test image.
const BUSYBOX: &str = "/usr/bin/busybox";

/// Fails the test with one line when the engine is not there: these tests never skip.
pub fn require_docker() {
    prereq::require_command("docker", "docker.io");
    let out = Command::new("docker")
        .arg("info")
        .output()
        .unwrap_or_else(|e| {
            prereq::missing(&format!(
                "cannot run `docker info` ({e}): install docker.io and start the daemon"
            ))
        });
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        prereq::missing(&format!(
            "no Docker daemon answers at {DOCKER_SOCKET} (`docker info`: {}): start it (`systemctl start docker`) or run `tests/setup`",
            err.lines().last().unwrap_or("").trim()
        ));
    }
}

/// `harptest_<12 hex>`: unique per test, valid as an ExApp name and a Docker name.
pub fn unique() -> String {
    format!("harptest_{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("running the docker CLI")
}

/// Runs a docker CLI command that must succeed; returns its trimmed stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn inspect(kind: &str, name: &str) -> Option<serde_json::Value> {
    let out = docker(&[kind, "inspect", name]);
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect JSON");
    v.get(0).cloned()
}

pub fn container_inspect(name: &str) -> Option<serde_json::Value> {
    inspect("container", name)
}

/// Reads a file out of a container (running or not) with `docker cp`.
pub fn read_in_container(container: &str, path: &str) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let src = format!("{container}:{path}");
    let out = docker(&["cp", &src, dest.to_str().unwrap()]);
    if !out.status.success() {
        return None;
    }
    std::fs::read_to_string(dest).ok()
}

/// Removes what a test made, in reverse order, when dropped.
#[derive(Default)]
pub struct Cleanup {
    items: Mutex<Vec<(&'static str, String)>>,
}

impl Cleanup {
    pub fn container(&self, name: &str) {
        self.items.lock().unwrap().push(("container", name.into()));
    }
    pub fn volume(&self, name: &str) {
        self.items.lock().unwrap().push(("volume", name.into()));
    }
    pub fn image(&self, name: &str) {
        self.items.lock().unwrap().push(("image", name.into()));
    }
    pub fn network(&self, name: &str) {
        self.items.lock().unwrap().push(("network", name.into()));
    }
    /// The container, and the volume `create` makes for it, of the ExApp `name`.
    pub fn exapp(&self, name: &str) {
        self.volume(&format!("nc_app_{name}_data"));
        self.container(&format!("nc_app_{name}"));
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let items = std::mem::take(&mut *self.items.lock().unwrap());
        for (kind, name) in items.into_iter().rev() {
            let _ = match kind {
                "container" => docker(&["rm", "-f", "-v", &name]),
                "volume" => docker(&["volume", "rm", "-f", &name]),
                "image" => docker(&["image", "rm", "-f", &name]),
                _ => docker(&["network", "rm", &name]),
            };
        }
    }
}

/// What the test image's heartbeat file answers.
pub const HEARTBEAT: &str = "{\"status\":\"ok\"}";

/// Imports a tiny Debian-looking image `<name>:latest` without any registry: static busybox
/// (sh, cat, mkdir, httpd), `/etc/os-release` naming Debian so install_certificates takes the
/// Debian path, and a stand-in `update-ca-certificates` (the real one needs Debian's
/// ca-certificates package) that only leaves a marker in /tmp. `/certs` belongs to uid 1000 so a
/// non-root container can receive FRP certificates but not system ones. The default command
/// serves `/www` on port 8080 (so `GET /heartbeat` answers [`HEARTBEAT`]) and exits on SIGTERM
/// at once, keeping `stop` fast.
pub fn import_test_image(cleanup: &Cleanup, name: &str) -> String {
    prereq::require_file(BUSYBOX, "busybox-static");
    let busybox = std::fs::read(BUSYBOX).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let dir = |b: &mut tar::Builder<Vec<u8>>, path: &str, uid: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_size(0);
        b.append_data(&mut h, path, std::io::empty()).unwrap();
    };
    let file = |b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    };
    for d in [
        "bin",
        "etc",
        "tmp",
        "www",
        "usr",
        "usr/sbin",
        "usr/local",
        "usr/local/share",
    ] {
        dir(&mut b, d, 0);
    }
    dir(&mut b, "certs", 1000);
    file(&mut b, "bin/busybox", 0o755, &busybox);
    for applet in ["sh", "cat", "mkdir", "httpd", "sleep", "true", "ls"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    file(
        &mut b,
        "etc/os-release",
        0o644,
        b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nID=debian\n",
    );
    file(
        &mut b,
        "usr/sbin/update-ca-certificates",
        0o755,
        b"#!/bin/sh\ncat /usr/local/share/ca-certificates/*.crt > /tmp/update-ca-ran\n",
    );
    file(&mut b, "www/heartbeat", 0o644, HEARTBEAT.as_bytes());
    let tarball = b.into_inner().unwrap();

    let tag = format!("{name}:latest");
    cleanup.image(&tag);
    let mut child = Command::new("docker")
        .args([
            "import",
            "--change",
            "ENV PATH=/bin:/usr/sbin",
            "--change",
            r#"CMD ["/bin/sh", "-c", "trap 'exit 0' TERM; /bin/httpd -f -p 8080 -h /www & wait"]"#,
            "-",
            &tag,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker import");
    child.stdin.take().unwrap().write_all(&tarball).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tag
}

pub const FRP_CA: &str = "frp-ca-test-content\n";
pub const FRP_CLIENT_CRT: &str = "frp-client-crt-test-content\n";
pub const FRP_CLIENT_KEY: &str = "frp-client-key-test-content\n";

/// One answer, read completely.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("expected JSON, got {:?} ({e})", self.body))
    }
}

/// AppAPI's Docker calls, as harp's tests of them make them.
impl TestHarp {
    /// A request to `/exapps/app_api<path>` with the shared key and optional engine port.
    pub fn app_api(
        &self,
        method: reqwest::Method,
        path: &str,
        port: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut r = client()
            .request(method, self.url(&format!("/exapps/app_api{path}")))
            .header("harp-shared-key", KEY);
        if let Some(p) = port {
            r = r.header("docker-engine-port", p);
        }
        r
    }

    /// `POST /docker/exapp/<op>` against the local engine.
    pub async fn wrapper(&self, op: &str, body: serde_json::Value) -> Answer {
        self.wrapper_on(op, Some("24000"), body.to_string()).await
    }

    pub async fn wrapper_on(&self, op: &str, port: Option<&str>, body: String) -> Answer {
        let r = self
            .app_api(reqwest::Method::POST, &format!("/docker/exapp/{op}"), port)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("harp answers");
        answer(r).await
    }
}

pub async fn answer(r: reqwest::Response) -> Answer {
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    Answer { status, body }
}

/// AppAPI's real `create` payload for the ExApp `name` (including the extras it sends).
pub fn appapi_create_body(name: &str, image: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "instance_id": "",
        "image_id": image,
        "network_mode": "bridge",
        "environment_variables": [
            format!("APP_ID={name}"),
            "APP_PORT=8080",
            format!("APP_PERSISTENT_STORAGE=/nc_app_{name}_data"),
        ],
        "mount_points": [],
        "resource_limits": {"memory": null, "nanoCPUs": null},
        "restart_policy": "unless-stopped",
        "compute_device": "cpu",
        "start_container": true,
    })
}

/// A unix-socket relay to the real Docker socket, so a test can "restart" an engine (remove
/// and recreate the socket) without touching the system daemon, which other work shares.
pub struct SocketRelay {
    pub path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl SocketRelay {
    pub fn start(path: &Path) -> SocketRelay {
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path).expect("bind relay socket");
        // Connections live in a JoinSet owned by the accept loop, so stopping the relay cuts
        // them all, as a daemon restart would.
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut engine) = tokio::net::UnixStream::connect(DOCKER_SOCKET).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    }
                });
            }
        });
        SocketRelay {
            path: path.to_path_buf(),
            task,
        }
    }

    /// Like a daemon going away: the listener closes and the socket file disappears.
    pub fn stop(self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// An ExApp container created through harp's `create` wrapper from a fresh test image, with
/// everything it made registered for cleanup.
pub struct CreatedExApp {
    pub cleanup: Cleanup,
    pub name: String,
    pub image: String,
    pub container: String,
    pub h: TestHarp,
}

/// `harp` is the harness to start (`.with_docker()` is added here).
pub async fn create_test_exapp(harp: Harness) -> CreatedExApp {
    require_docker();
    let cleanup = Cleanup::default();
    let name = unique();
    let image = import_test_image(&cleanup, &name);
    cleanup.exapp(&name);
    let container = format!("nc_app_{name}");
    let h = harp.with_docker().start().await;
    let created = h.wrapper("create", appapi_create_body(&name, &image)).await;
    assert_eq!(created.status, 201, "{created:?}");
    CreatedExApp {
        cleanup,
        name,
        image,
        container,
        h,
    }
}
