//! `install_certificates` against real containers (contract §4.6; checklist 116–119).

mod common;

use common::docker::*;
use common::*;
use serde_json::json;

const BUNDLE: &str = "\
-----BEGIN CERTIFICATE-----
Zmlyc3QgdGVzdCBjZXJ0aWZpY2F0ZQ==
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
c2Vjb25kIHRlc3QgY2VydGlmaWNhdGU=
-----END CERTIFICATE-----
";

const CA_DIR: &str = "/usr/local/share/ca-certificates";

fn running(container: &str) -> bool {
    container_inspect(container).unwrap()["State"]["Running"] == true
}

#[tokio::test]
async fn item116_stopped_debian_container_gets_all_certificates_and_stays_stopped() {
    let CreatedExApp {
        cleanup: _cleanup,
        name,
        container,
        h,
        ..
    } = create_test_exapp(Harness::builder().frp_placeholder_certs()).await;
    let r = h
        .wrapper(
            "install_certificates",
            json!({"name": name, "system_certs_bundle": BUNDLE, "install_frp_certs": true}),
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert!(!running(&container), "container must be stopped again");

    let first = read_in_container(&container, &format!("{CA_DIR}/custom_ca_cert_0.crt")).unwrap();
    assert!(
        first.contains("Zmlyc3Qg") && !first.contains("c2Vjb25k"),
        "{first}"
    );
    let second = read_in_container(&container, &format!("{CA_DIR}/custom_ca_cert_1.crt")).unwrap();
    assert!(second.contains("c2Vjb25k"), "{second}");
    assert!(read_in_container(&container, &format!("{CA_DIR}/custom_ca_cert_2.crt")).is_none());
    // The stand-in update-ca-certificates leaves what it saw in /tmp.
    let marker = read_in_container(&container, "/tmp/update-ca-ran").expect("update ran");
    assert!(marker.contains("Zmlyc3Qg") && marker.contains("c2Vjb25k"));

    assert_eq!(
        read_in_container(&container, "/certs/frp/ca.crt").unwrap(),
        FRP_CA
    );
    assert_eq!(
        read_in_container(&container, "/certs/frp/client.crt").unwrap(),
        FRP_CLIENT_CRT
    );
    assert_eq!(
        read_in_container(&container, "/certs/frp/client.key").unwrap(),
        FRP_CLIENT_KEY
    );
}

#[tokio::test]
async fn item117_running_container_stays_running() {
    let CreatedExApp {
        cleanup: _cleanup,
        name,
        container,
        h,
        ..
    } = create_test_exapp(Harness::builder().frp_placeholder_certs()).await;
    assert_eq!(h.wrapper("start", json!({"name": name})).await.status, 204);
    let r = h
        .wrapper(
            "install_certificates",
            json!({"name": name, "system_certs_bundle": null}),
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert!(running(&container));
    // install_frp_certs defaults to true.
    assert_eq!(
        read_in_container(&container, "/certs/frp/ca.crt").unwrap(),
        FRP_CA
    );
    assert!(read_in_container(&container, "/tmp/update-ca-ran").is_none());
}

#[tokio::test]
async fn item118_no_frp_certs_when_not_asked() {
    let CreatedExApp {
        cleanup: _cleanup,
        name,
        container,
        h,
        ..
    } = create_test_exapp(Harness::builder().frp_placeholder_certs()).await;
    let r = h
        .wrapper(
            "install_certificates",
            json!({"name": name, "system_certs_bundle": BUNDLE, "install_frp_certs": false}),
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert!(read_in_container(&container, "/certs/frp").is_none());
    assert!(read_in_container(&container, &format!("{CA_DIR}/custom_ca_cert_0.crt")).is_some());
}

#[tokio::test]
async fn item119_missing_container_is_404() {
    require_docker();
    let h = Harness::builder().with_docker().start().await;
    let r = h
        .wrapper("install_certificates", json!({"name": unique()}))
        .await;
    assert_eq!(r.status, 404, "{r:?}");
}

#[tokio::test]
async fn missing_frp_certificates_are_skipped() {
    let CreatedExApp {
        cleanup: _cleanup,
        name,
        container,
        h,
        ..
    } = create_test_exapp(Harness::builder()).await;
    let r = h
        .wrapper("install_certificates", json!({"name": name}))
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert!(read_in_container(&container, "/certs/frp").is_none());
}

/// The §4.6 improvement: a non-root image that cannot write the system CA directory still gets
/// the FRP certificates (the image's `/certs` belongs to uid 1000).
#[tokio::test]
async fn frp_certs_installed_even_when_system_certs_fail() {
    require_docker();
    let cleanup = Cleanup::default();
    let name = unique();
    let image = import_test_image(&cleanup, &name);
    let container = format!("nc_app_{name}");
    cleanup.container(&container);
    docker_ok(&["create", "--name", &container, "--user", "1000", &image]);
    let h = Harness::builder()
        .with_docker()
        .frp_placeholder_certs()
        .start()
        .await;
    let r = h
        .wrapper(
            "install_certificates",
            json!({"name": name, "system_certs_bundle": BUNDLE}),
        )
        .await;
    assert_eq!(r.status, 500, "{r:?}");
    assert!(r.body.contains("mkdir"), "{r:?}");
    assert_eq!(
        read_in_container(&container, "/certs/frp/client.key").unwrap(),
        FRP_CLIENT_KEY
    );
    assert!(!running(&container), "stopped again after a failure too");
}
