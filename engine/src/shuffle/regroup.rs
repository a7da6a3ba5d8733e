//! Secondary sort on the reduce side: merged chunks hold whole groups of the sort key; this
//! cuts them into groups of a narrower grouping key (a prefix of the sort key), which may
//! span chunks.

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::concat_batches;
use arrow::compute::kernels::partition::partition;

use super::GroupedChunk;
use crate::error::{Error, Result};

/// Regroups merged chunks by the first `columns` key columns. Rows arrive sorted by the
/// whole key, so a grouping key's rows are consecutive; the last group of a chunk is held
/// back until the next chunk shows whether it goes on.
pub struct Regrouper {
    grouping_columns: Vec<usize>,
    held: Option<RecordBatch>,
}

impl Regrouper {
    /// Groups by the key columns `key_columns[..columns]`.
    pub fn new(key_columns: &[usize], columns: usize) -> Self {
        Regrouper { grouping_columns: key_columns[..columns.min(key_columns.len())].to_vec(), held: None }
    }

    /// The whole groups known after `chunk`: rows and group starts, or `None` when the
    /// chunk holds (the rest of) one group only.
    pub fn push(&mut self, chunk: GroupedChunk) -> Result<Option<GroupedChunk>> {
        let batch = match self.held.take() {
            Some(held) => concat_batches(&held.schema(), [&held, &chunk.batch])
                .map_err(Error::arrow("joining a group split across merge chunks"))?,
            None => chunk.batch,
        };
        let mut starts = self.starts(&batch)?;
        let last = starts.pop().unwrap_or(0);
        self.held = Some(batch.slice(last, batch.num_rows() - last));
        if starts.is_empty() {
            return Ok(None);
        }
        Ok(Some(GroupedChunk { batch: batch.slice(0, last), starts }))
    }

    /// The held-back last group, once every chunk is pushed.
    pub fn finish(&mut self) -> Option<GroupedChunk> {
        let held = self.held.take().filter(|b| b.num_rows() > 0)?;
        Some(GroupedChunk { batch: held, starts: vec![0] })
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
        let first = regrouper.push(chunk(&[1, 1, 2, 2], &[5, 9, 1, 3])).unwrap().unwrap();
        assert_eq!(groups(&first), vec![vec![(1, 5), (1, 9)]]);
        // User 2 goes on into the next chunk, and user 3 into the one after.
        let second = regrouper.push(chunk(&[2, 3], &[4, 1])).unwrap().unwrap();
        assert_eq!(groups(&second), vec![vec![(2, 1), (2, 3), (2, 4)]]);
        assert!(regrouper.push(chunk(&[3, 3], &[2, 7])).unwrap().is_none());
        let last = regrouper.finish().unwrap();
        assert_eq!(groups(&last), vec![vec![(3, 1), (3, 2), (3, 7)]]);
        assert!(regrouper.finish().is_none());
    }
}
