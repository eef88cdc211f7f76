//! The differential harness: the same backend byte stream is fed to this
//! client and to hyper's (`hyper::client::conn::http1`) over an in-memory
//! pipe (`tokio::io::duplex`), and the two must agree on the status, the
//! end-to-end headers, the body bytes, the trailers and whether the
//! connection may carry another request, or differ only in the ways the
//! crate docs list (`lib.rs`, "Where it differs from hyper's client"),
//! which [`allowed_divergence`] encodes.
//!
//! proptest generates framings (Content-Length, chunked, both, duplicates
//! and lists, invalid lengths, other codings, chunk sizes in any case with
//! leading zeros and extensions, trailers, interim 1xx, 101, HEAD, 204,
//! 304, close-delimited, HTTP/1.0, `Connection` options, leftover bytes)
//! and splits the stream at random points; a second strategy strings
//! protocol tokens together at random. The case counts are fixed
//! ([`CASES`]) so CI time is bounded; time is paused, so a side that waits
//! for more bytes is seen at once as waiting, deterministically.

mod differential_support;

use differential_support::*;
use proptest::prelude::*;

/// Cases per property (each runs both clients once).
const CASES: u32 = 2048;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn generated_framings_agree_with_hyper(case in case()) {
        let (wire, method, upgrade, close_after) = case.render();
        check(&wire, &method, upgrade, close_after, &case.splits)?;
    }

    #[test]
    fn token_soup_agrees_with_hyper(
        wire in soup(),
        method in prop_oneof![Just("GET"), Just("HEAD"), Just("POST")],
        close_after in any::<bool>(),
        split in 0usize..200,
    ) {
        check(&wire, method, false, close_after, &[split])?;
    }
}

#[test]
fn every_split_of_a_chunked_answer_with_trailers_agrees_with_hyper() {
    let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\nA\r\n world!!!!\r\n0\r\nx-sum: 15\r\n\r\n";
    for cut in 0..=wire.len() {
        check(wire, "GET", false, false, &[cut]).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
    }
}

#[test]
fn every_split_of_interim_answers_and_a_length_agrees_with_hyper() {
    let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
    for cut in 0..=wire.len() {
        check(wire, "POST", false, false, &[cut]).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
    }
}
