//! The codec's unit tests (moved from the gateway with the codec; every
//! assertion kept, adapted to the framing rules of issue 8 where noted).

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};

use super::chunked::{Chunked, Decoded};
use super::request::*;
use super::response::*;
use crate::error::ProtocolError;

/// The final head in `raw` (interim heads skipped), and what is left.
fn head(raw: &str, method: Method) -> (Result<Option<ResponseHead>, ProtocolError>, BytesMut) {
    let mut buf = BytesMut::from(raw.as_bytes());
    let r = loop {
        match parse_response_head(&mut buf, &method, false) {
            Ok(Some(Parsed::Interim(_))) => continue,
            Ok(Some(Parsed::Final(h))) => break Ok(Some(h)),
            Ok(None) => break Ok(None),
            Err(e) => break Err(e),
        }
    };
    (r, buf)
}

mod moved {
    use super::*;

    #[test]
    fn request_head_is_origin_form_with_host() {
        let req = http::Request::post("http://example.com/a?b=1")
            .header("x-app", "1")
            .body(())
            .unwrap();
        let mut out = Vec::new();
        encode_request_head(
            &mut out,
            req.method(),
            req.uri(),
            req.version(),
            req.headers(),
            false,
            "10.0.0.1:80",
        )
        .unwrap();
        assert_eq!(
            out,
            b"POST /a?b=1 HTTP/1.1\r\nhost: 10.0.0.1:80\r\nx-app: 1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn request_framing() {
        let mut h = HeaderMap::new();
        assert_eq!(RequestFraming::of(&h, true), Ok(RequestFraming::Empty));
        assert_eq!(RequestFraming::of(&h, false), Ok(RequestFraming::Chunked));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert_eq!(
            RequestFraming::of(&h, false),
            Ok(RequestFraming::Length(12))
        );
        // A list of equal lengths (hyper lets it through) is one length, not
        // a reason to add chunked framing beside it.
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5, 5"));
        assert_eq!(RequestFraming::of(&h, false), Ok(RequestFraming::Length(5)));
    }

    #[test]
    fn chunks_encode() {
        let mut out = Vec::new();
        encode_chunk(&mut out, b"hello, world!!!!!");
        encode_chunk(&mut out, b"");
        let mut t = HeaderMap::new();
        t.insert("x-sum", HeaderValue::from_static("7"));
        encode_last_chunk(&mut out, Some(&t));
        assert_eq!(out, b"11\r\nhello, world!!!!!\r\n0\r\nx-sum: 7\r\n\r\n");
    }

    #[test]
    fn response_head_with_length_and_body_left_in_buffer() {
        let (r, buf) = head(
            "HTTP/1.1 200 OK\r\nServer: t\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
            Method::GET,
        );
        let h = r.unwrap().unwrap();
        assert_eq!(h.parts.status, StatusCode::OK);
        assert_eq!(h.framing, ResponseFraming::Length(5));
        assert!(h.keep_alive);
        assert_eq!(h.parts.headers["server"], "t");
        assert_eq!(&buf[..], b"hello");
    }

    #[test]
    fn partial_head_asks_for_more_and_leaves_the_buffer() {
        let (r, buf) = head("HTTP/1.1 200 OK\r\nContent-Le", Method::GET);
        assert!(r.unwrap().is_none());
        assert_eq!(buf.len(), 27);
    }

    #[test]
    fn framing_rules() {
        let f = |raw: &str, m: Method| head(raw, m).0.unwrap().unwrap();
        // Issue 8 (defect 6): `gzip, chunked` is refused now (see
        // `non_chunked_codings_are_refused`); the rule tested here, chunked
        // over Content-Length, with plain `chunked`.
        let h = f(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            Method::GET,
        );
        assert_eq!(h.framing, ResponseFraming::Chunked);
        assert!(!h.parts.headers.contains_key("content-length"));
        assert!(!h.parts.headers.contains_key("transfer-encoding"));
        let h = f(
            "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n",
            Method::GET,
        );
        assert_eq!(h.framing, ResponseFraming::Length(3));
        let h = f("HTTP/1.1 200 OK\r\n\r\n", Method::GET);
        assert_eq!(h.framing, ResponseFraming::Close);
        assert!(!h.keep_alive);
        let h = f("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", Method::HEAD);
        assert_eq!(h.framing, ResponseFraming::Empty);
        assert_eq!(h.parts.headers["content-length"], "9");
        let h = f("HTTP/1.1 304 Not Modified\r\n\r\n", Method::GET);
        assert_eq!(h.framing, ResponseFraming::Empty);
        assert!(h.keep_alive);
        let h = f(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            Method::GET,
        );
        assert!(!h.keep_alive);
        let h = f("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", Method::GET);
        assert!(!h.keep_alive);
        let h = f(
            "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
            Method::GET,
        );
        assert!(h.keep_alive);
        assert!(
            !h.parts.headers.contains_key("connection"),
            "nothing left to strip"
        );
        let h = f(
            "HTTP/1.1 200 OK\r\nConnection: x-trace\r\nX-Trace: 1\r\nContent-Length: 0\r\n\r\n",
            Method::GET,
        );
        assert!(h.keep_alive);
        assert_eq!(
            h.parts.headers["connection"], "x-trace",
            "kept for the hop-by-hop strip"
        );
    }

    #[test]
    fn interim_answers_are_skipped() {
        let (r, buf) = head(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
            Method::POST,
        );
        assert_eq!(r.unwrap().unwrap().parts.status, StatusCode::CREATED);
        assert!(buf.is_empty());
    }

    #[test]
    fn bad_heads_are_errors() {
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
            "SPAM\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ] {
            assert!(head(raw, Method::GET).0.is_err(), "{raw:?}");
        }
        let big = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD + 1));
        assert!(matches!(
            head(&big, Method::GET).0,
            Err(ProtocolError::HeadTooLarge)
        ));
    }

    #[test]
    fn chunked_decodes_across_reads_with_trailers() {
        let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-sum: 11\r\n\r\nNEXT";
        // Feed the bytes in every possible split to prove partial input is safe.
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut dec = Chunked::new();
            let mut body = Vec::new();
            let mut fed = false;
            let trailers = loop {
                match dec.decode(&mut buf).unwrap() {
                    Decoded::Data(d) => body.extend_from_slice(&d),
                    Decoded::End(t) => break t,
                    Decoded::NeedMore => {
                        assert!(!fed, "stalled with all bytes at cut {cut}");
                        buf.extend_from_slice(&wire[cut..]);
                        fed = true;
                    }
                }
            };
            if !fed {
                buf.extend_from_slice(&wire[cut..]);
            }
            assert_eq!(body, b"hello world");
            assert_eq!(trailers.unwrap()["x-sum"], "11");
            assert_eq!(&buf[..], b"NEXT", "what follows the body stays, cut {cut}");
        }
    }

    #[test]
    fn chunked_rejects_garbage() {
        let mut buf = BytesMut::from(&b"zz\r\n"[..]);
        assert!(Chunked::new().decode(&mut buf).is_err());
        let mut buf = BytesMut::from(&b"1\r\naXX"[..]);
        let mut d = Chunked::new();
        assert!(matches!(d.decode(&mut buf), Ok(Decoded::Data(_))));
        assert!(d.decode(&mut buf).is_err());
    }
}
