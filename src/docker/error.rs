//! Errors of the Docker wrappers, turned into control statuses in exactly one place.

use crate::contract::ControlError;
use crate::upstream::UpstreamError;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum DockerError {
    /// Bad header, bad JSON, schema or name errors (400).
    #[error("{0}")]
    BadRequest(String),
    /// The container the call is about does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// Already exists, in use, or owned by another Nextcloud instance (409).
    #[error("{0}")]
    Conflict(String),
    #[error("{} ({detail})", unreachable_message(*port))]
    Unreachable { port: u16, detail: String },
    /// The engine answered with a status the operation does not expect (503).
    #[error("Docker Engine returned unexpected status {status} for {what}: {message}")]
    UnexpectedStatus {
        what: String,
        status: u16,
        message: String,
    },
    /// The engine sent something unreadable (503: the engine, not harp, is at fault).
    #[error("Docker Engine on port {port} sent an invalid response: {detail}")]
    BadResponse { port: u16, detail: String },
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Internal(String),
}

/// What an admin reads when no engine answers on `port` (wrappers and the pass-through alike).
/// A refused remote engine port (24001–24099) means no FRP client registered it, the usual
/// mistake when adding a remote Docker host, so the text says that rather than "connect failed".
pub(crate) fn unreachable_message(port: u16) -> String {
    if port == crate::contract::ports::LOCAL_ENGINE_PORT {
        format!("No Docker Engine answers on port {port}: the local Docker socket is not reachable (is it mounted into harp's container?)")
    } else {
        format!(
            "No Docker Engine is connected on port {port}: no FRP tunnel has registered this port"
        )
    }
}

impl DockerError {
    pub(crate) fn from_upstream(port: u16, e: UpstreamError) -> DockerError {
        match e {
            UpstreamError::Connect(_, detail) => DockerError::Unreachable { port, detail },
            UpstreamError::Timeout(_) => DockerError::Timeout(format!(
                "Docker Engine on port {port} did not answer in time"
            )),
            UpstreamError::BadResponse(_, detail) => DockerError::BadResponse { port, detail },
            // Engine calls send harp's own bodies, which cannot stall or be malformed.
            UpstreamError::ClientBody(e) => DockerError::Internal(e.to_string()),
        }
    }
}

impl From<DockerError> for ControlError {
    fn from(e: DockerError) -> ControlError {
        let message = e.to_string();
        match e {
            DockerError::BadRequest(_) => ControlError::BadRequest(message),
            DockerError::NotFound(_) => ControlError::NotFoundMessage(message),
            DockerError::Conflict(_) => ControlError::Conflict(message),
            DockerError::Unreachable { .. }
            | DockerError::UnexpectedStatus { .. }
            | DockerError::BadResponse { .. } => ControlError::Unavailable(message),
            DockerError::Timeout(_) => ControlError::Timeout(message),
            DockerError::Internal(_) => ControlError::Internal(message),
        }
    }
}

impl DockerError {
    /// The `result` label of `harp_docker_calls_total`: a fixed word per kind of failure.
    pub(crate) fn metric_class(&self) -> &'static str {
        match self {
            DockerError::BadRequest(_) => "bad_request",
            DockerError::NotFound(_) => "not_found",
            DockerError::Conflict(_) => "conflict",
            DockerError::Unreachable { .. } => "unreachable",
            DockerError::UnexpectedStatus { .. } | DockerError::BadResponse { .. } => {
                "engine_error"
            }
            DockerError::Timeout(_) => "timeout",
            DockerError::Internal(_) => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn every_docker_error_maps_to_its_status() {
        let cases = [
            (DockerError::BadRequest("x".into()), StatusCode::BAD_REQUEST),
            (DockerError::NotFound("x".into()), StatusCode::NOT_FOUND),
            (DockerError::Conflict("x".into()), StatusCode::CONFLICT),
            (
                DockerError::Unreachable {
                    port: 1,
                    detail: "refused".into(),
                },
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                DockerError::UnexpectedStatus {
                    what: "x".into(),
                    status: 500,
                    message: "m".into(),
                },
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                DockerError::BadResponse {
                    port: 1,
                    detail: "d".into(),
                },
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                DockerError::Timeout("x".into()),
                StatusCode::GATEWAY_TIMEOUT,
            ),
            (
                DockerError::Internal("x".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (e, status) in cases {
            assert_eq!(ControlError::from(e).status(), status);
        }
    }

    #[test]
    fn unreachable_message_names_the_port_and_the_cause() {
        let e = DockerError::Unreachable {
            port: 24000,
            detail: "refused".into(),
        };
        let text = e.to_string();
        assert!(
            text.starts_with("No Docker Engine answers on port 24000: the local Docker socket"),
            "{text}"
        );
        assert!(text.ends_with("(refused)"), "{text}");
        let e = DockerError::Unreachable {
            port: 24017,
            detail: "refused".into(),
        };
        assert!(e.to_string().starts_with(
            "No Docker Engine is connected on port 24017: no FRP tunnel has registered this port"
        ));
    }
}
