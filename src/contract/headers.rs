//! Header names of contract §2 and §4.
//!
//! Constants, because looking a header up by `&str` parses and hashes the name on every
//! request, which showed up in profiles of the hot path.

use http::HeaderName;

/// The shared key's header, as text for callers that write raw requests (the health probe).
pub(crate) const SHARED_KEY_NAME: &str = "harp-shared-key";
pub const HARP_SHARED_KEY: HeaderName = HeaderName::from_static(SHARED_KEY_NAME);
pub const DOCKER_ENGINE_PORT: HeaderName = HeaderName::from_static("docker-engine-port");
pub const EX_APP_VERSION: HeaderName = HeaderName::from_static("ex-app-version");
pub const EX_APP_ID: HeaderName = HeaderName::from_static("ex-app-id");
pub const EX_APP_HOST: HeaderName = HeaderName::from_static("ex-app-host");
pub const EX_APP_PORT: HeaderName = HeaderName::from_static("ex-app-port");
pub const AUTHORIZATION_APP_API: HeaderName = HeaderName::from_static("authorization-app-api");
pub const AA_VERSION: HeaderName = HeaderName::from_static("aa-version");
