//! The sealed affinity token: what the cookie (or header) carries.
//!
//! A token is AES-256-GCM-SIV (RFC 8452) authenticated encryption of
//! `backend id | session id | issued | refreshed` under an operator key.
//! Its text form is 72 characters of URL-safe base64:
//!
//! ```text
//! version (1) | key id (1) | nonce (12) | ciphertext (24) | tag (16)
//! ```
//!
//! Why GCM-SIV: every replica seals with random nonces and no coordination.
//! Plain GCM must stay under 2^32 random-nonce seals per key (a busy gateway
//! reaches that within a day); GCM-SIV is nonce-misuse resistant, so a
//! repeated nonce reveals at most that two identical plaintexts were sealed,
//! and ours always differ by their random session id. With AES-NI it also
//! opens a token in a fraction of the time an XChaCha20-Poly1305 build took
//! here (see BENCHMARKS.md).
//!
//! The version byte, the key id and the cookie name are bound in as associated
//! data, so a token cannot be replayed under another cookie name or edited
//! without detection. Nothing in it is readable without the key: no address,
//! no hash of the backend's name.
//!
//! Opening never allocates and never panics: any byte string is either a
//! token sealed by a configured key or an [`InvalidToken`] with its reason.
//!
//! ```
//! use tower_sticky::token::{Token, TokenCodec, KeyRing};
//! use tower_sticky::BackendId;
//!
//! let codec = TokenCodec::new(KeyRing::generate(), "sticky");
//! let token = Token::new(BackendId::from_u64(7), 42, 1_700_000_000);
//! let sealed = codec.seal(&token);
//! assert_eq!(codec.open(sealed.as_str().as_bytes()), Ok(token));
//! ```

mod cache;
mod key;

pub use key::{Key, KeyError, KeyFileError, KeyRing, KEY_LEN};

use std::fmt;
use std::sync::Arc;

use aes_gcm_siv::aead::AeadInPlace;
use aes_gcm_siv::{Nonce, Tag};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;

use crate::BackendId;

/// Format version carried in the first byte.
pub const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const PLAIN_LEN: usize = 8 + 8 + 4 + 4;
const RAW_LEN: usize = 2 + NONCE_LEN + PLAIN_LEN + TAG_LEN;
/// Length of a token's text form in bytes.
pub const TOKEN_LEN: usize = (RAW_LEN * 4).div_ceil(3);

/// What a token says once opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    /// The backend the session is pinned to.
    pub backend: BackendId,
    /// A random id for the session, stable across re-pins; failover choices
    /// are a deterministic function of it, so replicas agree.
    pub session: u64,
    /// When the session began, seconds since the UNIX epoch (absolute timeout).
    pub issued: u32,
    /// When the token was last re-issued, seconds since the UNIX epoch (idle timeout).
    pub refreshed: u32,
}

impl Token {
    /// A token issued now (`issued == refreshed`).
    pub fn new(backend: BackendId, session: u64, now_secs: u32) -> Self {
        Self {
            backend,
            session,
            issued: now_secs,
            refreshed: now_secs,
        }
    }

    fn to_plain(self) -> [u8; PLAIN_LEN] {
        let mut p = [0u8; PLAIN_LEN];
        p[0..8].copy_from_slice(&self.backend.as_u64().to_be_bytes());
        p[8..16].copy_from_slice(&self.session.to_be_bytes());
        p[16..20].copy_from_slice(&self.issued.to_be_bytes());
        p[20..24].copy_from_slice(&self.refreshed.to_be_bytes());
        p
    }

    fn from_plain(p: &[u8]) -> Self {
        let u64_at = |i: usize| u64::from_be_bytes(p[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_be_bytes(p[i..i + 4].try_into().expect("4 bytes"));
        Self {
            backend: BackendId::from_u64(u64_at(0)),
            session: u64_at(8),
            issued: u32_at(16),
            refreshed: u32_at(20),
        }
    }
}

/// Why a presented token was not trusted. Each is counted in
/// [`Stats`](crate::Stats); the request is then treated as carrying no token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InvalidToken {
    /// Not URL-safe base64 text (this includes non-ASCII and non-UTF-8 bytes).
    Malformed,
    /// Shorter than a token.
    Truncated,
    /// Longer than a token.
    Oversized,
    /// A format version this build does not know.
    UnknownVersion,
    /// Sealed with a key that is not configured (or no longer is).
    UnknownKey,
    /// Authentication failed: forged or edited.
    Forged,
    /// Older than the absolute timeout.
    Expired,
    /// Not refreshed within the idle timeout.
    IdleExpired,
}

impl InvalidToken {
    /// Every reason, in a fixed order (the index used by counters).
    pub const ALL: [InvalidToken; 8] = [
        InvalidToken::Malformed,
        InvalidToken::Truncated,
        InvalidToken::Oversized,
        InvalidToken::UnknownVersion,
        InvalidToken::UnknownKey,
        InvalidToken::Forged,
        InvalidToken::Expired,
        InvalidToken::IdleExpired,
    ];

    /// A short snake_case name for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            InvalidToken::Malformed => "malformed",
            InvalidToken::Truncated => "truncated",
            InvalidToken::Oversized => "oversized",
            InvalidToken::UnknownVersion => "unknown_version",
            InvalidToken::UnknownKey => "unknown_key",
            InvalidToken::Forged => "forged",
            InvalidToken::Expired => "expired",
            InvalidToken::IdleExpired => "idle_expired",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A sealed token's text, on the stack.
#[derive(Clone, Copy)]
pub struct SealedToken([u8; TOKEN_LEN]);

impl SealedToken {
    /// The token as cookie- and header-safe text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("base64 is ASCII")
    }
}

impl fmt::Debug for SealedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Seals and opens tokens with a [`KeyRing`], bound to one cookie (or header) name.
#[derive(Clone, Debug)]
pub struct TokenCodec {
    ring: KeyRing,
    /// Associated data per key: `[VERSION, key id, name...]`, built once.
    aad: Vec<Vec<u8>>,
    /// The texts opened lately ([`TokenCodec::remembering`]); shared by clones.
    cache: Option<Arc<cache::OpenCache>>,
}

impl TokenCodec {
    /// A codec for tokens carried under `name` (the cookie or header name).
    pub fn new(ring: KeyRing, name: &str) -> Self {
        let aad = ring
            .keys
            .iter()
            .map(|k| {
                let mut a = Vec::with_capacity(2 + name.len());
                a.extend_from_slice(&[VERSION, k.id]);
                a.extend_from_slice(name.as_bytes());
                a
            })
            .collect();
        Self {
            ring,
            aad,
            cache: None,
        }
    }

    /// This codec, remembering the last few thousand token texts that
    /// authenticated so that the same text opens again without base64 and
    /// AES: a session sends one text on every request until it is
    /// re-issued, and opening it is most of a pinned request's cost. Only
    /// authenticated texts are kept, compared in constant time, and expiry
    /// stays the caller's check; about 450 KB. For tokens read many times
    /// (affinity cookies), not for single-use ones.
    pub fn remembering(mut self) -> Self {
        self.cache = Some(Arc::default());
        self
    }

    /// The keys in use.
    pub fn key_ring(&self) -> &KeyRing {
        &self.ring
    }

    /// Seals `token` with the current key and a fresh random nonce.
    pub fn seal(&self, token: &Token) -> SealedToken {
        let key = self.ring.sealing();
        let mut raw = [0u8; RAW_LEN];
        raw[0] = VERSION;
        raw[1] = key.id;
        rand::rng().fill_bytes(&mut raw[2..2 + NONCE_LEN]);
        let (head, body) = raw.split_at_mut(2 + NONCE_LEN);
        let (plain, tag_out) = body.split_at_mut(PLAIN_LEN);
        plain.copy_from_slice(&token.to_plain());
        let tag = key
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(&head[2..]), &self.aad[0], plain)
            .expect("buffer sizes are fixed");
        tag_out.copy_from_slice(&tag);
        let mut text = [0u8; TOKEN_LEN];
        let n = URL_SAFE_NO_PAD
            .encode_slice(raw, &mut text)
            .expect("TOKEN_LEN fits the encoding");
        debug_assert_eq!(n, TOKEN_LEN);
        SealedToken(text)
    }

    /// Opens a token's text. Authenticates it with every configured key that
    /// carries its key id; does not check expiry (the caller knows the clock).
    pub fn open(&self, text: &[u8]) -> Result<Token, InvalidToken> {
        match &self.cache {
            Some(cache) => cache.open(text, |t| self.open_sealed(t)),
            None => self.open_sealed(text),
        }
    }

    /// [`TokenCodec::open`] without the cache.
    fn open_sealed(&self, text: &[u8]) -> Result<Token, InvalidToken> {
        if text.len() < TOKEN_LEN {
            return Err(InvalidToken::Truncated);
        }
        if text.len() > TOKEN_LEN {
            return Err(InvalidToken::Oversized);
        }
        let mut raw = [0u8; RAW_LEN + 2];
        let n = URL_SAFE_NO_PAD
            .decode_slice(text, &mut raw)
            .map_err(|_| InvalidToken::Malformed)?;
        if n != RAW_LEN {
            return Err(InvalidToken::Malformed);
        }
        if raw[0] != VERSION {
            return Err(InvalidToken::UnknownVersion);
        }
        let kid = raw[1];
        let (head, body) = raw[..RAW_LEN].split_at_mut(2 + NONCE_LEN);
        let nonce = Nonce::from_slice(&head[2..]);
        let (sealed, tag) = body.split_at_mut(PLAIN_LEN);
        let tag = Tag::from_slice(tag);
        let mut tried = false;
        for (key, aad) in self.ring.keys.iter().zip(&self.aad) {
            if key.id != kid {
                continue;
            }
            tried = true;
            let mut plain = [0u8; PLAIN_LEN];
            plain.copy_from_slice(sealed);
            if key
                .cipher
                .decrypt_in_place_detached(nonce, aad, &mut plain, tag)
                .is_ok()
            {
                return Ok(Token::from_plain(&plain));
            }
        }
        Err(if tried {
            InvalidToken::Forged
        } else {
            InvalidToken::UnknownKey
        })
    }
}

#[cfg(test)]
mod tests;
