//! Kubernetes backend (contract §4.8, §4.9), first part: the typed `HP_K8S_*` settings and the
//! pure rules every operation needs (DNS-1123 names, host aliases, resource conversion).
//!
//! Owns: how `HP_K8S_*` values are interpreted, how Docker-style names become Kubernetes names,
//! how `HP_K8S_HOST_ALIASES` becomes pod `hostAliases`, and how Docker resource limits become
//! Kubernetes quantities. Must not touch `docker/` (the two backends share no state) and must not
//! import `config` (`config` parses the environment and calls [`K8sSettings::from_lookup`]).
//!
//! Not here yet: the API client and the eight operations. Until they exist the control API keeps
//! answering `/k8s/exapp/*` with 503 and `/info` keeps reporting Kubernetes as disabled, so
//! AppAPI is never told a backend exists that cannot act. The planned client is typed requests
//! over the `reqwest` (rustls) harp already links, with serde structs for only the fields harp
//! reads: `kube`/`k8s-openapi` add minutes of cold compile on CI's two cores and megabytes to a
//! ~10 MB image for five resource kinds.

// The name and resource rules are complete and unit-tested, but their callers (create, expose,
// upstream resolution) are the next step; until then only `host_aliases` is used outside tests.
#[cfg_attr(not(test), allow(dead_code))]
mod names;
mod settings;

pub(crate) use settings::K8sSettings;
