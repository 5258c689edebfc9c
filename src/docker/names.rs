//! Container and volume names (contract §4.5) and the ownership labels harp adds (§7 #15).

use super::DockerError;

pub const LABEL_MANAGED_BY: &str = "org.nextcloud.harp.managed-by";
pub const MANAGED_BY: &str = "harp";
pub const LABEL_INSTANCE: &str = "org.nextcloud.harp.instance-id";

/// The naming fields every wrapper body carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub name: String,
    pub instance_id: String,
    pub role_suffix: String,
}

impl Names {
    /// Rejects anything that could escape a URL path segment or a Docker name.
    pub fn new(
        name: String,
        instance_id: String,
        role_suffix: String,
    ) -> Result<Names, DockerError> {
        if name.is_empty() {
            return Err(DockerError::BadRequest(
                "Payload validation error: 'name' must not be empty".into(),
            ));
        }
        for (field, value) in [
            ("name", &name),
            ("instance_id", &instance_id),
            ("role_suffix", &role_suffix),
        ] {
            if let Some(c) = value.chars().find(|c| !is_name_char(*c)) {
                return Err(DockerError::BadRequest(format!(
                    "Payload validation error: '{field}' contains {c:?}; only A-Z a-z 0-9 _ . - are allowed"
                )));
            }
        }
        Ok(Names {
            name,
            instance_id,
            role_suffix,
        })
    }

    pub fn container(&self) -> String {
        container_name(&self.name, &self.instance_id, &self.role_suffix)
    }

    pub fn volume(&self) -> String {
        volume_name(&self.name, &self.instance_id)
    }

    pub fn labels(&self) -> serde_json::Value {
        serde_json::json!({
            LABEL_MANAGED_BY: MANAGED_BY,
            LABEL_INSTANCE: self.instance_id,
        })
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

fn base(name: &str, instance_id: &str) -> String {
    if instance_id.is_empty() {
        format!("nc_app_{name}")
    } else {
        format!("nc_app_{instance_id}_{name}")
    }
}

pub fn container_name(name: &str, instance_id: &str, role_suffix: &str) -> String {
    let mut c = base(name, instance_id);
    if !role_suffix.is_empty() {
        c.push('_');
        c.push_str(role_suffix);
    }
    c
}

/// The role suffix never takes part: all roles of one ExApp share its data volume.
pub fn volume_name(name: &str, instance_id: &str) -> String {
    format!("{}_data", base(name, instance_id))
}

/// Whose a resource is, judged from its labels: `None` when harp did not create it.
pub fn owner_instance(labels: &serde_json::Value) -> Option<&str> {
    if labels.get(LABEL_MANAGED_BY).and_then(|v| v.as_str()) != Some(MANAGED_BY) {
        return None;
    }
    Some(
        labels
            .get(LABEL_INSTANCE)
            .and_then(|v| v.as_str())
            .unwrap_or(""),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract_table() {
        assert_eq!(container_name("foo", "", ""), "nc_app_foo");
        assert_eq!(container_name("foo", "i1", ""), "nc_app_i1_foo");
        assert_eq!(container_name("foo", "i1", "rp"), "nc_app_i1_foo_rp");
        assert_eq!(container_name("foo", "", "rp"), "nc_app_foo_rp");
        assert_eq!(volume_name("foo", ""), "nc_app_foo_data");
        assert_eq!(volume_name("foo", "i1"), "nc_app_i1_foo_data");
    }

    #[test]
    fn bad_names_are_rejected_with_the_field_named() {
        for (n, i, r, field) in [
            ("a/b", "", "", "name"),
            ("a", "x y", "", "instance_id"),
            ("a", "", "r?", "role_suffix"),
            ("ä", "", "", "name"),
        ] {
            let e = Names::new(n.into(), i.into(), r.into()).unwrap_err();
            assert!(e.to_string().contains(field), "{e}");
        }
        assert!(Names::new(String::new(), String::new(), String::new()).is_err());
        assert!(Names::new("A-z_0.9".into(), String::new(), String::new()).is_ok());
    }

    #[test]
    fn ownership_is_read_from_harp_labels_only() {
        let n = Names::new("a".into(), "inst".into(), String::new()).unwrap();
        assert_eq!(owner_instance(&n.labels()), Some("inst"));
        assert_eq!(owner_instance(&serde_json::json!({})), None);
        assert_eq!(
            owner_instance(&serde_json::json!({LABEL_MANAGED_BY: "other"})),
            None
        );
    }
}
