//! Operator keys and the ring that holds the sealing key and the older opening keys.

use std::fmt;

use aes_gcm_siv::aead::{AeadInPlace, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rand::TryRngCore;

/// Length of a key in bytes (256 bits).
pub const KEY_LEN: usize = 32;

/// One 256-bit AES-256-GCM-SIV key, with the one-byte id tokens name it by.
///
/// The id is derived from the key itself (a byte of the AEAD's own tag over a
/// fixed label), so every replica that loads the same key agrees on its id and
/// the id reveals nothing about the key.
#[derive(Clone)]
pub struct Key {
    pub(crate) id: u8,
    pub(crate) cipher: Aes256GcmSiv,
    bytes: [u8; KEY_LEN],
}

impl Key {
    /// A key from 32 raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let cipher = Aes256GcmSiv::new((&bytes).into());
        let mut empty = [0u8; 0];
        let tag = cipher
            .encrypt_in_place_detached(&Nonce::default(), b"tower-sticky key id", &mut empty)
            .expect("sealing an empty message cannot fail");
        Self {
            id: tag[0],
            cipher,
            bytes,
        }
    }

    /// A fresh random key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .expect("the operating system's random source failed");
        Self::from_bytes(bytes)
    }

    /// Parses a key written as base64 (URL-safe or standard, padded or not),
    /// the form [`Key::to_base64`] and `sticky-gateway keygen` print.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let mut out = [0u8; KEY_LEN + 3];
        let n = [URL_SAFE_NO_PAD, URL_SAFE, STANDARD_NO_PAD, STANDARD]
            .iter()
            .find_map(|e| e.decode_slice(text, &mut out).ok())
            .ok_or(KeyError::Encoding)?;
        if n != KEY_LEN {
            return Err(KeyError::Length(n));
        }
        let mut bytes = [0u8; KEY_LEN];
        bytes.copy_from_slice(&out[..KEY_LEN]);
        Ok(Self::from_bytes(bytes))
    }

    /// The key as URL-safe base64 without padding (43 characters).
    pub fn to_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.bytes)
    }

    /// The one-byte id that tokens sealed with this key carry.
    pub fn id(&self) -> u8 {
        self.id
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("Key")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The text is not base64.
    Encoding,
    /// The text decodes to this many bytes instead of 32.
    Length(usize),
    /// A key ring needs at least one key.
    Empty,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Encoding => f.write_str("key is not valid base64"),
            KeyError::Length(n) => write!(f, "key decodes to {n} bytes, expected {KEY_LEN}"),
            KeyError::Empty => f.write_str("no key given"),
        }
    }
}

impl std::error::Error for KeyError {}

/// Why a key file could not be read: what was wrong, and on which line, so
/// that an operator can fix the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFileError {
    line: Option<usize>,
    kind: KeyError,
}

impl KeyFileError {
    /// The 1-based line that failed; `None` when the error concerns the whole
    /// file (no key in it at all).
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// What was wrong.
    pub fn kind(&self) -> &KeyError {
        &self.kind
    }
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(n) => write!(f, "line {n}: {}", self.kind),
            None => fmt::Display::fmt(&self.kind, f),
        }
    }
}

impl std::error::Error for KeyFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.kind)
    }
}

/// The keys a codec uses: the first seals, all of them open.
///
/// Rotation: put a new key first, roll it out to every replica, and drop the
/// old key once the longest session it sealed has expired.
#[derive(Clone, Debug)]
pub struct KeyRing {
    pub(crate) keys: Vec<Key>,
}

impl KeyRing {
    /// A ring with one key that both seals and opens.
    pub fn new(sealing: Key) -> Self {
        Self {
            keys: vec![sealing],
        }
    }

    /// Adds an older key that still opens tokens but no longer seals.
    pub fn with_opening_key(mut self, old: Key) -> Self {
        self.keys.push(old);
        self
    }

    /// Reads a key file's text: one base64 key per line, the sealing key
    /// first; blank lines and lines starting with `#` are ignored.
    ///
    /// Errors name the 1-based line that failed.
    pub fn from_lines(text: &str) -> Result<Self, KeyFileError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            keys.push(Key::from_base64(line).map_err(|kind| KeyFileError {
                line: Some(i + 1),
                kind,
            })?);
        }
        if keys.is_empty() {
            return Err(KeyFileError {
                line: None,
                kind: KeyError::Empty,
            });
        }
        Ok(Self { keys })
    }

    /// A ring holding one freshly generated key.
    pub fn generate() -> Self {
        Self::new(Key::generate())
    }

    /// The key that seals new tokens.
    pub fn sealing(&self) -> &Key {
        &self.keys[0]
    }

    /// All keys, the sealing key first.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_errors() {
        let k = Key::generate();
        let back = Key::from_base64(&k.to_base64()).unwrap();
        assert_eq!(back.id(), k.id());
        assert_eq!(back.to_base64(), k.to_base64());
        assert!(matches!(
            Key::from_base64("not base64 !!"),
            Err(KeyError::Encoding)
        ));
        assert!(matches!(Key::from_base64("AAAA"), Err(KeyError::Length(3))));
    }

    #[test]
    fn key_file_lines() {
        let a = Key::generate();
        let b = Key::generate();
        let text = format!("# current\n{}\n\n{}\n", a.to_base64(), b.to_base64());
        let ring = KeyRing::from_lines(&text).unwrap();
        assert_eq!(ring.keys().len(), 2);
        assert_eq!(ring.sealing().to_base64(), a.to_base64());
        let e = KeyRing::from_lines("\n# nothing\n").unwrap_err();
        assert!(matches!((e.line(), e.kind()), (None, KeyError::Empty)));
        let e = KeyRing::from_lines(&format!("{}\nxx!\n", a.to_base64())).unwrap_err();
        assert!(matches!(
            (e.line(), e.kind()),
            (Some(2), KeyError::Encoding)
        ));
        assert_eq!(e.to_string(), "line 2: key is not valid base64");
    }

    #[test]
    fn debug_hides_material() {
        let k = Key::generate();
        assert!(!format!("{k:?}").contains(&k.to_base64()));
    }
}
