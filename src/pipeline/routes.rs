//! Route matching with Python `re.match` semantics (contract §2.7): anchored at the start only,
//! case-sensitive, first match decides. Patterns are compiled once per metadata record.
//!
//! The `regex` crate (linear time, fast) handles almost every real pattern; `fancy-regex`
//! (backtracking) takes the rest, which is what look-around and back-references need.

use std::fmt;

/// Access levels of ExApp routes and users.
pub const PUBLIC: u8 = 0;

enum Matcher {
    Linear(regex::Regex),
    Backtracking(fancy_regex::Regex),
}

pub struct CompiledRoute {
    pub source: String,
    pub access_level: u8,
    pub bruteforce: Vec<u16>,
    matcher: Option<Matcher>,
}

impl fmt::Debug for CompiledRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledRoute")
            .field("url", &self.source)
            .field("access_level", &self.access_level)
            .field("valid", &self.matcher.is_some())
            .finish()
    }
}

impl CompiledRoute {
    /// Compiles `pattern`; an invalid one is kept (and skipped when matching) with a warning.
    pub fn new(pattern: &str, access_level: u8, bruteforce: Vec<u16>) -> CompiledRoute {
        let anchored = format!(r"\A(?:{pattern})");
        let matcher = match regex::Regex::new(&anchored) {
            Ok(re) => Some(Matcher::Linear(re)),
            Err(_) => match fancy_regex::Regex::new(&anchored) {
                Ok(re) => Some(Matcher::Backtracking(re)),
                Err(e) => {
                    tracing::warn!(route = pattern, error = %e, "invalid route pattern is skipped");
                    None
                }
            },
        };
        CompiledRoute {
            source: pattern.to_string(),
            access_level,
            bruteforce,
            matcher,
        }
    }

    pub fn is_valid(&self) -> bool {
        self.matcher.is_some()
    }

    fn matches(&self, path: &str) -> bool {
        match &self.matcher {
            Some(Matcher::Linear(re)) => re.is_match(path),
            // A pattern that exhausts the backtracking limit counts as not matching.
            Some(Matcher::Backtracking(re)) => re.is_match(path).unwrap_or(false),
            None => false,
        }
    }
}

/// The first route (in Nextcloud's order) whose pattern matches the target path.
pub fn first_match<'a>(
    routes: &'a [CompiledRoute],
    target_path: &str,
) -> Option<&'a CompiledRoute> {
    routes.iter().find(|r| r.matches(target_path))
}

/// What the first matching route says about a caller with `user_level` (None = anonymous).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteVerdict {
    Allow { bruteforce: Vec<u16> },
    Forbidden,
    NoRoute,
}

pub fn route_verdict(
    routes: &[CompiledRoute],
    target_path: &str,
    user_level: Option<u8>,
) -> RouteVerdict {
    match first_match(routes, target_path) {
        None => RouteVerdict::NoRoute,
        Some(r) if r.access_level == PUBLIC || user_level.is_some_and(|l| r.access_level <= l) => {
            RouteVerdict::Allow {
                bruteforce: r.bruteforce.clone(),
            }
        }
        Some(_) => RouteVerdict::Forbidden,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(spec: &[(&str, u8)]) -> Vec<CompiledRoute> {
        spec.iter()
            .map(|(p, l)| CompiledRoute::new(p, *l, vec![]))
            .collect()
    }

    fn allowed(v: RouteVerdict) -> bool {
        matches!(v, RouteVerdict::Allow { .. })
    }

    #[test]
    fn item67_first_match_decides() {
        let r = routes(&[("^/api/admin", 2), ("^/api", 1)]);
        assert_eq!(
            route_verdict(&r, "/api/admin/x", Some(1)),
            RouteVerdict::Forbidden
        );
        assert!(allowed(route_verdict(&r, "/api/admin/x", Some(2))));
        assert!(allowed(route_verdict(&r, "/api/other", Some(1))));
    }

    #[test]
    fn item68_start_anchored_only() {
        let r = routes(&[("^/api", 0)]);
        assert!(allowed(route_verdict(&r, "/api/anything/else", None)));
        assert!(allowed(route_verdict(&r, "/apiary", None)));
        let unanchored = routes(&[("/api", 0)]);
        assert_eq!(
            route_verdict(&unanchored, "/x/api", None),
            RouteVerdict::NoRoute
        );
        let alternation = routes(&[("a|/b", 0)]);
        assert_eq!(
            route_verdict(&alternation, "/xb", None),
            RouteVerdict::NoRoute
        );
        assert!(allowed(route_verdict(&alternation, "/b", None)));
    }

    #[test]
    fn item69_case_sensitive() {
        let r = routes(&[("^/API", 0)]);
        assert_eq!(route_verdict(&r, "/api", None), RouteVerdict::NoRoute);
    }

    #[test]
    fn item70_invalid_pattern_skipped() {
        let r = routes(&[("^/(unclosed", 0), ("^/", 1)]);
        assert!(!r[0].is_valid());
        assert_eq!(
            route_verdict(&r, "/unclosed", None),
            RouteVerdict::Forbidden
        );
    }

    #[test]
    fn item71_lookahead_and_backreferences() {
        let r = routes(&[(r"^/(?!private)", 0)]);
        assert!(allowed(route_verdict(&r, "/public", None)));
        assert_eq!(route_verdict(&r, "/private/x", None), RouteVerdict::NoRoute);
        let b = routes(&[(r"^/(\w+)/\1$", 0)]);
        assert!(allowed(route_verdict(&b, "/ab/ab", None)));
        assert_eq!(route_verdict(&b, "/ab/cd", None), RouteVerdict::NoRoute);
    }

    #[test]
    fn python_style_escapes_and_dollar() {
        let r = routes(&[(r"^\/api\/v1\/.*$", 1), (r"^/ex_app\/.*", 0)]);
        assert!(allowed(route_verdict(&r, "/api/v1/x", Some(1))));
        assert!(allowed(route_verdict(&r, "/ex_app/js/a.js", None)));
    }

    #[test]
    fn item64_66_levels() {
        let r = routes(&[("^/user", 1), ("^/admin", 2)]);
        assert_eq!(route_verdict(&r, "/user", None), RouteVerdict::Forbidden);
        assert_eq!(route_verdict(&r, "/user", Some(0)), RouteVerdict::Forbidden);
        assert!(allowed(route_verdict(&r, "/user", Some(1))));
        assert_eq!(
            route_verdict(&r, "/admin", Some(1)),
            RouteVerdict::Forbidden
        );
        assert!(allowed(route_verdict(&r, "/admin", Some(2))));
    }

    #[test]
    fn empty_target_path_is_matched_as_empty_string() {
        let r = routes(&[("^$", 0)]);
        assert!(allowed(route_verdict(&r, "", None)));
    }
}
