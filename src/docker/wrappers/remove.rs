//! `remove` (§4.6), refusing to delete another Nextcloud instance's container (§7 #15).

use super::NameFields;
use crate::contract::ControlReply;
use crate::docker::engine::Engine;
use crate::docker::names::owner_instance;
use crate::docker::DockerError;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub(super) struct RemoveBody {
    #[serde(flatten)]
    names: NameFields,
    #[serde(default)]
    remove_data: Option<bool>,
}

pub(super) async fn remove(
    engine: &Engine<'_>,
    body: RemoveBody,
) -> Result<ControlReply, DockerError> {
    let names = body.names.names()?;
    let container = names.container();
    let inspect = engine.get(&format!("/containers/{container}/json")).await?;
    match inspect.status.as_u16() {
        200 => {
            let labels = inspect
                .json()
                .and_then(|v| v.pointer("/Config/Labels").cloned())
                .unwrap_or_default();
            refuse_foreign(
                &labels,
                &names.instance_id,
                &format!("container '{container}'"),
            )?;
        }
        404 => {}
        _ => return Err(inspect.unexpected(format!("inspect of '{container}'"))),
    }
    let reply = engine
        .delete(&format!("/containers/{container}?force=true"))
        .await?;
    // 409: a removal is already in progress, which ends the same way.
    if !matches!(reply.status.as_u16(), 204 | 404 | 409) {
        return Err(reply.unexpected(format!("removal of '{container}'")));
    }
    if body.remove_data.unwrap_or(false) {
        let volume = names.volume();
        let inspect = engine.get(&format!("/volumes/{volume}")).await?;
        if inspect.status.as_u16() == 200 {
            let labels = inspect
                .json()
                .and_then(|v| v.get("Labels").cloned())
                .unwrap_or_default();
            refuse_foreign(&labels, &names.instance_id, &format!("volume '{volume}'"))?;
        }
        let reply = engine.delete(&format!("/volumes/{volume}")).await?;
        match reply.status.as_u16() {
            204 | 404 => {}
            409 => {
                return Err(DockerError::Conflict(format!(
                    "Volume '{volume}' is in use and could not be removed."
                )))
            }
            _ => return Err(reply.unexpected(format!("removal of volume '{volume}'"))),
        }
    }
    Ok(ControlReply::NoContent)
}

/// Resources without harp's labels (made by the reference or by hand) stay removable.
fn refuse_foreign(
    labels: &serde_json::Value,
    instance: &str,
    what: &str,
) -> Result<(), DockerError> {
    match owner_instance(labels) {
        Some(owner) if owner != instance => Err(DockerError::Conflict(format!(
            "Refusing to remove {what}: it belongs to Nextcloud instance '{owner}', not '{instance}'."
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::names::{LABEL_INSTANCE, LABEL_MANAGED_BY};
    use serde_json::json;

    #[test]
    fn only_harp_resources_of_another_instance_are_protected() {
        let theirs = json!({LABEL_MANAGED_BY: "harp", LABEL_INSTANCE: "other"});
        let e = refuse_foreign(&theirs, "", "container 'c'").unwrap_err();
        assert!(matches!(e, DockerError::Conflict(_)));
        assert!(e.to_string().contains("'other'"));
        assert!(refuse_foreign(&theirs, "other", "c").is_ok());
        assert!(refuse_foreign(&json!({}), "", "c").is_ok());
        assert!(refuse_foreign(&serde_json::Value::Null, "", "c").is_ok());
    }
}
