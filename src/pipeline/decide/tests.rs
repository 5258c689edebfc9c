use super::*;
use crate::nextcloud::UserInfo;
use crate::pipeline::routes::CompiledRoute;
use parking_lot::Mutex;

struct Fake {
    key: SharedKey,
    banned: bool,
    meta: Option<MetaLookup>,
    user: UserLookup,
    failures: Mutex<Vec<&'static str>>,
    user_calls: Mutex<usize>,
}

impl Fake {
    fn new() -> Fake {
        Fake {
            key: SharedKey::new("k"),
            banned: false,
            meta: Some(MetaLookup::Found(Arc::new(record(&[
                ("^/pub", 0),
                ("^/user", 1),
                ("^/admin", 2),
            ])))),
            user: UserLookup::Anonymous,
            failures: Mutex::new(Vec::new()),
            user_calls: Mutex::new(0),
        }
    }
    fn failures(&self) -> usize {
        self.failures.lock().len()
    }
}

fn record(routes: &[(&str, u8)]) -> ExAppRecord {
    ExAppRecord::new(
        "tok".into(),
        "1.0".into(),
        "127.0.0.1".into(),
        23000,
        routes
            .iter()
            .map(|(p, l)| CompiledRoute::new(p, *l, vec![401]))
            .collect(),
    )
}

impl Context for Fake {
    fn key(&self) -> &SharedKey {
        &self.key
    }
    fn is_banned(&self, _: IpAddr) -> bool {
        self.banned
    }
    fn record_failure(&self, _: IpAddr, reason: &'static str) {
        self.failures.lock().push(reason);
    }
    async fn metadata(&self, _: &str) -> MetaLookup {
        self.meta.clone().unwrap_or(MetaLookup::NotFound)
    }
    async fn user(&self, _: &str, _: &HeaderMap, _: &str) -> UserLookup {
        *self.user_calls.lock() += 1;
        self.user.clone()
    }
}

fn run(ctx: &Fake, method: Method, path: &str, hdrs: &[(&str, &str)]) -> Decision {
    let mut headers = HeaderMap::new();
    for (k, v) in hdrs {
        headers.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let facts = RequestFacts {
        method: &method,
        raw_path: path,
        headers: &headers,
        client_ip: "192.0.2.1".parse().unwrap(),
    };
    futures_util::FutureExt::now_or_never(decide(&facts, ctx)).expect("fake context never blocks")
}

fn get(ctx: &Fake, path: &str, hdrs: &[(&str, &str)]) -> Decision {
    run(ctx, Method::GET, path, hdrs)
}

const SIGNED: [(&str, &str); 6] = [
    ("ex-app-version", "9.9"),
    ("ex-app-id", "foo"),
    ("ex-app-host", "10.1.1.1"),
    ("ex-app-port", "4444"),
    ("authorization-app-api", "YWRtaW46c2VjcmV0"),
    ("harp-shared-key", "k"),
];

#[test]
fn banned_clients_are_dropped_even_with_key_and_nothing_recorded() {
    let mut ctx = Fake::new();
    ctx.banned = true;
    assert!(matches!(
        get(&ctx, "/exapps/app_api/info", &[("harp-shared-key", "k")]),
        Decision::Drop
    ));
    assert_eq!(ctx.failures(), 0);
}

#[test]
fn item31_32_no_app_id_records_unless_trusted() {
    let ctx = Fake::new();
    assert!(matches!(
        get(&ctx, "/exapps/", &[]),
        Decision::Refuse(Refusal::NotFound)
    ));
    assert_eq!(ctx.failures(), 1);
    assert!(matches!(
        get(&ctx, "/exapps/", &[("harp-shared-key", "k")]),
        Decision::Refuse(Refusal::NotFound)
    ));
    assert_eq!(ctx.failures(), 1);
}

#[test]
fn item33_parent_segment_dropped_and_recorded() {
    let ctx = Fake::new();
    assert!(matches!(
        get(&ctx, "/exapps/x/a/%2e%2E/b", &[]),
        Decision::Drop
    ));
    assert_eq!(ctx.failures(), 1);
}

#[test]
fn item41_app_api_without_key() {
    let ctx = Fake::new();
    assert!(matches!(
        get(&ctx, "/exapps/app_api/info", &[]),
        Decision::Refuse(Refusal::Unauthorized)
    ));
    assert!(matches!(
        get(
            &ctx,
            "/exapps/app_api/info",
            &[("harp-shared-key", "wrong")]
        ),
        Decision::Refuse(Refusal::Unauthorized)
    ));
    assert_eq!(ctx.failures(), 2);
}

#[test]
fn item43_uppercase_app_api_is_an_ordinary_exapp() {
    let ctx = Fake {
        meta: None,
        ..Fake::new()
    };
    assert!(matches!(
        get(&ctx, "/exapps/APP_API/info", &[]),
        Decision::Refuse(Refusal::NotFound)
    ));
}

#[test]
fn item49_engine_port_on_info_is_allow_listed_not_control() {
    let ctx = Fake::new();
    let h = [("harp-shared-key", "k"), ("docker-engine-port", "24000")];
    assert!(matches!(
        get(&ctx, "/exapps/app_api/info", &h),
        Decision::EngineForbidden
    ));
    assert!(matches!(
        get(&ctx, "/exapps/app_api/v1.44/_ping", &h),
        Decision::Engine { port: 24000, .. }
    ));
    match run(
        &ctx,
        Method::POST,
        "/exapps/app_api/docker/exapp/exists",
        &h,
    ) {
        Decision::Control { target_path } => assert_eq!(target_path, "/docker/exapp/exists"),
        d => panic!("{d:?}"),
    }
    assert_eq!(ctx.failures(), 0, "allow-list denials are never recorded");
}

#[test]
fn item51_non_numeric_engine_port_is_a_bad_request() {
    let ctx = Fake::new();
    for bad in ["abc", "70000", "0", "-1"] {
        let d = get(
            &ctx,
            "/exapps/app_api/_ping",
            &[("harp-shared-key", "k"), ("docker-engine-port", bad)],
        );
        assert!(
            matches!(d, Decision::Refuse(Refusal::BadRequest(_))),
            "{bad}: {d:?}"
        );
    }
}

#[test]
fn control_without_engine_header() {
    let ctx = Fake::new();
    match get(
        &ctx,
        "/exapps/app_api/exapp_storage/foo",
        &[("harp-shared-key", "k")],
    ) {
        Decision::Control { target_path } => assert_eq!(target_path, "/exapp_storage/foo"),
        d => panic!("{d:?}"),
    }
}

#[test]
fn item53_signed_with_wrong_key_dropped() {
    let ctx = Fake::new();
    let mut h = SIGNED;
    h[5].1 = "wrong";
    assert!(matches!(get(&ctx, "/exapps/foo/x", &h), Decision::Drop));
    assert_eq!(ctx.failures(), 1);
}

#[test]
fn item54_signed_unknown_exapp_uses_header_fallback() {
    let ctx = Fake {
        meta: None,
        ..Fake::new()
    };
    match get(&ctx, "/exapps/foo/heartbeat", &SIGNED) {
        Decision::Forward(p) => {
            assert_eq!((p.record.host.as_str(), p.record.port), ("10.1.1.1", 4444));
            assert_eq!(p.record.version, "9.9");
            assert_eq!(p.authorization, "YWRtaW46c2VjcmV0");
            assert!(p.bruteforce.is_empty());
        }
        d => panic!("{d:?}"),
    }
    let mut bad_port = SIGNED;
    bad_port[3].1 = "x";
    assert!(matches!(
        get(&ctx, "/exapps/foo/x", &bad_port),
        Decision::Refuse(Refusal::AgentError)
    ));
}

#[test]
fn item55_56_signed_known_exapp_uses_record_and_skips_routes() {
    let ctx = Fake::new();
    match get(&ctx, "/exapps/foo/no/route/here", &SIGNED) {
        Decision::Forward(p) => assert_eq!(p.record.port, 23000),
        d => panic!("{d:?}"),
    }
    assert_eq!(ctx.failures(), 0);
}

#[test]
fn item57_58_internal_endpoints() {
    let ctx = Fake::new();
    for ep in ["/heartbeat", "/init", "/enabled"] {
        assert!(matches!(
            get(&ctx, &format!("/exapps/foo{ep}"), &SIGNED),
            Decision::Forward(_)
        ));
        assert!(matches!(
            get(&ctx, &format!("/exapps/foo{ep}"), &[]),
            Decision::Drop
        ));
    }
    assert_eq!(ctx.failures(), 3);
    let unknown = Fake {
        meta: None,
        ..Fake::new()
    };
    assert!(matches!(
        get(&unknown, "/exapps/foo/heartbeat", &[]),
        Decision::Refuse(Refusal::NotFound)
    ));
}

#[test]
fn item61_five_headers_is_unsigned() {
    let ctx = Fake::new();
    assert!(matches!(
        get(&ctx, "/exapps/foo/heartbeat", &SIGNED[1..]),
        Decision::Drop
    ));
}

#[test]
fn empty_appapi_authorization_falls_back_to_routes() {
    let ctx = Fake::new();
    let mut h = SIGNED;
    h[4].1 = "";
    assert!(matches!(
        get(&ctx, "/exapps/foo/nothing", &h),
        Decision::Refuse(Refusal::NotFound)
    ));
}

#[test]
fn item62_63_anonymous_public_without_user_info() {
    let ctx = Fake::new();
    match get(&ctx, "/exapps/foo/pub", &[]) {
        Decision::Forward(p) => {
            assert_eq!(
                p.authorization,
                base64::engine::general_purpose::STANDARD.encode(":tok")
            );
            assert_eq!(p.bruteforce, vec![401]);
        }
        d => panic!("{d:?}"),
    }
    assert_eq!(*ctx.user_calls.lock(), 0);
}

#[test]
fn item64_user_route_anonymous_forbidden_and_recorded() {
    let ctx = Fake::new();
    assert!(matches!(
        get(&ctx, "/exapps/foo/user", &[]),
        Decision::Refuse(Refusal::Forbidden)
    ));
    assert_eq!(ctx.failures(), 1);
}

#[test]
fn item65_66_user_levels() {
    let ctx = Fake {
        user: UserLookup::User(UserInfo {
            user_id: "alice".into(),
            access_level: 1,
        }),
        ..Fake::new()
    };
    let cookie = [("cookie", "oc_sessionPassphrase=s1")];
    match get(&ctx, "/exapps/foo/user", &cookie) {
        Decision::Forward(p) => assert_eq!(
            p.authorization,
            base64::engine::general_purpose::STANDARD.encode("alice:tok")
        ),
        d => panic!("{d:?}"),
    }
    assert!(matches!(
        get(&ctx, "/exapps/foo/admin", &cookie),
        Decision::Refuse(Refusal::Forbidden)
    ));
    let admin = Fake {
        user: UserLookup::User(UserInfo {
            user_id: "root".into(),
            access_level: 2,
        }),
        ..Fake::new()
    };
    assert!(matches!(
        get(
            &admin,
            "/exapps/foo/admin",
            &[("authorization", "Basic eDp5")]
        ),
        Decision::Forward(_)
    ));
}

#[test]
fn item72_no_route_is_not_found_and_recorded() {
    let ctx = Fake::new();
    assert!(matches!(
        get(&ctx, "/exapps/foo/zzz", &[]),
        Decision::Refuse(Refusal::NotFound)
    ));
    assert_eq!(ctx.failures(), 1);
}

#[test]
fn item73_74_user_info_errors_degrade_to_anonymous() {
    for lookup in [UserLookup::Anonymous, UserLookup::Failed("500".into())] {
        let ctx = Fake {
            user: lookup,
            ..Fake::new()
        };
        let cookie = [("cookie", "oc_sessionPassphrase=s1")];
        assert!(matches!(
            get(&ctx, "/exapps/foo/pub", &cookie),
            Decision::Forward(_)
        ));
        assert!(matches!(
            get(&ctx, "/exapps/foo/user", &cookie),
            Decision::Refuse(Refusal::Forbidden)
        ));
    }
}

#[test]
fn item84_85_unknown_and_erroring_metadata() {
    let unknown = Fake {
        meta: None,
        ..Fake::new()
    };
    assert!(matches!(
        get(&unknown, "/exapps/foo/pub", &[]),
        Decision::Refuse(Refusal::NotFound)
    ));
    assert_eq!(unknown.failures(), 1);
    assert!(matches!(
        get(&unknown, "/exapps/foo/pub", &[("harp-shared-key", "k")]),
        Decision::Refuse(Refusal::NotFound)
    ));
    assert_eq!(unknown.failures(), 1, "trusted callers are exempt");
    let erroring = Fake {
        meta: Some(MetaLookup::Error("500".into())),
        ..Fake::new()
    };
    assert!(matches!(
        get(&erroring, "/exapps/foo/pub", &[]),
        Decision::Refuse(Refusal::NotFound)
    ));
    assert_eq!(erroring.failures(), 0);
}

#[test]
fn app_id_keeps_case_and_empty_target() {
    let ctx = Fake {
        meta: Some(MetaLookup::Found(Arc::new(record(&[("^$", 0)])))),
        ..Fake::new()
    };
    match get(&ctx, "/exapps/MyApp", &[]) {
        Decision::Forward(p) => {
            assert_eq!((p.app_id.as_str(), p.target_path.as_str()), ("MyApp", ""))
        }
        d => panic!("{d:?}"),
    }
}

#[test]
fn engine_ports_outside_the_port_plan_are_refused() {
    let ctx = Fake::new();
    for bad in ["23999", "24100", "22", "5432", "8780", "65535"] {
        match get(
            &ctx,
            "/exapps/app_api/v1.44/_ping",
            &[("harp-shared-key", "k"), ("docker-engine-port", bad)],
        ) {
            Decision::Refuse(Refusal::BadRequest(m)) => {
                assert!(
                    m.contains("docker-engine-port") && m.contains("24000-24099"),
                    "{bad}: {m}"
                )
            }
            d => panic!("{bad}: {d:?}"),
        }
    }
    for good in [24000, 24001, 24099] {
        let d = get(
            &ctx,
            "/exapps/app_api/v1.44/_ping",
            &[
                ("harp-shared-key", "k"),
                ("docker-engine-port", &good.to_string()),
            ],
        );
        assert!(
            matches!(d, Decision::Engine { port, .. } if port == good),
            "{good}: {d:?}"
        );
    }
    assert_eq!(ctx.failures(), 0);
}

/// Routes `^/admin` ADMIN and `^/` PUBLIC: the set-up of the internal-endpoint bypass.
fn admin_and_public() -> Fake {
    Fake {
        meta: Some(MetaLookup::Found(Arc::new(record(&[
            ("^/admin", 2),
            ("^/api/admin", 2),
            ("^/api", 1),
            ("^/", 0),
        ])))),
        ..Fake::new()
    }
}

#[test]
fn encoded_internal_endpoints_are_still_internal() {
    let ctx = admin_and_public();
    for path in [
        "/exapps/foo/%65nabled",
        "/exapps/foo//enabled",
        "/exapps/foo/./enabled",
        "/exapps/foo/%2e/enabled",
        "/exapps//foo/enabled",
        "/exapps/foo/%68eartbeat",
        "/exapps/foo/%69%6E%69%74",
    ] {
        let before = ctx.failures();
        assert!(
            matches!(run(&ctx, Method::PUT, path, &[]), Decision::Drop),
            "{path} must be treated as an internal endpoint"
        );
        assert_eq!(ctx.failures(), before + 1, "{path} is recorded");
    }
}

#[test]
fn encoded_paths_match_the_routes_they_decode_to() {
    let mut ctx = admin_and_public();
    ctx.user = UserLookup::User(UserInfo {
        user_id: "u".into(),
        access_level: 1,
    });
    let cookie = [("cookie", "oc_sessionPassphrase=c")];
    for path in [
        "/exapps/foo/api/%61dmin/",
        "/exapps/foo/api//admin/",
        "/exapps/foo/api/./admin",
        "/exapps/foo/%61pi/admin",
    ] {
        assert!(
            matches!(
                get(&ctx, path, &cookie),
                Decision::Refuse(Refusal::Forbidden)
            ),
            "{path} must meet ^/api/admin"
        );
    }
    match get(&ctx, "/exapps/%66oo/api/%7Ex%3a//y", &cookie) {
        Decision::Forward(plan) => {
            assert_eq!(plan.app_id, "foo");
            assert_eq!(
                plan.target_path, "/api/~x%3A/y",
                "the normalised path is forwarded"
            );
        }
        d => panic!("{d:?}"),
    }
}

#[test]
fn ambiguous_paths_are_a_bad_request_and_not_recorded() {
    let ctx = admin_and_public();
    for path in [
        "/exapps/foo/a%2Fb",
        "/exapps/foo/a%5Cb",
        "/exapps/foo/a\\b",
        "/exapps/foo/a%00",
        "/exapps/foo/%zz",
        "/exapps/foo/%C3",
        "/exapps/foo%2Fbar/x",
        "/exapps/app_api/containers/x%5Cy/json",
    ] {
        match get(&ctx, path, &[("harp-shared-key", "k")]) {
            Decision::Refuse(Refusal::BadRequest(m)) => {
                assert!(m.starts_with("invalid path"), "{path}: {m}")
            }
            d => panic!("{path}: {d:?}"),
        }
        assert!(matches!(
            get(&ctx, path, &[]),
            Decision::Refuse(Refusal::BadRequest(_))
        ));
    }
    assert_eq!(ctx.failures(), 0);
}

#[test]
fn encoded_parent_segments_are_still_dropped_and_recorded() {
    let ctx = admin_and_public();
    for path in ["/exapps/foo/a/%2e%2E/b", "/exapps/foo/a%2F..%2Fb"] {
        assert!(matches!(get(&ctx, path, &[]), Decision::Drop), "{path}");
    }
    assert_eq!(ctx.failures(), 2);
}

#[test]
fn control_paths_are_normalised() {
    let ctx = Fake::new();
    match get(
        &ctx,
        "/exapps/app_api//exapp_%73torage/./foo",
        &[("harp-shared-key", "k")],
    ) {
        Decision::Control { target_path } => assert_eq!(target_path, "/exapp_storage/foo"),
        d => panic!("{d:?}"),
    }
}

#[test]
fn encoded_image_names_reach_the_engine_with_their_encoded_slashes() {
    let ctx = Fake::new();
    let path = "/exapps/app_api/v1.44/images/ghcr.io%2fnextcloud%2Fapp%3alatest/json";
    let h = [("harp-shared-key", "k"), ("docker-engine-port", "24000")];
    match get(&ctx, path, &h) {
        Decision::Engine { target_path, .. } => assert_eq!(
            target_path,
            "/v1.44/images/ghcr.io%2Fnextcloud%2Fapp%3Alatest/json"
        ),
        d => panic!("{d:?}"),
    }
    assert!(matches!(
        get(&ctx, "/exapps/app_api/x%2Fy", &[]),
        Decision::Refuse(Refusal::Unauthorized)
    ));
}
