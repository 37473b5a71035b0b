//! Fast maps for the lookups built once per policy: ids to indexes in [`crate::model`] and the
//! validator's lookups in [`crate::parse`]. Validating a 10,000-asset policy makes about a
//! hundred thousand such lookups, where SipHash's cost showed; `foldhash` (the hasher of
//! `hashbrown`) is several times cheaper and still seeded per map.
//!
//! The keys these maps *hold* come from the policy, which an appliance accepts only signed by
//! HQ's authorities; a seeded hasher is a second line against colliding keys, not the first.

use std::collections::{HashMap, HashSet};

/// A `HashMap` with `foldhash`'s seeded fast hasher.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
/// A `HashSet` with `foldhash`'s seeded fast hasher.
pub type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_thousand_ids_are_all_found_and_nothing_else() {
        let mut map: FastMap<String, usize> = FastMap::default();
        for i in 0..10_000 {
            map.insert(format!("a{i}"), i);
        }
        assert_eq!(map.len(), 10_000);
        assert_eq!(map.get("a9999"), Some(&9999));
        assert_eq!(map.get("a10000"), None);
        let set: FastSet<&str> = ["line3-plc", "line3-hmi"].into_iter().collect();
        assert_eq!(set.len(), 2);
    }
}
