//! Path normalisation before every access decision (an improvement over contract §2.5/§2.7; the
//! reference decides on the raw path).
//!
//! ExApp frameworks (Starlette/uvicorn and others) percent-decode and tidy the path before
//! routing, so a decision on the raw path can be bypassed: `/%65nabled`, `//enabled` and
//! `/./enabled` all reach the ExApp's `/enabled`, and `/api/%61dmin` its `/api/admin`. harp
//! therefore decides on — and forwards — one canonical spelling:
//!
//! * percent-encoded *unreserved* characters (`A–Z a–z 0–9 - . _ ~`) are decoded;
//! * every other escape is kept, its hex digits in upper case;
//! * repeated slashes are merged and `.` segments removed.
//!
//! Paths whose meaning differs between decoders are refused ([`PathError`]): an encoded `/`,
//! a backslash (literal or `%5C`), NUL or any other control character (literal or encoded),
//! a malformed escape, and escapes that decode to invalid UTF-8. `..` segments are not resolved
//! here: contract §2.2 step 2 drops such requests before this runs, and this function refuses
//! any it is handed.
//!
//! The query string is never given to this function.

use std::borrow::Cow;

/// Why a path is refused (answered `400` with this text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("invalid path: encoded '/' (%2F) is not accepted")]
    EncodedSlash,
    #[error("invalid path: backslash (literal or %5C) is not accepted")]
    Backslash,
    #[error("invalid path: control characters (including NUL) are not accepted")]
    ControlCharacter,
    #[error("invalid path: '%' must be followed by two hex digits")]
    InvalidEscape,
    #[error("invalid path: percent-escapes do not decode to UTF-8")]
    InvalidUtf8,
    #[error("invalid path: '..' segment")]
    ParentSegment,
}

/// The canonical form of `raw` (a request path without its query), borrowed when `raw` is
/// already canonical — the usual case, which costs one scan and no allocation.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    normalize(raw, EncodedSlash::Refuse)
}

/// [`normalize_path`], except that an encoded `/` is kept as `%2F` instead of refused.
///
/// For `/exapps/app_api/…` only: AppAPI sends image names URL-encoded through the Docker Engine
/// pass-through (`/images/ghcr.io%2Fnextcloud%2Fapp%3Atag/json`), and the engine decodes them.
/// Since every escape left in the result has upper-case hex, `%2F` in it is always a slash.
pub(crate) fn normalize_path_keeping_encoded_slashes(raw: &str) -> Result<Cow<'_, str>, PathError> {
    normalize(raw, EncodedSlash::Keep)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum EncodedSlash {
    Refuse,
    Keep,
}

fn normalize(raw: &str, slash: EncodedSlash) -> Result<Cow<'_, str>, PathError> {
    if is_canonical(raw.as_bytes())? {
        return Ok(Cow::Borrowed(raw));
    }
    let decoded = decode_unreserved(raw, slash)?;
    Ok(Cow::Owned(tidy_segments(&decoded)?))
}

/// One scan: refuses forbidden bytes and reports whether anything would change.
fn is_canonical(b: &[u8]) -> Result<bool, PathError> {
    let mut canonical = true;
    let mut segment_start = 0;
    // Linear on purpose: a path is attacker-sized (up to the head limit).
    for i in 0..=b.len() {
        match b.get(i).copied() {
            None | Some(b'/') => {
                if matches!(&b[segment_start..i], b"." | b"..") {
                    canonical = false;
                }
                if b.get(i) == Some(&b'/') && b.get(i + 1) == Some(&b'/') {
                    canonical = false;
                }
                segment_start = i + 1;
            }
            Some(b'\\') => return Err(PathError::Backslash),
            Some(c) if c.is_ascii_control() => return Err(PathError::ControlCharacter),
            // U+0080–U+009F (C1 controls) are `C2 80`–`C2 9F` in UTF-8; `b` is a `str`'s bytes.
            Some(0xC2) if matches!(b.get(i + 1), Some(0x80..=0x9F)) => {
                return Err(PathError::ControlCharacter)
            }
            Some(b'%') => canonical = false,
            Some(_) => {}
        }
    }
    Ok(canonical)
}

/// Decodes escapes of unreserved characters, upper-cases the others, refuses ambiguous ones.
fn decode_unreserved(raw: &str, slash: EncodedSlash) -> Result<String, PathError> {
    let b = raw.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut encoded_non_ascii = false;
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            i += 1;
            continue;
        }
        // `%` is ASCII, so `copied..i` lies on character boundaries.
        out.push_str(&raw[copied..i]);
        let (Some(hi), Some(lo)) = (
            b.get(i + 1).and_then(|h| hex_value(*h)),
            b.get(i + 2).and_then(|l| hex_value(*l)),
        ) else {
            return Err(PathError::InvalidEscape);
        };
        match hi << 4 | lo {
            b'/' if slash == EncodedSlash::Refuse => return Err(PathError::EncodedSlash),
            b'\\' => return Err(PathError::Backslash),
            v if v.is_ascii_control() => return Err(PathError::ControlCharacter),
            v if is_unreserved(v) => out.push(char::from(v)),
            v => {
                encoded_non_ascii |= !v.is_ascii();
                out.push('%');
                out.push(char::from(HEX_UPPER[usize::from(hi)]));
                out.push(char::from(HEX_UPPER[usize::from(lo)]));
            }
        }
        i += 3;
        copied = i;
    }
    out.push_str(&raw[copied..]);
    // Frameworks decode the escapes left here; refuse what they would decode lossily.
    if encoded_non_ascii {
        match percent_encoding::percent_decode_str(&out).decode_utf8() {
            Err(_) => return Err(PathError::InvalidUtf8),
            // An encoded C1 control (`%C2%85`) decodes to what a literal one is refused for.
            Ok(decoded) if decoded.chars().any(char::is_control) => {
                return Err(PathError::ControlCharacter)
            }
            Ok(_) => {}
        }
    }
    Ok(out)
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn hex_value(c: u8) -> Option<u8> {
    char::from(c).to_digit(16).map(|d| d as u8)
}

/// RFC 3986 §2.3.
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// Merges repeated slashes and removes `.` segments, keeping a leading and a trailing slash.
fn tidy_segments(path: &str) -> Result<String, PathError> {
    let absolute = path.starts_with('/');
    let mut out = String::with_capacity(path.len());
    if absolute {
        out.push('/');
    }
    let mut ends_in_directory = false;
    let mut wrote_segment = false;
    for segment in path.split('/') {
        match segment {
            "" | "." => ends_in_directory = true,
            ".." => return Err(PathError::ParentSegment),
            s => {
                if wrote_segment {
                    out.push('/');
                }
                out.push_str(s);
                wrote_segment = true;
                ends_in_directory = false;
            }
        }
    }
    if wrote_segment && ends_in_directory {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        match normalize_path(raw) {
            Ok(p) => p.into_owned(),
            Err(e) => panic!("{raw}: {e}"),
        }
    }

    #[test]
    fn canonical_paths_are_borrowed_unchanged() {
        for p in [
            "/exapps/foo/api/x",
            "/exapps/foo",
            "/exapps/foo/",
            "/",
            "",
            "/a/.b/..c/...",
            "/a.b/c.",
            "/é/ü",
            "/a+b;c=d:e@f!$&'()*,",
        ] {
            assert!(
                matches!(normalize_path(p), Ok(Cow::Borrowed(b)) if b == p),
                "{p}"
            );
        }
    }

    #[test]
    fn unreserved_escapes_are_decoded() {
        assert_eq!(ok("/exapps/foo/%65nabled"), "/exapps/foo/enabled");
        assert_eq!(ok("/exapps/foo/api/%61dmin/"), "/exapps/foo/api/admin/");
        assert_eq!(ok("/%41%5a%61%7A%30%39%2D%2E%5F%7E"), "/AZaz09-._~");
        assert_eq!(ok("/exapps/%66oo/x"), "/exapps/foo/x");
    }

    #[test]
    fn other_escapes_stay_with_upper_case_hex() {
        assert_eq!(ok("/a%20b"), "/a%20b");
        assert_eq!(ok("/a%3a%3Fb%25"), "/a%3A%3Fb%25");
        assert_eq!(ok("/caf%c3%a9"), "/caf%C3%A9");
        assert_eq!(ok("/%25%32%66"), "/%252f", "decoding happens once");
    }

    #[test]
    fn slashes_merge_and_dot_segments_go() {
        assert_eq!(ok("/exapps/foo//enabled"), "/exapps/foo/enabled");
        assert_eq!(ok("/exapps/foo/./enabled"), "/exapps/foo/enabled");
        assert_eq!(ok("//exapps///foo/.//./x"), "/exapps/foo/x");
        assert_eq!(ok("/exapps/foo/%2e/enabled"), "/exapps/foo/enabled");
        assert_eq!(ok("/exapps/foo/x/."), "/exapps/foo/x/");
        assert_eq!(ok("/exapps/foo/x//"), "/exapps/foo/x/");
        assert_eq!(ok("//"), "/");
        assert_eq!(ok("/./"), "/");
        assert_eq!(ok("/."), "/");
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for (raw, why) in [
            ("/a%2Fb", PathError::EncodedSlash),
            ("/a%2fb", PathError::EncodedSlash),
            ("/a\\b", PathError::Backslash),
            ("/a%5Cb", PathError::Backslash),
            ("/a%5cb", PathError::Backslash),
            ("/a%00b", PathError::ControlCharacter),
            ("/a%0Ab", PathError::ControlCharacter),
            ("/a%7fb", PathError::ControlCharacter),
            ("/a\u{1}b", PathError::ControlCharacter),
            ("/a\tb", PathError::ControlCharacter),
            ("/a\u{85}b", PathError::ControlCharacter),
            ("/\u{89}^0", PathError::ControlCharacter),
            ("/a%C2%85b", PathError::ControlCharacter),
            ("/a%c2%9fb", PathError::ControlCharacter),
            ("/a%zzb", PathError::InvalidEscape),
            ("/a%2", PathError::InvalidEscape),
            ("/a%", PathError::InvalidEscape),
            ("/a%g0", PathError::InvalidEscape),
            ("/a%C3", PathError::InvalidUtf8),
            ("/a%FF%FE", PathError::InvalidUtf8),
            ("/a%C3%28", PathError::InvalidUtf8),
            ("/a/%2e%2e/b", PathError::ParentSegment),
            ("/a/../b", PathError::ParentSegment),
        ] {
            assert_eq!(normalize_path(raw), Err(why), "{raw}");
        }
    }

    #[test]
    fn encoded_slashes_can_be_kept_for_the_control_api() {
        let kept = |raw| normalize_path_keeping_encoded_slashes(raw).map(Cow::into_owned);
        assert_eq!(
            kept("/exapps/app_api/images/ghcr.io%2fnextcloud%2Fapp%3alatest/json"),
            Ok("/exapps/app_api/images/ghcr.io%2Fnextcloud%2Fapp%3Alatest/json".into())
        );
        assert_eq!(
            kept("/a%5Cb"),
            Err(PathError::Backslash),
            "the other rules stay"
        );
        assert_eq!(kept("/a%00"), Err(PathError::ControlCharacter));
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for raw in [
            "/exapps/foo/%65nabled",
            "//a/./b%3a//",
            "/caf%c3%a9/%7e",
            "/%25%32%66",
            "/x/.",
        ] {
            let once = ok(raw);
            assert_eq!(ok(&once), once, "{raw}");
        }
    }
}
