//! The generated backend answers.

use proptest::prelude::*;

/// How the body of a generated answer is framed.
#[derive(Clone, Debug)]
pub enum Framing {
    /// Until the backend closes.
    Close,
    /// `Content-Length`, written as `how` says.
    Length(LengthStyle),
    /// `Transfer-Encoding` with this value (and a second line if `twice`).
    Coded { value: &'static str, twice: bool },
    /// `Content-Length` (possibly wrong) and `Transfer-Encoding: chunked`.
    Both { delta: i8 },
}

/// How a `Content-Length` is written.
#[derive(Clone, Debug)]
pub enum LengthStyle {
    Plain,
    DuplicateSame,
    DuplicateDifferent,
    List,
    Invalid(&'static str),
    Off(i8),
}

/// One generated answer and how it is delivered.
#[derive(Clone, Debug)]
pub struct Case {
    interim: Vec<u16>,
    http10: bool,
    status: u16,
    method: &'static str,
    framing: Framing,
    body: Vec<u8>,
    chunks: Vec<usize>,
    upper_hex: bool,
    leading_zeros: bool,
    extension: Option<&'static str>,
    trailers: Vec<(&'static str, &'static str)>,
    connection: Option<&'static str>,
    leftover: Option<&'static str>,
    close_after: bool,
    pub splits: Vec<usize>,
}

pub fn case() -> impl Strategy<Value = Case> {
    let framing = prop_oneof![
        2 => Just(Framing::Close),
        4 => prop_oneof![
            4 => Just(LengthStyle::Plain),
            1 => Just(LengthStyle::DuplicateSame),
            1 => Just(LengthStyle::DuplicateDifferent),
            1 => Just(LengthStyle::List),
            1 => prop_oneof![Just("abc"), Just("+5"), Just("-1"), Just(""), Just("1 2"), Just("0x5")]
                .prop_map(LengthStyle::Invalid),
            1 => (-2i8..=2).prop_map(LengthStyle::Off),
        ]
        .prop_map(Framing::Length),
        4 => (
            prop_oneof![
                6 => Just("chunked"),
                1 => Just("Chunked"),
                1 => Just("gzip, chunked"),
                1 => Just("chunked, chunked"),
                1 => Just("gzip"),
                1 => Just("identity"),
            ],
            prop::bool::weighted(0.1),
        )
            .prop_map(|(value, twice)| Framing::Coded { value, twice }),
        1 => (-2i8..=2).prop_map(|delta| Framing::Both { delta }),
    ];
    let head = (
        prop::collection::vec(prop_oneof![Just(100u16), Just(102), Just(103)], 0..2),
        prop::bool::weighted(0.15),
        prop_oneof![
            6 => Just(200u16),
            1 => Just(201),
            1 => Just(204),
            1 => Just(304),
            1 => Just(404),
            1 => Just(500),
            1 => Just(101),
        ],
        prop_oneof![4 => Just("GET"), 1 => Just("HEAD"), 1 => Just("POST")],
        framing,
    );
    let body = (
        prop::collection::vec(any::<u8>(), 0..48),
        prop::collection::vec(1usize..20, 0..4),
        any::<bool>(),
        prop::bool::weighted(0.2),
        prop::option::weighted(
            0.2,
            prop_oneof![Just(";a=b"), Just(" ;x"), Just(";q=\"s\""), Just("\t")],
        ),
        prop::collection::vec(
            prop_oneof![
                Just(("x-sum", "7")),
                Just(("grpc-status", "0")),
                Just(("content-length", "9")),
                Just(("host", "evil.test")),
                Just(("set-cookie", "a=b")),
            ],
            0..3,
        ),
    );
    let tail = (
        prop::option::weighted(
            0.3,
            prop_oneof![Just("close"), Just("keep-alive"), Just("x-a")],
        ),
        prop::option::weighted(
            0.1,
            prop_oneof![
                Just("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
                Just("junk")
            ],
        ),
        prop::bool::weighted(0.3),
        prop::collection::vec(0usize..160, 0..3),
    );
    (head, body, tail).prop_map(
        |(
            (interim, http10, status, method, framing),
            (body, chunks, upper_hex, leading_zeros, extension, trailers),
            (connection, leftover, close_after, splits),
        )| Case {
            interim,
            http10,
            status,
            method,
            framing,
            body,
            chunks,
            upper_hex,
            leading_zeros,
            extension,
            trailers,
            connection,
            leftover,
            close_after,
            splits,
        },
    )
}

impl Case {
    /// The bytes, the request method, whether it asked to upgrade, and
    /// whether the backend closes after writing.
    pub fn render(&self) -> (Vec<u8>, String, bool, bool) {
        let mut w = Vec::new();
        for code in &self.interim {
            w.extend_from_slice(format!("HTTP/1.1 {code} Info\r\nx-i: {code}\r\n\r\n").as_bytes());
        }
        let v = if self.http10 { "1.0" } else { "1.1" };
        w.extend_from_slice(format!("HTTP/{v} {} X\r\nserver: gen\r\n", self.status).as_bytes());
        if let Some(c) = self.connection {
            w.extend_from_slice(format!("Connection: {c}\r\n").as_bytes());
        }
        let n = self.body.len() as i64;
        let cl = |w: &mut Vec<u8>, v: String| {
            w.extend_from_slice(format!("Content-Length: {v}\r\n").as_bytes())
        };
        let mut chunked = false;
        match &self.framing {
            Framing::Close => {}
            Framing::Length(style) => match style {
                LengthStyle::Plain => cl(&mut w, n.to_string()),
                LengthStyle::DuplicateSame => {
                    cl(&mut w, n.to_string());
                    cl(&mut w, n.to_string());
                }
                LengthStyle::DuplicateDifferent => {
                    cl(&mut w, n.to_string());
                    cl(&mut w, (n + 1).to_string());
                }
                LengthStyle::List => cl(&mut w, format!("{n}, {n}")),
                LengthStyle::Invalid(s) => cl(&mut w, s.to_string()),
                LengthStyle::Off(d) => cl(&mut w, (n + i64::from(*d)).max(0).to_string()),
            },
            Framing::Coded { value, twice } => {
                if *twice {
                    w.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
                }
                w.extend_from_slice(format!("Transfer-Encoding: {value}\r\n").as_bytes());
                chunked = value.to_ascii_lowercase().ends_with("chunked");
            }
            Framing::Both { delta } => {
                cl(&mut w, (n + i64::from(*delta)).max(0).to_string());
                w.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
                chunked = true;
            }
        }
        if self.trailers.iter().any(|_| chunked) {
            w.extend_from_slice(b"Trailer: x-sum\r\n");
        }
        w.extend_from_slice(b"\r\n");
        if chunked {
            let mut rest = &self.body[..];
            let mut sizes = self.chunks.iter().copied().cycle();
            while !rest.is_empty() {
                let take = sizes.next().unwrap_or(rest.len()).min(rest.len());
                self.size_line(&mut w, take);
                w.extend_from_slice(&rest[..take]);
                w.extend_from_slice(b"\r\n");
                rest = &rest[take..];
            }
            self.size_line(&mut w, 0);
            for (k, v) in &self.trailers {
                w.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
            }
            w.extend_from_slice(b"\r\n");
        } else {
            w.extend_from_slice(&self.body);
        }
        if let Some(l) = self.leftover {
            w.extend_from_slice(l.as_bytes());
        }
        (
            w,
            self.method.to_string(),
            self.status == 101,
            self.close_after,
        )
    }

    fn size_line(&self, w: &mut Vec<u8>, n: usize) {
        let digits = if self.upper_hex {
            format!("{n:X}")
        } else {
            format!("{n:x}")
        };
        if self.leading_zeros {
            w.extend_from_slice(b"00");
        }
        w.extend_from_slice(digits.as_bytes());
        if let Some(e) = self.extension {
            w.extend_from_slice(e.as_bytes());
        }
        w.extend_from_slice(b"\r\n");
    }
}

/// Protocol tokens strung together at random, after a plausible start.
pub fn soup() -> impl Strategy<Value = Vec<u8>> {
    const TOKENS: [&[u8]; 20] = [
        b"\r\n",
        b"\n",
        b" ",
        b"\t",
        b":",
        b";",
        b",",
        b"0",
        b"5",
        b"a",
        b"hello",
        b"Content-Length: ",
        b"Transfer-Encoding: ",
        b"chunked",
        b"Connection: close",
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 100 Continue\r\n",
        b"X-A: b",
        b"\r\n\r\n",
        b"0\r\n\r\n",
    ];
    const STARTS: [&[u8]; 4] = [
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: ",
        b"HTTP/1.0 200 OK\r\n",
    ];
    (
        0..STARTS.len(),
        prop::collection::vec(0..TOKENS.len(), 0..24),
    )
        .prop_map(|(start, tokens)| {
            let mut w = STARTS[start].to_vec();
            for t in tokens {
                w.extend_from_slice(TOKENS[t]);
            }
            w
        })
}
