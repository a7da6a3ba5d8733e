//! [`KeyGroup`] and [`Groups`]: the rows of one key, as zero-copy views of a sorted batch.

use std::ops::Range;

use arrow::array::{ArrayRef, RecordBatch};

/// Consecutive key groups of a batch sorted by key: group `i` is rows
/// `starts[i]..starts[i + 1]` (the last ends at the batch's end).
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
