//! [`FlagGroups`]: the mapper's table of partial aggregates per (returnflag, linestatus),
//! looked up by borrowed flags (no allocation per row).

use arrow::array::StringArray;
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

/// Partials per group.
#[derive(Debug, Default)]
pub(super) struct FlagGroups {
    partials: HashMap<FlagKey, Partial>,
}

impl FlagGroups {
    /// The partial of group (`flag`, `status`), created empty on first use.
    #[inline]
    pub(super) fn get_mut(&mut self, flag: &str, status: &str) -> &mut Partial {
        // Two lookups on a miss (once per group and split) keep the hit path allocation-free.
        if !self.partials.contains_key(&FlagPair(flag, status)) {
            self.partials.insert((flag.into(), status.into()), Partial::default());
        }
        self.partials.get_mut(&FlagPair(flag, status)).expect("inserted above")
    }

    /// Takes every group: the flags, the statuses and the partials, in the same order.
    pub(super) fn drain(&mut self) -> (StringArray, StringArray, Vec<Partial>) {
        let (mut flags, mut statuses, mut partials) = (Vec::new(), Vec::new(), Vec::new());
        for ((flag, status), partial) in self.partials.drain() {
            flags.push(flag);
            statuses.push(status);
            partials.push(partial);
        }
        (StringArray::from_iter_values(flags), StringArray::from_iter_values(statuses), partials)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrowed_lookups_find_owned_keys() {
        let mut groups = FlagGroups::default();
        groups.get_mut("A", "F").count += 1;
        groups.get_mut("N", "O").count += 2;
        groups.get_mut("A", "F").count += 3;
        groups.get_mut("AF", "").count += 5;
        let (flags, statuses, partials) = groups.drain();
        let mut rows: Vec<(String, String, i64)> = (0..partials.len())
            .map(|i| (flags.value(i).to_owned(), statuses.value(i).to_owned(), partials[i].count))
            .collect();
        rows.sort();
        let expected = [("A", "F", 4), ("AF", "", 5), ("N", "O", 2)];
        assert_eq!(rows, expected.map(|(f, s, n)| (f.to_owned(), s.to_owned(), n)));
        assert!(groups.drain().2.is_empty());
    }
}
