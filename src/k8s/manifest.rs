//! The objects harp creates (contract §4.8): PVC, Deployment and Service manifests, built from
//! checked request fields. Pure: no I/O, unit-tested.

use super::names::HostAlias;
use super::payload::K8sNames;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The label that marks a Service as harp's own: `remove` deletes only those.
pub(crate) const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub(crate) const MANAGED_BY: &str = "harp";
pub(crate) const PART_OF_LABEL: &str = "app.kubernetes.io/part-of";

/// Annotations a manually exposed ExApp's Deployment carries, so a restarted harp finds its
/// upstream again (there is no Service to read it from).
pub(crate) const ANNOTATION_EXPOSE_TYPE: &str = "appapi.nextcloud.com/expose-type";
pub(crate) const ANNOTATION_UPSTREAM_HOST: &str = "appapi.nextcloud.com/upstream-host";
pub(crate) const ANNOTATION_UPSTREAM_PORT: &str = "appapi.nextcloud.com/upstream-port";

/// The data volume claim every role of an ExApp shares.
pub(crate) fn pvc(names: &K8sNames, size: &str, class: Option<&str>) -> Value {
    let base = names.part_of();
    let mut spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
    });
    if let Some(class) = class {
        spec["storageClassName"] = json!(class);
    }
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": names.pvc(),
            "labels": {
                "app.kubernetes.io/name": base,
                PART_OF_LABEL: base,
                "app.kubernetes.io/component": "exapp-data",
            },
        },
        "spec": spec,
    })
}

/// What `create` puts in the Deployment besides the names.
pub(crate) struct PodSpec<'a> {
    pub(crate) image: &'a str,
    /// `KEY=VALUE` entries; an entry without `=` is a name with an empty value.
    pub(crate) env: &'a [String],
    pub(crate) resources: Option<Value>,
    pub(crate) host_aliases: &'a [HostAlias],
}

/// A Deployment with 0 replicas (`start` scales it): one container `app` with the data volume.
pub(crate) fn deployment(names: &K8sNames, pod: &PodSpec<'_>) -> Value {
    let name = names.deployment();
    let labels = names.labels();
    let env: Vec<Value> = pod
        .env
        .iter()
        .filter(|e| !e.is_empty())
        .map(|e| match e.split_once('=') {
            Some((k, v)) => json!({"name": k, "value": v}),
            None => json!({"name": e, "value": ""}),
        })
        .collect();
    let mut container = json!({
        "name": "app",
        "image": pod.image,
        "imagePullPolicy": "IfNotPresent",
        "env": env,
        "volumeMounts": [{"name": "data", "mountPath": names.mount_path()}],
    });
    if let Some(r) = &pod.resources {
        container["resources"] = r.clone();
    }
    let mut spec = json!({
        "containers": [container],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": names.pvc()}}],
    });
    if !pod.host_aliases.is_empty() {
        spec["hostAliases"] = pod
            .host_aliases
            .iter()
            .map(|a| json!({"ip": a.ip.to_string(), "hostnames": a.hostnames}))
            .collect();
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": labels}, "spec": spec},
        },
    })
}

/// What `expose` asks of a Service.
pub(crate) struct ServiceSpec<'a> {
    /// `NodePort`, `ClusterIP` or `LoadBalancer`.
    pub(crate) kind: &'static str,
    pub(crate) port: u16,
    pub(crate) service_port: Option<u16>,
    pub(crate) node_port: Option<u16>,
    pub(crate) external_traffic_policy: Option<&'static str>,
    pub(crate) load_balancer_ip: Option<&'a str>,
    pub(crate) annotations: &'a BTreeMap<String, String>,
    pub(crate) labels: &'a BTreeMap<String, String>,
}

/// A Service selecting the ExApp's pods, labelled as harp's (so `remove` may delete it).
pub(crate) fn service(names: &K8sNames, s: &ServiceSpec<'_>) -> Value {
    let mut labels = names.labels();
    // The caller's labels may add to harp's but not take ownership or identity away.
    for (k, v) in s.labels {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let mut port = json!({
        "name": "http",
        "port": s.service_port.unwrap_or(s.port),
        "targetPort": s.port,
    });
    if s.kind == "NodePort" {
        if let Some(np) = s.node_port {
            port["nodePort"] = json!(np);
        }
    }
    let mut spec = json!({
        "type": s.kind,
        "selector": {"app": names.deployment()},
        "ports": [port],
    });
    if let (Some(p), "NodePort" | "LoadBalancer") = (s.external_traffic_policy, s.kind) {
        spec["externalTrafficPolicy"] = json!(p);
    }
    if let (Some(ip), "LoadBalancer") = (s.load_balancer_ip, s.kind) {
        spec["loadBalancerIP"] = json!(ip);
    }
    let mut metadata = json!({"name": names.deployment(), "labels": labels});
    if !s.annotations.is_empty() {
        metadata["annotations"] = json!(s.annotations);
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::payload::Fields;

    fn names(v: Value) -> K8sNames {
        Fields::parse(v.to_string().as_bytes())
            .unwrap()
            .names()
            .unwrap()
    }

    #[test]
    fn deployment_matches_the_contract() {
        let n = names(json!({"name": "app_x", "role_suffix": "rp"}));
        let aliases = crate::k8s::names::host_aliases("nc:10.0.0.5,cloud:10.0.0.5").unwrap();
        let env = ["A=1=2".to_string(), "B".to_string(), String::new()];
        let d = deployment(
            &n,
            &PodSpec {
                image: "ghcr.io/x/y:1",
                env: &env,
                resources: None,
                host_aliases: &aliases,
            },
        );
        assert_eq!(d["metadata"]["name"], "nc-app-app-x-rp");
        assert_eq!(d["spec"]["replicas"], 0);
        assert_eq!(
            d["spec"]["selector"]["matchLabels"]["app"],
            "nc-app-app-x-rp"
        );
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["name"], "app");
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(
            c["env"],
            json!([{"name": "A", "value": "1=2"}, {"name": "B", "value": ""}])
        );
        assert_eq!(c["volumeMounts"][0]["mountPath"], "/nc_app_app_x_data");
        assert_eq!(
            d["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
            "nc-app-app-x-data"
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["hostAliases"],
            json!([{"ip": "10.0.0.5", "hostnames": ["nc", "cloud"]}])
        );
    }

    #[test]
    fn service_is_marked_as_harps_and_keeps_its_identity() {
        let n = names(json!({"name": "a"}));
        let extra = BTreeMap::from([
            ("team".to_string(), "x".to_string()),
            ("app".to_string(), "hijack".to_string()),
            (MANAGED_BY_LABEL.to_string(), "someone".to_string()),
        ]);
        let s = service(
            &n,
            &ServiceSpec {
                kind: "NodePort",
                port: 23000,
                service_port: Some(80),
                node_port: Some(30080),
                external_traffic_policy: Some("Local"),
                load_balancer_ip: Some("1.2.3.4"),
                annotations: &BTreeMap::new(),
                labels: &extra,
            },
        );
        let labels = &s["metadata"]["labels"];
        assert_eq!(labels["team"], "x");
        assert_eq!(labels["app"], "nc-app-a");
        assert_eq!(labels[MANAGED_BY_LABEL], "harp");
        assert_eq!(
            s["spec"]["ports"][0],
            json!({"name": "http", "port": 80, "targetPort": 23000, "nodePort": 30080})
        );
        assert_eq!(s["spec"]["externalTrafficPolicy"], "Local");
        assert!(s["spec"].get("loadBalancerIP").is_none());
        assert!(s["metadata"].get("annotations").is_none());
    }

    #[test]
    fn pvc_carries_size_class_and_data_labels() {
        let n = names(json!({"name": "a", "instance_id": "i"}));
        let p = pvc(&n, "1Gi", Some("fast"));
        assert_eq!(p["metadata"]["name"], "nc-app-i-a-data");
        assert_eq!(
            p["metadata"]["labels"]["app.kubernetes.io/component"],
            "exapp-data"
        );
        assert_eq!(p["spec"]["resources"]["requests"]["storage"], "1Gi");
        assert_eq!(p["spec"]["storageClassName"], "fast");
        assert!(pvc(&n, "1Gi", None)["spec"]
            .get("storageClassName")
            .is_none());
    }
}
