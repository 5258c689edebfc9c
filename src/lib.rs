//! harp: a drop-in Rust replacement for Nextcloud's HaRP (the AppAPI reverse proxy).
//!
//! Data flow of one ExApp request: `frontdoor` accepts → `pipeline` decides (asking `security`
//! and `nextcloud`) → `upstream` forwards (or `control` answers) → the response streams back.
//! [`Harp::bind`] wires the parts; [`Harp::serve`] runs them until shutdown.

#![forbid(unsafe_code)]
// `pub` only for what main.rs, tests/, bench/ and fuzz/ use: everything else is `pub(crate)`, so
// the compiler reports dead code.
#![warn(unreachable_pub)]

pub mod audit;
pub mod certs;
pub mod config;
pub(crate) mod contract;
pub(crate) mod control;
pub(crate) mod docker;
pub mod frontdoor;
pub mod health;
pub mod k8s;
pub mod logging;
pub mod memcopy;
pub mod metrics;
pub(crate) mod net;
pub mod nextcloud;
pub mod pipeline;
pub mod security;
mod start;
pub(crate) mod store;
pub mod tunnel;
pub mod upstream;

pub use start::{run, CoreTaskDied, Harp, StartError};
