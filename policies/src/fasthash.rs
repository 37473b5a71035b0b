//! A fast, non-cryptographic hasher (FNV-1a, 64 bit) for the maps built once per policy: ids to
//! indexes in [`crate::model`] and the validator's lookups in [`crate::parse`]. Validating a
//! 10,000-asset policy makes about a hundred thousand such lookups, where SipHash's cost showed.
//!
//! Why this is safe here: the keys these maps *hold* come from the policy, which an appliance
//! accepts only signed by HQ's authorities; nobody else chooses them, so nobody can fill a map
//! with colliding keys. Keys that requests *look up* cannot degrade a map they are not inserted
//! into. Not for maps that store keys from untrusted input.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// FNV-1a, 64 bit.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A `HashMap` with [`Fnv`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;
/// A `HashSet` with [`Fnv`].
pub type FastSet<K> = HashSet<K, BuildHasherDefault<Fnv>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hash;

    #[test]
    fn known_vectors_and_distinct_ids() {
        let mut h = Fnv::default();
        h.write(b"a");
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c);
        let hash = |s: &str| {
            let mut h = Fnv::default();
            s.hash(&mut h);
            h.finish()
        };
        assert_ne!(hash("line3-plc"), hash("line3-hmi"));
        let mut map: FastMap<String, usize> = FastMap::default();
        for i in 0..10_000 {
            map.insert(format!("a{i}"), i);
        }
        assert_eq!(map.get("a9999"), Some(&9999));
    }
}
