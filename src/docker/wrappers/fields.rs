//! The `create` fields that become the container's `HostConfig`, and the rules they must pass
//! before any engine call. Every ExApp holds the shared key and can therefore call `create`, so
//! each of these fields is a way from one ExApp towards the host: joining another container's or
//! the host's namespaces (`network_mode`), binding host paths outside the intended one (mount
//! paths), or getting an engine to read a value in a way harp did not check. A refusal names the
//! field and is a `400` (contract §4.1 "Payload validation error").
//!
//! Fields are read from the JSON as sent (`Option<Value>`: absent, `null`, or a value), because
//! absent and `null` mean different things here (an absent `restart_policy` is the default, a
//! `null` one is refused) and because serde's own type errors would not name the field.

use super::parse_field_err;
use crate::docker::DockerError;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Longest `network_mode`: the reference's bound; real network names are far shorter.
pub(crate) const MAX_NETWORK_MODE: usize = 255;
/// Longest mount path: Linux's `PATH_MAX`; no longer host or container path can exist.
pub(crate) const MAX_MOUNT_PATH: usize = 4096;
/// The restart policies Docker's API defines by name (the empty name is Docker's "no").
/// `on-failure:<n>`, the CLI's spelling, is not an API name and is refused like any other.
const RESTART_POLICIES: [&str; 5] = ["", "no", "always", "unless-stopped", "on-failure"];
/// Used when the body has no `restart_policy` key (contract §4.6).
pub(crate) const DEFAULT_RESTART_POLICY: &str = "unless-stopped";
/// Used when the body has no `network_mode` key (contract §4.6).
pub(crate) const DEFAULT_NETWORK_MODE: &str = "bridge";

/// `deserialize_with` for `#[serde(default)]` fields: `None` when the key is absent,
/// `Some(Value::Null)` when it is `null`.
pub(crate) fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn refuse(field: &str, what: &str) -> DockerError {
    parse_field_err(&format!("'{field}' {what}"))
}

/// A string field where `null` counts as absent.
pub(crate) fn string(field: &str, v: Option<Value>) -> Result<Option<String>, DockerError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(refuse(field, "must be a string")),
    }
}

/// A string field whose absence means `default`, and which may not be `null`.
fn string_or_default(field: &str, v: Option<Value>, default: &str) -> Result<String, DockerError> {
    match v {
        None => Ok(default.to_string()),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(refuse(field, "must be a string")),
    }
}

/// A plain network name (`host`, `bridge`, `my.net`, a network id). Docker also reads
/// `container:<name>` (share another container's network namespace) and other runtimes
/// `ns:<path>` (join any namespace, the host's included); both need a `:`, which no network name
/// has, so any `:` is refused. Blanks and control characters have no place in a name either.
pub(crate) fn network_mode(v: Option<Value>) -> Result<String, DockerError> {
    const FIELD: &str = "network_mode";
    let mode = string_or_default(FIELD, v, DEFAULT_NETWORK_MODE)?;
    if mode.is_empty() {
        return Err(refuse(FIELD, "must not be empty"));
    }
    if mode.chars().count() > MAX_NETWORK_MODE {
        return Err(refuse(
            FIELD,
            &format!("is longer than {MAX_NETWORK_MODE} characters"),
        ));
    }
    if mode.contains(':') {
        return Err(refuse(
            FIELD,
            "must be a network name; 'container:' and 'ns:' forms (any ':') are refused",
        ));
    }
    if mode.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(refuse(
            FIELD,
            "must not contain blanks or control characters",
        ));
    }
    Ok(mode)
}

/// Exactly one of Docker's policy names; absent means `unless-stopped`, `null` is refused.
pub(crate) fn restart_policy(v: Option<Value>) -> Result<String, DockerError> {
    const FIELD: &str = "restart_policy";
    let policy = string_or_default(FIELD, v, DEFAULT_RESTART_POLICY)?;
    if RESTART_POLICIES.contains(&policy.as_str()) {
        Ok(policy)
    } else {
        Err(refuse(
            FIELD,
            "must be one of '', 'no', 'always', 'unless-stopped', 'on-failure'",
        ))
    }
}

/// One validated bind mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BindMount {
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

/// Host paths no ExApp may bind, nor any directory that contains one: the kernel's views of the
/// host (`/proc`, `/sys`), the boot loader, container engines' sockets and state (a mounted engine
/// socket or `/var/lib/docker` is root on the host), and the host's login secrets. These are the
/// entries the reference enforces by default; its `HP_EXAPP_BIND_MOUNTS_*` settings, which can
/// widen or narrow them, are not implemented, so here they always apply. The match is on the
/// normalised path, by whole segments (`/var/lib/dockerfiles` is not `/var/lib/docker`).
const NEVER_MOUNTED: [&str; 14] = [
    "/proc",
    "/sys",
    "/boot",
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/containerd",
    "/var/run/containerd",
    "/run/podman",
    "/run/crio",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/etc/shadow",
    "/etc/sudoers.d",
    "/etc/ssh",
];

/// `path` is `base` or lies below it (both normalised).
fn at_or_below(path: &str, base: &str) -> bool {
    base == "/" || path == base || path.strip_prefix(base).is_some_and(|r| r.starts_with('/'))
}

/// Refuses a bind source that is, lies below, or contains a [`NEVER_MOUNTED`] path.
fn check_host_path(field: &str, source: &str) -> Result<(), DockerError> {
    for denied in NEVER_MOUNTED {
        if at_or_below(source, denied) {
            return Err(refuse(
                field,
                &format!(
                    "'{source}' is refused: ExApps may not mount '{denied}' or anything below it"
                ),
            ));
        }
        if at_or_below(denied, source) {
            return Err(refuse(
                field,
                &format!(
                    "'{source}' is refused: it contains '{denied}', which ExApps may not mount"
                ),
            ));
        }
    }
    Ok(())
}

/// `mount_points`: absent or `null` is none; otherwise a list of `{source, target, mode}`.
pub(crate) fn mount_points(v: Option<Value>) -> Result<Vec<BindMount>, DockerError> {
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(refuse("mount_points", "must be a list")),
    };
    list.into_iter()
        .enumerate()
        .map(|(i, m)| {
            let Value::Object(mut m) = m else {
                return Err(refuse(&format!("mount_points[{i}]"), "must be an object"));
            };
            let path = |key: &str, v: Option<Value>| {
                let field = format!("mount_points[{i}].{key}");
                match v {
                    Some(Value::String(s)) => mount_path(&field, &s),
                    None | Some(Value::Null) => Err(refuse(&field, "is required")),
                    Some(_) => Err(refuse(&field, "must be a string")),
                }
            };
            let source = path("source", m.remove("source"))?;
            check_host_path(&format!("mount_points[{i}].source"), &source)?;
            let target = path("target", m.remove("target"))?;
            // Absent is read-write, as it always was; anything else but the two words is refused
            // (the reference once treated every value but "ro" as read-write).
            let read_only = match m.remove("mode") {
                None => false,
                Some(Value::String(s)) if s == "rw" => false,
                Some(Value::String(s)) if s == "ro" => true,
                Some(_) => {
                    return Err(refuse(
                        &format!("mount_points[{i}].mode"),
                        "must be 'ro' or 'rw'",
                    ))
                }
            };
            Ok(BindMount {
                source,
                target,
                read_only,
            })
        })
        .collect()
}

/// An absolute path, normalised (`//` and `/./` folded, trailing `/` dropped) so that what is
/// checked is what the engine binds. `..` is refused rather than resolved: resolving it would
/// decide on a path the sender did not write. `:` is Docker's bind-string separator (`src:dst:mode`)
/// and NUL and other control characters end or split paths in the engine and the kernel; blanks
/// are ordinary file-name characters and allowed.
pub(crate) fn mount_path(field: &str, raw: &str) -> Result<String, DockerError> {
    if raw.len() > MAX_MOUNT_PATH {
        return Err(refuse(
            field,
            &format!("is longer than {MAX_MOUNT_PATH} bytes"),
        ));
    }
    if !raw.starts_with('/') {
        return Err(refuse(field, "must be an absolute path"));
    }
    if raw.contains(':') {
        return Err(refuse(field, "must not contain ':'"));
    }
    if raw.chars().any(char::is_control) {
        return Err(refuse(
            field,
            "must not contain control characters (NUL, newline, ...)",
        ));
    }
    let mut segments = Vec::new();
    for segment in raw.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(refuse(field, "must not contain '..'")),
            s => segments.push(s),
        }
    }
    Ok(format!("/{}", segments.join("/")))
}

/// The limits harp passes to `HostConfig`; other keys of `resource_limits` (Kubernetes units such
/// as `cpu`) are ignored, as the reference does for Docker.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub memory: Option<i64>,
    pub nano_cpus: Option<i64>,
}

/// `resource_limits`: absent or `null` is none; each limit is a non-negative JSON integer or
/// `null` (AppAPI's templates send `null`, §4.6). Strings, fractions, booleans and negatives are
/// refused: the engine would read them differently or not at all.
pub(crate) fn resource_limits(v: Option<Value>) -> Result<Limits, DockerError> {
    let map = match v {
        None | Some(Value::Null) => return Ok(Limits::default()),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(refuse("resource_limits", "must be an object")),
    };
    let limit = |key: &str| match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        // `as_i64` is `None` for fractions and for integers beyond Docker's int64.
        Some(Value::Number(n)) => match n.as_i64() {
            Some(x) if x >= 0 => Ok(Some(x)),
            _ => Err(not_a_count(key)),
        },
        Some(_) => Err(not_a_count(key)),
    };
    Ok(Limits {
        memory: limit("memory")?,
        nano_cpus: limit("nanoCPUs")?,
    })
}

fn not_a_count(key: &str) -> DockerError {
    refuse(
        &format!("resource_limits.{key}"),
        "must be a non-negative integer or null",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(e: DockerError) -> String {
        match e {
            DockerError::BadRequest(m) => m,
            other => panic!("not a 400: {other:?}"),
        }
    }

    #[test]
    fn network_modes_accepted() {
        assert_eq!(network_mode(None).unwrap(), "bridge");
        for mode in [
            "host",
            "bridge",
            "none",
            "nextcloud",
            "nextcloud-aio",
            "master_bridge",
            "my.net",
            "0123456789ab",
        ] {
            assert_eq!(network_mode(Some(json!(mode))).unwrap(), mode);
        }
        let longest = "n".repeat(MAX_NETWORK_MODE);
        assert_eq!(network_mode(Some(json!(longest))).unwrap(), longest);
    }

    #[test]
    fn network_modes_refused() {
        let too_long = "n".repeat(MAX_NETWORK_MODE + 1);
        for mode in [
            json!(""),
            json!("container:nc_app_other"),
            json!("container:0123456789ab"),
            json!("ns:/proc/1/ns/net"),
            json!("host:"),
            json!("my net"),
            json!("a\tb"),
            json!("a\nb"),
            json!("net\u{1}"),
            json!("\u{1b}net"),
            json!("net\u{a0}"),
            json!(too_long),
            json!(null),
            json!(5),
            json!(["host"]),
        ] {
            let m = message(network_mode(Some(mode.clone())).unwrap_err());
            assert!(m.contains("'network_mode'"), "{mode}: {m}");
        }
    }

    #[test]
    fn restart_policies_accepted_and_refused() {
        assert_eq!(restart_policy(None).unwrap(), "unless-stopped");
        for p in ["", "no", "always", "unless-stopped", "on-failure"] {
            assert_eq!(restart_policy(Some(json!(p))).unwrap(), p);
        }
        for p in [
            json!("sometimes"),
            json!("on-failure:3"),
            json!("Always"),
            json!(" always"),
            json!(null),
            json!(1),
        ] {
            let m = message(restart_policy(Some(p.clone())).unwrap_err());
            assert!(m.contains("'restart_policy'"), "{p}: {m}");
        }
    }

    #[test]
    fn mount_paths_are_normalised() {
        for (raw, want) in [
            ("/mnt/models", "/mnt/models"),
            ("/mnt//models/", "/mnt/models"),
            ("//mnt/models", "/mnt/models"),
            ("/mnt/./models", "/mnt/models"),
            ("/mnt/AI models/", "/mnt/AI models"),
            ("/mnt/...", "/mnt/..."),
            ("/mnt/..a", "/mnt/..a"),
            ("/", "/"),
            ("/./", "/"),
        ] {
            assert_eq!(mount_path("f", raw).unwrap(), want, "{raw:?}");
        }
    }

    #[test]
    fn mount_paths_refused() {
        let too_long = format!("/{}", "a".repeat(MAX_MOUNT_PATH));
        for raw in [
            "",
            "models",
            "./models",
            "/mnt/../etc",
            "/mnt/..",
            "/..",
            "/mnt/a:b",
            "/mnt/a\0b",
            "/a\nb",
            "/a\rb",
            too_long.as_str(),
        ] {
            let m = message(mount_path("mount_points[0].source", raw).unwrap_err());
            assert!(m.contains("'mount_points[0].source'"), "{raw:?}: {m}");
        }
    }

    #[test]
    fn mount_points_accepted() {
        assert_eq!(mount_points(None).unwrap(), vec![]);
        assert_eq!(mount_points(Some(Value::Null)).unwrap(), vec![]);
        let got = mount_points(Some(json!([
            {"source": "/mnt/a/", "target": "/data", "mode": "ro"},
            {"source": "/srv//b", "target": "/b", "mode": "rw"},
            {"source": "/c", "target": "/c/./d"},
        ])))
        .unwrap();
        let bind = |source: &str, target: &str, read_only| BindMount {
            source: source.into(),
            target: target.into(),
            read_only,
        };
        assert_eq!(
            got,
            vec![
                bind("/mnt/a", "/data", true),
                bind("/srv/b", "/b", false),
                bind("/c", "/c/d", false),
            ]
        );
    }

    #[test]
    fn mount_points_refused_with_the_field_named() {
        let ok = json!({"source": "/mnt/a", "target": "/mnt/a"});
        for (mount, field) in [
            (
                json!({"source": "/mnt/../etc", "target": "/t"}),
                "[1].source",
            ),
            (json!({"source": "models", "target": "/t"}), "[1].source"),
            (json!({"source": "/mnt/a:b", "target": "/t"}), "[1].source"),
            (
                json!({"source": "/s", "target": "/t/../../x"}),
                "[1].target",
            ),
            (json!({"source": "/s", "target": "t"}), "[1].target"),
            (json!({"target": "/t"}), "[1].source"),
            (json!({"source": null, "target": "/t"}), "[1].source"),
            (json!({"source": 1, "target": "/t"}), "[1].source"),
            (json!({"source": "/s"}), "[1].target"),
            (
                json!({"source": "/s", "target": "/t", "mode": null}),
                "[1].mode",
            ),
            (
                json!({"source": "/s", "target": "/t", "mode": ""}),
                "[1].mode",
            ),
            (
                json!({"source": "/s", "target": "/t", "mode": "RO"}),
                "[1].mode",
            ),
            (
                json!({"source": "/s", "target": "/t", "mode": "ro "}),
                "[1].mode",
            ),
            (
                json!({"source": "/s", "target": "/t", "mode": "rw,z"}),
                "[1].mode",
            ),
            (
                json!({"source": "/s", "target": "/t", "mode": "readonly"}),
                "[1].mode",
            ),
            (
                json!({"source": "/s", "target": "/t", "mode": true}),
                "[1].mode",
            ),
            (json!("/s:/t"), "[1]"),
        ] {
            let m = message(mount_points(Some(json!([ok, mount]))).unwrap_err());
            assert!(
                m.contains(&format!("'mount_points{field}'")),
                "{mount}: {m}"
            );
        }
        let m = message(mount_points(Some(json!({"source": "/s"}))).unwrap_err());
        assert!(m.contains("'mount_points' must be a list"), "{m}");
    }

    #[test]
    fn host_paths_that_reach_the_host_are_never_mounted() {
        for source in [
            "/",
            "/var",
            "/var/lib",
            "/var/run/docker.sock",
            "//var//run/docker.sock",
            "/var/./run/docker.sock/",
            "/run/docker.sock",
            "/run",
            "/var/run",
            "/run/containerd/containerd.sock",
            "/var/run/containerd",
            "/run/podman/podman.sock",
            "/run/crio/crio.sock",
            "/proc",
            "/proc/1/root",
            "/sys/fs/cgroup",
            "/boot",
            "/var/lib/docker",
            "/var/lib/docker/volumes",
            "/var/lib/containerd",
            "/etc",
            "/etc/shadow",
            "/etc/sudoers.d/exapp",
            "/etc/ssh/sshd_config",
        ] {
            for mode in ["ro", "rw"] {
                let m = message(
                    mount_points(Some(
                        json!([{"source": source, "target": "/t", "mode": mode}]),
                    ))
                    .unwrap_err(),
                );
                assert!(m.contains("'mount_points[0].source'"), "{source}: {m}");
                assert!(m.contains("ExApps may not mount"), "{source}: {m}");
            }
        }
    }

    #[test]
    fn ordinary_host_paths_may_be_mounted() {
        for source in [
            "/mnt/models",
            "/srv/exapps/data",
            "/home/user/models",
            "/var/lib/exapps",
            "/var/lib/dockerfiles",
            "/runner",
            "/opt/models",
            "/etc/localtime",
            "/etc/ssl/certs",
            "/usr/share/models",
            "/dev/shm",
            "/dev/dri",
            "/var/run/mysqld/mysqld.sock",
            "/sysroot",
            "/processes",
        ] {
            let got = mount_points(Some(json!([{"source": source, "target": "/proc"}])));
            assert!(got.is_ok(), "{source}: {got:?}");
        }
    }

    #[test]
    fn resource_limits_accepted() {
        assert_eq!(resource_limits(None).unwrap(), Limits::default());
        assert_eq!(
            resource_limits(Some(Value::Null)).unwrap(),
            Limits::default()
        );
        for (v, memory, nano_cpus) in [
            (json!({}), None, None),
            (json!({"memory": 0}), Some(0), None),
            (json!({"memory": null, "nanoCPUs": null}), None, None),
            (json!({"cpu": "500m"}), None, None),
            (
                json!({"memory": 536870912, "nanoCPUs": 1500000000}),
                Some(536870912),
                Some(1500000000),
            ),
            (json!({"memory": i64::MAX}), Some(i64::MAX), None),
        ] {
            assert_eq!(
                resource_limits(Some(v.clone())).unwrap(),
                Limits { memory, nano_cpus },
                "{v}"
            );
        }
    }

    #[test]
    fn resource_limits_refused() {
        for (v, field) in [
            (json!({"memory": "512Mi"}), "memory"),
            (json!({"memory": "1024"}), "memory"),
            (json!({"memory": 1.5}), "memory"),
            (json!({"memory": 1.0}), "memory"),
            (json!({"memory": -1}), "memory"),
            (json!({"memory": true}), "memory"),
            (json!({"memory": u64::MAX}), "memory"),
            (json!({"memory": [1]}), "memory"),
            (json!({"nanoCPUs": "2"}), "nanoCPUs"),
            (json!({"memory": 1, "nanoCPUs": -5}), "nanoCPUs"),
        ] {
            let m = message(resource_limits(Some(v.clone())).unwrap_err());
            assert!(
                m.contains(&format!(
                    "'resource_limits.{field}' must be a non-negative integer"
                )),
                "{v}: {m}"
            );
        }
        let m = message(resource_limits(Some(json!([1]))).unwrap_err());
        assert!(m.contains("'resource_limits' must be an object"), "{m}");
    }
}
