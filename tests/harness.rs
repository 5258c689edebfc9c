//! The test harness itself (`tests/common`): both ways of starting harp give a working harp
//! from the same settings, a missing prerequisite fails with one actionable line, and
//! `wait_until` polls to its deadline and no further.

mod common;

use common::process::{info_request, timed_status};
use common::*;
use std::time::Duration;

/// The signed `GET /exapps/app_api/info`: answered by harp alone, no Nextcloud needed.
async fn info_status(h: &TestHarp) -> u16 {
    client()
        .get(h.url("/exapps/app_api/info"))
        .header("harp-shared-key", KEY)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn in_process_harp_serves_and_shuts_down_cleanly() {
    let h = Harness::builder().start().await;
    assert_eq!(info_status(&h).await, 200);
    // The harness's directories are where harp was told to keep its files.
    assert!(h.dir.join("certs").is_dir());
    h.shutdown().await;
}

#[tokio::test]
async fn child_process_harp_serves_with_the_same_settings() {
    let mut harp = Harness::builder().spawn_process();
    let (status, _) = timed_status(harp.addr, &info_request()).await;
    assert_eq!(status, 200);
    harp.assert_alive();
}

#[tokio::test]
async fn env_overrides_a_default_setting() {
    // The default key is KEY; a test that sets its own must get exactly that.
    let h = Harness::builder()
        .env("HP_SHARED_KEY", "another-key")
        .start()
        .await;
    assert_eq!(info_status(&h).await, 401);
    let r = client()
        .get(h.url("/exapps/app_api/info"))
        .header("harp-shared-key", "another-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn missing_prerequisite_is_one_line_naming_the_fix() {
    let caught = std::panic::catch_unwind(|| {
        prereq::require_command("harp-test-no-such-tool", "harp-test-package")
    })
    .expect_err("a missing tool must fail the test");
    let line = caught
        .downcast_ref::<String>()
        .expect("the failure carries its message");
    assert!(!line.contains('\n'), "{line:?}");
    assert!(
        line.contains("`harp-test-no-such-tool` is not on PATH"),
        "{line}"
    );
    assert!(line.contains("tests/setup"), "{line}");
    assert!(line.contains("apt-get install harp-test-package"), "{line}");
}

#[test]
fn present_prerequisite_passes() {
    assert!(prereq::on_path("sh"));
    prereq::require_command("sh", "dash");
}

#[tokio::test(start_paused = true)]
async fn wait_until_gives_up_at_its_deadline() {
    let started = tokio::time::Instant::now();
    assert!(!wait_until(Duration::from_secs(10), || false).await);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
        "{waited:?}"
    );
    let started = tokio::time::Instant::now();
    assert!(wait_until(Duration::from_secs(10), || true).await);
    assert_eq!(started.elapsed(), Duration::ZERO);
}
