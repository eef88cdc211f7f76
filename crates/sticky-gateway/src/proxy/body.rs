//! Response bodies: the backend's body streamed through (its connection
//! returned to the pool when it ends), or a small body the gateway writes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use tower_sticky::table::InFlight;

use super::codec::{Chunked, Decoded, ResponseFraming};
use super::conn::BackendConn;
use super::pool::Pool;

/// Where a backend body stands.
#[derive(Debug)]
enum State {
    /// The whole body was read with the head (the common small answer):
    /// the connection is already back in its pool.
    Buffered(Option<Bytes>),
    /// This many bytes left to stream.
    Length(u64),
    /// Chunked, decoding.
    Chunked(Chunked),
    /// Until the backend closes.
    Close,
    /// Complete.
    Done,
}

/// A backend's response body. When it has been read to the end, the
/// connection it came on goes back to its pool; a body dropped half-read
/// takes its connection with it (its framing is unknown). The request counts
/// as in flight on its backend until the body ends or is dropped.
#[derive(Debug)]
pub struct BackendBody {
    state: State,
    conn: Option<(BackendConn, Arc<Pool>)>,
    keep_alive: bool,
    in_flight: Option<InFlight>,
}

impl BackendBody {
    /// The body that follows a response head on `conn`, framed by `framing`.
    /// A body already wholly read, or none, returns `conn` to `pool` at once.
    pub fn new(
        mut conn: BackendConn,
        pool: Arc<Pool>,
        framing: ResponseFraming,
        keep_alive: bool,
        in_flight: Option<InFlight>,
    ) -> Self {
        let state = match framing {
            ResponseFraming::Empty => State::Buffered(None),
            ResponseFraming::Length(n) if conn.buffered().len() as u64 >= n => {
                let data = conn.buffered().split_to(n as usize).freeze();
                State::Buffered((n > 0).then_some(data))
            }
            ResponseFraming::Length(n) => State::Length(n),
            ResponseFraming::Chunked => State::Chunked(Chunked::Size),
            ResponseFraming::Close => State::Close,
        };
        let mut body = Self {
            state,
            conn: Some((conn, pool)),
            keep_alive,
            in_flight,
        };
        if matches!(body.state, State::Buffered(_)) {
            body.release_conn();
        }
        body
    }

    /// Gives the connection back if it can carry another exchange: the
    /// backend keeps it alive and sent nothing past this answer.
    fn release_conn(&mut self) {
        if let Some((mut conn, pool)) = self.conn.take() {
            if self.keep_alive && conn.buffered().is_empty() {
                conn.finish_exchange();
                pool.put(conn);
            }
        }
    }

    fn finish(&mut self) {
        self.state = State::Done;
        self.release_conn();
        self.in_flight = None;
    }

    fn fail(&mut self, e: io::Error) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.state = State::Done;
        self.conn = None;
        self.in_flight = None;
        Poll::Ready(Some(Err(e)))
    }
}

fn truncated() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "backend closed the connection mid-body",
    )
}

impl Body for BackendBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        loop {
            let conn = match (&mut this.state, this.conn.as_mut()) {
                (State::Buffered(data), _) => {
                    let data = data.take();
                    if data.is_none() {
                        this.in_flight = None;
                    }
                    return Poll::Ready(data.map(|d| Ok(Frame::data(d))));
                }
                (State::Done, _) | (_, None) => return Poll::Ready(None),
                (_, Some((conn, _))) => conn,
            };
            let buf = conn.buffered();
            match &mut this.state {
                State::Length(left) if !buf.is_empty() => {
                    let n = (buf.len() as u64).min(*left);
                    let data = buf.split_to(n as usize).freeze();
                    *left -= n;
                    if *left == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::Chunked(dec) => match dec.decode(buf) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::End(trailers)) => {
                        this.finish();
                        return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                    }
                    Ok(Decoded::NeedMore) => {}
                    Err(e) => return this.fail(e.into()),
                },
                State::Close if !buf.is_empty() => {
                    let data = buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                _ => {}
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if matches!(this.state, State::Close) => {
                    this.keep_alive = false;
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(truncated()),
                Ok(_) => {}
                Err(e) => return this.fail(e),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done | State::Buffered(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Buffered(d) => SizeHint::with_exact(d.as_ref().map_or(0, |d| d.len() as u64)),
            State::Length(n) => SizeHint::with_exact(*n),
            State::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// What the gateway answers with: a backend's body or its own bytes.
#[derive(Debug)]
pub enum GatewayBody {
    /// From a backend.
    Backend(BackendBody),
    /// Written by the gateway (errors, the demo, probes' answers).
    Full(Option<Bytes>),
}

impl GatewayBody {
    /// A body of these bytes.
    pub fn full(b: impl Into<Bytes>) -> Self {
        GatewayBody::Full(Some(b.into()))
    }

    /// No body.
    pub fn empty() -> Self {
        GatewayBody::Full(None)
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            GatewayBody::Backend(b) => Pin::new(b).poll_frame(cx),
            GatewayBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            GatewayBody::Backend(b) => b.is_end_stream(),
            GatewayBody::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            GatewayBody::Backend(b) => b.size_hint(),
            GatewayBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}
