//! Fast seeded maps for inspection's hot tables (flows, talkers, inventory): `foldhash`, the
//! hasher of `hashbrown`, with a random seed per table.
//!
//! Why not SipHash: the flow table is looked up for every captured frame, and SipHash-1-3 over
//! two socket addresses costs several times the rest of the lookup. Why seeded: the keys come
//! from the wire (addresses and ports an attacker picks), so an unseeded hash would let a
//! crafted scan pile every flow into one bucket chain; the flow table's bound and eviction are
//! the other half of that defence. Not a cryptographic MAC.

/// A `HashMap` with `foldhash`'s seeded fast hasher.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// A `HashSet` with `foldhash`'s seeded fast hasher.
pub type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    #[test]
    fn tables_hash_differently_and_spread_sequential_keys() {
        let (a, b) = (
            foldhash::fast::RandomState::default(),
            foldhash::fast::RandomState::default(),
        );
        assert_ne!(
            a.hash_one(1u64),
            b.hash_one(1u64),
            "each table has its own seed"
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
        let set: FastSet<u32> = (0..10).collect();
        assert_eq!(set.len(), 10);
    }
}
