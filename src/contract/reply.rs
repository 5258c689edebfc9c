//! The control API's answers (contract §4): a successful reply, or an error that names its
//! status. Defined here because the Docker wrappers produce them and the control API returns
//! them; the front door turns them into responses.

use http::StatusCode;

/// Largest control request body accepted (metadata with many routes stays far below).
pub(crate) const CONTROL_MAX_BODY: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ControlError {
    #[error("404: Not Found")]
    NotFound,
    #[error("405: Method Not Allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    BadRequest(String),
    #[error("request body larger than {CONTROL_MAX_BODY} bytes")]
    TooLarge,
    #[error("{0}")]
    Unavailable(String),
    /// 404 with a message naming what is missing (the Docker wrappers).
    #[error("{0}")]
    NotFoundMessage(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Internal(String),
}

impl ControlError {
    /// A fixed word per kind of failure (a metric label).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ControlError::NotFound | ControlError::NotFoundMessage(_) => "not_found",
            ControlError::MethodNotAllowed => "method_not_allowed",
            ControlError::BadRequest(_) => "bad_request",
            ControlError::TooLarge => "too_large",
            ControlError::Unavailable(_) => "unavailable",
            ControlError::Conflict(_) => "conflict",
            ControlError::Timeout(_) => "timeout",
            ControlError::Internal(_) => "internal",
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ControlError::NotFound => StatusCode::NOT_FOUND,
            ControlError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ControlError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ControlError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ControlError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ControlError::NotFoundMessage(_) => StatusCode::NOT_FOUND,
            ControlError::Conflict(_) => StatusCode::CONFLICT,
            ControlError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ControlError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A successful control answer.
#[derive(Debug, PartialEq)]
pub(crate) enum ControlReply {
    Json(StatusCode, serde_json::Value),
    Text(StatusCode, String),
    NoContent,
}
