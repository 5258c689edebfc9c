//! Path facts of contract §2.2 steps 2–3: `..` segments in any encoding, and app-id extraction.

/// The app id and what is left of the path once `/exapps/<id>` is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppPath<'a> {
    /// As written in the path (original case).
    pub app_id: &'a str,
    /// The raw path minus the `/exapps/<id>` prefix; may be empty.
    pub target_path: &'a str,
}

/// True when the raw path holds a parent-directory segment, literal or percent-encoded.
pub fn has_parent_segment(raw_path: &str) -> bool {
    let b = raw_path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if at_separator_boundary(b, i) {
            if let Some(after_first) = dot_unit(b, i) {
                if let Some(after_second) = dot_unit(b, after_first) {
                    if after_second == b.len() || separator_len(b, after_second) > 0 {
                        return true;
                    }
                }
            }
        }
        i += 1;
    }
    false
}

/// Whether position `i` is the start of the path or right after `/`, `%2f` or `%2F`.
fn at_separator_boundary(b: &[u8], i: usize) -> bool {
    i == 0
        || b[i - 1] == b'/'
        || (i >= 3 && b[i - 3] == b'%' && b[i - 2] == b'2' && b[i - 1].eq_ignore_ascii_case(&b'f'))
}

fn separator_len(b: &[u8], i: usize) -> usize {
    if b.get(i) == Some(&b'/') {
        1
    } else if b.len() >= i + 3
        && b[i] == b'%'
        && b[i + 1] == b'2'
        && b[i + 2].eq_ignore_ascii_case(&b'f')
    {
        3
    } else {
        0
    }
}

/// A dot unit (`.` or `%2e`/`%2E`) at `i`; returns the index after it.
fn dot_unit(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) == Some(&b'.') {
        Some(i + 1)
    } else if b.len() >= i + 3
        && b[i] == b'%'
        && b[i + 1] == b'2'
        && b[i + 2].eq_ignore_ascii_case(&b'e')
    {
        Some(i + 3)
    } else {
        None
    }
}

/// Contract §2.2 step 3: the first `exapps/` at the start or after a `/`, then a non-empty id.
pub fn extract_app(raw_path: &str) -> Option<AppPath<'_>> {
    let pos = first_mark(raw_path)?;
    let rest = &raw_path[pos + MARK.len()..];
    let id_len = rest.bytes().position(|b| b == b'/').unwrap_or(rest.len());
    if id_len == 0 {
        return None;
    }
    let app_id = &rest[..id_len];
    // Only a path that *starts* with `/exapps/<id>` loses the prefix (reference quirk).
    let target_path = if pos == 1 {
        &raw_path[1 + MARK.len() + id_len..]
    } else {
        raw_path
    };
    Some(AppPath {
        app_id,
        target_path,
    })
}

const MARK: &str = "exapps/";

/// Where the first `exapps/` at the start or right after a `/` begins.
fn first_mark(raw_path: &str) -> Option<usize> {
    // Nearly every path starts `/exapps/`; `str::find` sets up a substring searcher each call,
    // which cost more than the rest of the path checks together.
    if raw_path.as_bytes().first() == Some(&b'/') && raw_path[1..].starts_with(MARK) {
        return Some(1);
    }
    let mut search_from = 0;
    while let Some(pos) = raw_path[search_from..].find(MARK).map(|p| p + search_from) {
        if pos == 0 || raw_path.as_bytes()[pos - 1] == b'/' {
            return Some(pos);
        }
        search_from = pos + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item33_parent_segments_in_every_encoding() {
        for p in [
            "/exapps/x/a/../b",
            "/exapps/x/a/%2e%2E/b",
            "/exapps/x/a%2F..%2Fb",
            "/exapps/x/..",
            "/exapps/x/a/.%2e/b",
            "/exapps/x/a%2f%2E./b",
            "..",
            "/../x",
        ] {
            assert!(has_parent_segment(p), "{p} must be caught");
        }
    }

    #[test]
    fn item34_lookalikes_are_not_parent_segments() {
        for p in [
            "/exapps/x/a/.../b",
            "/exapps/x/a/.b",
            "/exapps/x/a/..b",
            "/exapps/x/a/b..",
            "/exapps/x/%252e%252e/b",
            "/exapps/x/a%2e/b",
            "/exapps/x/.",
        ] {
            assert!(!has_parent_segment(p), "{p} must pass");
        }
    }

    #[test]
    fn app_id_and_target_path() {
        let a = extract_app("/exapps/MyApp/api/x").unwrap();
        assert_eq!((a.app_id, a.target_path), ("MyApp", "/api/x"));
        let a = extract_app("/exapps/foo").unwrap();
        assert_eq!((a.app_id, a.target_path), ("foo", ""));
        let a = extract_app("/exapps/foo/").unwrap();
        assert_eq!(a.target_path, "/");
    }

    #[test]
    fn item31_no_app_id() {
        assert_eq!(extract_app("/exapps/"), None);
        assert_eq!(extract_app("/exapps"), None);
        assert_eq!(extract_app("/other/path"), None);
        assert_eq!(extract_app("/exapps//x"), None);
        assert_eq!(extract_app("/myexapps/x"), None);
        assert_eq!(extract_app("xexapps/x"), None);
    }

    #[test]
    fn later_exapps_keeps_whole_path_as_target() {
        let a = extract_app("/foo/exapps/x/y").unwrap();
        assert_eq!((a.app_id, a.target_path), ("x", "/foo/exapps/x/y"));
        let a = extract_app("/foo/myexapps/q/exapps/x/y").unwrap();
        assert_eq!(a.app_id, "x");
    }
}
