//! Route matching (contract §2.7): the first route, in Nextcloud's order, whose pattern matches
//! decides. Patterns are compiled in [`CompiledRoute`](crate::contract::CompiledRoute).

pub use crate::contract::CompiledRoute;

/// Access levels of ExApp routes and users.
pub const PUBLIC: u8 = 0;

/// The first route (in Nextcloud's order) whose pattern matches the target path.
pub(crate) fn first_match<'a>(
    routes: &'a [CompiledRoute],
    target_path: &str,
) -> Option<&'a CompiledRoute> {
    routes.iter().find(|r| r.matches(target_path))
}

/// What the first matching route says about a caller with `user_level` (None = anonymous).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RouteVerdict {
    Allow { bruteforce: Vec<u16> },
    Forbidden,
    NoRoute,
}

pub(crate) fn route_verdict(
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
