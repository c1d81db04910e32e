//! Body types of the proxy: one boxed body for everything sent, and a wrapper that keeps a
//! request counted (target in-flight, connection activity) until its response body ends.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::{Body, Frame, SizeHint};
use std::{
    pin::Pin,
    task::{Context, Poll},
};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(b: impl Into<Bytes>) -> ProxyBody {
    Full::new(b.into()).map_err(|e| match e {}).boxed_unsync()
}

pub fn empty() -> ProxyBody {
    full(Bytes::new())
}

/// A body that adds the length of every data frame it passes to `bytes`.
pub struct Metered<B> {
    inner: B,
    bytes: prometheus_client::metrics::counter::Counter,
}

impl<B> Metered<B> {
    pub fn new(inner: B, bytes: prometheus_client::metrics::counter::Counter) -> Self {
        Metered { inner, bytes }
    }
}

impl<B> Body for Metered<B>
where
    B: Body + Unpin,
    B::Data: bytes::Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r
            && let Some(d) = f.data_ref()
        {
            self.bytes.inc_by(bytes::Buf::remaining(d) as u64);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body that holds `guard` until it is finished or dropped.
pub struct Guarded<B, G> {
    inner: B,
    guard: Option<G>,
}

impl<B, G> Guarded<B, G> {
    pub fn new(inner: B, guard: G) -> Self {
        Guarded {
            inner,
            guard: Some(guard),
        }
    }
}

impl<B, G> Body for Guarded<B, G>
where
    B: Body + Unpin,
    G: Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.guard = None;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
