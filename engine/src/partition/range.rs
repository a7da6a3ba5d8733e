//! Range partitioning from a sample of keys (Hadoop's TotalOrderPartitioner, Spark's
//! RangePartitioner): `R - 1` split points cut the sorted sample into `R` equal parts, and
//! a key goes to the partition of the first split point above it, so partition `i`'s keys
//! all precede partition `i + 1`'s and equal keys share a partition.

use arrow::array::ArrayRef;
use arrow::datatypes::DataType;
use arrow::row::{OwnedRow, RowConverter, Rows, SortField};

use super::Partitioner;
use crate::error::{Error, Result};

/// Routes keys by comparing them with sampled split points.
///
/// The engine builds one for jobs that ask for [`Job::total_order`](crate::job::Job::total_order);
/// split points travel to tasks as bytes.
///
/// ```
/// use std::sync::Arc;
///
/// use gristmill::arrow::array::{ArrayRef, Int64Array};
/// use gristmill::arrow::datatypes::DataType;
/// use gristmill::partition::{Partitioner, RangePartitioner};
///
/// let sample: ArrayRef = Arc::new(Int64Array::from((0..100).collect::<Vec<i64>>()));
/// let partitioner = RangePartitioner::from_sample(&[DataType::Int64], &[sample], 4)?;
/// assert_eq!(partitioner.split_points(), 3);
/// let shipped = RangePartitioner::from_bytes(&[DataType::Int64], &partitioner.to_bytes())?;
/// let keys: ArrayRef = Arc::new(Int64Array::from(vec![-5, 30, 60, 1000]));
/// let mut partitions = Vec::new();
/// shipped.partition(&[keys], 4, &mut partitions)?;
/// assert_eq!(partitions, [0, 1, 2, 3]);
/// # Ok::<(), gristmill::Error>(())
/// ```
#[derive(Debug)]
pub struct RangePartitioner {
    converter: RowConverter,
    split_points: Vec<OwnedRow>,
}

impl RangePartitioner {
    /// Split points for `partitions` partitions from `sample`, the key columns (of types
    /// `key_types`) of sampled rows.
    pub fn from_sample(key_types: &[DataType], sample: &[ArrayRef], partitions: usize) -> Result<Self> {
        let fields = key_types.iter().map(|t| SortField::new(t.clone())).collect();
        let converter = RowConverter::new(fields).map_err(Error::arrow("range partitioner"))?;
        let rows = converter.convert_columns(sample).map_err(Error::arrow("encoding sampled keys"))?;
        let mut sorted: Vec<_> = rows.iter().collect();
        sorted.sort_unstable();
        let n = sorted.len();
        let mut split_points: Vec<OwnedRow> = Vec::with_capacity(partitions.saturating_sub(1));
        if n > 0 {
            for i in 1..partitions {
                let point = sorted[(i * n / partitions).min(n - 1)].owned();
                split_points.push(point);
            }
        }
        Ok(RangePartitioner { converter, split_points })
    }

    /// The split points in Arrow's row format, to ship to task processes.
    pub fn to_bytes(&self) -> Vec<Vec<u8>> {
        self.split_points.iter().map(|p| p.row().as_ref().to_vec()).collect()
    }

    /// A partitioner from split points made by [`RangePartitioner::to_bytes`] for keys of
    /// `key_types`.
    pub fn from_bytes(key_types: &[DataType], points: &[Vec<u8>]) -> Result<Self> {
        let fields = key_types.iter().map(|t| SortField::new(t.clone())).collect();
        let converter = RowConverter::new(fields).map_err(Error::arrow("range partitioner"))?;
        let parser = converter.parser();
        let split_points = points.iter().map(|bytes| parser.parse(bytes).owned()).collect();
        Ok(RangePartitioner { converter, split_points })
    }

    /// The number of split points (`partitions - 1` when the sample was not empty).
    pub fn split_points(&self) -> usize {
        self.split_points.len()
    }
}

impl Partitioner for RangePartitioner {
    fn partition(&self, keys: &[ArrayRef], num_partitions: usize, out: &mut Vec<u32>) -> Result<()> {
        let rows = self.converter.convert_columns(keys).map_err(Error::arrow("encoding keys"))?;
        self.route(&rows, num_partitions, out);
        Ok(())
    }

    fn partition_encoded(&self, rows: &Rows, num_partitions: usize, out: &mut Vec<u32>) -> Result<bool> {
        self.route(rows, num_partitions, out);
        Ok(true)
    }
}

impl RangePartitioner {
    /// The partition of every encoded key: the number of split points at or below it.
    /// Compared as bytes, which is how rows of one encoding order.
    fn route(&self, rows: &Rows, num_partitions: usize, out: &mut Vec<u32>) {
        out.clear();
        let last = num_partitions.saturating_sub(1) as u32;
        out.extend(rows.iter().map(|row| {
            let key = row.as_ref();
            let p = self.split_points.partition_point(|point| point.row().as_ref() <= key) as u32;
            p.min(last)
        }));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::UInt64Array;

    use super::*;

    #[test]
    fn keys_go_to_ordered_ranges_and_equal_keys_together() {
        let sample: ArrayRef = Arc::new(UInt64Array::from((0..1000).rev().collect::<Vec<u64>>()));
        let p = RangePartitioner::from_sample(&[DataType::UInt64], &[sample], 4).unwrap();
        assert_eq!(p.split_points(), 3);
        let keys: ArrayRef = Arc::new(UInt64Array::from(vec![0, 249, 250, 251, 500, 999, 5000, 250]));
        let mut out = Vec::new();
        p.partition(&[keys], 4, &mut out).unwrap();
        assert_eq!(out, vec![0, 0, 1, 1, 2, 3, 3, 1]);
    }

    #[test]
    fn keys_encoded_as_the_shuffle_encodes_them_route_as_the_keys_do() {
        let sample: ArrayRef = Arc::new(UInt64Array::from((0..1000).collect::<Vec<u64>>()));
        let p = RangePartitioner::from_sample(&[DataType::UInt64], &[sample], 4).unwrap();
        let keys: ArrayRef = Arc::new(UInt64Array::from(vec![999, 0, 250, 251, 249, 750, 5000]));
        let encoder = RowConverter::new(vec![SortField::new(DataType::UInt64)]).unwrap();
        let rows = encoder.convert_columns(std::slice::from_ref(&keys)).unwrap();
        let (mut from_keys, mut from_rows) = (Vec::new(), Vec::new());
        p.partition(&[keys], 4, &mut from_keys).unwrap();
        assert!(p.partition_encoded(&rows, 4, &mut from_rows).unwrap());
        assert_eq!(from_rows, from_keys);
        assert_eq!(from_keys, vec![3, 0, 1, 1, 0, 3, 3]);
    }

    #[test]
    fn an_empty_sample_sends_everything_to_partition_zero() {
        let sample: ArrayRef = Arc::new(UInt64Array::from(Vec::<u64>::new()));
        let p = RangePartitioner::from_sample(&[DataType::UInt64], &[sample], 3).unwrap();
        let keys: ArrayRef = Arc::new(UInt64Array::from(vec![7, 8]));
        let mut out = Vec::new();
        p.partition(&[keys], 3, &mut out).unwrap();
        assert_eq!(out, vec![0, 0]);
    }
}
