//! [`GroupTable`]: fixed-size keys to dense group numbers, for batches of keys.
//!
//! With a million groups, a lookup is a cache miss: the table does not fit in cache. A
//! general hash map probes one key at a time, so a batch runs at memory latency. This
//! table hashes the whole batch first, then probes row `i` while prefetching the slot of
//! row `i + PREFETCH_DISTANCE`, so the misses of several rows overlap. It is open
//! addressing with linear probing at a load of at most one half, and each slot holds its
//! key and group number together: one miss per lookup.
//!
//! The hash is a fixed multiply-fold (no per-process seed): group-by input is data, not
//! requests, and a fixed hash keeps runs repeatable.

/// Rows ahead whose slot is prefetched.
const PREFETCH_DISTANCE: usize = 16;
/// The smallest table, in slots.
const MIN_SLOTS: usize = 1024;
/// A slot without a key.
const EMPTY: u32 = u32::MAX;

/// A fixed-size key.
pub(super) trait TableKey: Copy + Eq + Default {
    /// The key's 64-bit hash.
    fn hash(self) -> u64;
}

/// Multiplies and folds the 128-bit product: every input bit reaches the low bits.
#[inline]
fn fold_multiply(x: u64, factor: u64) -> u64 {
    let full = u128::from(x) * u128::from(factor);
    (full as u64) ^ ((full >> 64) as u64)
}

const FACTOR_LOW: u64 = 0x9e37_79b9_7f4a_7c15;
const FACTOR_HIGH: u64 = 0xc2b2_ae3d_27d4_eb4f;

impl TableKey for u64 {
    #[inline]
    fn hash(self) -> u64 {
        fold_multiply(self ^ FACTOR_HIGH, FACTOR_LOW)
    }
}

impl TableKey for u128 {
    #[inline]
    fn hash(self) -> u64 {
        let low = fold_multiply(self as u64 ^ FACTOR_HIGH, FACTOR_LOW);
        fold_multiply(low ^ (self >> 64) as u64, FACTOR_HIGH)
    }
}

#[derive(Clone, Copy, Default)]
struct Slot<K> {
    key: K,
    id: u32,
}

/// Keys of type `K` with the group number the caller gave each.
///
/// The caller drives a batch: [`GroupTable::hash_all`] once, then per row
/// [`GroupTable::prefetch_ahead`] and [`GroupTable::find_or_insert`].
pub(super) struct GroupTable<K> {
    slots: Vec<Slot<K>>,
    len: usize,
}

impl<K: TableKey> Default for GroupTable<K> {
    fn default() -> Self {
        GroupTable { slots: empty_slots(MIN_SLOTS), len: 0 }
    }
}

fn empty_slots<K: TableKey>(n: usize) -> Vec<Slot<K>> {
    vec![Slot { key: K::default(), id: EMPTY }; n]
}

impl<K: TableKey> GroupTable<K> {
    /// Sets `hashes` to the hash of each key, and prefetches the first rows' slots.
    pub(super) fn hash_all(&self, keys: &[K], hashes: &mut Vec<u64>) {
        hashes.clear();
        hashes.extend(keys.iter().map(|k| k.hash()));
        for &hash in hashes.iter().take(PREFETCH_DISTANCE) {
            self.prefetch(hash);
        }
    }

    /// Prefetches the slot of the row [`PREFETCH_DISTANCE`] rows after `row`, if any.
    #[inline]
    pub(super) fn prefetch_ahead(&self, hashes: &[u64], row: usize) {
        if let Some(&hash) = hashes.get(row + PREFETCH_DISTANCE) {
            self.prefetch(hash);
        }
    }

    #[inline]
    fn prefetch(&self, hash: u64) {
        crate::prefetch::slot(&self.slots, hash as usize & (self.slots.len() - 1));
    }

    /// The group number of `key` (whose hash is `hash`); a new key is inserted with the
    /// number `new_id()` gives.
    #[inline]
    pub(super) fn find_or_insert(&mut self, key: K, hash: u64, new_id: impl FnOnce() -> u32) -> u32 {
        let mask = self.slots.len() - 1;
        let mut slot = hash as usize & mask;
        loop {
            let entry = self.slots[slot];
            if entry.id == EMPTY {
                break;
            }
            if entry.key == key {
                return entry.id;
            }
            slot = (slot + 1) & mask;
        }
        let id = new_id();
        self.slots[slot] = Slot { key, id };
        self.len += 1;
        if self.len * 2 > self.slots.len() {
            self.grow();
        }
        id
    }

    /// Doubles the slots, placing every key again.
    fn grow(&mut self) {
        let doubled = empty_slots(self.slots.len() * 2);
        let old = std::mem::replace(&mut self.slots, doubled);
        let mask = self.slots.len() - 1;
        for entry in old.into_iter().filter(|e| e.id != EMPTY) {
            let mut slot = entry.key.hash() as usize & mask;
            while self.slots[slot].id != EMPTY {
                slot = (slot + 1) & mask;
            }
            self.slots[slot] = entry;
        }
    }

    /// Removes every key, keeping the slots' memory.
    pub(super) fn clear(&mut self) {
        self.slots.fill(Slot { key: K::default(), id: EMPTY });
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbers `keys` in first-seen order, as the key tables do.
    fn number<K: TableKey>(table: &mut GroupTable<K>, keys: &[K], next: &mut u32) -> Vec<u32> {
        let mut hashes = Vec::new();
        table.hash_all(keys, &mut hashes);
        (0..keys.len())
            .map(|row| {
                table.prefetch_ahead(&hashes, row);
                table.find_or_insert(keys[row], hashes[row], || {
                    *next += 1;
                    *next - 1
                })
            })
            .collect()
    }

    #[test]
    fn keys_keep_their_numbers_through_growth_and_clear() {
        let mut table = GroupTable::default();
        let keys: Vec<u64> = (0..5000u64).map(|i| (i * 7919) % 3001).collect();
        let mut next = 0;
        let got = number(&mut table, &keys, &mut next);
        let mut first_seen = std::collections::HashMap::new();
        for (row, &key) in keys.iter().enumerate() {
            let expected = first_seen.len() as u32;
            assert_eq!(got[row], *first_seen.entry(key).or_insert(expected), "row {row}");
        }
        assert_eq!((table.len, next), (3001, 3001));
        assert!(table.slots.len() >= 2 * 3001, "load at most one half");
        table.clear();
        let mut next = 0;
        assert_eq!(number(&mut table, &[42, 7, 42], &mut next), [0, 1, 0], "fresh numbers after clear");
    }

    #[test]
    fn wide_keys_differing_in_either_half_are_different_groups() {
        let mut table = GroupTable::<u128>::default();
        let keys = [1u128, 1 << 64, 1, (1 << 64) | 1, 1 << 64];
        assert_eq!(number(&mut table, &keys, &mut 0), [0, 1, 0, 2, 1]);
    }
}
