//! Running h2load (nghttp2-client) for the HTTP/2 rows and reading its summary.

use std::process::Command;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct H2Result {
    pub requests: u64,
    pub req_per_sec: f64,
    pub succeeded: u64,
    pub status_2xx: u64,
    pub failed: u64,
}

/// `conns` connections with `streams` concurrent streams each, for `secs` seconds, h2c with
/// prior knowledge (h2load's default for `http://`).
pub fn run(
    url: &str,
    conns: u32,
    streams: u32,
    secs: u32,
    headers: &[String],
) -> anyhow::Result<H2Result> {
    let mut cmd = Command::new("h2load");
    cmd.args([
        "-t2",
        &format!("-c{conns}"),
        &format!("-m{streams}"),
        &format!("-D{secs}"),
    ]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    cmd.arg(url);
    let out = cmd
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run h2load (apt-get install nghttp2-client): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    parse(&text).ok_or_else(|| anyhow::anyhow!("unreadable h2load output:\n{text}"))
}

pub fn parse(text: &str) -> Option<H2Result> {
    let mut r = H2Result::default();
    let mut seen = 0;
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|w| !w.is_empty())
            .collect();
        match words.as_slice() {
            ["finished", "in", _, rps, "req/s", ..] => {
                r.req_per_sec = rps.parse().ok()?;
                seen += 1;
            }
            ["requests:", total, "total", _, "started", _, "done", ok, "succeeded", failed, "failed", ..] =>
            {
                r.requests = total.parse().ok()?;
                r.succeeded = ok.parse().ok()?;
                r.failed = failed.parse().ok()?;
                seen += 1;
            }
            ["status", "codes:", n, "2xx", ..] => {
                r.status_2xx = n.parse().ok()?;
                seen += 1;
            }
            _ => {}
        }
    }
    (seen == 3).then_some(r)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_summary() {
        let text = "finished in 3.00s, 41234.50 req/s, 3.10MB/s\n\
            requests: 123703 total, 123803 started, 123703 done, 123700 succeeded, 3 failed, 3 errored, 0 timeout\n\
            status codes: 123700 2xx, 0 3xx, 0 4xx, 0 5xx\n";
        let r = super::parse(text).unwrap();
        assert_eq!(r.req_per_sec, 41234.5);
        assert_eq!((r.requests, r.succeeded, r.failed), (123703, 123700, 3));
        assert_eq!(r.status_2xx, 123700);
        assert!(super::parse("finished in 3.00s, 1 req/s").is_none());
    }
}
