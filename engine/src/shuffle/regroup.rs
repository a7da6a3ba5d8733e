//! Secondary sort on the reduce side: merged chunks hold whole groups of the sort key; this
//! cuts them into groups of a narrower grouping key (a prefix of the sort key), which may
//! span chunks.
//!
//! A group that spans chunks is held in memory whole until it ends (its pieces, copied into
//! one batch once, when it ends): a reducer sees each group as one slice of rows. A single
//! grouping key with more rows than fit in memory (one user with billions of clicks) is
//! therefore outside `--memory-limit`.

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::kernels::partition::partition;
use arrow::compute::{concat, concat_batches};

use super::GroupedChunk;
use crate::error::{Error, Result};

/// Regroups merged chunks by the first `columns` key columns. Rows arrive sorted by the
/// whole key, so a grouping key's rows are consecutive; the last group of a chunk is held
/// back until the next chunk shows whether it goes on.
pub struct Regrouper {
    grouping_columns: Vec<usize>,
    /// The pieces of the last group seen, which may go on in the next chunk.
    held: Vec<RecordBatch>,
}

impl Regrouper {
    /// Groups by the key columns `key_columns[..columns]`.
    pub fn new(key_columns: &[usize], columns: usize) -> Self {
        Regrouper {
            grouping_columns: key_columns[..columns.min(key_columns.len())].to_vec(),
            held: Vec::new(),
        }
    }

    /// The whole groups known after `chunk`, in order: the held-back group when it ended
    /// (a batch of its own), then the chunk's groups but its last. Rows are copied only
    /// where a group spans chunks.
    pub fn push(&mut self, chunk: GroupedChunk) -> Result<Vec<GroupedChunk>> {
        let batch = chunk.batch;
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(Vec::new());
        }
        let mut starts = self.starts(&batch)?;
        let mut whole = Vec::new();
        if self.continues_held(&batch)? {
            let end = starts.get(1).copied().unwrap_or(rows);
            self.held.push(batch.slice(0, end));
            if starts.len() == 1 {
                return Ok(whole);
            }
            starts.remove(0);
        }
        whole.extend(self.release_held()?);
        let last = starts.pop().unwrap_or(0);
        self.held.push(batch.slice(last, rows - last));
        if let Some(&first) = starts.first() {
            let starts = starts.iter().map(|s| s - first).collect();
            whole.push(GroupedChunk { batch: batch.slice(first, last - first), starts });
        }
        Ok(whole)
    }

    /// The held-back last group, once every chunk is pushed.
    pub fn finish(&mut self) -> Result<Option<GroupedChunk>> {
        self.release_held()
    }

    /// The held group as one batch (copied only when it has several pieces).
    fn release_held(&mut self) -> Result<Option<GroupedChunk>> {
        let pieces = std::mem::take(&mut self.held);
        let batch = match pieces.as_slice() {
            [] => return Ok(None),
            [one] => one.clone(),
            [first, ..] => concat_batches(&first.schema(), &pieces)
                .map_err(Error::arrow("joining a group split across merge chunks"))?,
        };
        Ok((batch.num_rows() > 0).then(|| GroupedChunk { batch, starts: vec![0] }))
    }

    /// Whether `batch`'s first row has the grouping key of the held group.
    fn continues_held(&self, batch: &RecordBatch) -> Result<bool> {
        let Some(held) = self.held.last().filter(|b| b.num_rows() > 0) else { return Ok(false) };
        let last = held.num_rows() - 1;
        let pairs = self
            .grouping_columns
            .iter()
            .map(|&i| concat(&[held.column(i).slice(last, 1).as_ref(), batch.column(i).slice(0, 1).as_ref()]))
            .collect::<std::result::Result<Vec<ArrayRef>, _>>()
            .map_err(Error::arrow("comparing grouping keys across merge chunks"))?;
        let ranges =
            partition(&pairs).map_err(Error::arrow("comparing grouping keys across merge chunks"))?;
        Ok(ranges.len() == 1)
    }

    fn starts(&self, batch: &RecordBatch) -> Result<Vec<usize>> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let columns: Vec<ArrayRef> = self.grouping_columns.iter().map(|&i| batch.column(i).clone()).collect();
        let ranges = partition(&columns).map_err(Error::arrow("cutting merged rows into groups"))?.ranges();
        Ok(ranges.into_iter().map(|r| r.start).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use std::sync::Arc;

    fn chunk(users: &[i64], times: &[i64]) -> GroupedChunk {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user", DataType::Int64, false),
            Field::new("ts", DataType::Int64, false),
        ]));
        let columns: Vec<ArrayRef> =
            vec![Arc::new(Int64Array::from(users.to_vec())), Arc::new(Int64Array::from(times.to_vec()))];
        // The merger's starts (by the whole key) are not used by the regrouper.
        GroupedChunk { batch: RecordBatch::try_new(schema, columns).unwrap(), starts: vec![0] }
    }

    fn groups(chunk: &GroupedChunk) -> Vec<Vec<(i64, i64)>> {
        let users = chunk.batch.column(0).as_primitive::<Int64Type>();
        let times = chunk.batch.column(1).as_primitive::<Int64Type>();
        let mut ends = chunk.starts[1..].to_vec();
        ends.push(chunk.batch.num_rows());
        chunk
            .starts
            .iter()
            .zip(ends)
            .map(|(&s, e)| (s..e).map(|i| (users.value(i), times.value(i))).collect())
            .collect()
    }

    #[test]
    fn groups_span_chunks_and_the_last_is_released_at_the_end() {
        let mut regrouper = Regrouper::new(&[0, 1], 1);
        let first = regrouper.push(chunk(&[1, 1, 2, 2], &[5, 9, 1, 3])).unwrap();
        assert_eq!(first.iter().map(groups).collect::<Vec<_>>(), vec![vec![vec![(1, 5), (1, 9)]]]);
        // User 2 goes on into the next chunk, and user 3 into the two after.
        let second = regrouper.push(chunk(&[2, 3], &[4, 1])).unwrap();
        assert_eq!(second.iter().map(groups).collect::<Vec<_>>(), vec![vec![vec![(2, 1), (2, 3), (2, 4)]]]);
        assert!(regrouper.push(chunk(&[3, 3], &[2, 7])).unwrap().is_empty());
        assert!(regrouper.push(chunk(&[3], &[8])).unwrap().is_empty());
        let last = regrouper.finish().unwrap().unwrap();
        assert_eq!(groups(&last), vec![vec![(3, 1), (3, 2), (3, 7), (3, 8)]]);
        assert!(regrouper.finish().unwrap().is_none());
    }

    #[test]
    fn a_chunk_that_starts_a_new_group_releases_the_held_one_uncopied() {
        let mut regrouper = Regrouper::new(&[0, 1], 1);
        assert!(regrouper.push(chunk(&[1, 1], &[1, 2])).unwrap().is_empty());
        let released = regrouper.push(chunk(&[2, 2, 3, 4], &[1, 2, 1, 1])).unwrap();
        let released: Vec<_> = released.iter().map(groups).collect();
        assert_eq!(released, vec![vec![vec![(1, 1), (1, 2)]], vec![vec![(2, 1), (2, 2)], vec![(3, 1)]]]);
        assert_eq!(groups(&regrouper.finish().unwrap().unwrap()), vec![vec![(4, 1)]]);
    }
}
