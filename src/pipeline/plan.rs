//! What a decision tells the caller to do to the request's headers on the way out: the forward
//! plan's edits for an ExApp (contract §2.2 step 9) and the removals of the Docker Engine
//! pass-through (contract §2.3). Pure header work, no I/O; hop-by-hop stripping stays with
//! `upstream`, which runs it first so `Connection` cannot name harp's own headers away.

use super::facts::{
    AA_VERSION, AUTHORIZATION_APP_API, DOCKER_ENGINE_PORT, EX_APP_ID, EX_APP_VERSION,
    HARP_SHARED_KEY,
};
use crate::nextcloud::ExAppRecord;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;

/// The AppAPI protocol version HaRP announces to ExApps in `AA-VERSION`.
const AA_PROTOCOL_VERSION: HeaderValue = HeaderValue::from_static("32");

/// Headers harp sets on every forwarded request, replacing any copy the client sent.
const INJECTED: [HeaderName; 4] = [EX_APP_ID, EX_APP_VERSION, AUTHORIZATION_APP_API, AA_VERSION];

/// Headers meant for HaRP alone, never passed to a Docker Engine.
const ENGINE_REMOVED: [HeaderName; 3] = [
    HARP_SHARED_KEY,
    DOCKER_ENGINE_PORT,
    http::header::AUTHORIZATION,
];

#[derive(Debug)]
pub struct ForwardPlan {
    pub record: Arc<ExAppRecord>,
    /// App id as written in the path (sent as `EX-APP-ID`).
    pub app_id: String,
    /// Value for `AUTHORIZATION-APP-API`.
    pub authorization: String,
    /// The normalised path minus `/exapps/<id>`: what was decided on, and what is forwarded.
    pub target_path: String,
    /// Statuses that count as a failure when the ExApp answers them (contract §2.10).
    pub bruteforce: Vec<u16>,
}

impl ForwardPlan {
    /// Removes the shared key and sets the ExApp's identity headers. A value that is not a valid
    /// header value removes the header instead of forwarding the client's copy.
    pub fn apply_headers(&self, headers: &mut HeaderMap) {
        headers.remove(HARP_SHARED_KEY);
        // Grow the map once for the injected headers, not once per insert.
        headers.reserve(INJECTED.len());
        let [id, version, authorization, aa_version] = INJECTED;
        let mut set = |name: HeaderName, value: &str| match HeaderValue::from_str(value) {
            // `insert` replaces every client-supplied copy of the name.
            Ok(v) => {
                headers.insert(name, v);
            }
            Err(_) => {
                headers.remove(name);
            }
        };
        set(id, &self.app_id);
        set(version, &self.record.version);
        set(authorization, &self.authorization);
        headers.insert(aa_version, AA_PROTOCOL_VERSION);
    }

    /// The path to request from the ExApp ("/" for the app's root).
    pub fn upstream_path(&self) -> &str {
        if self.target_path.is_empty() {
            "/"
        } else {
            &self.target_path
        }
    }

    /// Whether the ExApp's answer counts as a brute-force failure of the client.
    pub fn is_bruteforce_status(&self, status: http::StatusCode) -> bool {
        self.bruteforce.contains(&status.as_u16())
    }
}

/// The Docker Engine pass-through's edits: HaRP-only headers are removed.
pub fn strip_engine_headers(headers: &mut HeaderMap) {
    for h in ENGINE_REMOVED {
        headers.remove(h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(version: &str, authorization: &str) -> ForwardPlan {
        ForwardPlan {
            record: Arc::new(ExAppRecord::new(
                "t".into(),
                version.into(),
                "127.0.0.1".into(),
                80,
                vec![],
            )),
            app_id: "Foo".into(),
            authorization: authorization.into(),
            target_path: String::new(),
            bruteforce: vec![401],
        }
    }

    #[test]
    fn forward_edits_remove_the_key_and_replace_client_copies() {
        let mut h = HeaderMap::new();
        h.insert(HARP_SHARED_KEY, HeaderValue::from_static("secret"));
        h.append(EX_APP_ID, HeaderValue::from_static("spoofed"));
        h.append(EX_APP_ID, HeaderValue::from_static("spoofed2"));
        h.insert(AA_VERSION, HeaderValue::from_static("1"));
        h.insert("x-other", HeaderValue::from_static("kept"));
        plan("1.2.3", "Basic abc").apply_headers(&mut h);
        assert!(h.get(HARP_SHARED_KEY).is_none());
        assert_eq!(h.get_all(EX_APP_ID).iter().count(), 1);
        assert_eq!(h[EX_APP_ID], "Foo");
        assert_eq!(h[EX_APP_VERSION], "1.2.3");
        assert_eq!(h[AUTHORIZATION_APP_API], "Basic abc");
        assert_eq!(h[AA_VERSION], "32");
        assert_eq!(h["x-other"], "kept");
    }

    #[test]
    fn an_invalid_value_removes_the_header_rather_than_keeping_the_clients() {
        let mut h = HeaderMap::new();
        h.insert(EX_APP_VERSION, HeaderValue::from_static("client"));
        plan("bad\nversion", "x").apply_headers(&mut h);
        assert!(h.get(EX_APP_VERSION).is_none());
    }

    #[test]
    fn engine_edits_remove_harp_only_headers() {
        let mut h = HeaderMap::new();
        h.insert(HARP_SHARED_KEY, HeaderValue::from_static("secret"));
        h.insert(DOCKER_ENGINE_PORT, HeaderValue::from_static("24000"));
        h.insert(http::header::AUTHORIZATION, HeaderValue::from_static("x"));
        h.insert(http::header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_engine_headers(&mut h);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn root_path_and_bruteforce_statuses() {
        let p = plan("1", "x");
        assert_eq!(p.upstream_path(), "/");
        assert!(p.is_bruteforce_status(http::StatusCode::UNAUTHORIZED));
        assert!(!p.is_bruteforce_status(http::StatusCode::OK));
    }
}
