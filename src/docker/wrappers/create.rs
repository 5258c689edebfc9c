//! `create` (§4.6): data volume first, then the container, both labelled as harp's (§7 #15).

use super::{lenient_int, parse_field_err, NameFields};
use crate::control::ControlReply;
use crate::docker::engine::Engine;
use crate::docker::names::Names;
use crate::docker::DockerError;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};

#[derive(Debug, Deserialize)]
pub struct CreateBody {
    #[serde(flatten)]
    names: NameFields,
    image_id: Option<String>,
    image: Option<String>,
    network_mode: Option<String>,
    #[serde(default)]
    environment_variables: Option<Vec<String>>,
    restart_policy: Option<String>,
    compute_device: Option<String>,
    #[serde(default)]
    mount_points: Option<Vec<MountPoint>>,
    #[serde(default)]
    resource_limits: Option<ResourceLimits>,
}

#[derive(Debug, Deserialize)]
struct MountPoint {
    source: String,
    target: String,
    mode: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ResourceLimits {
    #[serde(default, deserialize_with = "lenient_int")]
    memory: Option<i64>,
    #[serde(default, rename = "nanoCPUs", deserialize_with = "lenient_int")]
    nano_cpus: Option<i64>,
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
    mounts: Vec<MountPoint>,
    limits: ResourceLimits,
}

fn plan(body: CreateBody) -> Result<Plan, DockerError> {
    let names = body.names.names()?;
    let image = body
        .image_id
        .or(body.image)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| parse_field_err("'image_id' is required"))?;
    let device = match body.compute_device.as_deref().unwrap_or("cpu") {
        "cpu" => ComputeDevice::Cpu,
        "cuda" => ComputeDevice::Cuda,
        "rocm" => ComputeDevice::Rocm,
        other => {
            return Err(parse_field_err(&format!(
                "'compute_device' must be cpu, cuda or rocm, not {other:?}"
            )))
        }
    };
    let mounts = body.mount_points.unwrap_or_default();
    for m in &mounts {
        match m.mode.as_deref() {
            None | Some("rw") | Some("ro") => {}
            Some(other) => {
                return Err(parse_field_err(&format!(
                    "mount mode must be rw or ro, not {other:?}"
                )))
            }
        }
    }
    Ok(Plan {
        names,
        image,
        network_mode: body.network_mode.unwrap_or_else(|| "bridge".into()),
        env: body.environment_variables.unwrap_or_default(),
        restart_policy: body
            .restart_policy
            .unwrap_or_else(|| "unless-stopped".into()),
        device,
        mounts,
        limits: body.resource_limits.unwrap_or_default(),
    })
}

/// The `POST /containers/create` body.
fn container_spec(p: &Plan) -> Value {
    let volume = p.names.volume();
    let mut mounts = vec![json!({
        "Type": "volume", "Source": volume, "Target": format!("/{volume}"), "ReadOnly": false,
    })];
    mounts.extend(p.mounts.iter().map(|m| {
        json!({
            "Type": "bind", "Source": m.source, "Target": m.target,
            "ReadOnly": m.mode.as_deref() == Some("ro"),
        })
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
        "Labels": p.names.labels(),
        "HostConfig": Value::Object(host),
    });
    if p.network_mode != "host" && p.network_mode != "bridge" {
        spec["NetworkingConfig"] = json!({
            "EndpointsConfig": { p.network_mode.clone(): {"Aliases": [p.names.name]} }
        });
    }
    spec
}

pub async fn create(engine: &Engine<'_>, body: CreateBody) -> Result<ControlReply, DockerError> {
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
                    &json!({"Name": volume, "Labels": names.labels()}),
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
            "resource_limits": {"memory": 1048576, "nanoCPUs": "500000000"},
            "mount_points": [{"source": "/a", "target": "/b", "mode": "ro"}, {"source": "/c", "target": "/d"}],
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
        assert_eq!(s["HostConfig"]["Mounts"][2]["ReadOnly"], false);
        let cuda =
            spec_of(json!({"name": "a", "image_id": "i", "compute_device": "cuda"})).unwrap();
        assert_eq!(cuda["HostConfig"]["DeviceRequests"][0]["Driver"], "nvidia");
        assert_eq!(cuda["HostConfig"]["DeviceRequests"][0]["Count"], -1);
        let host = spec_of(json!({"name": "a", "image_id": "i", "network_mode": "host"})).unwrap();
        assert!(host.get("NetworkingConfig").is_none());
    }

    #[test]
    fn invalid_create_bodies_are_rejected() {
        for body in [
            json!({"name": "a"}),
            json!({"name": "a", "image_id": ""}),
            json!({"name": "a", "image_id": "i", "compute_device": "tpu"}),
            json!({"name": "a", "image_id": "i", "mount_points": [{"source": "/a", "target": "/b", "mode": "x"}]}),
        ] {
            let e = spec_of(body).unwrap_err();
            assert!(matches!(e, DockerError::BadRequest(_)), "{e}");
        }
    }
}
