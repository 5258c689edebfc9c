//! The Docker Engine pass-through allow-list (contract §2.3): the only engine calls AppAPI makes
//! directly. Checked on the URL-decoded path, case-insensitively, with an optional `/vX.Y` prefix.

use http::Method;
use percent_encoding::percent_decode_str;

pub(crate) fn engine_call_allowed(method: &Method, raw_target_path: &str) -> bool {
    let decoded = percent_decode_str(raw_target_path)
        .decode_utf8_lossy()
        .to_ascii_lowercase();
    let path = strip_api_version(&decoded);
    let read = method == Method::GET || method == Method::HEAD;
    if read {
        if path == "/_ping" {
            return true;
        }
        if let Some(rest) = path.strip_prefix("/images/") {
            // `/images/<anything>/json` (image names contain slashes)
            if rest.len() > "/json".len() && rest.contains("/json") {
                return true;
            }
        }
        if let Some(rest) = path.strip_prefix("/containers/nc_app_") {
            let name_len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
                .unwrap_or(rest.len());
            let after = &rest[name_len..];
            if name_len > 0 && (after.starts_with("/json") || after.starts_with("/logs")) {
                return true;
            }
        }
        return false;
    }
    method == Method::POST && path.starts_with("/images/create")
}

fn strip_api_version(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/v") {
        let end = rest.find('/').unwrap_or(rest.len());
        let version = &rest[..end];
        if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return &rest[end..];
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(p: &str) -> bool {
        engine_call_allowed(&Method::GET, p)
    }

    #[test]
    fn item44_45_ping_with_and_without_version() {
        assert!(get("/v1.44/_ping"));
        assert!(get("/_ping"));
        assert!(engine_call_allowed(&Method::HEAD, "/_ping"));
        assert!(get("/V1.41/_PING"));
        assert!(!get("/_ping/x"));
        assert!(!engine_call_allowed(&Method::POST, "/_ping"));
    }

    #[test]
    fn item46_container_inspect_only_for_nc_app() {
        assert!(get("/v1.44/containers/nc_app_foo/json"));
        assert!(get("/v1.44/containers/nc_app_foo-1.x_y/logs?stdout=true"));
        assert!(get("/containers/NC_APP_Foo/json"));
        assert!(!get("/v1.44/containers/other/json"));
        assert!(!get("/v1.44/containers/nc_app_/json"));
        assert!(!get("/v1.44/containers/nc_app_foo/top"));
        assert!(!get("/v1.44/containers/nc_app_a%2F..%2Fother/json"));
    }

    #[test]
    fn item47_image_pull_and_existence() {
        assert!(engine_call_allowed(&Method::POST, "/v1.44/images/create"));
        assert!(get("/v1.44/images/ghcr.io/nextcloud/app:1.0/json"));
        assert!(get("/images/ghcr.io%2Fnextcloud%2Fapp/json"));
        assert!(!get("/images/json"));
    }

    #[test]
    fn item48_everything_else_forbidden() {
        assert!(!engine_call_allowed(
            &Method::DELETE,
            "/v1.44/containers/nc_app_foo"
        ));
        assert!(!engine_call_allowed(
            &Method::POST,
            "/v1.44/containers/create"
        ));
        assert!(!get("/v1.44/version"));
        assert!(!get("/info"));
        assert!(!engine_call_allowed(&Method::GET, "/v1.44/images/create"));
    }
}
