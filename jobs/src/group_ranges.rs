//! [`ByRanges`]: the [`Reducer`] of a vectorized merge that takes any number of consecutive
//! key groups at once, as row ranges of one sorted batch (the combiners and reducers of
//! partial aggregates: `tpch-q1`, `groupby`).

use std::ops::Range;

use gristmill::prelude::*;

/// Merges groups given as row ranges.
pub trait MergeRanges: Send {
    /// Reduces the groups of `batch` (sorted by key) at `ranges`, one range per group.
    fn merge(&mut self, batch: &RecordBatch, ranges: &[Range<usize>], out: &mut Emitter) -> JobResult<()>;
}

/// A [`MergeRanges`] as a reducer: one group, or a whole run of groups, per call.
pub struct ByRanges<M>(pub M);

impl<M: MergeRanges> Reducer for ByRanges<M> {
    fn reduce(&mut self, group: &KeyGroup<'_>, out: &mut Emitter) -> JobResult<()> {
        let (batch, range) = group.batch_and_range();
        self.0.merge(batch, &[range], out)
    }

    fn reduce_groups(&mut self, groups: &Groups<'_>, out: &mut Emitter) -> JobResult<()> {
        let ranges: Vec<Range<usize>> = (0..groups.len()).map(|i| groups.range(i)).collect();
        self.0.merge(groups.batch(), &ranges, out)
    }
}
