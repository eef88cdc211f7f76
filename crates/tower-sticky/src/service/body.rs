//! [`InFlightBody`]: a response body that keeps its request counted in
//! flight on its backend until the body ends.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::table::InFlight;

pin_project! {
    /// A response body and the [`InFlight`] guard of its request, released
    /// when the body ends, fails or is dropped.
    ///
    /// Least-loaded placement compares requests in flight; a request whose
    /// answer is still streaming (a download, server-sent events) is load
    /// on its backend as much as one waiting for its head, so a front end
    /// that drops the guard at the response head under-counts exactly the
    /// long requests. Every front end that streams a backend's answer
    /// (sticky-gateway, axum-sticky) wraps it in this.
    #[derive(Debug)]
    pub struct InFlightBody<B> {
        #[pin]
        body: B,
        in_flight: Option<InFlight>,
    }
}

impl<B: Body> InFlightBody<B> {
    /// `body`, keeping `in_flight` until it ends (released at once if it
    /// has ended already).
    pub fn new(body: B, in_flight: Option<InFlight>) -> Self {
        let in_flight = in_flight.filter(|_| !body.is_end_stream());
        Self { body, in_flight }
    }
}

impl<B> InFlightBody<B> {
    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.body
    }

    /// The inner body; the request stops counting as in flight.
    pub fn into_inner(self) -> B {
        self.body
    }
}

impl<B: Body> Body for InFlightBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let polled = this.body.as_mut().poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_))))
            || this.body.is_end_stream()
        {
            *this.in_flight = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
