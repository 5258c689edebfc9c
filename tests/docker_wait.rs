//! `wait_for_start` against real container states (contract §4.6; checklist 109–113).

mod common;

use common::docker::*;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn item109_running_without_health_check_starts_at_once() {
    let CreatedExApp {
        cleanup: _cleanup,
        name,
        h,
        ..
    } = create_test_exapp(Harness::builder()).await;
    assert_eq!(h.wrapper("start", json!({"name": name})).await.status, 204);
    let t0 = Instant::now();
    let r = h.wrapper("wait_for_start", json!({"name": name})).await;
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"started": true, "status": "running", "health": null})
    );
}

#[tokio::test]
async fn item110_unhealthy_running_container_counts_as_started() {
    require_docker();
    let cleanup = Cleanup::default();
    let name = unique();
    let image = import_test_image(&cleanup, &name);
    let container = format!("nc_app_{name}");
    cleanup.container(&container);
    docker_ok(&[
        "create",
        "--name",
        &container,
        "--health-cmd",
        "exit 1",
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
        &image,
    ]);
    let h = Harness::builder().with_docker().start().await;
    assert_eq!(h.wrapper("start", json!({"name": name})).await.status, 204);
    let r = h.wrapper("wait_for_start", json!({"name": name})).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"started": true, "status": "running", "health": "unhealthy", "reason": "unhealthy"})
    );
}

#[tokio::test]
async fn healthy_container_reports_health() {
    require_docker();
    let cleanup = Cleanup::default();
    let name = unique();
    let image = import_test_image(&cleanup, &name);
    let container = format!("nc_app_{name}");
    cleanup.container(&container);
    docker_ok(&[
        "create",
        "--name",
        &container,
        "--health-cmd",
        "true",
        "--health-interval",
        "1s",
        &image,
    ]);
    let h = Harness::builder().with_docker().start().await;
    assert_eq!(h.wrapper("start", json!({"name": name})).await.status, 204);
    let r = h.wrapper("wait_for_start", json!({"name": name})).await;
    assert_eq!(
        r.json(),
        json!({"started": true, "status": "running", "health": "healthy"})
    );
}

#[tokio::test]
async fn item111_exited_container_is_not_recoverable() {
    require_docker();
    let cleanup = Cleanup::default();
    let name = unique();
    let image = import_test_image(&cleanup, &name);
    let container = format!("nc_app_{name}");
    cleanup.container(&container);
    docker_ok(&["create", "--name", &container, &image, "/bin/true"]);
    let h = Harness::builder().with_docker().start().await;
    assert_eq!(h.wrapper("start", json!({"name": name})).await.status, 204);
    assert!(
        wait_until(Duration::from_secs(10), || {
            container_inspect(&container).unwrap()["State"]["Status"] == "exited"
        })
        .await
    );
    let r = h.wrapper("wait_for_start", json!({"name": name})).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"started": false, "status": "exited", "health": null, "reason": "non-recoverable state: exited"})
    );
}

#[tokio::test]
async fn item112_missing_container_is_not_found() {
    require_docker();
    let h = Harness::builder().with_docker().start().await;
    let r = h.wrapper("wait_for_start", json!({"name": unique()})).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"started": false, "status": "not_found", "reason": "container not found"})
    );
}

/// Runs the full production poll budget (~90 s): the point is that it ends on its own in time.
#[tokio::test]
async fn item113_stuck_in_starting_gives_up_before_110_seconds() {
    require_docker();
    let cleanup = Cleanup::default();
    let name = unique();
    let image = import_test_image(&cleanup, &name);
    let container = format!("nc_app_{name}");
    cleanup.container(&container);
    docker_ok(&[
        "create",
        "--name",
        &container,
        "--health-cmd",
        "true",
        "--health-interval",
        "600s",
        "--health-start-period",
        "600s",
        &image,
    ]);
    let h = Harness::builder().with_docker().start().await;
    assert_eq!(h.wrapper("start", json!({"name": name})).await.status, 204);
    let t0 = Instant::now();
    let r = h.wrapper("wait_for_start", json!({"name": name})).await;
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(110), "took {took:?}");
    assert!(took > Duration::from_secs(80), "gave up early: {took:?}");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["started"], false);
    assert_eq!(v["status"], "running");
    assert_eq!(v["health"], "starting");
    assert!(
        v["reason"] == "timeout after max tries" || v["reason"] == "overall timeout",
        "{v}"
    );
}
