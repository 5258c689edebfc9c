//! `exists`, `start` and `stop` (§4.6).

use super::NameFields;
use crate::contract::ControlReply;
use crate::docker::engine::Engine;
use crate::docker::DockerError;
use http::StatusCode;
use serde_json::json;

pub(super) async fn exists(
    engine: &Engine<'_>,
    body: NameFields,
) -> Result<ControlReply, DockerError> {
    let container = body.names()?.container();
    let reply = engine.get(&format!("/containers/{container}/json")).await?;
    match reply.status.as_u16() {
        200 => {
            let image_ref = reply.json().map(|v| image_ref(&v)).unwrap_or_default();
            Ok(ControlReply::Json(
                StatusCode::OK,
                json!({"exists": true, "image_ref": image_ref}),
            ))
        }
        404 => Ok(ControlReply::Json(StatusCode::OK, json!({"exists": false}))),
        _ => Err(reply.unexpected(format!("inspect of '{container}'"))),
    }
}

/// `Config.Image` is what the container was created from as written; the top-level `Image` (an
/// id) is the fallback.
fn image_ref(inspect: &serde_json::Value) -> String {
    let non_empty = |v: Option<&serde_json::Value>| {
        v.and_then(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    non_empty(inspect.pointer("/Config/Image"))
        .or_else(|| non_empty(inspect.get("Image")))
        .unwrap_or_default()
}

pub(super) async fn start(
    engine: &Engine<'_>,
    body: NameFields,
) -> Result<ControlReply, DockerError> {
    let container = body.names()?.container();
    let reply = engine
        .post_empty(&format!("/containers/{container}/start"))
        .await?;
    match reply.status.as_u16() {
        204 => Ok(ControlReply::NoContent),
        304 => Ok(ControlReply::Text(
            StatusCode::OK,
            "Container already started".into(),
        )),
        404 => Err(not_found(&container)),
        _ => Err(reply.unexpected(format!("start of '{container}'"))),
    }
}

pub(super) async fn stop(
    engine: &Engine<'_>,
    body: NameFields,
) -> Result<ControlReply, DockerError> {
    let container = body.names()?.container();
    let reply = engine
        .post_empty(&format!("/containers/{container}/stop"))
        .await?;
    match reply.status.as_u16() {
        204 => Ok(ControlReply::NoContent),
        304 => Ok(ControlReply::Text(
            StatusCode::OK,
            "Container already stopped".into(),
        )),
        404 => Err(not_found(&container)),
        _ => Err(reply.unexpected(format!("stop of '{container}'"))),
    }
}

pub(super) fn not_found(container: &str) -> DockerError {
    DockerError::NotFound(format!("Container '{container}' not found."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_ref_prefers_config_image_then_image() {
        assert_eq!(
            image_ref(&json!({"Config": {"Image": "a:1"}, "Image": "sha256:x"})),
            "a:1"
        );
        assert_eq!(
            image_ref(&json!({"Config": {"Image": ""}, "Image": "sha256:x"})),
            "sha256:x"
        );
        assert_eq!(image_ref(&json!({})), "");
    }
}
