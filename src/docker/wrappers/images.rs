//! `image_remove` (§4.6, AppAPI's image-cleanup branch).

use crate::contract::ControlReply;
use crate::docker::engine::Engine;
use crate::docker::DockerError;
use http::StatusCode;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
pub(super) struct ImageRemoveBody {
    image_ref: String,
}

/// Everything but unreserved characters, so `/` and `:` of a reference stay in one segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub(super) async fn image_remove(
    engine: &Engine<'_>,
    body: ImageRemoveBody,
) -> Result<ControlReply, DockerError> {
    if body.image_ref.trim().is_empty() {
        return Err(super::parse_field_err("'image_ref' must not be empty"));
    }
    let enc = utf8_percent_encode(&body.image_ref, SEGMENT).to_string();
    let ok = |v| Ok(ControlReply::Json(StatusCode::OK, v));
    let inspect = engine.get(&format!("/images/{enc}/json")).await?;
    let size = match inspect.status.as_u16() {
        200 => inspect
            .json()
            .and_then(|v| v.get("Size").and_then(|s| s.as_i64()))
            .unwrap_or(0),
        404 => return ok(json!({"deleted": true, "bytes_freed": 0, "reason": "not_found"})),
        _ => 0,
    };
    let reply = engine.delete(&format!("/images/{enc}")).await?;
    match reply.status.as_u16() {
        200 => {
            // Only "Untagged" entries: another tag still holds the layers, nothing was freed.
            let deleted_layers = reply
                .json()
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default()
                .iter()
                .any(|item| item.get("Deleted").is_some());
            let freed = if deleted_layers { size } else { 0 };
            ok(json!({"deleted": true, "bytes_freed": freed}))
        }
        404 => ok(json!({"deleted": true, "bytes_freed": 0, "reason": "not_found"})),
        409 => ok(json!({"deleted": false, "reason": "in_use"})),
        _ => Err(reply.unexpected(format!("removal of image '{}'", body.image_ref))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_encoded_as_one_segment() {
        let enc = utf8_percent_encode("127.0.0.1:5000/a/b:1.0", SEGMENT).to_string();
        assert_eq!(enc, "127.0.0.1%3A5000%2Fa%2Fb%3A1.0");
        let enc = utf8_percent_encode("a@sha256:ff", SEGMENT).to_string();
        assert_eq!(enc, "a%40sha256%3Aff");
    }
}
