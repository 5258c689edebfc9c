//! Kubernetes backend (contract §4.8, §4.9): AppAPI's `/k8s/exapp/*` operations turned into
//! PVCs, Deployments and Services in one namespace, and each ExApp's upstream resolved from
//! the cluster on metadata fetches and storage pushes.
//!
//! Owns: how `HP_K8S_*` values are interpreted (`settings`), the API client (`client`), how
//! request bodies are checked (`payload`), the objects harp creates (`manifest`), the lifecycle
//! operations (`ops`) and exposure / upstream resolution (`upstream`). Must not touch `docker/`
//! (the two backends share no state), must not import `config` (`config` parses the
//! environment and calls [`K8sSettings::from_lookup`]) and never talks to Nextcloud: `expose`
//! answers an address and the control API stores it.
//!
//! The API client is typed requests over the `reqwest` (rustls) harp already links, reading
//! JSON as `serde_json::Value` for the few fields harp needs: `kube`/`k8s-openapi` add minutes
//! of cold compile on CI's two cores and megabytes to a ~10 MB image for five resource kinds.

mod client;
mod manifest;
mod names;
mod ops;
mod payload;
mod settings;
mod upstream;

pub(crate) use settings::K8sSettings;
pub(crate) use upstream::Exposed;

use crate::contract::{ControlError, ControlReply};
use client::{Answer, Call, Client, K8sError};
use payload::Fields;
use std::time::Duration;

/// `/info`'s reachability probe gives up after this (contract §4.2 asks for about 3 s; AppAPI's
/// own pre-flight allows 5 s).
const INFO_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What a Kubernetes operation answered: a reply, or an exposure the control API stores in
/// the metadata cache before replying.
pub(crate) enum Outcome {
    Reply(ControlReply),
    Exposed(Exposed),
}

/// The backend: settings plus a client, or why there is no client (answered on every call).
pub(crate) struct Backend {
    settings: K8sSettings,
    client: Result<Client, String>,
}

impl From<K8sError> for ControlError {
    fn from(e: K8sError) -> ControlError {
        ControlError::Unavailable(e.to_string())
    }
}

impl Backend {
    /// `None` when `HP_K8S_ENABLED` is off. A client that cannot be built (no API server, a bad
    /// CA file) leaves a backend that answers every call with 503 saying why.
    pub(crate) fn new(settings: &K8sSettings) -> Option<Backend> {
        if !settings.enabled {
            return None;
        }
        let client = Client::new(settings).map_err(|e| e.to_string());
        match &client {
            Ok(c) => tracing::info!(
                api_server = c.base(),
                namespace = %settings.namespace,
                "Kubernetes backend enabled"
            ),
            Err(e) => tracing::warn!("Kubernetes backend enabled but unusable: {e}"),
        }
        Some(Backend {
            settings: settings.clone(),
            client,
        })
    }

    fn namespace(&self) -> &str {
        &self.settings.namespace
    }

    async fn call(&self, call: Call<'_>) -> Result<Answer, K8sError> {
        match &self.client {
            Ok(c) => c.call(call).await,
            Err(_) => Err(K8sError::NotConfigured),
        }
    }

    async fn get_deployment(&self, name: &str) -> Result<Answer, K8sError> {
        let ns = self.namespace();
        self.call(Call::on("get", "deployments", ns, Some(name)))
            .await
    }

    /// One `/k8s/exapp/<op>` call.
    pub(crate) async fn handle(&self, op: &str, body: &[u8]) -> Result<Outcome, ControlError> {
        if let Err(why) = &self.client {
            return Err(ControlError::Unavailable(why.clone()));
        }
        let f = Fields::parse(body)?;
        let reply = match op {
            "exists" => ops::exists(self, &f).await?,
            "create" => ops::create(self, &f).await?,
            "start" => ops::scale(self, &f, 1).await?,
            "stop" => ops::scale(self, &f, 0).await?,
            "wait_for_start" => ops::wait_for_start(self, &f).await?,
            "remove" => ops::remove(self, &f).await?,
            "install_certificates" => ops::install_certificates(&f)?,
            "expose" => return Ok(Outcome::Exposed(upstream::expose(self, &f).await?)),
            _ => return Err(ControlError::NotFound),
        };
        Ok(Outcome::Reply(reply))
    }

    /// `/info`'s `kubernetes` block (contract §4.2): reachable only if `GET /api` answers 200
    /// within [`INFO_PROBE_TIMEOUT`].
    pub(crate) async fn info(&self) -> serde_json::Value {
        let reachable = match &self.client {
            Ok(c) => matches!(
                tokio::time::timeout(INFO_PROBE_TIMEOUT, c.get("/api")).await,
                Ok(Ok((200, _)))
            ),
            Err(_) => false,
        };
        serde_json::json!({
            "enabled": true,
            "api_server": self.settings.api_server.clone().unwrap_or_default(),
            "reachable": reachable,
            "namespace": self.settings.namespace,
        })
    }
}

/// For `fuzz/` only: checks a `create` or `expose` body as the operation does and returns the
/// objects it would send (PVC and Deployment, or the Service), with no API call. Checked
/// invariant: every name in them is a DNS-1123 label.
#[doc(hidden)]
pub fn objects_for_fuzzing(op: &str, body: &[u8]) -> Result<Vec<serde_json::Value>, String> {
    let settings = K8sSettings::from_lookup(|var| {
        (var == "HP_K8S_HOST_ALIASES").then_some("nc.local:10.0.0.5,cloud:10.0.0.5")
    })
    .map_err(|e| e.to_string())?;
    let f = Fields::parse(body).map_err(|e| e.to_string())?;
    match op {
        "create" => {
            let (_, pvc, deployment) =
                ops::create_objects(&f, &settings).map_err(|e| e.to_string())?;
            Ok(vec![pvc, deployment])
        }
        _ => {
            let r = upstream::ExposeRequest::parse(&f).map_err(|e| e.to_string())?;
            Ok(r.service().into_iter().collect())
        }
    }
}

/// `harp check --reach-k8s`: builds the client from the validated settings and asks the API
/// server's `/readyz`; the error names the server (or what is missing), never the token.
pub(crate) async fn reach(settings: &K8sSettings) -> Result<(), String> {
    let client = Client::new(settings).map_err(|e| e.to_string())?;
    client.readyz().await.map_err(|e| e.to_string())
}
