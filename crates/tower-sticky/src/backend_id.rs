//! Stable backend identities.
//!
//! A sealed token names its backend by a [`BackendId`], never by list position or
//! address. The id is a deterministic function of the `Discover` key, so every
//! process (every gateway replica, every restart) that knows a backend by the
//! same key derives the same id, and a token issued by one replica routes
//! identically on another.

use std::net::{IpAddr, SocketAddr};

/// The stable, process-independent identity of a backend.
///
/// Derived from the backend's key with [`StableId`]. It travels only inside a
/// sealed token, so it reveals nothing to clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId(u64);

impl BackendId {
    /// Wraps a raw id, for keys that already carry a stable number.
    pub const fn from_u64(id: u64) -> Self {
        Self(id)
    }

    /// The raw id.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Derives an id from canonical bytes: 64-bit FNV-1a, then a finaliser so
    /// that nearby inputs spread over the whole range.
    ///
    /// FNV-1a is fixed by its specification, so the result never changes across
    /// Rust versions or platforms (unlike `std`'s `DefaultHasher`).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Self(mix64(h))
    }
}

impl std::fmt::Display for BackendId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The 64-bit finaliser of MurmurHash3 / SplitMix64: a bijection that turns
/// structured input into well-spread bits. Used by ids and by hashing placement.
#[inline]
pub(crate) fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x
}

/// A `Discover` key that has a stable [`BackendId`].
///
/// Implemented for the key types services are usually discovered by. Two keys
/// that are equal must give the same id; the id must not depend on the process.
pub trait StableId {
    /// This key's stable id.
    fn stable_id(&self) -> BackendId;
}

impl StableId for BackendId {
    fn stable_id(&self) -> BackendId {
        *self
    }
}

impl StableId for str {
    fn stable_id(&self) -> BackendId {
        BackendId::from_bytes(self.as_bytes())
    }
}

impl StableId for String {
    fn stable_id(&self) -> BackendId {
        self.as_str().stable_id()
    }
}

impl StableId for &'static str {
    fn stable_id(&self) -> BackendId {
        (*self).stable_id()
    }
}

impl StableId for SocketAddr {
    fn stable_id(&self) -> BackendId {
        // Canonical text ("127.0.0.1:80", "[::1]:80") is stable and readable.
        let mut buf = [0u8; 64];
        let len = {
            use std::io::Write;
            let mut cur = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cur, "{self}");
            cur.position() as usize
        };
        BackendId::from_bytes(&buf[..len])
    }
}

impl StableId for IpAddr {
    fn stable_id(&self) -> BackendId {
        match self {
            IpAddr::V4(v4) => BackendId::from_bytes(&v4.octets()),
            IpAddr::V6(v6) => BackendId::from_bytes(&v6.octets()),
        }
    }
}

macro_rules! int_ids {
    ($($t:ty),*) => {$(
        impl StableId for $t {
            fn stable_id(&self) -> BackendId {
                // Widened so that 7u8 and 7u64 name the same backend.
                BackendId::from_bytes(&(*self as u128).to_be_bytes())
            }
        }
    )*};
}
int_ids!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, isize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_fixed_across_processes() {
        // Pinned values: changing the derivation would strand every issued cookie.
        assert_eq!("b1".stable_id(), String::from("b1").stable_id());
        assert_eq!(
            "b1".stable_id().as_u64(),
            BackendId::from_bytes(b"b1").as_u64()
        );
        assert_eq!(
            BackendId::from_bytes(b"backend-a").as_u64(),
            3_529_438_355_117_398_529
        );
        assert_ne!("b1".stable_id(), "b2".stable_id());
        assert_eq!(7u8.stable_id(), 7u64.stable_id());
        let a: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        assert_eq!(a.stable_id(), "127.0.0.1:9001".stable_id());
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(v6.stable_id(), "[::1]:80".stable_id());
    }
}
