//! Per-proxy `use_compression`: the Snappy *framed* stream format (stream identifier chunk,
//! then compressed/uncompressed chunks with masked CRC-32C), one chunk per write like Go's
//! unbuffered snappy writer. Written against `snap::raw` because `snap`'s framed types are
//! blocking `Read`/`Write` adapters and a work stream is async.

use bytes::{Buf, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const STREAM_ID: &[u8] = b"\xff\x06\x00\x00sNaPpY";
/// The framing format's limit for uncompressed data per chunk.
const MAX_BLOCK: usize = 65_536;
/// Largest chunk body accepted (compressed worst case plus CRC), bounding memory per stream.
const MAX_CHUNK: usize = 4 + 76_490;

fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("snappy stream: {what}"))
}

pub struct SnappyStream<S> {
    inner: S,
    raw: BytesMut,
    out: BytesMut,
    pending: Vec<u8>,
    pos: usize,
    wrote_id: bool,
}

impl<S> SnappyStream<S> {
    pub fn new(inner: S) -> Self {
        SnappyStream {
            inner,
            raw: BytesMut::new(),
            out: BytesMut::new(),
            pending: Vec::new(),
            pos: 0,
            wrote_id: false,
        }
    }

    /// Decodes one complete chunk from `raw` into `out`; false when more bytes are needed.
    fn decode_chunk(&mut self) -> io::Result<bool> {
        if self.raw.len() < 4 {
            return Ok(false);
        }
        let ty = self.raw[0];
        let len = usize::from(self.raw[1])
            | usize::from(self.raw[2]) << 8
            | usize::from(self.raw[3]) << 16;
        if len > MAX_CHUNK {
            return Err(invalid("chunk too large"));
        }
        if self.raw.len() < 4 + len {
            return Ok(false);
        }
        self.raw.advance(4);
        let body = self.raw.split_to(len);
        match ty {
            0xff if &body[..] == b"sNaPpY" => {}
            0xff => return Err(invalid("bad stream identifier")),
            0x00 | 0x01 => {
                if body.len() < 4 {
                    return Err(invalid("short chunk"));
                }
                let crc = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
                let data = if ty == 0x00 {
                    // The block header claims its decompressed size; the decoder allocates that
                    // much up front, so refuse a claim above the format's limit before decoding
                    // (a 14-byte chunk could otherwise claim 4 GiB).
                    let claimed = snap::raw::decompress_len(&body[4..])
                        .map_err(|e| invalid(&e.to_string()))?;
                    if claimed > MAX_BLOCK {
                        return Err(invalid("chunk too large"));
                    }
                    snap::raw::Decoder::new()
                        .decompress_vec(&body[4..])
                        .map_err(|e| invalid(&e.to_string()))?
                } else {
                    body[4..].to_vec()
                };
                if data.len() > MAX_BLOCK || masked_crc(&data) != crc {
                    return Err(invalid("checksum mismatch"));
                }
                self.out.extend_from_slice(&data);
            }
            0x80..=0xfe => {}
            _ => return Err(invalid("reserved chunk type")),
        }
        Ok(true)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SnappyStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(&this.out[..n]);
                this.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.decode_chunk()? {
                continue;
            }
            let mut tmp = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut tmp);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                return Poll::Ready(if this.raw.is_empty() {
                    Ok(())
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                });
            }
            this.raw.extend_from_slice(rb.filled());
        }
    }
}

impl<S: AsyncWrite + Unpin> SnappyStream<S> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        super::poll_drain(&mut self.inner, &mut self.pending, &mut self.pos, cx)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SnappyStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let data = &buf[..buf.len().min(MAX_BLOCK)];
        if !this.wrote_id {
            this.pending.extend_from_slice(STREAM_ID);
            this.wrote_id = true;
        }
        let compressed = snap::raw::Encoder::new()
            .compress_vec(data)
            .map_err(|e| invalid(&e.to_string()))?;
        // Like Go's writer: keep the compressed form only when it saves at least 1/8.
        let (ty, body) = if compressed.len() < data.len() - data.len() / 8 {
            (0x00u8, &compressed[..])
        } else {
            (0x01u8, data)
        };
        let len = body.len() + 4;
        this.pending.push(ty);
        this.pending
            .extend_from_slice(&(len as u32).to_le_bytes()[..3]);
        this.pending
            .extend_from_slice(&masked_crc(data).to_le_bytes());
        this.pending.extend_from_slice(body);
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn sample() -> Vec<u8> {
        let mut v = b"hello hello hello compressible ".repeat(10_000);
        v.extend((0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        v
    }

    #[tokio::test]
    async fn interoperates_with_the_reference_framed_codec() {
        let data = sample();
        // Ours → snap's blocking framed decoder.
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let writer = tokio::spawn({
            let data = data.clone();
            async move {
                let mut w = SnappyStream::new(a);
                w.write_all(&data).await.unwrap();
                w.shutdown().await.unwrap();
            }
        });
        let mut wire = Vec::new();
        b.read_to_end(&mut wire).await.unwrap();
        writer.await.unwrap();
        let mut plain = Vec::new();
        snap::read::FrameDecoder::new(&wire[..])
            .read_to_end(&mut plain)
            .unwrap();
        assert!(plain == data);

        // snap's framed encoder → ours.
        let mut enc = snap::write::FrameEncoder::new(Vec::new());
        enc.write_all(&data).unwrap();
        let wire = enc.into_inner().unwrap();
        let mut r = SnappyStream::new(&wire[..]);
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.unwrap();
        assert!(back == data);
    }

    #[tokio::test]
    async fn corrupt_input_is_an_error_not_a_panic() {
        for bad in [
            &b"\x02\x01\x00\x00x"[..],
            b"\xff\x06\x00\x00sNaPpX",
            b"\x00\x05\x00\x00\x00\x00\x00\x00\xff",
            b"\x01\xff\xff\xff",
        ] {
            let mut r = SnappyStream::new(bad);
            let mut out = Vec::new();
            assert!(r.read_to_end(&mut out).await.is_err());
        }
    }
}
