//! The response body type of harp, and a wrapper that ends a body which stays silent too long.

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pin_project_lite::pin_project! {
    /// Fails the body when no frame arrives within `idle` (the server timeout between chunks).
    ///
    /// The timer is created only when the body actually has to wait, so the common small
    /// response that is ready at once never touches the timer wheel.
    pub struct IdleTimeoutBody<B> {
        #[pin]
        inner: B,
        idle: Duration,
        deadline: Option<Pin<Box<Sleep>>>,
        progressed: bool,
    }
}

impl<B> IdleTimeoutBody<B> {
    pub fn new(inner: B, idle: Duration) -> Self {
        IdleTimeoutBody {
            inner,
            idle,
            deadline: None,
            progressed: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("upstream sent no data for {0:?}")]
pub struct IdleTimeout(Duration);

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
        Poll::Ready(Some(Err(Box::new(IdleTimeout(idle)))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
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
}
