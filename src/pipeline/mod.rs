//! The per-request access decision of contract §2, as small pure steps:
//! facts in → [`Decision`] out. No sockets here: Nextcloud and the ban list are reached through
//! the [`Context`] trait so every branch is unit-testable. Never imports `upstream`, `docker` or
//! `tunnel`; forwarding is the caller's job.

mod decide;
pub mod engine_allow;
pub mod facts;
pub mod path;
pub mod routes;

pub use decide::{decide, Context, Decision, ForwardPlan, Refusal, RequestFacts};
