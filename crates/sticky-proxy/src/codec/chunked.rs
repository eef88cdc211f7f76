//! The chunked body decoder (RFC 9112 §7.1), as strict as hyper's: a size
//! line starts with a hex digit, may carry spaces or tabs and then an
//! extension, and ends in CRLF; an extension may not hold a bare LF, and
//! extension bytes are bounded over the whole body; the trailer section is
//! bounded in fields and bytes. Any leniency here is a place where this
//! client and the backend (or the next hop) could disagree on where a
//! message ends.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::error::ProtocolError;
use crate::trailers;

/// Extension bytes allowed over a whole body (hyper's limit).
pub const MAX_EXTENSION_BYTES: u32 = 16 * 1024;
/// Trailer section bytes allowed (hyper's limit).
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Trailer fields allowed (hyper's default header count).
pub const MAX_TRAILER_FIELDS: u16 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before a chunk-size line: a hex digit must come.
    Start,
    /// In the size's digits.
    Size,
    /// Spaces or tabs after the size.
    SizeLws,
    /// In an extension, up to CR.
    Extension,
    /// After the size line's CR.
    SizeLf,
    /// Inside a chunk, this many bytes left.
    Data,
    /// After a chunk's data.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    TrailerLf,
    /// After the final CR.
    EndLf,
    /// Complete.
    Done,
}

/// A chunked body's decoder; feed it the connection's read buffer.
#[derive(Clone, Debug)]
pub struct Chunked {
    state: State,
    // Kept small: the decoder lives in every response body, which is moved
    // a few times per request. The trailer buffer is boxed, allocated only
    // for a body that has trailers.
    trailer_fields: u16,
    extension_bytes: u32,
    size: u64,
    trailer_buf: Option<Box<BytesMut>>,
}

impl Default for Chunked {
    fn default() -> Self {
        Self::new()
    }
}

/// What the chunked decoder made of the buffered bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The trailer fields (possibly none): the body is complete.
    End(Option<HeaderMap>),
    /// Read more.
    NeedMore,
}

fn hex(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

impl Chunked {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        Self {
            state: State::Start,
            size: 0,
            extension_bytes: 0,
            trailer_fields: 0,
            trailer_buf: None,
        }
    }

    /// Whether the last chunk and trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes as much of `buf` as forms the next piece of the body; the
    /// bytes used are taken out of `buf`, what follows the body stays.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ProtocolError> {
        let mut i = 0;
        let result = loop {
            if self.state == State::Data {
                buf.advance(i);
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let n = (buf.len() as u64).min(self.size) as usize;
                self.size -= n as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                return Ok(Decoded::Data(buf.split_to(n).freeze()));
            }
            if self.state == State::Done {
                break Ok(Decoded::End(None));
            }
            let Some(&b) = buf.get(i) else {
                break Ok(Decoded::NeedMore);
            };
            i += 1;
            if let Err(e) = self.step(b) {
                break Err(e);
            }
            if self.state == State::Done {
                break self.trailers().map(Decoded::End);
            }
        };
        buf.advance(i);
        result
    }

    fn step(&mut self, b: u8) -> Result<(), ProtocolError> {
        use State::*;
        let digit = |size: u64, d: u64| {
            size.checked_mul(16)
                .and_then(|s| s.checked_add(d))
                .ok_or(ProtocolError::ChunkSize)
        };
        self.state = match (self.state, b) {
            (Start, b) => {
                let d = hex(b).ok_or(ProtocolError::ChunkSize)?;
                self.size = d;
                Size
            }
            (Size, b'\t' | b' ') => SizeLws,
            (Size | SizeLws, b';') => Extension,
            (Size | SizeLws, b'\r') => SizeLf,
            (Size, b) => {
                let d = hex(b).ok_or(ProtocolError::ChunkSize)?;
                self.size = digit(self.size, d)?;
                Size
            }
            (SizeLws, b'\t' | b' ') => SizeLws,
            (SizeLws, _) => return Err(ProtocolError::ChunkSize),
            (Extension, b'\r') => SizeLf,
            (Extension, b'\n') => return Err(ProtocolError::ChunkSize),
            (Extension, _) => {
                self.extension_bytes += 1;
                if self.extension_bytes >= MAX_EXTENSION_BYTES {
                    return Err(ProtocolError::ChunkSize);
                }
                Extension
            }
            (SizeLf, b'\n') if self.size == 0 => TrailerStart,
            (SizeLf, b'\n') => Data,
            (SizeLf, _) => return Err(ProtocolError::ChunkSize),
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Start,
            (DataCr | DataLf, _) => return Err(ProtocolError::ChunkEnd),
            (TrailerStart, b'\r') => {
                self.put_trailer(b, false)?;
                EndLf
            }
            (TrailerStart, b) => {
                self.put_trailer(b, true)?;
                if b == b'\n' {
                    return Err(ProtocolError::ChunkEnd);
                }
                Trailer
            }
            (Trailer, b) => {
                self.put_trailer(b, false)?;
                if b == b'\r' {
                    TrailerLf
                } else {
                    Trailer
                }
            }
            (TrailerLf, b'\n') => {
                if self.trailer_fields >= MAX_TRAILER_FIELDS {
                    return Err(ProtocolError::TooManyTrailers);
                }
                self.trailer_fields += 1;
                self.put_trailer(b, false)?;
                TrailerStart
            }
            (EndLf, b'\n') => {
                self.put_trailer(b, false)?;
                Done
            }
            (TrailerLf | EndLf, _) => return Err(ProtocolError::ChunkEnd),
            (Data | Done, _) => unreachable!("handled by decode"),
        };
        Ok(())
    }

    fn put_trailer(&mut self, b: u8, start: bool) -> Result<(), ProtocolError> {
        let buf = match &mut self.trailer_buf {
            Some(buf) => buf,
            None if start => self
                .trailer_buf
                .insert(Box::new(BytesMut::with_capacity(64))),
            // The final CRLF of a body with no trailers.
            None => return Ok(()),
        };
        buf.extend_from_slice(&[b]);
        if buf.len() >= MAX_TRAILER_BYTES {
            return Err(ProtocolError::TooManyTrailers);
        }
        Ok(())
    }

    /// Parses the collected trailer section, dropping the fields a trailer
    /// may not carry ([`trailers::is_forbidden`]).
    fn trailers(&mut self) -> Result<Option<HeaderMap>, ProtocolError> {
        let Some(raw) = self.trailer_buf.take() else {
            return Ok(None);
        };
        let mut slots = vec![httparse::EMPTY_HEADER; usize::from(self.trailer_fields)];
        let fields = match httparse::parse_headers(&raw, &mut slots) {
            Ok(httparse::Status::Complete((_, fields))) => fields,
            Ok(httparse::Status::Partial) => return Err(ProtocolError::ChunkEnd),
            Err(e) => return Err(ProtocolError::Parse(e)),
        };
        let mut map = HeaderMap::with_capacity(fields.len());
        for f in fields.iter() {
            let name =
                HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| ProtocolError::Header)?;
            let value = HeaderValue::from_bytes(f.value).map_err(|_| ProtocolError::Header)?;
            if !trailers::is_forbidden(&name) {
                map.append(name, value);
            }
        }
        Ok(Some(map))
    }
}
