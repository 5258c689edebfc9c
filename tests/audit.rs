//! The tamper-evident audit log (issue #11 part 3): real operations through the real harp binary
//! (Docker wrapper calls against the real Docker Engine, FRP logins accepted and refused by
//! harp's own FRP client, a ban) produce chained records; `harp audit verify` passes on the
//! untouched log across rotated files and names the record after an edit, a deletion and a swap.

mod common;

use common::docker::{docker_ok, require_docker, DOCKER_SOCKET};
use common::tunnel::engine_tunnel;
use common::{client, wait_until, Harness, KEY};
use std::path::{Path, PathBuf};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);
/// Small, so the Docker calls below rotate the log at least once.
const ROTATE: &str = "4096";
const DOCKER_CALLS: usize = 30;

/// Runs `harp audit <args>` with an empty environment; returns the exit code and stdout + stderr.
fn harp_audit(args: &[&str]) -> (i32, String) {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    common::process::run_once(&all, &[])
}

fn all_text(dir: &Path) -> String {
    let mut text = String::new();
    for e in std::fs::read_dir(dir).unwrap() {
        text.push_str(&std::fs::read_to_string(e.unwrap().path()).unwrap());
    }
    text
}

/// A copy of the audit folder the test can damage.
fn copy_of(dir: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    to.to_owned()
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_operations_are_chained_and_verify_names_tampering() {
    require_docker();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let h = Harness::builder()
        .envs(&[
            ("HP_DATA_DIR", data.to_str().unwrap()),
            ("HP_DOCKER_SOCKET", DOCKER_SOCKET),
            ("HP_BLACKLIST_COUNT", "2"),
            ("HP_AUDIT_ROTATE_BYTES", ROTATE),
        ])
        .spawn_process();
    let audit_dir = data.join("audit");

    // Docker wrapper calls against the real engine.
    for i in 0..DOCKER_CALLS {
        let r = client()
            .post(h.url("/exapps/app_api/docker/exapp/exists"))
            .header("harp-shared-key", KEY)
            .header("docker-engine-port", "24000")
            .header("authorization", "Basic c2VjcmV0LWF1dGg=")
            .header("cookie", "oc_session=cookie-secret")
            .json(&serde_json::json!({"name": format!("nc_app_audit_absent_{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "exists answers");
    }
    // A state-changing pass-through call (an image pull from a registry that is not there).
    let r = client()
        .post(h.url(&format!(
            "/exapps/app_api/v{}/images/create?fromImage=127.0.0.1:1/audit-absent&tag=v1",
            docker_ok(&["version", "--format", "{{.Server.APIVersion}}"]).trim()
        )))
        .header("harp-shared-key", KEY)
        .header("docker-engine-port", "24000")
        .header("x-registry-auth", "cmVnaXN0cnktc2VjcmV0")
        .send()
        .await
        .unwrap();
    assert!(r.status().as_u16() != 403, "image pulls are allowed");
    // exapp_storage: a write refused for its payload (carrying a token) and a delete.
    let r = client()
        .post(h.url("/exapps/app_api/exapp_storage/auditapp"))
        .header("harp-shared-key", KEY)
        .body(r#"{"exapp_token":"storage-token-secret","exapp_version":"1","host":"h","port":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client()
        .delete(h.url("/exapps/app_api/exapp_storage/auditapp"))
        .header("harp-shared-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // FRP: a login that is accepted and registers an engine port, one whose proxy is refused
    // (a port outside the plan), then one with a wrong token (refused twice: a ban).
    let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let good = engine_tunnel(h.frp, KEY, 24001, sink.local_addr().unwrap());
    let outside = engine_tunnel(h.frp, KEY, 30000, sink.local_addr().unwrap());
    let bad = engine_tunnel(h.frp, "wrong-token", 24002, sink.local_addr().unwrap());

    let ops_seen = |want: &[&str]| {
        let text = std::fs::read_dir(&audit_dir)
            .map(|_| all_text(&audit_dir))
            .unwrap_or_default();
        want.iter().all(|w| text.contains(w))
    };
    let want = [
        "\"op\":\"docker_exapp\"",
        "\"outcome\":\"accepted\"",
        "\"outcome\":\"refused: wrong token\"",
        "\"op\":\"ban\"",
        "op=exists engine_port=24000 name=nc_app_audit_absent_0",
        "\"op\":\"docker_passthrough\"",
        "images/create?fromImage=127.0.0.1:1/audit-absent",
        "\"subject\":\"POST /exapp_storage/auditapp\",\"outcome\":\"400\"",
        "\"subject\":\"DELETE /exapp_storage/auditapp\",\"outcome\":\"404\"",
        "\"subject\":\"proxy=engine port=24001\",\"outcome\":\"registered\"",
        "\"subject\":\"proxy=engine port=30000\",\"outcome\":\"refused",
    ];
    assert!(
        wait_until(T, || ops_seen(&want)).await,
        "records missing; files: {}",
        all_text(&audit_dir)
    );
    drop((good, outside, bad));

    // No secret reaches the files.
    let text = all_text(&audit_dir);
    for secret in [
        KEY,
        "wrong-token",
        "c2VjcmV0LWF1dGg=",
        "cookie-secret",
        "cmVnaXN0cnktc2VjcmV0",
        "storage-token-secret",
    ] {
        assert!(!text.contains(secret), "{secret} in the audit log");
    }
    // Rotation happened, and the chain verifies across the files.
    assert!(
        audit_dir.join("audit.log.1").exists(),
        "no rotation at {ROTATE} bytes"
    );
    let (code, out) = harp_audit(&["verify", audit_dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: "), "{out}");
    let (code, out) = harp_audit(&["tail", "-n", "3", audit_dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().count(), 3, "{out}");

    // Tampering in the rotated file, which is complete (harp no longer writes it).
    let rotated = |dir: &Path| dir.join("audit.log.1");
    let n = lines_of(&rotated(&audit_dir)).len();
    assert!(n >= 4, "the rotated file holds {n} records");

    // A single-byte edit in line 2: line 3 no longer chains to it.
    let d = copy_of(&audit_dir, &tmp.path().join("edit"));
    let mut bytes = std::fs::read(rotated(&d)).unwrap();
    let second = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
    let at = second + bytes[second..].iter().position(|b| *b == b'_').unwrap();
    bytes[at] = b'-';
    std::fs::write(rotated(&d), bytes).unwrap();
    let (code, out) = harp_audit(&["verify", d.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("audit.log.1 line 3 "), "{out}");

    // Line 2 deleted: the next record (now line 2) names it.
    let d = copy_of(&audit_dir, &tmp.path().join("delete"));
    let mut lines = lines_of(&rotated(&d));
    lines.remove(1);
    write_lines(&rotated(&d), &lines);
    let (code, out) = harp_audit(&["verify", d.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("audit.log.1 line 2 "), "{out}");

    // Lines 2 and 3 swapped.
    let d = copy_of(&audit_dir, &tmp.path().join("swap"));
    let mut lines = lines_of(&rotated(&d));
    lines.swap(1, 2);
    write_lines(&rotated(&d), &lines);
    let (code, out) = harp_audit(&["verify", d.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("audit.log.1 line 2 "), "{out}");
}

/// The chain head (seq and hash of the newest record) reaches the log when harp stops, so an
/// admin can anchor it elsewhere: its hash is the SHA3-256 of the file's last line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_head_is_logged_when_harp_stops() {
    use sha3::Digest;
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::builder()
        .envs(&[
            ("HP_DATA_DIR", dir.path().to_str().unwrap()),
            ("HP_LOG_LEVEL", "info"),
        ])
        .spawn_process();
    let meta = serde_json::json!({
        "exapp_token": "t", "exapp_version": "1", "host": "127.0.0.1", "port": 9, "routes": []
    });
    for app in ["one", "two"] {
        let r = client()
            .post(h.url(&format!("/exapps/app_api/exapp_storage/{app}")))
            .header("harp-shared-key", KEY)
            .json(&meta)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    let log = dir.path().join("audit").join("audit.log");
    assert!(
        wait_until(T, || lines_of(&log).len() == 2).await,
        "two records written"
    );
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(h.pid as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert!(wait_until(T, || !h.alive()).await, "harp stops on SIGTERM");
    let last = lines_of(&log).pop().unwrap();
    let want = hex::encode(sha3::Sha3_256::digest(last.as_bytes()));
    // harp's last lines may still be in the pipe to the log reader when the process is gone.
    wait_until(T, || {
        h.logs().iter().any(|l| l.contains("audit chain head"))
    })
    .await;
    let logs = h.logs();
    let head = logs
        .iter()
        .rev()
        .find(|l| l.contains("audit chain head"))
        .unwrap_or_else(|| panic!("no chain head logged: {logs:#?}"));
    assert!(
        head.contains("seq=2") && head.contains(&want),
        "{head} (want {want})"
    );
}
