//! Turns a run into the markdown table, the target check-list and the chart.

use crate::run::Results;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;
use std::process::Command;

#[derive(Default, Clone, Copy)]
struct Agg {
    rps: f64,
    p50: f64,
    p99: f64,
    cpu: Option<f64>,
}

/// (target, connections); each cell is the median over repetitions, so one run disturbed by
/// the shared machine does not move it.
type Key = (String, u32);

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

fn http_table(r: &Results) -> (Vec<Key>, BTreeMap<Key, Agg>) {
    let mut order = Vec::new();
    let mut rows: BTreeMap<Key, Vec<&crate::run::HttpRow>> = BTreeMap::new();
    for row in &r.http {
        let key = (row.target.clone(), row.conns);
        if !rows.contains_key(&key) {
            order.push(key.clone());
        }
        rows.entry(key).or_default().push(row);
    }
    let map = rows
        .into_iter()
        .map(|(key, rows)| {
            let of =
                |f: fn(&crate::run::HttpRow) -> f64| median(rows.iter().map(|r| f(r)).collect());
            let cpus: Vec<f64> = rows.iter().filter_map(|r| r.proxy_cpu_us).collect();
            let agg = Agg {
                rps: of(|r| r.wrk.req_per_sec),
                p50: of(|r| r.wrk.p50_ms),
                p99: of(|r| r.wrk.p99_ms),
                cpu: (!cpus.is_empty()).then(|| median(cpus)),
            };
            (key, agg)
        })
        .collect();
    (order, map)
}

fn ws_median(r: &Results, target: &str, conns: usize) -> (f64, f64) {
    let rows: Vec<_> =
        r.ws.iter()
            .filter(|w| w.target == target && w.conns == conns)
            .collect();
    (
        median(rows.iter().map(|w| w.result.msgs_per_sec).collect()),
        median(rows.iter().map(|w| w.result.p99_us).collect()),
    )
}

/// "not run" when the measurement is missing (a `--only` run that skipped its section: the
/// ratio is NaN or infinite), else whether the target was met.
fn mark_of(measured: f64, ok: bool) -> &'static str {
    if measured.is_finite() {
        mark(ok)
    } else {
        "not run"
    }
}

fn mark(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**not met**"
    }
}

pub fn markdown(r: &Results) -> String {
    let (order, map) = http_table(r);
    let mut s = String::new();
    let _ = writeln!(s, "# harp benchmark — {}\n", r.date);
    let _ = writeln!(s, "Machine: {}. {}. Each cell is the median of {} runs (HTTP: wrk with 2 threads); targets alternate within each repetition.\n", r.machine, r.haproxy_version, r.http.iter().filter(|h| h.target == "direct" && h.conns == 32).count());
    let _ = writeln!(
        s,
        "| target | conns | req/s | p50 ms | p99 ms | proxy CPU µs/req | × HAProxy | × direct |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for key in &order {
        let a = map[key];
        let hap = map
            .get(&("haproxy".to_string(), key.1))
            .map_or(f64::NAN, |h| a.rps / h.rps);
        let direct = map
            .get(&("direct".to_string(), key.1))
            .map_or(f64::NAN, |d| a.rps / d.rps);
        let cpu = a.cpu.map_or("—".to_string(), |c| format!("{c:.1}"));
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {:.3} | {:.3} | {} | {:.2} | {:.2} |",
            key.0, key.1, a.rps, a.p50, a.p99, cpu, hap, direct
        );
    }
    let _ = writeln!(s, "\n| WebSocket echo | conns | direct msg/s | HAProxy msg/s | harp msg/s | HAProxy × direct | harp × direct | harp × HAProxy | direct p99 µs | HAProxy p99 µs | harp p99 µs |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for conns in [32usize, 256] {
        let (d, dp) = ws_median(r, "direct", conns);
        let (x, xp) = ws_median(r, "haproxy", conns);
        let (h, hp) = ws_median(r, "harp", conns);
        let _ = writeln!(
            s,
            "| 32-byte text | {conns} | {d:.0} | {x:.0} | {h:.0} | {:.2} | {:.2} | {:.2} | {dp:.0} | {xp:.0} | {hp:.0} |",
            x / d,
            h / d,
            h / x
        );
    }
    let h2 = |t: &str| {
        let rows: Vec<_> = r.h2.iter().filter(|h| h.target == t).collect();
        (
            median(rows.iter().map(|h| h.h2load.req_per_sec).collect()),
            median(rows.iter().filter_map(|h| h.proxy_cpu_us).collect()),
            rows.iter().map(|h| h.h2load.status_2xx).sum::<u64>(),
            rows.iter().map(|h| h.h2load.requests).sum::<u64>(),
        )
    };
    let (h2_hap, h2_hap_cpu, _, _) = h2("haproxy h2");
    if !r.h2.is_empty() {
        let _ = writeln!(s, "\n| HTTP/2 (h2c, h2load) | conns × streams | req/s | proxy CPU µs/req | 2xx / requests | × HAProxy h2 |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
        for t in ["haproxy h2", "harp h2 user (cookie)"] {
            let (rps, cpu, ok, all) = h2(t);
            let _ = writeln!(
                s,
                "| {t} | {} × {} | {rps:.0} | {cpu:.1} | {ok} / {all} | {:.2} |",
                crate::run::H2_CONNS,
                crate::run::H2_STREAMS,
                rps / h2_hap
            );
        }
    }
    let idle_mb = r.rss_idle_kib as f64 / 1024.0;
    let ws_extra_mb = (r.rss_with_idle_ws_kib as f64 - r.rss_idle_kib as f64) / 1024.0;
    let _ = writeln!(s, "\nMemory (harp RSS): idle {idle_mb:.1} MB; peak under load {:.1} MB; with {} idle WebSockets {:.1} MB (+{ws_extra_mb:.1} MB).", r.rss_peak_load_kib as f64 / 1024.0, r.idle_websockets, r.rss_with_idle_ws_kib as f64 / 1024.0);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (bd, bt) = (mean(&r.bulk_direct_mib_s), mean(&r.bulk_tunnel_mib_s));
    let _ = write!(s, "\nBulk upload of {} MiB through harp to the ExApp: {bd:.0} MiB/s without a tunnel, {bt:.0} MiB/s through `harp tunnel` (mutual TLS) — {:.2}×", r.bulk_mib, bt / bd);
    if !r.bulk_direct_cpu_ms_per_mib.is_empty() {
        let (cd, ct) = (
            mean(&r.bulk_direct_cpu_ms_per_mib),
            mean(&r.bulk_tunnel_cpu_ms_per_mib),
        );
        let _ = write!(s, "; CPU per MiB: {cd:.2} ms (harp) without a tunnel, {ct:.2} ms (harp + `harp tunnel`) through it");
    }
    let _ = writeln!(s, ".");
    let _ = writeln!(s, "\nCold-cache burst: {} concurrent requests with {} new session cookies → {} answered 2xx, **{} Nextcloud user-info calls**.", r.burst_requests, r.burst_cookies, r.burst_ok, r.burst_user_info_calls);

    let get = |t: &str, c: u32| map.get(&(t.to_string(), c)).copied().unwrap_or_default();
    let user_vs_hap = |c| get("harp user (cookie)", c).rps / get("haproxy", c).rps;
    let cpu_user = get("harp user (cookie)", 128).cpu.unwrap_or(f64::NAN);
    let bf = get("harp user + bruteforce", 128).cpu.unwrap_or(f64::NAN);
    let p99_gap = get("harp user (cookie)", 32).p99 - get("haproxy", 32).p99;
    let (wd, _) = ws_median(r, "direct", 32);
    let (wh, _) = ws_median(r, "harp", 32);
    let (wd2, _) = ws_median(r, "direct", 256);
    let (wh2, _) = ws_median(r, "harp", 256);
    let ws_ratio = (wh / wd).min(wh2 / wd2);
    let (xd, _) = ws_median(r, "haproxy", 32);
    let (xd2, _) = ws_median(r, "haproxy", 256);
    let ws_haproxy = (xd / wd).min(xd2 / wd2);
    let _ = writeln!(s, "\n## Targets (issue #5)\n");
    let _ = writeln!(s, "| target | measured | |\n|---|---|---|");
    let _ = writeln!(
        s,
        "| USER route (cached) ≥ 1.0× HAProxy at 32 conns | {:.2}× | {} |",
        user_vs_hap(32),
        mark_of(user_vs_hap(32), user_vs_hap(32) >= 1.0)
    );
    let _ = writeln!(
        s,
        "| USER route (cached) ≥ 1.0× HAProxy at 128 conns | {:.2}× | {} |",
        user_vs_hap(128),
        mark_of(user_vs_hap(128), user_vs_hap(128) >= 1.0)
    );
    let _ = writeln!(
        s,
        "| proxy CPU per request ≤ 30 µs | {cpu_user:.1} µs (HAProxy: {:.1} µs) | {} |",
        get("haproxy", 128).cpu.unwrap_or(f64::NAN),
        mark_of(cpu_user, cpu_user <= 30.0)
    );
    let _ = writeln!(
        s,
        "| bruteforce route costs no more than one without | {bf:.1} vs {cpu_user:.1} µs | {} |",
        mark_of(bf, bf <= cpu_user * 1.05)
    );
    let metrics_on = get("harp user (cookie, metrics on)", 128)
        .cpu
        .unwrap_or(f64::NAN);
    let _ = writeln!(
        s,
        "| metrics on cost ≤ 5% more CPU on the USER route (128 conns) | {metrics_on:.1} vs {cpu_user:.1} µs | {} |",
        mark_of(metrics_on, metrics_on <= cpu_user * 1.05)
    );
    let _ = writeln!(
        s,
        "| p99 within +0.5 ms of HAProxy at 32 conns | {p99_gap:+.3} ms | {} |",
        mark_of(p99_gap, p99_gap <= 0.5)
    );
    let _ = writeln!(
        s,
        "| WebSocket ≥ 0.9× direct msg/s | {ws_ratio:.2}× (HAProxy: {ws_haproxy:.2}×) | {} |",
        mark_of(ws_ratio, ws_ratio >= 0.9)
    );
    let _ = writeln!(
        s,
        "| idle RSS ≤ 15 MB | {idle_mb:.1} MB | {} |",
        mark_of(idle_mb, idle_mb <= 15.0)
    );
    let _ = writeln!(
        s,
        "| {} idle WebSockets ≤ +150 MB | +{ws_extra_mb:.1} MB | {} |",
        r.idle_websockets,
        mark_of(ws_extra_mb, ws_extra_mb <= 150.0)
    );
    let _ = writeln!(
        s,
        "| one user-info call per cookie | {} calls for {} cookies | {} |",
        r.burst_user_info_calls,
        r.burst_cookies,
        mark_of(
            if r.burst_cookies == 0 { f64::NAN } else { 1.0 },
            r.burst_user_info_calls as usize == r.burst_cookies
        )
    );
    let tunnel_vs_plain = |c| get("harp user via tunnel", c).rps / get("harp user (cookie)", c).rps;
    let tunnel_ratio = tunnel_vs_plain(32).min(tunnel_vs_plain(128));
    let bulk_ratio = bt / bd;
    let _ = writeln!(
        s,
        "| tunnel path ≥ 0.8× non-tunnel: USER route (32 / 128 conns) | {:.2}× / {:.2}× | {} |",
        tunnel_vs_plain(32),
        tunnel_vs_plain(128),
        mark_of(tunnel_ratio, tunnel_ratio >= 0.8)
    );
    let _ = writeln!(
        s,
        "| tunnel path ≥ 0.8× non-tunnel: bulk upload | {bulk_ratio:.2}× | {} |",
        mark_of(bulk_ratio, bulk_ratio >= 0.8)
    );
    let basic_vs_hap = |c| get("harp user (basic auth)", c).rps / get("haproxy", c).rps;
    let _ = writeln!(
        s,
        "| Basic-auth route ≥ 0.9× HAProxy (32 / 128 conns; issue #14) | {:.2}× / {:.2}× | {} |",
        basic_vs_hap(32),
        basic_vs_hap(128),
        mark_of(
            basic_vs_hap(32).min(basic_vs_hap(128)),
            basic_vs_hap(32).min(basic_vs_hap(128)) >= 0.9
        )
    );
    // Issue #14's targets for the core route, WebSockets and tunnels.
    let user_min = user_vs_hap(32).min(user_vs_hap(128));
    let _ = writeln!(
        s,
        "| USER route (cached) ≥ 1.1× HAProxy at 32 and 128 conns (issue #14) | {:.2}× / {:.2}× | {} |",
        user_vs_hap(32),
        user_vs_hap(128),
        mark_of(user_min, user_min >= 1.1)
    );
    let cpu_vs_hap = cpu_user / get("haproxy", 128).cpu.unwrap_or(f64::NAN);
    let _ = writeln!(
        s,
        "| proxy CPU per request ≤ 0.9× HAProxy's (128 conns; issue #14) | {cpu_vs_hap:.2}× | {} |",
        mark_of(cpu_vs_hap, cpu_vs_hap <= 0.9)
    );
    let ws_vs_hap = (wh / xd).min(wh2 / xd2);
    let _ = writeln!(
        s,
        "| WebSocket ≥ 1.2× HAProxy msg/s at 32 and 256 conns (issue #14) | {:.2}× / {:.2}× | {} |",
        wh / xd,
        wh2 / xd2,
        mark_of(ws_vs_hap, ws_vs_hap >= 1.2)
    );
    let _ = writeln!(
        s,
        "| tunnel USER route ≥ 0.9× non-tunnel (issue #14) | {:.2}× / {:.2}× | {} |",
        tunnel_vs_plain(32),
        tunnel_vs_plain(128),
        mark_of(tunnel_ratio, tunnel_ratio >= 0.9)
    );
    let (h2_harp, h2_harp_cpu, _, _) = h2("harp h2 user (cookie)");
    let _ = writeln!(
        s,
        "| HTTP/2 USER route vs HAProxy h2 (no target yet; issue #14) | {:.2}× req/s, {h2_harp_cpu:.1} vs {h2_hap_cpu:.1} µs/req | — |",
        h2_harp / h2_hap
    );
    let cold = median(r.cold_start_ms.clone());
    let _ = writeln!(
        s,
        "| cold start ≤ 100 ms: exec → first answered request, certificates present (median of {}; issue #14) | {cold:.1} ms | {} |",
        r.cold_start_ms.len(),
        mark_of(cold, cold <= 100.0)
    );
    s
}

/// Bar chart of req/s per target at each connection count (gnuplot, PNG).
pub fn chart(r: &Results, dir: &Path, png: &Path) -> anyhow::Result<()> {
    let (order, map) = http_table(r);
    let mut names: Vec<String> = Vec::new();
    for (t, _) in &order {
        if !names.contains(t) {
            names.push(t.clone());
        }
    }
    let mut data = String::new();
    for n in &names {
        let v = |c: u32| map.get(&(n.clone(), c)).map_or(0.0, |a| a.rps);
        let _ = writeln!(data, "\"{n}\" {:.0} {:.0}", v(32), v(128));
    }
    let dat = dir.join("chart.dat");
    std::fs::write(&dat, data)?;
    let script = format!(
        "set terminal pngcairo size 1100,520 font ',10'\nset output '{}'\nset title 'harp vs bare HAProxy vs direct — requests/s ({})'\nset style data histograms\nset style histogram cluster gap 1\nset style fill solid 0.8 border -1\nset boxwidth 0.9\nset ylabel 'requests per second'\nset yrange [0:*]\nset xtics rotate by -20\nset grid ytics\nset key top right\nplot '{}' using 2:xtic(1) title '32 connections', '' using 3 title '128 connections'\n",
        png.display(),
        r.date,
        dat.display()
    );
    let gp = dir.join("chart.gp");
    std::fs::write(&gp, script)?;
    let status = Command::new("gnuplot").arg(&gp).status()?;
    let _ = std::fs::remove_file(&dat);
    let _ = std::fs::remove_file(&gp);
    anyhow::ensure!(status.success(), "gnuplot failed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{mark_of, median};

    #[test]
    fn a_section_that_did_not_run_is_not_run_rather_than_not_met() {
        assert_eq!(mark_of(f64::NAN, false), "not run");
        assert_eq!(mark_of(f64::INFINITY, false), "not run");
        assert_eq!(mark_of(1.2, true), "met");
        assert_eq!(mark_of(0.8, false), "**not met**");
    }

    #[test]
    fn median_ignores_one_outlier_and_averages_the_middle_pair() {
        assert_eq!(median(vec![30.0, 10.0, 1000.0]), 30.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
