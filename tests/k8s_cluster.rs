//! harp's Kubernetes backend as a cluster admin deploys it (issue #12), against a REAL
//! kube-apiserver:
//! - deploy/kubernetes/rbac.yaml is exactly the documented Role and enough for AppAPI's whole
//!   call sequence with a ServiceAccount token from the TokenRequest API, and a call outside it
//!   is refused with an error naming the verb, the resource and RBAC;
//! - deploy/kubernetes/harp.yaml passes the API server's dry run with no field dropped, and
//!   the in-cluster API server default it relies on (`KUBERNETES_SERVICE_*`) works;
//! - the API server stopped and started again under a running harp (its own server);
//! - the token never appears in harp's answers or logs (harp as a child process, debug logs).
//!
//! The manifests are applied without kubectl (CI does not have it) and without a YAML parser:
//! the API server itself reads YAML (`application/apply-patch+yaml`, `application/yaml`).

mod common;

use common::k8s::*;
use common::nextcloud::StubNextcloud;
use common::{meta, public_routes, TestHarp};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const RBAC_YAML: &str = include_str!("../deploy/kubernetes/rbac.yaml");
const HARP_YAML: &str = include_str!("../deploy/kubernetes/harp.yaml");

/// How long an RBAC change may take to reach the API server's authorizer (it reads roles from
/// an informer cache).
const RBAC_PROPAGATION: Duration = Duration::from_secs(10);

/// One document of a manifest file: its text, kind and metadata name.
struct Doc {
    text: String,
    kind: String,
    name: String,
}

/// Splits a manifest at `---` lines and reads each document's `kind` and `metadata.name` (the
/// only two facts the tests need before the API server parses the rest).
fn docs(file: &str) -> Vec<Doc> {
    let mut out = Vec::new();
    for text in file.split("\n---\n") {
        let kind = text
            .lines()
            .find_map(|l| l.strip_prefix("kind: "))
            .map(|k| k.trim().to_string());
        let Some(kind) = kind else { continue };
        let name = text
            .lines()
            .skip_while(|l| !l.starts_with("metadata:"))
            .find_map(|l| l.strip_prefix("  name: "))
            .unwrap_or_else(|| panic!("no metadata.name in {text}"))
            .trim()
            .to_string();
        out.push(Doc {
            text: text.to_string(),
            kind,
            name,
        });
    }
    out
}

/// The collection a `kind` lives in, in namespace `ns` when namespaced.
fn collection(kind: &str, ns: &str) -> String {
    match kind {
        "ServiceAccount" => format!("/api/v1/namespaces/{ns}/serviceaccounts"),
        "Service" => format!("/api/v1/namespaces/{ns}/services"),
        "Deployment" => format!("/apis/apps/v1/namespaces/{ns}/deployments"),
        "Role" => format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"),
        "RoleBinding" => format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"),
        "ClusterRole" => "/apis/rbac.authorization.k8s.io/v1/clusterroles".to_string(),
        "ClusterRoleBinding" => {
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings".to_string()
        }
        other => panic!("the tests do not know where a {other} goes"),
    }
}

/// The rules of a Role as (api group, resource, verb) triples.
fn rule_triples(role: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        let strings = |k: &str| -> Vec<String> {
            rule[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        for g in strings("apiGroups") {
            for r in strings("resources") {
                for v in strings("verbs") {
                    out.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    out
}

fn triples(list: &[(&str, &str, &[&str])]) -> BTreeSet<(String, String, String)> {
    list.iter()
        .flat_map(|(g, r, verbs)| {
            verbs
                .iter()
                .map(move |v| (g.to_string(), r.to_string(), v.to_string()))
        })
        .collect()
}

/// Applies rbac.yaml: the Role into `ns`, the ClusterRole cluster-wide (the same for every
/// test, so applying it again is harmless).
async fn apply_rbac(kube: &Kube, ns: &TestNamespace) {
    for doc in docs(RBAC_YAML) {
        let path = format!("{}/{}", collection(&doc.kind, &ns.name), doc.name);
        let a = kube.apply(&path, &doc.text).await;
        assert!(
            a.status == 200 || a.status == 201,
            "apply {}: {:?}",
            doc.kind,
            a.body
        );
    }
}

/// A ServiceAccount in `ns` and a token for it from the TokenRequest API.
async fn service_account_token(kube: &Kube, ns: &TestNamespace, name: &str) -> String {
    kube.create(
        &ns.core("serviceaccounts"),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}),
    )
    .await;
    let t = kube
        .create(
            &ns.core(&format!("serviceaccounts/{name}/token")),
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "spec": {"expirationSeconds": 3600}}),
        )
        .await;
    t["status"]["token"].as_str().unwrap().to_string()
}

fn binding(kind: &str, name: &str, role_kind: &str, role: &str, ns: &str, sa: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
           "metadata": {"name": name},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
           "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]})
}

/// A harp acting in `ns` with `token` instead of the admin's.
async fn harp_with_token(api: &ApiServer, ns: &str, token: &str, nc: &StubNextcloud) -> TestHarp {
    harness(api, ns)
        .env("HP_K8S_BEARER_TOKEN", token)
        .nextcloud(&nc.url())
        .start()
        .await
}

fn assert_rbac_error(body: &str, verb: &str, resource: &str) {
    for word in [verb, resource, "RBAC"] {
        assert!(body.contains(word), "{word:?} missing from {body:?}");
    }
}

#[test]
fn the_readme_shows_the_rbac_file_as_it_is() {
    let readme = include_str!("../README.md");
    assert!(
        readme.contains(&format!("```yaml\n{RBAC_YAML}```")),
        "README's Kubernetes section must quote deploy/kubernetes/rbac.yaml verbatim"
    );
}

#[tokio::test]
async fn the_documented_role_is_exactly_enough_for_appapis_call_sequence() {
    let api = ApiServer::shared();
    let ns = TestNamespace::create(api).await;
    let kube = api.admin();
    apply_rbac(&kube, &ns).await;

    // The file says what the README says, verb by verb.
    let role = kube.get_ok(&ns.rbac("roles/harp")).await;
    assert_eq!(
        rule_triples(&role),
        triples(&[
            (
                "apps",
                "deployments",
                &["get", "list", "create", "patch", "delete"]
            ),
            ("", "services", &["get", "list", "create", "delete"]),
            ("", "persistentvolumeclaims", &["create", "delete"]),
            ("", "pods", &["list"]),
        ])
    );
    let nodes_role = kube
        .get_ok("/apis/rbac.authorization.k8s.io/v1/clusterroles/harp-nodes")
        .await;
    assert_eq!(
        rule_triples(&nodes_role),
        triples(&[("", "nodes", &["list"])])
    );

    let token = service_account_token(&kube, &ns, "harp").await;
    kube.create(
        &ns.rbac("rolebindings"),
        binding("RoleBinding", "harp", "Role", "harp", &ns.name, "harp"),
    )
    .await;
    let nc = StubNextcloud::start().await;
    for app in ["demo_app", "np_app"] {
        nc.add_app(app, meta(1, public_routes()));
    }
    let h = harp_with_token(api, &ns.name, &token, &nc).await;

    // AppAPI's sequence, with nothing but the Role. The first call may race the binding's
    // arrival in the authorizer's cache.
    let deadline = Instant::now() + RBAC_PROPAGATION;
    loop {
        let r = h.k8s("exists", json!({"name": "demo_app"})).await;
        if r.status == 200 {
            assert_eq!(r.json(), json!({"exists": false}));
            break;
        }
        assert!(Instant::now() < deadline, "exists: {} {}", r.status, r.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut body = json!({"name": "demo_app", "image_id": "registry.invalid/exapp:1",
                          "environment_variables": ["APP_ID=demo_app"]});
    let r = h.k8s("create", body.clone()).await;
    assert_eq!(r.status, 201, "create: {}", r.body);
    let r = h
        .k8s("expose", json!({"name": "demo_app", "port": 23000}))
        .await;
    assert_eq!(r.status, 200, "expose: {}", r.body);
    let r = h.k8s("start", json!({"name": "demo_app"})).await;
    assert_eq!(r.status, 204, "start: {}", r.body);
    let pod = ns.core("pods/nc-app-demo-app-7d9c5b8f6-x1");
    kube.create(
        &ns.core("pods"),
        common::k8s::pod("nc-app-demo-app-7d9c5b8f6-x1", "nc-app-demo-app"),
    )
    .await;
    kube.merge_patch(&format!("{pod}/status"), running_ready())
        .await;
    let r = h.k8s("wait_for_start", json!({"name": "demo_app"})).await;
    assert_eq!(r.status, 200, "wait_for_start: {}", r.body);
    assert_eq!(r.json()["started"], true, "{}", r.body);
    let r = h.k8s("stop", json!({"name": "demo_app"})).await;
    assert_eq!(r.status, 204, "stop: {}", r.body);
    let r = h
        .k8s("remove", json!({"name": "demo_app", "remove_data": true}))
        .await;
    assert_eq!(r.status, 204, "remove: {}", r.body);
    assert_eq!(
        kube.get(&ns.core("persistentvolumeclaims/nc-app-demo-app-data"))
            .await
            .status,
        404
    );
    assert_eq!(
        kube.get(&ns.core("services/nc-app-demo-app")).await.status,
        404
    );

    // Outside the Role: listing Nodes for a nodeport address needs the ClusterRole's binding.
    body["name"] = json!("np_app");
    assert_eq!(h.k8s("create", body).await.status, 201);
    let nodeport = json!({"name": "np_app", "port": 23000, "expose_type": "nodeport"});
    let r = h.k8s("expose", nodeport.clone()).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_rbac_error(&r.body, "list", "nodes");
    assert!(!r.body.contains(&token), "the token reached the answer");

    // With the ClusterRole bound, the same call succeeds.
    let crb = format!("harp-nodes-{}", ns.name);
    let node_name = format!("{}-node", ns.name);
    let _cleanup = NodeCleanup {
        kube: kube.clone(),
        names: vec![node_name.clone()],
    };
    node(
        &kube,
        &node_name,
        json!({"harp-test/pool": ns.name}),
        json!([{"type": "InternalIP", "address": "192.0.2.9"}]),
        true,
    )
    .await;
    kube.create(
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        binding(
            "ClusterRoleBinding",
            &crb,
            "ClusterRole",
            "harp-nodes",
            &ns.name,
            "harp",
        ),
    )
    .await;
    let mut nodeport = nodeport;
    nodeport["node_label_selector"] = json!(format!("harp-test/pool={}", ns.name));
    let deadline = Instant::now() + RBAC_PROPAGATION;
    let r = loop {
        let r = h.k8s("expose", nodeport.clone()).await;
        if r.status != 503 || Instant::now() >= deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    kube.delete(&format!(
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{crb}"
    ))
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["host"], "192.0.2.9");
}

#[tokio::test]
async fn a_refused_call_names_verb_resource_and_rbac_and_never_the_token() {
    let api = ApiServer::shared();
    let ns = TestNamespace::create(api).await;
    let kube = api.admin();
    // A ServiceAccount bound to nothing: every call is refused.
    let token = service_account_token(&kube, &ns, "nobody").await;
    let nc = StubNextcloud::start().await;
    let mut h = harness(api, &ns.name)
        .env("HP_K8S_BEARER_TOKEN", &token)
        .env("HP_LOG_LEVEL", "debug")
        .env("HP_VERBOSE_START", "1")
        .nextcloud(&nc.url())
        .spawn_process();
    let base = h.url("");

    let r = k8s_call(&base, "exists", json!({"name": "demo_app"}).to_string()).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_rbac_error(&r.body, "get", "deployments");
    let r = k8s_call(
        &base,
        "create",
        json!({"name": "demo_app", "image_id": "registry.invalid/exapp:1"}).to_string(),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_rbac_error(&r.body, "create", "persistentvolumeclaims");
    let r = k8s_call(
        &base,
        "expose",
        json!({"name": "demo_app", "port": 23000}).to_string(),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_rbac_error(&r.body, "create", "services");
    let r = k8s_call(
        &base,
        "wait_for_start",
        json!({"name": "demo_app"}).to_string(),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.body);
    // wait_for_start first reads the Deployment (a missing one is a 404 at once).
    assert_rbac_error(&r.body, "get", "deployments");
    assert!(!r.body.contains(&token));

    h.assert_alive();
    let logs = h.logs().join("\n");
    assert!(!logs.is_empty());
    assert!(!logs.contains(&token), "the token reached harp's logs");
    // The JWT's signature part alone would be as bad.
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        !logs.contains(signature),
        "part of the token reached harp's logs"
    );
}

#[tokio::test]
async fn the_admin_token_stays_out_of_answers_and_logs_on_success_too() {
    let api = ApiServer::shared();
    let ns = TestNamespace::create(api).await;
    let mut h = harness(api, &ns.name)
        .env("HP_LOG_LEVEL", "debug")
        .env("HP_VERBOSE_START", "1")
        .spawn_process();
    let base = h.url("");
    let body = json!({"name": "demo_app", "image_id": "registry.invalid/exapp:1"}).to_string();
    let mut answers = Vec::new();
    for (op, body) in [
        ("create", body),
        ("exists", json!({"name": "demo_app"}).to_string()),
        ("start", json!({"name": "demo_app"}).to_string()),
        (
            "remove",
            json!({"name": "demo_app", "remove_data": true}).to_string(),
        ),
    ] {
        let r = k8s_call(&base, op, body).await;
        assert!(r.status < 300, "{op}: {} {}", r.status, r.body);
        answers.push(r.body);
    }
    let info = common::client()
        .get(h.url("/exapps/app_api/info"))
        .header("harp-shared-key", common::KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    answers.push(info);
    h.assert_alive();
    let logs = h.logs().join("\n");
    assert!(
        logs.contains("HP_K8S") || logs.to_lowercase().contains("kubernetes"),
        "start-up logs say whether the backend is on: {logs}"
    );
    for text in answers.iter().chain([&logs]) {
        assert!(!text.contains(&api.token), "the token leaked: {text}");
    }
}

#[tokio::test]
async fn harp_keeps_working_across_an_api_server_restart() {
    let api = ApiServer::own();
    let ns = TestNamespace::create(&api).await;
    let nc = StubNextcloud::start().await;
    nc.add_app("other_app", meta(1, public_routes()));
    let h = harness(&api, &ns.name).nextcloud(&nc.url()).start().await;
    let exists = || h.k8s("exists", json!({"name": "demo_app"}));
    assert_eq!(exists().await.status, 200);

    let args = api.kill_apiserver();
    for _ in 0..2 {
        let t0 = Instant::now();
        let r = exists().await;
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(r.body.contains(&api.url), "{}", r.body);
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    }
    let info: Value = h
        .app_api(reqwest::Method::GET, "/info", None)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["kubernetes"]["reachable"], false, "{info}");
    // Upstream resolution cannot run: a storage push is refused and nothing is cached, and a
    // metadata fetch for a request fails without caching either.
    let r = h
        .app_api(reqwest::Method::POST, "/exapp_storage/demo_app", None)
        .json(&meta(1, public_routes()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(!h.is_meta_cached("demo_app"));
    let r = common::client()
        .get(h.url("/exapps/other_app/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(!h.is_meta_cached("other_app"));

    api.start_again(&args);
    let r = exists().await;
    assert_eq!(
        r.status, 200,
        "the first call after the restart: {}",
        r.body
    );
    let r = h
        .k8s(
            "create",
            json!({"name": "demo_app", "image_id": "registry.invalid/exapp:1"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(exists().await.json(), json!({"exists": true}));
}

/// Every mapping key of a YAML text (comments removed): the API server silently drops unknown
/// fields, so a key it does not send back was misspelt or misplaced.
fn yaml_keys(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(|l| l.split(" #").next().unwrap())
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let l = l.trim_start().trim_start_matches("- ");
            let (key, _) = l.split_once(':')?;
            key.chars()
                .all(|c| c.is_ascii_alphanumeric())
                .then(|| key.to_string())
        })
        .filter(|k| !k.is_empty())
        .collect()
}

fn json_keys(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                out.insert(k.clone());
                json_keys(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| json_keys(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_in_cluster_manifests_pass_the_api_servers_dry_run_intact() {
    let api = ApiServer::shared();
    let kube = api.admin();
    // The manifests' own namespace (dry runs still need it to exist); shared by nothing else.
    let a = kube
        .call(
            reqwest::Method::POST,
            "/api/v1/namespaces",
            Some((
                "application/json",
                json!({"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": "nextcloud-exapps"}})
                .to_string(),
            )),
        )
        .await;
    assert!(a.status == 201 || a.status == 409, "{:?}", a.body);

    let all: Vec<Doc> = docs(RBAC_YAML).into_iter().chain(docs(HARP_YAML)).collect();
    let kinds: Vec<&str> = all.iter().map(|d| d.kind.as_str()).collect();
    for kind in [
        "Role",
        "ClusterRole",
        "ServiceAccount",
        "RoleBinding",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
    ] {
        assert!(kinds.contains(&kind), "no {kind} in the manifests");
    }
    for doc in all {
        // A server-side apply with dryRun=All validates like a create, and also works for the
        // cluster-wide ClusterRole another test of this run may have applied for real.
        let path = format!(
            "{}/{}?dryRun=All",
            collection(&doc.kind, "nextcloud-exapps"),
            doc.name
        );
        let a = kube.apply(&path, &doc.text).await;
        assert!(
            a.status == 201 || a.status == 200,
            "{} {}: {} {:?}",
            doc.kind,
            doc.name,
            a.status,
            a.body
        );
        let mut returned = BTreeSet::new();
        json_keys(&a.body, &mut returned);
        let dropped: Vec<String> = yaml_keys(&doc.text)
            .into_iter()
            .filter(|k| !returned.contains(k))
            .collect();
        assert!(
            dropped.is_empty(),
            "{} {}: the API server dropped {dropped:?}",
            doc.kind,
            doc.name
        );
    }

    // The Deployment is harp's image, with the backend on, in-cluster defaults and the ports.
    let d = docs(HARP_YAML)
        .into_iter()
        .find(|d| d.kind == "Deployment")
        .unwrap();
    assert!(d.text.contains("image: harp:latest"));
    assert!(d.text.contains("HP_K8S_ENABLED"));
    assert!(
        !d.text.contains("name: HP_K8S_API_SERVER"),
        "the API server is the in-cluster default"
    );
    for port in ["8780", "8782"] {
        assert!(d.text.contains(&format!("containerPort: {port}")));
    }
}

#[tokio::test]
async fn in_cluster_defaults_find_the_api_server_the_manifest_relies_on() {
    // harp.yaml sets no HP_K8S_API_SERVER: in a Pod, Kubernetes provides these two variables.
    let api = ApiServer::shared();
    let ns = TestNamespace::create(api).await;
    let port = api.port().to_string();
    let h = common::Harness::builder()
        .envs(&[
            ("HP_K8S_ENABLED", "true"),
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", &port),
            ("HP_K8S_CA_FILE", &api.ca),
            ("HP_K8S_BEARER_TOKEN", &api.token),
            ("HP_K8S_NAMESPACE", &ns.name),
        ])
        .start()
        .await;
    let r = h.k8s("exists", json!({"name": "demo_app"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let info: Value = h
        .app_api(reqwest::Method::GET, "/info", None)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["kubernetes"]["api_server"], api.url);
    assert_eq!(info["kubernetes"]["reachable"], true);
}
