//! harp's container images against the real Docker Engine, run the way HaRP's documentation
//! runs HaRP: `image/build` makes both images; harp's runs with the Docker socket mounted, a
//! `/certs` volume, a read-only root with tmpfs `/tmp` and `/run/harp`, on a user-defined
//! network where a Nextcloud stub container answers `exapp-meta` under the name `nextcloud`
//! (so harp's static binary resolves container names through Docker's DNS). Through harp's
//! Docker API it deploys an ExApp whose image uses the `harp-exapp-layer` (its start.sh starts
//! `harp tunnel --from-env`, resolving `appapi-harp` the same way), reaches it through the
//! front door over the FRP tunnel, restarts harp and reaches it again without touching the
//! ExApp, and checks that `docker stop` ends harp with status 0 within 10 s.
//!
//! One test does it all, so both images are built once per run. Everything is named
//! `harptest_<random>…` and removed by a drop guard, also when the test fails.

mod common;

use common::docker::*;
use common::*;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const HELLO: &str = "hello from the ExApp over harp tunnel\n";
/// The ExApp's port on harp's side (AppAPI assigns 23000–23999); one harp per test.
const APP_PORT: u16 = 23001;

/// Builds `<prefix>harp:latest` and `<prefix>harp-exapp-layer:latest` with the documented
/// command, and registers them for removal.
fn build_images(cleanup: &Cleanup, prefix: &str) -> (String, String) {
    let harp = format!("{prefix}harp:latest");
    let layer = format!("{prefix}harp-exapp-layer:latest");
    cleanup.image(&harp);
    cleanup.image(&layer);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let t0 = Instant::now();
    let out = Command::new(root.join("image/build"))
        .current_dir(root)
        .env("HARP_IMAGE_PREFIX", prefix)
        .output()
        .expect("run image/build");
    assert!(
        out.status.success(),
        "image/build failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "image/build took {:.0?}: {}",
        t0.elapsed(),
        String::from_utf8_lossy(&out.stdout).trim()
    );
    (harp, layer)
}

/// An ExApp image: the imported busybox test image (httpd serving `/www`), the layer's `/harp`,
/// and start.sh as entrypoint. busybox httpd cannot listen on a unix socket, so the image
/// points the tunnel at its TCP port with `HP_TUNNEL_LOCAL`.
fn build_exapp_image(cleanup: &Cleanup, id: &str, base: &str, layer: &str) -> String {
    let tag = format!("{id}_exapp:latest");
    cleanup.image(&tag);
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("hello"), HELLO).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {layer} AS harp\nFROM {base}\nCOPY --from=harp /harp /harp\nCOPY hello /www/hello\n\
             ENV HP_TUNNEL_LOCAL=127.0.0.1:8080\nENTRYPOINT [\"/harp/start.sh\"]\n\
             CMD [\"/bin/httpd\", \"-f\", \"-p\", \"127.0.0.1:8080\", \"-h\", \"/www\"]\n"
        ),
    )
    .unwrap();
    docker_ok(&["build", "-q", "-t", &tag, ctx.path().to_str().unwrap()]);
    tag
}

fn logs(container: &str) -> String {
    let out = docker(&["logs", "--tail", "40", container]);
    format!(
        "--- {container} ---\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Waits until Docker itself reports the container `healthy` (its HEALTHCHECK runs
/// `/healthcheck.sh` every 10 s).
async fn wait_healthy(container: &str, what: &str) {
    let healthy = wait_until(Duration::from_secs(60), || {
        docker(&["inspect", "-f", "{{.State.Health.Status}}", container])
            .stdout
            .starts_with(b"healthy")
    })
    .await;
    assert!(
        healthy,
        "{what}: harp never became healthy\n{}",
        logs(container)
    );
}

/// harp's front door on the host (`-p 127.0.0.1::8780`; the port may change on restart).
fn front_door(container: &str) -> String {
    let mapped = docker_ok(&["port", container, "8780/tcp"]);
    format!("http://{}", mapped.lines().next().unwrap())
}

async fn wrapper(base: &str, op: &str, body: serde_json::Value) -> Answer {
    let r = reqwest::Client::new()
        .post(format!("{base}/exapps/app_api/docker/exapp/{op}"))
        .header("harp-shared-key", KEY)
        .header("docker-engine-port", "24000")
        .json(&body)
        .send()
        .await
        .expect("harp answers");
    answer(r).await
}

/// Polls `GET /exapps/<app>/hello` through harp until the ExApp's page comes back.
async fn reach_exapp(base: &str, app: &str, deadline: Duration) -> Result<(), String> {
    let client = reqwest::Client::new();
    let until = Instant::now() + deadline;
    let mut last = String::new();
    while Instant::now() < until {
        match client
            .get(format!("{base}/exapps/{app}/hello"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            Ok(r) => {
                let status = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                if status == 200 && body == HELLO {
                    return Ok(());
                }
                last = format!("{status} {body:?}");
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(last)
}

#[tokio::test]
async fn harp_image_runs_like_harp_and_serves_an_exapp_through_the_tunnel_layer() {
    require_docker();
    let cleanup = Cleanup::default();
    let id = unique();
    let (harp_image, layer) = build_images(&cleanup, &format!("{id}_"));
    let base = import_test_image(&cleanup, &format!("{id}_base"));
    let exapp_image = build_exapp_image(&cleanup, &id, &base, &layer);
    // Without HP_SHARED_KEY (exapp_direct, or a non-HaRP daemon) start.sh only execs the app.
    let direct = format!("{id}_direct");
    cleanup.container(&direct);
    let out = docker_ok(&[
        "run",
        "--name",
        &direct,
        &exapp_image,
        "/bin/cat",
        "/www/hello",
    ]);
    assert_eq!(out, HELLO.trim_end());

    let net = format!("{id}_net");
    docker_ok(&["network", "create", &net]);
    cleanup.network(&net);
    let certs = format!("{id}_certs");
    cleanup.volume(&certs);

    // The Nextcloud stub: busybox httpd answering every exapp-meta lookup with the ExApp's
    // metadata (FRP mode: host 127.0.0.1, port APP_PORT, one PUBLIC route).
    let nc = format!("{id}_nc");
    cleanup.container(&nc);
    let meta = json!({
        "exapp_token": "apptoken", "exapp_version": "1.0.0",
        "host": "127.0.0.1", "port": APP_PORT,
        "routes": [{"url": "^/hello", "access_level": 0, "bruteforce_protection": []}],
    });
    docker_ok(&[
        "run", "-d", "--name", &nc, "--network", &net, "--network-alias", "nextcloud",
        "-e", &format!("META={meta}"),
        &base, "/bin/sh", "-c",
        "mkdir -p /www/index.php/apps/app_api/harp && echo \"$META\" > /www/index.php/apps/app_api/harp/exapp-meta && exec /bin/httpd -f -p 8080 -h /www",
    ]);

    // harp as HaRP's docs run HaRP (plus the read-only root its AIO setup uses).
    let harp = format!("{id}_harp");
    cleanup.container(&harp);
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &harp,
        "--network",
        &net,
        "--network-alias",
        "appapi-harp",
        "-e",
        &format!("HP_SHARED_KEY={KEY}"),
        "-e",
        "NC_INSTANCE_URL=http://nextcloud:8080",
        "-e",
        "HP_LOG_LEVEL=info",
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        "-v",
        &format!("{certs}:/certs"),
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--tmpfs",
        "/run/harp",
        "-p",
        "127.0.0.1::8780",
        &harp_image,
    ]);
    wait_healthy(&harp, "first start").await;
    let front = front_door(&harp);

    // AppAPI's deploy sequence (contract §4.7) through harp's Docker API, FRP mode.
    let app = unique();
    cleanup.exapp(&app);
    let mut body = appapi_create_body(&app, &exapp_image);
    body["network_mode"] = json!(net);
    body["start_container"] = json!(false);
    body["environment_variables"] = json!([
        format!("APP_ID={app}"),
        format!("APP_PORT={APP_PORT}"),
        "APP_HOST=127.0.0.1",
        format!("HP_SHARED_KEY={KEY}"),
        "HP_FRP_ADDRESS=appapi-harp",
        "HP_FRP_PORT=8782",
    ]);
    let r = wrapper(&front, "create", body).await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = wrapper(
        &front,
        "install_certificates",
        json!({"name": app, "system_certs_bundle": null, "install_frp_certs": true}),
    )
    .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        wrapper(&front, "start", json!({"name": app})).await.status,
        204
    );
    let exapp = format!("nc_app_{app}");

    // Through the front door, harp's metadata lookup (Nextcloud by container name) and the
    // ExApp's mutual-TLS tunnel.
    if let Err(last) = reach_exapp(&front, &app, Duration::from_secs(60)).await {
        panic!(
            "ExApp not reachable ({last})\n{}\n{}",
            logs(&harp),
            logs(&exapp)
        );
    }

    // A restarted harp keeps its certificates (the /certs volume); the ExApp's tunnel logs in
    // again by itself.
    let started = container_inspect(&exapp).unwrap()["State"]["StartedAt"].clone();
    docker_ok(&["restart", "-t", "10", &harp]);
    wait_healthy(&harp, "after restart").await;
    let front = front_door(&harp);
    if let Err(last) = reach_exapp(&front, &app, Duration::from_secs(60)).await {
        panic!(
            "ExApp not reachable after harp's restart ({last})\n{}\n{}",
            logs(&harp),
            logs(&exapp)
        );
    }
    assert_eq!(
        container_inspect(&exapp).unwrap()["State"]["StartedAt"],
        started,
        "the ExApp was restarted"
    );

    // PID 1 handles SIGTERM: stopped well before Docker's 10 s SIGKILL, exit status 0.
    let t0 = Instant::now();
    docker_ok(&["stop", "-t", "10", &harp]);
    let took = t0.elapsed();
    let state = container_inspect(&harp).unwrap()["State"].clone();
    assert_eq!(state["ExitCode"], 0, "{state}");
    assert!(took < Duration::from_secs(9), "docker stop took {took:?}");
}
