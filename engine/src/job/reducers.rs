//! Reducers that many jobs need.

use crate::error::JobResult;
use crate::job::{Emitter, Groups, KeyGroup, Reducer};

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
