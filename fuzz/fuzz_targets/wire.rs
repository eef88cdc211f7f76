//! The gateway's reading of one backend answer, over an in-memory byte
//! stream cut into reads of given sizes: shared by the response targets.
//!
//! This drives `sticky_proxy::codec` the way the client's response body
//! does (interim heads, the final head, then the body in its framing) but
//! without sockets, so every outcome is a plain value two readings can be
//! compared by. (`sticky_proxy::fuzzing::parse_response` reads a whole
//! buffer at once; the read-size invariance needs the reads.)

use bytes::BytesMut;
use http::{HeaderMap, Method};
use sticky_proxy::codec::chunked::{Chunked, Decoded};
use sticky_proxy::codec::response::{parse_response_head, Parsed, ResponseFraming, ResponseHead};

/// The request method (and whether it asked for an upgrade) for a selector byte.
pub fn method_of(b: u8) -> (Method, bool) {
    let method = match b % 8 {
        0 | 1 => Method::GET,
        2 => Method::HEAD,
        3 => Method::POST,
        4 => Method::CONNECT,
        5 => Method::PUT,
        6 => Method::OPTIONS,
        _ => Method::DELETE,
    };
    (method, b & 0x80 != 0)
}

/// What one reading of an answer gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// A complete answer.
    Complete {
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
        framing: ResponseFraming,
        body: Vec<u8>,
        trailers: Option<Vec<(String, Vec<u8>)>>,
        keep_alive: bool,
        /// Bytes after the answer (only harmless when not kept alive).
        leftover: Vec<u8>,
    },
    /// Refused (or cut short); the body bytes delivered before that.
    Failed { body: Vec<u8> },
}

fn pairs(h: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    h.iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

/// Reads from `stream` in reads of `cuts` sizes (cycled; `usize::MAX`: all).
struct Reader<'a> {
    stream: &'a [u8],
    cuts: &'a [usize],
    next: usize,
}

impl Reader<'_> {
    /// Appends the next read to `buf`; false at the end of the stream.
    fn fill(&mut self, buf: &mut BytesMut) -> bool {
        if self.stream.is_empty() {
            return false;
        }
        let n = self.cuts[self.next % self.cuts.len()]
            .max(1)
            .min(self.stream.len());
        self.next += 1;
        buf.extend_from_slice(&self.stream[..n]);
        self.stream = &self.stream[n..];
        true
    }
}

/// Reads one answer as the gateway does.
pub fn read_answer(stream: &[u8], method: &Method, upgrade: bool, cuts: &[usize]) -> Answer {
    let cuts = if cuts.is_empty() {
        &[usize::MAX][..]
    } else {
        cuts
    };
    let mut r = Reader {
        stream,
        cuts,
        next: 0,
    };
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let head: ResponseHead = loop {
        match parse_response_head(&mut buf, method, upgrade) {
            Ok(Some(Parsed::Final(h))) => break h,
            Ok(Some(Parsed::Interim(_))) => {}
            Ok(None) => {
                if !r.fill(&mut buf) {
                    return Answer::Failed { body };
                }
            }
            Err(_) => return Answer::Failed { body },
        }
    };
    let mut trailers = None;
    match head.framing {
        _ if head.tunnel => {}
        ResponseFraming::Empty => {}
        ResponseFraming::Length(n) => {
            let mut left = n;
            while left > 0 {
                if buf.is_empty() && !r.fill(&mut buf) {
                    return Answer::Failed { body };
                }
                let k = (buf.len() as u64).min(left) as usize;
                body.extend_from_slice(&buf.split_to(k));
                left -= k as u64;
            }
        }
        ResponseFraming::Chunked => {
            let mut c = Chunked::new();
            loop {
                match c.decode(&mut buf) {
                    Ok(Decoded::Data(d)) => body.extend_from_slice(&d),
                    Ok(Decoded::End(t)) => {
                        trailers = t.as_ref().map(pairs);
                        break;
                    }
                    Ok(Decoded::NeedMore) => {
                        if !r.fill(&mut buf) {
                            return Answer::Failed { body };
                        }
                    }
                    Err(_) => return Answer::Failed { body },
                }
            }
        }
        ResponseFraming::Close => {
            body.extend_from_slice(&buf.split());
            while r.fill(&mut buf) {
                body.extend_from_slice(&buf.split());
            }
        }
    }
    let mut leftover = buf.to_vec();
    leftover.extend_from_slice(r.stream);
    Answer::Complete {
        status: head.parts.status.as_u16(),
        headers: pairs(&head.parts.headers),
        framing: head.framing,
        body,
        trailers,
        keep_alive: head.keep_alive && !head.tunnel,
        leftover,
    }
}

/// The final (non-1xx, or 101) head of `stream` as httparse reads it:
/// (HTTP minor version, raw header fields, where the body starts).
pub fn raw_final_head(stream: &[u8]) -> Option<(u8, Vec<(String, Vec<u8>)>, usize)> {
    let mut at = 0;
    loop {
        let mut slots = [httparse::EMPTY_HEADER; 128];
        let mut res = httparse::Response::new(&mut slots);
        let len = match res.parse(&stream[at..]) {
            Ok(httparse::Status::Complete(len)) => len,
            _ => return None,
        };
        let code = res.code?;
        if (100..200).contains(&code) && code != 101 {
            at += len;
            continue;
        }
        let fields = res
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
            .collect();
        return Some((res.version?, fields, at + len));
    }
}

fn tokens(v: &[u8]) -> impl Iterator<Item = String> + '_ {
    v.split(|&b| b == b',')
        .map(|t| String::from_utf8_lossy(t.trim_ascii()).to_ascii_lowercase())
        .filter(|t| !t.is_empty())
}

impl Answer {
    /// What must hold of any complete answer, whatever the bytes.
    pub fn check_invariants(&self, stream: &[u8]) {
        let Answer::Complete {
            headers,
            framing,
            keep_alive,
            ..
        } = self
        else {
            return;
        };
        let has = |name: &str| headers.iter().any(|(n, _)| n == name);
        assert!(
            !(*keep_alive && *framing == ResponseFraming::Close),
            "a close-delimited body cannot leave the connection reusable"
        );
        if *framing == ResponseFraming::Chunked {
            assert!(
                !has("content-length"),
                "re-chunked body still carries Content-Length"
            );
        }
        if let ResponseFraming::Length(n) = framing {
            for (name, v) in headers {
                if name == "content-length" {
                    for t in tokens(v) {
                        assert_eq!(t.parse::<u64>().ok(), Some(*n), "Content-Length {t}");
                    }
                }
            }
        }
        let Some((minor, raw, _)) = raw_final_head(stream) else {
            return;
        };
        let te: Vec<String> = raw
            .iter()
            .filter(|(n, _)| n == "transfer-encoding")
            .flat_map(|(_, v)| tokens(v).collect::<Vec<_>>())
            .collect();
        let raw_cl = raw.iter().any(|(n, _)| n == "content-length");
        if !te.is_empty() && *framing != ResponseFraming::Empty {
            // Issue 8, defect 7 (RFC 9112 §6.1, §6.3): HTTP/1.0 with
            // Transfer-Encoding, or Content-Length beside it, is faulty
            // framing: the connection must be closed afterwards.
            assert!(
                !crate::known::check(7) || !(*keep_alive && (minor == 0 || raw_cl)),
                "faulty framing (HTTP/1.{minor}, TE {te:?}, CL {raw_cl}) left the connection reusable"
            );
            // Issue 8, defect 6: a coding other than chunked is forwarded
            // under its name or refused, never dropped silently.
            let codings = te.iter().filter(|t| *t != "chunked");
            for coding in codings.filter(|_| crate::known::check(6)) {
                let named = headers.iter().any(|(_, v)| tokens(v).any(|t| &t == coding));
                assert!(named, "transfer coding {coding:?} dropped from the answer");
            }
        }
    }
}
