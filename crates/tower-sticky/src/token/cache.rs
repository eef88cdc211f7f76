//! The tokens opened lately, so that a session's next requests are
//! recognised without decoding and decrypting their token again.
//!
//! A session sends the same token text on every request until it is
//! re-issued (a refresh or a re-pin), and opening it (base64, then
//! AES-256-GCM-SIV, whose per-nonce key derivation dominates) is about two
//! thousand instructions: the largest part of a pinned hit. Text that is
//! byte for byte a token that authenticated before authenticates again, so
//! this cache keeps, per slot, one authenticated text and what it opened to.
//!
//! What it may and may not do:
//! - Only texts that authenticated are stored; a forged or edited text
//!   never matches a stored one (it differs in at least one byte) and goes
//!   through [`TokenCodec::open`] as before, so the cache decides nothing
//!   the codec would not.
//! - Texts are compared in constant time ([`subtle`]): a client probing
//!   with guesses learns nothing of a stored token from the time taken.
//! - Expiry is not cached: the caller checks the opened token against its
//!   clock on every request, as it does after a real open.
//! - The cache belongs to one codec, that is one key ring and one name
//!   ([`TokenCodec::remembering`]): a key removed from service means a new
//!   codec and an empty cache.
//! - Direct-mapped and bounded ([`SLOTS`] entries, about 450 KB); a slot
//!   is chosen by bytes of the token's random nonce. A client holding many
//!   valid tokens can only evict others' entries, which costs them the
//!   uncached open and nothing else.
//! - Never waits: a slot another thread holds is skipped (the token is
//!   opened, not cached), never locked across anything but a copy.

use std::sync::Mutex;

use subtle::ConstantTimeEq;

use super::{InvalidToken, Token, TOKEN_LEN};

// A token's text is a whole number of words (`same`).
const _: () = assert!(TOKEN_LEN % 8 == 0);

/// Entries kept. A power of two.
pub(crate) const SLOTS: usize = 4096;

/// Where the index bytes are taken from: token text characters that encode
/// nonce bytes only (character 3 on: characters 0 to 2 carry the version,
/// the key id and the nonce's first bits).
const INDEX_AT: usize = 3;

#[derive(Clone, Copy)]
struct Entry {
    text: [u8; TOKEN_LEN],
    token: Token,
}

/// A bounded, direct-mapped cache of authenticated token texts.
pub(crate) struct OpenCache {
    slots: Box<[Mutex<Option<Entry>>]>,
}

impl std::fmt::Debug for OpenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenCache")
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl Default for OpenCache {
    fn default() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
        }
    }
}

impl OpenCache {
    /// Opens `text` with `open`, or from the cache when this exact text
    /// authenticated before.
    pub(crate) fn open(
        &self,
        text: &[u8],
        open: impl FnOnce(&[u8]) -> Result<Token, InvalidToken>,
    ) -> Result<Token, InvalidToken> {
        let Ok(text) = <&[u8; TOKEN_LEN]>::try_from(text) else {
            // Not a token's length: the codec says which way it is wrong.
            return open(text);
        };
        let slot = &self.slots[index(text)];
        if let Ok(entry) = slot.try_lock() {
            if let Some(e) = entry.as_ref() {
                if same(&e.text, text) {
                    return Ok(e.token);
                }
            }
        }
        let token = open(text)?;
        if let Ok(mut entry) = slot.try_lock() {
            *entry = Some(Entry { text: *text, token });
        }
        Ok(token)
    }
}

/// Whether two token texts are equal, in time that does not depend on
/// where they differ: the words' differences are OR-ed together, with no
/// branch, and only the total is compared ([`subtle`], so the compiler
/// cannot turn the fold back into an early exit). Word-wise, as subtle's
/// byte-wise slice comparison cost 650 instructions here.
fn same(a: &[u8; TOKEN_LEN], b: &[u8; TOKEN_LEN]) -> bool {
    let word = |t: &[u8], i: usize| u64::from_ne_bytes(t[i..i + 8].try_into().expect("8 bytes"));
    let diff = (0..TOKEN_LEN / 8).fold(0u64, |d, w| d | (word(a, w * 8) ^ word(b, w * 8)));
    bool::from(diff.ct_eq(&0))
}

/// The slot for `text`: eight of its nonce characters, multiplied into the
/// high bits (Fibonacci hashing), keep the top ones.
fn index(text: &[u8; TOKEN_LEN]) -> usize {
    let mut w = [0u8; 8];
    w.copy_from_slice(&text[INDEX_AT..INDEX_AT + 8]);
    let h = u64::from_le_bytes(w).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> (64 - SLOTS.trailing_zeros())) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{KeyRing, TokenCodec};
    use crate::BackendId;

    fn codec() -> TokenCodec {
        TokenCodec::new(KeyRing::generate(), "sticky").remembering()
    }

    #[test]
    fn a_token_opens_the_same_from_the_cache() {
        let codec = codec();
        let t = Token::new(BackendId::from_u64(3), 9, 1_700_000_000);
        let sealed = codec.seal(&t);
        for _ in 0..3 {
            assert_eq!(codec.open(sealed.as_str().as_bytes()), Ok(t));
        }
    }

    #[test]
    fn an_edited_cached_token_is_still_forged() {
        let codec = codec();
        let plain = TokenCodec::new(codec.key_ring().clone(), "sticky");
        let t = Token::new(BackendId::from_u64(3), 9, 1_700_000_000);
        let sealed = codec.seal(&t);
        let text = *<&[u8; TOKEN_LEN]>::try_from(sealed.as_str().as_bytes()).unwrap();
        assert_eq!(codec.open(&text), Ok(t));
        // Every single-character edit of the cached text, in every
        // position (index characters included, so some land in its slot):
        // none is taken for the cached token, and each is refused for the
        // reason a codec without a cache gives.
        for i in 0..TOKEN_LEN {
            for c in [b'A', b'B', b'-', b'_', b'=', b' ', 0] {
                let mut edited = text;
                if edited[i] == c {
                    continue;
                }
                edited[i] = c;
                let r = codec.open(&edited);
                assert!(
                    r.is_err() || r == Ok(t) && plain.open(&edited) == Ok(t),
                    "edit at {i} opened as {r:?}"
                );
                assert_eq!(r, plain.open(&edited), "cache and codec disagree at {i}");
            }
        }
        // The right length of zeros (an empty slot's bytes) or a prefix:
        // never a token.
        assert_eq!(codec.open(&[0u8; TOKEN_LEN]), Err(InvalidToken::Malformed));
        assert_eq!(codec.open(&text[1..]), Err(InvalidToken::Truncated));
        assert_eq!(codec.open(&text), Ok(t));
    }

    #[test]
    fn a_cache_is_its_codecs_alone() {
        // Same name, another key ring: its cache never holds this ring's
        // tokens, clones share the cache, and a token sealed by either ring
        // opens only with its own.
        let (a, b) = (codec(), codec());
        let t = Token::new(BackendId::from_u64(1), 1, 1_700_000_000);
        let sealed_b = b.seal(&t);
        assert_eq!(b.clone().open(sealed_b.as_str().as_bytes()), Ok(t));
        assert_eq!(
            a.open(sealed_b.as_str().as_bytes()),
            Err(InvalidToken::Forged)
        );
        assert_eq!(b.open(sealed_b.as_str().as_bytes()), Ok(t));
    }

    #[test]
    fn colliding_tokens_evict_each_other_and_all_still_open() {
        let codec = codec();
        // Twice as many tokens as slots: collisions are certain.
        let tokens: Vec<_> = (0..SLOTS as u64 * 2)
            .map(|i| {
                let t = Token::new(BackendId::from_u64(i % 5), i, 1_700_000_000);
                (t, codec.seal(&t))
            })
            .collect();
        for _ in 0..2 {
            for (t, s) in &tokens {
                assert_eq!(codec.open(s.as_str().as_bytes()), Ok(*t));
            }
        }
    }
}
