//! Partitioners: which reduce partition each map-output row goes to.
//!
//! The default [`HashPartitioner`] hashes the key's value bytes with XXH3 and a fixed seed,
//! so a key lands in the same partition in every process, on every machine and in every run
//! (the golden values in the tests pin it).

mod range;

pub use range::RangePartitioner;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type,
    Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::row::Rows;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::error::{Error, Result};

/// The seed of the first key column's hash; later columns are seeded with the running hash.
const HASH_SEED: u64 = 0x6772_6973_746d_696c; // "gristmil"
/// What a null hashes as (with the running hash as seed).
const NULL_MARKER: &[u8] = b"\xffnull";

/// Routes rows to reduce partitions by their key columns.
///
/// A job names its own in [`Job::partitioner`](crate::job::Job::partitioner); it must route
/// a key to the same partition in every process. Routing words by their first letter, so
/// each part file holds a range of the alphabet:
///
/// ```
/// use std::sync::Arc;
///
/// use gristmill::arrow::array::{ArrayRef, AsArray, StringArray};
/// use gristmill::partition::Partitioner;
///
/// struct ByFirstLetter;
///
/// impl Partitioner for ByFirstLetter {
///     fn partition(&self, keys: &[ArrayRef], n: usize, out: &mut Vec<u32>) -> gristmill::Result<()> {
///         out.clear();
///         for word in keys[0].as_string::<i32>().iter() {
///             let first = word.and_then(|w| w.bytes().next()).unwrap_or(0);
///             out.push((usize::from(first.to_ascii_lowercase().saturating_sub(b'a')).min(25) * n / 26) as u32);
///         }
///         Ok(())
///     }
/// }
///
/// let words: ArrayRef = Arc::new(StringArray::from(vec!["apple", "melon", "zebra"]));
/// let mut partitions = Vec::new();
/// ByFirstLetter.partition(&[words], 2, &mut partitions)?;
/// assert_eq!(partitions, [0, 0, 1]);
/// # Ok::<(), gristmill::Error>(())
/// ```
pub trait Partitioner: Send + Sync {
    /// Writes the partition (in `0..num_partitions`) of every row of `keys` into `out`.
    fn partition(&self, keys: &[ArrayRef], num_partitions: usize, out: &mut Vec<u32>) -> Result<()>;

    /// Like [`Partitioner::partition`], from the keys already encoded in Arrow's row format
    /// the way the shuffle sorts them (a [`arrow::row::SortField::new`] per key column), if
    /// this partitioner routes encoded keys; returns whether it wrote `out`. Saves a
    /// partitioner that encodes keys itself (the range partitioner) encoding them again.
    fn partition_encoded(&self, rows: &Rows, num_partitions: usize, out: &mut Vec<u32>) -> Result<bool> {
        let _ = (rows, num_partitions, out);
        Ok(false)
    }
}

/// Stable hash partitioning: `partition = (hash * n) >> 64` of the key's XXH3 hash.
///
/// ```
/// use std::sync::Arc;
///
/// use gristmill::arrow::array::{ArrayRef, StringArray};
/// use gristmill::partition::{HashPartitioner, Partitioner};
///
/// let words: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "a"]));
/// let mut partitions = Vec::new();
/// HashPartitioner.partition(&[words], 4, &mut partitions)?;
/// assert_eq!(partitions[0], partitions[2], "equal keys, one partition");
/// assert!(partitions.iter().all(|&p| p < 4));
/// # Ok::<(), gristmill::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct HashPartitioner;

impl Partitioner for HashPartitioner {
    fn partition(&self, keys: &[ArrayRef], num_partitions: usize, out: &mut Vec<u32>) -> Result<()> {
        let mut hashes = Vec::new();
        hash_rows(keys, &mut hashes)?;
        out.clear();
        out.extend(hashes.iter().map(|&h| partition_of_hash(h, num_partitions)));
        Ok(())
    }
}

/// Hash partitioning on the first `columns` key columns only: the partitioner of a job
/// whose grouping key is narrower than its sort key ([`crate::job::KeyedSchema::group_by`]),
/// so every row of a group reaches the same reducer. Its hash is the [`HashPartitioner`]'s
/// over those columns.
///
/// ```
/// use std::sync::Arc;
///
/// use gristmill::arrow::array::{ArrayRef, Int64Array};
/// use gristmill::partition::{GroupingPartitioner, HashPartitioner, Partitioner};
///
/// // Keys (user, time): every click of a user goes where the user alone would.
/// let users: ArrayRef = Arc::new(Int64Array::from(vec![7, 7, 9]));
/// let times: ArrayRef = Arc::new(Int64Array::from(vec![100, 5, 100]));
/// let (mut by_user, mut by_key) = (Vec::new(), Vec::new());
/// GroupingPartitioner { columns: 1 }.partition(&[users.clone(), times], 8, &mut by_user)?;
/// HashPartitioner.partition(&[users], 8, &mut by_key)?;
/// assert_eq!(by_user, by_key);
/// # Ok::<(), gristmill::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct GroupingPartitioner {
    /// How many leading key columns are hashed.
    pub columns: usize,
}

impl Partitioner for GroupingPartitioner {
    fn partition(&self, keys: &[ArrayRef], num_partitions: usize, out: &mut Vec<u32>) -> Result<()> {
        HashPartitioner.partition(&keys[..self.columns.min(keys.len())], num_partitions, out)
    }
}

/// The partitioner of a job that names none and does not ask for total order: the hash of
/// the grouping key (the whole key unless the job groups by a prefix of it).
///
/// ```
/// use std::sync::Arc;
///
/// use gristmill::arrow::array::{ArrayRef, Int64Array};
/// use gristmill::partition::default_partitioner;
/// use gristmill::prelude::*;
///
/// let keyed = KeyedSchema::new([("user", DataType::Int64), ("ts", DataType::Int64)]).key(["user", "ts"]).group_by(1);
/// let partitioner = default_partitioner(&keyed)?;
/// let (users, times): (ArrayRef, ArrayRef) = (Arc::new(Int64Array::from(vec![3, 3])), Arc::new(Int64Array::from(vec![1, 2])));
/// let mut partitions = Vec::new();
/// partitioner.partition(&[users, times], 16, &mut partitions)?;
/// assert_eq!(partitions[0], partitions[1], "one user, one partition");
/// # Ok::<(), gristmill::Error>(())
/// ```
pub fn default_partitioner(keyed: &crate::job::KeyedSchema) -> Result<std::sync::Arc<dyn Partitioner>> {
    Ok(match keyed.grouping_columns()? {
        Some(columns) => std::sync::Arc::new(GroupingPartitioner { columns }),
        None => std::sync::Arc::new(HashPartitioner),
    })
}

/// Maps a 64-bit hash onto `0..n` without a division (Lemire's multiply-shift).
///
/// ```
/// use gristmill::partition::partition_of_hash;
///
/// assert_eq!(partition_of_hash(0, 10), 0);
/// assert_eq!(partition_of_hash(u64::MAX, 10), 9);
/// assert_eq!(partition_of_hash(u64::MAX / 2, 10), 4);
/// ```
pub fn partition_of_hash(hash: u64, n: usize) -> u32 {
    ((u128::from(hash) * n as u128) >> 64) as u32
}

/// The stable hash of every row of `columns` (the key's columns, in order).
///
/// ```
/// use std::sync::Arc;
///
/// use gristmill::arrow::array::{ArrayRef, Int64Array, StringArray};
/// use gristmill::partition::hash_rows;
///
/// let countries: ArrayRef = Arc::new(StringArray::from(vec!["fr", "fr", "fr"]));
/// let years: ArrayRef = Arc::new(Int64Array::from(vec![2024, 2025, 2024]));
/// let mut hashes = Vec::new();
/// hash_rows(&[countries, years], &mut hashes)?;
/// assert_eq!(hashes[0], hashes[2]);
/// assert_ne!(hashes[0], hashes[1]);
/// # Ok::<(), gristmill::Error>(())
/// ```
pub fn hash_rows(columns: &[ArrayRef], out: &mut Vec<u64>) -> Result<()> {
    let rows = columns.first().map_or(0, |c| c.len());
    out.clear();
    out.resize(rows, HASH_SEED);
    for column in columns {
        hash_column(column.as_ref(), out)?;
    }
    Ok(())
}

fn hash_column(column: &dyn Array, hashes: &mut [u64]) -> Result<()> {
    macro_rules! each_value {
        ($values:expr) => {{
            for (i, h) in hashes.iter_mut().enumerate() {
                *h = if column.is_null(i) {
                    xxh3_64_with_seed(NULL_MARKER, *h)
                } else {
                    let value = $values(i);
                    xxh3_64_with_seed(AsRef::<[u8]>::as_ref(&value), *h)
                };
            }
        }};
    }
    macro_rules! primitive {
        ($t:ty) => {{
            let a = column.as_primitive::<$t>();
            each_value!(|i| a.value(i).to_le_bytes())
        }};
    }
    match column.data_type() {
        DataType::Utf8 => {
            let a = column.as_string::<i32>();
            each_value!(|i| a.value(i).as_bytes())
        }
        DataType::LargeUtf8 => {
            let a = column.as_string::<i64>();
            each_value!(|i| a.value(i).as_bytes())
        }
        DataType::Utf8View => {
            let a = column.as_string_view();
            each_value!(|i| a.value(i).as_bytes())
        }
        DataType::Binary => {
            let a = column.as_binary::<i32>();
            each_value!(|i| a.value(i))
        }
        DataType::LargeBinary => {
            let a = column.as_binary::<i64>();
            each_value!(|i| a.value(i))
        }
        DataType::FixedSizeBinary(_) => {
            let a = column.as_fixed_size_binary();
            each_value!(|i| a.value(i))
        }
        DataType::Boolean => {
            let a = column.as_boolean();
            each_value!(|i| [u8::from(a.value(i))])
        }
        DataType::Int8 => primitive!(Int8Type),
        DataType::Int16 => primitive!(Int16Type),
        DataType::Int32 => primitive!(Int32Type),
        DataType::Int64 => primitive!(Int64Type),
        DataType::UInt8 => primitive!(UInt8Type),
        DataType::UInt16 => primitive!(UInt16Type),
        DataType::UInt32 => primitive!(UInt32Type),
        DataType::UInt64 => primitive!(UInt64Type),
        DataType::Date32 => primitive!(Date32Type),
        DataType::Date64 => primitive!(Date64Type),
        DataType::Decimal128(_, _) => primitive!(Decimal128Type),
        DataType::Float32 => {
            let a = column.as_primitive::<Float32Type>();
            each_value!(|i| canonical_f32(a.value(i)).to_le_bytes())
        }
        DataType::Float64 => {
            let a = column.as_primitive::<Float64Type>();
            each_value!(|i| canonical_f64(a.value(i)).to_le_bytes())
        }
        other => {
            return Err(Error::InvalidJob(format!("key columns of type {other} cannot be hash partitioned")));
        }
    }
    Ok(())
}

/// -0.0 and 0.0 are one key, and so is every NaN.
fn canonical_f64(v: f64) -> u64 {
    if v == 0.0 {
        0
    } else if v.is_nan() {
        f64::NAN.to_bits()
    } else {
        v.to_bits()
    }
}

fn canonical_f32(v: f32) -> u32 {
    if v == 0.0 {
        0
    } else if v.is_nan() {
        f32::NAN.to_bits()
    } else {
        v.to_bits()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray, UInt64Array};
    use proptest::prelude::*;

    use super::*;

    fn partitions(keys: ArrayRef, n: usize) -> Vec<u32> {
        let mut out = Vec::new();
        HashPartitioner.partition(&[keys], n, &mut out).unwrap();
        out
    }

    /// Pinned values: if these change, data written by older versions would be routed
    /// differently, so a change here is a compatibility break.
    #[test]
    fn golden_values() {
        let words: ArrayRef = Arc::new(StringArray::from(vec!["the", "quick", "brown", "fox", ""]));
        let mut hashes = Vec::new();
        hash_rows(std::slice::from_ref(&words), &mut hashes).unwrap();
        assert_eq!(hashes, GOLDEN_WORD_HASHES);
        assert_eq!(partitions(words, 7), GOLDEN_WORD_PARTITIONS_OF_7);
        let numbers: ArrayRef = Arc::new(UInt64Array::from(vec![0, 1, 42, u64::MAX]));
        assert_eq!(partitions(numbers, 16), GOLDEN_NUMBER_PARTITIONS_OF_16);
    }

    // Computed independently with Python's `xxhash` package:
    // xxh3_64_intdigest(value, seed=0x6772_6973_746d_696c), partition = (hash * n) >> 64.
    const GOLDEN_WORD_HASHES: [u64; 5] = [
        5959980510057310925,
        4911057132760356271,
        815484524289426527,
        14529189581604710259,
        13875638287642103547,
    ];
    const GOLDEN_WORD_PARTITIONS_OF_7: [u32; 5] = [2, 1, 0, 5, 5];
    const GOLDEN_NUMBER_PARTITIONS_OF_16: [u32; 4] = [10, 13, 4, 3];

    #[test]
    fn nulls_and_multi_column_keys_hash() {
        let a: ArrayRef = Arc::new(StringArray::from(vec![Some("x"), None, Some("x")]));
        let b: ArrayRef = Arc::new(Int64Array::from(vec![1, 1, 2]));
        let mut h = Vec::new();
        hash_rows(&[a, b], &mut h).unwrap();
        assert_eq!(h.len(), 3);
        assert_ne!(h[0], h[1]);
        assert_ne!(h[0], h[2]);
    }

    #[test]
    fn float_zeroes_are_one_key() {
        assert_eq!(canonical_f64(0.0), canonical_f64(-0.0));
        assert_eq!(canonical_f64(f64::NAN), canonical_f64(-f64::NAN));
    }

    proptest! {
        /// Every key goes to exactly one partition in range, and equal keys to the same one.
        #[test]
        fn each_key_to_one_partition(words in prop::collection::vec("[a-c]{0,3}", 1..200), n in 1usize..64) {
            let array: ArrayRef = Arc::new(StringArray::from(words.clone()));
            let parts = partitions(array.clone(), n);
            prop_assert_eq!(parts.len(), words.len());
            let again = partitions(array, n);
            prop_assert_eq!(&parts, &again);
            for (i, w) in words.iter().enumerate() {
                prop_assert!((parts[i] as usize) < n);
                let first = words.iter().position(|x| x == w).unwrap();
                prop_assert_eq!(parts[i], parts[first]);
            }
        }
    }
}
