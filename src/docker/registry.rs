//! Which engine a `docker-engine-port` names (contract §5.1); the port plan itself is
//! `contract::ports`, shared with the FRP registration rules.

use super::DockerError;
use crate::contract::ports::{self, LOCAL_ENGINE_PORT};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EngineKind {
    /// Port 24000: dialed straight over the unix socket, no tunnel process involved.
    Local,
    /// 24001–24099: a remote engine behind an FRP tunnel.
    Remote,
}

/// Only called with ports that passed [`parse_engine_port`].
pub(crate) fn engine_kind(port: u16) -> EngineKind {
    if port == LOCAL_ENGINE_PORT {
        EngineKind::Local
    } else {
        EngineKind::Remote
    }
}

/// The `docker-engine-port` header of a wrapper call (§4.5): required, and inside the port
/// plan's engine range like the pass-through's (a `400` otherwise).
pub(crate) fn parse_engine_port(value: Option<&[u8]>) -> Result<u16, DockerError> {
    let Some(value) = value else {
        return Err(DockerError::BadRequest(
            "Missing 'docker-engine-port' header.".into(),
        ));
    };
    ports::parse_engine_port(&String::from_utf8_lossy(value)).map_err(DockerError::BadRequest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_map_to_engine_kinds() {
        assert_eq!(engine_kind(24000), EngineKind::Local);
        assert_eq!(engine_kind(24001), EngineKind::Remote);
        assert_eq!(engine_kind(24099), EngineKind::Remote);
    }

    #[test]
    fn engine_port_header_is_validated_against_the_port_plan() {
        assert_eq!(parse_engine_port(Some(b"24000")), Ok(24000));
        assert_eq!(parse_engine_port(Some(b" 24001 ")), Ok(24001));
        assert_eq!(parse_engine_port(Some(b"24099")), Ok(24099));
        for bad in [
            &b"0"[..],
            b"70000",
            b"abc",
            b"-1",
            b"",
            b"8780",
            b"23999",
            b"24100",
        ] {
            let err = parse_engine_port(Some(bad)).unwrap_err().to_string();
            assert!(
                err.starts_with("Invalid 'docker-engine-port'") && err.contains("24000-24099"),
                "{err}"
            );
        }
        assert_eq!(
            parse_engine_port(None).unwrap_err().to_string(),
            "Missing 'docker-engine-port' header."
        );
    }
}
