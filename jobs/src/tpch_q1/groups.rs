//! [`FlagGroups`]: the mapper's table of partial aggregates per (returnflag, linestatus).
//!
//! Flags arrive as dictionaries (`Int32` keys into a column chunk's few distinct strings;
//! Parquet files store them dictionary-encoded, so the decoder hands the indices over).
//! Per batch, each pair of dictionary entries is looked up once, in a grid indexed by the
//! two keys; a row then costs one grid read, with no hashing and no string access. Pairs
//! of dictionaries too large for a grid (a writer that did not dictionary-encode) fall
//! back to one hash lookup per row by borrowed `&str`s (no allocation per row).

use arrow::array::{Array, AsArray, DictionaryArray, StringArray};
use arrow::datatypes::Int32Type;
use gristmill::prelude::JobResult;
use hashbrown::{Equivalent, HashMap};

use super::Partial;

/// The owned key of a group: (l_returnflag, l_linestatus).
type FlagKey = (Box<str>, Box<str>);

/// The most grid cells per batch (pairs of dictionary entries) before falling back to
/// per-row lookups.
const MAX_GRID_CELLS: usize = 1 << 16;

/// A grid cell not looked up yet.
const UNSEEN: u32 = u32::MAX;

/// A borrowed key; hashes exactly like [`FlagKey`] (fields in order, as a tuple does).
#[derive(Hash)]
struct FlagPair<'a>(&'a str, &'a str);

impl Equivalent<FlagKey> for FlagPair<'_> {
    fn equivalent(&self, key: &FlagKey) -> bool {
        *key.0 == *self.0 && *key.1 == *self.1
    }
}

/// Partials per group, in the order groups were first seen.
#[derive(Debug, Default)]
pub(super) struct FlagGroups {
    slots: HashMap<FlagKey, u32>,
    keys: Vec<FlagKey>,
    partials: Vec<Partial>,
    /// This batch's slot per (flag entry, status entry) pair.
    grid: Vec<u32>,
}

impl FlagGroups {
    /// Sets `out` to the slot of each row's group, creating groups on first sight.
    pub(super) fn slots_of(
        &mut self,
        flags: &DictionaryArray<Int32Type>,
        statuses: &DictionaryArray<Int32Type>,
        out: &mut Vec<u32>,
    ) -> JobResult<()> {
        let flag_values = flags.values().as_string_opt::<i32>().ok_or("flags must be Utf8 dictionaries")?;
        let status_values =
            statuses.values().as_string_opt::<i32>().ok_or("statuses must be Utf8 dictionaries")?;
        let (flag_keys, status_keys) = (flags.keys().values(), statuses.keys().values());
        out.clear();
        let width = status_values.len();
        if flag_values.len() * width > MAX_GRID_CELLS {
            for (&f, &s) in flag_keys.iter().zip(status_keys.iter()) {
                out.push(self.slot(flag_values.value(f as usize), status_values.value(s as usize)));
            }
            return Ok(());
        }
        self.grid.clear();
        self.grid.resize(flag_values.len() * width, UNSEEN);
        for (&f, &s) in flag_keys.iter().zip(status_keys.iter()) {
            let cell = f as usize * width + s as usize;
            if self.grid[cell] == UNSEEN {
                self.grid[cell] = self.slot(flag_values.value(f as usize), status_values.value(s as usize));
            }
            out.push(self.grid[cell]);
        }
        Ok(())
    }

    /// The partials, indexed by slot.
    pub(super) fn partials_mut(&mut self) -> &mut [Partial] {
        &mut self.partials
    }

    fn slot(&mut self, flag: &str, status: &str) -> u32 {
        if let Some(&slot) = self.slots.get(&FlagPair(flag, status)) {
            return slot;
        }
        let slot = self.partials.len() as u32;
        self.keys.push((flag.into(), status.into()));
        self.partials.push(Partial::default());
        self.slots.insert((flag.into(), status.into()), slot);
        slot
    }

    /// Takes every group: the flags, the statuses and the partials, in the same order.
    pub(super) fn drain(&mut self) -> (StringArray, StringArray, Vec<Partial>) {
        self.slots.clear();
        let keys = std::mem::take(&mut self.keys);
        let flags = StringArray::from_iter_values(keys.iter().map(|k| &k.0));
        let statuses = StringArray::from_iter_values(keys.iter().map(|k| &k.1));
        (flags, statuses, std::mem::take(&mut self.partials))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dictionary(values: &[&str]) -> DictionaryArray<Int32Type> {
        values.iter().copied().collect()
    }

    #[test]
    fn rows_find_their_groups_across_batches_with_different_dictionaries() {
        let long = "a flag longer than twelve bytes";
        let mut groups = FlagGroups::default();
        let mut slots = Vec::new();
        let flags = dictionary(&["A", "N", "A", "AF", long, long, "A"]);
        let statuses = dictionary(&["F", "O", "F", "", "x", "x", "long status value!"]);
        groups.slots_of(&flags, &statuses, &mut slots).unwrap();
        assert_eq!(slots, [0, 1, 0, 2, 3, 3, 4]);
        // Another batch: other dictionaries (other entry order), the same groups.
        let flags = dictionary(&["N", "A", "R"]);
        let statuses = dictionary(&["O", "F", "F"]);
        groups.slots_of(&flags, &statuses, &mut slots).unwrap();
        assert_eq!(slots, [1, 0, 5]);
        for (row, n) in [1, 2, 3].into_iter().enumerate() {
            groups.partials_mut()[slots[row] as usize].count += n;
        }
        let (flags, statuses, partials) = groups.drain();
        let rows: Vec<(&str, &str, i64)> =
            (0..partials.len()).map(|i| (flags.value(i), statuses.value(i), partials[i].count)).collect();
        let expected = [
            ("A", "F", 2),
            ("N", "O", 1),
            ("AF", "", 0),
            (long, "x", 0),
            ("A", "long status value!", 0),
            ("R", "F", 3),
        ];
        assert_eq!(rows, expected);
        assert!(groups.drain().2.is_empty());
    }

    #[test]
    fn dictionaries_too_large_for_a_grid_look_up_each_row() {
        let many: Vec<String> = (0..300).map(|i| format!("flag {i}")).collect();
        let flags: DictionaryArray<Int32Type> = many.iter().map(String::as_str).collect();
        let statuses: DictionaryArray<Int32Type> = many.iter().rev().map(String::as_str).collect();
        assert!(flags.values().len() * statuses.values().len() > MAX_GRID_CELLS);
        let mut groups = FlagGroups::default();
        let mut slots = Vec::new();
        groups.slots_of(&flags, &statuses, &mut slots).unwrap();
        assert_eq!(slots, (0..300).collect::<Vec<u32>>());
        groups.slots_of(&flags.slice(5, 2), &statuses.slice(5, 2), &mut slots).unwrap();
        assert_eq!(slots, [5, 6]);
    }
}
