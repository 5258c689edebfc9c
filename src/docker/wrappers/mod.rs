//! `/docker/exapp/<op>` (contract §4.5–§4.6): request parsing, per-operation time budgets and
//! dispatch. Each operation lives in its own file and speaks only [`DockerError`].

mod certificates;
mod create;
mod images;
mod lifecycle;
mod remove;
mod wait;

use super::engine::Engine;
use super::names::Names;
use super::{parse_engine_port, DockerError};
use crate::control::{ControlError, ControlReply};
use crate::state::AppState;
use http::HeaderMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use std::future::Future;
use std::time::Duration;

/// Entry point from the control API. `op` is the path after `/docker/exapp/`.
pub async fn handle(
    state: &AppState,
    op: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<ControlReply, ControlError> {
    let budget = budget(op).ok_or(ControlError::NotFound)?;
    let port = parse_engine_port(headers.get("docker-engine-port").map(|v| v.as_bytes()))?;
    let engine = Engine {
        forwarder: &state.forwarder,
        port,
    };
    let result = match op {
        "exists" => within(op, budget, lifecycle::exists(&engine, parse(body)?)).await,
        "create" => within(op, budget, create::create(&engine, parse(body)?)).await,
        "start" => within(op, budget, lifecycle::start(&engine, parse(body)?)).await,
        "stop" => within(op, budget, lifecycle::stop(&engine, parse(body)?)).await,
        "wait_for_start" => {
            wait::wait_for_start(&engine, parse(body)?, wait::Pacing::CONTRACT).await
        }
        "remove" => within(op, budget, remove::remove(&engine, parse(body)?)).await,
        "image_remove" => within(op, budget, images::image_remove(&engine, parse(body)?)).await,
        "install_certificates" => {
            let frp_dir = state.config.certs_dir.join("frp");
            certificates::install(&engine, parse(body)?, &frp_dir, budget).await
        }
        _ => return Err(ControlError::NotFound),
    };
    result.map_err(|e| {
        let engine = format!("{:?}", super::engine_kind(port));
        tracing::warn!(op, port, engine, error = %e, "Docker wrapper call failed");
        ControlError::from(e)
    })
}

/// Overall budgets of the reference (§4.5), all below AppAPI's client timeouts.
fn budget(op: &str) -> Option<Duration> {
    let secs = match op {
        "exists" => 15,
        "create" => 60,
        "start" | "stop" | "remove" | "image_remove" => 30,
        "wait_for_start" => 105,
        "install_certificates" => 120,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

async fn within<T>(
    op: &str,
    budget: Duration,
    fut: impl Future<Output = Result<T, DockerError>>,
) -> Result<T, DockerError> {
    tokio::time::timeout(budget, fut).await.unwrap_or_else(|_| {
        Err(DockerError::Timeout(format!(
            "Docker operation '{op}' did not finish within {} s",
            budget.as_secs()
        )))
    })
}

/// Two-step decoding keeps "not JSON" and "wrong shape" apart, as §4.1 words them.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, DockerError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| DockerError::BadRequest("Invalid JSON body".into()))?;
    if !value.is_object() {
        return Err(DockerError::BadRequest(
            "Payload validation error: the body must be a JSON object".into(),
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| DockerError::BadRequest(format!("Payload validation error: {e}")))
}

pub fn parse_field_err(msg: &str) -> DockerError {
    DockerError::BadRequest(format!("Payload validation error: {msg}"))
}

/// The naming fields of every body; unknown fields are ignored by serde's default.
#[derive(Debug, Deserialize)]
pub struct NameFields {
    name: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    instance_id: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    role_suffix: String,
}

impl NameFields {
    pub fn names(self) -> Result<Names, DockerError> {
        Names::new(self.name, self.instance_id, self.role_suffix)
    }
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// An optional integer that may also arrive as `null` or as a numeric string (§4.1).
pub fn lenient_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("{n} is not an integer"))),
        Some(serde_json::Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("{s:?} is not an integer"))),
        Some(other) => Err(D::Error::custom(format!("{other} is not an integer"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Limits {
        #[serde(default, deserialize_with = "lenient_int")]
        memory: Option<i64>,
    }

    #[test]
    fn bodies_distinguish_bad_json_from_bad_shape() {
        let e = parse::<NameFields>(b"{nope").unwrap_err();
        assert_eq!(e.to_string(), "Invalid JSON body");
        let e = parse::<NameFields>(b"{\"instance_id\": \"\"}").unwrap_err();
        assert!(
            e.to_string().starts_with("Payload validation error:"),
            "{e}"
        );
        assert!(e.to_string().contains("name"));
        let e = parse::<NameFields>(b"[1]").unwrap_err();
        assert!(e.to_string().starts_with("Payload validation error:"));
    }

    #[test]
    fn unknown_fields_and_nulls_are_tolerated() {
        let f: NameFields =
            parse(br#"{"name":"a","instance_id":null,"start_container":true}"#).unwrap();
        let n = f.names().unwrap();
        assert_eq!(n.container(), "nc_app_a");
    }

    #[test]
    fn integers_accept_null_numbers_and_numeric_strings() {
        let l: Limits = parse(br#"{"memory": null}"#).unwrap();
        assert_eq!(l.memory, None);
        let l: Limits = parse(br#"{"memory": "1024"}"#).unwrap();
        assert_eq!(l.memory, Some(1024));
        let l: Limits = parse(br#"{"memory": 2048}"#).unwrap();
        assert_eq!(l.memory, Some(2048));
        assert!(parse::<Limits>(br#"{"memory": "lots"}"#).is_err());
        assert!(parse::<Limits>(br#"{"memory": 1.5}"#).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn an_operation_over_budget_is_a_timeout_naming_it() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(31)).await;
            Ok(())
        };
        let e = within("start", Duration::from_secs(30), slow)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            DockerError::Timeout("Docker operation 'start' did not finish within 30 s".into())
        );
        assert_eq!(
            ControlError::from(e).status(),
            http::StatusCode::GATEWAY_TIMEOUT
        );
    }

    #[test]
    fn every_operation_has_a_budget_below_appapi_timeouts() {
        for op in [
            "exists",
            "create",
            "start",
            "stop",
            "wait_for_start",
            "remove",
            "image_remove",
            "install_certificates",
        ] {
            assert!(budget(op).unwrap() < Duration::from_secs(150));
        }
        assert!(budget("nope").is_none());
    }
}
