//! A fast keyed hasher for inspection's hot tables (flows, talkers): the folded multiply of
//! wyhash and foldhash, seeded per table from the standard library's random keys.
//!
//! Why not SipHash: the flow table is looked up for every captured frame, and SipHash-1-3 over
//! two socket addresses costs several times the rest of the lookup. Why a seed: the keys come
//! from the wire (addresses and ports an attacker picks), so an unseeded hash would let a
//! crafted scan pile every flow into one bucket chain. The seed is secret and per table; this
//! is not a cryptographic MAC, the same trade-off as foldhash and ahash's fallback.
//!
//! What it does not do: anything but hashing. Guarantees: no allocation, no panic.

use std::hash::{BuildHasher, Hasher};

/// Multiply as 128 bits and fold the halves together.
#[inline]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a).wrapping_mul(u128::from(b));
    // Truncations are the point: the low and the high halves.
    (full as u64) ^ ((full >> 64) as u64)
}

/// Odd constants from the digits of pi (as foldhash uses).
const MIX: [u64; 2] = [0x243f_6a88_85a3_08d3, 0x1319_8a2e_0370_7344];

/// The hasher state.
#[derive(Debug, Clone, Copy)]
pub struct FastHasher {
    state: u64,
    key: u64,
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            if let Some(dst) = word.get_mut(..rest.len()) {
                dst.copy_from_slice(rest);
            }
            self.write_u64(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.state = folded_multiply(self.state ^ i, MIX[0] ^ self.key);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        folded_multiply(self.state, MIX[1]).rotate_left(23)
    }
}

/// Builds [`FastHasher`]s with one random key per table.
#[derive(Debug, Clone, Copy)]
pub struct FastHash {
    seed: u64,
    key: u64,
}

impl Default for FastHash {
    fn default() -> Self {
        // The standard library's RandomState holds random keys (per thread, advanced per use):
        // hash two constants with it to draw this table's secret seed and key.
        let random = std::collections::hash_map::RandomState::new();
        Self {
            seed: random.hash_one(0x5eed_u64),
            key: random.hash_one(0x006b_6579_u64) | 1,
        }
    }
}

impl BuildHasher for FastHash {
    type Hasher = FastHasher;

    #[inline]
    fn build_hasher(&self) -> FastHasher {
        FastHasher {
            state: self.seed,
            key: self.key,
        }
    }
}

/// A `HashMap` with the fast keyed hasher.
pub type FastMap<K, V> = std::collections::HashMap<K, V, FastHash>;
/// A `HashSet` with the fast keyed hasher.
pub type FastSet<K> = std::collections::HashSet<K, FastHash>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn tables_hash_differently_and_spread_sequential_keys() {
        let (a, b) = (FastHash::default(), FastHash::default());
        assert_ne!(
            a.hash_one(1u64),
            b.hash_one(1u64),
            "each table has its own key"
        );
        // Neighbouring addresses and ports (a scan) land in distinct low bits.
        let buckets: HashSet<u64> = (0..4096u32)
            .map(|i| a.hash_one((0x0a00_0000u32 + i, 502u16)) & 0xFFF)
            .collect();
        assert!(buckets.len() > 2400, "{} of 4096 buckets", buckets.len());
        let mut map: FastMap<(u32, u16), u32> = FastMap::default();
        for i in 0..1000u32 {
            map.insert((i, 502), i);
        }
        assert_eq!(map.get(&(7, 502)), Some(&7));
        assert_eq!(a.hash_one(&b"abc"[..]), a.hash_one(&b"abc"[..]));
        assert_ne!(a.hash_one(&b"abc"[..]), a.hash_one(&b"abd"[..]));
    }
}
