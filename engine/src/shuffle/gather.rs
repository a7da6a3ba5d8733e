//! Gathering rows of several batches into one, and sorted runs whose rows are gathered only
//! when they are read.
//!
//! A map-side flush sorts row numbers, not rows: each partition's run keeps its sorted row
//! numbers and a share of the flush's batches ([`SortedRows`]), and rows are copied once,
//! in sorted order, when the run is read (merged, spilled or written as map output). That
//! saves the flush a copy of its batches (concatenating them) and the memory of a sorted
//! copy held beside its source until the flush ends.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, FixedSizeBinaryArray, RecordBatch, RecordBatchOptions};
use arrow::buffer::Buffer;
use arrow::compute::interleave;
use arrow::datatypes::{DataType, SchemaRef};

use crate::error::{Error, Result};
use crate::storage::{Footprint, footprint};

/// The batches of one map-side flush, numbered as one sequence of rows.
#[derive(Debug)]
pub struct FlushBatches {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    /// `starts[i]`: the number of batch `i`'s first row.
    starts: Vec<u32>,
    rows: usize,
    footprint: Footprint,
}

impl FlushBatches {
    /// Numbers the rows of `batches` (of `schema`) in order; at most `u32::MAX` rows.
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<Self> {
        let mut starts = Vec::with_capacity(batches.len());
        let mut rows = 0usize;
        for batch in &batches {
            starts.push(u32::try_from(rows).map_err(|_| too_many_rows(rows))?);
            rows += batch.num_rows();
        }
        u32::try_from(rows).map_err(|_| too_many_rows(rows))?;
        let footprint = batches.iter().map(footprint).sum();
        Ok(FlushBatches { schema, batches, starts, rows, footprint })
    }

    /// Rows in all batches.
    pub fn num_rows(&self) -> usize {
        self.rows
    }

    /// The rows numbered `rows`, in that order, as one batch.
    pub fn gather(&self, rows: &[u32]) -> Result<RecordBatch> {
        let picks: Vec<(usize, usize)> = rows
            .iter()
            .map(|&row| {
                let batch = self.starts.partition_point(|&start| start <= row) - 1;
                (batch, (row - self.starts[batch]) as usize)
            })
            .collect();
        gather(&self.schema, &self.batches, &picks)
    }
}

fn too_many_rows(rows: usize) -> Error {
    Error::Internal(format!("a map output buffer of {rows} rows has more than 2^32 - 1"))
}

/// A sorted run not yet copied: the numbers of its rows in a flush's batches, in key order.
#[derive(Debug)]
pub struct SortedRows {
    source: Arc<FlushBatches>,
    rows: Vec<u32>,
}

impl SortedRows {
    /// The rows of `source` numbered `rows`, in that order.
    pub fn new(source: Arc<FlushBatches>, rows: Vec<u32>) -> Self {
        SortedRows { source, rows }
    }

    /// Rows in the run.
    pub fn num_rows(&self) -> usize {
        self.rows.len()
    }

    /// Its row numbers plus its share of the flush's batches (the share of their rows it
    /// holds), so the runs of one flush add up to the flush's size.
    pub fn footprint(&self) -> Footprint {
        let numbers = Footprint { owned: 4 * self.rows.len() as u64, mapped: 0 };
        self.source.footprint.share(self.rows.len(), self.source.rows) + numbers
    }

    /// Rows `range` of the run, copied into one batch.
    pub fn gather(&self, range: Range<usize>) -> Result<RecordBatch> {
        self.source.gather(&self.rows[range])
    }
}

/// The rows `picks` (batch index, row) of `batches`, in that order, as one batch.
pub fn gather(schema: &SchemaRef, batches: &[RecordBatch], picks: &[(usize, usize)]) -> Result<RecordBatch> {
    let columns = (0..schema.fields().len())
        .map(|c| {
            let sources: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
            gather_column(&sources, picks)
        })
        .collect::<Result<Vec<_>>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(picks.len()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options)
        .map_err(Error::arrow("gathered rows"))
}

/// One column's rows `picks`. Fixed-size binary columns without nulls (TeraSort's keys and
/// values) are copied value by value: Arrow's `interleave` has no fast path for them and
/// goes row by row through `MutableArrayData`, several times slower.
fn gather_column(sources: &[&dyn Array], picks: &[(usize, usize)]) -> Result<ArrayRef> {
    if let Some(width) = fixed_width_without_nulls(sources) {
        // Each source's values, `width` bytes per row from its first row on.
        let data: Vec<&[u8]> = sources.iter().map(|s| s.as_fixed_size_binary().value_data()).collect();
        let value = |batch: usize, row: usize| &data[batch][row * width..(row + 1) * width];
        let mut values = Vec::with_capacity(picks.len() * width);
        for (i, &(batch, row)) in picks.iter().enumerate() {
            if let Some(&(b, r)) = picks.get(i + PREFETCH_DISTANCE) {
                prefetch(value(b, r));
            }
            values.extend_from_slice(value(batch, row));
        }
        let array = FixedSizeBinaryArray::try_new(width as i32, Buffer::from_vec(values), None)
            .map_err(Error::arrow("gathering fixed-size values"))?;
        return Ok(Arc::new(array));
    }
    interleave(sources, picks).map_err(Error::arrow("gathering rows"))
}

/// How many rows ahead a gather asks for the row it will copy: rows come from anywhere in
/// memory (a sorted run's rows from gigabytes of map output), so each is a cache miss, and
/// asking early overlaps the misses instead of waiting for each in turn.
const PREFETCH_DISTANCE: usize = 16;

/// Asks the CPU to load `value` into its caches, without waiting.
#[allow(unsafe_code)]
pub(super) fn prefetch<T: ?Sized>(value: &T) {
    let (start, len) = ((value as *const T).cast::<u8>(), std::mem::size_of_val(value));
    #[cfg(target_arch = "x86_64")]
    for line in [start, start.wrapping_add(len.saturating_sub(1))] {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch is a hint: it reads nothing into the program and cannot fault,
        // whatever the address. `sse` is part of every x86_64 target.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(line.cast()) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, len);
}

/// The value width when every source is a fixed-size binary column without nulls.
fn fixed_width_without_nulls(sources: &[&dyn Array]) -> Option<usize> {
    let DataType::FixedSizeBinary(width) = sources.first()?.data_type() else { return None };
    let all = sources.iter().all(|s| s.data_type() == sources[0].data_type() && s.null_count() == 0);
    all.then_some(*width as usize)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch(keys: &[&[u8; 3]], labels: &[Option<&str>], n: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::FixedSizeBinary(3), false),
            Field::new("label", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
        ]));
        let k = FixedSizeBinaryArray::try_from_iter(keys.iter()).unwrap();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(k),
            Arc::new(StringArray::from(labels.to_vec())),
            Arc::new(Int64Array::from(n.to_vec())),
        ];
        RecordBatch::try_new(schema, columns).unwrap()
    }

    #[test]
    fn gathers_rows_of_several_batches_in_the_order_asked() {
        let a = batch(&[b"aaa", b"bbb"], &[Some("x"), None], &[1, 2]);
        // A slice: the fixed-size values start past the buffer's first bytes.
        let b = batch(&[b"zzz", b"ccc", b"ddd"], &[Some("q"), Some("y"), Some("z")], &[0, 3, 4]).slice(1, 2);
        let flush = FlushBatches::new(a.schema(), vec![a.clone(), b]).unwrap();
        assert_eq!(flush.num_rows(), 4);
        let run = SortedRows::new(Arc::new(flush), vec![3, 0, 2, 1]);
        let gathered = run.gather(0..4).unwrap();
        let expected =
            batch(&[b"ddd", b"aaa", b"ccc", b"bbb"], &[Some("z"), Some("x"), Some("y"), None], &[4, 1, 3, 2]);
        assert_eq!(gathered, expected);
        assert_eq!(run.gather(1..3).unwrap(), expected.slice(1, 2));
        assert_eq!(run.gather(2..2).unwrap().num_rows(), 0);
    }

    #[test]
    fn the_runs_of_a_flush_share_its_size() {
        let a = batch(&[b"aaa", b"bbb", b"ccc", b"ddd"], &[None; 4], &[1, 2, 3, 4]);
        let flush = Arc::new(FlushBatches::new(a.schema(), vec![a.clone()]).unwrap());
        let runs = [SortedRows::new(flush.clone(), vec![0]), SortedRows::new(flush.clone(), vec![3, 2, 1])];
        let total: u64 = runs.iter().map(|run| run.footprint().total()).sum();
        let source = footprint(&a).total();
        assert!((source..=source + 16 + 4).contains(&total), "{total} bytes against {source}");
    }
}
