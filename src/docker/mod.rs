//! Docker engines (issue #3, contract §2.3, §4.5–§4.7, §5.1).
//!
//! Owns: the engine registry (which `docker-engine-port` means which engine), the dialer that
//! makes port 24000 reach the local Docker socket, the loopback relay on 127.0.0.1:24000, and the
//! `/docker/exapp/*` wrapper endpoints with their naming, ownership labels and error mapping.
//!
//! Does not own: the pass-through allow-list (`pipeline::engine_allow`), how bytes are forwarded
//! (`upstream`), FRP tunnels for remote engines (`tunnel`, which will register its own
//! [`LocalDialer`](crate::upstream::LocalDialer) for 24001–24099), or certificate generation
//! (`certs`). Nothing here decides access: the shared-key gate already ran.
//!
//! Why not `bollard`: bollard always prefixes request paths with `/v<major>.<minor>`, while the
//! contract (§4.5, §7 #12) requires unversioned paths so any engine API level works, and bollard
//! dials engines itself, so it could not reach engines through harp's own dialers (the socket
//! dialer here for 24000, FRP tunnel streams for remote engines). The handful of engine calls the wrappers make go
//! through the same pooled [`Forwarder`](crate::upstream::Forwarder) as the pass-through instead.

mod engine;
mod error;
mod loopback;
mod names;
mod registry;
mod socket_dialer;
mod wrappers;

pub(crate) use error::unreachable_message;
pub(crate) use error::DockerError;
pub(crate) use loopback::{bind_local_engine_listener, LocalEngineListener};
pub(crate) use registry::{engine_kind, parse_engine_port};
pub(crate) use socket_dialer::SocketDialer;
pub(crate) use wrappers::{handle, Wrappers};
