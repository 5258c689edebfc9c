//! The FRP login check (contract §4.4): ban list first, then the token in login metadata.
//! Used by the `/frp_handler` control path and, in-process, by the FRP server.

use super::ControlReply;
use crate::security::{BanList, SharedKey};
use http::StatusCode;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The login check with what it needs (the shared key and the ban list it reads and feeds),
/// for the `/frp_handler` control path and the FRP server alike.
#[derive(Clone)]
pub struct LoginChecker {
    key: SharedKey,
    bans: Arc<BanList>,
    /// Where every login decision is recorded (off unless set).
    audit: crate::audit::Audit,
    /// Refused logins (`harp_frp_login_failures_total`); unregistered when metrics are off.
    failures: prometheus_client::metrics::counter::Counter,
}

impl LoginChecker {
    pub fn new(key: SharedKey, bans: Arc<BanList>) -> LoginChecker {
        LoginChecker {
            key,
            bans,
            audit: crate::audit::Audit::default(),
            failures: Default::default(),
        }
    }

    /// The same checker, counting refused logins into `failures`.
    pub(crate) fn with_failure_counter(
        mut self,
        failures: prometheus_client::metrics::counter::Counter,
    ) -> LoginChecker {
        self.failures = failures;
        self
    }

    /// The same checker, recording every login decision in `audit`.
    pub(crate) fn with_audit(mut self, audit: crate::audit::Audit) -> LoginChecker {
        self.audit = audit;
        self
    }

    /// Where the FRP server records proxy registrations (the same log as logins).
    pub(crate) fn audit(&self) -> &crate::audit::Audit {
        &self.audit
    }

    fn audited(&self, verdict: FrpLoginVerdict) -> FrpLoginVerdict {
        let (ip, outcome) = match &verdict {
            FrpLoginVerdict::Malformed => (None, "malformed"),
            FrpLoginVerdict::Banned(ip) => (Some(*ip), "refused: banned"),
            FrpLoginVerdict::Accepted(ip) => (Some(*ip), "accepted"),
            FrpLoginVerdict::Rejected(ip) => {
                self.failures.inc();
                (Some(*ip), "refused: wrong token")
            }
        };
        self.audit.record("frp_login", ip, "", outcome);
        verdict
    }

    /// The check for a client whose address and token are known (the FRP server).
    pub(crate) fn check(&self, ip: IpAddr, token: Option<&str>) -> FrpLoginVerdict {
        self.audited(check_login(ip, token, &self.key, &self.bans))
    }

    /// The check for a plugin-style request body (the `/frp_handler` control path).
    pub(crate) fn check_body(&self, body: &[u8]) -> FrpLoginVerdict {
        self.audited(frp_login_check(body, &self.key, &self.bans))
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FrpLoginVerdict {
    /// Request body unusable (not JSON, no client address).
    Malformed,
    Banned(IpAddr),
    Accepted(IpAddr),
    /// Wrong or missing token; a failure was recorded for the client.
    Rejected(IpAddr),
}

impl FrpLoginVerdict {
    pub(crate) fn into_reply(self) -> ControlReply {
        match self {
            FrpLoginVerdict::Malformed => {
                ControlReply::Text(StatusCode::BAD_REQUEST, "400: Bad Request".into())
            }
            FrpLoginVerdict::Banned(_) => ControlReply::Json(
                StatusCode::OK,
                json!({"reject": true, "reject_reason": "banned"}),
            ),
            FrpLoginVerdict::Accepted(_) => {
                ControlReply::Json(StatusCode::OK, json!({"reject": false, "unchange": true}))
            }
            FrpLoginVerdict::Rejected(_) => {
                ControlReply::Text(StatusCode::BAD_REQUEST, "Invalid token".into())
            }
        }
    }
}

pub(crate) fn frp_login_check(body: &[u8], key: &SharedKey, bans: &BanList) -> FrpLoginVerdict {
    let Ok(doc) = serde_json::from_slice::<Value>(body) else {
        return FrpLoginVerdict::Malformed;
    };
    let content = &doc["content"];
    let Some(ip) = content["client_address"].as_str().and_then(client_ip) else {
        return FrpLoginVerdict::Malformed;
    };
    check_login(ip, content["metas"]["token"].as_str(), key, bans)
}

/// The decision itself, for callers that already hold the address and token.
pub(crate) fn check_login(
    ip: IpAddr,
    token: Option<&str>,
    key: &SharedKey,
    bans: &BanList,
) -> FrpLoginVerdict {
    if bans.is_banned(ip) {
        return FrpLoginVerdict::Banned(ip);
    }
    if token.is_some_and(|t| key.matches(t.as_bytes())) {
        FrpLoginVerdict::Accepted(ip)
    } else {
        bans.record(ip);
        FrpLoginVerdict::Rejected(ip)
    }
}

/// `ip:port`, `[v6]:port` or a bare address (improvement over the reference's split at ':').
fn client_ip(addr: &str) -> Option<IpAddr> {
    addr.parse::<SocketAddr>()
        .map(|s| s.ip())
        .or_else(|_| addr.parse::<IpAddr>())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn body(addr: &str, token: Option<&str>) -> Vec<u8> {
        let metas = token.map_or(json!({}), |t| json!({"token": t}));
        serde_json::to_vec(&json!({"version": "0.1.0", "op": "Login", "content": {"client_address": addr, "metas": metas}})).unwrap()
    }

    #[test]
    fn accepts_right_token_rejects_and_counts_wrong_then_bans() {
        let key = SharedKey::new("k");
        let bans = BanList::new(Duration::from_secs(60), 2);
        assert!(matches!(
            frp_login_check(&body("10.0.0.5:4000", Some("k")), &key, &bans),
            FrpLoginVerdict::Accepted(_)
        ));
        assert!(matches!(
            frp_login_check(&body("10.0.0.5:4000", Some("x")), &key, &bans),
            FrpLoginVerdict::Rejected(_)
        ));
        assert!(matches!(
            frp_login_check(&body("10.0.0.5:4001", None), &key, &bans),
            FrpLoginVerdict::Rejected(_)
        ));
        assert!(matches!(
            frp_login_check(&body("10.0.0.5:4002", Some("k")), &key, &bans),
            FrpLoginVerdict::Banned(_)
        ));
        assert_eq!(
            FrpLoginVerdict::Banned("10.0.0.5".parse().unwrap()).into_reply(),
            ControlReply::Json(
                StatusCode::OK,
                json!({"reject": true, "reject_reason": "banned"})
            )
        );
    }

    #[test]
    fn ipv6_and_malformed() {
        let key = SharedKey::new("k");
        let bans = BanList::new(Duration::from_secs(60), 2);
        assert_eq!(
            frp_login_check(&body("[::1]:5000", Some("k")), &key, &bans),
            FrpLoginVerdict::Accepted("::1".parse().unwrap())
        );
        assert_eq!(
            frp_login_check(b"nope", &key, &bans),
            FrpLoginVerdict::Malformed
        );
        assert_eq!(
            frp_login_check(br#"{"content":{}}"#, &key, &bans),
            FrpLoginVerdict::Malformed
        );
    }
}
