//! Gauges for the FRP server: sessions, proxies by port range, idle work streams. Set at
//! scrape time by a hook `start::build` installs (this module must not reach into `tunnel`:
//! the hook reads the registry and hands plain numbers here).

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum Range {
    /// 23000–23999
    exapp,
    /// 24000–24099
    engine,
    /// anything else a user frps.toml allows
    other,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RangeLabel {
    range: Range,
}

/// What the hook reports at each scrape.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TunnelState {
    pub(crate) sessions: usize,
    pub(crate) exapp_proxies: usize,
    pub(crate) engine_proxies: usize,
    pub(crate) other_proxies: usize,
    pub(crate) work_conns: usize,
}

#[derive(Clone)]
pub(crate) struct TunnelGauges {
    sessions: Gauge,
    proxies: Family<RangeLabel, Gauge>,
    work_conns: Gauge,
}

fn as_gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl TunnelGauges {
    pub(super) fn register(registry: &mut Registry) -> TunnelGauges {
        let g = TunnelGauges {
            sessions: Gauge::default(),
            proxies: Family::default(),
            work_conns: Gauge::default(),
        };
        registry.register("frp_sessions", "FRP clients logged in", g.sessions.clone());
        registry.register(
            "frp_proxies",
            "FRP proxies registered, by port range",
            g.proxies.clone(),
        );
        registry.register(
            "frp_work_connections_idle",
            "Idle work connections pooled across FRP sessions",
            g.work_conns.clone(),
        );
        g
    }

    pub(super) fn set(&self, s: TunnelState) {
        self.sessions.set(as_gauge(s.sessions));
        self.work_conns.set(as_gauge(s.work_conns));
        for (range, n) in [
            (Range::exapp, s.exapp_proxies),
            (Range::engine, s.engine_proxies),
            (Range::other, s.other_proxies),
        ] {
            self.proxies
                .get_or_create(&RangeLabel { range })
                .set(as_gauge(n));
        }
    }
}
