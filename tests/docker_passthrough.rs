//! Docker Engine pass-through and the engine registry against the real engine (contract §2.3,
//! §5.1; checklist 44–52; issue #3 items 1–2).

mod common;

use common::docker::*;
use common::*;
use reqwest::Method;
use std::time::Duration;

/// The highest API version the engine here speaks, so versioned calls are valid on it.
fn engine_api_version() -> String {
    docker_ok(&["version", "--format", "{{.Server.APIVersion}}"])
}

#[tokio::test]
async fn item44_versioned_ping_reaches_the_engine() {
    require_docker();
    let h = Harness::builder().with_docker().start().await;
    let v = engine_api_version();
    let r = answer(
        h.app_api(Method::GET, &format!("/v{v}/_ping"), Some("24000"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "OK"));
    // AppAPI's default prefix: engines older than API 1.44 answer it themselves with "too new",
    // which proves the call was forwarded rather than refused by harp.
    let r = answer(
        h.app_api(Method::GET, "/v1.44/_ping", Some("24000"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        r.body == "OK" || r.body.contains("too new"),
        "unexpected answer to /v1.44/_ping: {r:?}"
    );
}

#[tokio::test]
async fn item45_unversioned_ping_and_head() {
    require_docker();
    let h = Harness::builder().with_docker().start().await;
    let r = answer(
        h.app_api(Method::GET, "/_ping", Some("24000"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "OK"));
    let head = h
        .app_api(Method::HEAD, "/_ping", Some("24000"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
}

#[tokio::test]
async fn item46_container_inspect_forwarded_only_for_nc_app_names() {
    require_docker();
    let cleanup = Cleanup::default();
    let name = unique();
    let image = import_test_image(&cleanup, &name);
    let container = format!("nc_app_{name}");
    cleanup.container(&container);
    docker_ok(&["create", "--name", &container, &image]);
    let h = Harness::builder().with_docker().start().await;
    let v = engine_api_version();
    let r = answer(
        h.app_api(
            Method::GET,
            &format!("/v{v}/containers/{container}/json"),
            Some("24000"),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["Name"], format!("/{container}"));
    let logs = h
        .app_api(
            Method::GET,
            &format!("/containers/{container}/logs?stdout=true"),
            Some("24000"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(logs.status(), 200);
    let r = answer(
        h.app_api(
            Method::GET,
            &format!("/v{v}/containers/{name}/json"),
            Some("24000"),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(r.status, 403, "{r:?}");
}

#[tokio::test]
async fn item47_image_pull_streams_with_query_string() {
    require_docker();
    let cleanup = Cleanup::default();
    let registry = LocalRegistry::start();
    let name = unique();
    let local = import_test_image(&cleanup, &name);
    let remote = format!("{}/{name}", registry.host);
    let remote_tag = format!("{remote}:v1");
    cleanup.image(&remote_tag);
    docker_ok(&["tag", &local, &remote_tag]);
    docker_ok(&["push", &remote_tag]);
    docker_ok(&["image", "rm", &remote_tag]);
    assert!(inspect("image", &remote_tag).is_none());

    let h = Harness::builder().with_docker().start().await;
    let v = engine_api_version();
    let mut r = h
        .app_api(
            Method::POST,
            &format!("/v{v}/images/create?fromImage={remote}&tag=v1"),
            Some("24000"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut chunks = 0;
    let mut text = String::new();
    while let Some(chunk) = r.chunk().await.unwrap() {
        chunks += 1;
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("each progress line is JSON"))
        .collect();
    assert!(lines.len() >= 3, "progress lines: {text}");
    assert!(chunks >= 2, "progress arrived in one piece: {text}");
    assert!(
        text.contains("Downloaded newer image"),
        "pull did not complete: {text}"
    );
    assert!(inspect("image", &remote_tag).is_some());
}

#[tokio::test]
async fn item48_other_engine_calls_are_forbidden() {
    require_docker();
    let h = Harness::builder().with_docker().start().await;
    for (method, path) in [
        (Method::DELETE, "/v1.41/containers/nc_app_foo"),
        (Method::POST, "/v1.41/containers/create"),
        (Method::GET, "/v1.41/version"),
        (Method::POST, "/containers/nc_app_foo/exec"),
    ] {
        let r = h
            .app_api(method.clone(), path, Some("24000"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{method} {path}");
    }
}

#[tokio::test]
async fn item49_info_with_engine_port_goes_to_the_allow_list() {
    require_docker();
    let h = Harness::builder().with_docker().start().await;
    let r = h
        .app_api(Method::GET, "/info", Some("24000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = answer(h.app_api(Method::GET, "/info", None).send().await.unwrap()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["docker"], true);
}

#[tokio::test]
async fn item50_wrapper_path_with_engine_port_reaches_the_control_api() {
    require_docker();
    let h = Harness::builder().with_docker().start().await;
    let r = h
        .wrapper("exists", serde_json::json!({"name": unique()}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json(), serde_json::json!({"exists": false}));
}

#[tokio::test]
async fn item51_non_integer_engine_port_is_a_400() {
    require_docker();
    let h = Harness::builder().with_docker().start().await;
    for bad in ["abc", "0", "70000"] {
        let r = answer(
            h.app_api(Method::GET, "/_ping", Some(bad))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 400, "{bad}: {r:?}");
        assert!(r.body.contains("docker-engine-port"), "{r:?}");
    }
}

#[tokio::test]
async fn item52_unreachable_engine_503_silent_engine_504() {
    require_docker();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let silent_port = silent_addr.port().to_string();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c);
        }
    });
    let h = Harness::builder()
        .with_docker()
        .env("HP_TIMEOUT_SERVER", "1s")
        .start()
        .await;
    // Pass-through: a plan port no tunnel holds is 503; a port outside the plan is refused
    // before anything is dialled (the silent engine through a tunnel: tests/access.rs item52).
    let r = h
        .app_api(Method::GET, "/_ping", Some("24098"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let page = r.text().await.unwrap();
    assert!(
        page.contains(
            "No Docker Engine is connected on port 24098: no FRP tunnel has registered this port"
        ),
        "{page}"
    );
    let r = h
        .app_api(Method::GET, "/_ping", Some(&silent_port))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // The wrappers map the same faults the same way (§4.5): a plan port that no tunnel holds
    // is 503, an engine that accepts and stays silent is 504.
    let body = serde_json::json!({"name": "x"}).to_string();
    let r = h.wrapper_on("exists", Some("24098"), body.clone()).await;
    assert_eq!(r.status, 503);
    assert!(
        r.body
            .starts_with("No Docker Engine is connected on port 24098"),
        "{r:?}"
    );
    let _tunnel = h.engine_tunnel(24093, silent_addr).await;
    let r = h.wrapper_on("exists", Some("24093"), body).await;
    assert_eq!(r.status, 504, "{r:?}");
    held.abort();
}

#[tokio::test]
async fn local_engine_relay_answers_ping_on_loopback() {
    require_docker();
    let h = Harness::builder().with_docker().start().await;
    let relay = h.local_engine.expect("relay listener bound");
    assert!(relay.ip().is_loopback());
    let r = answer(reqwest::get(format!("http://{relay}/_ping")).await.unwrap()).await;
    assert_eq!((r.status, r.body.as_str()), (200, "OK"));
}

#[tokio::test]
async fn local_engine_relay_defaults_to_24000_and_a_taken_port_is_not_fatal() {
    require_docker();
    let vars = [
        ("HP_SHARED_KEY", "k"),
        ("NC_INSTANCE_URL", "http://127.0.0.1:1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let cfg = harp::config::Config::from_vars(&vars).unwrap();
    assert_eq!(cfg.local_engine_listen, "127.0.0.1:24000".parse().unwrap());

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let h = Harness::builder()
        .with_docker()
        .local_engine_listen(taken.local_addr().unwrap())
        .start()
        .await;
    assert_eq!(h.local_engine, None);
    let r = answer(
        h.app_api(Method::GET, "/_ping", Some("24000"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "OK"));
}

/// Engine restarts are simulated with a socket relay we own (removed and recreated), never by
/// restarting the system daemon, which other work on this machine shares.
#[tokio::test]
async fn recovers_when_the_engine_socket_is_recreated() {
    require_docker();
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("docker.sock");
    let relay = SocketRelay::start(&sock);
    let h = Harness::builder()
        .with_docker()
        .env("HP_DOCKER_SOCKET", sock.display().to_string())
        .start()
        .await;
    let ping = || async {
        answer(
            h.app_api(Method::GET, "/_ping", Some("24000"))
                .send()
                .await
                .unwrap(),
        )
        .await
    };
    let exists = || h.wrapper("exists", serde_json::json!({"name": "harptest_nothing"}));
    assert_eq!(ping().await.body, "OK");
    assert_eq!(exists().await.status, 200);

    relay.stop();
    assert_eq!(ping().await.status, 503);
    let down = exists().await;
    assert_eq!(down.status, 503, "{down:?}");
    assert!(down.body.contains("No Docker Engine answers on port 24000"));
    let relayed = h.local_engine.unwrap();
    let r = reqwest::get(format!("http://{relayed}/_ping")).await;
    assert!(r.is_err() || !r.unwrap().status().is_success());

    let _relay = SocketRelay::start(&sock);
    assert_eq!(ping().await.body, "OK");
    assert_eq!(exists().await.status, 200);
    let r = answer(
        reqwest::get(format!("http://{relayed}/_ping"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.body, "OK");
}

/// Debian's `docker-registry` on a free loopback port; the engine allows 127.0.0.1 registries
/// without TLS.
struct LocalRegistry {
    host: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl LocalRegistry {
    fn start() -> LocalRegistry {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        prereq::require_command("docker-registry", "docker-registry");
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("Debian's docker-registry must be installed (.ci/run installs it)");
        let host = format!("127.0.0.1:{port}");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(&host).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "docker-registry did not start on {host}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        LocalRegistry {
            host,
            child,
            _dir: dir,
        }
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
