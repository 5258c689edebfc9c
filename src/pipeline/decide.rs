//! Contract §2.2 steps 1–8 in order. Each early return names the outcome of the contract.

use super::engine_allow::engine_call_allowed;
use super::facts::{
    header, is_signed, session_cookie, AUTHORIZATION_APP_API, DOCKER_ENGINE_PORT, EX_APP_HOST,
    EX_APP_PORT, EX_APP_VERSION, HARP_SHARED_KEY,
};
use super::normalize::{normalize_path_keeping_encoded_slashes, PathError};
use super::path::{extract_app, has_parent_segment};
use super::plan::ForwardPlan;
use super::routes::{route_verdict, RouteVerdict};
use crate::nextcloud::{ExAppRecord, MetaLookup, UserLookup};
use crate::security::SharedKey;
// The port plan is the tunnel policy's (contract §5); only its engine-port parser crosses over.
use crate::contract::ports::parse_engine_port;
use base64::Engine as _;
use http::{HeaderMap, Method};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

/// What the pipeline needs from the rest of harp.
pub trait Context: Send + Sync {
    fn key(&self) -> &SharedKey;
    fn is_banned(&self, ip: IpAddr) -> bool;
    fn record_failure(&self, ip: IpAddr, reason: &'static str);
    fn metadata(&self, app_lower: &str) -> impl Future<Output = MetaLookup> + Send;
    fn user(
        &self,
        app_lower: &str,
        headers: &HeaderMap,
        cookie: &str,
    ) -> impl Future<Output = UserLookup> + Send;
}

/// The request as the pipeline sees it.
pub struct RequestFacts<'a> {
    pub method: &'a Method,
    /// Path as received, percent-encoding intact, without the query string. The decision is made
    /// on its normalised form (`normalize::normalize_path`).
    pub raw_path: &'a str,
    pub headers: &'a HeaderMap,
    pub client_ip: IpAddr,
}

/// Refusals with a fixed status and body (contract §2.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    BadRequest(String),
    Unauthorized,
    Forbidden,
    NotFound,
    AgentError,
}

#[derive(Debug)]
pub enum Decision {
    /// Close the connection without a response.
    Drop,
    Refuse(Refusal),
    /// Shared key accepted: serve from the control API.
    Control {
        target_path: String,
    },
    /// Shared key accepted and allow-listed: pass through to the Docker Engine on `port`.
    Engine {
        port: u16,
        target_path: String,
    },
    /// Engine call outside the allow-list (HAProxy-style 403 page).
    EngineForbidden,
    Forward(ForwardPlan),
}

const INTERNAL_ENDPOINTS: [&str; 3] = ["/heartbeat", "/init", "/enabled"];

pub async fn decide<C: Context>(facts: &RequestFacts<'_>, ctx: &C) -> Decision {
    let ip = facts.client_ip;
    if ctx.is_banned(ip) {
        return Decision::Drop;
    }
    let trusted =
        header(facts.headers, HARP_SHARED_KEY).is_some_and(|k| ctx.key().matches(k.as_bytes()));
    let record_unless_trusted = |reason| {
        if !trusted {
            ctx.record_failure(ip, reason);
        }
    };

    if has_parent_segment(facts.raw_path) {
        record_unless_trusted("parent directory segment in path");
        return Decision::Drop;
    }
    // Everything below decides on the canonical path (see `normalize`), and forwards it. A refusal
    // here is not a recorded failure: clients with odd but harmless encodings are not attackers,
    // and the 400 reveals nothing.
    // Encoded slashes are refused everywhere except under `/exapps/app_api`, whose engine
    // pass-through receives URL-encoded image names from AppAPI.
    let path = match normalize_path_keeping_encoded_slashes(facts.raw_path) {
        Ok(path) => path,
        Err(e) => return Decision::Refuse(Refusal::BadRequest(e.to_string())),
    };
    let Some(app) = extract_app(&path) else {
        record_unless_trusted(
            "no app id in path (is the reverse proxy keeping the /exapps/ prefix?)",
        );
        return Decision::Refuse(Refusal::NotFound);
    };
    if app.app_id == "app_api" {
        return app_api(facts, app.target_path, trusted, ctx);
    }
    // A path borrowed unchanged holds no `%` at all (any escape makes the normaliser copy it).
    if matches!(path, std::borrow::Cow::Owned(_)) && path.contains("%2F") {
        return Decision::Refuse(Refusal::BadRequest(PathError::EncodedSlash.to_string()));
    }
    // App ids are nearly always lower case already: borrow unless one is not.
    let app_lower: std::borrow::Cow<str> = if app.app_id.bytes().any(|b| b.is_ascii_uppercase()) {
        app.app_id.to_ascii_lowercase().into()
    } else {
        app.app_id.into()
    };

    let (record, appapi_auth) = if is_signed(facts.headers) {
        if !trusted {
            ctx.record_failure(ip, "wrong shared key on an AppAPI-signed request");
            return Decision::Drop;
        }
        let record = match ctx.metadata(&app_lower).await {
            MetaLookup::Found(rec) => rec,
            _ => match fallback_record(facts.headers) {
                Some(rec) => Arc::new(rec),
                None => return Decision::Refuse(Refusal::AgentError),
            },
        };
        let auth = header(facts.headers, AUTHORIZATION_APP_API)
            .unwrap_or("")
            .to_string();
        (record, auth)
    } else {
        match ctx.metadata(&app_lower).await {
            MetaLookup::Found(rec) => (rec, String::new()),
            MetaLookup::NotFound => {
                record_unless_trusted("unknown ExApp");
                return Decision::Refuse(Refusal::NotFound);
            }
            MetaLookup::Error(e) => {
                tracing::warn!(app = %app_lower, error = %e, "ExApp metadata unavailable");
                return Decision::Refuse(Refusal::NotFound);
            }
        }
    };

    if !appapi_auth.is_empty() {
        return Decision::Forward(ForwardPlan {
            record,
            app_id: app.app_id.to_string(),
            authorization: appapi_auth,
            target_path: app.target_path.to_string(),
            bruteforce: Vec::new(),
        });
    }
    if INTERNAL_ENDPOINTS.contains(&app.target_path) {
        ctx.record_failure(ip, "unsigned request to an internal ExApp endpoint");
        return Decision::Drop;
    }

    let cookie = session_cookie(facts.headers);
    let user = if !cookie.is_empty() || facts.headers.contains_key(http::header::AUTHORIZATION) {
        match ctx.user(&app_lower, facts.headers, cookie).await {
            UserLookup::User(u) => Some(u),
            UserLookup::Anonymous => None,
            UserLookup::Failed(e) => {
                // Improvement (contract §7 #17): degrade to anonymous so PUBLIC routes keep working.
                tracing::warn!(app = %app_lower, error = %e, "user-info failed; treating caller as anonymous");
                None
            }
        }
    } else {
        None
    };

    let bruteforce = match route_verdict(
        &record.routes,
        app.target_path,
        user.as_ref().map(|u| u.access_level),
    ) {
        RouteVerdict::Allow { bruteforce } => bruteforce,
        RouteVerdict::Forbidden => {
            ctx.record_failure(ip, "route denies access");
            return Decision::Refuse(Refusal::Forbidden);
        }
        RouteVerdict::NoRoute => {
            ctx.record_failure(ip, "no route matches");
            return Decision::Refuse(Refusal::NotFound);
        }
    };
    let user_id = user.map(|u| u.user_id).unwrap_or_default();
    // Concatenated by hand: `format!` here cost more than the base64 encoding itself.
    let mut credentials = String::with_capacity(user_id.len() + 1 + record.token.len());
    credentials.push_str(&user_id);
    credentials.push(':');
    credentials.push_str(&record.token);
    let authorization = base64::engine::general_purpose::STANDARD.encode(credentials);
    Decision::Forward(ForwardPlan {
        record,
        app_id: app.app_id.to_string(),
        authorization,
        target_path: app.target_path.to_string(),
        bruteforce,
    })
}

/// Contract §2.3.
fn app_api<C: Context>(
    facts: &RequestFacts<'_>,
    target_path: &str,
    trusted: bool,
    ctx: &C,
) -> Decision {
    if !trusted {
        ctx.record_failure(
            facts.client_ip,
            "missing or wrong shared key on /exapps/app_api",
        );
        return Decision::Refuse(Refusal::Unauthorized);
    }
    match header(facts.headers, DOCKER_ENGINE_PORT).filter(|v| !v.is_empty()) {
        Some(port) if !target_path.starts_with("/docker/") => {
            let port = match parse_engine_port(port) {
                Ok(port) => port,
                Err(message) => return Decision::Refuse(Refusal::BadRequest(message)),
            };
            if engine_call_allowed(facts.method, target_path) {
                Decision::Engine {
                    port,
                    target_path: target_path.to_string(),
                }
            } else {
                Decision::EngineForbidden
            }
        }
        _ => Decision::Control {
            target_path: target_path.to_string(),
        },
    }
}

/// Contract §2.4 step 3: the uncached record built from AppAPI's headers.
fn fallback_record(headers: &HeaderMap) -> Option<ExAppRecord> {
    let port = header(headers, EX_APP_PORT)?.parse::<u16>().ok()?;
    Some(ExAppRecord::new(
        String::new(),
        header(headers, EX_APP_VERSION).unwrap_or("").to_string(),
        header(headers, EX_APP_HOST).unwrap_or("").to_string(),
        port,
        Vec::new(),
    ))
}

#[cfg(test)]
mod tests;
