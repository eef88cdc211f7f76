//! Response bodies: the backend's body streamed through, its connection
//! given back to the pool when the body ends cleanly.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::AsyncRead;

use crate::codec::chunked::{Chunked, Decoded};
use crate::codec::response::ResponseFraming;
use crate::conn::Connection;
use crate::pool::Pool;
use crate::stream::BackendStream;
use crate::upgrade::Upgraded;

/// Where a connection goes when its exchange completed cleanly. Implemented
/// by [`Pool`]; the differential harness keeps the connection instead.
pub trait Recycle<T>: Send + Sync + std::fmt::Debug {
    /// Takes back a connection fit for another exchange.
    fn recycle(&self, conn: Connection<T>);
}

impl Recycle<BackendStream> for Pool {
    fn recycle(&self, conn: Connection<BackendStream>) {
        self.put(conn);
    }
}

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
    /// The connection is a tunnel now ([`ResponseBody::into_upgraded`]).
    Tunnel,
    /// Complete.
    Done,
}

/// A backend's response body. When it has been read to the end, the
/// connection it came on goes back to its pool (if the backend keeps it
/// alive and sent nothing past the answer); a body dropped half-read, or
/// ended by an error, takes its connection with it (its framing is
/// unknown), so no later request can read this answer's leftovers.
#[derive(Debug)]
pub struct ResponseBody<T = BackendStream> {
    state: State,
    conn: Option<Connection<T>>,
    pool: Option<Arc<dyn Recycle<T>>>,
    keep_alive: bool,
}

impl<T> ResponseBody<T> {
    /// The body that follows a response head on `conn`. A body already
    /// wholly read, or none, gives `conn` back at once.
    pub(crate) fn new(
        mut conn: Connection<T>,
        pool: Option<Arc<dyn Recycle<T>>>,
        framing: ResponseFraming,
        keep_alive: bool,
        tunnel: bool,
    ) -> Self {
        let state = match framing {
            _ if tunnel => State::Tunnel,
            ResponseFraming::Empty => State::Buffered(None),
            ResponseFraming::Length(n) if conn.buffered().len() as u64 >= n => {
                let data = conn.buffered().split_to(n as usize).freeze();
                State::Buffered((n > 0).then_some(data))
            }
            ResponseFraming::Length(n) => State::Length(n),
            ResponseFraming::Chunked => State::Chunked(Chunked::new()),
            ResponseFraming::Close => State::Close,
        };
        let mut body = Self {
            state,
            conn: Some(conn),
            pool,
            keep_alive,
        };
        if matches!(body.state, State::Buffered(_)) {
            body.release_conn();
        }
        body
    }

    /// The upgraded connection, if the answer switched protocols (`101`,
    /// or a 2xx to `CONNECT`): the caller drives the tunnel
    /// ([`tunnel`](crate::upgrade::tunnel)). `None` for any other answer.
    pub fn into_upgraded(mut self) -> Option<Upgraded<T>> {
        match self.state {
            State::Tunnel => self.conn.take().map(Upgraded::new),
            _ => None,
        }
    }

    /// The connection, if the exchange completed cleanly and the body had
    /// no pool to go back to: for tests and the differential harness,
    /// which ask whether the connection is fit to reuse.
    pub fn into_reusable(mut self) -> Option<Connection<T>> {
        if matches!(self.state, State::Done | State::Buffered(None)) && self.keep_alive {
            self.conn.take().filter(|c| c.inner.buf.is_empty())
        } else {
            None
        }
    }

    /// Gives the connection back if it can carry another exchange: the
    /// backend keeps it alive and sent nothing past this answer.
    fn release_conn(&mut self) {
        if !self.keep_alive || self.conn.as_ref().is_some_and(|c| !c.inner.buf.is_empty()) {
            self.conn = None;
            self.keep_alive = false;
            return;
        }
        if let Some(pool) = &self.pool {
            if let Some(mut conn) = self.conn.take() {
                conn.finish_exchange();
                pool.recycle(conn);
            }
        }
    }

    fn finish(&mut self) {
        self.state = State::Done;
        self.release_conn();
    }

    fn fail(&mut self, e: io::Error) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.state = State::Done;
        self.conn = None;
        self.keep_alive = false;
        Poll::Ready(Some(Err(e)))
    }
}

fn truncated() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "backend closed the connection mid-body",
    )
}

impl<T: AsyncRead + Unpin> Body for ResponseBody<T> {
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
                    return Poll::Ready(data.map(|d| Ok(Frame::data(d))));
                }
                (State::Done | State::Tunnel, _) | (_, None) => return Poll::Ready(None),
                (_, Some(conn)) => conn,
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
        matches!(
            self.state,
            State::Done | State::Tunnel | State::Buffered(None)
        )
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Buffered(d) => SizeHint::with_exact(d.as_ref().map_or(0, |d| d.len() as u64)),
            State::Length(n) => SizeHint::with_exact(*n),
            State::Done | State::Tunnel => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
