//! Running wrk and reading its summary.

use std::process::Command;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct WrkResult {
    pub requests: u64,
    pub req_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub non_2xx: u64,
    pub errors: u64,
}

pub fn run(url: &str, conns: u32, secs: u32, headers: &[String]) -> anyhow::Result<WrkResult> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t2",
        &format!("-c{conns}"),
        &format!("-d{secs}s"),
        "--latency",
    ]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    cmd.arg(url);
    let out = cmd
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    parse(&text).ok_or_else(|| anyhow::anyhow!("unreadable wrk output:\n{text}"))
}

fn duration_ms(s: &str) -> Option<f64> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        "m" => v * 60_000.0,
        _ => return None,
    })
}

pub fn parse(text: &str) -> Option<WrkResult> {
    let mut r = WrkResult::default();
    for line in text.lines().map(str::trim) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["50%", v] => r.p50_ms = duration_ms(v)?,
            ["99%", v] => r.p99_ms = duration_ms(v)?,
            ["Requests/sec:", v] => r.req_per_sec = v.parse().ok()?,
            [n, "requests", "in", ..] => r.requests = n.parse().ok()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => r.non_2xx = n.parse().ok()?,
            ["Socket", "errors:", rest @ ..] => {
                r.errors = rest
                    .iter()
                    .filter_map(|t| t.trim_end_matches(',').parse::<u64>().ok())
                    .sum()
            }
            _ => {}
        }
    }
    (r.req_per_sec > 0.0).then_some(r)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_wrk_summary() {
        let text = "Running 5s test @ http://127.0.0.1:1/\n  Latency Distribution\n     50%  312.00us\n     75%  1.20ms\n     99%    2.50ms\n  51234 requests in 5.00s, 6.1MB read\n  Non-2xx or 3xx responses: 3\nRequests/sec:  10246.80\n";
        let r = super::parse(text).unwrap();
        assert_eq!(r.requests, 51234);
        assert!((r.p50_ms - 0.312).abs() < 1e-9);
        assert!((r.p99_ms - 2.5).abs() < 1e-9);
        assert_eq!(r.non_2xx, 3);
    }
}
