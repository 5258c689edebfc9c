//! Process resident memory and open file descriptors, read from /proc/self at scrape time
//! (only then: nothing polls in the background). Hand-written because it is two small reads and
//! `prometheus-client` has no process collector.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Cap on /proc/self/statm's size: it is seven numbers on one line.
const STATM_MAX: u64 = 256;

pub(super) struct ProcessGauges {
    rss_bytes: Gauge,
    open_fds: Gauge,
}

impl ProcessGauges {
    pub(super) fn register(registry: &mut Registry) -> ProcessGauges {
        let rss_bytes = Gauge::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident set size of the harp process",
            rss_bytes.clone(),
        );
        let open_fds = Gauge::default();
        registry.register(
            "process_open_fds",
            "File descriptors open in the harp process",
            open_fds.clone(),
        );
        ProcessGauges {
            rss_bytes,
            open_fds,
        }
    }

    pub(super) fn refresh(&self) {
        if let Some(rss) = resident_bytes() {
            self.rss_bytes.set(rss);
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds
                .set(i64::try_from(dir.count()).unwrap_or(i64::MAX));
        }
    }
}

fn resident_bytes() -> Option<i64> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open("/proc/self/statm")
        .ok()?
        .take(STATM_MAX)
        .read_to_string(&mut text)
        .ok()?;
    // Second field: resident pages.
    let pages: i64 = text.split_whitespace().nth(1)?.parse().ok()?;
    let page = i64::try_from(rustix::param::page_size()).ok()?;
    pages.checked_mul(page)
}
