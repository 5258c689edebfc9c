//! Kubernetes settings and reachability (`harp check --reach-k8s`) against a REAL
//! kube-apiserver (`../shared/tools/kube-apiserver-up`, or the one in `HARP_TEST_KUBE_TOOLS`).
//! Only the one test that needs the server starts it; the fault tests need no server. Like
//! tests/cli.rs these drive the `check` command line (no listener starts), so they spawn the
//! binary rather than a `Harness`.

mod common;

use common::prereq;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_harp");

fn harp_check(env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["check", "--reach-k8s"])
        .env_clear()
        .env("HP_SHARED_KEY", "s3cr3t-value")
        .env("NC_INSTANCE_URL", "http://nc")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The `kube-apiserver-up` tool: the override, else the project's shared folder beside the checkout.
fn tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("HARP_TEST_KUBE_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/tools"));
    let path = dir.join(name);
    if !path.is_file() {
        prereq::missing(&format!(
            "{} not found: put the project's shared/ folder beside this checkout or set HARP_TEST_KUBE_TOOLS to its tools/ folder",
            path.display()
        ));
    }
    path
}

/// One running etcd + kube-apiserver, stopped on drop (and by the tool's watchdog if the test
/// process dies first).
struct ApiServer {
    kubeconfig: String,
    url: String,
    token: String,
    ca: String,
}

impl ApiServer {
    fn start() -> ApiServer {
        let out = Command::new(tool("kube-apiserver-up"))
            .env("KUBE_APISERVER_PARENT_PID", std::process::id().to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kube-apiserver-up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kubeconfig = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let env_file = PathBuf::from(&kubeconfig).parent().unwrap().join("env");
        let env = std::fs::read_to_string(env_file).unwrap();
        let var = |name: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_string())
                .unwrap_or_else(|| panic!("{name} missing from the env file"))
        };
        ApiServer {
            url: var("KUBE_APISERVER_URL"),
            token: var("KUBE_APISERVER_TOKEN"),
            ca: var("KUBE_APISERVER_CA"),
            kubeconfig,
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = Command::new(tool("kube-apiserver-down"))
            .arg(&self.kubeconfig)
            .status();
    }
}

#[test]
fn check_reaches_the_real_api_server_with_the_token_file_read_at_call_time() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{}\n", api.token)).unwrap();
    let token_path = token_file.to_str().unwrap();
    let env = [
        ("HP_K8S_ENABLED", "true"),
        ("HP_K8S_API_SERVER", api.url.as_str()),
        ("HP_K8S_CA_FILE", api.ca.as_str()),
        ("HP_K8S_BEARER_TOKEN_FILE", token_path),
    ];

    let (code, text) = harp_check(&env);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("kubernetes: API server ready"), "{text}");
    assert!(!text.contains(&api.token), "the token reached the output");

    // A token the server does not know: it refuses even /readyz (401), which proves the file's
    // current content is what is sent.
    std::fs::write(&token_file, "not-a-valid-token").unwrap();
    let (code, text) = harp_check(&env);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(&api.url) && text.contains("401"), "{text}");
    assert!(!text.contains("not-a-valid-token"), "{text}");

    // Without the CA the server's self-signed chain is refused unless verification is off.
    let insecure = [
        ("HP_K8S_API_SERVER", api.url.as_str()),
        ("HP_K8S_CA_FILE", "/nonexistent/ca.crt"),
        ("HP_K8S_BEARER_TOKEN", api.token.as_str()),
    ];
    let (code, text) = harp_check(&insecure);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("unreachable") && text.contains(&api.url),
        "{text}"
    );
    let mut no_verify = insecure.to_vec();
    no_verify.push(("HP_K8S_VERIFY_SSL", "false"));
    let (code, text) = harp_check(&no_verify);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn unreachable_api_server_fails_fast_naming_it() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("https://127.0.0.1:{port}");
    let started = Instant::now();
    let (code, text) = harp_check(&[
        ("HP_K8S_API_SERVER", url.as_str()),
        ("HP_K8S_BEARER_TOKEN", "t"),
    ]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(&format!("{url} is unreachable")), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn missing_token_and_missing_server_are_named() {
    let (code, text) = harp_check(&[
        ("HP_K8S_API_SERVER", "https://127.0.0.1:1"),
        ("HP_K8S_BEARER_TOKEN_FILE", "/nonexistent/token"),
    ]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("/nonexistent/token"), "{text}");

    let (code, text) = harp_check(&[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("not configured"), "{text}");

    let (code, text) = harp_check(&[("HP_K8S_NAMESPACE", "Not_A_Label")]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("HP_K8S_NAMESPACE"), "{text}");
}
