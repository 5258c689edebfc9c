//! The access decision (`pipeline::decide`) and the path facts it rests on
//! (`pipeline::path`), over a stub `Context` whose answers the fuzzer picks: method, raw path,
//! headers (the ones the pipeline reads are offered by index so the fuzzer reaches them),
//! ban state, metadata record with routes, and the user lookup.
//!
//! Invariants checked besides "never panics":
//! - `has_parent_segment` equals a plain oracle: decode only `%2e`/`%2f` (any case), split on
//!   `/`, look for a `..` segment. A difference means some encoding of `..` slips through.
//! - `extract_app` returns slices of the input: a non-empty id without `/`, and a target path
//!   that is a suffix of the raw path.
//! - `decide` finishes without waiting (the stub never suspends); a banned client is dropped;
//!   only a request carrying the shared key reaches the control API or the Docker Engine; a
//!   forward never carries a path with a parent segment, and names the app `extract_app` found.
#![no_main]

use harp::nextcloud::{ExAppRecord, MetaLookup, UserInfo, UserLookup};
use harp::pipeline::normalize::normalize_path;
use harp::pipeline::path::{extract_app, has_parent_segment};
use harp::pipeline::routes::CompiledRoute;
use harp::pipeline::{decide, Context, Decision, RequestFacts};
use harp::security::SharedKey;
use harp_fuzz::{block_on, cap_heap};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;
use std::sync::Arc;

cap_heap!();

const KEY: &str = "fuzz-shared-key";

/// Header names the pipeline reads; an index past the end means "the name in the input".
const NAMES: &[&str] = &[
    "harp-shared-key",
    "docker-engine-port",
    "ex-app-version",
    "ex-app-id",
    "ex-app-host",
    "ex-app-port",
    "authorization-app-api",
    "aa-version",
    "cookie",
    "authorization",
    "x-forwarded-for",
];

/// Realistic ExApp route patterns (routes come from Nextcloud, not from the client; the
/// client-controlled part is the path they are matched against). Includes look-around, which
/// takes the backtracking engine.
const PATTERNS: &[&str] = &[
    ".*",
    "^/pub",
    "^/api/v1/.*",
    "^/(?!admin).*",
    "^/user/[a-z]+$",
    "(?i)^/ADMIN",
    "^/static/.*\\.(js|css)$",
    "[",
];

/// Prefixes put before the fuzzed path so most inputs reach past app-id extraction.
const PREFIXES: &[&str] = &[
    "",
    "/exapps/",
    "/exapps/app_api",
    "/exapps/app/",
    "/exapps/App",
];

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"];

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    custom_method: String,
    prefix: u8,
    raw_path: String,
    headers: Vec<(u8, String, Vec<u8>)>,
    send_key: Option<bool>,
    banned: bool,
    meta: Meta,
    user: User,
    ip: [u8; 4],
}

#[derive(Arbitrary, Debug)]
enum Meta {
    Found { routes: Vec<(u8, u8, Vec<u16>)> },
    NotFound,
    Error,
}

#[derive(Arbitrary, Debug)]
enum User {
    User { id: String, level: u8 },
    Anonymous,
    Failed,
}

struct Stub {
    key: SharedKey,
    banned: bool,
    meta: MetaLookup,
    user: UserLookup,
}

impl Context for Stub {
    fn key(&self) -> &SharedKey {
        &self.key
    }
    fn is_banned(&self, _: IpAddr) -> bool {
        self.banned
    }
    fn record_failure(&self, _: IpAddr, _: &'static str) {}
    async fn metadata(&self, _: &str) -> MetaLookup {
        self.meta.clone()
    }
    async fn user(&self, _: &str, _: &HeaderMap, _: &str) -> UserLookup {
        self.user.clone()
    }
}

/// The oracle for `has_parent_segment`: decode the two escapes that matter, then split.
fn oracle_parent(raw: &str) -> bool {
    let b = raw.as_bytes();
    let mut decoded = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() && b[i + 1] == b'2' {
            match b[i + 2].to_ascii_lowercase() {
                b'e' => {
                    decoded.push(b'.');
                    i += 3;
                    continue;
                }
                b'f' => {
                    decoded.push(b'/');
                    i += 3;
                    continue;
                }
                _ => {}
            }
        }
        decoded.push(b[i]);
        i += 1;
    }
    decoded.split(|&c| c == b'/').any(|seg| seg == b"..")
}

fn is_within(outer: &str, inner: &str) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    i >= o && i + inner.len() <= o + outer.len()
}

fn check_path(raw: &str) {
    assert_eq!(
        has_parent_segment(raw),
        oracle_parent(raw),
        "has_parent_segment disagrees with the oracle on {raw:?}"
    );
    if let Some(app) = extract_app(raw) {
        assert!(!app.app_id.is_empty() && !app.app_id.contains('/'));
        assert!(is_within(raw, app.app_id));
        assert!(raw.ends_with(app.target_path) && is_within(raw, app.target_path));
    }
}

fuzz_target!(|input: Input| {
    set_heap_limit();
    let prefix = PREFIXES[usize::from(input.prefix) % PREFIXES.len()];
    let raw_path = format!("{prefix}{}", input.raw_path);
    check_path(&raw_path);

    let method = match METHODS.get(usize::from(input.method)) {
        Some(m) => Method::from_bytes(m.as_bytes()).expect("standard method"),
        None => match Method::from_bytes(input.custom_method.as_bytes()) {
            Ok(m) => m,
            Err(_) => return,
        },
    };
    let mut headers = HeaderMap::new();
    for (index, name, value) in &input.headers {
        let name = match NAMES.get(usize::from(*index)) {
            Some(n) => HeaderName::from_static(n),
            None => match HeaderName::from_bytes(name.as_bytes()) {
                Ok(n) => n,
                Err(_) => continue,
            },
        };
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.append(name, v);
        }
    }
    match input.send_key {
        Some(true) => {
            headers.insert("harp-shared-key", HeaderValue::from_static(KEY));
        }
        Some(false) => {
            headers.remove("harp-shared-key");
        }
        None => {}
    }
    let trusted = harp::pipeline::facts::header(&headers, "harp-shared-key") == Some(KEY);

    let meta = match input.meta {
        Meta::Found { routes } => MetaLookup::Found(Arc::new(ExAppRecord::new(
            "token".into(),
            "1.0.0".into(),
            "127.0.0.1".into(),
            23000,
            // Compiling a route is the costliest step of an input; four cover "first match
            // decides" and keep the target fast.
            routes
                .into_iter()
                .take(4)
                .map(|(p, level, bruteforce)| {
                    let pattern = PATTERNS[usize::from(p) % PATTERNS.len()];
                    CompiledRoute::new(pattern, level % 3, bruteforce)
                })
                .collect(),
        ))),
        Meta::NotFound => MetaLookup::NotFound,
        Meta::Error => MetaLookup::Error("stub error".into()),
    };
    let user = match input.user {
        User::User { id, level } => UserLookup::User(UserInfo {
            user_id: id,
            access_level: level % 3,
        }),
        User::Anonymous => UserLookup::Anonymous,
        User::Failed => UserLookup::Failed("stub failure".into()),
    };
    let stub = Stub {
        key: SharedKey::new(KEY),
        banned: input.banned,
        meta,
        user,
    };
    let facts = RequestFacts {
        method: &method,
        raw_path: &raw_path,
        headers: &headers,
        client_ip: IpAddr::from(input.ip),
    };
    // The stub answers at once, so one poll must decide.
    let decision = block_on(decide(&facts, &stub), 1);

    if input.banned {
        assert!(matches!(decision, Decision::Drop));
    }
    match &decision {
        Decision::Control { .. } | Decision::Engine { .. } | Decision::EngineForbidden => {
            assert!(
                trusted,
                "control API or engine reached without the shared key"
            )
        }
        Decision::Forward(plan) => {
            assert!(!has_parent_segment(&raw_path));
            // Decisions are made on (and forwarded as) the normalised path; an ExApp path
            // that gets this far has no encoded `/`, so the strict normaliser accepts it.
            let path = normalize_path(&raw_path).expect("a forwarded path normalises");
            let app = extract_app(&path).expect("forwarded path names an app");
            assert_eq!(plan.app_id, app.app_id);
            assert_eq!(plan.target_path, app.target_path);
        }
        Decision::Drop | Decision::Refuse(_) => {}
    }
});
