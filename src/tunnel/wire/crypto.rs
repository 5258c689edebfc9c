//! frp's cryptography: the token hash in Login (`privilege_key`), the PBKDF2 key, and
//! AES-128-CFB stream wrappers (random IV sent in clear first, one continuous cipher stream
//! per direction). Used for the control stream and for proxies with `use_encryption`.

use aes::Aes128;
use cfb_mode::{BufDecryptor, BufEncryptor};
use cipher::KeyIvInit;
use md5::{Digest, Md5};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const IV_LEN: usize = 16;
/// Plaintext taken per `poll_write`; bounds the ciphertext buffered ahead of the socket.
const CHUNK: usize = 64 * 1024;

/// PBKDF2-HMAC-SHA1, salt `frp`, 64 rounds, 16 bytes — password is frp's `auth.token`
/// (empty for HaRP), never the shared key.
pub fn derive_key(token: &str) -> [u8; 16] {
    let mut key = [0u8; 16];
    pbkdf2::pbkdf2_hmac::<sha1::Sha1>(token.as_bytes(), b"frp", 64, &mut key);
    key
}

/// Lowercase hex MD5 of token followed by the decimal timestamp.
pub fn privilege_key(token: &str, timestamp: i64) -> String {
    let mut h = Md5::new();
    h.update(token.as_bytes());
    h.update(timestamp.to_string().as_bytes());
    hex::encode(h.finalize())
}

/// Decrypts a stream whose first 16 bytes are the IV.
pub struct CryptoReader<R> {
    inner: R,
    key: [u8; 16],
    iv: [u8; IV_LEN],
    iv_len: usize,
    dec: Option<BufDecryptor<Aes128>>,
}

impl<R> CryptoReader<R> {
    pub fn new(inner: R, key: [u8; 16]) -> Self {
        CryptoReader {
            inner,
            key,
            iv: [0; IV_LEN],
            iv_len: 0,
            dec: None,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for CryptoReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.dec.is_none() {
            let mut iv_buf = ReadBuf::new(&mut this.iv[this.iv_len..]);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut iv_buf))?;
            let n = iv_buf.filled().len();
            if n == 0 {
                if this.iv_len == 0 {
                    return Poll::Ready(Ok(()));
                }
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            this.iv_len += n;
            if this.iv_len == IV_LEN {
                this.dec = Some(BufDecryptor::new(&this.key.into(), &this.iv.into()));
            }
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let dec = this.dec.as_mut().expect("set above");
        dec.decrypt(&mut buf.filled_mut()[before..]);
        Poll::Ready(Ok(()))
    }
}

/// Encrypts a stream, sending a fresh random IV before the first ciphertext byte.
pub struct CryptoWriter<W> {
    inner: W,
    enc: BufEncryptor<Aes128>,
    pending: Vec<u8>,
    pos: usize,
}

impl<W> CryptoWriter<W> {
    pub fn new(inner: W, key: [u8; 16]) -> Self {
        let iv: [u8; IV_LEN] = rand::random();
        Self::with_iv(inner, key, iv)
    }

    pub fn with_iv(inner: W, key: [u8; 16], iv: [u8; IV_LEN]) -> Self {
        CryptoWriter {
            inner,
            enc: BufEncryptor::new(&key.into(), &iv.into()),
            pending: iv.to_vec(),
            pos: 0,
        }
    }
}

impl<W: AsyncWrite + Unpin> CryptoWriter<W> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        super::poll_drain(&mut self.inner, &mut self.pending, &mut self.pos, cx)
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for CryptoWriter<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        // Anything still buffered must go first: ciphertext order is the cipher state.
        ready!(this.poll_drain(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(CHUNK);
        let start = this.pending.len();
        this.pending.extend_from_slice(&buf[..n]);
        this.enc.encrypt(&mut this.pending[start..]);
        // The bytes are accepted now; a pending socket write finishes in flush/next write.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
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

/// A bidirectional stream with both directions encrypted (per-proxy `use_encryption`).
pub(crate) struct CryptoStream<S> {
    reader: CryptoReader<tokio::io::ReadHalf<S>>,
    writer: CryptoWriter<tokio::io::WriteHalf<S>>,
}

impl<S: AsyncRead + AsyncWrite> CryptoStream<S> {
    pub(crate) fn new(inner: S, key: [u8; 16]) -> Self {
        let (r, w) = tokio::io::split(inner);
        CryptoStream {
            reader: CryptoReader::new(r, key),
            writer: CryptoWriter::new(w, key),
        }
    }
}

impl<S: AsyncRead + AsyncWrite> AsyncRead for CryptoStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite> AsyncWrite for CryptoStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn key_vectors_from_spec() {
        assert_eq!(
            hex::encode(derive_key("")),
            "cdc9dc4c472c37331281df4c232a8407"
        );
        assert_eq!(
            hex::encode(derive_key("s3cret")),
            "98d40315f7ae4d22a12d1f4879bd5ca9"
        );
        assert_eq!(
            hex::encode(derive_key("SHAREDKEY")),
            "1877641c134396b5444ba17170c86dd0"
        );
    }

    #[test]
    fn privilege_key_vectors_from_spec() {
        assert_eq!(
            privilege_key("", 1700000000),
            "24920decf83f6960b80f737a28eeafc1"
        );
        assert_eq!(
            privilege_key("s3cret", 1700000000),
            "5d75c9c422f888a6fc13fe10cfd4b30e"
        );
    }

    #[tokio::test]
    async fn req_work_conn_ciphertext_matches_spec() {
        let iv: [u8; 16] = std::array::from_fn(|i| i as u8);
        let mut out = Vec::new();
        let mut w = CryptoWriter::with_iv(&mut out, derive_key(""), iv);
        w.write_all(&[0x72, 0, 0, 0, 0, 0, 0, 0, 2, b'{', b'}'])
            .await
            .unwrap();
        w.flush().await.unwrap();
        assert_eq!(&out[..16], &iv);
        assert_eq!(hex::encode(&out[16..]), "8b30610abcb682c5556510");

        let mut r = CryptoReader::new(&out[..], derive_key(""));
        let mut plain = Vec::new();
        r.read_to_end(&mut plain).await.unwrap();
        assert_eq!(plain, [0x72, 0, 0, 0, 0, 0, 0, 0, 2, b'{', b'}']);
    }

    #[tokio::test]
    async fn stream_state_carries_across_odd_sized_writes() {
        let key = derive_key("k");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        let mut out = Vec::new();
        let mut w = CryptoWriter::new(&mut out, key);
        for chunk in data.chunks(13) {
            w.write_all(chunk).await.unwrap();
        }
        w.flush().await.unwrap();
        let mut r = CryptoReader::new(&out[..], key);
        let mut plain = Vec::new();
        r.read_to_end(&mut plain).await.unwrap();
        assert_eq!(plain, data);
    }
}
