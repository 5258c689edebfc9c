//! The Kubernetes backend (contract §4.8, §4.9; issue #12) against a REAL kube-apiserver
//! (`tests/common/k8s.rs`: one server shared by the run, a fresh namespace per test).
//!
//! - `harp check --reach-k8s`: drives the `check` command line (no listener starts), so those
//!   tests spawn the binary rather than a `Harness`; the fault tests need no server.
//! - AppAPI's `/k8s/exapp/*` calls against an in-process harp: what each operation makes in the
//!   API server (read back as the admin), `wait_for_start` following Pods the test creates and
//!   patches the way a kubelet would, each `expose` type (never sending traffic to the cluster
//!   addresses the API server hands out), upstream resolution, and the error answers.
//!
//! RBAC, the deploy/kubernetes manifests and an API server restart are in `k8s_cluster.rs`.

mod common;

use common::exapp::StubExApp;
use common::k8s::*;
use common::nextcloud::StubNextcloud;
use common::{client, meta, public_routes, wait_until, Harness, TestHarp};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn harp_check(env: &[(&str, &str)]) -> (i32, String) {
    let mut all = vec![
        ("HP_SHARED_KEY", "s3cr3t-value"),
        ("NC_INSTANCE_URL", "http://nc"),
    ];
    all.extend_from_slice(env);
    common::process::run_once(&["check", "--reach-k8s"], &all)
}

#[test]
fn check_reaches_the_real_api_server_with_the_token_file_read_at_call_time() {
    let api = ApiServer::shared();
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

// ---------------------------------------------------------------------------------------------
// AppAPI's calls against an in-process harp.

/// AppAPI's `create` body for the Kubernetes daemon (with the extras it sends).
fn create_body(name: &str) -> Value {
    json!({
        "name": name,
        "instance_id": "",
        "image_id": "registry.invalid/exapp:1",
        "network_mode": "bridge",
        "environment_variables": [format!("APP_ID={name}"), "APP_PORT=23000"],
        "mount_points": [],
        "resource_limits": {"memory": null, "nanoCPUs": null},
        "restart_policy": "unless-stopped",
        "compute_device": "cpu",
        "start_container": true,
    })
}

/// A namespace of the shared server and a harp acting in it (extra `env` on top).
async fn setup(env: &[(&str, &str)]) -> (&'static ApiServer, TestNamespace, TestHarp) {
    setup_with(env, |h| h).await
}

async fn setup_with(
    env: &[(&str, &str)],
    more: impl FnOnce(Harness) -> Harness,
) -> (&'static ApiServer, TestNamespace, TestHarp) {
    let api = ApiServer::shared();
    let ns = TestNamespace::create(api).await;
    let h = more(harness(api, &ns.name).envs(env)).start().await;
    (api, ns, h)
}

/// `create` that must answer 201 with `deployment` as the name.
async fn create(h: &TestHarp, body: Value, deployment: &str) {
    let r = h.k8s("create", body).await;
    assert_eq!(r.status, 201, "create: {}", r.body);
    assert_eq!(r.json(), json!({"name": deployment}));
}

/// Requests = limits for memory and CPU; a GPU may be a limit only (Kubernetes then requests
/// the same for extended resources), but if requested it must be the same count.
fn assert_requests_equal_limits(resources: &Value) {
    let (req, lim) = (&resources["requests"], &resources["limits"]);
    for k in ["memory", "cpu"] {
        assert_eq!(req[k], lim[k], "{k}: {resources}");
    }
    for (k, v) in req.as_object().unwrap() {
        assert_eq!(&lim[k], v, "{k}: {resources}");
    }
}

fn labels(obj: &Value) -> &Value {
    &obj["metadata"]["labels"]
}

/// The env entries of the `app` container as (name, value) with an absent value as "".
fn env_of(container: &Value) -> BTreeSet<(String, String)> {
    container["env"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn create_makes_the_pvc_and_a_stopped_deployment_as_appapi_asks() {
    let (api, ns, h) = setup(&[
        ("HP_K8S_STORAGE_CLASS", "fast-ssd"),
        ("HP_K8S_DEFAULT_STORAGE_SIZE", "2Gi"),
        (
            "HP_K8S_HOST_ALIASES",
            "nc.example:192.0.2.5,cloud.example:192.0.2.5,other.example:192.0.2.6",
        ),
    ])
    .await;
    let kube = api.admin();
    let deployment = "nc-app-inst1-demo-app";
    let pvc = "nc-app-inst1-demo-app-data";

    let absent = h
        .k8s(
            "exists",
            json!({"name": "demo_app", "instance_id": "Inst1"}),
        )
        .await;
    assert_eq!(absent.status, 200, "{}", absent.body);
    assert_eq!(absent.json(), json!({"exists": false}));

    let mut body = create_body("demo_app");
    body["instance_id"] = json!("Inst1");
    body["environment_variables"] = json!(["APP_ID=demo_app", "EMPTY", "WITH_EQ=a=b"]);
    // 512 MiB + 1 byte and 1.5 CPUs + 1 nanoCPU: both round up.
    body["resource_limits"] = json!({"memory": 536_870_913u64, "nanoCPUs": 1_500_000_001u64});
    body["compute_device"] = json!("cuda");
    create(&h, body.clone(), deployment).await;

    let present = h
        .k8s(
            "exists",
            json!({"name": "demo_app", "instance_id": "Inst1"}),
        )
        .await;
    assert_eq!(present.json(), json!({"exists": true}));

    // The PVC: RWO, the configured size and class, the data labels.
    let claim = kube
        .get_ok(&ns.core(&format!("persistentvolumeclaims/{pvc}")))
        .await;
    assert_eq!(claim["spec"]["accessModes"], json!(["ReadWriteOnce"]));
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "2Gi");
    assert_eq!(claim["spec"]["storageClassName"], "fast-ssd");
    assert_eq!(labels(&claim)["app.kubernetes.io/component"], "exapp-data");
    assert_eq!(labels(&claim)["app.kubernetes.io/part-of"], deployment);

    // The Deployment: stopped, one container `app`, env, volume, aliases, resources, labels.
    let d = kube
        .get_ok(&ns.apps(&format!("deployments/{deployment}")))
        .await;
    assert_eq!(d["spec"]["replicas"], 0, "{d}");
    let l = labels(&d);
    assert_eq!(l["app"], deployment);
    assert_eq!(l["app.kubernetes.io/name"], deployment);
    assert_eq!(l["app.kubernetes.io/part-of"], deployment);
    assert_eq!(l["app.kubernetes.io/component"], "exapp");
    // The instance id as AppAPI sent it (label values may hold upper case).
    assert_eq!(l["app.kubernetes.io/instance"], "Inst1");
    assert!(l.get("app.kubernetes.io/role").is_none(), "{l}");
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], deployment);
    assert_eq!(
        d["spec"]["template"]["metadata"]["labels"]["app"],
        deployment
    );
    let pod = &d["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "{pod}");
    let c = &containers[0];
    assert_eq!(c["name"], "app");
    assert_eq!(c["image"], "registry.invalid/exapp:1");
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    let want: BTreeSet<(String, String)> =
        [("APP_ID", "demo_app"), ("EMPTY", ""), ("WITH_EQ", "a=b")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    assert_eq!(env_of(c), want);
    assert_eq!(
        c["volumeMounts"],
        json!([{"name": "data", "mountPath": "/nc_app_Inst1_demo_app_data"}]),
        "the mount path is the Docker volume name, unsanitised"
    );
    assert_eq!(
        pod["volumes"],
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": pvc}}])
    );
    let limits = &c["resources"]["limits"];
    assert_eq!(limits["memory"], "513Mi", "{c}");
    assert_eq!(limits["cpu"], "1501m", "{c}");
    assert_eq!(limits["nvidia.com/gpu"], "1", "{c}");
    assert_requests_equal_limits(&c["resources"]);
    let aliases: BTreeSet<(String, BTreeSet<String>)> = pod["hostAliases"]
        .as_array()
        .unwrap_or_else(|| panic!("no hostAliases: {pod}"))
        .iter()
        .map(|a| {
            let names = a["hostnames"].as_array().unwrap();
            (
                a["ip"].as_str().unwrap().to_string(),
                names
                    .iter()
                    .map(|n| n.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    let want_aliases: BTreeSet<(String, BTreeSet<String>)> = [
        ("192.0.2.5", vec!["nc.example", "cloud.example"]),
        ("192.0.2.6", vec!["other.example"]),
    ]
    .into_iter()
    .map(|(ip, n)| (ip.to_string(), n.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(aliases, want_aliases, "grouped by IP");

    // AppAPI retries a create it believes failed: the second one is a conflict.
    let again = h.k8s("create", body).await;
    assert_eq!(again.status, 409, "{}", again.body);
}

#[tokio::test]
async fn create_with_a_role_and_kubernetes_quantities_shares_the_pvc() {
    let (api, ns, h) = setup(&[]).await;
    let kube = api.admin();
    create(&h, create_body("demo_app"), "nc-app-demo-app").await;

    // A second role of the same app: `image` instead of `image_id`, quantities passed through,
    // mount points ignored, and the PVC already there (409 from the API server) is fine.
    let mut role = create_body("demo_app");
    role.as_object_mut().unwrap().remove("image_id");
    role["image"] = json!("registry.invalid/exapp-worker:2");
    role["role_suffix"] = json!("Worker");
    role["resource_limits"] = json!({"memory": "512Mi", "cpu": "500m"});
    role["compute_device"] = json!("rocm");
    role["mount_points"] = json!([{"source": "/srv/x", "target": "/x", "mode": "rw"}]);
    create(&h, role, "nc-app-demo-app-worker").await;

    let d = kube
        .get_ok(&ns.apps("deployments/nc-app-demo-app-worker"))
        .await;
    let l = labels(&d);
    assert_eq!(l["app.kubernetes.io/name"], "nc-app-demo-app-worker");
    assert_eq!(l["app.kubernetes.io/part-of"], "nc-app-demo-app");
    assert_eq!(l["app.kubernetes.io/role"], "worker");
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "registry.invalid/exapp-worker:2");
    assert_eq!(c["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(c["resources"]["limits"]["cpu"], "500m");
    assert_eq!(c["resources"]["limits"]["amd.com/gpu"], "1");
    assert!(c["resources"]["limits"].get("nvidia.com/gpu").is_none());
    assert_requests_equal_limits(&c["resources"]);
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"], "nc-app-demo-app-data",
        "every role mounts the app's one PVC"
    );
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/nc_app_demo_app_data");
    assert!(pod.get("hostAliases").is_none() || pod["hostAliases"] == json!([]));

    // Defaults: 10Gi, no class (the cluster's default class decides).
    let claim = kube
        .get_ok(&ns.core("persistentvolumeclaims/nc-app-demo-app-data"))
        .await;
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "10Gi");
    assert!(claim["spec"].get("storageClassName").is_none(), "{claim}");
    // The base deployment got no GPU and no resources at all (AppAPI sent nulls).
    let base = kube.get_ok(&ns.apps("deployments/nc-app-demo-app")).await;
    let base_limits = &base["spec"]["template"]["spec"]["containers"][0]["resources"];
    assert!(
        base_limits.get("limits").is_none() || base_limits["limits"] == json!({}),
        "{base_limits}"
    );
}

#[tokio::test]
async fn create_accepts_names_that_are_no_kubernetes_names_as_sent() {
    // Parts AppAPI may send that are valid Docker names but no Kubernetes names as they are
    // (upper case, dots, a trailing `-`): every name and label harp derives must be valid. (Like
    // HaRP, harp labels `app.kubernetes.io/instance` with the instance id as sent; Nextcloud's
    // instance ids are letters and digits.)
    let (api, ns, h) = setup(&[]).await;
    let mut body = create_body("Demo.App");
    body["instance_id"] = json!("OC1");
    body["role_suffix"] = json!("Worker-");
    let deployment = "nc-app-oc1-demo-app-worker";
    create(&h, body, deployment).await;
    let d = api
        .admin()
        .get_ok(&ns.apps(&format!("deployments/{deployment}")))
        .await;
    assert_eq!(
        labels(&d)["app.kubernetes.io/part-of"],
        "nc-app-oc1-demo-app"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "nc-app-oc1-demo-app-data"
    );
    let r = h
        .k8s(
            "exists",
            json!({"name": "Demo.App", "instance_id": "OC1", "role_suffix": "Worker-"}),
        )
        .await;
    assert_eq!(r.json(), json!({"exists": true}));
}

#[tokio::test]
async fn start_and_stop_patch_replicas_and_unknown_deployments_are_404() {
    let (api, ns, h) = setup(&[]).await;
    let kube = api.admin();
    create(&h, create_body("demo_app"), "nc-app-demo-app").await;
    let replicas = || async {
        kube.get_ok(&ns.apps("deployments/nc-app-demo-app")).await["spec"]["replicas"].clone()
    };

    let r = h.k8s("start", json!({"name": "demo_app"})).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(replicas().await, 1);
    let r = h.k8s("stop", json!({"name": "demo_app"})).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(replicas().await, 0);

    for op in ["start", "stop"] {
        let r = h.k8s(op, json!({"name": "never_created"})).await;
        assert_eq!(r.status, 404, "{op}: {}", r.body);
    }
}

#[tokio::test]
async fn install_certificates_validates_the_body_and_does_nothing() {
    let (_api, _ns, h) = setup(&[]).await;
    let r = h
        .k8s(
            "install_certificates",
            json!({"name": "demo_app", "system_certs_bundle": null, "install_frp_certs": true}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = h.k8s("install_certificates", json!({})).await;
    assert_eq!(r.status, 400, "{}", r.body);
}

#[tokio::test]
async fn remove_deletes_the_pvc_only_when_asked_and_only_services_harp_made() {
    let nc = StubNextcloud::start().await;
    nc.add_app("app_one", meta(23000, public_routes()));
    let (api, ns, h) = setup_with(&[], |b| b.nextcloud(&nc.url())).await;
    let kube = api.admin();
    create(&h, create_body("app_one"), "nc-app-app-one").await;
    create(&h, create_body("app_two"), "nc-app-app-two").await;

    // app_one gets harp's own Service; app_two a same-named Service an admin made by hand.
    let r = h
        .k8s("expose", json!({"name": "app_one", "port": 23000}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let svc = kube.get_ok(&ns.core("services/nc-app-app-one")).await;
    assert_eq!(labels(&svc)["app.kubernetes.io/managed-by"], "harp");
    kube.create(
        &ns.core("services"),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "nc-app-app-two", "labels": {"team": "ops"}},
               "spec": {"selector": {"app": "nc-app-app-two"},
                        "ports": [{"port": 80, "targetPort": 23000}]}}),
    )
    .await;

    let gone = |path: String| {
        let kube = kube.clone();
        async move {
            let a = kube.get(&path).await;
            // Foreground deletion would leave it with a deletionTimestamp (no garbage collector
            // runs here); either way it is being removed.
            a.status == 404 || a.body["metadata"]["deletionTimestamp"].is_string()
        }
    };

    let r = h
        .k8s("remove", json!({"name": "app_one", "remove_data": false}))
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(gone(ns.apps("deployments/nc-app-app-one")).await);
    assert!(
        gone(ns.core("services/nc-app-app-one")).await,
        "harp's Service stays"
    );
    assert_eq!(
        kube.get(&ns.core("persistentvolumeclaims/nc-app-app-one-data"))
            .await
            .status,
        200,
        "remove_data false keeps the data"
    );
    // Removing what is already gone is fine.
    let r = h
        .k8s("remove", json!({"name": "app_one", "remove_data": true}))
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(gone(ns.core("persistentvolumeclaims/nc-app-app-one-data")).await);

    let r = h
        .k8s("remove", json!({"name": "app_two", "remove_data": true}))
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(gone(ns.apps("deployments/nc-app-app-two")).await);
    assert!(gone(ns.core("persistentvolumeclaims/nc-app-app-two-data")).await);
    let kept = kube.get(&ns.core("services/nc-app-app-two")).await;
    assert_eq!(kept.status, 200, "a Service harp did not make must stay");
    assert!(kept.body["metadata"]["deletionTimestamp"].is_null());
}

// ---------------------------------------------------------------------------------------------
// wait_for_start, with Pods the test creates and patches as a ReplicaSet and a kubelet would.

/// Creates the Deployment `nc-app-<app>` through harp and one Pod of it; returns the Pod's path.
async fn app_with_pod(h: &TestHarp, ns: &TestNamespace, kube: &Kube, app: &str) -> String {
    let deployment = format!("nc-app-{}", app.replace('_', "-"));
    create(h, create_body(app), &deployment).await;
    assert_eq!(h.k8s("start", json!({"name": app})).await.status, 204);
    let name = format!("{deployment}-7d9c5b8f6-x1");
    kube.create(&ns.core("pods"), pod(&name, &deployment)).await;
    ns.core(&format!("pods/{name}"))
}

/// Starts `wait_for_start` for `app` in the background.
fn wait_in_background(
    h: &TestHarp,
    app: &str,
) -> tokio::task::JoinHandle<(common::docker::Answer, Instant)> {
    let base = h.url("");
    let body = json!({"name": app}).to_string();
    tokio::spawn(async move {
        let a = k8s_call(&base, "wait_for_start", body).await;
        (a, Instant::now())
    })
}

/// Asserts the background wait is still going after `d` (harp keeps polling), then returns.
async fn still_waiting_after(
    task: &tokio::task::JoinHandle<(common::docker::Answer, Instant)>,
    d: Duration,
) {
    // Not a synchronisation: the behaviour under test is that harp does NOT answer during `d`.
    let answered = wait_until(d, || task.is_finished()).await;
    assert!(!answered, "wait_for_start answered within {d:?}");
}

#[tokio::test]
async fn wait_for_start_follows_a_pulling_pod_until_it_is_ready() {
    let (api, ns, h) = setup(&[("HP_K8S_STARTUP_TIMEOUT", "30")]).await;
    let kube = api.admin();
    let pod = app_with_pod(&h, &ns, &kube, "demo_app").await;
    kube.merge_patch(
        &format!("{pod}/status"),
        waiting("ContainerCreating", "pulling"),
    )
    .await;

    let task = wait_in_background(&h, "demo_app");
    still_waiting_after(&task, Duration::from_millis(2500)).await;
    kube.merge_patch(&format!("{pod}/status"), running_not_ready())
        .await;
    still_waiting_after(&task, Duration::from_millis(1500)).await;
    let patched = Instant::now();
    kube.merge_patch(&format!("{pod}/status"), running_ready())
        .await;
    let (r, at) = task.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["started"], true, "{j}");
    assert_eq!(j["status"], "running", "{j}");
    assert_eq!(j["health"], "ready", "{j}");
    for key in ["reason", "message"] {
        assert!(j.get(key).is_some(), "{key} missing: {j}");
    }
    assert!(
        at.duration_since(patched) < Duration::from_secs(4),
        "polls every second; answered {:?} after the Pod became ready",
        at.duration_since(patched)
    );
}

#[tokio::test]
async fn wait_for_start_reports_image_errors_succeeded_and_failed_pods() {
    let (api, ns, h) = setup(&[("HP_K8S_STARTUP_TIMEOUT", "30")]).await;
    let kube = api.admin();

    // An image error that appears while harp polls.
    let pod = app_with_pod(&h, &ns, &kube, "pull_fails").await;
    let task = wait_in_background(&h, "pull_fails");
    still_waiting_after(&task, Duration::from_millis(1500)).await;
    kube.merge_patch(
        &format!("{pod}/status"),
        waiting("ErrImagePull", "manifest unknown: registry.invalid/exapp:1"),
    )
    .await;
    let (r, _) = task.await.unwrap();
    let j = r.json();
    assert_eq!(j["started"], false, "{j}");
    assert_eq!(j["status"], "ErrImagePull", "{j}");
    assert_eq!(j["health"], "image_error", "{j}");
    assert!(
        j.to_string().contains("manifest unknown"),
        "the kubelet's message is passed on: {j}"
    );

    // The other image errors, already there when harp first looks.
    for reason in ["ImagePullBackOff", "InvalidImageName"] {
        let app = format!("img_{}", reason.to_lowercase());
        let pod = app_with_pod(&h, &ns, &kube, &app).await;
        kube.merge_patch(&format!("{pod}/status"), waiting(reason, "no"))
            .await;
        let r = h.k8s("wait_for_start", json!({"name": app})).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let j = r.json();
        assert_eq!(
            (&j["started"], &j["status"], &j["health"]),
            (&json!(false), &json!(reason), &json!("image_error")),
            "{j}"
        );
    }

    // A job-like ExApp that ran to completion counts as started; a failed Pod does not.
    let pod = app_with_pod(&h, &ns, &kube, "ran_once").await;
    kube.merge_patch(&format!("{pod}/status"), ended("Succeeded", 0))
        .await;
    let j = h
        .k8s("wait_for_start", json!({"name": "ran_once"}))
        .await
        .json();
    assert_eq!(j["started"], true, "{j}");
    assert_eq!(j["status"], "succeeded", "{j}");

    let pod = app_with_pod(&h, &ns, &kube, "crashed").await;
    kube.merge_patch(&format!("{pod}/status"), ended("Failed", 1))
        .await;
    let j = h
        .k8s("wait_for_start", json!({"name": "crashed"}))
        .await
        .json();
    assert_eq!(j["started"], false, "{j}");
    assert_eq!(j["health"], "not_ready", "{j}");
}

#[tokio::test]
async fn wait_for_start_times_out_after_the_pull_not_during_it() {
    const STARTUP: u64 = 2;
    let (api, ns, h) = setup(&[("HP_K8S_STARTUP_TIMEOUT", "2")]).await;
    let kube = api.admin();
    let pod = app_with_pod(&h, &ns, &kube, "slow_app").await;
    kube.merge_patch(
        &format!("{pod}/status"),
        waiting("ContainerCreating", "pulling"),
    )
    .await;

    let task = wait_in_background(&h, "slow_app");
    // Pulling takes longer than the startup timeout: that time does not count.
    still_waiting_after(&task, Duration::from_secs(STARTUP + 2)).await;
    let pulled = Instant::now();
    kube.merge_patch(&format!("{pod}/status"), running_not_ready())
        .await;
    let (r, at) = task.await.unwrap();
    let j = r.json();
    assert_eq!(j["started"], false, "{j}");
    assert_eq!(j["health"], "timeout", "{j}");
    let after = at.duration_since(pulled);
    assert!(
        after >= Duration::from_millis(STARTUP * 1000 - 500) && after < Duration::from_secs(10),
        "the startup timeout ({STARTUP} s) counts from the end of the pull; answered after {after:?}"
    );
}

#[tokio::test]
async fn wait_for_start_gives_up_when_the_pull_outlasts_its_cap() {
    let (api, ns, h) = setup(&[
        ("HP_K8S_IMAGE_PULL_TIMEOUT", "2"),
        ("HP_K8S_STARTUP_TIMEOUT", "30"),
    ])
    .await;
    let kube = api.admin();
    let pod = app_with_pod(&h, &ns, &kube, "huge_image").await;
    kube.merge_patch(
        &format!("{pod}/status"),
        waiting("ContainerCreating", "pulling"),
    )
    .await;
    let t0 = Instant::now();
    let r = h.k8s("wait_for_start", json!({"name": "huge_image"})).await;
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let j = r.json();
    assert_eq!(j["started"], false, "{j}");
    assert_eq!(j["health"], "timeout", "{j}");
}

/// A Deployment that does not exist never gets pods: `404` at once, not a wait of up to the
/// image-pull cap (an improvement over HaRP, which waits).
#[tokio::test]
async fn wait_for_start_on_an_unknown_deployment_is_404_at_once() {
    let (_api, _ns, h) = setup(&[]).await;
    let t0 = Instant::now();
    let r = h
        .k8s("wait_for_start", json!({"name": "never_created"}))
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body.contains("nc-app-never-created"), "{}", r.body);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

// ---------------------------------------------------------------------------------------------
// expose, and upstream resolution.

/// Routes only an admin may use: an anonymous request makes harp fetch (and cache) the app's
/// metadata and then stops at the access check, so nothing is sent to the cluster address.
fn admin_routes() -> Value {
    json!([{"url": ".*", "access_level": 2, "bruteforce_protection": []}])
}

/// A Nextcloud that knows `apps` (the metadata AppAPI registered: a logical host harp must
/// replace with the Kubernetes upstream; admin-only routes, see [`admin_routes`]).
async fn nextcloud_with(apps: &[&str]) -> StubNextcloud {
    let nc = StubNextcloud::start().await;
    for app in apps {
        let mut doc = meta(1, admin_routes());
        doc["host"] = json!("appapi-logical-host.invalid");
        nc.add_app(app, doc);
    }
    nc
}

#[tokio::test]
async fn expose_clusterip_makes_a_managed_service_and_caches_its_address() {
    let nc = nextcloud_with(&["demo_app"]).await;
    let (api, ns, h) = setup_with(&[], |b| b.nextcloud(&nc.url())).await;
    let kube = api.admin();
    create(&h, create_body("demo_app"), "nc-app-demo-app").await;

    let r = h
        .k8s(
            "expose",
            json!({"name": "demo_app", "port": 23000, "service_port": 8080,
                   "service_annotations": {"example.com/owner": "ops"},
                   "service_labels": {"team": "apps"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let svc = kube.get_ok(&ns.core("services/nc-app-demo-app")).await;
    let ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert_eq!(
        r.json(),
        json!({"appId": "demo_app", "host": ip, "port": 8080, "exposeType": "clusterip",
               "serviceName": "nc-app-demo-app", "namespace": ns.name})
    );
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["selector"], json!({"app": "nc-app-demo-app"}));
    let port = &svc["spec"]["ports"][0];
    assert_eq!(
        (&port["name"], &port["port"], &port["targetPort"]),
        (&json!("http"), &json!(8080), &json!(23000)),
        "{svc}"
    );
    let l = labels(&svc);
    assert_eq!(l["app.kubernetes.io/managed-by"], "harp");
    assert_eq!(l["app.kubernetes.io/part-of"], "nc-app-demo-app");
    assert_eq!(l["app.kubernetes.io/component"], "exapp");
    assert_eq!(l["team"], "apps");
    assert_eq!(svc["metadata"]["annotations"]["example.com/owner"], "ops");

    assert_eq!(
        h.cached_upstream("demo_app"),
        Some((ip.clone(), 8080)),
        "expose stores the Service's address in the metadata cache"
    );

    // Exposing again finds the Service there (409) and answers the same; numbers may come
    // as numeric strings (contract §4.1).
    let again = h
        .k8s(
            "expose",
            json!({"name": "demo_app", "port": "23000", "service_port": "8080"}),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["host"], json!(ip));

    // An app Nextcloud does not know.
    create(&h, create_body("ghost_app"), "nc-app-ghost-app").await;
    let r = h
        .k8s("expose", json!({"name": "ghost_app", "port": 23000}))
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(!h.is_meta_cached("ghost_app"));
}

#[tokio::test]
async fn expose_nodeport_picks_a_ready_node_address_and_the_node_port() {
    let apps = ["np_ready", "np_external", "np_named", "np_fixed"];
    let nc = nextcloud_with(&apps).await;
    let (api, ns, h) = setup_with(&[], |b| b.nextcloud(&nc.url())).await;
    let kube = api.admin();
    // Nodes are cluster-wide and the server is shared: this test's are labelled with its
    // namespace and selected by that label or by name.
    let pool = format!("harp-test/pool={}", ns.name);
    let (down, up) = (format!("{}-down", ns.name), format!("{}-up", ns.name));
    let _nodes = NodeCleanup {
        kube: kube.clone(),
        names: vec![down.clone(), up.clone()],
    };
    let label = json!({"harp-test/pool": ns.name});
    node(
        &kube,
        &down,
        label.clone(),
        json!([{"type": "InternalIP", "address": "192.0.2.1"},
               {"type": "Hostname", "address": "down"}]),
        false,
    )
    .await;
    node(
        &kube,
        &up,
        label,
        json!([{"type": "InternalIP", "address": "192.0.2.2"},
               {"type": "ExternalIP", "address": "198.51.100.2"},
               {"type": "Hostname", "address": "up"}]),
        true,
    )
    .await;
    for app in apps {
        create(
            &h,
            create_body(app),
            &format!("nc-app-{}", app.replace('_', "-")),
        )
        .await;
    }
    let node_port_of = |svc: &str| {
        let kube = kube.clone();
        let path = ns.core(&format!("services/{svc}"));
        async move {
            let s = kube.get_ok(&path).await;
            assert_eq!(s["spec"]["type"], "NodePort", "{s}");
            s["spec"]["ports"][0]["nodePort"].as_u64().unwrap()
        }
    };

    let r = h
        .k8s(
            "expose",
            json!({"name": "np_ready", "port": 23000, "expose_type": "nodeport",
                   "node_label_selector": pool, "external_traffic_policy": "Local"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    let np = node_port_of("nc-app-np-ready").await;
    assert!((30000..=32767).contains(&np));
    assert_eq!(j["host"], "192.0.2.2", "the ready node first: {j}");
    assert_eq!(j["port"], np);
    assert_eq!(j["exposeType"], "nodeport");
    let svc = kube.get_ok(&ns.core("services/nc-app-np-ready")).await;
    assert_eq!(svc["spec"]["externalTrafficPolicy"], "Local");
    assert_eq!(
        h.cached_upstream("np_ready"),
        Some(("192.0.2.2".into(), np as u16))
    );

    let r = h
        .k8s(
            "expose",
            json!({"name": "np_external", "port": 23000, "expose_type": "nodeport",
                   "node_label_selector": pool, "node_address_type": "ExternalIP"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["host"], "198.51.100.2");

    let r = h
        .k8s(
            "expose",
            json!({"name": "np_named", "port": 23000, "expose_type": "nodeport",
                   "node_name": down}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["host"], "192.0.2.1", "node_name picks that node");

    // A fixed node port (random in the range's top, unlikely to be taken by a neighbour).
    let fixed = 32000 + u64::from(rand::random::<u16>() % 700);
    let r = h
        .k8s(
            "expose",
            json!({"name": "np_fixed", "port": 23000, "expose_type": "nodeport",
                   "node_port": fixed, "node_label_selector": pool}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["port"], fixed);
    assert_eq!(node_port_of("nc-app-np-fixed").await, fixed);
}

#[tokio::test]
async fn expose_loadbalancer_waits_for_the_ingress_within_its_bound() {
    let nc = nextcloud_with(&["lb_app", "lb_never", "lb_named"]).await;
    let (api, ns, h) = setup_with(&[], |b| b.nextcloud(&nc.url())).await;
    let kube = api.admin();
    create(&h, create_body("lb_app"), "nc-app-lb-app").await;
    create(&h, create_body("lb_never"), "nc-app-lb-never").await;

    let base = h.url("");
    let body = json!({"name": "lb_app", "port": 23000, "expose_type": "loadbalancer",
                      "load_balancer_ip": "203.0.113.7", "wait_timeout_seconds": 60,
                      "wait_interval_seconds": 0.2})
    .to_string();
    let task = tokio::spawn(async move { k8s_call(&base, "expose", body).await });
    // The cloud's controller answers once the Service exists.
    let svc = ns.core("services/nc-app-lb-app");
    let deadline = Instant::now() + Duration::from_secs(20);
    while kube.get(&svc).await.status != 200 {
        assert!(Instant::now() < deadline, "expose made no Service");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !task.is_finished(),
        "answered before the load balancer had an address"
    );
    let s = kube.get_ok(&svc).await;
    assert_eq!(s["spec"]["type"], "LoadBalancer");
    assert_eq!(s["spec"]["loadBalancerIP"], "203.0.113.7");
    kube.merge_patch(
        &format!("{svc}/status"),
        json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}}),
    )
    .await;
    let r = task.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(
        (&j["host"], &j["port"]),
        (&json!("203.0.113.7"), &json!(23000)),
        "{j}"
    );
    assert_eq!(j["exposeType"], "loadbalancer");

    // A load balancer that publishes a host name (and a Service that existed before).
    kube.create(
        &ns.core("services"),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "nc-app-lb-named",
                            "labels": {"app.kubernetes.io/managed-by": "harp"}},
               "spec": {"type": "LoadBalancer", "selector": {"app": "nc-app-lb-named"},
                        "ports": [{"name": "http", "port": 23000, "targetPort": 23000}]}}),
    )
    .await;
    kube.merge_patch(
        &ns.core("services/nc-app-lb-named/status"),
        json!({"status": {"loadBalancer": {"ingress": [{"hostname": "lb.example.net"}]}}}),
    )
    .await;
    let r = h
        .k8s(
            "expose",
            json!({"name": "lb_named", "port": 23000, "expose_type": "loadbalancer"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["host"], "lb.example.net");

    // No address ever comes: 503 once the bound passes.
    let t0 = Instant::now();
    let r = h
        .k8s(
            "expose",
            json!({"name": "lb_never", "port": 23000, "expose_type": "loadbalancer",
                   "wait_timeout_seconds": 1, "wait_interval_seconds": 0.2}),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
    assert!(!h.is_meta_cached("lb_never"));
}

/// GET `/exapps/<app>/<rest>` through harp's front door.
async fn front_door(h: &TestHarp, app: &str, rest: &str) -> (u16, String) {
    let r = client()
        .get(h.url(&format!("/exapps/{app}/{rest}")))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[tokio::test]
async fn manual_expose_without_a_deployment_still_answers_and_caches() {
    // The annotations are best effort (contract §4.8): an app deployed outside harp is exposed
    // all the same.
    let nc = nextcloud_with(&["outside_app"]).await;
    let (_api, _ns, h) = setup_with(&[], |b| b.nextcloud(&nc.url())).await;
    let r = h
        .k8s(
            "expose",
            json!({"name": "outside_app", "port": 23000, "expose_type": "manual",
                   "upstream_host": "exapp.internal.example", "upstream_port": 9001}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        h.cached_upstream("outside_app"),
        Some(("exapp.internal.example".into(), 9001))
    );
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let (_api, _ns, h) = setup(&[]).await;
    let mut huge = String::from("{\"name\": \"demo_app\", \"pad\": \"");
    // Several times the control API's 1 MiB bound.
    huge.push_str(&"x".repeat(8 * 1024 * 1024));
    huge.push_str("\"}");
    let r = h.k8s_raw("create", huge).await;
    assert!(
        r.status == 413 || r.status == 400,
        "{} {}",
        r.status,
        r.body
    );
}

/// Makes harp fetch `app`'s metadata with an anonymous request the admin-only routes refuse
/// (so harp never connects to the cluster address it resolved).
async fn fetch_metadata(h: &TestHarp, app: &str) {
    let (status, text) = front_door(h, app, "x").await;
    assert!(
        status == 401 || status == 403,
        "the access check, not the upstream, must answer: {status} {text}"
    );
}

#[tokio::test]
async fn manual_expose_routes_through_the_front_door_and_survives_a_restart() {
    let stub = StubExApp::start().await;
    // Nextcloud's own record points nowhere (port 1): only the Kubernetes upstream works.
    let nc = StubNextcloud::start().await;
    nc.add_app("manual_app", meta(1, public_routes()));
    let (api, ns, h) = setup_with(&[], |b| b.nextcloud(&nc.url())).await;
    let kube = api.admin();
    create(&h, create_body("manual_app"), "nc-app-manual-app").await;

    let r = h
        .k8s(
            "expose",
            json!({"name": "manual_app", "port": 23000, "expose_type": "manual",
                   "upstream_host": "127.0.0.1", "upstream_port": stub.port()}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["host"], "127.0.0.1", "{j}");
    assert_eq!(j["port"], stub.port(), "{j}");
    assert_eq!(j["exposeType"], "manual", "{j}");
    assert_eq!(
        kube.get(&ns.core("services/nc-app-manual-app"))
            .await
            .status,
        404,
        "manual makes no Service"
    );
    let d = kube.get_ok(&ns.apps("deployments/nc-app-manual-app")).await;
    let notes = &d["metadata"]["annotations"];
    assert_eq!(notes["appapi.nextcloud.com/expose-type"], "manual", "{d}");
    assert_eq!(notes["appapi.nextcloud.com/upstream-host"], "127.0.0.1");
    assert_eq!(
        notes["appapi.nextcloud.com/upstream-port"],
        stub.port().to_string()
    );

    let before = stub.requests.load(std::sync::atomic::Ordering::SeqCst);
    let (status, text) = front_door(&h, "manual_app", "hello").await;
    assert_eq!(status, 200, "{text}");
    assert!(
        stub.requests.load(std::sync::atomic::Ordering::SeqCst) > before,
        "the request did not reach the ExApp"
    );

    // AppAPI's push at the end of enabling carries its logical host (the app id): the
    // Kubernetes upstream must survive it (HaRP's cache-overwrite bug).
    let mut logical = meta(23000, public_routes());
    logical["host"] = json!("manual_app");
    common::push_meta(&h, "manual_app", &logical).await;
    assert_eq!(
        h.cached_upstream("manual_app"),
        Some(("127.0.0.1".into(), stub.port()))
    );
    let (status, text) = front_door(&h, "manual_app", "after-push").await;
    assert_eq!(status, 200, "{text}");

    // A new harp (empty cache) fetches the metadata from Nextcloud and resolves the upstream
    // from the Deployment's annotations on its first request.
    drop(h);
    let h2 = harness(api, &ns.name).nextcloud(&nc.url()).start().await;
    let before = stub.requests.load(std::sync::atomic::Ordering::SeqCst);
    let (status, text) = front_door(&h2, "manual_app", "again").await;
    assert_eq!(status, 200, "{text}");
    assert!(stub.requests.load(std::sync::atomic::Ordering::SeqCst) > before);
    assert_eq!(
        h2.cached_upstream("manual_app"),
        Some(("127.0.0.1".into(), stub.port()))
    );
}

#[tokio::test]
async fn upstream_resolution_prefers_the_named_service_then_part_of_then_nextcloud() {
    let nc = nextcloud_with(&["by_name", "by_label", "plain"]).await;
    let (api, ns, h) = setup_with(&[], |b| b.nextcloud(&nc.url())).await;
    let kube = api.admin();
    let service = |name: &str, labels: Value, port: u16| {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "labels": labels},
               "spec": {"selector": {"app": name}, "ports": [{"port": port, "targetPort": 23000}]}})
    };
    let named = kube
        .create(
            &ns.core("services"),
            service("nc-app-by-name", json!({}), 8081),
        )
        .await;
    let labelled = kube
        .create(
            &ns.core("services"),
            service(
                "custom-frontend",
                json!({"app.kubernetes.io/part-of": "nc-app-by-label"}),
                8082,
            ),
        )
        .await;
    let ip = |s: &Value| s["spec"]["clusterIP"].as_str().unwrap().to_string();

    // On a metadata fetch (a first request through the front door).
    fetch_metadata(&h, "by_name").await;
    assert_eq!(h.cached_upstream("by_name"), Some((ip(&named), 8081)));
    fetch_metadata(&h, "by_label").await;
    assert_eq!(h.cached_upstream("by_label"), Some((ip(&labelled), 8082)));
    let stub = StubExApp::start().await;
    let mut doc = meta(stub.port(), public_routes());
    doc["host"] = json!("127.0.0.1");
    nc.add_app("plain", doc.clone());
    let (status, text) = front_door(&h, "plain", "x").await;
    assert_eq!(
        status, 200,
        "nothing in Kubernetes: Nextcloud's host/port: {text}"
    );
    assert_eq!(
        h.cached_upstream("plain"),
        Some(("127.0.0.1".into(), stub.port()))
    );

    // On a storage push from AppAPI: the Service replaces AppAPI's logical host/port.
    let mut pushed = meta(1, public_routes());
    pushed["host"] = json!("appapi-logical-host.invalid");
    let r = h
        .app_api(reqwest::Method::POST, "/exapp_storage/by_name", None)
        .json(&pushed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(h.cached_upstream("by_name"), Some((ip(&named), 8081)));
}

#[tokio::test]
async fn a_role_exposed_by_harp_is_found_again_by_its_part_of_label() {
    let nc = nextcloud_with(&["multi_role"]).await;
    let (api, ns, h) = setup_with(&[], |b| b.nextcloud(&nc.url())).await;
    let mut body = create_body("multi_role");
    body["role_suffix"] = json!("web");
    create(&h, body, "nc-app-multi-role-web").await;
    let r = h
        .k8s(
            "expose",
            json!({"name": "multi_role", "role_suffix": "web", "port": 23000}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let svc = api
        .admin()
        .get_ok(&ns.core("services/nc-app-multi-role-web"))
        .await;
    let ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert_eq!(r.json()["serviceName"], "nc-app-multi-role-web");

    // A harp with an empty cache finds that Service through `part-of` on its first fetch.
    let fresh = harness(api, &ns.name).nextcloud(&nc.url()).start().await;
    fetch_metadata(&fresh, "multi_role").await;
    assert_eq!(fresh.cached_upstream("multi_role"), Some((ip, 23000)));
}

// ---------------------------------------------------------------------------------------------
// /info and errors.

async fn info(h: &TestHarp) -> Value {
    let r = h
        .app_api(reqwest::Method::GET, "/info", None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// A loopback URL nothing listens on.
fn dead_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("https://127.0.0.1:{port}")
}

#[tokio::test]
async fn info_reports_the_backend_and_whether_the_api_server_answers() {
    let (api, ns, h) = setup(&[]).await;
    assert_eq!(
        info(&h).await["kubernetes"],
        json!({"enabled": true, "api_server": api.url, "reachable": true, "namespace": ns.name})
    );

    let url = dead_url();
    let down = Harness::builder()
        .envs(&[
            ("HP_K8S_ENABLED", "true"),
            ("HP_K8S_API_SERVER", &url),
            ("HP_K8S_BEARER_TOKEN", "t"),
            ("HP_K8S_NAMESPACE", "nextcloud-exapps"),
        ])
        .start()
        .await;
    let k = &info(&down).await["kubernetes"];
    assert_eq!(k["enabled"], true);
    assert_eq!(k["reachable"], false, "{k}");

    let off = Harness::builder().start().await;
    assert_eq!(info(&off).await["kubernetes"]["enabled"], false);
    let r = off.k8s("exists", json!({"name": "demo_app"})).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("not enabled"), "{}", r.body);
}

#[tokio::test]
async fn bad_requests_are_400_naming_the_field() {
    let (_api, _ns, h) = setup(&[]).await;
    for text in ["{not json", "[]", "null", ""] {
        let r = h.k8s_raw("create", text.into()).await;
        assert_eq!(r.status, 400, "{text:?}: {}", r.body);
    }
    for op in [
        "exists",
        "create",
        "start",
        "stop",
        "wait_for_start",
        "remove",
        "expose",
    ] {
        for body in [json!({}), json!({"name": ""}), json!({"name": 7})] {
            let r = h.k8s(op, body.clone()).await;
            assert_eq!(r.status, 400, "{op} {body}: {}", r.body);
            assert!(r.body.contains("name"), "{op} {body}: {}", r.body);
        }
    }
    let cases = [
        (json!({"port": 0}), "port"),
        (json!({"port": 70000}), "port"),
        (json!({"port": 23000, "expose_type": "x"}), "expose_type"),
        (
            json!({"port": 23000, "expose_type": "manual"}),
            "upstream_host",
        ),
        (
            json!({"port": 23000, "expose_type": "nodeport", "node_port": 80}),
            "node_port",
        ),
        (
            json!({"port": 23000, "wait_timeout_seconds": 601}),
            "wait_timeout_seconds",
        ),
        (
            json!({"port": 23000, "external_traffic_policy": "Nowhere"}),
            "external_traffic_policy",
        ),
        (
            json!({"port": 23000, "wait_interval_seconds": 0.01}),
            "wait_interval_seconds",
        ),
        (
            json!({"port": 23000, "wait_timeout_seconds": -1}),
            "wait_timeout_seconds",
        ),
        (
            json!({"port": 23000, "expose_type": "nodeport", "node_address_type": "Bogus"}),
            "node_address_type",
        ),
    ];
    for (mut body, field) in cases {
        body["name"] = json!("demo_app");
        let r = h.k8s("expose", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(r.body.contains(field), "{body}: {}", r.body);
    }
}

#[tokio::test]
async fn an_unreachable_api_server_is_a_fast_503_naming_it() {
    let url = dead_url();
    let h = Harness::builder()
        .envs(&[
            ("HP_K8S_ENABLED", "true"),
            ("HP_K8S_API_SERVER", &url),
            ("HP_K8S_BEARER_TOKEN", "t"),
        ])
        .start()
        .await;
    for (op, body) in [
        ("exists", json!({"name": "demo_app"})),
        ("create", create_body("demo_app")),
        ("wait_for_start", json!({"name": "demo_app"})),
    ] {
        let t0 = Instant::now();
        let r = h.k8s(op, body).await;
        assert_eq!(r.status, 503, "{op}: {}", r.body);
        assert!(r.body.contains(&url), "{op}: {}", r.body);
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{op}: {:?}",
            t0.elapsed()
        );
    }
}

#[tokio::test]
async fn the_token_file_is_read_again_on_every_call() {
    let api = ApiServer::shared();
    let ns = TestNamespace::create(api).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{}\n", api.token)).unwrap();
    let h = Harness::builder()
        .envs(&[
            ("HP_K8S_ENABLED", "true"),
            ("HP_K8S_API_SERVER", &api.url),
            ("HP_K8S_CA_FILE", &api.ca),
            ("HP_K8S_BEARER_TOKEN_FILE", file.to_str().unwrap()),
            ("HP_K8S_NAMESPACE", &ns.name),
        ])
        .start()
        .await;
    let exists = || h.k8s("exists", json!({"name": "demo_app"}));
    assert_eq!(exists().await.status, 200);

    // Rotated to a token the API server does not know (401): the call fails, naming neither.
    std::fs::write(&file, "rotated-but-unknown-token").unwrap();
    let r = exists().await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(!r.body.contains("rotated-but-unknown-token"), "{}", r.body);
    // And back: the next call succeeds without a restart.
    std::fs::write(&file, &api.token).unwrap();
    assert_eq!(exists().await.status, 200);
}

#[tokio::test]
async fn tls_is_verified_against_the_ca_file_unless_turned_off() {
    let api = ApiServer::shared();
    let ns = TestNamespace::create(api).await;
    let without_ca = |verify: &str| {
        Harness::builder().envs(&[
            ("HP_K8S_ENABLED", "true"),
            ("HP_K8S_API_SERVER", &api.url),
            ("HP_K8S_CA_FILE", "/nonexistent/ca.crt"),
            ("HP_K8S_BEARER_TOKEN", &api.token),
            ("HP_K8S_NAMESPACE", &ns.name),
            ("HP_K8S_VERIFY_SSL", verify),
        ])
    };
    let strict = without_ca("true").start().await;
    let r = strict.k8s("exists", json!({"name": "demo_app"})).await;
    assert_eq!(r.status, 503, "an unknown CA must be refused: {}", r.body);
    assert!(r.body.contains(&api.url), "{}", r.body);
    let lax = without_ca("false").start().await;
    let r = lax.k8s("exists", json!({"name": "demo_app"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let with_ca = harness(api, &ns.name).start().await;
    assert_eq!(
        with_ca
            .k8s("exists", json!({"name": "demo_app"}))
            .await
            .status,
        200
    );
}
