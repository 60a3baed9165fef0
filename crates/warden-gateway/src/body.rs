//! Body wrappers: count bytes, cap request bodies, and finish the event when the response
//! body ends.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

/// Shared between the request path and the body wrappers.
#[derive(Debug, Default)]
pub struct Counters {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// The request body went over the limit.
    pub too_large: AtomicBool,
    /// The client's body stream failed (bad chunk, cut short): a client fault.
    pub client_failed: AtomicBool,
    /// The client sent nothing for the body's idle time: a client fault.
    pub client_stalled: AtomicBool,
    /// The body is waiting for the client right now.
    pub body_waiting: AtomicBool,
}

/// Counts request body bytes, fails the stream once `limit` is exceeded or when the client
/// sends nothing for `idle` while the body is being read, and records client faults.
pub struct LimitedBody<B> {
    inner: B,
    limit: u64,
    idle: Duration,
    stall: Option<Pin<Box<Sleep>>>,
    counters: Arc<Counters>,
}

impl<B> LimitedBody<B> {
    pub fn new(inner: B, limit: u64, idle: Duration, counters: Arc<Counters>) -> Self {
        Self {
            inner,
            limit,
            idle,
            stall: None,
            counters,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("request body over the limit")]
pub struct TooLarge;

#[derive(Debug, thiserror::Error)]
#[error("client stalled while sending the request body")]
pub struct Stalled;

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let waiting = polled.is_pending();
        self.counters.body_waiting.store(waiting, Ordering::Relaxed);
        if !waiting {
            self.stall = None;
        }
        match polled {
            Poll::Pending => {
                let idle = self.idle;
                let stall = self
                    .stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if stall.as_mut().poll(cx).is_ready() {
                    self.counters.client_stalled.store(true, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(Box::new(Stalled))));
                }
                Poll::Pending
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let total = self
                        .counters
                        .bytes_in
                        .fetch_add(data.len() as u64, Ordering::Relaxed)
                        + data.len() as u64;
                    if total > self.limit {
                        self.counters.too_large.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(Box::new(TooLarge))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.counters.client_failed.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Counts response body bytes and runs `on_end` exactly once, when the body finishes or is
/// dropped (client gone): that is when the event is complete.
pub struct FinishBody<B, F: FnOnce()> {
    inner: B,
    counters: Arc<Counters>,
    on_end: Option<F>,
}

impl<B, F: FnOnce()> FinishBody<B, F> {
    pub fn new(inner: B, counters: Arc<Counters>, on_end: F) -> Self {
        Self {
            inner,
            counters,
            on_end: Some(on_end),
        }
    }

    fn finish(&mut self) {
        if let Some(f) = self.on_end.take() {
            f();
        }
    }
}

impl<B, F: FnOnce()> Drop for FinishBody<B, F> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<B, F> Body for FinishBody<B, F>
where
    B: Body<Data = Bytes> + Unpin,
    F: FnOnce() + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.counters
                        .bytes_out
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
