//! Where an ExApp on Kubernetes is reached: `expose` (contract §4.8) creates a Service (or
//! records a manual upstream on the Deployment) and answers the address; [`Backend::resolve`]
//! finds that address again for a metadata fetch or storage push, so a restarted harp routes
//! the same way without AppAPI calling `expose` again.

use super::client::{BodyKind, Call};
use super::manifest::{
    self, ServiceSpec, ANNOTATION_EXPOSE_TYPE, ANNOTATION_UPSTREAM_HOST, ANNOTATION_UPSTREAM_PORT,
    PART_OF_LABEL,
};
use super::names::sanitize_name;
use super::payload::{bad, Fields, K8sNames};
use super::Backend;
use crate::contract::ControlError;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// `expose`'s answer, which the control API also stores in the metadata cache.
#[derive(Debug)]
pub(crate) struct Exposed {
    pub(crate) app_id: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) expose_type: &'static str,
    pub(crate) service_name: String,
    pub(crate) namespace: String,
}

impl Exposed {
    pub(crate) fn reply(&self) -> Value {
        json!({
            "appId": self.app_id,
            "host": self.host,
            "port": self.port,
            "exposeType": self.expose_type,
            "serviceName": self.service_name,
            "namespace": self.namespace,
        })
    }
}

/// Which node address a NodePort upstream uses.
struct NodeChoice<'a> {
    address_type: &'static str,
    name: Option<&'a str>,
    label_selector: Option<&'a str>,
}

const DEFAULT_NODES: NodeChoice<'static> = NodeChoice {
    address_type: "InternalIP",
    name: None,
    label_selector: None,
};

fn port_of(v: &Value, what: &str) -> Result<u16, ControlError> {
    v.as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| ControlError::Unavailable(format!("the Service has no {what}")))
}

/// An `expose` body, checked: everything the operation needs before its first API call.
pub(crate) struct ExposeRequest {
    names: K8sNames,
    port: u16,
    expose_type: &'static str,
    upstream_host: Option<String>,
    upstream_port: Option<u16>,
    service_port: Option<u16>,
    node_port: Option<u16>,
    external_traffic_policy: Option<&'static str>,
    load_balancer_ip: Option<String>,
    annotations: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    wait_timeout: Duration,
    wait_interval: Duration,
    node_address_type: &'static str,
    node_name: Option<String>,
    node_label_selector: Option<String>,
}

impl ExposeRequest {
    pub(crate) fn parse(f: &Fields) -> Result<ExposeRequest, ControlError> {
        let port16 = |v: Option<i64>| v.map(|p| p as u16);
        let r = ExposeRequest {
            names: f.names()?,
            port: port16(f.int("port", 1, 65535)?).ok_or_else(|| bad("port", "is required"))?,
            expose_type: f
                .choice(
                    "expose_type",
                    &["nodeport", "clusterip", "loadbalancer", "manual"],
                )?
                .unwrap_or("clusterip"),
            upstream_host: f.string("upstream_host")?.filter(|h| !h.is_empty()),
            upstream_port: port16(f.int("upstream_port", 1, 65535)?),
            service_port: port16(f.int("service_port", 1, 65535)?),
            node_port: port16(f.int("node_port", 30000, 32767)?),
            external_traffic_policy: f.choice("external_traffic_policy", &["Cluster", "Local"])?,
            load_balancer_ip: f.string("load_balancer_ip")?,
            annotations: f.string_map("service_annotations")?,
            labels: f.string_map("service_labels")?,
            wait_timeout: Duration::from_secs_f64(
                f.number("wait_timeout_seconds", 0.0, 600.0)?
                    .unwrap_or(60.0),
            ),
            wait_interval: Duration::from_secs_f64(
                f.number("wait_interval_seconds", 0.1, 10.0)?.unwrap_or(1.0),
            ),
            node_address_type: f
                .choice("node_address_type", &["InternalIP", "ExternalIP"])?
                .unwrap_or("InternalIP"),
            node_name: f.string("node_name")?,
            node_label_selector: f.string("node_label_selector")?,
        };
        if r.expose_type == "manual" && r.upstream_host.is_none() {
            return Err(bad(
                "upstream_host",
                "is required when expose_type is manual",
            ));
        }
        Ok(r)
    }

    /// The Service `expose` creates; `None` for `manual`, which creates none.
    pub(crate) fn service(&self) -> Option<Value> {
        let kind = match self.expose_type {
            "manual" => return None,
            "nodeport" => "NodePort",
            "loadbalancer" => "LoadBalancer",
            _ => "ClusterIP",
        };
        Some(manifest::service(
            &self.names,
            &ServiceSpec {
                kind,
                port: self.port,
                service_port: self.service_port,
                node_port: self.node_port,
                external_traffic_policy: self.external_traffic_policy,
                load_balancer_ip: self.load_balancer_ip.as_deref(),
                annotations: &self.annotations,
                labels: &self.labels,
            },
        ))
    }

    fn nodes(&self) -> NodeChoice<'_> {
        NodeChoice {
            address_type: self.node_address_type,
            name: self.node_name.as_deref(),
            label_selector: self.node_label_selector.as_deref(),
        }
    }
}

pub(crate) async fn expose(b: &Backend, f: &Fields) -> Result<Exposed, ControlError> {
    let r = ExposeRequest::parse(f)?;
    let ns = b.namespace();
    let service_name = r.names.deployment();
    let exposed = |host: String, port: u16| Exposed {
        app_id: r.names.app_id(),
        host,
        port,
        expose_type: r.expose_type,
        service_name: service_name.clone(),
        namespace: ns.to_string(),
    };
    let Some(service) = r.service() else {
        // `manual`: parse() made sure of the host.
        let host = r.upstream_host.clone().unwrap_or_default();
        let port = r.upstream_port.unwrap_or(r.port);
        annotate_manual(b, &service_name, &host, port).await;
        return Ok(exposed(host, port));
    };
    let a = b
        .call(Call::on("create", "services", ns, None).body(BodyKind::Json, &service))
        .await?;
    if !matches!(a.status, 200 | 201 | 409) {
        return Err(super::ops::unexpected(
            &format!("creating Service '{service_name}'"),
            &a,
        ));
    }
    let svc = b.read_service(&service_name).await?;
    let upstream_host = r.upstream_host.clone();
    let (host, port) = match r.expose_type {
        "nodeport" => {
            let port = port_of(&svc["spec"]["ports"][0]["nodePort"], "nodePort")?;
            let host = match upstream_host {
                Some(h) => h,
                None => b.node_address(&r.nodes()).await?,
            };
            (host, port)
        }
        "loadbalancer" => {
            let port = port_of(&svc["spec"]["ports"][0]["port"], "port")?;
            let host = match upstream_host.or_else(|| load_balancer_host(&svc)) {
                Some(h) => h,
                None => {
                    b.wait_for_load_balancer(&service_name, r.wait_timeout, r.wait_interval)
                        .await?
                }
            };
            (host, port)
        }
        _ => {
            let port = port_of(&svc["spec"]["ports"][0]["port"], "port")?;
            (
                upstream_host.unwrap_or_else(|| cluster_host(&svc, &service_name, ns)),
                port,
            )
        }
    };
    Ok(exposed(host, port))
}

/// Records a manual upstream on the Deployment. Best effort, as in HaRP: the exposure holds
/// in harp's cache either way, and only a restarted harp needs the annotations.
async fn annotate_manual(b: &Backend, deployment: &str, host: &str, port: u16) {
    let ns = b.namespace();
    let patch = json!({"metadata": {"annotations": {
        ANNOTATION_EXPOSE_TYPE: "manual",
        ANNOTATION_UPSTREAM_HOST: host,
        ANNOTATION_UPSTREAM_PORT: port.to_string(),
    }}});
    let result = b
        .call(
            Call::on("patch", "deployments", ns, Some(deployment))
                .body(BodyKind::StrategicMerge, &patch),
        )
        .await;
    match result {
        Ok(a) if matches!(a.status, 200 | 201) => {}
        Ok(a) => {
            tracing::warn!(%deployment, status = a.status, "could not record the manual upstream on the Deployment: {}", a.message())
        }
        Err(e) => {
            tracing::warn!(%deployment, "could not record the manual upstream on the Deployment: {e}")
        }
    }
}

/// A ClusterIP Service's address: its cluster IP, else (headless) its cluster DNS name.
fn cluster_host(svc: &Value, name: &str, ns: &str) -> String {
    match svc["spec"]["clusterIP"].as_str() {
        Some(ip) if !ip.is_empty() && ip != "None" => ip.to_string(),
        _ => format!("{name}.{ns}.svc"),
    }
}

fn load_balancer_host(svc: &Value) -> Option<String> {
    let first = &svc["status"]["loadBalancer"]["ingress"][0];
    first["ip"]
        .as_str()
        .or_else(|| first["hostname"].as_str())
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

/// The manual upstream a Deployment's annotations record, if complete.
fn manual_upstream(deployment: &Value) -> Option<(String, u16)> {
    let a = &deployment["metadata"]["annotations"];
    if a[ANNOTATION_EXPOSE_TYPE] != "manual" {
        return None;
    }
    let host = a[ANNOTATION_UPSTREAM_HOST]
        .as_str()
        .filter(|h| !h.is_empty())?;
    let port = a[ANNOTATION_UPSTREAM_PORT]
        .as_str()?
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)?;
    Some((host.to_string(), port))
}

impl Backend {
    async fn read_service(&self, name: &str) -> Result<Value, ControlError> {
        let ns = self.namespace();
        let a = self
            .call(Call::on("get", "services", ns, Some(name)))
            .await?;
        if a.status != 200 {
            return Err(super::ops::unexpected(
                &format!("reading Service '{name}'"),
                &a,
            ));
        }
        Ok(a.json)
    }

    /// A node's address for a NodePort upstream: ready nodes first; the preferred address
    /// type, then the other IP type, then the host name.
    async fn node_address(&self, choice: &NodeChoice<'_>) -> Result<String, ControlError> {
        let query: Vec<(&str, &str)> = choice
            .label_selector
            .map(|s| vec![("labelSelector", s)])
            .unwrap_or_default();
        let a = self
            .call(
                Call::new(
                    "list",
                    "nodes",
                    "(cluster-wide)",
                    Method::GET,
                    "/api/v1/nodes".into(),
                )
                .query(&query),
            )
            .await?;
        if a.status != 200 {
            return Err(super::ops::unexpected("listing nodes", &a));
        }
        let items: Vec<&Value> = a.json["items"]
            .as_array()
            .map(|i| {
                i.iter()
                    .filter(|n| {
                        choice
                            .name
                            .map_or(true, |want| n["metadata"]["name"] == want)
                    })
                    .collect()
            })
            .unwrap_or_default();
        if items.is_empty() {
            return Err(ControlError::Unavailable(
                "No Kubernetes nodes found (after filtering).".into(),
            ));
        }
        let ready = |n: &&Value| {
            n["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        };
        let ready_nodes: Vec<&Value> = items.iter().copied().filter(ready).collect();
        let nodes = if ready_nodes.is_empty() {
            items
        } else {
            ready_nodes
        };
        let other = if choice.address_type == "InternalIP" {
            "ExternalIP"
        } else {
            "InternalIP"
        };
        for node in nodes {
            for wanted in [choice.address_type, other, "Hostname"] {
                let found = node["status"]["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| {
                        a["type"] == wanted && a["address"].as_str().is_some_and(|s| !s.is_empty())
                    });
                if let Some(a) = found {
                    return Ok(a["address"].as_str().unwrap_or_default().to_string());
                }
            }
        }
        Err(ControlError::Unavailable(
            "Could not determine a node address (no InternalIP, ExternalIP or Hostname).".into(),
        ))
    }

    /// Polls the Service until its load balancer has an address, at most `timeout`.
    async fn wait_for_load_balancer(
        &self,
        name: &str,
        timeout: Duration,
        interval: Duration,
    ) -> Result<String, ControlError> {
        let deadline = Instant::now() + timeout;
        loop {
            let svc = self.read_service(name).await?;
            if let Some(host) = load_balancer_host(&svc) {
                return Ok(host);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ControlError::Unavailable(format!(
                    "Timed out after {timeout:?} waiting for a LoadBalancer address for Service '{name}'"
                )));
            }
            tokio::time::sleep(interval.min(deadline - now)).await;
        }
    }

    /// The upstream of ExApp `app` as the cluster says (contract §4.8, last paragraph): the
    /// Service named after it, else the first Service labelled as part of it, else a manual
    /// upstream recorded on its Deployment(s); `None` when the cluster knows nothing of it.
    /// An API error other than 404 is an error, so a stale address is never cached.
    pub(crate) async fn resolve(&self, app: &str) -> Result<Option<(String, u16)>, String> {
        self.resolve_inner(app).await.map_err(|e| e.to_string())
    }

    async fn resolve_inner(&self, app: &str) -> Result<Option<(String, u16)>, ControlError> {
        let ns = self.namespace();
        let base = sanitize_name(&format!("nc_app_{app}"));
        let selector = format!("{PART_OF_LABEL}={base}");
        let by_label = [("labelSelector", selector.as_str())];
        let a = self
            .call(Call::on("get", "services", ns, Some(&base)))
            .await?;
        let svc = match a.status {
            200 => Some(a.json),
            404 => {
                let l = self
                    .call(Call::on("list", "services", ns, None).query(&by_label))
                    .await?;
                if l.status != 200 {
                    return Err(super::ops::unexpected(
                        &format!("listing Services of '{app}'"),
                        &l,
                    ));
                }
                l.json["items"].get(0).cloned()
            }
            _ => {
                return Err(super::ops::unexpected(
                    &format!("reading Service '{base}'"),
                    &a,
                ))
            }
        };
        if let Some(svc) = svc {
            let name = svc["metadata"]["name"]
                .as_str()
                .unwrap_or(&base)
                .to_string();
            let port = &svc["spec"]["ports"][0];
            return Ok(match svc["spec"]["type"].as_str().unwrap_or("ClusterIP") {
                "NodePort" => Some((
                    self.node_address(&DEFAULT_NODES).await?,
                    port_of(&port["nodePort"], "nodePort")?,
                )),
                "ClusterIP" => Some((
                    cluster_host(&svc, &name, ns),
                    port_of(&port["port"], "port")?,
                )),
                "LoadBalancer" => match load_balancer_host(&svc) {
                    Some(h) => Some((h, port_of(&port["port"], "port")?)),
                    None => None,
                },
                _ => None,
            });
        }
        // No Service: a manually exposed ExApp, recorded on its Deployment (or a role's).
        let d = self.get_deployment(&base).await?;
        match d.status {
            200 => {
                if let Some(up) = manual_upstream(&d.json) {
                    return Ok(Some(up));
                }
            }
            404 => {}
            _ => {
                return Err(super::ops::unexpected(
                    &format!("reading Deployment '{base}'"),
                    &d,
                ))
            }
        }
        let l = self
            .call(Call::on("list", "deployments", ns, None).query(&by_label))
            .await?;
        if l.status != 200 {
            return Err(super::ops::unexpected(
                &format!("listing Deployments of '{app}'"),
                &l,
            ));
        }
        Ok(l.json["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(manual_upstream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_addresses() {
        let svc = json!({"spec": {"clusterIP": "10.0.0.7"}, "status": {"loadBalancer": {"ingress": [{"hostname": "lb.example"}]}}});
        assert_eq!(cluster_host(&svc, "s", "ns"), "10.0.0.7");
        assert_eq!(
            cluster_host(&json!({"spec": {"clusterIP": "None"}}), "s", "ns"),
            "s.ns.svc"
        );
        assert_eq!(load_balancer_host(&svc).as_deref(), Some("lb.example"));
        assert_eq!(load_balancer_host(&json!({})), None);
    }

    #[test]
    fn manual_upstream_needs_all_three_annotations() {
        let d = |a: Value| json!({"metadata": {"annotations": a}});
        assert_eq!(
            manual_upstream(&d(
                json!({ANNOTATION_EXPOSE_TYPE: "manual", ANNOTATION_UPSTREAM_HOST: "h", ANNOTATION_UPSTREAM_PORT: "81"})
            )),
            Some(("h".to_string(), 81))
        );
        assert_eq!(
            manual_upstream(&d(
                json!({ANNOTATION_EXPOSE_TYPE: "manual", ANNOTATION_UPSTREAM_HOST: "h"})
            )),
            None
        );
        assert_eq!(
            manual_upstream(&d(
                json!({ANNOTATION_EXPOSE_TYPE: "manual", ANNOTATION_UPSTREAM_HOST: "h", ANNOTATION_UPSTREAM_PORT: "0"})
            )),
            None
        );
        assert_eq!(
            manual_upstream(&d(json!({ANNOTATION_EXPOSE_TYPE: "nodeport"}))),
            None
        );
        assert_eq!(manual_upstream(&json!({})), None);
    }
}
