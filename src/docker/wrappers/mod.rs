//! `/docker/exapp/<op>` (contract §4.5–§4.6): request parsing, per-operation time budgets and
//! dispatch. Each operation lives in its own file and speaks only [`DockerError`]; every body is
//! validated completely (names here and in `names.rs`, `create`'s engine settings in `fields.rs`)
//! before the first engine call, so a refused payload never reaches an engine.

mod certificates;
mod create;
mod fields;
mod images;
mod lifecycle;
mod remove;
mod wait;

use super::engine::Engine;
use super::names::Names;
use super::{parse_engine_port, DockerError};
use crate::contract::{ControlError, ControlReply};
use crate::metrics::WrapperCalls;
use crate::upstream::Forwarder;
use http::HeaderMap;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// What the wrappers reach engines and certificates with.
pub(crate) struct Wrappers {
    /// Upstream client for engine calls (the control path's own, not a worker's).
    pub forwarder: Forwarder,
    /// Where the FRP certificates live (`install_certificates` copies the CA from here).
    pub frp_certs: PathBuf,
    /// Calls by op and result, and their durations; `None` with metrics off.
    pub calls: Option<WrapperCalls>,
}

/// The operations, so a metric label is always one of these literals.
const OPS: [&str; 8] = [
    "exists",
    "create",
    "start",
    "stop",
    "wait_for_start",
    "remove",
    "image_remove",
    "install_certificates",
];

/// Entry point from the control API. `op` is the path after `/docker/exapp/`.
pub(crate) async fn handle(
    ctx: &Wrappers,
    op: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<ControlReply, ControlError> {
    let op: &'static str = OPS
        .iter()
        .find(|known| **known == op)
        .ok_or(ControlError::NotFound)?;
    let budget = budget(op).ok_or(ControlError::NotFound)?;
    // One block, so refused headers and bodies are counted like engine failures.
    let started = std::time::Instant::now();
    let result = async {
        let port = parse_engine_port(headers.get("docker-engine-port").map(|v| v.as_bytes()))?;
        let engine = Engine {
            forwarder: &ctx.forwarder,
            port,
        };
        let result = match op {
            "exists" => within(op, budget, lifecycle::exists(&engine, parse(body)?)).await,
            "create" => within(op, budget, create::create(&engine, parse(body)?)).await,
            "start" => within(op, budget, lifecycle::start(&engine, parse(body)?)).await,
            "stop" => within(op, budget, lifecycle::stop(&engine, parse(body)?)).await,
            "wait_for_start" => {
                wait::wait_for_start(&engine, parse(body)?, wait::Pacing::contract(budget)).await
            }
            "remove" => within(op, budget, remove::remove(&engine, parse(body)?)).await,
            "image_remove" => within(op, budget, images::image_remove(&engine, parse(body)?)).await,
            // `install_certificates`, the last of `OPS`.
            _ => certificates::install(&engine, parse(body)?, &ctx.frp_certs, budget).await,
        };
        result.inspect_err(|e| {
            let engine = format!("{:?}", super::engine_kind(port));
            tracing::warn!(op, port, engine, error = %e, "Docker wrapper call failed");
        })
    }
    .await;
    if let Some(calls) = &ctx.calls {
        let result = match &result {
            Ok(_) => "ok",
            Err(e) => e.metric_class(),
        };
        calls.record(op, result, started.elapsed());
    }
    result.map_err(ControlError::from)
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

pub(super) fn parse_field_err(msg: &str) -> DockerError {
    DockerError::BadRequest(format!("Payload validation error: {msg}"))
}

/// The naming fields of every body; unknown fields are ignored by serde's default. They are kept
/// as sent so that a wrong type is refused with the field named (serde's own message would not
/// name a field of a flattened struct).
#[derive(Debug, Deserialize)]
pub(super) struct NameFields {
    #[serde(default, deserialize_with = "fields::present")]
    name: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "fields::present")]
    instance_id: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "fields::present")]
    role_suffix: Option<serde_json::Value>,
}

impl NameFields {
    /// `instance_id` and `role_suffix` given as `null` count as empty (§4.1).
    pub(super) fn names(self) -> Result<Names, DockerError> {
        let name = fields::string("name", self.name)?
            .ok_or_else(|| parse_field_err("'name' is required"))?;
        let instance_id = fields::string("instance_id", self.instance_id)?.unwrap_or_default();
        let role_suffix = fields::string("role_suffix", self.role_suffix)?.unwrap_or_default();
        Names::new(name, instance_id, role_suffix).map_err(DockerError::BadRequest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_distinguish_bad_json_from_bad_shape() {
        let e = parse::<NameFields>(b"{nope").unwrap_err();
        assert_eq!(e.to_string(), "Invalid JSON body");
        let e = parse::<NameFields>(b"{\"instance_id\": \"\"}")
            .and_then(NameFields::names)
            .unwrap_err();
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
    fn name_fields_of_the_wrong_type_are_refused_by_name() {
        for (body, field) in [
            (r#"{"name": 5}"#, "'name'"),
            (r#"{"name": null}"#, "'name'"),
            (r#"{"name": ["a"]}"#, "'name'"),
            (r#"{"name": "a", "instance_id": 1}"#, "'instance_id'"),
            (r#"{"name": "a", "role_suffix": {}}"#, "'role_suffix'"),
        ] {
            let e = parse::<NameFields>(body.as_bytes())
                .and_then(NameFields::names)
                .unwrap_err();
            assert!(
                matches!(&e, DockerError::BadRequest(m) if m.contains(field)),
                "{body}: {e}"
            );
        }
        let n = parse::<NameFields>(br#"{"name":"a","instance_id":"i","role_suffix":null}"#)
            .and_then(NameFields::names)
            .unwrap();
        assert_eq!(n.container(), "nc_app_i_a");
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
