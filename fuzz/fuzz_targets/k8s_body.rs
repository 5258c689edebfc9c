//! AppAPI's Kubernetes `create` and `expose` bodies (`k8s::objects_for_fuzzing`): any bytes
//! yield the objects harp would send or a refusal, never a panic; every name in those objects
//! (metadata names, the PVC claim, the selector and the identity labels) is a DNS-1123 label
//! the API server accepts, whatever the body's names were.
//!
//! Input: the first byte picks the operation (even: `create`, odd: `expose`); the rest is the
//! JSON body.
#![no_main]

use harp_fuzz::cap_heap;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

cap_heap!();

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn assert_label(v: &Value, what: &str) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"));
    assert!(is_label(s), "{what} {s:?} is not a DNS-1123 label");
}

fuzz_target!(|input: &[u8]| {
    set_heap_limit();
    let Some((op, body)) = input.split_first() else {
        return;
    };
    let op = if op % 2 == 0 { "create" } else { "expose" };
    let Ok(objects) = harp::k8s::objects_for_fuzzing(op, body) else {
        return;
    };
    for o in &objects {
        assert_label(&o["metadata"]["name"], "metadata.name");
        let labels = &o["metadata"]["labels"];
        for key in ["app", "app.kubernetes.io/name", "app.kubernetes.io/part-of"] {
            if !labels[key].is_null() {
                assert_label(&labels[key], key);
            }
        }
        if let Some(selector) = o["spec"]["selector"].get("app") {
            assert_label(selector, "Service selector");
        }
        if let Some(claim) =
            o["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"].get("claimName")
        {
            assert_label(claim, "claimName");
        }
    }
});
