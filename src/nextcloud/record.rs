//! The ExApp metadata record (contract §3.2) with its routes compiled once. Data only: resolving
//! `host` to an address is `upstream::Resolver`'s job.

use crate::contract::CompiledRoute;
use serde_json::Value;

#[derive(Debug)]
pub struct ExAppRecord {
    pub token: String,
    pub version: String,
    pub host: String,
    pub port: u16,
    pub routes: Vec<CompiledRoute>,
}

/// Why a metadata document was refused (schema errors).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum RecordError {
    #[error("body is not valid JSON")]
    NotJson,
    #[error("{0}")]
    Schema(String),
}

impl ExAppRecord {
    pub fn new(
        token: String,
        version: String,
        host: String,
        port: u16,
        routes: Vec<CompiledRoute>,
    ) -> ExAppRecord {
        ExAppRecord {
            token,
            version,
            host,
            port,
            routes,
        }
    }
}

/// Parses exapp-meta / exapp_storage JSON. Extra keys are ignored; `port` and brute-force
/// statuses may be numbers or numeric strings.
pub(crate) fn parse_record(body: &[u8]) -> Result<ExAppRecord, RecordError> {
    let doc: Value = serde_json::from_slice(body).map_err(|_| RecordError::NotJson)?;
    let obj = doc
        .as_object()
        .ok_or_else(|| RecordError::Schema("expected a JSON object".into()))?;
    let text = |k: &str| -> Result<String, RecordError> {
        match obj.get(k) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(RecordError::Schema(format!("'{k}' must be a string"))),
            None => Err(RecordError::Schema(format!("'{k}' is required"))),
        }
    };
    let token = text("exapp_token")?;
    let version = text("exapp_version")?;
    let host = text("host")?;
    let port = obj
        .get("port")
        .ok_or_else(|| RecordError::Schema("'port' is required".into()))
        .and_then(|v| {
            as_integer(v).ok_or_else(|| RecordError::Schema("'port' must be an integer".into()))
        })
        .and_then(|p| {
            u16::try_from(p).map_err(|_| RecordError::Schema(format!("'port' {p} is out of range")))
        })?;
    let mut routes = Vec::new();
    match obj.get("routes") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                routes.push(
                    parse_route(item)
                        .map_err(|m| RecordError::Schema(format!("routes[{i}]: {m}")))?,
                );
            }
        }
        Some(_) => return Err(RecordError::Schema("'routes' must be a list".into())),
    }
    Ok(ExAppRecord::new(token, version, host, port, routes))
}

fn parse_route(item: &Value) -> Result<CompiledRoute, String> {
    let url = item
        .get("url")
        .and_then(Value::as_str)
        .ok_or("'url' must be a string")?;
    let level = item
        .get("access_level")
        .and_then(as_integer)
        .and_then(|l| u8::try_from(l).ok())
        .ok_or("'access_level' must be 0, 1 or 2")?;
    let bruteforce = match item.get("bruteforce_protection") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(codes)) => codes
            .iter()
            .map(|c| as_integer(c).and_then(|n| u16::try_from(n).ok()))
            .collect::<Option<Vec<u16>>>()
            .ok_or("'bruteforce_protection' must list HTTP status codes")?,
        Some(_) => return Err("'bruteforce_protection' must be a list".into()),
    };
    Ok(CompiledRoute::new(url, level, bruteforce))
}

fn as_integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_record_with_string_numbers() {
        let r = parse_record(
            br#"{"exapp_token":"t","exapp_version":"1.0","host":"127.0.0.1","port":"23000","extra":1,
                "routes":[{"url":"^/x","access_level":1,"bruteforce_protection":[401,"500"]}]}"#,
        )
        .unwrap();
        assert_eq!((r.port, r.routes.len()), (23000, 1));
        assert_eq!(r.routes[0].bruteforce, vec![401, 500]);
    }

    #[test]
    fn routes_default_to_empty() {
        let r = parse_record(br#"{"exapp_token":"t","exapp_version":"1","host":"h","port":1}"#)
            .unwrap();
        assert!(r.routes.is_empty());
    }

    #[test]
    fn schema_errors() {
        assert_eq!(parse_record(b"{nope").unwrap_err(), RecordError::NotJson);
        for bad in [
            r#"{"exapp_version":"1","host":"h","port":1}"#,
            r#"{"exapp_token":"t","exapp_version":"1","host":"h","port":"x"}"#,
            r#"{"exapp_token":"t","exapp_version":"1","host":"h","port":70000}"#,
            r#"{"exapp_token":"t","exapp_version":"1","host":"h","port":1,"routes":[{"url":"^/"}]}"#,
            r#"[1]"#,
        ] {
            assert!(
                matches!(parse_record(bad.as_bytes()), Err(RecordError::Schema(_))),
                "{bad}"
            );
        }
    }
}
