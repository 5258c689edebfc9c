//! The head of each message: the request serialized as written, the response parsed with
//! `httparse` and its body framing decided (RFC 9112 §6.3).

use super::LeanError;
use bytes::{Buf, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use std::mem::MaybeUninit;

/// Response heads larger than this are refused (HAProxy's whole buffer is 16 KiB).
pub(super) const MAX_HEAD: usize = 64 * 1024;
/// Header count limit, as hyper's client.
const MAX_HEADERS: usize = 100;

/// Serializes the request head. `path_and_query` must be an origin-form target.
pub(crate) fn request_head(
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
) -> Result<Vec<u8>, String> {
    // The target comes from a parsed request URI; checked again because it is written raw.
    if !path_and_query.starts_with('/') || path_and_query.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("invalid request target {path_and_query:?}"));
    }
    let size: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    let mut head = Vec::with_capacity(path_and_query.len() + size + 32);
    head.extend_from_slice(method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(path_and_query.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    Ok(head)
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

pub(super) struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub framing: Framing,
    pub(crate) keep_alive: bool,
}

/// Parses a complete final response head off the front of `buf`; `None` when more is needed.
pub(super) fn parse_head(
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<Option<Head>, LeanError> {
    loop {
        // Uninitialised slots: filling 100 empty headers first was a 3 KiB write per response.
        let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let config = httparse::ParserConfig::default();
        let len = match config.parse_response_with_uninit_headers(&mut parsed, buf, &mut slots) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(LeanError::Head(e.to_string())),
        };
        let code = parsed.code.unwrap_or(0);
        let status = StatusCode::from_u16(code)
            .map_err(|_| LeanError::Head(format!("status code {code}")))?;
        if status.is_informational() {
            if status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(LeanError::Head(
                    "101 to a request that did not upgrade".into(),
                ));
            }
            // 100 Continue, 103 Early Hints: nothing for a bodiless request.
            buf.advance(len);
            continue;
        }
        let mut headers = HeaderMap::with_capacity(parsed.headers.len());
        let mut length: Option<u64> = None;
        // Only the final transfer coding matters for framing (RFC 9112 §6.3 item 4).
        let mut coding: Option<bool> = None;
        let mut close = parsed.version != Some(1);
        for h in parsed.headers.iter() {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| LeanError::Head(format!("header name {:?}", h.name)))?;
            let value = HeaderValue::from_bytes(h.value)
                .map_err(|_| LeanError::Head(format!("value of {name}")))?;
            let text = || value.to_str().unwrap_or("");
            if name == http::header::CONTENT_LENGTH {
                let n = text()
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| LeanError::Head("bad content-length".into()))?;
                if length.is_some_and(|l| l != n) {
                    return Err(LeanError::Head("conflicting content-length".into()));
                }
                length = Some(n);
            } else if name == http::header::TRANSFER_ENCODING {
                let last = text().rsplit(',').next().unwrap_or("").trim();
                coding = Some(last.eq_ignore_ascii_case("chunked"));
            } else if name == http::header::CONNECTION {
                for token in text().split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case("keep-alive") && parsed.version == Some(0)
                    {
                        close = false;
                    }
                }
            }
            headers.append(name, value);
        }
        // RFC 9112 §6.3: with a Transfer-Encoding the Content-Length is ignored and must not be
        // forwarded (the client would frame the decoded body by it); having both is a
        // smuggling attempt or a confused server, so the connection is not reused either.
        let ambiguous = coding.is_some() && length.is_some();
        if coding.is_some() {
            headers.remove(http::header::CONTENT_LENGTH);
        }
        let mut framing = match (coding, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) | (None, None) => Framing::UntilClose,
            (None, Some(n)) => Framing::Length(n),
        };
        if head_request
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || framing == Framing::Length(0)
        {
            framing = Framing::Empty;
        }
        buf.advance(len);
        let keep_alive = !close && !ambiguous && framing != Framing::UntilClose;
        return Ok(Some(Head {
            status,
            headers,
            framing,
            keep_alive,
        }));
    }
}
