//! Issue #11 items 1 and 4: Prometheus metrics scraped by the real Prometheus server (Debian's
//! `prometheus` package, one server for this binary's one scrape test) and checked by
//! `promtool`, and JSON log lines from the real binary.

mod common;

use common::exapp::StubExApp;
use common::nextcloud::StubNextcloud;
use common::*;
use serde_json::Value;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Prometheus starts, scrapes (every second) and answers within this.
const PROMETHEUS_DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

/// A Prometheus server scraping one target; killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        prereq::require_command("prometheus", "prometheus");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: harp\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    async fn api(&self, path: &str) -> Option<Value> {
        let r = client()
            .get(format!("http://{}{path}", self.addr))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// Waits until Prometheus has scraped the target successfully at least once.
    async fn wait_target_up(&self) {
        let end = tokio::time::Instant::now() + PROMETHEUS_DEADLINE;
        loop {
            if let Some(v) = self.api("/api/v1/targets").await {
                let up = v["data"]["activeTargets"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t["health"] == "up"));
                if up {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < end,
                "Prometheus did not report harp's target up within {PROMETHEUS_DEADLINE:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The value of an instant `query` once it satisfies `done` or the deadline passes (then
    /// the last value seen, for the failure message).
    async fn query_until(&self, query: &str, done: impl Fn(f64) -> bool) -> Option<f64> {
        let end = tokio::time::Instant::now() + PROMETHEUS_DEADLINE;
        let path = format!("/api/v1/query?query={}", urlencode(query));
        let mut last = None;
        loop {
            if let Some(v) = self.api(&path).await {
                last = v["data"]["result"][0]["value"][1]
                    .as_str()
                    .and_then(|s| s.parse::<f64>().ok());
                if last.is_some_and(&done) {
                    return last;
                }
            }
            if tokio::time::Instant::now() >= end {
                return last;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn scrape(addr: SocketAddr) -> String {
    let r = client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

#[tokio::test]
async fn issue11_prometheus_counts_known_traffic_and_promtool_lints_the_exposition() {
    let nc = StubNextcloud::start().await;
    let app = StubExApp::start().await;
    nc.add_app("foo", meta(app.port(), public_routes()));
    let harp = Harness::builder()
        .nextcloud(&nc.url())
        .env("HP_METRICS_ADDRESS", "127.0.0.1:0")
        .start()
        .await;
    let metrics = harp.metrics.expect("metrics listener bound");
    let prometheus = Prometheus::start(metrics);
    // One remote-engine tunnel (harp's own FRP client, the real protocol) for the FRP gauges.
    let engine: std::net::SocketAddr = format!("127.0.0.1:{}", app.port()).parse().unwrap();
    let _tunnel = harp.engine_tunnel(24090, engine).await;
    for _ in 0..7 {
        let r = client()
            .get(harp.url("/exapps/foo/public"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // The shared key is missing: AppAPI's own routes refuse (401) before any metadata.
    for _ in 0..3 {
        let r = client()
            .get(harp.url("/exapps/app_api/x"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let text = scrape(metrics).await;
    let mut promtool = Command::new({
        prereq::require_command("promtool", "prometheus");
        "promtool"
    })
    .args(["check", "metrics"])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // harp answers a scraper that does not ask for OpenMetrics (this one, like curl) in the
    // 0.0.4 text format promtool lints: no finding at all.
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics ({:?}): {report}\n{text}",
        out.status.code()
    );

    prometheus.wait_target_up().await;
    let forwarded = r#"sum(harp_requests_total{app="foo",outcome="forwarded",status="2xx"})"#;
    assert_eq!(
        prometheus.query_until(forwarded, |v| v == 7.0).await,
        Some(7.0)
    );
    let denied = r#"sum(harp_requests_total{app="",outcome="denied",status="4xx"})"#;
    assert_eq!(
        prometheus.query_until(denied, |v| v == 3.0).await,
        Some(3.0)
    );
    let latency = r#"sum(harp_upstream_duration_seconds_count{app="foo"})"#;
    assert_eq!(
        prometheus.query_until(latency, |v| v == 7.0).await,
        Some(7.0)
    );
    // One metadata call for seven requests to `foo`: the other six were cache hits.
    let meta_calls = r#"sum(harp_nextcloud_calls_total{call="exapp_meta",result="ok"})"#;
    assert_eq!(
        prometheus.query_until(meta_calls, |v| v == 1.0).await,
        Some(1.0)
    );
    let meta_hits = r#"sum(harp_nextcloud_cache_total{call="exapp_meta",result="hit"})"#;
    assert_eq!(
        prometheus.query_until(meta_hits, |v| v == 6.0).await,
        Some(6.0)
    );
    // Each refused AppAPI request was a brute-force failure for the client; three stay under
    // the ban threshold.
    assert_eq!(
        prometheus
            .query_until("harp_auth_failures_total", |v| v == 3.0)
            .await,
        Some(3.0)
    );
    assert_eq!(
        prometheus
            .query_until("harp_bans_total", |v| v == 0.0)
            .await,
        Some(0.0)
    );
    assert_eq!(
        prometheus
            .query_until("harp_frp_sessions", |v| v == 1.0)
            .await,
        Some(1.0)
    );
    let engine_proxies = r#"sum(harp_frp_proxies{range="engine"})"#;
    assert_eq!(
        prometheus.query_until(engine_proxies, |v| v == 1.0).await,
        Some(1.0)
    );
    let exapp_proxies = r#"sum(harp_frp_proxies{range="exapp"})"#;
    assert_eq!(
        prometheus.query_until(exapp_proxies, |v| v == 0.0).await,
        Some(0.0)
    );
    // A Docker wrapper call refused for its body (before any engine call).
    let r = client()
        .post(harp.url("/exapps/app_api/docker/exapp/exists"))
        .header("harp-shared-key", KEY)
        .header("docker-engine-port", "24000")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let docker = r#"sum(harp_docker_calls_total{op="exists",result="bad_request"})"#;
    assert_eq!(
        prometheus.query_until(docker, |v| v == 1.0).await,
        Some(1.0)
    );
    let docker_latency = r#"sum(harp_docker_call_duration_seconds_count{op="exists"})"#;
    assert_eq!(
        prometheus.query_until(docker_latency, |v| v == 1.0).await,
        Some(1.0)
    );
    let meta_latency = r#"sum(harp_nextcloud_call_duration_seconds_count{call="exapp_meta"})"#;
    assert_eq!(
        prometheus.query_until(meta_latency, |v| v == 1.0).await,
        Some(1.0)
    );
    let rss = prometheus
        .query_until("harp_process_resident_memory_bytes", |v| v > 1e6)
        .await
        .expect("RSS scraped");
    assert!(rss > 1e6, "RSS {rss}");
}

#[tokio::test]
async fn issue11_metrics_are_off_by_default() {
    let harp = Harness::builder().start().await;
    assert!(harp.metrics.is_none(), "no metrics port unless asked for");
}

#[tokio::test]
async fn issue11_metrics_listener_answers_only_metrics() {
    let harp = Harness::builder()
        .env("HP_METRICS_ADDRESS", "127.0.0.1:0")
        .start()
        .await;
    let metrics = harp.metrics.unwrap();
    let r = client()
        .get(format!("http://{metrics}/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // A scraper that asks nothing gets the 0.0.4 text format…
    let plain = client()
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .unwrap();
    assert!(plain.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    assert!(plain
        .text()
        .await
        .unwrap()
        .contains("# TYPE harp_requests_total counter"));
    // …and one that asks for OpenMetrics, as Prometheus does, gets it.
    let om = client()
        .get(format!("http://{metrics}/metrics"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3",
        )
        .send()
        .await
        .unwrap();
    assert!(om.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = om.text().await.unwrap();
    assert!(text.contains("# TYPE harp_requests counter") && text.ends_with("# EOF\n"));
}

fn json_lines(logs: &[String]) -> Vec<Value> {
    logs.iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[tokio::test]
async fn issue11_json_logs_carry_the_same_fields_and_text_stays_default() {
    let _one = process::serial().await;
    let nc = StubNextcloud::start().await;
    let app = StubExApp::start().await;
    nc.add_app("foo", meta(app.port(), public_routes()));
    let harp = Harness::builder()
        .nextcloud(&nc.url())
        .env("HP_LOG_FORMAT", "json")
        .env("HP_LOG_LEVEL", "info")
        .spawn_process();
    let r = client()
        .get(harp.url("/exapps/foo/public"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut access = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            let lines = json_lines(&harp.logs());
            access = lines
                .into_iter()
                .find(|l| l["fields"]["message"] == "request");
            access.is_some()
        })
        .await,
        "no access line: {:?}",
        harp.logs()
    );
    let access = access.unwrap();
    assert_eq!(access["level"], "INFO");
    assert_eq!(access["fields"]["method"], "GET");
    assert_eq!(access["fields"]["path"], "/exapps/foo/public");
    assert_eq!(access["fields"]["app"], "foo");
    assert_eq!(access["fields"]["status"], 200);
    assert!(access["fields"]["total_ms"].is_number(), "{access}");
    // Logged before the request was served, so stored by now.
    let lines = json_lines(&harp.logs());
    let warning = lines
        .iter()
        .find(|l| l["fields"]["message"] == "harp is listening")
        .expect("the start-up warning");
    assert_eq!(warning["level"], "WARN");
    assert!(warning["fields"]["http"].is_string(), "{warning}");
    drop(harp);

    // Without HP_LOG_FORMAT the same warning is a text line.
    let harp = Harness::builder().nextcloud(&nc.url()).spawn_process();
    // The harness learns the ports from this line just before storing it: poll for it.
    let mut line = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            line = harp
                .logs()
                .into_iter()
                .find(|l| l.contains("harp is listening"));
            line.is_some()
        })
        .await,
        "the start-up warning: {:?}",
        harp.logs()
    );
    let line = line.unwrap();
    assert!(serde_json::from_str::<Value>(&line).is_err(), "{line}");
    assert!(line.contains("WARN") && line.contains("http="), "{line}");
}

/// Polls harp's /metrics until the unlabelled series `name` reads `want`; the last value seen.
async fn gauge_until(metrics: SocketAddr, name: &str, want: f64) -> Option<f64> {
    let end = tokio::time::Instant::now() + PROMETHEUS_DEADLINE;
    loop {
        let text = scrape(metrics).await;
        let seen = text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok());
        if seen == Some(want) || tokio::time::Instant::now() >= end {
            return seen;
        }
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test]
async fn issue11_upgraded_connections_gauge_follows_an_open_websocket() {
    use futures_util::{SinkExt, StreamExt};
    let nc = StubNextcloud::start().await;
    let app = StubExApp::start().await;
    nc.add_app("foo", meta(app.port(), public_routes()));
    let harp = Harness::builder()
        .nextcloud(&nc.url())
        .env("HP_METRICS_ADDRESS", "127.0.0.1:0")
        .start()
        .await;
    let metrics = harp.metrics.expect("metrics listener bound");
    assert_eq!(
        gauge_until(metrics, "harp_upgraded_connections", 0.0).await,
        Some(0.0)
    );
    let tcp = tokio::net::TcpStream::connect(harp.addr).await.unwrap();
    let url = format!("ws://{}/exapps/foo/ws", harp.addr);
    let (mut ws, resp) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    assert_eq!(resp.status(), 101);
    // One echo proves the splice is running before the gauge is read.
    let msg = tokio_tungstenite::tungstenite::Message::text("ping");
    ws.send(msg.clone()).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    assert!(matches!(echoed, Ok(Some(Ok(m))) if m == msg));
    assert_eq!(
        gauge_until(metrics, "harp_upgraded_connections", 1.0).await,
        Some(1.0)
    );
    ws.close(None).await.unwrap();
    drop(ws);
    assert_eq!(
        gauge_until(metrics, "harp_upgraded_connections", 0.0).await,
        Some(0.0)
    );
}

#[tokio::test]
async fn issue11_bans_active_and_frp_login_failures_are_exported() {
    let harp = Harness::builder()
        .env("HP_METRICS_ADDRESS", "127.0.0.1:0")
        .env("HP_BLACKLIST_COUNT", "2")
        .start()
        .await;
    let metrics = harp.metrics.expect("metrics listener bound");
    assert_eq!(
        gauge_until(metrics, "harp_bans_active", 0.0).await,
        Some(0.0)
    );
    // The FRP plugin path: two wrong tokens from one frpc address reach the threshold.
    for _ in 0..2 {
        let body = serde_json::json!({
            "content": {"client_address": "192.0.2.7:4000", "metas": {"token": "wrong"}}
        });
        let r = client()
            .post(harp.url("/exapps/app_api/frp_handler"))
            .header("harp-shared-key", KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "a refused login (contract §4.4)");
    }
    assert_eq!(
        gauge_until(metrics, "harp_frp_login_failures_total", 2.0).await,
        Some(2.0)
    );
    assert_eq!(
        gauge_until(metrics, "harp_bans_active", 1.0).await,
        Some(1.0)
    );
    assert_eq!(
        gauge_until(metrics, "harp_auth_failures_total", 2.0).await,
        Some(2.0),
        "the total still counts FRP failures"
    );
}
