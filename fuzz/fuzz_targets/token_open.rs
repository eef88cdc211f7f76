//! Token open: any byte string is either a token sealed under the configured
//! key ring or an `InvalidToken`, never a panic; and a sealed token edited in
//! any way no longer opens (the AEAD covers every byte of its text form,
//! and the base64 decoding is canonical).
//!
//! Input: byte 0 picks the mode.
//! - even: the rest is presented as a token text as is (random bytes);
//! - odd: bytes 1..25 are a token's fields, sealed; the rest are edits
//!   (position, xor mask) pairs applied to the sealed text, then it is opened
//!   under the right name and under another name.
//!
//! Every text is also opened by a codec that remembers authenticated texts
//! (the engine's, `TokenCodec::remembering`), kept across inputs so that its
//! slots hold earlier tokens: it must say exactly what the plain codec says.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tower_sticky::token::{Key, KeyRing, Token, TokenCodec, TOKEN_LEN};
use tower_sticky::BackendId;

struct Codecs {
    ours: TokenCodec,
    /// `ours` with the cache of opened texts.
    cached: TokenCodec,
    other_name: TokenCodec,
    /// The old key only: opens what it sealed, not what `ours` seals.
    old_only: TokenCodec,
}

fn codecs() -> &'static Codecs {
    static C: OnceLock<Codecs> = OnceLock::new();
    C.get_or_init(|| {
        let current = Key::from_bytes([7; 32]);
        let old = Key::from_bytes([9; 32]);
        let ring = KeyRing::new(current).with_opening_key(old.clone());
        Codecs {
            ours: TokenCodec::new(ring.clone(), "sticky"),
            cached: TokenCodec::new(ring.clone(), "sticky").remembering(),
            other_name: TokenCodec::new(ring, "sticky2"),
            old_only: TokenCodec::new(KeyRing::new(old), "sticky"),
        }
    })
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_be_bytes(b[i..i + 8].try_into().unwrap())
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes(b[i..i + 4].try_into().unwrap())
}

fuzz_target!(|data: &[u8]| {
    let c = codecs();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 || rest.len() < 24 {
        // Arbitrary text: must not panic; a forgery must not open.
        if let Ok(t) = c.ours.open(rest) {
            // Only a genuine seal opens; the fuzzer cannot produce one
            // without the key, so reaching here is a finding.
            panic!("an unsealed text opened: {t:?} from {rest:?}");
        }
        assert_eq!(c.cached.open(rest), c.ours.open(rest), "the cache differs");
        let _ = c.other_name.open(rest);
        return;
    }
    let (fields, edits) = rest.split_at(24);
    let token = Token {
        backend: BackendId::from_u64(u64_at(fields, 0)),
        session: u64_at(fields, 8),
        issued: u32_at(fields, 16),
        refreshed: u32_at(fields, 20),
    };
    let sealed = c.ours.seal(&token);
    let text = sealed.as_str().as_bytes();
    assert_eq!(text.len(), TOKEN_LEN);
    assert_eq!(c.ours.open(text), Ok(token), "a sealed token opens");
    // Twice: the first fills the cache, the second is served from it.
    assert_eq!(c.cached.open(text), Ok(token), "a sealed token opens");
    assert_eq!(c.cached.open(text), Ok(token), "and again from the cache");
    assert!(
        c.other_name.open(text).is_err(),
        "the cookie name is bound in"
    );
    assert!(
        c.old_only.open(text).is_err(),
        "a ring without the sealing key does not open it"
    );
    let mut edited = text.to_vec();
    for e in edits.chunks_exact(2) {
        let i = e[0] as usize % edited.len();
        edited[i] ^= e[1];
    }
    // A trailing byte makes it one longer: still not a token.
    if edits.len() % 2 == 1 {
        edited.push(edits[edits.len() - 1]);
    }
    if edited != text {
        assert!(
            c.ours.open(&edited).is_err(),
            "an edited token opened: {:?}",
            String::from_utf8_lossy(&edited)
        );
        assert_eq!(
            c.cached.open(&edited),
            c.ours.open(&edited),
            "an edited token of a cached text"
        );
    }
});
