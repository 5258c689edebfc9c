//! `wait_for_start` (§4.6): poll the container state until it is decided or the budget is spent.

use super::NameFields;
use crate::contract::ControlReply;
use crate::docker::engine::Engine;
use crate::docker::DockerError;
use http::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// How often and how long to poll.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pacing {
    pub interval: Duration,
    pub max_polls: u32,
    pub overall: Duration,
}

impl Pacing {
    /// The reference's polling (every 0.5 s, at most 180 polls, §4.6) inside `overall`, the
    /// operation's budget (§4.5), which bounds slow inspects that the poll count alone does not.
    pub(super) fn contract(overall: Duration) -> Pacing {
        Pacing {
            interval: Duration::from_millis(500),
            max_polls: 180,
            overall,
        }
    }
}

/// What one inspect says.
#[derive(Debug, PartialEq)]
enum Seen {
    Done(Value),
    Pending { status: String, health: Value },
}

fn classify(inspect: &Value) -> Seen {
    let status = inspect
        .pointer("/State/Status")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    let health = inspect
        .pointer("/State/Health/Status")
        .and_then(Value::as_str)
        .map_or(Value::Null, |h| json!(h));
    match (status.as_str(), inspect.pointer("/State/Health")) {
        ("running", None) | ("running", Some(Value::Null)) => {
            Seen::Done(json!({"started": true, "status": "running", "health": null}))
        }
        ("running", Some(_)) if health == "healthy" => {
            Seen::Done(json!({"started": true, "status": "running", "health": "healthy"}))
        }
        // AppAPI goes on to the heartbeat, which is the real test of an unhealthy app.
        ("running", Some(_)) if health == "unhealthy" => Seen::Done(json!({
            "started": true, "status": "running", "health": "unhealthy", "reason": "unhealthy",
        })),
        ("paused" | "exited" | "dead", _) => Seen::Done(json!({
            "started": false, "status": status, "health": health,
            "reason": format!("non-recoverable state: {status}"),
        })),
        _ => Seen::Pending { status, health },
    }
}

pub(super) async fn wait_for_start(
    engine: &Engine<'_>,
    body: NameFields,
    pacing: Pacing,
) -> Result<ControlReply, DockerError> {
    let container = body.names()?.container();
    let mut last_status = "unknown".to_string();
    let mut last_health = Value::Null;
    let polling = async {
        for poll in 0..pacing.max_polls {
            if poll > 0 {
                tokio::time::sleep(pacing.interval).await;
            }
            let reply = engine.get(&format!("/containers/{container}/json")).await?;
            match reply.status.as_u16() {
                200 => {}
                404 => {
                    return Ok(json!({
                        "started": false, "status": "not_found", "reason": "container not found",
                    }))
                }
                _ => return Err(reply.unexpected(format!("inspect of '{container}'"))),
            }
            match classify(&reply.json().unwrap_or(Value::Null)) {
                Seen::Done(answer) => return Ok(answer),
                Seen::Pending { status, health } => {
                    last_status = status;
                    last_health = health;
                }
            }
        }
        Ok(timed_out(
            &last_status,
            &last_health,
            "timeout after max tries",
        ))
    };
    let answer = match tokio::time::timeout(pacing.overall, polling).await {
        Ok(result) => result?,
        Err(_) => timed_out(&last_status, &last_health, "overall timeout"),
    };
    Ok(ControlReply::Json(StatusCode::OK, answer))
}

fn timed_out(status: &str, health: &Value, reason: &str) -> Value {
    json!({"started": false, "status": status, "health": health, "reason": reason})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: &str, health: Option<&str>) -> Value {
        match health {
            Some(h) => json!({"State": {"Status": status, "Health": {"Status": h}}}),
            None => json!({"State": {"Status": status}}),
        }
    }

    #[test]
    fn states_are_classified_like_the_contract_table() {
        assert_eq!(
            classify(&state("running", None)),
            Seen::Done(json!({"started": true, "status": "running", "health": null}))
        );
        assert_eq!(
            classify(&state("running", Some("healthy"))),
            Seen::Done(json!({"started": true, "status": "running", "health": "healthy"}))
        );
        let Seen::Done(unhealthy) = classify(&state("running", Some("unhealthy"))) else {
            panic!("unhealthy must end the wait")
        };
        assert_eq!(unhealthy["started"], true);
        assert_eq!(unhealthy["reason"], "unhealthy");
        for s in ["paused", "exited", "dead"] {
            let Seen::Done(v) = classify(&state(s, None)) else {
                panic!("{s} must end the wait")
            };
            assert_eq!(v["started"], false);
            assert_eq!(v["reason"], format!("non-recoverable state: {s}"));
        }
        for (s, h) in [
            ("running", Some("starting")),
            ("running", Some("")),
            ("created", None),
            ("restarting", None),
        ] {
            assert!(
                matches!(classify(&state(s, h)), Seen::Pending { .. }),
                "{s} {h:?}"
            );
        }
    }

    #[test]
    fn timeout_answer_carries_the_last_observation() {
        let v = timed_out("created", &json!("starting"), "overall timeout");
        assert_eq!(
            v,
            json!({"started": false, "status": "created", "health": "starting", "reason": "overall timeout"})
        );
    }
}
