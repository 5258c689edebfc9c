//! Container and volume names (contract §4.5), the rules their parts follow before anything
//! reaches an engine, and the ownership labels harp adds (§7 #15).

pub(super) use crate::contract::names::ExAppNames as Names;

pub(super) const LABEL_MANAGED_BY: &str = "org.nextcloud.harp.managed-by";
pub(super) const MANAGED_BY: &str = "harp";
pub(super) const LABEL_INSTANCE: &str = "org.nextcloud.harp.instance-id";

/// harp's ownership labels for a container or volume it creates.
pub(super) fn labels(names: &Names) -> serde_json::Value {
    serde_json::json!({
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_INSTANCE: names.instance_id,
    })
}

/// Whose a resource is, judged from its labels: `None` when harp did not create it.
pub(super) fn owner_instance(labels: &serde_json::Value) -> Option<&str> {
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
    fn ownership_is_read_from_harp_labels_only() {
        let n = Names::new("a".into(), "inst".into(), String::new()).unwrap();
        assert_eq!(owner_instance(&labels(&n)), Some("inst"));
        assert_eq!(owner_instance(&serde_json::json!({})), None);
        assert_eq!(
            owner_instance(&serde_json::json!({LABEL_MANAGED_BY: "other"})),
            None
        );
    }
}
