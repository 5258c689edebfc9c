//! `/exapp_storage/{app_id}` (contract §4.3): AppAPI pushes and removes ExApp metadata.

use super::{ControlError, ControlReply};
use crate::nextcloud::{parse_record, MetaCache, RecordError};
use http::Method;

pub(super) async fn handle(
    cache: &MetaCache,
    k8s: Option<&crate::k8s::Backend>,
    method: &Method,
    path: &str,
    body: &[u8],
) -> Result<ControlReply, ControlError> {
    let raw_id = &path["/exapp_storage/".len()..];
    if raw_id.is_empty() || raw_id.contains('/') {
        return Err(ControlError::NotFound);
    }
    let id = raw_id.to_ascii_lowercase();
    match *method {
        Method::POST => {
            let mut record = parse_record(body).map_err(|e| match e {
                RecordError::NotJson => {
                    ControlError::BadRequest("400: Bad Request: body is not valid JSON".into())
                }
                RecordError::Schema(m) => {
                    ControlError::BadRequest(format!("400: Bad Request: {m}"))
                }
            })?;
            // AppAPI pushes the logical host (the app id); on Kubernetes the cluster knows the
            // real one (contract §4.8, last paragraph). An API error refuses the push rather
            // than storing an address that does not route.
            if let Some(k8s) = k8s {
                match k8s.resolve(&id).await {
                    Ok(Some((host, port))) => {
                        record.host = host;
                        record.port = port;
                    }
                    Ok(None) => {}
                    Err(e) => return Err(ControlError::Unavailable(e)),
                }
            }
            tracing::info!(app = %id, host = %record.host, port = record.port, routes = record.routes.len(), "ExApp metadata stored");
            cache.store(&id, record);
            Ok(ControlReply::NoContent)
        }
        Method::DELETE => {
            if cache.remove(&id) {
                tracing::info!(app = %id, "ExApp metadata removed");
                Ok(ControlReply::NoContent)
            } else {
                Err(ControlError::NotFound)
            }
        }
        _ => Err(ControlError::MethodNotAllowed),
    }
}
