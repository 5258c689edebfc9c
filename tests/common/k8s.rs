//! The real Kubernetes API server of the tests (etcd + kube-apiserver v1.20, started by
//! `../shared/tools/kube-apiserver-up`, or the one in `HARP_TEST_KUBE_TOOLS`), an admin client
//! for what the tests do to it (namespaces, Pods and their status, Nodes, RBAC objects), and
//! the way a test reaches harp's `/k8s/exapp/*` endpoints.
//!
//! - [`ApiServer::shared`]: one server for every test of a run. Starting one costs ~6 s and
//!   nextest runs each test in its own process, so the first test starts it under an `flock`
//!   in `target/tmp/k8s-shared/` and the others reuse it while its `/readyz` answers and the
//!   run that started it (recorded in `k8s-shared.owner`) is alive. The tool's watchdog stops it
//!   when that run (the test process's parent: nextest, or cargo) exits.
//! - [`ApiServer::own`]: a private server for a test that stops and restarts it.
//! - [`TestNamespace`]: every test works in a fresh namespace, deleted at the end (best
//!   effort: with no controller-manager a deleted namespace would stay `Terminating`, so it is
//!   also finalized).
//!
//! Only etcd and kube-apiserver run (no kubelet, scheduler or controllers): the tests create
//! Pods themselves and patch their status the way a kubelet would (tools/k8s/README.md).
//!
//! What this module must not do: talk to harp's internals (it only builds the environment harp
//! reads), or send traffic to cluster addresses the API server hands out (none is reachable).

use super::docker::{answer, Answer};
use super::{prereq, Harness, TestHarp, KEY};
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a restarted API server may take to answer `/readyz` (a cold start takes ~6 s on
/// two busy cores).
const READY_DEADLINE: Duration = Duration::from_secs(90);

/// How often the synchronous waits of this module look again.
const POLL: Duration = Duration::from_millis(100);

/// The node name test Pods are bound to (it does not have to exist: nothing runs them).
pub const POD_NODE: &str = "harp-test-node";

/// A `kube-apiserver-up` tool: the override, else the project's shared folder beside the checkout.
pub fn tool(name: &str) -> PathBuf {
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

/// One running etcd + kube-apiserver. A private one ([`ApiServer::own`]) is stopped on drop;
/// the shared one lives until the run's end (the tool's watchdog stops it).
pub struct ApiServer {
    pub url: String,
    /// The admin token (group `system:masters`).
    pub token: String,
    /// The CA file that signed the server's certificate.
    pub ca: String,
    /// The tool's state folder (env file, pid files, logs).
    pub state: PathBuf,
    owned: bool,
    /// A kube-apiserver [`ApiServer::start_again`] started: the tool stops it by its pid file,
    /// this process reaps it.
    restarted: std::sync::Mutex<Option<std::process::Child>>,
}

impl ApiServer {
    /// The server every test of this run shares (see the module docs).
    pub fn shared() -> &'static ApiServer {
        static SHARED: OnceLock<ApiServer> = OnceLock::new();
        SHARED.get_or_init(|| {
            let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
            std::fs::create_dir_all(&tmp).unwrap();
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(tmp.join("k8s-shared.lock"))
                .unwrap();
            // Held until `lock` drops at the end of this closure: one process starts the
            // server, the others wait here and then reuse it.
            rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
            let dir = tmp.join("k8s-shared");
            let owner_file = tmp.join("k8s-shared.owner");
            let run = std::os::unix::process::parent_id();
            if let Some(api) = reusable(&dir, &owner_file) {
                return api;
            }
            if dir.join(".kube-apiserver-up").exists() {
                // Left by an earlier run whose watchdog has not fired yet, or a dead server.
                let _ = Command::new(tool("kube-apiserver-down")).arg(&dir).status();
            }
            let _ = std::fs::remove_dir_all(&dir);
            let mut api = ApiServer::start(Some(&dir), run);
            api.owned = false;
            std::fs::write(&owner_file, run.to_string()).unwrap();
            api
        })
    }

    /// A private server, stopped when the value drops (and by the watchdog if this process
    /// dies first).
    pub fn own() -> ApiServer {
        ApiServer::start(None, std::process::id())
    }

    fn start(state: Option<&Path>, watched: u32) -> ApiServer {
        prereq::require_command("curl", "curl");
        let mut cmd = Command::new(tool("kube-apiserver-up"));
        cmd.env("KUBE_APISERVER_PARENT_PID", watched.to_string());
        if let Some(dir) = state {
            cmd.env("KUBE_APISERVER_STATE_DIR", dir);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "kube-apiserver-up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kubeconfig = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let state = PathBuf::from(&kubeconfig).parent().unwrap().to_path_buf();
        ApiServer::read(&state).expect("the env file kube-apiserver-up wrote")
    }

    /// The server described by the env file in `state`.
    fn read(state: &Path) -> Option<ApiServer> {
        let env = std::fs::read_to_string(state.join("env")).ok()?;
        let var = |name: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_string())
        };
        Some(ApiServer {
            url: var("KUBE_APISERVER_URL")?,
            token: var("KUBE_APISERVER_TOKEN")?,
            ca: var("KUBE_APISERVER_CA")?,
            state: state.to_path_buf(),
            owned: true,
            restarted: std::sync::Mutex::new(None),
        })
    }

    /// Whether `/readyz` answers `ok` now (anonymous requests may read it).
    pub fn ready(&self) -> bool {
        Command::new("curl")
            .args(["-sS", "-m", "3", "--cacert", &self.ca])
            .arg(format!("{}/readyz", self.url))
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|o| o.stdout == b"ok")
    }

    /// The API server's port.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// A client acting as the admin.
    pub fn admin(&self) -> Kube {
        self.client_with(&self.token)
    }

    /// A client acting with `token` (e.g. a ServiceAccount's).
    pub fn client_with(&self, token: &str) -> Kube {
        Kube::new(
            &self.url,
            std::fs::read(&self.ca).unwrap(),
            token.to_string(),
        )
    }

    /// Kills the kube-apiserver (etcd keeps running) and returns its command line, for
    /// [`ApiServer::start_again`]. Only for a private server.
    pub fn kill_apiserver(&self) -> Vec<String> {
        assert!(self.owned, "only a test's own API server may be stopped");
        let pid: i32 = std::fs::read_to_string(self.state.join("apiserver.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8(a.to_vec()).unwrap())
            .collect();
        assert!(
            args.iter()
                .any(|a| a.contains(self.state.to_str().unwrap())),
            "pid {pid} is not this test's kube-apiserver: {args:?}"
        );
        let pid = rustix::process::Pid::from_raw(pid).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
        let end = Instant::now() + READY_DEADLINE;
        while TcpStream::connect(("127.0.0.1", self.port())).is_ok() {
            assert!(Instant::now() < end, "kube-apiserver still listens");
            std::thread::sleep(POLL);
        }
        args
    }

    /// Starts the kube-apiserver again with the command line [`ApiServer::kill_apiserver`]
    /// returned (same port, certificates, tokens and etcd), records its pid where the tool's
    /// `kube-apiserver-down` and watchdog look, and waits for `/readyz`.
    pub fn start_again(&self, args: &[String]) {
        use std::os::unix::process::CommandExt;
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.state.join("apiserver.log"))
            .unwrap();
        let child = Command::new(&args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Its own process group, as the tool's `setsid` start: a Ctrl-C to the test run
            // must not reach it before the tool's clean-up does.
            .process_group(0)
            .spawn()
            .unwrap();
        let mut f = std::fs::File::create(self.state.join("apiserver.pid")).unwrap();
        writeln!(f, "{}", child.id()).unwrap();
        *self.restarted.lock().unwrap() = Some(child);
        let end = Instant::now() + READY_DEADLINE;
        while !self.ready() {
            assert!(
                Instant::now() < end,
                "the restarted kube-apiserver is not ready; see {}",
                self.state.join("apiserver.log").display()
            );
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if self.owned {
            let _ = Command::new(tool("kube-apiserver-down"))
                .arg(&self.state)
                .status();
        }
        if let Some(mut child) = self.restarted.lock().unwrap().take() {
            let _ = child.wait();
        }
    }
}

/// The shared server in `dir`, when it answers and the run that started it is still alive
/// (its watchdog would otherwise stop it under us).
fn reusable(dir: &Path, owner_file: &Path) -> Option<ApiServer> {
    let owner: u32 = std::fs::read_to_string(owner_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if !Path::new(&format!("/proc/{owner}")).exists() {
        return None;
    }
    let mut api = ApiServer::read(dir)?;
    api.owned = false;
    api.ready().then_some(api)
}

/// A client of the API server, for what the tests set up and check.
#[derive(Clone)]
pub struct Kube {
    http: reqwest::Client,
    url: String,
    ca: Vec<u8>,
    token: String,
}

/// One API answer: status and JSON body (`Null` when the body is not JSON).
#[derive(Debug)]
pub struct ApiAnswer {
    pub status: u16,
    pub body: Value,
}

impl Kube {
    fn new(url: &str, ca: Vec<u8>, token: String) -> Kube {
        let http = reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Kube {
            http,
            url: url.to_string(),
            ca,
            token,
        }
    }

    /// The same client with its own connection pool: pooled connections belong to the runtime
    /// that opened them, which a `Drop` running on another thread's runtime must not wait for.
    fn fresh(&self) -> Kube {
        Kube::new(&self.url, self.ca.clone(), self.token.clone())
    }

    /// One request; `body` is (content type, text).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, String)>,
    ) -> ApiAnswer {
        self.try_call(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("the API server does not answer {path}: {e}"))
    }

    /// One request, or why the API server did not answer.
    pub async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, String)>,
    ) -> Result<ApiAnswer, reqwest::Error> {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .header("accept", "application/json");
        if let Some((ct, text)) = body {
            r = r.header("content-type", ct).body(text);
        }
        let r = r.send().await?;
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        Ok(ApiAnswer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        })
    }

    pub async fn get(&self, path: &str) -> ApiAnswer {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// GET that must answer 200; returns the object.
    pub async fn get_ok(&self, path: &str) -> Value {
        let a = self.get(path).await;
        assert_eq!(a.status, 200, "GET {path}: {:?}", a.body);
        a.body
    }

    /// POST that must answer 201; returns the created object.
    pub async fn create(&self, path: &str, object: Value) -> Value {
        let a = self
            .call(
                reqwest::Method::POST,
                path,
                Some(("application/json", object.to_string())),
            )
            .await;
        assert_eq!(a.status, 201, "POST {path}: {:?}", a.body);
        a.body
    }

    /// JSON merge patch that must answer 200 (also for `/status` subresources).
    pub async fn merge_patch(&self, path: &str, patch: Value) -> Value {
        let a = self
            .call(
                reqwest::Method::PATCH,
                path,
                Some(("application/merge-patch+json", patch.to_string())),
            )
            .await;
        assert_eq!(a.status, 200, "PATCH {path}: {:?}", a.body);
        a.body
    }

    /// Server-side apply of one object (YAML or JSON text) at its own `path` (which may carry
    /// a query, e.g. `dryRun=All`).
    pub async fn apply(&self, path: &str, doc: &str) -> ApiAnswer {
        let sep = if path.contains('?') { '&' } else { '?' };
        self.call(
            reqwest::Method::PATCH,
            &format!("{path}{sep}fieldManager=harp-tests&force=true"),
            Some(("application/apply-patch+yaml", doc.to_string())),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> u16 {
        self.call(reqwest::Method::DELETE, path, None).await.status
    }
}

/// A fresh namespace; deleted (and finalized) on drop, best effort.
pub struct TestNamespace {
    pub name: String,
    kube: Kube,
}

impl TestNamespace {
    pub async fn create(api: &ApiServer) -> TestNamespace {
        let name = format!("harp-test-{:08x}", rand::random::<u32>());
        let kube = api.admin();
        kube.create(
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        )
        .await;
        TestNamespace { name, kube }
    }

    /// `/api/v1/namespaces/<ns>/<rest>`.
    pub fn core(&self, rest: &str) -> String {
        format!("/api/v1/namespaces/{}/{rest}", self.name)
    }

    /// `/apis/apps/v1/namespaces/<ns>/<rest>`.
    pub fn apps(&self, rest: &str) -> String {
        format!("/apis/apps/v1/namespaces/{}/{rest}", self.name)
    }

    /// `/apis/rbac.authorization.k8s.io/v1/namespaces/<ns>/<rest>`.
    pub fn rbac(&self, rest: &str) -> String {
        format!(
            "/apis/rbac.authorization.k8s.io/v1/namespaces/{}/{rest}",
            self.name
        )
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let kube = self.kube.fresh();
        let name = self.name.clone();
        // Drop cannot await, and may run inside the test's runtime: a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let path = format!("/api/v1/namespaces/{name}");
                let _ = kube.try_call(reqwest::Method::DELETE, &path, None).await;
                let finalize = json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name}, "spec": {"finalizers": []}});
                let _ = kube
                    .try_call(
                        reqwest::Method::PUT,
                        &format!("{path}/finalize"),
                        Some(("application/json", finalize.to_string())),
                    )
                    .await;
            })
        })
        .join();
    }
}

/// A harp for `api`, acting in namespace `ns` with the admin token.
pub fn harness(api: &ApiServer, ns: &str) -> Harness {
    Harness::builder().envs(&[
        ("HP_K8S_ENABLED", "true"),
        ("HP_K8S_API_SERVER", &api.url),
        ("HP_K8S_CA_FILE", &api.ca),
        ("HP_K8S_BEARER_TOKEN", &api.token),
        ("HP_K8S_NAMESPACE", ns),
    ])
}

/// AppAPI's Kubernetes calls, as the tests make them.
impl TestHarp {
    /// `POST /exapps/app_api/k8s/exapp/<op>` with a JSON body.
    pub async fn k8s(&self, op: &str, body: Value) -> Answer {
        self.k8s_raw(op, body.to_string()).await
    }

    /// `POST /exapps/app_api/k8s/exapp/<op>` with any body text.
    pub async fn k8s_raw(&self, op: &str, body: String) -> Answer {
        k8s_call(&self.url(""), op, body).await
    }
}

/// `POST <base>/exapps/app_api/k8s/exapp/<op>` (for a harp child process too).
pub async fn k8s_call(base: &str, op: &str, body: String) -> Answer {
    let r = super::client()
        .post(format!("{base}/exapps/app_api/k8s/exapp/{op}"))
        .header("harp-shared-key", KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("harp answers");
    answer(r).await
}

/// A Pod of `deployment` as its ReplicaSet would make it, bound to [`POD_NODE`].
pub fn pod(name: &str, deployment: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": deployment, "pod-template-hash": "7d9c5b8f6"},
        },
        "spec": {
            "nodeName": POD_NODE,
            "containers": [{"name": "app", "image": "registry.invalid/exapp:1"}],
        },
    })
}

/// A kubelet's status for a Pod whose `app` container is in `state` (`ready` as given).
pub fn pod_status(phase: &str, ready: bool, state: Value) -> Value {
    let cond = |t: &str, ok: bool| {
        json!({"type": t, "status": if ok { "True" } else { "False" },
               "lastTransitionTime": "2026-01-01T00:00:00Z"})
    };
    json!({"status": {
        "phase": phase,
        "hostIP": "192.0.2.10",
        "podIP": "10.244.0.7",
        "podIPs": [{"ip": "10.244.0.7"}],
        "startTime": "2026-01-01T00:00:00Z",
        "conditions": [
            cond("Initialized", true),
            cond("PodScheduled", true),
            cond("ContainersReady", ready),
            cond("Ready", ready),
        ],
        "containerStatuses": [{
            "name": "app",
            "image": "registry.invalid/exapp:1",
            "imageID": "",
            "ready": ready,
            "restartCount": 0,
            "state": state,
        }],
    }})
}

/// The Pod is running and ready.
pub fn running_ready() -> Value {
    pod_status(
        "Running",
        true,
        json!({"running": {"startedAt": "2026-01-01T00:00:01Z"}}),
    )
}

/// The container runs (the image was pulled) but is not ready.
pub fn running_not_ready() -> Value {
    pod_status(
        "Running",
        false,
        json!({"running": {"startedAt": "2026-01-01T00:00:01Z"}}),
    )
}

/// The container waits with `reason` (`ContainerCreating` while pulling, `ErrImagePull`, …).
pub fn waiting(reason: &str, message: &str) -> Value {
    pod_status(
        "Pending",
        false,
        json!({"waiting": {"reason": reason, "message": message}}),
    )
}

/// The Pod ended in `phase` (`Succeeded` or `Failed`) with the container's exit `code`.
pub fn ended(phase: &str, code: i32) -> Value {
    pod_status(
        phase,
        false,
        json!({"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
               "startedAt": "2026-01-01T00:00:01Z", "finishedAt": "2026-01-01T00:00:02Z"}}),
    )
}

/// A Node with these addresses, made ready (or not) the way a kubelet reports it.
pub async fn node(kube: &Kube, name: &str, labels: Value, addresses: Value, ready: bool) {
    kube.create(
        "/api/v1/nodes",
        json!({"apiVersion": "v1", "kind": "Node",
               "metadata": {"name": name, "labels": labels}}),
    )
    .await;
    kube.merge_patch(
        &format!("/api/v1/nodes/{name}/status"),
        json!({"status": {
            "addresses": addresses,
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                            "reason": "KubeletReady", "message": "test",
                            "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        }}),
    )
    .await;
}

/// Deletes cluster-scoped Nodes on drop (best effort), since every test shares the server.
pub struct NodeCleanup {
    pub kube: Kube,
    pub names: Vec<String>,
}

impl Drop for NodeCleanup {
    fn drop(&mut self) {
        let kube = self.kube.fresh();
        let names = std::mem::take(&mut self.names);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                for n in names {
                    let path = format!("/api/v1/nodes/{n}");
                    let _ = kube.try_call(reqwest::Method::DELETE, &path, None).await;
                }
            })
        })
        .join();
    }
}
