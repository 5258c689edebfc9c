//! HAProxy time syntax (`30`, `250ms`, `30s`, `5m`, `1h`, `2d`, `100us`).
//!
//! A bare number is **milliseconds**, exactly like HAProxy, because admins copy values between
//! the two. This module only parses; deciding what a zero means is the caller's business.

use std::time::Duration;

/// Why a time value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimeError {
    #[error("empty time value")]
    Empty,
    #[error(
        "'{0}' is not a time value (expected digits with an optional unit us, ms, s, m, h or d)"
    )]
    Malformed(String),
    #[error("'{0}' is too large")]
    Overflow(String),
}

/// Parses one HAProxy time value.
pub fn parse_haproxy_time(raw: &str) -> Result<Duration, TimeError> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(TimeError::Empty);
    }
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    if digits.is_empty() {
        return Err(TimeError::Malformed(raw.to_string()));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| TimeError::Overflow(raw.to_string()))?;
    let micros_per_unit: u64 = match unit {
        "us" => 1,
        "" | "ms" => 1_000,
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => return Err(TimeError::Malformed(raw.to_string())),
    };
    n.checked_mul(micros_per_unit)
        .map(Duration::from_micros)
        .ok_or_else(|| TimeError::Overflow(raw.to_string()))
}

/// Renders a duration back in HAProxy syntax for `harp check`.
pub(crate) fn format_haproxy_time(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_number_is_milliseconds() {
        assert_eq!(parse_haproxy_time("30"), Ok(Duration::from_millis(30)));
    }

    #[test]
    fn units() {
        assert_eq!(parse_haproxy_time("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_haproxy_time("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_haproxy_time("7us"), Ok(Duration::from_micros(7)));
        assert_eq!(parse_haproxy_time("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_haproxy_time("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_haproxy_time("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_haproxy_time("0"), Ok(Duration::ZERO));
        assert_eq!(parse_haproxy_time("00s"), Ok(Duration::ZERO));
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(parse_haproxy_time(""), Err(TimeError::Empty));
        assert!(matches!(
            parse_haproxy_time("s"),
            Err(TimeError::Malformed(_))
        ));
        assert!(matches!(
            parse_haproxy_time("10x"),
            Err(TimeError::Malformed(_))
        ));
        assert!(matches!(
            parse_haproxy_time("-5s"),
            Err(TimeError::Malformed(_))
        ));
        assert!(matches!(
            parse_haproxy_time("1.5s"),
            Err(TimeError::Malformed(_))
        ));
        assert!(matches!(
            parse_haproxy_time("99999999999999999999"),
            Err(TimeError::Overflow(_))
        ));
    }

    #[test]
    fn formatting_round_trips() {
        assert_eq!(format_haproxy_time(Duration::from_secs(30)), "30s");
        assert_eq!(format_haproxy_time(Duration::from_millis(30)), "30ms");
    }
}
