//! `harp healthcheck`: the container health probe (contract §6.5, project decision 5).
//!
//! Healthy means the front door answers a real request through the whole pipeline
//! (`/exapps/app_api/heartbeat` with the shared key) within the deadline; a listener that
//! accepts TCP but never answers counts as unhealthy.

use crate::contract::headers::SHARED_KEY_NAME;
use crate::security::SharedKey;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

pub fn probe(host: &str, port: u16, key: &SharedKey, timeout: Duration) -> Result<(), String> {
    let addr: SocketAddr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .and_then(|_| s.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET /exapps/app_api/heartbeat HTTP/1.1\r\nHost: localhost\r\n{}: {}\r\nConnection: close\r\n\r\n",
        SHARED_KEY_NAME,
        key.expose()
    );
    s.write_all(request.as_bytes())
        .map_err(|e| format!("cannot send the probe: {e}"))?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)
        .map_err(|e| format!("no answer from {addr}: {e}"))?;
    if &head[..9] == b"HTTP/1.1 " && &head[9..12] == b"200" {
        Ok(())
    } else {
        Err(format!(
            "{addr} answered {:?}",
            String::from_utf8_lossy(&head)
        ))
    }
}

/// Whether `host:port` accepts a TCP connection within `timeout` (the FRP and HTTPS listeners,
/// which the probe cannot exercise with a request of their own).
pub fn accepts_tcp(host: &str, port: u16, timeout: Duration) -> Result<(), String> {
    let addr: SocketAddr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    TcpStream::connect_timeout(&addr, timeout)
        .map(drop)
        .map_err(|e| format!("nothing accepts connections on {addr}: {e}"))
}
