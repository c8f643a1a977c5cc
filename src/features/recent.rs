//! The last keys seen, in bounded memory: the declaration ids the live
//! record has counted, the decisions the channel allocator gives again to a
//! resent declaration.

use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;

/// The last `limit` keys inserted, each with a value; the oldest is
/// forgotten first.
#[derive(Debug, Clone)]
pub struct RecentKeys<V> {
    values: HashMap<u64, V>,
    /// Keys in `values`, oldest first.
    order: VecDeque<u64>,
    limit: usize,
    /// Keys inserted since the table was last rebuilt.
    since_rebuilt: usize,
}

impl<V> RecentKeys<V> {
    pub fn new(limit: usize) -> Self {
        Self {
            values: HashMap::default(),
            order: VecDeque::new(),
            limit: limit.max(1),
            since_rebuilt: 0,
        }
    }

    pub fn get(&self, key: u64) -> Option<&V> {
        self.values.get(&key)
    }

    /// Remembers `key` with `value`, forgetting the oldest key when full;
    /// a key held already gets the new value and keeps its place. Whether
    /// the key is new.
    pub fn insert(&mut self, key: u64, value: V) -> bool {
        if let Some(held) = self.values.get_mut(&key) {
            *held = value;
            return false;
        }
        if self.order.len() >= self.limit
            && let Some(oldest) = self.order.pop_front()
        {
            self.values.remove(&oldest);
        }
        self.values.insert(key, value);
        self.order.push_back(key);
        // One key out and one in, for ever: the removed keys' tombstones
        // would use up the table's spare room and double it again and again
        // (see `super::compact`). A fresh table every `limit / 2` keys,
        // fewer than its spare room, never fills up with them.
        self.since_rebuilt += 1;
        if self.since_rebuilt >= self.limit / 2 {
            self.since_rebuilt = 0;
            super::compact(&mut self.values, self.limit + 1);
        }
        true
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Slots of the table, for the test that holds it to its bound.
    #[cfg(test)]
    fn slots(&self) -> usize {
        self.values.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_keys_are_remembered_and_the_oldest_forgotten() {
        let mut recent = RecentKeys::new(3);
        for key in 1..=4 {
            recent.insert(key, key * 10);
        }
        assert!(recent.get(1).is_none());
        assert_eq!(recent.get(2), Some(&20));
        assert_eq!(recent.get(4), Some(&40));
        // A held key is updated in place and does not push another out.
        assert!(!recent.insert(2, 21));
        assert_eq!(recent.get(2), Some(&21));
        assert_eq!(recent.len(), 3);
        recent.insert(5, 50);
        assert!(recent.get(2).is_none(), "2 was the oldest");
        assert!(recent.get(3).is_some() && recent.get(5).is_some());
    }

    #[test]
    fn a_full_table_keeps_the_size_its_bound_needs() {
        // Removing one key per insert with nothing else doubled this table
        // (to 2^14 slots for 4,096 keys) within 200,000 keys.
        let limit = 1 << 12;
        let mut recent = RecentKeys::new(limit);
        let bound =
            HashMap::<u64, ()>::with_capacity_and_hasher(limit + 1, Default::default()).capacity();
        let mut key = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..200_000 {
            key = key.rotate_left(23).wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ 0x94d0_49bb;
            recent.insert(key, ());
        }
        assert_eq!(recent.len(), limit);
        assert!(recent.slots() <= bound, "{} slots", recent.slots());
    }
}
