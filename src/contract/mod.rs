//! The contract's shared vocabulary: the words several modules must spell the same way.
//!
//! Owns header names ([`headers`]), the port plan ([`ports`]), the control API's reply and
//! error types ([`reply`]) and compiled ExApp routes ([`routes`]). Each is a fact of
//! `harp-contract.md`, written once here so that no folder has to import another folder's
//! internals to name it.
//!
//! A leaf: imports nothing from the rest of harp (tests/architecture.rs checks it), holds no
//! state and makes no decisions; parsing a value into one of these words is the caller's job,
//! except where the word *is* a check (the engine port range).

pub(crate) mod headers;
pub(crate) mod names;
pub(crate) mod ports;
pub(crate) mod reply;
pub(crate) mod routes;

pub(crate) use reply::{ControlError, ControlReply, CONTROL_MAX_BODY};
pub use routes::CompiledRoute;
