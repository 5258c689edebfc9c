//! Kubernetes backend (contract §4.8, §4.9), first part: the typed `HP_K8S_*` settings, the API
//! client, and the pure rules every operation needs (DNS-1123 names, host aliases, resources).
//!
//! Owns: how `HP_K8S_*` values are interpreted, how Docker-style names become Kubernetes names,
//! how `HP_K8S_HOST_ALIASES` becomes pod `hostAliases`, and how Docker resource limits become
//! Kubernetes quantities. Must not touch `docker/` (the two backends share no state) and must not
//! import `config` (`config` parses the environment and calls [`K8sSettings::from_lookup`]).
//!
//! The API client (`client`) is typed requests over the `reqwest` (rustls) harp already links,
//! with serde structs only for the fields harp reads: `kube`/`k8s-openapi` add minutes of cold
//! compile on CI's two cores and megabytes to a ~10 MB image for five resource kinds. Today it
//! serves `harp check --reach-k8s` (`/readyz`).
//!
//! Not here yet: the eight operations and upstream resolution. Until they exist the control API
//! keeps answering `/k8s/exapp/*` with 503 and `/info` keeps reporting Kubernetes as disabled, so
//! AppAPI is never told a backend exists that cannot act.

// The name and resource rules are complete and unit-tested, but their callers (create, expose,
// upstream resolution) are the next step; until then only `host_aliases` is used outside tests.
mod client;
#[cfg_attr(not(test), allow(dead_code))]
mod names;
mod settings;

pub(crate) use settings::K8sSettings;

/// `harp check --reach-k8s`: builds the client from the validated settings and asks the API
/// server's `/readyz`; the error names the server (or what is missing), never the token.
pub(crate) async fn reach(settings: &K8sSettings) -> Result<(), String> {
    let client = client::Client::new(settings).map_err(|e| e.to_string())?;
    client.readyz().await.map_err(|e| e.to_string())
}
