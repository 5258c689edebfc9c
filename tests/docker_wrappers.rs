//! `/docker/exapp/*` wrappers against the real engine: naming, create, start/stop, remove,
//! image_remove and ownership labels (contract §4.5–§4.6; checklist 98–108, 114–115).

mod common;

use common::docker::*;
use common::*;
use serde_json::json;

#[tokio::test]
async fn item98_engine_port_header_required_and_in_range() {
    require_docker();
    let h = Harness::builder().with_docker().start().await;
    let body = json!({"name": "x"}).to_string();
    let r = h.wrapper_on("start", None, body.clone()).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body, "Missing 'docker-engine-port' header.");
    let r = h.wrapper_on("start", Some("70000"), body.clone()).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        "Invalid 'docker-engine-port' header value: 70000 (allowed: 24000-24099)"
    );
    // Outside the port plan: refused before anything is dialled, like the pass-through.
    for port in ["8780", "22", "23000", "24100"] {
        let r = h.wrapper_on("start", Some(port), body.clone()).await;
        assert_eq!(r.status, 400, "{port}: {r:?}");
        assert!(r.body.contains("allowed: 24000-24099"), "{r:?}");
    }
    let r = h.wrapper_on("start", Some("abc"), body).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn bad_bodies_and_names_are_400_with_a_message() {
    require_docker();
    let h = Harness::builder().with_docker().start().await;
    let r = h
        .wrapper_on("exists", Some("24000"), "{not json".into())
        .await;
    assert_eq!((r.status, r.body.as_str()), (400, "Invalid JSON body"));
    let r = h.wrapper("exists", json!({"instance_id": ""})).await;
    assert_eq!(r.status, 400);
    assert!(r.body.starts_with("Payload validation error"), "{r:?}");
    let long = "x".repeat(64);
    for bad in [
        "../etc",
        "a b",
        "x/y",
        "a?b",
        "",
        "-a",
        ".a",
        "_a",
        long.as_str(),
    ] {
        for op in [
            "exists",
            "start",
            "stop",
            "remove",
            "wait_for_start",
            "install_certificates",
        ] {
            let r = h.wrapper(op, json!({"name": bad})).await;
            assert_eq!(r.status, 400, "{op} {bad:?}: {r:?}");
            assert!(r.body.contains("'name'"), "{op}: {r:?}");
        }
    }
    let r = h
        .wrapper("remove", json!({"name": "a", "instance_id": "-i"}))
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("'instance_id'"), "{r:?}");
    let r = h.wrapper("create", json!({"name": "a"})).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("image_id"), "{r:?}");
    let r = h.wrapper("image_remove", json!({"image_ref": ""})).await;
    assert_eq!(r.status, 400);
    let r = h.wrapper("nonsense", json!({"name": "a"})).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn item99_exists_reports_image_ref() {
    require_docker();
    let cleanup = Cleanup::default();
    let name = unique();
    let image = import_test_image(&cleanup, &name);
    cleanup.container(&format!("nc_app_{name}"));
    docker_ok(&["create", "--name", &format!("nc_app_{name}"), &image]);
    let h = Harness::builder().with_docker().start().await;
    let r = h.wrapper("exists", json!({"name": name})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"exists": true, "image_ref": image}));
    let r = h.wrapper("exists", json!({"name": unique()})).await;
    assert_eq!(r.json(), json!({"exists": false}));
}

#[tokio::test]
async fn item100_create_with_appapi_payload() {
    require_docker();
    let cleanup = Cleanup::default();
    let name = unique();
    let image = import_test_image(&cleanup, &name);
    cleanup.exapp(&name);
    let h = Harness::builder().with_docker().start().await;
    let r = h.wrapper("create", appapi_create_body(&name, &image)).await;
    assert_eq!(r.status, 201, "{r:?}");
    let v = r.json();
    assert_eq!(v["name"], format!("nc_app_{name}"));
    let c = container_inspect(&format!("nc_app_{name}")).unwrap();
    assert_eq!(v["id"], c["Id"]);
    assert_eq!(c["Config"]["Hostname"], name.as_str());
    assert_eq!(c["Config"]["Image"], image.as_str());
    assert_eq!(c["HostConfig"]["RestartPolicy"]["Name"], "unless-stopped");
    assert_eq!(c["HostConfig"]["NetworkMode"], "bridge");
    assert_eq!(c["HostConfig"]["Memory"], 0);
    let env: Vec<&str> = c["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert!(env.contains(&format!("APP_ID={name}").as_str()), "{env:?}");
    assert_eq!(c["State"]["Status"], "created");
}

#[tokio::test]
async fn item101_create_makes_and_mounts_the_data_volume() {
    require_docker();
    let cleanup = Cleanup::default();
    let name = unique();
    let image = import_test_image(&cleanup, &name);
    cleanup.exapp(&name);
    let volume = format!("nc_app_{name}_data");
    assert!(inspect("volume", &volume).is_none());
    let h = Harness::builder().with_docker().start().await;
    let r = h.wrapper("create", appapi_create_body(&name, &image)).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert!(inspect("volume", &volume).is_some());
    let c = container_inspect(&format!("nc_app_{name}")).unwrap();
    let mount = &c["Mounts"][0];
    assert_eq!(mount["Type"], "volume");
    assert_eq!(mount["Name"], volume.as_str());
    assert_eq!(mount["Destination"], format!("/{volume}"));
    assert_eq!(mount["RW"], true);
}

#[tokio::test]
async fn item102_custom_network_gets_the_app_alias_bridge_and_host_do_not() {
    require_docker();
    let cleanup = Cleanup::default();
    let name = unique();
    let image = import_test_image(&cleanup, &name);
    let net = format!("{name}_net");
    cleanup.network(&net);
    docker_ok(&["network", "create", &net]);
    let h = Harness::builder().with_docker().start().await;
    for (suffix, mode) in [("c", net.as_str()), ("b", "bridge"), ("h", "host")] {
        let app = format!("{name}{suffix}");
        cleanup.exapp(&app);
        let mut body = appapi_create_body(&app, &image);
        body["network_mode"] = json!(mode);
        let r = h.wrapper("create", body).await;
        assert_eq!(r.status, 201, "{mode}: {r:?}");
        let c = container_inspect(&format!("nc_app_{app}")).unwrap();
        assert_eq!(c["HostConfig"]["NetworkMode"], mode);
        let aliases = &c["NetworkSettings"]["Networks"][mode]["Aliases"];
        if mode == net {
            let aliases: Vec<&str> = aliases
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|a| a.as_str())
                .collect();
            assert!(aliases.contains(&app.as_str()), "{aliases:?}");
        } else {
            assert!(
                aliases.is_null() || aliases.as_array().is_some_and(|a| a.is_empty()),
                "{mode}: {aliases}"
            );
        }
    }
}

#[tokio::test]
async fn item103_compute_devices() {
    require_docker();
    let cleanup = Cleanup::default();
    let name = unique();
    let image = import_test_image(&cleanup, &name);
    let h = Harness::builder().with_docker().start().await;

    let cuda = format!("{name}cuda");
    cleanup.exapp(&cuda);
    let mut body = appapi_create_body(&cuda, &image);
    body["compute_device"] = json!("cuda");
    let r = h.wrapper("create", body).await;
    assert_eq!(r.status, 201, "{r:?}");
    let c = container_inspect(&format!("nc_app_{cuda}")).unwrap();
    let req = &c["HostConfig"]["DeviceRequests"][0];
    assert_eq!(req["Driver"], "nvidia");
    assert_eq!(req["Count"], -1);
    assert_eq!(req["Capabilities"], json!([["compute", "utility"]]));

    let rocm = format!("{name}rocm");
    cleanup.exapp(&rocm);
    let mut body = appapi_create_body(&rocm, &image);
    body["compute_device"] = json!("rocm");
    let r = h.wrapper("create", body).await;
    assert_eq!(r.status, 201, "{r:?}");
    let c = container_inspect(&format!("nc_app_{rocm}")).unwrap();
    let devices = c["HostConfig"]["Devices"].as_array().unwrap().clone();
    let paths: Vec<(&str, &str, &str)> = devices
        .iter()
        .map(|d| {
            (
                d["PathOnHost"].as_str().unwrap(),
                d["PathInContainer"].as_str().unwrap(),
                d["CgroupPermissions"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        paths,
        [
            ("/dev/kfd", "/dev/kfd", "rwm"),
            ("/dev/dri", "/dev/dri", "rwm")
        ]
    );

    let tpu = format!("{name}tpu");
    let mut body = appapi_create_body(&tpu, &image);
    body["compute_device"] = json!("tpu");
    let r = h.wrapper("create", body).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("compute_device"), "{r:?}");
    assert!(container_inspect(&format!("nc_app_{tpu}")).is_none());
}

#[tokio::test]
async fn item104_read_only_bind_mount_and_resource_limits() {
    require_docker();
    let cleanup = Cleanup::default();
    let name = unique();
    let image = import_test_image(&cleanup, &name);
    cleanup.exapp(&name);
    let src = tempfile::tempdir().unwrap();
    let h = Harness::builder().with_docker().start().await;
    let mut body = appapi_create_body(&name, &image);
    body["mount_points"] = json!([
        {"source": src.path(), "target": "/ro", "mode": "ro"},
        {"source": src.path(), "target": "/rw"},
    ]);
    body["resource_limits"] = json!({"memory": 268435456, "nanoCPUs": 500000000});
    let r = h.wrapper("create", body).await;
    assert_eq!(r.status, 201, "{r:?}");
    let c = container_inspect(&format!("nc_app_{name}")).unwrap();
    let mounts = c["Mounts"].as_array().unwrap();
    let find = |dest: &str| {
        mounts
            .iter()
            .find(|m| m["Destination"] == dest)
            .unwrap_or_else(|| panic!("no mount at {dest}: {mounts:?}"))
    };
    assert_eq!(find("/ro")["Type"], "bind");
    assert_eq!(find("/ro")["RW"], false);
    assert_eq!(find("/rw")["RW"], true);
    assert_eq!(c["HostConfig"]["Memory"], 268435456);
    assert_eq!(c["HostConfig"]["NanoCpus"], 500000000);
}

#[tokio::test]
async fn item105_create_twice_is_a_conflict() {
    let CreatedExApp {
        cleanup: _cleanup,
        name,
        image,
        h,
        ..
    } = create_test_exapp(Harness::builder()).await;
    let r = h.wrapper("create", appapi_create_body(&name, &image)).await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.body,
        format!("Container with name 'nc_app_{name}' already exists.")
    );
}

#[tokio::test]
async fn item106_role_suffix_names_container_not_volume() {
    require_docker();
    let cleanup = Cleanup::default();
    let name = unique();
    let image = import_test_image(&cleanup, &name);
    cleanup.exapp(&name);
    cleanup.container(&format!("nc_app_{name}_rp"));
    let h = Harness::builder().with_docker().start().await;
    let mut body = appapi_create_body(&name, &image);
    body["role_suffix"] = json!("rp");
    let r = h.wrapper("create", body).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.json()["name"], format!("nc_app_{name}_rp"));
    let c = container_inspect(&format!("nc_app_{name}_rp")).unwrap();
    assert_eq!(c["Mounts"][0]["Name"], format!("nc_app_{name}_data"));
    assert_eq!(
        c["Mounts"][0]["Destination"],
        format!("/nc_app_{name}_data")
    );
    assert!(container_inspect(&format!("nc_app_{name}")).is_none());
}

#[tokio::test]
async fn instance_id_names_and_ownership_labels() {
    require_docker();
    let cleanup = Cleanup::default();
    let name = unique();
    let image = import_test_image(&cleanup, &name);
    let container = format!("nc_app_inst1_{name}");
    let volume = format!("nc_app_inst1_{name}_data");
    cleanup.volume(&volume);
    cleanup.container(&container);
    let h = Harness::builder().with_docker().start().await;
    let mut body = appapi_create_body(&name, &image);
    body["instance_id"] = json!("inst1");
    let r = h.wrapper("create", body).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.json()["name"], container.as_str());
    let c = container_inspect(&container).unwrap();
    assert_eq!(
        c["Config"]["Labels"]["org.nextcloud.harp.managed-by"],
        "harp"
    );
    assert_eq!(
        c["Config"]["Labels"]["org.nextcloud.harp.instance-id"],
        "inst1"
    );
    assert_eq!(c["Mounts"][0]["Destination"], format!("/{volume}"));
    let v = inspect("volume", &volume).unwrap();
    assert_eq!(v["Labels"]["org.nextcloud.harp.managed-by"], "harp");
    assert_eq!(v["Labels"]["org.nextcloud.harp.instance-id"], "inst1");
    let r = h
        .wrapper(
            "remove",
            json!({"name": name, "instance_id": "inst1", "remove_data": true}),
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert!(container_inspect(&container).is_none());
    assert!(inspect("volume", &volume).is_none());
}

#[tokio::test]
async fn remove_refuses_a_container_of_another_instance() {
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
        "--label",
        "org.nextcloud.harp.managed-by=harp",
        "--label",
        "org.nextcloud.harp.instance-id=other-cloud",
        &image,
    ]);
    let h = Harness::builder().with_docker().start().await;
    let r = h.wrapper("remove", json!({"name": name})).await;
    assert_eq!(r.status, 409, "{r:?}");
    assert!(r.body.contains("other-cloud"), "{r:?}");
    assert!(container_inspect(&container).is_some());
    // A container without harp's labels (made by the reference HaRP) stays removable.
    let plain = format!("{name}p");
    cleanup.container(&format!("nc_app_{plain}"));
    docker_ok(&["create", "--name", &format!("nc_app_{plain}"), &image]);
    let r = h.wrapper("remove", json!({"name": plain})).await;
    assert_eq!(r.status, 204, "{r:?}");
    assert!(container_inspect(&format!("nc_app_{plain}")).is_none());
}

#[tokio::test]
async fn item107_start_twice_reports_already_started() {
    let CreatedExApp {
        cleanup: _cleanup,
        name,
        h,
        ..
    } = create_test_exapp(Harness::builder()).await;
    let r = h.wrapper("start", json!({"name": name})).await;
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    assert_eq!(
        container_inspect(&format!("nc_app_{name}")).unwrap()["State"]["Running"],
        true
    );
    let r = h.wrapper("start", json!({"name": name})).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "Container already started")
    );
    let r = h.wrapper("start", json!({"name": unique()})).await;
    assert_eq!(r.status, 404, "{r:?}");
}

#[tokio::test]
async fn item108_stop_twice_reports_already_stopped() {
    let CreatedExApp {
        cleanup: _cleanup,
        name,
        h,
        ..
    } = create_test_exapp(Harness::builder()).await;
    assert_eq!(h.wrapper("start", json!({"name": name})).await.status, 204);
    let r = h.wrapper("stop", json!({"name": name})).await;
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    assert_eq!(
        container_inspect(&format!("nc_app_{name}")).unwrap()["State"]["Running"],
        false
    );
    let r = h.wrapper("stop", json!({"name": name})).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "Container already stopped")
    );
    let r = h.wrapper("stop", json!({"name": unique()})).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn item114_remove_missing_data_and_volume_in_use() {
    require_docker();
    let cleanup = Cleanup::default();
    let name = unique();
    let image = import_test_image(&cleanup, &name);
    cleanup.exapp(&name);
    cleanup.container(&format!("nc_app_{name}_rp"));
    let volume = format!("nc_app_{name}_data");
    let h = Harness::builder().with_docker().start().await;

    let r = h
        .wrapper("remove", json!({"name": unique(), "remove_data": true}))
        .await;
    assert_eq!(r.status, 204, "{r:?}");

    // Two roles share one volume: removing one role's data while the other runs is refused.
    assert_eq!(
        h.wrapper("create", appapi_create_body(&name, &image))
            .await
            .status,
        201
    );
    let mut rp = appapi_create_body(&name, &image);
    rp["role_suffix"] = json!("rp");
    assert_eq!(h.wrapper("create", rp).await.status, 201);
    let r = h
        .wrapper("remove", json!({"name": name, "remove_data": true}))
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(
        r.body,
        format!("Volume '{volume}' is in use and could not be removed.")
    );
    assert!(container_inspect(&format!("nc_app_{name}")).is_none());

    let r = h
        .wrapper(
            "remove",
            json!({"name": name, "role_suffix": "rp", "remove_data": false}),
        )
        .await;
    assert_eq!(r.status, 204);
    assert!(
        inspect("volume", &volume).is_some(),
        "remove_data false keeps the volume"
    );
    let r = h
        .wrapper("remove", json!({"name": name, "remove_data": true}))
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert!(inspect("volume", &volume).is_none());
}

#[tokio::test]
async fn item115_image_remove_outcomes() {
    require_docker();
    let cleanup = Cleanup::default();
    let name = unique();
    let h = Harness::builder().with_docker().start().await;

    let r = h
        .wrapper(
            "image_remove",
            json!({"image_ref": format!("{name}-missing:1")}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"deleted": true, "bytes_freed": 0, "reason": "not_found"})
    );

    let removable = import_test_image(&cleanup, &format!("{name}-free"));
    let size = inspect("image", &removable).unwrap()["Size"]
        .as_i64()
        .unwrap();
    assert!(size > 0);
    let r = h
        .wrapper("image_remove", json!({"image_ref": removable}))
        .await;
    assert_eq!(r.json(), json!({"deleted": true, "bytes_freed": size}));
    assert!(inspect("image", &removable).is_none());

    let tagged = import_test_image(&cleanup, &format!("{name}-tags"));
    let second = format!("{name}-tags:second");
    cleanup.image(&second);
    docker_ok(&["tag", &tagged, &second]);
    let r = h
        .wrapper("image_remove", json!({"image_ref": second}))
        .await;
    assert_eq!(r.json(), json!({"deleted": true, "bytes_freed": 0}));
    assert!(inspect("image", &tagged).is_some());

    let used = import_test_image(&cleanup, &format!("{name}-used"));
    let container = format!("nc_app_{name}");
    cleanup.container(&container);
    docker_ok(&["create", "--name", &container, &used]);
    let r = h.wrapper("image_remove", json!({"image_ref": used})).await;
    assert_eq!(r.json(), json!({"deleted": false, "reason": "in_use"}));
    assert!(inspect("image", &used).is_some());
}

#[tokio::test]
async fn remove_data_refuses_a_volume_of_another_instance() {
    require_docker();
    let cleanup = Cleanup::default();
    let name = unique();
    let volume = format!("nc_app_{name}_data");
    cleanup.volume(&volume);
    docker_ok(&[
        "volume",
        "create",
        "--label",
        "org.nextcloud.harp.managed-by=harp",
        "--label",
        "org.nextcloud.harp.instance-id=other-cloud",
        &volume,
    ]);
    let h = Harness::builder().with_docker().start().await;
    let r = h
        .wrapper("remove", json!({"name": name, "remove_data": true}))
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    assert!(
        r.body.contains("other-cloud") && r.body.contains(&volume),
        "{r:?}"
    );
    assert!(inspect("volume", &volume).is_some());
}

/// Payloads the reference's own tests refuse: each is a `400` naming the field, and the engine
/// never hears of it — not even the data volume, which is `create`'s first engine call, exists
/// afterwards. The image is real, so a payload that slipped through would make a container.
#[tokio::test]
async fn hostile_create_payloads_are_400_and_reach_no_engine() {
    require_docker();
    let cleanup = Cleanup::default();
    let base = unique();
    let image = import_test_image(&cleanup, &base);
    let victim = format!("nc_app_{base}v");
    cleanup.container(&victim);
    docker_ok(&["create", "--name", &victim, &image]);
    let h = Harness::builder().with_docker().start().await;
    let mount = |source: &str, mode: serde_json::Value| json!([{"source": source, "target": "/models", "mode": mode}]);
    let cases = [
        (
            "network_mode",
            json!(format!("container:{victim}")),
            "network_mode",
        ),
        ("network_mode", json!("ns:/proc/1/ns/net"), "network_mode"),
        ("network_mode", json!("bridge net"), "network_mode"),
        (
            "mount_points",
            mount("/mnt/../etc", json!("ro")),
            "mount_points[0].source",
        ),
        (
            "mount_points",
            mount("models", json!("ro")),
            "mount_points[0].source",
        ),
        (
            "mount_points",
            mount("/mnt/a:b", json!("ro")),
            "mount_points[0].source",
        ),
        (
            "mount_points",
            mount("/tmp", json!(null)),
            "mount_points[0].mode",
        ),
        (
            "mount_points",
            mount("/var/run/docker.sock", json!("rw")),
            "mount_points[0].source",
        ),
        (
            "mount_points",
            mount("/", json!("ro")),
            "mount_points[0].source",
        ),
        ("restart_policy", json!("on-failure:3"), "restart_policy"),
        ("restart_policy", json!("Always"), "restart_policy"),
        ("restart_policy", json!("sometimes"), "restart_policy"),
        ("restart_policy", json!(null), "restart_policy"),
        (
            "resource_limits",
            json!({"memory": -1}),
            "resource_limits.memory",
        ),
        (
            "resource_limits",
            json!({"nanoCPUs": "2"}),
            "resource_limits.nanoCPUs",
        ),
    ];
    for (i, (key, value, field)) in cases.into_iter().enumerate() {
        let name = format!("{base}x{i}");
        cleanup.exapp(&name);
        let mut body = appapi_create_body(&name, &image);
        body[key] = value.clone();
        let r = h.wrapper("create", body).await;
        assert_eq!(r.status, 400, "{key} = {value}: {r:?}");
        assert!(r.body.contains(&format!("'{field}'")), "{key}: {r:?}");
        assert!(
            container_inspect(&format!("nc_app_{name}")).is_none(),
            "{key}"
        );
        assert!(
            inspect("volume", &format!("nc_app_{name}_data")).is_none(),
            "{key}"
        );
    }
    for name in [
        format!("-{base}"),
        format!(".{base}"),
        format!("_{base}"),
        format!("{base}{}", "x".repeat(64 - base.len() + 1)),
    ] {
        cleanup.exapp(&name);
        let r = h.wrapper("create", appapi_create_body(&name, &image)).await;
        assert_eq!(r.status, 400, "{name}: {r:?}");
        assert!(r.body.contains("'name'"), "{r:?}");
        assert!(container_inspect(&format!("nc_app_{name}")).is_none());
        assert!(inspect("volume", &format!("nc_app_{name}_data")).is_none());
    }
}

/// Accepted forms reach the engine as validated: mount paths normalised, every restart policy
/// name, a zero limit.
#[tokio::test]
async fn accepted_create_fields_reach_the_engine_normalised() {
    require_docker();
    let cleanup = Cleanup::default();
    let name = unique();
    let image = import_test_image(&cleanup, &name);
    let src = tempfile::tempdir().unwrap();
    let blank = src.path().join("AI models");
    std::fs::create_dir(&blank).unwrap();
    let h = Harness::builder().with_docker().start().await;
    for (i, policy) in ["", "no", "always", "unless-stopped", "on-failure"]
        .into_iter()
        .enumerate()
    {
        let app = format!("{name}p{i}");
        cleanup.exapp(&app);
        let mut body = appapi_create_body(&app, &image);
        body["restart_policy"] = json!(policy);
        body["resource_limits"] = json!({"memory": 0, "nanoCPUs": null, "cpu": "500m"});
        body["mount_points"] = json!([{
            "source": format!("/{}//./AI models/", src.path().display()),
            "target": "/data/./models/",
            "mode": "ro",
        }]);
        let r = h.wrapper("create", body).await;
        assert_eq!(r.status, 201, "{policy:?}: {r:?}");
        let c = container_inspect(&format!("nc_app_{app}")).unwrap();
        let want = if policy.is_empty() { "no" } else { policy };
        let got = c["HostConfig"]["RestartPolicy"]["Name"].as_str().unwrap();
        assert!(got == want || got == policy, "{policy:?}: {got}");
        let bind = c["Mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["Type"] == "bind")
            .unwrap_or_else(|| panic!("no bind mount: {c}"))
            .clone();
        assert_eq!(bind["Source"], blank.display().to_string());
        assert_eq!(bind["Destination"], "/data/models");
        assert_eq!(bind["RW"], false);
        assert_eq!(c["HostConfig"]["Memory"], 0);
    }
}
