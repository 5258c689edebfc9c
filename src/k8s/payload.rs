//! Reading AppAPI's Kubernetes request bodies (contract §4.8): every field is checked for type
//! and range before anything reaches the API server, and a refusal names the field.
//!
//! Hand-written over `serde_json::Value` rather than derived: serde's messages for a wrong type
//! do not name the field, and AppAPI's admins need to know which one was refused.

use super::names::{memory_to_mebibytes, nano_cpus_to_millicores, sanitize_name};
use crate::contract::names::ExAppNames;
use crate::contract::ControlError;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Most entries harp accepts in a list or map field (environment variables, labels,
/// annotations): far above what an ExApp declares, far below what would bloat a manifest.
const MAX_ENTRIES: usize = 1024;
/// Longest string harp accepts in any field (an image reference, one environment entry, a
/// CA bundle is the exception: see [`MAX_BUNDLE`]).
const MAX_STRING: usize = 64 * 1024;
/// `install_certificates` may carry a whole system CA bundle; harp only checks its type.
const MAX_BUNDLE: usize = crate::contract::CONTROL_MAX_BODY;

pub(crate) fn bad(field: &str, what: &str) -> ControlError {
    ControlError::BadRequest(format!("Payload validation error: '{field}' {what}"))
}

/// A parsed JSON object body.
pub(crate) struct Fields(Map<String, Value>);

impl Fields {
    pub(crate) fn parse(body: &[u8]) -> Result<Fields, ControlError> {
        match serde_json::from_slice(body) {
            Ok(Value::Object(map)) => Ok(Fields(map)),
            Ok(_) => Err(ControlError::BadRequest(
                "Payload validation error: the body must be a JSON object".into(),
            )),
            Err(_) => Err(ControlError::BadRequest("Invalid JSON body".into())),
        }
    }

    /// A string field; absent or `null` is `None`.
    pub(crate) fn string(&self, field: &str) -> Result<Option<String>, ControlError> {
        self.string_up_to(field, MAX_STRING)
    }

    fn string_up_to(&self, field: &str, max: usize) -> Result<Option<String>, ControlError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() <= max => Ok(Some(s.clone())),
            Some(Value::String(_)) => Err(bad(field, &format!("is longer than {max} bytes"))),
            Some(_) => Err(bad(field, "must be a string")),
        }
    }

    /// An integer field within `min..=max`; absent or `null` is `None`. A numeric string counts
    /// as its number (contract §4.1).
    pub(crate) fn int(&self, field: &str, min: i64, max: i64) -> Result<Option<i64>, ControlError> {
        let value = match self.0.get(field) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
            Some(_) => None,
        };
        match value {
            Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
            _ => Err(bad(
                field,
                &format!("must be an integer from {min} to {max}"),
            )),
        }
    }

    /// A number field within `min..=max`; absent or `null` is `None`. A numeric string counts
    /// as its number (contract §4.1).
    pub(crate) fn number(
        &self,
        field: &str,
        min: f64,
        max: f64,
    ) -> Result<Option<f64>, ControlError> {
        let value = match self.0.get(field) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
            Some(_) => None,
        };
        match value {
            Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
            _ => Err(bad(field, &format!("must be a number from {min} to {max}"))),
        }
    }

    pub(crate) fn boolean(&self, field: &str, default: bool) -> Result<bool, ControlError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(bad(field, "must be true or false")),
        }
    }

    /// One of `allowed` (exact spelling); absent or `null` is `None`.
    pub(crate) fn choice(
        &self,
        field: &str,
        allowed: &[&'static str],
    ) -> Result<Option<&'static str>, ControlError> {
        let Some(v) = self.string(field)? else {
            return Ok(None);
        };
        allowed
            .iter()
            .find(|a| **a == v)
            .copied()
            .map(Some)
            .ok_or_else(|| bad(field, &format!("must be one of {}", allowed.join(", "))))
    }

    /// A list of strings; absent or `null` is empty.
    pub(crate) fn strings(&self, field: &str) -> Result<Vec<String>, ControlError> {
        let items = match self.0.get(field) {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(items)) if items.len() <= MAX_ENTRIES => items,
            Some(Value::Array(_)) => {
                return Err(bad(field, &format!("has more than {MAX_ENTRIES} entries")))
            }
            Some(_) => return Err(bad(field, "must be a list of strings")),
        };
        items
            .iter()
            .map(|v| match v {
                Value::String(s) if s.len() <= MAX_STRING => Ok(s.clone()),
                _ => Err(bad(field, "must be a list of strings")),
            })
            .collect()
    }

    /// A string → string map; absent or `null` is empty.
    pub(crate) fn string_map(&self, field: &str) -> Result<BTreeMap<String, String>, ControlError> {
        let map = match self.0.get(field) {
            None | Some(Value::Null) => return Ok(BTreeMap::new()),
            Some(Value::Object(m)) if m.len() <= MAX_ENTRIES => m,
            Some(Value::Object(_)) => {
                return Err(bad(field, &format!("has more than {MAX_ENTRIES} entries")))
            }
            Some(_) => return Err(bad(field, "must be an object of strings")),
        };
        map.iter()
            .map(|(k, v)| match v {
                Value::String(s) if s.len() <= MAX_STRING => Ok((k.clone(), s.clone())),
                _ => Err(bad(field, &format!("'{k}' must be a string"))),
            })
            .collect()
    }

    /// How many entries a list field of any entries has (absent or `null`: 0).
    pub(crate) fn list_len(&self, field: &str) -> Result<usize, ControlError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(0),
            Some(Value::Array(items)) => Ok(items.len()),
            Some(_) => Err(bad(field, "must be a list")),
        }
    }

    /// The raw value of a field, for the few with a free shape (`resource_limits`).
    fn raw(&self, field: &str) -> Option<&Value> {
        self.0.get(field).filter(|v| !v.is_null())
    }

    /// `name`, `instance_id`, `role_suffix` (contract §4.8), checked as the Docker wrappers
    /// check them.
    pub(crate) fn names(&self) -> Result<K8sNames, ControlError> {
        let name = self
            .string("name")?
            .ok_or_else(|| bad("name", "is required"))?;
        let instance_id = self.string("instance_id")?.unwrap_or_default();
        let role_suffix = self.string("role_suffix")?.unwrap_or_default();
        ExAppNames::new(name, instance_id, role_suffix)
            .map(K8sNames)
            .map_err(ControlError::BadRequest)
    }

    /// `install_certificates`' fields: checked, then ignored (Kubernetes pods get their
    /// certificates from Secrets and volumes, not from harp).
    pub(crate) fn check_certificate_fields(&self) -> Result<(), ControlError> {
        self.string_up_to("system_certs_bundle", MAX_BUNDLE)?;
        self.boolean("install_frp_certs", true)?;
        Ok(())
    }
}

/// The Kubernetes names of one ExApp (role).
#[derive(Debug, Clone)]
pub(crate) struct K8sNames(ExAppNames);

impl K8sNames {
    /// Deployment and Service name: the sanitised container name.
    pub(crate) fn deployment(&self) -> String {
        sanitize_name(&self.0.container())
    }

    /// PVC name: the sanitised volume name, shared by all roles.
    pub(crate) fn pvc(&self) -> String {
        sanitize_name(&self.0.volume())
    }

    /// `app.kubernetes.io/part-of`: the sanitised base name without the role.
    pub(crate) fn part_of(&self) -> String {
        sanitize_name(&self.0.base())
    }

    /// Where the data volume is mounted: `/` + the Docker volume name, as in a Docker ExApp.
    pub(crate) fn mount_path(&self) -> String {
        format!("/{}", self.0.volume())
    }

    /// The sanitised role, when there is one.
    pub(crate) fn role(&self) -> Option<String> {
        (!self.0.role_suffix.is_empty()).then(|| sanitize_name(&self.0.role_suffix))
    }

    /// The app id as AppAPI and Nextcloud spell it (lower-case).
    pub(crate) fn app_id(&self) -> String {
        self.0.name.to_ascii_lowercase()
    }

    /// The labels Deployments and Services carry (contract §4.8).
    pub(crate) fn labels(&self) -> BTreeMap<String, String> {
        let name = self.deployment();
        let mut labels = BTreeMap::from([
            ("app".to_string(), name.clone()),
            ("app.kubernetes.io/name".to_string(), name),
            ("app.kubernetes.io/part-of".to_string(), self.part_of()),
            (
                "app.kubernetes.io/component".to_string(),
                "exapp".to_string(),
            ),
        ]);
        if !self.0.instance_id.is_empty() {
            labels.insert(
                "app.kubernetes.io/instance".into(),
                self.0.instance_id.clone(),
            );
        }
        if let Some(role) = self.role() {
            labels.insert("app.kubernetes.io/role".into(), role);
        }
        labels
    }
}

/// `resource_limits` + `compute_device` → the container's `resources` (requests = limits), or
/// `None` when there is nothing to ask for.
pub(crate) fn resources(f: &Fields) -> Result<Option<Value>, ControlError> {
    let device = f
        .choice("compute_device", &["cpu", "cuda", "rocm"])?
        .unwrap_or("cpu");
    let empty = Map::new();
    let limits_in = match f.raw("resource_limits") {
        None => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err(bad("resource_limits", "must be an object")),
    };
    let quantity =
        |key: &str, from_int: fn(u64) -> Option<String>| -> Result<Option<String>, ControlError> {
            match limits_in.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => match n.as_u64() {
                    Some(v) => Ok(from_int(v)),
                    None => Err(bad(
                        &format!("resource_limits.{key}"),
                        "must be a whole number",
                    )),
                },
                // Already a Kubernetes quantity ("512Mi", "500m"); the API server judges it.
                Some(Value::String(s)) if !s.is_empty() && s.len() <= 64 => Ok(Some(s.clone())),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(_) => Err(bad(
                    &format!("resource_limits.{key}"),
                    "must be a number or a Kubernetes quantity",
                )),
            }
        };
    let mut limits = Map::new();
    if let Some(m) = quantity("memory", memory_to_mebibytes)? {
        limits.insert("memory".into(), Value::String(m));
    }
    // `nanoCPUs` is Docker's count, never a Kubernetes quantity: a string must be its digits
    // (a bare "500000000" passed on as a quantity would ask for 500 million cores).
    let nano = match limits_in.get("nanoCPUs") {
        Some(Value::String(s)) if !s.is_empty() => Some(
            s.parse::<u64>()
                .map_err(|_| bad("resource_limits.nanoCPUs", "must be a whole number"))?,
        ),
        _ => None,
    };
    let cpu = match nano {
        Some(n) => nano_cpus_to_millicores(n),
        None => quantity("nanoCPUs", nano_cpus_to_millicores)?,
    };
    let cpu = match cpu {
        Some(c) => Some(c),
        None => quantity("cpu", |_| None)?,
    };
    if let Some(c) = cpu {
        limits.insert("cpu".into(), Value::String(c));
    }
    let requests = limits.clone();
    match device {
        "cuda" => {
            limits.insert("nvidia.com/gpu".into(), "1".into());
        }
        "rocm" => {
            limits.insert("amd.com/gpu".into(), "1".into());
        }
        _ => {}
    }
    if limits.is_empty() {
        return Ok(None);
    }
    let mut out = Map::new();
    out.insert("limits".into(), Value::Object(limits));
    if !requests.is_empty() {
        out.insert("requests".into(), Value::Object(requests));
    }
    Ok(Some(Value::Object(out)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Fields {
        Fields::parse(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn names_follow_the_contract() {
        let n = fields(json!({"name": "Context_Chat", "instance_id": "oc1", "role_suffix": "RP"}))
            .names()
            .unwrap();
        assert_eq!(n.deployment(), "nc-app-oc1-context-chat-rp");
        assert_eq!(n.pvc(), "nc-app-oc1-context-chat-data");
        assert_eq!(n.part_of(), "nc-app-oc1-context-chat");
        assert_eq!(n.mount_path(), "/nc_app_oc1_Context_Chat_data");
        assert_eq!(n.app_id(), "context_chat");
        let labels = n.labels();
        assert_eq!(labels["app"], "nc-app-oc1-context-chat-rp");
        assert_eq!(labels["app.kubernetes.io/role"], "rp");
        assert_eq!(labels["app.kubernetes.io/instance"], "oc1");
        assert_eq!(labels["app.kubernetes.io/component"], "exapp");
    }

    #[test]
    fn bad_bodies_name_what_is_wrong() {
        let msg = |r: Result<K8sNames, ControlError>| r.unwrap_err().to_string();
        assert!(Fields::parse(b"{nope").is_err());
        assert!(Fields::parse(b"[1]").is_err());
        assert!(msg(fields(json!({})).names()).contains("'name' is required"));
        assert!(msg(fields(json!({"name": ""})).names()).contains("'name'"));
        assert!(msg(fields(json!({"name": 5})).names()).contains("'name' must be a string"));
        assert!(msg(fields(json!({"name": "../x"})).names()).contains("'name'"));
        assert!(
            msg(fields(json!({"name": "a", "role_suffix": "a/b"})).names())
                .contains("'role_suffix'")
        );
        let f = fields(json!({"port": 0, "t": "x", "l": [1], "m": {"a": 1}}));
        assert!(f
            .int("port", 1, 65535)
            .unwrap_err()
            .to_string()
            .contains("'port'"));
        assert!(f
            .choice("t", &["a", "b"])
            .unwrap_err()
            .to_string()
            .contains("one of a, b"));
        assert!(f.strings("l").is_err());
        let numeric = fields(json!({"p": "8080", "w": " 0.5 ", "x": "80x"}));
        assert_eq!(numeric.int("p", 1, 65535).unwrap(), Some(8080));
        assert_eq!(numeric.number("w", 0.1, 10.0).unwrap(), Some(0.5));
        assert!(numeric.int("x", 1, 65535).is_err());
        assert!(f.string_map("m").unwrap_err().to_string().contains("'a'"));
    }

    #[test]
    fn resources_convert_docker_limits() {
        let r = resources(&fields(
            json!({"resource_limits": {"memory": 536870913u64, "nanoCPUs": 1500000001u64}}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(r["limits"], json!({"memory": "513Mi", "cpu": "1501m"}));
        assert_eq!(r["requests"], r["limits"]);
        let r = resources(&fields(
            json!({"resource_limits": {"memory": "1Gi", "cpu": "250m"}, "compute_device": "cuda"}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            r["limits"],
            json!({"memory": "1Gi", "cpu": "250m", "nvidia.com/gpu": "1"})
        );
        assert_eq!(r["requests"], json!({"memory": "1Gi", "cpu": "250m"}));
        let r = resources(&fields(json!({"compute_device": "rocm"})))
            .unwrap()
            .unwrap();
        assert_eq!(r, json!({"limits": {"amd.com/gpu": "1"}}));
        assert_eq!(resources(&fields(json!({}))).unwrap(), None);
        assert!(resources(&fields(json!({"compute_device": "tpu"}))).is_err());
        assert!(resources(&fields(json!({"resource_limits": {"memory": -1}}))).is_err());
        // Docker's CPU count as a string is still a count, never a quantity.
        let r = resources(&fields(
            json!({"resource_limits": {"nanoCPUs": "500000000"}}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(r["limits"], json!({"cpu": "500m"}));
        assert!(resources(&fields(json!({"resource_limits": {"nanoCPUs": "2 cores"}}))).is_err());
    }
}
