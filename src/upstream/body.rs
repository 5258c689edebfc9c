//! The body type of harp, a wrapper that ends a body which stays silent too long, and the
//! wrapper that makes a client's request body fail as the client's fault.

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(crate) fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pin_project_lite::pin_project! {
    /// Fails the body when no frame arrives within `idle` (the server timeout between chunks).
    ///
    /// The timer is created only when the body actually has to wait, so the common small
    /// response that is ready at once never touches the timer wheel.
    pub(crate) struct IdleTimeoutBody<B> {
        #[pin]
        inner: B,
        idle: Duration,
        deadline: Option<Pin<Box<Sleep>>>,
        progressed: bool,
        on_idle: fn(Duration) -> BoxError,
    }
}

impl<B> IdleTimeoutBody<B> {
    /// An upstream body: silence is the upstream's fault ([`IdleTimeout`]).
    pub(crate) fn new(inner: B, idle: Duration) -> Self {
        Self::with_error(inner, idle, |idle| Box::new(IdleTimeout(idle)))
    }

    /// A body whose silence is reported with the error `on_idle` makes.
    pub(crate) fn with_error(inner: B, idle: Duration, on_idle: fn(Duration) -> BoxError) -> Self {
        IdleTimeoutBody {
            inner,
            idle,
            deadline: None,
            progressed: false,
            on_idle,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("upstream sent no data for {0:?}")]
pub(super) struct IdleTimeout(Duration);

impl<B> HttpBody for IdleTimeoutBody<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            *this.progressed = true;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let idle = *this.idle;
        let sleep = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        if std::mem::take(this.progressed) {
            sleep.as_mut().reset(Instant::now() + idle);
        }
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(Some(Err((this.on_idle)(idle))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a client's request body ended before its end: always the client's fault, never the
/// upstream's (the front door answers 400 / 408 for it, not 502 / 504).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientBodyError {
    /// No body data arrived for the client timeout (contract §6.1: client inactivity).
    #[error("the client sent no request body data for {0:?}")]
    Stalled(Duration),
    /// The body was malformed (bad chunk framing) or cut short by the client.
    #[error("invalid or incomplete request body: {0}")]
    Invalid(String),
}

impl ClientBodyError {
    /// The client fault somewhere in `e`'s source chain, if any (hyper's client reports a
    /// failed request body as its own error with ours as the cause).
    pub(crate) fn find(e: &(dyn std::error::Error + 'static)) -> Option<ClientBodyError> {
        let mut cur = Some(e);
        while let Some(err) = cur {
            if let Some(fault) = err.downcast_ref::<ClientBodyError>() {
                return Some(fault.clone());
            }
            cur = err.source();
        }
        None
    }
}

/// A client's request body for forwarding: every error it yields is a [`ClientBodyError`], and
/// it fails with [`ClientBodyError::Stalled`] when the client sends nothing for `idle`.
pub(crate) fn client_body<B>(inner: B, idle: Duration) -> Body
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display,
{
    let inner =
        inner.map_err(|e| -> BoxError { Box::new(ClientBodyError::Invalid(e.to_string())) });
    IdleTimeoutBody::with_error(inner, idle, |idle| Box::new(ClientBodyError::Stalled(idle)))
        .boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    #[tokio::test(start_paused = true)]
    async fn silent_body_fails_after_idle_but_steady_one_does_not() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|f| (f, rx)) },
            );
        let mut body = std::pin::pin!(IdleTimeoutBody::new(
            StreamBody::new(stream),
            Duration::from_secs(10)
        ));
        let feeder = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(8)).await;
                tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
                    .await
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(tx);
        });
        for _ in 0..3 {
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(
                frame.into_data().unwrap(),
                "x",
                "8 s gaps stay under the 10 s idle limit"
            );
        }
        let started = Instant::now();
        assert!(body.frame().await.unwrap().is_err());
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        feeder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn client_body_stall_and_bad_framing_are_client_faults() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|f| (f, rx)) },
            );
        let mut body = client_body(StreamBody::new(stream), Duration::from_millis(300));
        tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
            .await
            .unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        let started = Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        assert_eq!(
            ClientBodyError::find(&*err),
            Some(ClientBodyError::Stalled(Duration::from_millis(300)))
        );

        let broken = futures_util::stream::iter([Err::<Frame<Bytes>, _>(std::io::Error::other(
            "bad chunk size",
        ))]);
        let err = client_body(StreamBody::new(broken), Duration::from_secs(1))
            .frame()
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(
            ClientBodyError::find(&*err),
            Some(ClientBodyError::Invalid(m)) if m.contains("bad chunk size")
        ));
    }
}
