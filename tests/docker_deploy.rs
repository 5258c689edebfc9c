//! A whole AppAPI deploy and uninstall (contract §4.7) through harp against the real engine,
//! ending in a signed heartbeat that travels through harp to the container.

mod common;

use common::docker::*;
use common::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn appapi_deploy_sequence_heartbeat_and_uninstall() {
    require_docker();
    let cleanup = Cleanup::default();
    let name = unique();
    let image = import_test_image(&cleanup, &name);
    cleanup.exapp(&name);
    let container = format!("nc_app_{name}");
    let volume = format!("nc_app_{name}_data");
    let h = Harness::builder()
        .with_docker()
        .frp_placeholder_certs()
        .start()
        .await;

    // Image existence check through the pass-through (the pull step needs a registry; see
    // item47 in docker_passthrough.rs).
    let r = h
        .app_api(Method::GET, &format!("/images/{image}/json"), Some("24000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = h.wrapper("exists", json!({"name": name})).await;
    assert_eq!(r.json(), json!({"exists": false}));
    let r = h.wrapper("create", appapi_create_body(&name, &image)).await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = h
        .wrapper(
            "install_certificates",
            json!({"name": name, "system_certs_bundle": null, "install_frp_certs": true}),
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    let r = h.wrapper("start", json!({"name": name})).await;
    assert_eq!(r.status, 204, "deploy requires 204 from start: {r:?}");
    let r = h.wrapper("wait_for_start", json!({"name": name})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["started"], true, "{r:?}");

    // AppAPI pushes the ExApp's address; the heartbeat then goes through harp to the container.
    let ip = container_inspect(&container).unwrap()["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!ip.is_empty(), "container has no bridge address");
    let r = h
        .app_api(Method::POST, &format!("/exapp_storage/{name}"), None)
        .json(&json!({
            "exapp_token": "secret-token", "exapp_version": "1.0.0",
            "host": ip, "port": 8080, "routes": [],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let heartbeat = client()
        .get(h.url(&format!("/exapps/{name}/heartbeat")))
        .header("ex-app-version", "1.0.0")
        .header("ex-app-id", name.as_str())
        .header("ex-app-host", "127.0.0.1")
        .header("ex-app-port", "8080")
        .header("authorization-app-api", "YWRtaW46c2VjcmV0")
        .header("harp-shared-key", KEY)
        .send()
        .await
        .unwrap();
    let r = answer(heartbeat).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, HEARTBEAT);

    // Disable, then uninstall with data.
    assert_eq!(h.wrapper("stop", json!({"name": name})).await.status, 204);
    let r = h.wrapper("exists", json!({"name": name})).await;
    assert_eq!(r.json(), json!({"exists": true, "image_ref": image}));
    let r = h
        .wrapper("remove", json!({"name": name, "remove_data": true}))
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert!(container_inspect(&container).is_none());
    assert!(inspect("volume", &volume).is_none());
}
