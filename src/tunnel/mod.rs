//! FRP tunnels: a native server that Go frpc 0.61–0.65 accepts unchanged, and the
//! `harp tunnel` client. Layering (see `shared/spec/frp-protocol.md`):
//! TCP → optional TLS → [`mux`] (yamux) → [`wire`] messages (control stream encrypted).
//! [`server`] owns logins, proxies and work connections and hands `upstream` a dialer;
//! [`client`] plays frpc's role. Nothing here knows about HTTP.

pub mod client;
pub mod mux;
pub mod server;
pub mod wire;
