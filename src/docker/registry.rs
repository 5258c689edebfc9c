//! Which engine a `docker-engine-port` names (contract §5.1).

use super::DockerError;

/// The local engine: the Docker socket harp was given (`HP_DOCKER_SOCKET`).
pub const LOCAL_ENGINE_PORT: u16 = 24000;
/// Remote engines registered by an frpc on the engine host.
pub const REMOTE_ENGINE_PORTS: std::ops::RangeInclusive<u16> = 24001..=24099;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// Port 24000: dialed straight over the unix socket, no tunnel process involved.
    Local,
    /// 24001–24099: an FRP tunnel end (plain loopback TCP until the tunnel dialer lands).
    Remote,
    /// Any other port: the reference accepts it, so harp dials loopback TCP as well.
    Other,
}

pub fn engine_kind(port: u16) -> EngineKind {
    if port == LOCAL_ENGINE_PORT {
        EngineKind::Local
    } else if REMOTE_ENGINE_PORTS.contains(&port) {
        EngineKind::Remote
    } else {
        EngineKind::Other
    }
}

/// The `docker-engine-port` header of a wrapper call (§4.5): required, an integer in 1–65535.
pub fn parse_engine_port(value: Option<&[u8]>) -> Result<u16, DockerError> {
    let raw = match value {
        None => {
            return Err(DockerError::BadRequest(
                "Missing 'docker-engine-port' header.".into(),
            ))
        }
        Some(v) => String::from_utf8_lossy(v).trim().to_string(),
    };
    match raw.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err(DockerError::BadRequest(format!(
            "Invalid 'docker-engine-port' header value: {raw}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_map_to_engine_kinds() {
        assert_eq!(engine_kind(24000), EngineKind::Local);
        assert_eq!(engine_kind(24001), EngineKind::Remote);
        assert_eq!(engine_kind(24099), EngineKind::Remote);
        assert_eq!(engine_kind(24100), EngineKind::Other);
    }

    #[test]
    fn engine_port_header_is_validated() {
        assert_eq!(parse_engine_port(Some(b"24000")), Ok(24000));
        assert_eq!(parse_engine_port(Some(b" 24001 ")), Ok(24001));
        for bad in [&b"0"[..], b"70000", b"abc", b"-1", b""] {
            let err = parse_engine_port(Some(bad)).unwrap_err();
            assert!(err.to_string().starts_with("Invalid 'docker-engine-port'"));
        }
        assert_eq!(
            parse_engine_port(None).unwrap_err().to_string(),
            "Missing 'docker-engine-port' header."
        );
    }
}
