//! The port plan (contract §5): which remote ports FRP clients may claim and what each means.

use std::ops::RangeInclusive;

/// ExApps behind FRP tunnels.
pub(crate) const EXAPP_PORTS: RangeInclusive<u16> = 23000..=23999;
/// Docker Engines: the local socket at [`LOCAL_ENGINE_PORT`], remote engines behind tunnels above.
pub(crate) const ENGINE_PORTS: RangeInclusive<u16> = 24000..=24099;
/// The bundled engine link's port: the local Docker socket (also the loopback relay's port).
pub(crate) const LOCAL_ENGINE_PORT: u16 = *ENGINE_PORTS.start();

/// A `docker-engine-port` header value (contract §5.1), accepted only inside the engine range:
/// any other port would let every key holder (every ExApp holds the key) reach an arbitrary
/// loopback service through the allow-listed engine paths. `Err` is the `400` message.
pub(crate) fn parse_engine_port(raw: &str) -> Result<u16, String> {
    raw.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| ENGINE_PORTS.contains(p))
        .ok_or_else(|| {
            format!(
                "Invalid 'docker-engine-port' header value: {} (allowed: {}-{})",
                raw.trim(),
                ENGINE_PORTS.start(),
                ENGINE_PORTS.end()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_port_only_inside_the_range() {
        assert_eq!(parse_engine_port(" 24000 "), Ok(LOCAL_ENGINE_PORT));
        assert_eq!(parse_engine_port("24099"), Ok(24099));
        for bad in ["23999", "24100", "", "x", "-1", "70000"] {
            let err = parse_engine_port(bad).unwrap_err();
            assert!(err.contains("24000-24099"), "{bad}: {err}");
        }
    }
}
