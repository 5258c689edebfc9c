//! HaRP's proxy registration policy as a pure function: frps's checks in frps's order with
//! frps's error strings (frpc logs them verbatim), plus harp's hardening (contract §7 #26):
//! a 23xxx port belongs to an ExApp and its proxy name must be a valid app id.

pub(crate) use crate::contract::ports::{ENGINE_PORTS, EXAPP_PORTS, LOCAL_ENGINE_PORT};
use std::ops::RangeInclusive;

/// frps `maxPortsPerClient` in HaRP's configuration.
pub(crate) const MAX_PORTS_PER_CLIENT: usize = 1;
/// HaRP's `allowPorts`.
pub(crate) const HARP_ALLOW: &[RangeInclusive<u16>] = &[EXAPP_PORTS, ENGINE_PORTS];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortKind {
    ExApp,
    Engine,
}

pub(crate) fn port_kind(port: u16) -> Option<PortKind> {
    if EXAPP_PORTS.contains(&port) {
        Some(PortKind::ExApp)
    } else if ENGINE_PORTS.contains(&port) {
        Some(PortKind::Engine)
    } else {
        None
    }
}

/// What the registry knows when a NewProxy arrives.
pub(crate) struct Request<'a> {
    /// Allowed ranges; empty = any port (a user frps.toml without allowPorts).
    pub allow: &'a [RangeInclusive<u16>],
    /// 0 = unlimited.
    pub(crate) max_ports: usize,
    pub proxy_type: &'a str,
    pub name: &'a str,
    pub remote_port: i64,
    /// Proxies this login session already holds.
    pub(crate) held_by_client: usize,
    pub(crate) name_taken: bool,
    pub(crate) port_taken: bool,
    /// The client connected from a loopback address (only the local engine link does).
    pub(crate) client_is_loopback: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("unknown proxy type: {0}")]
    UnknownType(String),
    #[error("exceed the max_ports_per_client")]
    TooManyPorts,
    #[error("proxy [{0}] already exists")]
    NameExists(String),
    #[error("port not allowed")]
    PortNotAllowed,
    #[error("port already used")]
    PortUsed,
    #[error("port 24000 is reserved for the local Docker engine (loopback clients only)")]
    LocalEngineOnly,
    #[error("proxy name [{0}] is not a valid app id (lowercase letters, digits, '_') as required for ExApp ports 23000-23999")]
    NotAnAppId(String),
}

/// The port granted, or why not.
pub(crate) fn check(req: &Request<'_>) -> Result<u16, Refusal> {
    if req.proxy_type != "tcp" {
        return Err(Refusal::UnknownType(req.proxy_type.to_string()));
    }
    if req.max_ports > 0 && req.held_by_client + 1 > req.max_ports {
        return Err(Refusal::TooManyPorts);
    }
    if req.name_taken {
        return Err(Refusal::NameExists(req.name.to_string()));
    }
    // Port 0 (frps: "any free port") is refused too: HaRP's clients always name their port,
    // and a random grant would let a client land in the engine range.
    let port = u16::try_from(req.remote_port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or(Refusal::PortNotAllowed)?;
    if !req.allow.is_empty() && !req.allow.iter().any(|r| r.contains(&port)) {
        return Err(Refusal::PortNotAllowed);
    }
    if req.port_taken {
        return Err(Refusal::PortUsed);
    }
    if port_kind(port) == Some(PortKind::ExApp) && !is_app_id(req.name) {
        return Err(Refusal::NotAnAppId(req.name.to_string()));
    }
    // Every ExApp holds the shared key; without this a remote client could take over the
    // local engine's port and receive AppAPI's Docker calls.
    if port == LOCAL_ENGINE_PORT && !req.client_is_loopback {
        return Err(Refusal::LocalEngineOnly);
    }
    Ok(port)
}

pub(crate) fn is_app_id(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str, port: i64) -> Request<'_> {
        Request {
            allow: HARP_ALLOW,
            max_ports: MAX_PORTS_PER_CLIENT,
            proxy_type: "tcp",
            name,
            remote_port: port,
            held_by_client: 0,
            name_taken: false,
            port_taken: false,
            client_is_loopback: true,
        }
    }

    #[test]
    fn ranges_and_strings() {
        assert_eq!(check(&req("app1", 23000)), Ok(23000));
        assert_eq!(check(&req("app_x", 23999)), Ok(23999));
        assert_eq!(check(&req("bundled-deploy-daemon", 24000)), Ok(24000));
        assert_eq!(check(&req("engine-1", 24099)), Ok(24099));
        for bad in [0, 22999, 24100, 8080, -1, 70000] {
            assert_eq!(
                check(&req("app1", bad)),
                Err(Refusal::PortNotAllowed),
                "{bad}"
            );
        }
        assert_eq!(Refusal::PortNotAllowed.to_string(), "port not allowed");
        assert_eq!(
            Refusal::TooManyPorts.to_string(),
            "exceed the max_ports_per_client"
        );
    }

    #[test]
    fn frps_order_budget_then_name_then_port() {
        let mut r = req("app1", 99);
        r.held_by_client = 1;
        r.name_taken = true;
        assert_eq!(check(&r), Err(Refusal::TooManyPorts));
        r.held_by_client = 0;
        assert_eq!(
            check(&r).unwrap_err().to_string(),
            "proxy [app1] already exists"
        );
        let mut r = req("app1", 23001);
        r.port_taken = true;
        assert_eq!(check(&r), Err(Refusal::PortUsed));
        let mut r = req("app1", 23001);
        r.proxy_type = "http";
        assert_eq!(
            check(&r).unwrap_err().to_string(),
            "unknown proxy type: http"
        );
    }

    #[test]
    fn exapp_ports_need_an_app_id() {
        assert!(matches!(
            check(&req("My-App", 23000)),
            Err(Refusal::NotAnAppId(_))
        ));
        assert!(matches!(
            check(&req("", 23000)),
            Err(Refusal::NotAnAppId(_))
        ));
        assert!(matches!(
            check(&req("a.b", 23000)),
            Err(Refusal::NotAnAppId(_))
        ));
        assert_eq!(check(&req("Engine-X", 24001)), Ok(24001));
    }

    #[test]
    fn user_allow_list_and_unlimited_ports() {
        let mut r = req("web", 8080);
        r.allow = &[];
        r.max_ports = 0;
        r.held_by_client = 7;
        assert_eq!(check(&r), Ok(8080));
        r.remote_port = 0;
        assert_eq!(check(&r), Err(Refusal::PortNotAllowed));
        let only = [9000..=9000];
        let mut r = req("web", 9001);
        r.allow = &only;
        assert_eq!(check(&r), Err(Refusal::PortNotAllowed));
    }

    #[test]
    fn local_engine_port_only_from_loopback() {
        let mut r = req("bundled-deploy-daemon", 24000);
        r.client_is_loopback = false;
        assert_eq!(check(&r), Err(Refusal::LocalEngineOnly));
        r.remote_port = 24001;
        assert_eq!(check(&r), Ok(24001));
    }
}
