use super::*;

#[test]
fn app_labels_are_interned_and_capped_with_an_overflow_label() {
    let apps = AppLabels::new(2);
    let a = apps.label("a");
    assert!(
        Arc::ptr_eq(&a.0, &apps.label("a").0),
        "a known app reuses its label"
    );
    assert_eq!(&*apps.label("b").0, "b");
    assert_eq!(&*apps.label("c").0, OVERFLOW_APP);
    assert_eq!(
        &*apps.label("a").0,
        "a",
        "known apps keep their label after the cap"
    );
}

#[test]
fn status_classes() {
    assert_eq!(StatusClass::of(Some(101)), StatusClass::C1xx);
    assert_eq!(StatusClass::of(Some(204)), StatusClass::C2xx);
    assert_eq!(StatusClass::of(Some(302)), StatusClass::C3xx);
    assert_eq!(StatusClass::of(Some(403)), StatusClass::C4xx);
    assert_eq!(StatusClass::of(Some(502)), StatusClass::C5xx);
    assert_eq!(StatusClass::of(None), StatusClass::None);
}

#[test]
fn exposition_names_labels_and_process_gauges() {
    let m = Metrics::new();
    m.count(m.apps.label("app_a"), Outcome::forwarded, Some(200));
    m.count(m.apps.label("app_a"), Outcome::forwarded, Some(200));
    m.count(m.apps.label(NO_APP), Outcome::denied, Some(401));
    let text = m.render();
    assert!(
        text.contains(r#"harp_requests_total{app="app_a",outcome="forwarded",status="2xx"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"harp_requests_total{app="",outcome="denied",status="4xx"} 1"#),
        "{text}"
    );
    let rss = text
        .lines()
        .find_map(|l| l.strip_prefix("harp_process_resident_memory_bytes "))
        .and_then(|v| v.parse::<i64>().ok())
        .expect("rss line");
    assert!(rss > 0, "{text}");
}

use std::sync::Arc;

#[test]
fn text_004_names_counter_families_with_total_and_drops_openmetrics_only_lines() {
    let m = Metrics::new();
    m.count(m.apps.label("a"), Outcome::forwarded, Some(200));
    let om = m.render();
    assert!(om.contains("# TYPE harp_requests counter") && om.ends_with("# EOF\n"));
    let text = listener::to_text_004(&om);
    assert!(
        text.contains("# TYPE harp_requests_total counter"),
        "{text}"
    );
    assert!(
        text.contains("# HELP harp_requests_total Front-door"),
        "{text}"
    );
    assert!(text.contains(r#"harp_requests_total{app="a",outcome="forwarded",status="2xx"} 1"#));
    // Gauges and histograms keep their names.
    assert!(
        text.contains("# TYPE harp_open_client_connections gauge"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE harp_upstream_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        !text.contains("# EOF") && !text.contains("# UNIT"),
        "{text}"
    );
    // Every sample line survives unchanged.
    let samples = |t: &str| t.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(samples(&om), samples(&text));
}

#[test]
fn cache_answers_land_in_the_series_of_their_call_and_result() {
    let m = Metrics::new();
    let nc = m.nextcloud.clone();
    nc.cache(nextcloud::Call::user_info, true);
    nc.cache(nextcloud::Call::user_info, true);
    nc.cache(nextcloud::Call::user_info, false);
    nc.cache(nextcloud::Call::exapp_meta, true);
    let text = m.render();
    let value = |call: &str, result: &str| {
        let prefix = format!("harp_nextcloud_cache_total{{call=\"{call}\",result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
            .to_string()
    };
    assert_eq!(value("user_info", "hit"), "2");
    assert_eq!(value("user_info", "miss"), "1");
    assert_eq!(value("exapp_meta", "hit"), "1");
    // Created at start: a series with no answer yet reads 0 instead of being absent.
    assert_eq!(value("exapp_meta", "miss"), "0");
}
