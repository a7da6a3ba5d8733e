//! The identity mapper and reducer, which many jobs need (sort, grep, joins' sides).

use arrow::array::RecordBatch;

use crate::error::JobResult;
use crate::job::{Emitter, Groups, KeyGroup, Mapper, Reducer};

/// Emits every input batch unchanged: the map output schema must be the input's.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityMapper;

impl Mapper for IdentityMapper {
    fn map(&mut self, batch: &RecordBatch, out: &mut Emitter) -> JobResult<()> {
        out.emit(batch.clone())
    }
}

/// Emits every row it receives unchanged (the reducer of distributed grep and sort).
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityReducer;

impl Reducer for IdentityReducer {
    fn reduce(&mut self, group: &KeyGroup<'_>, out: &mut Emitter) -> JobResult<()> {
        out.emit(group.rows())
    }

    fn reduce_groups(&mut self, groups: &Groups<'_>, out: &mut Emitter) -> JobResult<()> {
        out.emit(groups.batch().clone())
    }
}
