//! The lifecycle operations of contract §4.8: `exists`, `create`, `start`, `stop`,
//! `wait_for_start`, `remove`, `install_certificates`. Each reads its body with
//! [`Fields`], makes its API calls through [`Backend`], and answers what AppAPI expects.

use super::client::{Answer, BodyKind, Call};
use super::manifest::{self, PodSpec, MANAGED_BY, MANAGED_BY_LABEL};
use super::payload::{resources, Fields, K8sNames};
use super::Backend;
use crate::contract::{ControlError, ControlReply};
use http::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;

/// How often `wait_for_start` looks at the pods (contract §4.8).
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Answers for an API status the operation did not expect: 503 naming the status and the
/// API server's own message; a 422 is the caller's input refused by Kubernetes, so a 400.
pub(crate) fn unexpected(what: &str, answer: &Answer) -> ControlError {
    let text = format!(
        "{what}: Kubernetes answered {}: {}",
        answer.status,
        answer.message()
    );
    if answer.status == 422 {
        ControlError::BadRequest(text)
    } else {
        ControlError::Unavailable(text)
    }
}

pub(crate) async fn exists(b: &Backend, f: &Fields) -> Result<ControlReply, ControlError> {
    let name = f.names()?.deployment();
    let a = b.get_deployment(&name).await?;
    match a.status {
        200 => Ok(ControlReply::Json(StatusCode::OK, json!({"exists": true}))),
        404 => Ok(ControlReply::Json(StatusCode::OK, json!({"exists": false}))),
        _ => Err(unexpected(&format!("checking Deployment '{name}'"), &a)),
    }
}

/// The objects `create` makes, checked and built before its first API call: the PVC, then the
/// Deployment.
pub(crate) fn create_objects(
    f: &Fields,
    settings: &super::K8sSettings,
) -> Result<(K8sNames, Value, Value), ControlError> {
    let names = f.names()?;
    let image = match f.string("image_id")? {
        Some(i) => i,
        None => f
            .string("image")?
            .ok_or_else(|| super::payload::bad("image_id", "is required"))?,
    };
    if image.is_empty() {
        return Err(super::payload::bad("image_id", "must not be empty"));
    }
    let env = f.strings("environment_variables")?;
    let resources = resources(f)?;
    // Docker-only fields: checked for type so a typo is still reported, then not used.
    f.string("network_mode")?;
    f.string("restart_policy")?;
    if f.list_len("mount_points")? > 0 {
        tracing::warn!(deployment = %names.deployment(), "mount_points are ignored by the Kubernetes backend");
    }
    let pvc = manifest::pvc(
        &names,
        &settings.storage_size,
        settings.storage_class.as_deref(),
    );
    let deployment = manifest::deployment(
        &names,
        &PodSpec {
            image: &image,
            env: &env,
            resources,
            host_aliases: &settings.host_aliases,
        },
    );
    Ok((names, pvc, deployment))
}

pub(crate) async fn create(b: &Backend, f: &Fields) -> Result<ControlReply, ControlError> {
    let (names, pvc, deployment) = create_objects(f, &b.settings)?;
    let ns = b.namespace();
    let pvc_name = names.pvc();
    let a = b
        .call(Call::on("create", "persistentvolumeclaims", ns, None).body(BodyKind::Json, &pvc))
        .await?;
    match a.status {
        200 | 201 => tracing::info!(pvc = %pvc_name, "PVC created"),
        409 => tracing::info!(pvc = %pvc_name, "PVC already exists"),
        _ => return Err(unexpected(&format!("creating PVC '{pvc_name}'"), &a)),
    }

    let name = names.deployment();
    let a = b
        .call(Call::on("create", "deployments", ns, None).body(BodyKind::Json, &deployment))
        .await?;
    match a.status {
        200 | 201 => {
            tracing::info!(deployment = %name, "Deployment created");
            Ok(ControlReply::Json(
                StatusCode::CREATED,
                json!({"name": name}),
            ))
        }
        409 => Err(ControlError::Conflict(format!(
            "Deployment '{name}' already exists."
        ))),
        _ => Err(unexpected(&format!("creating Deployment '{name}'"), &a)),
    }
}

/// `start` (1) and `stop` (0): a strategic-merge patch of the replica count.
pub(crate) async fn scale(
    b: &Backend,
    f: &Fields,
    replicas: u8,
) -> Result<ControlReply, ControlError> {
    let name = f.names()?.deployment();
    let ns = b.namespace();
    let patch = json!({"spec": {"replicas": replicas}});
    let a = b
        .call(
            Call::on("patch", "deployments", ns, Some(&name))
                .body(BodyKind::StrategicMerge, &patch),
        )
        .await?;
    match a.status {
        200 | 201 => {
            tracing::info!(deployment = %name, replicas, "Deployment scaled");
            Ok(ControlReply::NoContent)
        }
        404 => Err(ControlError::NotFoundMessage(format!(
            "Deployment '{name}' not found."
        ))),
        _ => Err(unexpected(&format!("scaling Deployment '{name}'"), &a)),
    }
}

pub(crate) async fn remove(b: &Backend, f: &Fields) -> Result<ControlReply, ControlError> {
    let names = f.names()?;
    let remove_data = f.boolean("remove_data", false)?;
    let ns = b.namespace();
    let name = names.deployment();
    let a = b
        .call(Call::on("delete", "deployments", ns, Some(&name)))
        .await?;
    if !matches!(a.status, 200 | 202 | 404) {
        return Err(unexpected(&format!("removing Deployment '{name}'"), &a));
    }
    if remove_data {
        let pvc = names.pvc();
        let a = b
            .call(Call::on("delete", "persistentvolumeclaims", ns, Some(&pvc)))
            .await?;
        if !matches!(a.status, 200 | 202 | 404) {
            return Err(unexpected(&format!("removing PVC '{pvc}'"), &a));
        }
    }
    // A same-named Service goes only if harp made it: an operator's own Service (manual
    // exposure) is theirs to keep.
    let a = b.call(Call::on("get", "services", ns, Some(&name))).await?;
    match a.status {
        200 if a.json["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY => {
            let d = b
                .call(Call::on("delete", "services", ns, Some(&name)))
                .await?;
            if !matches!(d.status, 200 | 202 | 404) {
                return Err(unexpected(&format!("removing Service '{name}'"), &d));
            }
        }
        200 => tracing::info!(service = %name, "keeping a Service harp did not create"),
        404 => {}
        _ => return Err(unexpected(&format!("reading Service '{name}'"), &a)),
    }
    tracing::info!(deployment = %name, remove_data, "ExApp removed");
    Ok(ControlReply::NoContent)
}

pub(crate) fn install_certificates(f: &Fields) -> Result<ControlReply, ControlError> {
    f.names()?;
    f.check_certificate_fields()?;
    Ok(ControlReply::NoContent)
}

/// What one look at an ExApp's first pod says.
#[derive(Debug, PartialEq)]
pub(crate) enum PodState {
    /// No pod yet, or the image is still being pulled.
    Pulling,
    /// The image is there; the container is not ready yet.
    Starting,
    /// A final answer for AppAPI.
    Done(Value),
}

const IMAGE_ERRORS: [&str; 3] = ["ErrImagePull", "ImagePullBackOff", "InvalidImageName"];
/// Waiting reasons that still mean "the image is not there yet".
const PULLING: [&str; 2] = ["ContainerCreating", "PodInitializing"];

/// Judges a pods list (the first pod decides: ExApp Deployments have one replica).
pub(crate) fn pod_state(pods: &Value) -> PodState {
    let Some(pod) = pods["items"].as_array().and_then(|i| i.first()) else {
        return PodState::Pulling;
    };
    let status = &pod["status"];
    let phase = status["phase"].as_str().unwrap_or("Unknown");
    let reason = status["reason"].clone();
    let message = status["message"].clone();
    let ready = status["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    });
    let answer = |started: bool, st: &str, health: &str, reason: Value, message: Value| {
        PodState::Done(json!({
            "started": started, "status": st, "health": health, "reason": reason, "message": message,
        }))
    };
    match phase {
        "Running" if ready => return answer(true, "running", "ready", reason, message),
        "Succeeded" => return answer(true, "succeeded", "ready", reason, message),
        "Failed" | "Unknown" => return answer(false, phase, "not_ready", reason, message),
        _ => {}
    }
    let first = &status["containerStatuses"][0];
    if first.is_null() {
        return PodState::Pulling;
    }
    let waiting = &first["state"]["waiting"];
    match waiting["reason"].as_str() {
        Some(r) if IMAGE_ERRORS.contains(&r) => {
            let msg = waiting["message"].as_str().unwrap_or("");
            answer(false, r, "image_error", json!(r), json!(msg))
        }
        None if waiting.is_object() => PodState::Pulling,
        Some(r) if PULLING.contains(&r) => PodState::Pulling,
        // Running but not ready, terminated, or waiting for any other reason (a crash loop):
        // the image is there and the start-up countdown runs.
        _ => PodState::Starting,
    }
}

/// Polls the ExApp's pods every second: without a limit while the image is pulled (up to the
/// image-pull cap), then up to the start-up timeout for readiness (contract §4.8).
pub(crate) async fn wait_for_start(b: &Backend, f: &Fields) -> Result<ControlReply, ControlError> {
    let name = f.names()?.deployment();
    let ns = b.namespace();
    let selector = format!("app={name}");
    let query = [("labelSelector", selector.as_str())];
    // A Deployment that does not exist will never have pods: say so now instead of waiting
    // out the image-pull cap (HaRP waits).
    let d = b.get_deployment(&name).await?;
    match d.status {
        200 => {}
        404 => {
            return Err(ControlError::NotFoundMessage(format!(
                "Deployment '{name}' not found."
            )))
        }
        _ => return Err(unexpected(&format!("reading Deployment '{name}'"), &d)),
    }
    let started = Instant::now();
    let pull_deadline = started + b.settings.image_pull_timeout;
    let mut start_deadline: Option<Instant> = None;
    let mut last = json!({"status": "Pending", "reason": null, "message": null});
    loop {
        let a = b
            .call(Call::on("list", "pods", ns, None).query(&query))
            .await?;
        if a.status != 200 {
            return Err(unexpected(
                &format!("listing pods of Deployment '{name}'"),
                &a,
            ));
        }
        if let Some(pod) = a.json["items"].get(0) {
            last = json!({
                "status": pod["status"]["phase"].as_str().unwrap_or("Unknown"),
                "reason": pod["status"]["reason"],
                "message": pod["status"]["message"],
            });
        }
        match pod_state(&a.json) {
            PodState::Done(answer) => {
                tracing::info!(deployment = %name, answer = %answer, "wait_for_start answered");
                return Ok(ControlReply::Json(StatusCode::OK, answer));
            }
            PodState::Starting if start_deadline.is_none() => {
                tracing::info!(deployment = %name, after = ?started.elapsed(), "image pulled; start-up countdown begins");
                start_deadline = Some(Instant::now() + b.settings.startup_timeout);
            }
            _ => {}
        }
        let deadline = start_deadline.unwrap_or(pull_deadline);
        let now = Instant::now();
        if now >= deadline {
            tracing::warn!(deployment = %name, "pods did not become ready in time");
            return Ok(ControlReply::Json(
                StatusCode::OK,
                json!({
                    "started": false, "status": last["status"], "health": "timeout",
                    "reason": last["reason"], "message": last["message"],
                }),
            ));
        }
        // The last look is at the deadline itself.
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(status: Value) -> Value {
        json!({"items": [{"status": status}]})
    }

    fn done(s: PodState) -> Value {
        match s {
            PodState::Done(v) => v,
            other => panic!("not final: {other:?}"),
        }
    }

    #[test]
    fn running_and_ready_or_succeeded_is_started() {
        let v = done(pod_state(&pods(
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}),
        )));
        assert_eq!(
            (
                v["started"].clone(),
                v["status"].clone(),
                v["health"].clone()
            ),
            (json!(true), json!("running"), json!("ready"))
        );
        let v = done(pod_state(&pods(json!({"phase": "Succeeded"}))));
        assert_eq!(
            (v["started"].clone(), v["status"].clone()),
            (json!(true), json!("succeeded"))
        );
    }

    #[test]
    fn failures_are_final() {
        let v = done(pod_state(&pods(
            json!({"phase": "Failed", "reason": "Evicted", "message": "m"}),
        )));
        assert_eq!(
            (
                v["started"].clone(),
                v["health"].clone(),
                v["reason"].clone()
            ),
            (json!(false), json!("not_ready"), json!("Evicted"))
        );
        for r in IMAGE_ERRORS {
            let v = done(pod_state(&pods(
                json!({"phase": "Pending", "containerStatuses": [{"state": {"waiting": {"reason": r, "message": "no such image"}}}]}),
            )));
            assert_eq!(
                (
                    v["status"].clone(),
                    v["health"].clone(),
                    v["message"].clone()
                ),
                (json!(r), json!("image_error"), json!("no such image"))
            );
        }
    }

    #[test]
    fn pulling_and_starting_are_told_apart() {
        assert_eq!(pod_state(&json!({"items": []})), PodState::Pulling);
        assert_eq!(
            pod_state(&pods(json!({"phase": "Pending"}))),
            PodState::Pulling
        );
        let waiting = |r: &str| {
            pods(
                json!({"phase": "Pending", "containerStatuses": [{"state": {"waiting": {"reason": r}}}]}),
            )
        };
        assert_eq!(pod_state(&waiting("ContainerCreating")), PodState::Pulling);
        assert_eq!(pod_state(&waiting("CrashLoopBackOff")), PodState::Starting);
        let running =
            pods(json!({"phase": "Running", "containerStatuses": [{"state": {"running": {}}}]}));
        assert_eq!(pod_state(&running), PodState::Starting);
    }
}
