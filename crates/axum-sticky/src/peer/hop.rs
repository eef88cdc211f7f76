//! The hop marker: what a replica adds to a request it forwards to the
//! session's owner, so that the owner serves it instead of forwarding it
//! again, and so that no client can pass for a peer.
//!
//! It is authenticated with AES-256-CMAC (NIST SP 800-38B) under a key
//! derived with HKDF-SHA256 from each shared key, so that only a replica
//! holding the key ring can make one. It says:
//! - which replica it is for (a marker made for one replica is refused by
//!   the others);
//! - which request it is for: a digest of method and target (a marker
//!   moved onto another request is refused);
//! - when it was made: it lives a few seconds;
//! - what the forwarding replica decided (the outcome: pinned, repinned
//!   and why...), so that the owner need not decide again from the
//!   token, which the forwarding replica removes before sending;
//! - a random 64-bit nonce: the receiving replica remembers the markers it
//!   took while they live and refuses a second use (a captured marker
//!   replayed). 64 bits, so that two genuine markers for the same request
//!   in the same second do not pass for a replay: with 32, one replica
//!   taking 12,000 hops a second refused a genuine one every minute or so
//!   (the peer_hop bench met it).
//!
//! Its text is 42 characters of URL-safe base64:
//!
//! ```text
//! version (1) | key id (1) | nonce (8) | issued (4) | outcome (1) | tag (16)
//! ```
//!
//! The replica and the request digest are not carried: the receiver puts
//! its own, so a marker for anything else fails the tag.
//!
//! Why a MAC and not a sealed token as cookies are: a marker hides nothing
//! (it travels between replicas, never to a client) and is made and checked
//! once per forwarded request. AES-256-GCM-SIV derives and expands two
//! keys per message; CMAC with its key expanded once is three AES blocks
//! (AES-NI): the seal and the check cost 5,300 instructions per hop with
//! GCM-SIV, about a fifth of the whole forward's overhead over
//! sticky-gateway's (BENCHMARKS.md, peer hop). HMAC-SHA256 was tried: on a
//! CPU without SHA extensions it cost twice GCM-SIV. The HKDF step, at
//! start only, keeps the MAC key apart from the key that seals cookies.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use aes::Aes256;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cmac::{Cmac, Mac};
use http::header::HeaderName;
use http::request::Parts;
use http::HeaderValue;
use ring::hkdf;
use tower_sticky::token::KeyRing;
use tower_sticky::{BackendId, Clock, Outcome, Reason};

/// The header carrying the marker between replicas.
pub const HOP_HEADER: HeaderName = HeaderName::from_static("x-sticky-hop");

/// The marker format's version, its first byte.
const VERSION: u8 = 3;
/// HKDF salt and info: the MAC key is for hop markers and nothing else.
const KDF_SALT: &[u8] = b"sticky peer hop";
const KDF_INFO: &[u8] = b"marker cmac v3";

const NONCE_LEN: usize = 8;
/// Where the outcome byte is.
const OUTCOME_AT: usize = 2 + NONCE_LEN + 4;
const HEAD_LEN: usize = OUTCOME_AT + 1;
const TAG_LEN: usize = 16;
const RAW_LEN: usize = HEAD_LEN + TAG_LEN;
/// Length of a marker's text.
const TEXT_LEN: usize = (RAW_LEN * 4).div_ceil(3);

/// How long a marker is good for, in seconds: a hop takes milliseconds;
/// the margin is for clocks a little apart.
const TTL_S: u32 = 10;

/// How far ahead of this replica's clock a peer's may be, in seconds.
const SKEW_S: u32 = 2;

/// The markers taken while they live, in two generations of `TTL_S`
/// seconds each: a marker is looked up in both and remembered in the
/// current one; when the current one is `TTL_S` old it becomes the
/// previous one and the previous one (all expired) is dropped. O(1) per
/// marker, whatever the rate.
#[derive(Debug, Default)]
struct Seen {
    since: u32,
    current: Nonces,
    previous: Nonces,
}

/// Marker ids: random nonces under the seal, so no client picks them and
/// they need no keyed hash; taken as they are.
type Nonces = HashSet<u64, BuildHasherDefault<NonceHasher>>;

/// The hasher of [`Nonces`]: the id itself.
#[derive(Debug, Default)]
struct NonceHasher(u64);

impl Hasher for NonceHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; any other input is folded in.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id;
    }
}

impl Seen {
    /// Remembers `id` at `now`; false if it was already there.
    fn first_use(&mut self, id: u64, now: u32) -> bool {
        // A marker is good for TTL_S from its (up to SKEW_S ahead) issue
        // time: each generation outlives that.
        if now.saturating_sub(self.since) >= TTL_S + SKEW_S {
            // The next generation starts as large as the last one ended:
            // growing again from nothing rehashes every few thousand hops.
            let room = Nonces::with_capacity_and_hasher(self.current.len(), Default::default());
            self.previous = std::mem::replace(&mut self.current, room);
            self.since = now;
        }
        !self.previous.contains(&id) && self.current.insert(id)
    }
}

/// Why a marker was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HopRefused {
    /// Not made with a peer's key (forged, edited, garbage, unknown key),
    /// or made for another replica or another request.
    Invalid,
    /// Too old (or from the future).
    Expired,
    /// Already used.
    Replayed,
}

/// Makes and checks hop markers.
pub(crate) struct HopMarker {
    /// The MAC derived from each shared key, keyed once, by key id; the
    /// first makes markers.
    keys: Vec<(u8, Cmac<Aes256>)>,
    clock: Clock,
    seen: Mutex<Seen>,
}

impl std::fmt::Debug for HopMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HopMarker")
            .field(
                "key_ids",
                &self.keys.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl HopMarker {
    pub(crate) fn new(ring: KeyRing, clock: Clock) -> Self {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, KDF_SALT);
        let keys = ring
            .keys()
            .iter()
            .map(|k| {
                let secret = URL_SAFE_NO_PAD
                    .decode(k.to_base64())
                    .expect("a key's own base64");
                let mut derived = [0u8; 32];
                salt.extract(&secret)
                    .expand(&[KDF_INFO], KeyLen32)
                    .and_then(|okm| okm.fill(&mut derived))
                    .expect("32 bytes is a valid HKDF-SHA256 length");
                let mac = <Cmac<Aes256> as Mac>::new_from_slice(&derived)
                    .expect("an AES-256 key is 32 bytes");
                (k.id(), mac)
            })
            .collect();
        Self {
            keys,
            clock,
            seen: Mutex::new(Seen::default()),
        }
    }

    fn now_s(&self) -> u32 {
        (self.clock.now_ms() / 1000) as u32
    }

    /// A marker for the request `parts` going to replica `to`, which this
    /// replica decided with `outcome`.
    pub(crate) fn seal(&self, to: BackendId, outcome: Outcome, parts: &Parts) -> HeaderValue {
        self.seal_with(to, outcome, binding(parts), rand::random(), self.now_s())
    }

    fn seal_with(
        &self,
        to: BackendId,
        outcome: Outcome,
        binding: u64,
        nonce: u64,
        issued: u32,
    ) -> HeaderValue {
        let (kid, key) = &self.keys[0];
        let mut raw = [0u8; RAW_LEN];
        raw[0] = VERSION;
        raw[1] = *kid;
        raw[2..2 + NONCE_LEN].copy_from_slice(&nonce.to_be_bytes());
        raw[2 + NONCE_LEN..OUTCOME_AT].copy_from_slice(&issued.to_be_bytes());
        raw[OUTCOME_AT] = outcome_code(outcome);
        let mut mac = key.clone();
        mac.update(&signed(&raw, to, binding));
        raw[HEAD_LEN..].copy_from_slice(&mac.finalize().into_bytes());
        let mut text = [0u8; TEXT_LEN];
        let n = URL_SAFE_NO_PAD
            .encode_slice(raw, &mut text)
            .expect("TEXT_LEN fits the encoding");
        debug_assert_eq!(n, TEXT_LEN);
        HeaderValue::from_bytes(&text).expect("base64 is a valid header value")
    }

    /// Checks a marker received by replica `me` on request `parts`, and
    /// remembers it so that it is good once. The forwarding replica's
    /// outcome when it is good.
    pub(crate) fn check(
        &self,
        text: &[u8],
        me: BackendId,
        parts: &Parts,
    ) -> Result<Outcome, HopRefused> {
        if text.len() != TEXT_LEN {
            return Err(HopRefused::Invalid);
        }
        let mut raw = [0u8; RAW_LEN + 2];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut raw) {
            Ok(RAW_LEN) if raw[0] == VERSION => {}
            _ => return Err(HopRefused::Invalid),
        }
        let raw = &raw[..RAW_LEN];
        // The tag covers this replica and this request: a marker made for
        // another fails here. Every key with the marker's id is tried (ids
        // are one byte: two keys of a ring may share one).
        let signed = signed(raw, me, binding(parts));
        let good = self
            .keys
            .iter()
            .filter(|(id, _)| *id == raw[1])
            .any(|(_, key)| {
                // Compared in constant time (`verify_slice`).
                let mut mac = key.clone();
                mac.update(&signed);
                mac.verify_slice(&raw[HEAD_LEN..]).is_ok()
            });
        if !good {
            return Err(HopRefused::Invalid);
        }
        let nonce = u64::from_be_bytes(raw[2..2 + NONCE_LEN].try_into().expect("8 bytes"));
        let issued =
            u32::from_be_bytes(raw[2 + NONCE_LEN..OUTCOME_AT].try_into().expect("4 bytes"));
        // Under the tag: a byte no replica writes is a peer of another
        // version, refused like any marker this one cannot read.
        let outcome = outcome_of(raw[OUTCOME_AT]).ok_or(HopRefused::Invalid)?;
        let now = self.now_s();
        if now.saturating_sub(issued) > TTL_S || issued > now + SKEW_S {
            return Err(HopRefused::Expired);
        }
        // Held for a map lookup and insert, never across an await.
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if !seen.first_use(nonce, now) {
            return Err(HopRefused::Replayed);
        }
        Ok(outcome)
    }
}

/// An outcome as the marker's byte: the kind in the high half, the
/// reason's place in [`Reason::ALL`] in the low half. 0 for an outcome this
/// version does not know (none today), which the owner refuses.
fn outcome_code(o: Outcome) -> u8 {
    let reason = |r: Reason| Reason::ALL.iter().position(|x| *x == r).unwrap_or(0xf) as u8;
    match o {
        Outcome::Pinned => 0x10,
        Outcome::New => 0x20,
        Outcome::Repinned(r) => 0x30 | reason(r),
        Outcome::Temporary(r) => 0x40 | reason(r),
        Outcome::Rejected(r) => 0x50 | reason(r),
        _ => 0,
    }
}

/// The outcome a marker's byte names; `None` for any other byte.
fn outcome_of(b: u8) -> Option<Outcome> {
    let reason = || Reason::ALL.get(usize::from(b & 0xf)).copied();
    Some(match b >> 4 {
        1 if b == 0x10 => Outcome::Pinned,
        2 if b == 0x20 => Outcome::New,
        3 => Outcome::Repinned(reason()?),
        4 => Outcome::Temporary(reason()?),
        5 => Outcome::Rejected(reason()?),
        _ => return None,
    })
}

/// HKDF output length for [`hkdf::Prk::expand`]: one AES-256 key.
struct KeyLen32;

impl hkdf::KeyType for KeyLen32 {
    fn len(&self) -> usize {
        32
    }
}

/// What a marker's tag covers: its head (version, key id, nonce, issue
/// time, outcome), the replica it is for and the request's digest. One
/// fixed-size message: the MAC's buffering is cheapest on a length known
/// at compile time (the method and target fed as they are cost more than
/// hashing them first).
fn signed(raw: &[u8], to: BackendId, binding: u64) -> [u8; HEAD_LEN + 16] {
    let mut m = [0u8; HEAD_LEN + 16];
    m[..HEAD_LEN].copy_from_slice(&raw[..HEAD_LEN]);
    m[HEAD_LEN..HEAD_LEN + 8].copy_from_slice(&to.as_u64().to_be_bytes());
    m[HEAD_LEN + 8..].copy_from_slice(&binding.to_be_bytes());
    m
}

/// What a marker is bound to: the request's method and target.
fn binding(parts: &Parts) -> u64 {
    let method = BackendId::from_bytes(parts.method.as_str().as_bytes()).as_u64();
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    method.rotate_left(29) ^ BackendId::from_bytes(target.as_bytes()).as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_sticky::token::{Token, TokenCodec};

    fn parts(uri: &str) -> Parts {
        http::Request::get(uri).body(()).unwrap().into_parts().0
    }

    #[test]
    fn a_marker_is_good_once_for_its_replica_and_request() {
        let keys = KeyRing::generate();
        let clock = Clock::manual(1_000_000);
        let m = HopMarker::new(keys.clone(), clock.clone());
        let me = BackendId::from_u64(1);
        let p = parts("/cart?x=1");
        let v = m.seal(me, Outcome::Pinned, &p);
        assert_eq!(v.len(), TEXT_LEN);
        // Another replica, another request: the tag does not hold.
        assert_eq!(
            m.check(v.as_bytes(), BackendId::from_u64(2), &p),
            Err(HopRefused::Invalid)
        );
        assert_eq!(
            m.check(v.as_bytes(), me, &parts("/admin")),
            Err(HopRefused::Invalid)
        );
        assert_eq!(
            m.check(
                v.as_bytes(),
                me,
                &http::Request::post("/cart?x=1")
                    .body(())
                    .unwrap()
                    .into_parts()
                    .0
            ),
            Err(HopRefused::Invalid)
        );
        assert_eq!(m.check(v.as_bytes(), me, &p), Ok(Outcome::Pinned));
        assert_eq!(m.check(v.as_bytes(), me, &p), Err(HopRefused::Replayed));
        let late = m.seal(me, Outcome::Pinned, &p);
        clock.advance(std::time::Duration::from_secs(TTL_S as u64 + 1));
        assert_eq!(m.check(late.as_bytes(), me, &p), Err(HopRefused::Expired));
        // From the future, beyond the allowed skew.
        let ahead = m.seal_with(me, Outcome::Pinned, binding(&p), 9, m.now_s() + SKEW_S + 1);
        assert_eq!(m.check(ahead.as_bytes(), me, &p), Err(HopRefused::Expired));
        // Another key ring: forged.
        let other = HopMarker::new(KeyRing::generate(), clock.clone());
        let forged = other.seal(me, Outcome::Pinned, &p);
        assert_eq!(m.check(forged.as_bytes(), me, &p), Err(HopRefused::Invalid));
    }

    #[test]
    fn every_edit_of_a_marker_is_refused() {
        let m = HopMarker::new(KeyRing::generate(), Clock::manual(1_000_000));
        let me = BackendId::from_u64(1);
        let p = parts("/cart");
        let v = m.seal(me, Outcome::Pinned, &p);
        for i in 0..TEXT_LEN {
            for c in [b'A', b'B', b'_', b'-', b'='] {
                let mut edited = v.as_bytes().to_vec();
                if edited[i] == c {
                    continue;
                }
                edited[i] = c;
                assert_eq!(
                    m.check(&edited, me, &p),
                    Err(HopRefused::Invalid),
                    "edit at {i}"
                );
            }
        }
        assert_eq!(
            m.check(&v.as_bytes()[1..], me, &p),
            Err(HopRefused::Invalid)
        );
        assert_eq!(m.check(b"", me, &p), Err(HopRefused::Invalid));
        assert_eq!(m.check(v.as_bytes(), me, &p), Ok(Outcome::Pinned));
    }

    #[test]
    fn a_marker_from_the_previous_key_is_good_while_that_key_opens() {
        let (old, new) = (
            tower_sticky::token::Key::generate(),
            tower_sticky::token::Key::generate(),
        );
        let clock = Clock::manual(1_000_000);
        let before = HopMarker::new(KeyRing::new(old.clone()), clock.clone());
        let after = HopMarker::new(KeyRing::new(new).with_opening_key(old), clock.clone());
        let me = BackendId::from_u64(1);
        let p = parts("/");
        let v = before.seal(me, Outcome::Pinned, &p);
        assert_eq!(after.check(v.as_bytes(), me, &p), Ok(Outcome::Pinned));
        // And the new key's markers are the old ring's forgeries.
        let w = after.seal(me, Outcome::Pinned, &p);
        assert_eq!(before.check(w.as_bytes(), me, &p), Err(HopRefused::Invalid));
    }

    #[test]
    fn two_markers_are_two_uses_unless_their_nonce_is_the_same() {
        let m = HopMarker::new(KeyRing::generate(), Clock::manual(1_000_000));
        let me = BackendId::from_u64(1);
        let p = parts("/cart");
        let marker = |nonce: u64| m.seal_with(me, Outcome::Pinned, binding(&p), nonce, m.now_s());
        // Same request, same second, nonces alike in either half: not a replay.
        for n in [1u64 << 32 | 7, 2 << 32 | 7, 1 << 32 | 8] {
            assert_eq!(m.check(marker(n).as_bytes(), me, &p), Ok(Outcome::Pinned));
        }
        // The whole nonce again: a replay.
        assert_eq!(
            m.check(marker(2 << 32 | 7).as_bytes(), me, &p),
            Err(HopRefused::Replayed)
        );
    }

    #[test]
    fn the_forwarding_replicas_outcome_comes_back_from_the_marker() {
        let m = HopMarker::new(KeyRing::generate(), Clock::manual(1_000_000));
        let me = BackendId::from_u64(1);
        let p = parts("/cart");
        let mut all = vec![Outcome::Pinned, Outcome::New];
        for r in Reason::ALL {
            all.extend([
                Outcome::Repinned(r),
                Outcome::Temporary(r),
                Outcome::Rejected(r),
            ]);
        }
        for o in all {
            let v = m.seal(me, o, &p);
            assert_eq!(m.check(v.as_bytes(), me, &p), Ok(o));
        }
        // Each byte names one outcome or none, and each outcome one byte.
        for b in 0..=255u8 {
            if let Some(o) = outcome_of(b) {
                assert_eq!(outcome_code(o), b, "{o}");
            }
        }
        assert_eq!(outcome_of(0), None);
    }

    #[test]
    fn an_affinity_cookie_is_not_a_marker() {
        let keys = KeyRing::generate();
        let m = HopMarker::new(keys.clone(), Clock::system());
        let me = BackendId::from_u64(1);
        let cookie = TokenCodec::new(keys, "sticky").seal(&Token::new(me, 7, m.now_s()));
        let r = m.check(cookie.as_str().as_bytes(), me, &parts("/"));
        assert_eq!(r, Err(HopRefused::Invalid));
    }
}
