//! The hop marker: what a replica adds to a request it forwards to the
//! session's owner, so that the owner serves it instead of forwarding it
//! again, and so that no client can pass for a peer.
//!
//! It is a token sealed with the shared key (AES-256-GCM-SIV, as cookies
//! are) under a name no cookie or header can have, so a client's own
//! affinity cookie never opens as a marker. It says:
//! - which replica it is for (a marker made for one replica is refused by
//!   the others);
//! - which request it is for: a digest of method and target (a marker
//!   moved onto another request is refused);
//! - when it was made: it lives a few seconds;
//! - a random 64-bit nonce: the receiving replica remembers the markers it
//!   took while they live and refuses a second use (a captured marker
//!   replayed). 64 bits, so that two genuine markers for the same request
//!   in the same second do not pass for a replay: with 32, one replica
//!   taking 12,000 hops a second refused a genuine one every minute or so
//!   (the peer_hop bench met it).
//!
//! The token's 64-bit `session` field carries the request digest in its
//! high half and half the nonce in its low half; `refreshed` carries the
//! other half of the nonce.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use http::header::HeaderName;
use http::request::Parts;
use http::HeaderValue;
use tower_sticky::token::{InvalidToken, KeyRing, Token, TokenCodec};
use tower_sticky::{BackendId, Clock};

/// The header carrying the marker between replicas.
pub const HOP_HEADER: HeaderName = HeaderName::from_static("x-sticky-hop");

/// The name markers are sealed under: a space can be in neither a cookie
/// name nor a header name, so no affinity token opens as a marker.
const MARKER_NAME: &str = "sticky peer hop";

/// The bits of a marker's `session` field that hold the request digest;
/// the others hold half of the nonce.
const DIGEST_BITS: u64 = 0xFFFF_FFFF_0000_0000;

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
    /// Not sealed by a peer's key (forged, edited, garbage).
    Invalid(InvalidToken),
    /// Made for another replica.
    OtherReplica,
    /// Made for another request.
    OtherRequest,
    /// Too old (or from the future).
    Expired,
    /// Already used.
    Replayed,
}

/// Seals and checks hop markers.
#[derive(Debug)]
pub(crate) struct HopMarker {
    codec: TokenCodec,
    clock: Clock,
    seen: Mutex<Seen>,
}

impl HopMarker {
    pub(crate) fn new(keys: KeyRing, clock: Clock) -> Self {
        Self {
            codec: TokenCodec::new(keys, MARKER_NAME),
            clock,
            seen: Mutex::new(Seen::default()),
        }
    }

    fn now_s(&self) -> u32 {
        (self.clock.now_ms() / 1000) as u32
    }

    /// A marker for the request `parts` going to replica `to`.
    pub(crate) fn seal(&self, to: BackendId, parts: &Parts) -> HeaderValue {
        let nonce: u64 = rand::random();
        let t = Token {
            backend: to,
            session: (binding(parts) & DIGEST_BITS) | (nonce & !DIGEST_BITS),
            issued: self.now_s(),
            refreshed: (nonce >> 32) as u32,
        };
        HeaderValue::from_str(self.codec.seal(&t).as_str()).expect("tokens are ASCII")
    }

    /// Checks a marker received by replica `me` on request `parts`, and
    /// remembers it so that it is good once.
    pub(crate) fn check(&self, raw: &[u8], me: BackendId, parts: &Parts) -> Result<(), HopRefused> {
        let t = self.codec.open(raw).map_err(HopRefused::Invalid)?;
        if t.backend != me {
            return Err(HopRefused::OtherReplica);
        }
        if (t.session ^ binding(parts)) & DIGEST_BITS != 0 {
            return Err(HopRefused::OtherRequest);
        }
        let now = self.now_s();
        if now.saturating_sub(t.issued) > TTL_S || t.issued > now + SKEW_S {
            return Err(HopRefused::Expired);
        }
        let id = u64::from(t.refreshed) << 32 | (t.session & !DIGEST_BITS);
        // Held for a map lookup and insert, never across an await.
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if !seen.first_use(id, now) {
            return Err(HopRefused::Replayed);
        }
        Ok(())
    }
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
        let v = m.seal(me, &p);
        assert_eq!(
            m.check(v.as_bytes(), BackendId::from_u64(2), &p),
            Err(HopRefused::OtherReplica)
        );
        assert_eq!(
            m.check(v.as_bytes(), me, &parts("/admin")),
            Err(HopRefused::OtherRequest)
        );
        assert_eq!(m.check(v.as_bytes(), me, &p), Ok(()));
        assert_eq!(m.check(v.as_bytes(), me, &p), Err(HopRefused::Replayed));
        let late = m.seal(me, &p);
        clock.advance(std::time::Duration::from_secs(TTL_S as u64 + 1));
        assert_eq!(m.check(late.as_bytes(), me, &p), Err(HopRefused::Expired));
        // Another key: forged.
        let other = HopMarker::new(KeyRing::generate(), clock.clone());
        let forged = other.seal(me, &p);
        assert!(matches!(
            m.check(forged.as_bytes(), me, &p),
            Err(HopRefused::Invalid(_))
        ));
    }

    #[test]
    fn two_markers_are_two_uses_unless_their_whole_nonce_is_the_same() {
        let keys = KeyRing::generate();
        let clock = Clock::manual(1_000_000);
        let m = HopMarker::new(keys.clone(), clock.clone());
        let me = BackendId::from_u64(1);
        let p = parts("/cart");
        let digest = binding(&p) & DIGEST_BITS;
        let marker = |low: u64, high: u32| {
            let t = Token {
                backend: me,
                session: digest | low,
                issued: m.now_s(),
                refreshed: high,
            };
            m.codec.seal(&t)
        };
        // Same request, same second, the same half of a nonce: not a replay.
        let (a, b) = (marker(1, 7), marker(2, 7));
        assert_eq!(m.check(a.as_str().as_bytes(), me, &p), Ok(()));
        assert_eq!(m.check(b.as_str().as_bytes(), me, &p), Ok(()));
        let c = marker(1, 8);
        assert_eq!(m.check(c.as_str().as_bytes(), me, &p), Ok(()));
        // The whole nonce again: a replay.
        let again = marker(2, 7);
        assert_eq!(
            m.check(again.as_str().as_bytes(), me, &p),
            Err(HopRefused::Replayed)
        );
    }

    #[test]
    fn an_affinity_cookie_is_not_a_marker() {
        let keys = KeyRing::generate();
        let m = HopMarker::new(keys.clone(), Clock::system());
        let me = BackendId::from_u64(1);
        let cookie = TokenCodec::new(keys, "sticky").seal(&Token::new(me, 7, m.now_s()));
        let r = m.check(cookie.as_str().as_bytes(), me, &parts("/"));
        assert_eq!(r, Err(HopRefused::Invalid(InvalidToken::Forged)));
    }
}
