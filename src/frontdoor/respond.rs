//! Every status harp produces itself, in one place (contract §2.8, §4.1).

use crate::control::{ControlError, ControlReply};
use crate::pipeline::Refusal;
use crate::upstream::{full, Body, ClientBodyError, UpstreamError};
use http::{header, HeaderValue, Response, StatusCode};

pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(full(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

fn html(status: StatusCode, title: &str, message: &str) -> Response<Body> {
    let body = format!("<html><body><h1>{title}</h1>\n{message}\n</body></html>\n");
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

pub(crate) fn refusal(r: &Refusal) -> Response<Body> {
    match r {
        Refusal::BadRequest(m) => text(StatusCode::BAD_REQUEST, m.clone()),
        Refusal::Unauthorized => text(StatusCode::UNAUTHORIZED, "401 Unauthorized"),
        Refusal::Forbidden => text(StatusCode::FORBIDDEN, "403 Forbidden"),
        Refusal::NotFound => text(StatusCode::NOT_FOUND, "404 Not Found"),
        Refusal::AgentError => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Unavailable (HaRP)",
        ),
    }
}

/// The status and page title stay HAProxy's; the text says which rule refused the call, so an
/// admin looks at the allow-list instead of at permissions or the shared key.
pub fn engine_forbidden() -> Response<Body> {
    html(
        StatusCode::FORBIDDEN,
        "403 Forbidden",
        "Request forbidden: this Docker Engine API call is not in harp's Docker API allow-list.",
    )
}

/// A Docker Engine pass-through that could not reach its engine. A refused connection on a
/// remote engine port (24001–24099) means no FRP client has registered that port, the usual
/// mistake when adding a remote Docker host, so the page names the port and says so.
pub fn engine_error(port: u16, e: &UpstreamError) -> Response<Body> {
    match e {
        UpstreamError::Connect(..) => html(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Unavailable",
            &crate::docker::unreachable_message(port),
        ),
        other => upstream_error(other),
    }
}

pub fn upstream_error(e: &UpstreamError) -> Response<Body> {
    match e {
        UpstreamError::Connect(..) => html(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Unavailable",
            "No server is available to handle this request.",
        ),
        UpstreamError::Timeout(_) => html(
            StatusCode::GATEWAY_TIMEOUT,
            "504 Gateway Time-out",
            "The server didn't respond in time.",
        ),
        UpstreamError::BadResponse(..) => html(
            StatusCode::BAD_GATEWAY,
            "502 Bad Gateway",
            "The server returned an invalid or incomplete response.",
        ),
        UpstreamError::ClientBody(fault) => client_body(fault),
    }
}

/// The client's request body failed: 408 when it stalled, 400 when it was malformed. The
/// connection closes after it (the rest of the body is unread, its framing unknown).
pub(crate) fn client_body(fault: &ClientBodyError) -> Response<Body> {
    let mut r = match fault {
        ClientBodyError::Stalled(_) => html(
            StatusCode::REQUEST_TIMEOUT,
            "408 Request Time-out",
            "Your browser didn't send a complete request in time.",
        ),
        ClientBodyError::Invalid(_) => return bad_request(),
    };
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// A request harp will not interpret (ambiguous `Host`, malformed body); the connection closes
/// after it, since what follows on it cannot be trusted to be framed as the client meant.
pub(crate) fn bad_request() -> Response<Body> {
    let mut r = html(
        StatusCode::BAD_REQUEST,
        "400 Bad request",
        "Your browser sent an invalid request.",
    );
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

pub(crate) fn control(result: Result<ControlReply, ControlError>) -> Response<Body> {
    match result {
        Ok(ControlReply::Json(status, value)) => {
            let mut r = Response::new(full(value.to_string()));
            *r.status_mut() = status;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Ok(ControlReply::Text(status, body)) => text(status, body),
        Ok(ControlReply::NoContent) => {
            let mut r = Response::new(crate::upstream::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        Err(e) => text(e.status(), e.to_string()),
    }
}
