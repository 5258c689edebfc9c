//! `create` (§4.6): data volume first, then the container, both labelled as harp's (§7 #15).

use super::fields::{self, present, BindMount, Limits};
use super::{parse_field_err, NameFields};
use crate::contract::ControlReply;
use crate::docker::engine::Engine;
use crate::docker::names::Names;
use crate::docker::DockerError;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The body as sent; [`plan`] validates every field before the engine is touched.
#[derive(Debug, Deserialize)]
pub(super) struct CreateBody {
    #[serde(flatten)]
    names: NameFields,
    #[serde(default, deserialize_with = "present")]
    image_id: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    image: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    network_mode: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    environment_variables: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    restart_policy: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    compute_device: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    mount_points: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    resource_limits: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ComputeDevice {
    Cpu,
    Cuda,
    Rocm,
}

/// Everything `create` needs, validated before the engine is touched.
#[derive(Debug)]
struct Plan {
    names: Names,
    image: String,
    network_mode: String,
    env: Vec<String>,
    restart_policy: String,
    device: ComputeDevice,
    mounts: Vec<BindMount>,
    limits: Limits,
}

fn plan(body: CreateBody) -> Result<Plan, DockerError> {
    let names = body.names.names()?;
    // `image` is the alias Kubernetes-style payloads use when `image_id` is absent.
    let image = match fields::string("image_id", body.image_id)? {
        Some(id) => Some(id),
        None => fields::string("image", body.image)?,
    }
    .filter(|s| !s.is_empty())
    .ok_or_else(|| parse_field_err("'image_id' is required"))?;
    let device = match fields::string("compute_device", body.compute_device)?
        .as_deref()
        .unwrap_or("cpu")
    {
        "cpu" => ComputeDevice::Cpu,
        "cuda" => ComputeDevice::Cuda,
        "rocm" => ComputeDevice::Rocm,
        other => {
            return Err(parse_field_err(&format!(
                "'compute_device' must be cpu, cuda or rocm, not {other:?}"
            )))
        }
    };
    Ok(Plan {
        names,
        image,
        network_mode: fields::network_mode(body.network_mode)?,
        env: environment(body.environment_variables)?,
        restart_policy: fields::restart_policy(body.restart_policy)?,
        device,
        mounts: fields::mount_points(body.mount_points)?,
        limits: fields::resource_limits(body.resource_limits)?,
    })
}

/// `KEY=VALUE` strings passed verbatim; absent or `null` is none.
fn environment(v: Option<Value>) -> Result<Vec<String>, DockerError> {
    let refuse = || parse_field_err("'environment_variables' must be a list of strings");
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) => list
            .into_iter()
            .map(|e| match e {
                Value::String(s) => Ok(s),
                _ => Err(refuse()),
            })
            .collect(),
        Some(_) => Err(refuse()),
    }
}

/// The `POST /containers/create` body.
fn container_spec(p: &Plan) -> Value {
    let volume = p.names.volume();
    let mut mounts = vec![json!({
        "Type": "volume", "Source": volume, "Target": format!("/{volume}"), "ReadOnly": false,
    })];
    mounts.extend(p.mounts.iter().map(|m| {
        json!({"Type": "bind", "Source": m.source, "Target": m.target, "ReadOnly": m.read_only})
    }));
    let mut host = Map::new();
    host.insert("NetworkMode".into(), json!(p.network_mode));
    host.insert("RestartPolicy".into(), json!({"Name": p.restart_policy}));
    host.insert("Mounts".into(), Value::Array(mounts));
    match p.device {
        ComputeDevice::Cpu => {}
        ComputeDevice::Cuda => {
            host.insert(
                "DeviceRequests".into(),
                json!([{"Driver": "nvidia", "Count": -1, "Capabilities": [["compute", "utility"]]}]),
            );
        }
        ComputeDevice::Rocm => {
            let dev = |path: &str| json!({"PathOnHost": path, "PathInContainer": path, "CgroupPermissions": "rwm"});
            host.insert("Devices".into(), json!([dev("/dev/kfd"), dev("/dev/dri")]));
        }
    }
    if let Some(memory) = p.limits.memory {
        host.insert("Memory".into(), json!(memory));
    }
    if let Some(nano) = p.limits.nano_cpus {
        host.insert("NanoCpus".into(), json!(nano));
    }
    let mut spec = json!({
        "Image": p.image,
        "Hostname": p.names.name,
        "Env": p.env,
        "Labels": crate::docker::names::labels(&p.names),
        "HostConfig": Value::Object(host),
    });
    if p.network_mode != "host" && p.network_mode != "bridge" {
        spec["NetworkingConfig"] = json!({
            "EndpointsConfig": { p.network_mode.clone(): {"Aliases": [p.names.name]} }
        });
    }
    spec
}

pub(super) async fn create(
    engine: &Engine<'_>,
    body: CreateBody,
) -> Result<ControlReply, DockerError> {
    let plan = plan(body)?;
    ensure_volume(engine, &plan.names).await?;
    let container = plan.names.container();
    let reply = engine
        .post_json(
            &format!("/containers/create?name={container}"),
            &container_spec(&plan),
        )
        .await?;
    match reply.status.as_u16() {
        201 => {
            let id = reply
                .json()
                .and_then(|v| v.get("Id").and_then(|i| i.as_str()).map(str::to_owned))
                .ok_or_else(|| DockerError::BadResponse {
                    port: engine.port,
                    detail: "container create answer has no Id".into(),
                })?;
            Ok(ControlReply::Json(
                StatusCode::CREATED,
                json!({"id": id, "name": container}),
            ))
        }
        409 => Err(DockerError::Conflict(format!(
            "Container with name '{container}' already exists."
        ))),
        _ => Err(reply.unexpected(format!("create of '{container}'"))),
    }
}

async fn ensure_volume(engine: &Engine<'_>, names: &Names) -> Result<(), DockerError> {
    let volume = names.volume();
    let reply = engine.get(&format!("/volumes/{volume}")).await?;
    match reply.status.as_u16() {
        200 => Ok(()),
        404 => {
            let created = engine
                .post_json(
                    "/volumes/create",
                    &json!({"Name": volume, "Labels": crate::docker::names::labels(names)}),
                )
                .await?;
            if created.status == StatusCode::CREATED {
                Ok(())
            } else {
                Err(created.unexpected(format!("create of volume '{volume}'")))
            }
        }
        _ => Err(reply.unexpected(format!("inspect of volume '{volume}'"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_of(body: Value) -> Result<Value, DockerError> {
        let body: CreateBody = serde_json::from_value(body).unwrap();
        plan(body).map(|p| container_spec(&p))
    }

    #[test]
    fn appapi_payload_with_null_limits_builds_a_plain_spec() {
        let s = spec_of(json!({
            "name": "app", "image_id": "img:1", "start_container": true,
            "environment_variables": ["A=1"],
            "resource_limits": {"memory": null, "nanoCPUs": null},
        }))
        .unwrap();
        assert_eq!(s["Image"], "img:1");
        assert_eq!(s["Hostname"], "app");
        assert_eq!(s["Env"], json!(["A=1"]));
        assert_eq!(s["HostConfig"]["NetworkMode"], "bridge");
        assert_eq!(s["HostConfig"]["RestartPolicy"]["Name"], "unless-stopped");
        assert!(s["HostConfig"].get("Memory").is_none());
        assert!(s["HostConfig"].get("NanoCpus").is_none());
        assert!(s.get("NetworkingConfig").is_none());
        assert_eq!(
            s["HostConfig"]["Mounts"][0],
            json!({"Type": "volume", "Source": "nc_app_app_data", "Target": "/nc_app_app_data", "ReadOnly": false})
        );
        assert_eq!(s["Labels"]["org.nextcloud.harp.managed-by"], "harp");
    }

    #[test]
    fn limits_devices_aliases_and_image_alias() {
        let s = spec_of(json!({
            "name": "app", "image": "img:2", "network_mode": "mynet", "compute_device": "rocm",
            "resource_limits": {"memory": 1048576, "nanoCPUs": 500000000},
            "mount_points": [{"source": "/a/", "target": "/b", "mode": "ro"}, {"source": "/c", "target": "/d"}],
        }))
        .unwrap();
        assert_eq!(s["Image"], "img:2");
        assert_eq!(s["HostConfig"]["Memory"], 1048576);
        assert_eq!(s["HostConfig"]["NanoCpus"], 500000000);
        assert_eq!(
            s["NetworkingConfig"]["EndpointsConfig"]["mynet"]["Aliases"],
            json!(["app"])
        );
        assert_eq!(s["HostConfig"]["Devices"][0]["PathOnHost"], "/dev/kfd");
        assert_eq!(s["HostConfig"]["Devices"][1]["CgroupPermissions"], "rwm");
        assert_eq!(s["HostConfig"]["Mounts"][1]["ReadOnly"], true);
        assert_eq!(s["HostConfig"]["Mounts"][1]["Source"], "/a");
        assert_eq!(s["HostConfig"]["Mounts"][2]["ReadOnly"], false);
        let cuda =
            spec_of(json!({"name": "a", "image_id": "i", "compute_device": "cuda"})).unwrap();
        assert_eq!(cuda["HostConfig"]["DeviceRequests"][0]["Driver"], "nvidia");
        assert_eq!(cuda["HostConfig"]["DeviceRequests"][0]["Count"], -1);
        let host = spec_of(json!({"name": "a", "image_id": "i", "network_mode": "host"})).unwrap();
        assert!(host.get("NetworkingConfig").is_none());
    }

    /// The AppAPI payload with one field changed.
    fn appapi_with(key: &str, value: Value) -> Value {
        let mut body = json!({
            "name": "app-skeleton-python", "instance_id": "",
            "image_id": "ghcr.io/nextcloud/app-skeleton-python:latest", "network_mode": "host",
            "environment_variables": ["APP_ID=app-skeleton-python", "APP_PORT=23000"],
            "restart_policy": "unless-stopped", "compute_device": "cpu", "mount_points": [],
            "start_container": true,
            "resource_limits": {"memory": 536870912, "nanoCPUs": 1500000000},
        });
        body[key] = value;
        body
    }

    #[test]
    fn invalid_create_bodies_are_rejected_naming_the_field() {
        let mount = |source: &str, mode: Value| json!([{"source": source, "target": "/models", "mode": mode}]);
        for (key, value, field) in [
            ("name", json!(null), "name"),
            ("image_id", json!(""), "image_id"),
            ("image_id", json!(5), "image_id"),
            ("compute_device", json!("tpu"), "compute_device"),
            (
                "network_mode",
                json!("container:nc_app_other"),
                "network_mode",
            ),
            ("network_mode", json!("ns:/proc/1/ns/net"), "network_mode"),
            ("network_mode", json!("my net"), "network_mode"),
            ("network_mode", json!(""), "network_mode"),
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
                mount("/mnt/a", json!(null)),
                "mount_points[0].mode",
            ),
            (
                "mount_points",
                mount("/mnt/a", json!("x")),
                "mount_points[0].mode",
            ),
            ("restart_policy", json!("on-failure:3"), "restart_policy"),
            ("restart_policy", json!("Always"), "restart_policy"),
            ("restart_policy", json!("sometimes"), "restart_policy"),
            ("restart_policy", json!(null), "restart_policy"),
            ("name", json!("-a"), "name"),
            ("name", json!(".a"), "name"),
            ("name", json!("_a"), "name"),
            ("name", json!("x".repeat(64)), "name"),
            ("instance_id", json!("-i"), "instance_id"),
            ("role_suffix", json!("r/x"), "role_suffix"),
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
            (
                "resource_limits",
                json!({"memory": 1.5}),
                "resource_limits.memory",
            ),
            (
                "environment_variables",
                json!("A=1"),
                "environment_variables",
            ),
            ("environment_variables", json!([1]), "environment_variables"),
        ] {
            let e = spec_of(appapi_with(key, value.clone())).unwrap_err();
            assert!(
                matches!(&e, DockerError::BadRequest(m) if m.contains(&format!("'{field}'"))),
                "{key} = {value}: {e}"
            );
        }
        let e = spec_of(json!({"name": "a"})).unwrap_err();
        assert!(e.to_string().contains("'image_id' is required"), "{e}");
    }

    #[test]
    fn the_reference_payload_and_its_accepted_variants_build() {
        let s = spec_of(appapi_with(
            "mount_points",
            json!([
                {"source": "/mnt/AI models//", "target": "/models/./llm", "mode": "ro"},
            ]),
        ))
        .unwrap();
        assert_eq!(s["HostConfig"]["NetworkMode"], "host");
        assert_eq!(s["HostConfig"]["Mounts"][1]["Source"], "/mnt/AI models");
        assert_eq!(s["HostConfig"]["Mounts"][1]["Target"], "/models/llm");
        for (key, value) in [
            ("network_mode", json!("my.net")),
            ("restart_policy", json!("")),
            ("restart_policy", json!("on-failure")),
            ("resource_limits", json!({"memory": 0, "cpu": "500m"})),
            ("resource_limits", json!(null)),
            ("mount_points", json!(null)),
            ("environment_variables", json!(null)),
            ("instance_id", json!(null)),
            ("compute_device", json!(null)),
        ] {
            assert!(
                spec_of(appapi_with(key, value.clone())).is_ok(),
                "{key} = {value}"
            );
        }
        let mut no_policy = appapi_with("name", json!("a"));
        no_policy.as_object_mut().unwrap().remove("restart_policy");
        no_policy.as_object_mut().unwrap().remove("network_mode");
        let s = spec_of(no_policy).unwrap();
        assert_eq!(s["HostConfig"]["RestartPolicy"]["Name"], "unless-stopped");
        assert_eq!(s["HostConfig"]["NetworkMode"], "bridge");
    }
}
