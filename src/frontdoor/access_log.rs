//! The access log (target `harp::access`, one line per request at `info`): its format is part
//! of the operator's interface, so it is written here only.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// What the access line says about a request, gathered while it is served.
pub(super) struct AccessLine {
    pub method: http::Method,
    pub path: String,
    /// The app the request went to ("" before a decision named one).
    pub app: String,
    pub client: IpAddr,
    pub started: Instant,
    /// Time spent waiting on the ExApp or engine, when one was called.
    pub upstream: Option<Duration>,
}

impl AccessLine {
    /// The line's request fields, or `None` when the access log is off (then nothing is
    /// copied for it).
    pub(super) fn start<B>(
        req: &http::Request<B>,
        client: IpAddr,
        started: Instant,
    ) -> Option<AccessLine> {
        tracing::enabled!(target: "harp::access", tracing::Level::INFO).then(|| AccessLine {
            method: req.method().clone(),
            path: req.uri().path().to_string(),
            app: String::new(),
            client,
            started,
            upstream: None,
        })
    }

    /// `status`: None when the request was dropped without a response.
    pub(super) fn write(&self, status: Option<u16>) {
        let (method, path, app, client) = (
            &self.method,
            self.path.as_str(),
            self.app.as_str(),
            self.client,
        );
        let total_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let upstream_ms = self.upstream.map(|d| d.as_secs_f64() * 1000.0);
        match status {
            Some(status) => {
                tracing::info!(target: "harp::access", %method, path, app, %client, status, total_ms, upstream_ms, "request")
            }
            None => {
                tracing::info!(target: "harp::access", %method, path, app, %client, status = "dropped", total_ms, "request")
            }
        }
    }
}
