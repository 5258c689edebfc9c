//! Reading request headers the way the reference does (contract §2.1).

use http::header::{AsHeaderName, HeaderName};
use http::HeaderMap;

pub use crate::contract::headers::{
    AA_VERSION, AUTHORIZATION_APP_API, DOCKER_ENGINE_PORT, EX_APP_HOST, EX_APP_ID, EX_APP_PORT,
    EX_APP_VERSION, HARP_SHARED_KEY,
};

/// Value of a header; when repeated, the last occurrence wins. Trimmed.
pub fn header<K: AsHeaderName>(headers: &HeaderMap, name: K) -> Option<&str> {
    headers
        .get_all(name)
        .iter()
        .next_back()
        .map(|v| std::str::from_utf8(v.as_bytes()).unwrap_or("").trim())
}

/// The first cookie named `oc_sessionPassphrase`, or "" when absent.
pub(crate) fn session_cookie(headers: &HeaderMap) -> &str {
    for value in headers.get_all(http::header::COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((name, v)) = pair.trim().split_once('=') {
                if name.trim() == "oc_sessionPassphrase" {
                    return v.trim();
                }
            }
        }
    }
    ""
}

/// The six headers AppAPI puts on its calls to ExApps (contract §2.2 step 5).
pub(crate) const SIGNED_HEADERS: [HeaderName; 6] = [
    EX_APP_VERSION,
    EX_APP_ID,
    EX_APP_HOST,
    EX_APP_PORT,
    AUTHORIZATION_APP_API,
    HARP_SHARED_KEY,
];

pub(crate) fn is_signed(headers: &HeaderMap) -> bool {
    SIGNED_HEADERS.iter().all(|h| headers.contains_key(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_parsing() {
        let mut h = HeaderMap::new();
        h.append(
            "cookie",
            "a=1; oc_sessionPassphrase=abc%2F; oc_sessionPassphrase=second"
                .parse()
                .unwrap(),
        );
        assert_eq!(session_cookie(&h), "abc%2F");
        assert_eq!(session_cookie(&HeaderMap::new()), "");
    }

    #[test]
    fn last_header_wins_and_is_trimmed() {
        let mut h = HeaderMap::new();
        h.append("x", " one ".parse().unwrap());
        h.append("x", " two ".parse().unwrap());
        assert_eq!(header(&h, "x"), Some("two"));
    }

    #[test]
    fn item61_five_of_six_is_not_signed() {
        let mut h = HeaderMap::new();
        for name in &SIGNED_HEADERS[..5] {
            h.insert(name.clone(), "".parse().unwrap());
        }
        assert!(!is_signed(&h));
        h.insert("harp-shared-key", "k".parse().unwrap());
        assert!(is_signed(&h));
    }
}
