//! The per-request access decision of contract §2, as small pure steps:
//! facts in → [`Decision`] out. No sockets here: Nextcloud and the ban list are reached through
//! the [`Context`] trait so every branch is unit-testable. Never imports `upstream` or `docker`,
//! and from `tunnel` only the port plan's engine range; forwarding is the caller's job.
//!
//! Every decision is made on the normalised path ([`normalize::normalize_path`]), which is also
//! the path forwarded, so an ExApp sees exactly what was decided on.

mod decide;
pub(crate) mod engine_allow;
pub mod facts;
pub mod normalize;
pub mod path;
mod plan;
pub mod routes;

pub use decide::{decide, Context, Decision, Refusal, RequestFacts};
pub use plan::{strip_engine_headers, ForwardPlan};
