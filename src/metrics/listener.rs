//! The `/metrics` listener: plain HTTP/1.1 on `HP_METRICS_ADDRESS`, through the shared accept
//! loop. It answers `GET /metrics` and 404 for anything else; every connection has a deadline
//! so a slow scraper cannot hold sockets open.

use super::Metrics;
use crate::net::accept::accept_loop;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A scrape reads memory only; a connection lasting longer than this is a stuck client.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);
/// `prometheus-client` writes OpenMetrics text (counter families without `_total`, `# EOF`);
/// saying so makes Prometheus parse it as such instead of as the older 0.0.4 format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The older Prometheus text format, for scrapers that do not ask for OpenMetrics.
const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Scrapes served at once; more wait in the kernel's backlog.
const MAX_CONCURRENT: usize = 16;

/// Serves `/metrics` from `listener` until `stop` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT));
    accept_loop(
        listener,
        "metrics",
        Some(stop),
        move || {
            let slots = slots.clone();
            async move { slots.acquire_owned().await.ok() }
        },
        move |stream, _peer, permit| {
            let metrics = metrics.clone();
            async move {
                let service = hyper::service::service_fn(move |req| {
                    let metrics = metrics.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(&metrics, &req)) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(CONNECTION_DEADLINE, conn).await;
                drop(permit);
            }
        },
    )
    .await;
}

fn answer(metrics: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let mut response = if req.uri().path() != "/metrics" {
        Response::new(Full::new(Bytes::from_static(b"not found\n")))
    } else if req.method() != Method::GET && req.method() != Method::HEAD {
        Response::new(Full::new(Bytes::from_static(b"method not allowed\n")))
    } else {
        // Prometheus asks for OpenMetrics; curl, promtool and older scrapers do not and
        // read 0.0.4, which names a counter's family with its `_total` suffix.
        let openmetrics = req.headers().get_all(header::ACCEPT).iter().any(|v| {
            v.as_bytes()
                .windows(19)
                .any(|w| w == b"application/openmet")
        });
        let text = metrics.render();
        let (body, content_type) = if openmetrics {
            (text, OPENMETRICS)
        } else {
            (to_text_004(&text), TEXT_004)
        };
        let mut r = Response::new(Full::new(Bytes::from(body)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(content_type),
        );
        return r;
    };
    *response.status_mut() = if req.uri().path() != "/metrics" {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::METHOD_NOT_ALLOWED
    };
    response
}

/// OpenMetrics text as `prometheus-client` writes it → the 0.0.4 text format. The two differ,
/// for what harp exports, only in three ways: 0.0.4 names a counter family after its `_total`
/// series in `# HELP` / `# TYPE`, and has neither `# UNIT` lines nor the `# EOF` terminator.
/// `prometheus-client` has no 0.0.4 encoder; this rewrites its output rather than writing the
/// exposition by hand.
pub(crate) fn to_text_004(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}
