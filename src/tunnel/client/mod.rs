//! `harp tunnel`: an FRP client for the frpc TOML subset HaRP's ExApps and remote engines use
//! ([`config`]), speaking to harp's server or a real frps ([`session`]). Reconnects forever
//! unless `loginFailExit` and the very first login fails. Owns nothing server-side.

mod config;
mod session;

pub use config::ClientConfig;
pub use session::{run, ClientError};
