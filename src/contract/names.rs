//! ExApp resource names (contract §4.5, §4.8): the validated `name`, `instance_id` and
//! `role_suffix` every Docker and Kubernetes wrapper body carries, and the container and volume
//! names built from them. Both backends name resources from these, so they live here once.

/// The naming fields of a wrapper body, each checked by [`check_part`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExAppNames {
    pub(crate) name: String,
    pub(crate) instance_id: String,
    pub(crate) role_suffix: String,
}

impl ExAppNames {
    /// Checks each part; `name` must not be empty. The error is the 400 message.
    pub(crate) fn new(
        name: String,
        instance_id: String,
        role_suffix: String,
    ) -> Result<ExAppNames, String> {
        if name.is_empty() {
            return Err(invalid("name", "must not be empty"));
        }
        check_part("name", &name)?;
        check_part("instance_id", &instance_id)?;
        check_part("role_suffix", &role_suffix)?;
        Ok(ExAppNames {
            name,
            instance_id,
            role_suffix,
        })
    }

    /// `nc_app_[<instance_id>_]<name>[_<role_suffix>]`.
    pub(crate) fn container(&self) -> String {
        container_name(&self.name, &self.instance_id, &self.role_suffix)
    }

    /// `nc_app_[<instance_id>_]<name>_data`.
    pub(crate) fn volume(&self) -> String {
        volume_name(&self.name, &self.instance_id)
    }

    /// `nc_app_[<instance_id>_]<name>`: what all roles of one ExApp share.
    pub(crate) fn base(&self) -> String {
        base(&self.name, &self.instance_id)
    }
}

/// Longest `name`, `instance_id` or `role_suffix`: the reference's limit, which is also a DNS
/// label's (the bare `name` becomes the container's hostname).
pub(crate) const MAX_NAME_PART: usize = 63;

fn invalid(field: &str, what: &str) -> String {
    format!("Payload validation error: '{field}' {what}")
}

/// A non-empty part is 1–[`MAX_NAME_PART`] characters of `A–Z a–z 0–9 _ . -` starting with a
/// letter or digit: it cannot leave a URL path segment (`/`, `?`, `%`, `#`, `..`), cannot be
/// read as a command-line option (`-`), and is a valid Docker container and volume name part.
fn check_part(field: &str, value: &str) -> Result<(), String> {
    let Some(first) = value.chars().next() else {
        return Ok(());
    };
    if let Some(c) = value.chars().find(|c| !is_name_char(*c)) {
        return Err(invalid(
            field,
            &format!("contains {c:?}; only A-Z a-z 0-9 _ . - are allowed"),
        ));
    }
    if !first.is_ascii_alphanumeric() {
        return Err(invalid(field, "must start with a letter or digit"));
    }
    // All characters are ASCII here, so bytes count characters.
    if value.len() > MAX_NAME_PART {
        return Err(invalid(
            field,
            &format!("is longer than {MAX_NAME_PART} characters"),
        ));
    }
    Ok(())
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

fn container_name(name: &str, instance_id: &str, role_suffix: &str) -> String {
    let mut c = base(name, instance_id);
    if !role_suffix.is_empty() {
        c.push('_');
        c.push_str(role_suffix);
    }
    c
}

/// The role suffix never takes part: all roles of one ExApp share its data volume.
fn volume_name(name: &str, instance_id: &str) -> String {
    format!("{}_data", base(name, instance_id))
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
        let long = "x".repeat(MAX_NAME_PART + 1);
        for bad in [
            "../etc",
            "a/b",
            "a b",
            "a?force=true",
            "a%2Fb",
            "a#b",
            "a:b",
            "-a",
            ".a",
            "_a",
            "a\n",
            "a\0",
            "ä",
            long.as_str(),
        ] {
            let e = ExAppNames::new(bad.into(), String::new(), String::new()).unwrap_err();
            assert!(e.to_string().contains("'name'"), "{bad:?}: {e}");
            for (i, r, field) in [(bad, "", "'instance_id'"), ("", bad, "'role_suffix'")] {
                let e = ExAppNames::new("app".into(), i.into(), r.into()).unwrap_err();
                assert!(e.to_string().contains(field), "{bad:?}: {e}");
            }
        }
        let e = ExAppNames::new(String::new(), String::new(), String::new()).unwrap_err();
        assert!(e.to_string().contains("'name' must not be empty"), "{e}");
        let e = ExAppNames::new("-a".into(), String::new(), String::new()).unwrap_err();
        assert!(
            e.to_string().contains("start with a letter or digit"),
            "{e}"
        );
        let e = ExAppNames::new(long.clone(), String::new(), String::new()).unwrap_err();
        assert!(e.to_string().contains("longer than 63"), "{e}");
    }

    #[test]
    fn good_names_are_accepted() {
        let longest = "x".repeat(MAX_NAME_PART);
        for good in [
            "app-skeleton-python",
            "context_chat_backend",
            "llm2",
            "a.b",
            "A1",
            "A-z_0.9",
            "0",
            longest.as_str(),
        ] {
            assert!(
                ExAppNames::new(good.into(), String::new(), String::new()).is_ok(),
                "{good:?}"
            );
        }
        for part in ["", "oc1a2b3c4d5e", "rp", "idx_1", longest.as_str()] {
            assert!(
                ExAppNames::new("app".into(), part.into(), part.into()).is_ok(),
                "{part:?}"
            );
        }
    }
}
