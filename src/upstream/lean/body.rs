//! The response body, read straight from the connection: fixed length, chunked, or until the
//! upstream closes. The connection goes back to its pool the moment the last byte is in hand.

use super::head::Framing;
use super::{give_back, LeanConn, READ_CHUNK};
use crate::upstream::pool::IdleConns;
use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// Chunk-size and trailer lines longer than this are a protocol error.
const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data.
    Data,
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one.
    Trailers,
}

/// A response body read straight from the connection; gives the connection back to its pool at
/// the end. Dropped early, it closes the connection (which is mid-message).
pub(super) struct LeanBody {
    conn: Option<LeanConn>,
    framing: Framing,
    /// Bytes left: of the body (Length) or of the current chunk (Chunked).
    remaining: u64,
    chunk: ChunkState,
    home: Option<(Arc<IdleConns<LeanConn>>, SocketAddr)>,
}

/// The size of a chunk-size line (`1a;ext=x`), if it is one.
pub(super) fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.split(|b| *b == b';').next()?.trim_ascii();
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

fn protocol(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

impl LeanBody {
    pub(super) fn new(
        conn: LeanConn,
        framing: Framing,
        home: Option<(Arc<IdleConns<LeanConn>>, SocketAddr)>,
    ) -> LeanBody {
        LeanBody {
            conn: Some(conn),
            framing,
            remaining: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            chunk: ChunkState::Size,
            home,
        }
    }

    fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            give_back(self.home.take(), conn);
        }
    }

    /// Reads more into the buffer; `Ok(0)` at end of stream.
    fn fill(conn: &mut LeanConn, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if conn.buf.capacity() - conn.buf.len() < READ_CHUNK / 4 {
            conn.buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf)
    }

    /// Takes one line off the front of the buffer, if a whole one is there, and returns what
    /// `inspect` makes of its content (without the line ending).
    fn take_line<T>(buf: &mut BytesMut, inspect: impl FnOnce(&[u8]) -> T) -> io::Result<Option<T>> {
        match buf.iter().position(|b| *b == b'\n') {
            Some(end) => {
                let content = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
                let seen = inspect(content);
                buf.advance(end + 1);
                Ok(Some(seen))
            }
            None if buf.len() > MAX_LINE => Err(protocol("chunk line too long")),
            None => Ok(None),
        }
    }

    /// Advances the chunked decoder; `Some` with data, or `None` at the end of the body.
    fn poll_chunked(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        loop {
            let conn = self.conn.as_mut().expect("polled after the end");
            let progressed = match self.chunk {
                ChunkState::Size => match Self::take_line(&mut conn.buf, chunk_size)? {
                    Some(size) => {
                        let size = size.ok_or_else(|| protocol("bad chunk size"))?;
                        self.remaining = size;
                        self.chunk = if size == 0 {
                            ChunkState::Trailers
                        } else {
                            ChunkState::Data
                        };
                        true
                    }
                    None => false,
                },
                ChunkState::Data if !conn.buf.is_empty() => {
                    let n = (self.remaining as usize).min(conn.buf.len());
                    self.remaining -= n as u64;
                    if self.remaining == 0 {
                        self.chunk = ChunkState::DataEnd;
                    }
                    return Poll::Ready(Ok(Some(conn.buf.split_to(n).freeze())));
                }
                ChunkState::Data => false,
                ChunkState::DataEnd => match Self::take_line(&mut conn.buf, <[u8]>::is_empty)? {
                    Some(true) => {
                        self.chunk = ChunkState::Size;
                        true
                    }
                    Some(false) => return Poll::Ready(Err(protocol("chunk data too long"))),
                    None => false,
                },
                ChunkState::Trailers => match Self::take_line(&mut conn.buf, <[u8]>::is_empty)? {
                    // Trailers are dropped, as hyper's client did before.
                    Some(true) => return Poll::Ready(Ok(None)),
                    Some(false) => true,
                    None => false,
                },
            };
            if !progressed && ready!(Self::fill(conn, cx))? == 0 {
                return Poll::Ready(Err(protocol("connection closed in a chunked body")));
            }
        }
    }

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Ok(None));
        };
        match self.framing {
            Framing::Chunked => self.poll_chunked(cx),
            Framing::Empty => Poll::Ready(Ok(None)),
            Framing::Length(_) if self.remaining == 0 => Poll::Ready(Ok(None)),
            Framing::Length(_) => {
                if conn.buf.is_empty() && ready!(Self::fill(conn, cx))? == 0 {
                    return Poll::Ready(Err(protocol(
                        "connection closed before the end of the body",
                    )));
                }
                let n = (self.remaining as usize).min(conn.buf.len());
                self.remaining -= n as u64;
                Poll::Ready(Ok(Some(conn.buf.split_to(n).freeze())))
            }
            Framing::UntilClose => {
                if conn.buf.is_empty() && ready!(Self::fill(conn, cx))? == 0 {
                    return Poll::Ready(Ok(None));
                }
                Poll::Ready(Ok(Some(conn.buf.split().freeze())))
            }
        }
    }
}

impl HttpBody for LeanBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let polled = ready!(self.poll_data(cx));
        let done = match &polled {
            Ok(None) => true,
            Ok(Some(_)) => matches!(self.framing, Framing::Length(_)) && self.remaining == 0,
            Err(_) => {
                self.conn = None;
                false
            }
        };
        if done {
            // Back to the pool as soon as the last byte is in hand, not on the next poll.
            self.finish();
        }
        Poll::Ready(match polled {
            Ok(Some(data)) => Some(Ok(Frame::data(data))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(_) => SizeHint::with_exact(self.remaining),
            _ => SizeHint::default(),
        }
    }
}
