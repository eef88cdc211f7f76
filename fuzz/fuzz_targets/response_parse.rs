//! Backend response parsing and body decoding: the byte stream a backend
//! sends, read as the gateway reads it (head, then the body in its framing,
//! chunked decoding and trailers), must give the same answer however TCP
//! cuts it into reads, and must never frame a message in a way that lets a
//! connection be reused out of step (RFC 9112 §6).
//!
//! Input: byte 0 picks the request method and whether an upgrade was
//! asked; byte 1 is the number of read sizes that follow (each one byte);
//! the rest is the backend's byte stream. The stream is read whole and in
//! reads of the given sizes; both readings must agree on status, headers,
//! body bytes, trailers, reuse and what is left over, or both fail.
#![no_main]

mod known;
mod wire;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (method, upgrade) = wire::method_of(data[0]);
    let n = (data[1] as usize).min(data.len() - 2);
    let cuts: Vec<usize> = data[2..2 + n].iter().map(|&b| b as usize + 1).collect();
    let stream = &data[2 + n..];
    let whole = wire::read_answer(stream, &method, upgrade, &[usize::MAX]);
    let pieces = wire::read_answer(stream, &method, upgrade, &cuts);
    whole.check_invariants(stream);
    if !known::check(10) && stream.split(|&b| b == b'\n').any(|l| l.len() > 1024) {
        // Issue 8 defect 10: chunk extensions are bounded only when they
        // arrive over several reads (a longer line in one read is taken).
        // Skipped while open (see known.rs).
        return;
    }
    assert_eq!(
        whole,
        pieces,
        "read whole vs in reads of {cuts:?}: {:?}",
        String::from_utf8_lossy(stream)
    );
});
