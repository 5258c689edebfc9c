//! A lean HTTP/1.1 client for the hot path: bodiless GET and HEAD requests that do not upgrade.
//!
//! Why hand-written next to hyper's client: hyper drives each client connection from a task of
//! its own and passes requests, responses and body chunks across channels. For the small GETs
//! that make up most ExApp traffic, that task and its hand-offs were about a quarter of harp's
//! user-space CPU per request (perf, against the bench). This client runs the exchange inside the
//! request's own task: one write, reads into one buffer, `httparse` for the head, and a body that
//! reads straight from the socket. Requests with a body or an upgrade stay on hyper (pool.rs),
//! which reads and writes at once as they need.
//!
//! Owns: request-head serialization, response-head parsing, body framing (RFC 9112 §6.3), and its
//! idle connections (head.rs: the head in both directions; body.rs: the body). Must not: resend a request unless nothing at all came back on a reused
//! connection (safe for GET and HEAD, RFC 9112 §9.3.1).

mod body;
mod head;
#[cfg(test)]
mod tests;

pub(super) use head::request_head;

use super::body::{empty, full, Body, IdleTimeoutBody};
use super::connector::{BoxedIo, Connector};
use super::pool::IdleConns;
use body::LeanBody;
use bytes::{Buf, Bytes, BytesMut};
use head::{parse_head, Framing, Head, MAX_HEAD};
use http::{Method, Response};
use http_body::Body as HttpBody;
use http_body_util::BodyExt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Read granularity; grown by this much when the buffer is full.
pub(super) const READ_CHUNK: usize = 16 * 1024;
/// Fully buffered bodies up to this size are copied out, so the read buffer stays reusable.
const COPY_LIMIT: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub(super) enum LeanError {
    #[error("{0}")]
    Connect(io::Error),
    /// Nothing came back: on a reused connection the request can safely go again.
    #[error("connection closed before any response: {0}")]
    Unanswered(io::Error),
    #[error("{0}")]
    Io(io::Error),
    #[error("invalid response head: {0}")]
    Head(String),
}

/// Whether a request can take the lean path.
pub(super) fn eligible(method: &Method, body: &Body, upgrading: bool) -> bool {
    !upgrading && (*method == Method::GET || *method == Method::HEAD) && body.is_end_stream()
}

/// One upstream connection and what has been read from it but not consumed.
pub(super) struct LeanConn {
    pub(super) io: BoxedIo,
    pub(super) buf: BytesMut,
}

pub(super) struct Lean {
    connector: Connector,
    idle: Arc<IdleConns<LeanConn>>,
    body_idle: Duration,
}

impl Lean {
    pub(super) fn new(connector: Connector, body_idle: Duration) -> Lean {
        Lean {
            connector,
            idle: Arc::default(),
            body_idle,
        }
    }

    /// Sends a serialized request head and returns the response with a streaming body. The
    /// caller bounds the wait with the server timeout.
    pub(super) async fn send(
        &self,
        addr: SocketAddr,
        head: &[u8],
        head_request: bool,
    ) -> Result<Response<Body>, LeanError> {
        let mut reuse = true;
        loop {
            let pooled = if reuse {
                self.idle.take(addr, |_| true)
            } else {
                None
            };
            let reused = pooled.is_some();
            let mut conn = match pooled {
                Some(conn) => conn,
                None => LeanConn {
                    io: self
                        .connector
                        .dial(addr)
                        .await
                        .map_err(LeanError::Connect)?,
                    buf: BytesMut::with_capacity(READ_CHUNK),
                },
            };
            match conn.exchange(head, head_request).await {
                Ok(head) => return Ok(self.respond(addr, conn, head)),
                Err(LeanError::Unanswered(e)) if reused => {
                    // The server closed it while idle (restart, keep-alive timeout). The older
                    // idle ones are no younger: drop them all and go on a new connection.
                    tracing::debug!(%addr, error = %e, "idle upstream connection was closed; resending on a new one");
                    self.idle.clear(addr);
                    reuse = false;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn respond(&self, addr: SocketAddr, mut conn: LeanConn, head: Head) -> Response<Body> {
        let home = head.keep_alive.then(|| (self.idle.clone(), addr));
        let body = match head.framing {
            Framing::Empty => {
                give_back(home, conn);
                empty()
            }
            Framing::Length(n) if n as usize <= conn.buf.len() => {
                let n = n as usize;
                let data = if n <= COPY_LIMIT {
                    let data = Bytes::copy_from_slice(&conn.buf[..n]);
                    conn.buf.advance(n);
                    data
                } else {
                    conn.buf.split_to(n).freeze()
                };
                give_back(home, conn);
                full(data)
            }
            framing => {
                let body = LeanBody::new(conn, framing, home);
                IdleTimeoutBody::new(body, self.body_idle).boxed_unsync()
            }
        };
        let mut response = Response::new(body);
        *response.status_mut() = head.status;
        *response.headers_mut() = head.headers;
        response
    }
}

/// Returns a connection whose response is complete to its pool, if it may be reused and
/// nothing unexpected follows the response.
pub(super) fn give_back(home: Option<(Arc<IdleConns<LeanConn>>, SocketAddr)>, conn: LeanConn) {
    if let Some((idle, addr)) = home {
        if conn.buf.is_empty() {
            idle.put(addr, conn);
        }
    }
}

impl LeanConn {
    /// Writes the request and reads up to the final response head (1xx heads are skipped).
    async fn exchange(&mut self, head: &[u8], head_request: bool) -> Result<Head, LeanError> {
        let unanswered = LeanError::Unanswered;
        self.io.write_all(head).await.map_err(unanswered)?;
        self.io.flush().await.map_err(unanswered)?;
        let mut received = false;
        loop {
            if !self.buf.is_empty() {
                if let Some(head) = parse_head(&mut self.buf, head_request)? {
                    return Ok(head);
                }
                if self.buf.len() >= MAX_HEAD {
                    return Err(LeanError::Head(format!("larger than {MAX_HEAD} bytes")));
                }
            }
            self.buf.reserve(READ_CHUNK);
            let read = self.io.read_buf(&mut self.buf).await;
            match read {
                Ok(0) if !received => {
                    return Err(unanswered(io::ErrorKind::UnexpectedEof.into()));
                }
                Ok(0) => {
                    return Err(LeanError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed in the middle of the response head",
                    )))
                }
                Ok(_) => received = true,
                Err(e) if !received => return Err(unanswered(e)),
                Err(e) => return Err(LeanError::Io(e)),
            }
        }
    }
}
