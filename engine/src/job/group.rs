//! [`KeyGroup`] and [`Groups`]: the rows of one key, as zero-copy views of a sorted batch.

use std::ops::Range;

use arrow::array::{ArrayRef, RecordBatch};

/// Consecutive key groups of a batch sorted by key: group `i` is rows
/// `starts[i]..starts[i + 1]` (the last ends at the batch's end).
///
/// ```
/// use std::sync::Arc;
///
/// use gristmill::arrow::array::{StringArray, UInt64Array};
/// use gristmill::prelude::*;
///
/// let sorted = RecordBatch::try_from_iter([
///     ("word", Arc::new(StringArray::from(vec!["a", "a", "b"])) as _),
///     ("count", Arc::new(UInt64Array::from(vec![2, 3, 1])) as _),
/// ])?;
/// let groups = Groups::new(&sorted, &[0, 2], &[0]);
/// assert_eq!((groups.len(), groups.is_empty()), (2, false));
/// assert_eq!(groups.range(0), 0..2);
/// assert_eq!(groups.range(1), 2..3);
/// assert_eq!((groups.starts(), groups.key_columns()), (&[0, 2][..], &[0][..]));
/// assert_eq!(groups.batch().num_rows(), 3);
/// assert_eq!(groups.iter().map(|g| g.len()).collect::<Vec<_>>(), [2, 1]);
/// # Ok::<(), gristmill::BoxError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Groups<'a> {
    batch: &'a RecordBatch,
    starts: &'a [usize],
    key_columns: &'a [usize],
}

impl<'a> Groups<'a> {
    /// Groups of `batch` starting at `starts` (ascending; the first is 0 when not empty).
    pub fn new(batch: &'a RecordBatch, starts: &'a [usize], key_columns: &'a [usize]) -> Self {
        Groups { batch, starts, key_columns }
    }

    /// The sorted batch holding every group.
    pub fn batch(&self) -> &'a RecordBatch {
        self.batch
    }

    /// The first row of each group.
    pub fn starts(&self) -> &'a [usize] {
        self.starts
    }

    /// Indices of the key columns.
    pub fn key_columns(&self) -> &'a [usize] {
        self.key_columns
    }

    /// The number of groups.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// True when there is no group.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// The row range of group `i`.
    pub fn range(&self, i: usize) -> Range<usize> {
        let end = self.starts.get(i + 1).copied().unwrap_or(self.batch.num_rows());
        self.starts[i]..end
    }

    /// Each group in order.
    pub fn iter(&self) -> impl Iterator<Item = KeyGroup<'a>> + '_ {
        (0..self.len()).map(|i| KeyGroup {
            batch: self.batch,
            rows: self.range(i),
            key_columns: self.key_columns,
        })
    }
}

/// Every row of one key: a view of rows `rows` of a sorted batch.
///
/// ```
/// use std::sync::Arc;
///
/// use gristmill::arrow::array::{AsArray, StringArray, UInt64Array};
/// use gristmill::arrow::datatypes::UInt64Type;
/// use gristmill::prelude::*;
///
/// let sorted = RecordBatch::try_from_iter([
///     ("word", Arc::new(StringArray::from(vec!["a", "a", "b"])) as _),
///     ("count", Arc::new(UInt64Array::from(vec![2, 3, 1])) as _),
/// ])?;
/// let groups = Groups::new(&sorted, &[0, 2], &[0]);
/// let first = groups.iter().next().unwrap();
/// assert_eq!((first.len(), first.is_empty()), (2, false));
/// assert_eq!(first.key().column(0).as_string::<i32>().value(0), "a");
/// assert_eq!(first.column(1).as_primitive::<UInt64Type>().values(), &[2, 3]);
/// assert_eq!(first.rows().num_rows(), 2);
/// assert_eq!(first.batch_and_range().1, 0..2);
/// # Ok::<(), gristmill::BoxError>(())
/// ```
#[derive(Clone, Debug)]
pub struct KeyGroup<'a> {
    batch: &'a RecordBatch,
    rows: Range<usize>,
    key_columns: &'a [usize],
}

impl<'a> KeyGroup<'a> {
    /// The number of rows with this key.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Never true: a group has at least one row.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The group's rows as a batch (zero-copy slice).
    pub fn rows(&self) -> RecordBatch {
        self.batch.slice(self.rows.start, self.rows.len())
    }

    /// Column `i` of the group's rows (zero-copy slice).
    pub fn column(&self, i: usize) -> ArrayRef {
        self.batch.column(i).slice(self.rows.start, self.rows.len())
    }

    /// The sorted batch the group is part of, and the group's row range in it.
    pub fn batch_and_range(&self) -> (&'a RecordBatch, Range<usize>) {
        (self.batch, self.rows.clone())
    }

    /// The key columns' values: one row (the group's first).
    pub fn key(&self) -> RecordBatch {
        let key = self.batch.project(self.key_columns).expect("key columns exist");
        key.slice(self.rows.start, 1)
    }
}
