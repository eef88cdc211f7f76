//! One request/response exchange on a connection: the head and body are
//! written while the answer is read (RFC 9112 §9.5), so that a backend that
//! answers early (`413` to an upload it will not take, or `200` without
//! reading) has its answer forwarded at once instead of being lost behind a
//! body that will never be read.
//!
//! Both directions are polled from the request's own task on the same
//! stream (no split, no lock, no extra task): writing stops as soon as a
//! final answer arrives, and a connection whose request body was not sent
//! whole is never reused.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use http::request::Parts;
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::codec::request::{self, RequestFraming};
use crate::codec::response::{self, Parsed, ResponseHead, MAX_INTERIM};
use crate::conn::Connection;
use crate::error::Error;

/// A final answer and what came with it.
#[derive(Debug)]
pub(crate) struct Exchanged {
    pub(crate) head: ResponseHead,
    /// Interim answers other than `100 Continue` (`103 Early Hints`).
    pub(crate) interim: Vec<http::response::Parts>,
}

/// A failed exchange, and whether it may be tried again on a fresh
/// connection: nothing of an answer arrived and no byte of the body was
/// taken from the caller (so the same request can be written again).
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) error: Error,
    pub(crate) retryable: bool,
}

/// Where the body writer stands.
struct Writer {
    /// Bytes of `conn.inner.out` already written (the head, a size line, the
    /// last chunk).
    pos: usize,
    /// A data frame being written after `out`.
    suffix: &'static [u8],
    /// Bytes still to send under `Content-Length`.
    remaining: u64,
    framing: RequestFraming,
    /// The body's end (and trailers) are written or queued in `out`.
    finished: bool,
    /// Everything is written and flushed.
    done: bool,
    /// A frame was taken from the body.
    touched: bool,
}

/// Writes the head already encoded in `conn.inner.out` and the body, reading the
/// answer meanwhile. `upgrade`: the request asked to switch protocols.
pub(crate) async fn exchange<T, B>(
    conn: &mut Connection<T>,
    parts: &Parts,
    framing: RequestFraming,
    upgrade: bool,
    mut body: Pin<&mut B>,
) -> Result<Exchanged, Failed>
where
    T: AsyncRead + AsyncWrite + Unpin,
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut w = Writer {
        pos: 0,
        suffix: b"",
        remaining: match framing {
            RequestFraming::Length(n) => n,
            _ => 0,
        },
        framing,
        finished: framing == RequestFraming::Empty || framing == RequestFraming::Length(0),
        done: false,
        touched: false,
    };
    let mut data: Option<B::Data> = None;
    let mut write_error: Option<Error> = None;
    let mut got_bytes = false;
    let mut interim = Vec::new();
    let result = poll_fn(|cx| {
        if !w.done && write_error.is_none() {
            match poll_write_body(conn, &mut w, &mut data, body.as_mut(), cx) {
                Poll::Ready(Ok(())) => w.done = true,
                Poll::Ready(Err(e)) => write_error = Some(e),
                Poll::Pending => {}
            }
            if let Some(Error::Body(_)) = write_error {
                // The client's body failed: nothing sensible can follow.
                return Poll::Ready(Err(write_error.take().expect("just set")));
            }
        }
        match poll_read_head(
            conn,
            &parts.method,
            upgrade,
            &mut interim,
            &mut got_bytes,
            cx,
        ) {
            Poll::Ready(Ok(head)) => Poll::Ready(Ok(head)),
            // A write error (the backend closed early) explains a failed read
            // better, unless the read saw a broken answer.
            Poll::Ready(Err(Error::Protocol(p))) => Poll::Ready(Err(Error::Protocol(p))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(write_error.take().unwrap_or(e))),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    match result {
        Ok(mut head) => {
            if !w.done {
                // The body was not sent whole: the backend's idea of where
                // the next request starts is unknown.
                head.keep_alive = false;
            }
            Ok(Exchanged { head, interim })
        }
        Err(error) => Err(Failed {
            retryable: conn.is_reused() && !got_bytes && !w.touched,
            error,
        }),
    }
}

fn poll_write_body<T, B>(
    conn: &mut Connection<T>,
    w: &mut Writer,
    data: &mut Option<B::Data>,
    mut body: Pin<&mut B>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), Error>>
where
    T: AsyncWrite + Unpin,
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        while w.pos < conn.inner.out.len() {
            let n = ready!(Pin::new(&mut conn.inner.io).poll_write(cx, &conn.inner.out[w.pos..]))
                .map_err(Error::Io)?;
            if n == 0 {
                return Poll::Ready(Err(Error::Io(std::io::ErrorKind::WriteZero.into())));
            }
            w.pos += n;
        }
        if let Some(d) = data {
            while d.has_remaining() {
                let n = ready!(conn.poll_write(cx, d.chunk())).map_err(Error::Io)?;
                if n == 0 {
                    return Poll::Ready(Err(Error::Io(std::io::ErrorKind::WriteZero.into())));
                }
                d.advance(n);
            }
            *data = None;
        }
        while !w.suffix.is_empty() {
            let n = ready!(conn.poll_write(cx, w.suffix)).map_err(Error::Io)?;
            if n == 0 {
                return Poll::Ready(Err(Error::Io(std::io::ErrorKind::WriteZero.into())));
            }
            w.suffix = &w.suffix[n..];
        }
        conn.inner.out.clear();
        w.pos = 0;
        if w.finished {
            ready!(conn.poll_flush(cx)).map_err(Error::Io)?;
            return Poll::Ready(Ok(()));
        }
        let frame = match ready!(body.as_mut().poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Poll::Ready(Err(Error::Body(e.into()))),
            None => {
                match w.framing {
                    RequestFraming::Chunked => {
                        request::encode_last_chunk(&mut conn.inner.out, None)
                    }
                    // Fewer bytes than announced: the backend waits for the
                    // rest, and the connection can never be reused.
                    _ if w.remaining > 0 => {
                        return Poll::Ready(Err(Error::Body(
                            "request body shorter than its Content-Length".into(),
                        )))
                    }
                    _ => {}
                }
                w.finished = true;
                continue;
            }
        };
        w.touched = true;
        match frame.into_data() {
            Ok(d) if !d.has_remaining() => {}
            Ok(d) if w.framing == RequestFraming::Chunked => {
                request::encode_chunk_size(&mut conn.inner.out, d.remaining());
                *data = Some(d);
                w.suffix = b"\r\n";
            }
            Ok(d) => {
                let len = d.remaining() as u64;
                if len > w.remaining {
                    // Bytes past the announced length would be read by the
                    // backend as the start of another request.
                    return Poll::Ready(Err(Error::Body(
                        "request body longer than its Content-Length".into(),
                    )));
                }
                w.remaining -= len;
                w.finished = w.remaining == 0;
                *data = Some(d);
            }
            Err(frame) => {
                if let (Ok(t), RequestFraming::Chunked) = (frame.into_trailers(), w.framing) {
                    request::encode_last_chunk(&mut conn.inner.out, Some(&t));
                    w.finished = true;
                }
            }
        }
    }
}

fn poll_read_head<T: AsyncRead + Unpin>(
    conn: &mut Connection<T>,
    method: &http::Method,
    upgrade: bool,
    interim: &mut Vec<http::response::Parts>,
    got_bytes: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<Result<ResponseHead, Error>> {
    loop {
        if !conn.inner.buf.is_empty() {
            match response::parse_response_head(&mut conn.inner.buf, method, upgrade) {
                Ok(Some(Parsed::Final(head))) => return Poll::Ready(Ok(head)),
                Ok(Some(Parsed::Interim(p))) => {
                    if p.status != http::StatusCode::CONTINUE && interim.len() < MAX_INTERIM {
                        interim.push(p);
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(Error::Protocol(e))),
            }
        }
        match ready!(conn.poll_fill(cx)) {
            Ok(0) => {
                return Poll::Ready(Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "backend closed the connection before answering",
                ))))
            }
            Ok(_) => *got_bytes = true,
            Err(e) => return Poll::Ready(Err(Error::Io(e))),
        }
    }
}
