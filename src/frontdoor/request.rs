//! What the front door reads off a request before deciding: whether its `Host` is ambiguous,
//! and the span its log lines carry.

use http::{HeaderMap, Request};
use std::net::IpAddr;

/// Longest `aa-request-id` copied into the request's span; longer ones are left out.
const MAX_REQUEST_ID: usize = 128;

/// The span every line logged while serving a request carries. At ERROR level so it is there
/// at every log level: its fields matter most on the warnings.
pub(super) fn request_span(client: IpAddr, headers: &HeaderMap) -> tracing::Span {
    let span = tracing::error_span!(
        "request",
        %client,
        app = tracing::field::Empty,
        request_id = tracing::field::Empty
    );
    if !span.is_disabled() {
        if let Some(id) = request_id(headers) {
            span.record("request_id", id);
        }
    }
    span
}

/// The `aa-request-id` header when it is short printable ASCII (it ends up in log lines).
fn request_id(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get("aa-request-id")?.as_bytes();
    let printable = v.iter().all(|b| b.is_ascii_graphic());
    if v.is_empty() || v.len() > MAX_REQUEST_ID || !printable {
        return None;
    }
    std::str::from_utf8(v).ok()
}

/// RFC 9112 §3.2: more than one `Host`, or a `Host` that names another authority than an
/// absolute-form target, leaves open which site is meant (and harp forwards `Host` as sent).
pub(super) fn ambiguous_host<B>(req: &Request<B>) -> bool {
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return true;
    }
    match (req.uri().authority(), first) {
        (Some(target), Some(host)) => !target
            .as_str()
            .as_bytes()
            .eq_ignore_ascii_case(host.as_bytes().trim_ascii()),
        _ => false,
    }
}
