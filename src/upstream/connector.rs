//! Dialing upstreams: TCP with a connect timeout and TCP_NODELAY, unless a [`LocalDialer`]
//! (a tunnel, the Docker socket) owns the loopback port being dialed.

use futures_util::future::BoxFuture;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub trait AsyncIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> AsyncIo for T {}

/// Any byte stream an upstream connection can run on.
pub struct BoxedIo(Box<dyn AsyncIo>);

impl BoxedIo {
    pub fn new(io: impl AsyncIo) -> BoxedIo {
        BoxedIo(Box::new(io))
    }
}

impl AsyncRead for BoxedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for BoxedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// Something that serves some loopback ports without TCP (an FRP tunnel, the Docker socket).
pub trait LocalDialer: Send + Sync {
    /// `None` when this dialer does not own `port`; otherwise the connection attempt.
    fn dial(&self, port: u16) -> Option<BoxFuture<'static, io::Result<BoxedIo>>>;
}

/// The dialers consulted, in order, for `127.0.0.1:<port>` targets.
#[derive(Clone, Default)]
pub struct LocalDialers(Arc<Vec<Arc<dyn LocalDialer>>>);

impl LocalDialers {
    pub fn new(dialers: Vec<Arc<dyn LocalDialer>>) -> LocalDialers {
        LocalDialers(Arc::new(dialers))
    }

    fn dial(&self, port: u16) -> Option<BoxFuture<'static, io::Result<BoxedIo>>> {
        self.0.iter().find_map(|d| d.dial(port))
    }
}

/// The hyper connector: `http://ip:port` URIs to byte streams.
#[derive(Clone)]
pub(super) struct Connector {
    pub(crate) connect_timeout: Duration,
    pub local: LocalDialers,
}

impl Connector {
    /// Opens a connection to `addr`: a local dialer's stream for the loopback ports it owns,
    /// TCP with TCP_NODELAY otherwise, all within the connect timeout.
    pub(super) async fn dial(&self, addr: SocketAddr) -> io::Result<BoxedIo> {
        let attempt = async {
            if addr.ip().is_loopback() {
                if let Some(local) = self.local.dial(addr.port()) {
                    return local.await;
                }
            }
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            Ok(BoxedIo::new(tcp))
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timeout")),
        }
    }
}
