//! Prometheus metrics: owns the registry, the metric handles the other parts record into, the
//! process gauges read from /proc at scrape time, and the `/metrics` listener
//! (`HP_METRICS_ADDRESS`, off by default).
//!
//! It must not decide anything: parts receive an `Option<Arc<Metrics>>` (built in
//! `start::build`) and record what they already decided; `None` costs one branch. The
//! exposition format is `prometheus-client`'s, never hand-written.
//!
//! Label cardinality is bounded: app ids are only ever taken from Nextcloud-validated metadata
//! (a `ForwardPlan`), and at most [`MAX_APP_LABELS`] distinct ids get their own series; later
//! ids share [`OVERFLOW_APP`].

mod labels;
mod listener;
mod nextcloud;
mod process;
mod tunnel;

pub(crate) use labels::AppLabels;
pub(crate) use listener::serve;
pub(crate) use nextcloud::{Call, CallResult, NextcloudMetrics};
pub(crate) use tunnel::TunnelState;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

/// Distinct app ids with their own series; a deployment has tens of ExApps, so this only bites
/// when something is wrong, and then it bounds memory and the scrape size.
pub(crate) const MAX_APP_LABELS: usize = 1000;
/// The shared app label once [`MAX_APP_LABELS`] is reached.
pub(crate) const OVERFLOW_APP: &str = "_overflow";
/// The app label of a request no validated metadata named (refused, dropped, control API).
pub(crate) const NO_APP: &str = "";
/// Latency buckets in seconds (start, factor, count): 5 ms … ~41 s, doubling.
const LATENCY: (f64, f64, u16) = (0.005, 2.0, 14);

/// What the access decision came to (the `outcome` label).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum Outcome {
    forwarded,
    denied,
    dropped,
    not_found,
    banned,
}

/// The response's status class (`1xx` … `5xx`; `none` when the connection was dropped).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum StatusClass {
    C1xx,
    C2xx,
    C3xx,
    C4xx,
    C5xx,
    None,
}

// By hand: the derive names values after the variants, and `2xx` is no identifier.
impl EncodeLabelValue for StatusClass {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(match self {
            StatusClass::C1xx => "1xx",
            StatusClass::C2xx => "2xx",
            StatusClass::C3xx => "3xx",
            StatusClass::C4xx => "4xx",
            StatusClass::C5xx => "5xx",
            StatusClass::None => "none",
        })
    }
}

impl StatusClass {
    pub(crate) fn of(status: Option<u16>) -> StatusClass {
        match status {
            Some(100..=199) => StatusClass::C1xx,
            Some(200..=299) => StatusClass::C2xx,
            Some(300..=399) => StatusClass::C3xx,
            Some(400..=499) => StatusClass::C4xx,
            Some(_) => StatusClass::C5xx,
            None => StatusClass::None,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub(crate) app: AppLabel,
    pub(crate) outcome: Outcome,
    pub(crate) status: StatusClass,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AppOnly {
    pub(crate) app: AppLabel,
}

/// A bounded app label: only [`AppLabels::label`] makes one from an id.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) struct AppLabel(pub(crate) std::sync::Arc<str>);

impl EncodeLabelValue for AppLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, &self.0)
    }
}

/// Every metric harp exports, registered once.
pub struct Metrics {
    registry: Registry,
    pub(crate) apps: AppLabels,
    pub(crate) requests: Family<RequestLabels, Counter>,
    pub(crate) upstream_seconds: Family<AppOnly, Histogram>,
    pub(crate) open_connections: Gauge,
    pub(crate) upgraded_connections: Gauge,
    pub(crate) nextcloud: NextcloudMetrics,
    pub(crate) bans: BanCounters,
    pub(crate) docker: WrapperCalls,
    pub(crate) k8s: WrapperCalls,
    tunnel: tunnel::TunnelGauges,
    /// Reads the FRP registry at scrape time; `None` until `start::build` installs it.
    tunnel_state: Option<TunnelHook>,
    bans_active: Gauge,
    /// Counts banned clients at scrape time; `None` until `start::build` installs it.
    bans_state: std::sync::OnceLock<Box<dyn Fn() -> usize + Send + Sync>>,
    pub(crate) frp_login_failures: Counter,
    process: process::ProcessGauges,
}

type TunnelHook = Box<dyn Fn() -> TunnelState + Send + Sync>;

/// A Docker or Kubernetes wrapper call: `op` is one of the wrappers' fixed names (never
/// request text).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OpLabels {
    pub(crate) op: &'static str,
    /// `ok`, or the error's class (the wrapper names it).
    pub(crate) result: &'static str,
}

/// `op` alone, for the duration histograms.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OpOnly {
    pub(crate) op: &'static str,
}

/// One backend's wrapper calls: a counter by operation and result, and how long each took.
#[derive(Clone)]
pub(crate) struct WrapperCalls {
    calls: Family<OpLabels, Counter>,
    seconds: Family<OpOnly, Histogram>,
}

impl WrapperCalls {
    fn register(registry: &mut Registry, prefix: &str, backend: &str) -> WrapperCalls {
        let calls = Family::<OpLabels, Counter>::default();
        registry.register(
            format!("{prefix}_calls"),
            format!("{backend} wrapper calls by operation and result"),
            calls.clone(),
        );
        let seconds = Family::<OpOnly, Histogram>::new_with_constructor(
            wrapper_histogram as fn() -> Histogram,
        );
        registry.register(
            format!("{prefix}_call_duration_seconds"),
            format!("How long {backend} wrapper calls took, by operation"),
            seconds.clone(),
        );
        WrapperCalls { calls, seconds }
    }

    /// Records one call; `op` and `result` are fixed words, never request text.
    pub(crate) fn record(&self, op: &'static str, result: &'static str, took: Duration) {
        self.calls.get_or_create(&OpLabels { op, result }).inc();
        self.seconds
            .get_or_create(&OpOnly { op })
            .observe(took.as_secs_f64());
    }

    #[cfg(test)]
    pub(crate) fn count(&self, op: &'static str, result: &'static str) -> u64 {
        self.calls.get_or_create(&OpLabels { op, result }).get()
    }
}

/// Failures the ban list records and bans it starts. Unregistered (the `Default`) when metrics
/// are off: one atomic add per failure, which is rare traffic.
#[derive(Clone, Default)]
pub(crate) struct BanCounters {
    pub(crate) failures: Counter,
    pub(crate) bans: Counter,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("harp");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Front-door requests by validated app id, decision outcome and status class",
            requests.clone(),
        );
        let upstream_seconds =
            Family::<AppOnly, Histogram>::new_with_constructor(upstream_histogram as fn() -> _);
        registry.register(
            "upstream_duration_seconds",
            "Time from the access decision to the ExApp's response head, per app",
            upstream_seconds.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_client_connections",
            "Client connections open on the front door",
            open_connections.clone(),
        );
        let upgraded_connections = Gauge::default();
        registry.register(
            "upgraded_connections",
            "Upgraded (WebSocket) connections being spliced to an ExApp",
            upgraded_connections.clone(),
        );
        let nextcloud = NextcloudMetrics::register(&mut registry);
        let bans = BanCounters::default();
        registry.register(
            "auth_failures",
            "Failed authentications (front door and FRP login) the ban list recorded",
            bans.failures.clone(),
        );
        registry.register(
            "bans",
            "Clients banned (each time a client reaches the failure threshold)",
            bans.bans.clone(),
        );
        let bans_active = Gauge::default();
        registry.register(
            "bans_active",
            "Clients banned right now",
            bans_active.clone(),
        );
        let frp_login_failures = Counter::default();
        registry.register(
            "frp_login_failures",
            "FRP logins refused for a wrong or missing token (also counted in auth_failures)",
            frp_login_failures.clone(),
        );
        let docker = WrapperCalls::register(&mut registry, "docker", "Docker");
        let k8s = WrapperCalls::register(&mut registry, "k8s", "Kubernetes");
        let tunnel = tunnel::TunnelGauges::register(&mut registry);
        let process = process::ProcessGauges::register(&mut registry);
        Metrics {
            registry,
            apps: AppLabels::new(MAX_APP_LABELS),
            requests,
            upstream_seconds,
            open_connections,
            upgraded_connections,
            nextcloud,
            bans,
            docker,
            k8s,
            tunnel,
            tunnel_state: None,
            bans_active,
            bans_state: std::sync::OnceLock::new(),
            frp_login_failures,
            process,
        }
    }

    /// Counts one front-door request; `app` must have come from validated metadata (or be
    /// [`NO_APP`]) through [`AppLabels::label`].
    pub(crate) fn count(&self, app: AppLabel, outcome: Outcome, status: Option<u16>) {
        let labels = RequestLabels {
            app,
            outcome,
            status: StatusClass::of(status),
        };
        self.requests.get_or_create(&labels).inc();
    }

    pub(crate) fn upstream(&self, app: AppLabel, took: Duration) {
        let labels = AppOnly { app };
        self.upstream_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Installs what reads the FRP registry at each scrape.
    pub(crate) fn with_tunnel_state(
        mut self,
        read: impl Fn() -> TunnelState + Send + Sync + 'static,
    ) -> Metrics {
        self.tunnel_state = Some(Box::new(read));
        self
    }

    /// Installs what counts the banned clients at each scrape (once: the ban list is built
    /// after the metrics, which it counts into).
    pub(crate) fn set_bans_state(&self, read: impl Fn() -> usize + Send + Sync + 'static) {
        let _ = self.bans_state.set(Box::new(read));
    }

    /// The text exposition of every metric, process, tunnel and ban gauges refreshed first.
    pub(crate) fn render(&self) -> String {
        self.process.refresh();
        if let Some(read) = self.bans_state.get() {
            self.bans_active.set(read() as i64);
        }
        if let Some(read) = &self.tunnel_state {
            self.tunnel.set(read());
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Wrapper calls run from milliseconds (`exists`) to many minutes (`wait_for_start` while an
/// image is pulled): 10 ms … ~1.4 h, quadrupling.
fn wrapper_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.01, 4.0, 12,
    ))
}

fn upstream_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        LATENCY.0, LATENCY.1, LATENCY.2,
    ))
}

/// Keeps a gauge raised while alive (an open connection).
pub(crate) struct GaugeGuard(Gauge);

impl GaugeGuard {
    pub(crate) fn raise(gauge: &Gauge) -> GaugeGuard {
        gauge.inc();
        GaugeGuard(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests;
