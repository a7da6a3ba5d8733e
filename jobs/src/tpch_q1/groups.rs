//! [`FlagGroups`]: the mapper's table of partial aggregates per (returnflag, linestatus).
//!
//! Flags arrive as `Utf8View`. A view of a string of at most 12 bytes holds the whole
//! string (length and zero-padded bytes, as arrow's own comparison kernels rely on), so for
//! short flags (every TPC-H flag is one byte) the pair of 128-bit views *is* the key: a row
//! costs one fixed-size hash lookup, with no string access. Longer flags take a second table
//! keyed by the strings, looked up by borrowed `&str`s (no allocation per row).

use arrow::array::{MAX_INLINE_VIEW_LEN, StringArray, StringViewArray};
use hashbrown::{Equivalent, HashMap};

use super::Partial;

/// The owned key of a group: (l_returnflag, l_linestatus).
type FlagKey = (Box<str>, Box<str>);

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
    /// Slots of keys whose two flags are inline in their views.
    inline: HashMap<(u128, u128), usize>,
    /// Slots of the other keys.
    long: HashMap<FlagKey, usize>,
    keys: Vec<FlagKey>,
    partials: Vec<Partial>,
}

impl FlagGroups {
    /// The partial of row `row`'s group, created empty on first use.
    #[inline]
    pub(super) fn partial_mut(
        &mut self,
        flags: &StringViewArray,
        statuses: &StringViewArray,
        row: usize,
    ) -> &mut Partial {
        let views = (flags.views()[row], statuses.views()[row]);
        let inline = |view: u128| view as u32 <= MAX_INLINE_VIEW_LEN;
        let slot = if inline(views.0) && inline(views.1) {
            match self.inline.get(&views) {
                Some(&slot) => slot,
                None => {
                    let slot = self.add(flags.value(row), statuses.value(row));
                    self.inline.insert(views, slot);
                    slot
                }
            }
        } else {
            let pair = FlagPair(flags.value(row), statuses.value(row));
            match self.long.get(&pair) {
                Some(&slot) => slot,
                None => {
                    let slot = self.add(pair.0, pair.1);
                    self.long.insert((pair.0.into(), pair.1.into()), slot);
                    slot
                }
            }
        };
        &mut self.partials[slot]
    }

    fn add(&mut self, flag: &str, status: &str) -> usize {
        self.keys.push((flag.into(), status.into()));
        self.partials.push(Partial::default());
        self.partials.len() - 1
    }

    /// Takes every group: the flags, the statuses and the partials, in the same order.
    pub(super) fn drain(&mut self) -> (StringArray, StringArray, Vec<Partial>) {
        self.inline.clear();
        self.long.clear();
        let keys = std::mem::take(&mut self.keys);
        let flags = StringArray::from_iter_values(keys.iter().map(|k| &k.0));
        let statuses = StringArray::from_iter_values(keys.iter().map(|k| &k.1));
        (flags, statuses, std::mem::take(&mut self.partials))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_flags_find_their_groups() {
        let long = "a flag longer than twelve bytes";
        let flags = StringViewArray::from(vec!["A", "N", "A", "AF", long, long, "A"]);
        let statuses = StringViewArray::from(vec!["F", "O", "F", "", "x", "x", "long status value!"]);
        let mut groups = FlagGroups::default();
        for (row, n) in [1, 2, 3, 5, 7, 11, 13].into_iter().enumerate() {
            groups.partial_mut(&flags, &statuses, row).count += n;
        }
        let (flags, statuses, partials) = groups.drain();
        let rows: Vec<(&str, &str, i64)> =
            (0..partials.len()).map(|i| (flags.value(i), statuses.value(i), partials[i].count)).collect();
        let expected =
            [("A", "F", 4), ("N", "O", 2), ("AF", "", 5), (long, "x", 18), ("A", "long status value!", 13)];
        assert_eq!(rows, expected);
        assert!(groups.drain().2.is_empty());
    }
}
