//! Reduce side of the shuffle: a k-way merge of sorted runs into chunks of whole key groups.

use arrow::array::{Array, RecordBatch};
use arrow::compute::interleave;
use arrow::datatypes::SchemaRef;
use arrow::row::{Row, Rows};

use super::KeyEncoder;
use crate::error::{Error, Result};

/// A chunk of merged rows, sorted by key, holding whole groups: group `i` starts at
/// `starts[i]`.
#[derive(Debug)]
pub struct GroupedChunk {
    /// The rows.
    pub batch: RecordBatch,
    /// The first row of each group.
    pub starts: Vec<usize>,
}

/// Merges sorted runs of one partition, yielding chunks cut at group boundaries. Rows of
/// equal keys come in run order, so the order values reach a reducer is deterministic.
pub struct RunMerger {
    schema: SchemaRef,
    runs: Vec<RecordBatch>,
    keys: Vec<Rows>,
    positions: Vec<usize>,
    /// A binary min-heap of run indices, ordered by (current key, run index).
    heap: Vec<usize>,
    chunk_rows: usize,
}

impl RunMerger {
    /// A merger of `runs` (each sorted by the encoder's key columns).
    pub fn new(
        schema: SchemaRef,
        encoder: &KeyEncoder,
        runs: Vec<RecordBatch>,
        chunk_rows: usize,
    ) -> Result<Self> {
        let runs: Vec<RecordBatch> = runs.into_iter().filter(|r| r.num_rows() > 0).collect();
        let keys = runs.iter().map(|r| encoder.encode(r)).collect::<Result<Vec<_>>>()?;
        let mut merger = RunMerger {
            schema,
            positions: vec![0; runs.len()],
            heap: Vec::with_capacity(runs.len()),
            runs,
            keys,
            chunk_rows: chunk_rows.max(1),
        };
        for run in 0..merger.runs.len() {
            merger.heap.push(run);
            merger.sift_up(merger.heap.len() - 1);
        }
        Ok(merger)
    }

    fn key(&self, run: usize) -> Row<'_> {
        self.keys[run].row(self.positions[run])
    }

    fn less(&self, a: usize, b: usize) -> bool {
        (self.key(a), a) < (self.key(b), b)
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if !self.less(self.heap[i], self.heap[parent]) {
                break;
            }
            self.heap.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let (left, right) = (2 * i + 1, 2 * i + 2);
            let mut smallest = i;
            if left < self.heap.len() && self.less(self.heap[left], self.heap[smallest]) {
                smallest = left;
            }
            if right < self.heap.len() && self.less(self.heap[right], self.heap[smallest]) {
                smallest = right;
            }
            if smallest == i {
                return;
            }
            self.heap.swap(i, smallest);
            i = smallest;
        }
    }

    /// Moves the top run past its current row; checks the run stays sorted.
    fn advance_top(&mut self) -> Result<()> {
        let run = self.heap[0];
        let position = self.positions[run] + 1;
        if position == self.runs[run].num_rows() {
            let last = self.heap.pop().expect("heap is not empty");
            if !self.heap.is_empty() {
                self.heap[0] = last;
                self.sift_down(0);
            }
            return Ok(());
        }
        if self.keys[run].row(position) < self.keys[run].row(position - 1) {
            return Err(Error::Internal(format!(
                "map output run {run} is not sorted by key (did a combiner change keys?)"
            )));
        }
        self.positions[run] = position;
        self.sift_down(0);
        Ok(())
    }

    /// The next chunk of whole groups, or `None` when every run is consumed.
    pub fn next_chunk(&mut self) -> Result<Option<GroupedChunk>> {
        if self.heap.is_empty() {
            return Ok(None);
        }
        let mut picks: Vec<(usize, usize)> = Vec::with_capacity(self.chunk_rows);
        let mut starts = Vec::new();
        let mut previous: Option<(usize, usize)> = None;
        while let Some(&run) = self.heap.first() {
            let position = self.positions[run];
            let new_group = previous.is_none_or(|(r, p)| self.keys[r].row(p) != self.key(run));
            if new_group {
                if picks.len() >= self.chunk_rows {
                    break;
                }
                starts.push(picks.len());
            }
            picks.push((run, position));
            previous = Some((run, position));
            self.advance_top()?;
        }
        Ok(Some(GroupedChunk { batch: self.gather(&picks)?, starts }))
    }

    fn gather(&self, picks: &[(usize, usize)]) -> Result<RecordBatch> {
        if let [single] = self.runs.as_slice() {
            let (start, len) = (picks[0].1, picks.len());
            return Ok(single.slice(start, len));
        }
        let columns = (0..self.schema.fields().len())
            .map(|c| {
                let sources: Vec<&dyn Array> = self.runs.iter().map(|r| r.column(c).as_ref()).collect();
                interleave(&sources, picks)
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(Error::arrow("merging sorted runs"))?;
        RecordBatch::try_new(self.schema.clone(), columns).map_err(Error::arrow("merged chunk"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
        ]))
    }

    fn run(rows: &[(&str, i64)]) -> RecordBatch {
        let k = StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>());
        let v = Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>());
        RecordBatch::try_new(schema(), vec![Arc::new(k), Arc::new(v)]).unwrap()
    }

    /// Each chunk's (key, value) rows and group starts.
    type Chunks = Vec<(Vec<(String, i64)>, Vec<usize>)>;

    fn merge_all(runs: Vec<RecordBatch>, chunk: usize) -> Chunks {
        let enc = KeyEncoder::new(&schema(), &[0]).unwrap();
        let mut m = RunMerger::new(schema(), &enc, runs, chunk).unwrap();
        let mut out = Vec::new();
        while let Some(c) = m.next_chunk().unwrap() {
            let k = c.batch.column(0).as_string::<i32>();
            let v = c.batch.column(1).as_primitive::<Int64Type>();
            let rows = (0..c.batch.num_rows()).map(|i| (k.value(i).to_owned(), v.value(i))).collect();
            out.push((rows, c.starts));
        }
        out
    }

    #[test]
    fn merges_in_key_then_run_order_and_cuts_at_groups() {
        let a = run(&[("a", 1), ("c", 2), ("c", 3)]);
        let b = run(&[("a", 10), ("b", 11), ("c", 12)]);
        let chunks = merge_all(vec![a, b], 2);
        let flat: Vec<_> = chunks.iter().flat_map(|c| c.0.clone()).collect();
        let expect: Vec<(String, i64)> = [("a", 1), ("a", 10), ("b", 11), ("c", 2), ("c", 3), ("c", 12)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        assert_eq!(flat, expect);
        // chunk of 2 rows: [a a], [b], wait: b is a new group after 2 rows, so it starts a new chunk.
        assert_eq!(chunks[0].1, vec![0]);
        assert_eq!(chunks[0].0.len(), 2);
        assert_eq!(chunks[1].0[0].0, "b");
        // the c group is never split.
        assert!(chunks.iter().filter(|c| c.0.iter().any(|r| r.0 == "c")).count() == 1);
    }

    #[test]
    fn single_run_is_sliced_and_unsorted_runs_are_rejected() {
        let chunks = merge_all(vec![run(&[("x", 1), ("y", 2), ("y", 3)])], 100);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].1, vec![0, 1]);
        let enc = KeyEncoder::new(&schema(), &[0]).unwrap();
        let mut m = RunMerger::new(schema(), &enc, vec![run(&[("b", 1), ("a", 2)])], 10).unwrap();
        assert!(m.next_chunk().unwrap_err().to_string().contains("not sorted"));
    }
}
