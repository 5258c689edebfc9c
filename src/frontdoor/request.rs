//! What the front door reads off a request before deciding: whether its `Host` is ambiguous,
//! the request id its log lines carry, and the HTTP/1 form of an HTTP/2 request's headers.

use base64::Engine as _;
use http::header::{CONNECTION, COOKIE, HOST, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{HeaderMap, HeaderValue, Request};

/// Longest `aa-request-id` copied into the request's log context; longer ones are left out.
const MAX_REQUEST_ID: usize = 128;

/// The `aa-request-id` header when it is short printable ASCII (it ends up in log lines).
pub(super) fn request_id(headers: &HeaderMap) -> Option<&str> {
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

/// An HTTP/2 request in the header form the pipeline decides on and an HTTP/1.1 upstream
/// expects (RFC 9113 §8.3.1, §8.2.3): `:authority` becomes `Host` when the client sent none,
/// and split `cookie` fields are joined with "; " into one, so the session cookie is found
/// wherever the client put it. No-op for HTTP/1 requests.
pub(super) fn http1_form<B>(req: &mut Request<B>) {
    if req.version() != http::Version::HTTP_2 {
        return;
    }
    if !req.headers().contains_key(HOST) {
        if let Some(authority) = req.uri().authority() {
            if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
                req.headers_mut().insert(HOST, v);
            }
        }
    }
    let headers = req.headers_mut();
    let mut cookies = headers.get_all(COOKIE).iter();
    if cookies.next().is_some() && cookies.next().is_some() {
        // The joined value is no longer than the fields plus separators, all within the
        // connection's header-list bound.
        let mut joined = Vec::new();
        for (i, v) in headers.get_all(COOKIE).iter().enumerate() {
            if i > 0 {
                joined.extend_from_slice(b"; ");
            }
            joined.extend_from_slice(v.as_bytes());
        }
        if let Ok(v) = HeaderValue::from_bytes(&joined) {
            headers.insert(COOKIE, v);
        }
    }
}

/// RFC 8441: an HTTP/2 extended CONNECT with `:protocol websocket`.
pub(super) fn websocket_over_h2<B>(req: &Request<B>) -> bool {
    req.version() == http::Version::HTTP_2
        && req.method() == http::Method::CONNECT
        && req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

/// Turns an RFC 8441 WebSocket request into the HTTP/1.1 handshake an ExApp expects (RFC 6455
/// §4.1): `GET` with `Upgrade: websocket` and a fresh `Sec-WebSocket-Key`. The client's
/// `Sec-WebSocket-Version`, `-Protocol` and `-Extensions` pass through unchanged.
pub(super) fn websocket_as_http1<B>(req: &mut Request<B>) {
    *req.method_mut() = http::Method::GET;
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
    let headers = req.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(key) = HeaderValue::from_str(&key) {
        headers.insert(SEC_WEBSOCKET_KEY, key);
    }
}

/// The ExApp's `101` becomes RFC 8441's `200` on the client's stream, without the HTTP/1.1
/// handshake headers (which mean nothing, or are forbidden, in HTTP/2).
pub(super) fn websocket_answer_as_h2<B>(response: &mut http::Response<B>) {
    *response.status_mut() = http::StatusCode::OK;
    let headers = response.headers_mut();
    for name in [UPGRADE, CONNECTION, SEC_WEBSOCKET_ACCEPT] {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http2_requests_get_host_and_one_cookie() {
        let mut req = Request::builder()
            .version(http::Version::HTTP_2)
            .uri("https://nc.example:8781/exapps/a/x")
            .header("cookie", "a=1")
            .header("cookie", "oc_sessionPassphrase=s")
            .body(())
            .unwrap();
        http1_form(&mut req);
        assert_eq!(req.headers()["host"], "nc.example:8781");
        let cookies: Vec<_> = req.headers().get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1; oc_sessionPassphrase=s"]);
    }

    #[test]
    fn http1_requests_are_left_alone() {
        let mut req = Request::builder()
            .uri("/x")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .body(())
            .unwrap();
        http1_form(&mut req);
        assert!(req.headers().get("host").is_none());
        assert_eq!(req.headers().get_all("cookie").iter().count(), 2);
    }
}
