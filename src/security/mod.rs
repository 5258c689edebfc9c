//! Security primitives: the shared key (constant-time), the brute-force ban list and client-IP
//! derivation behind trusted proxies (contract §1.3, §2.11, §2.12).
//!
//! Pure in-memory state; no network or file I/O, no knowledge of HTTP routing.

mod bans;
mod client_ip;
mod key;

pub use bans::BanList;
pub(crate) use bans::BanSink;
pub(crate) use client_ip::client_ip;
pub use key::SharedKey;
