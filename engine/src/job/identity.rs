//! The identity mapper and reducer, which many jobs need (sort, grep, joins' sides).

use arrow::array::RecordBatch;

use crate::error::JobResult;
use crate::job::{Emitter, Groups, KeyGroup, Mapper, Reducer};

/// Emits every input batch unchanged: the map output schema must be the input's.
///
/// ```
/// use std::sync::Arc;
///
/// use gristmill::arrow::array::StringArray;
/// use gristmill::prelude::*;
///
/// let lines = RecordBatch::try_new(InputSpec::text_schema(), vec![Arc::new(StringArray::from(vec!["x", "y"]))])?;
/// let mut out = Emitter::new(InputSpec::text_schema());
/// IdentityMapper.map(&lines, &mut out)?;
/// assert_eq!(out.take_batches(), [lines]);
/// # Ok::<(), gristmill::BoxError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityMapper;

impl Mapper for IdentityMapper {
    fn map(&mut self, batch: &RecordBatch, out: &mut Emitter) -> JobResult<()> {
        out.emit(batch.clone())
    }
}

/// Emits every row it receives unchanged (the reducer of distributed grep and sort).
///
/// ```
/// use std::sync::Arc;
///
/// use gristmill::arrow::array::StringArray;
/// use gristmill::prelude::*;
///
/// // A sort: the shuffle orders the lines, the reducer passes them through.
/// let sorted = RecordBatch::try_new(InputSpec::text_schema(), vec![Arc::new(StringArray::from(vec!["a", "a", "b"]))])?;
/// let mut out = Emitter::new(InputSpec::text_schema());
/// IdentityReducer.reduce_groups(&Groups::new(&sorted, &[0, 2], &[0]), &mut out)?;
/// assert_eq!(out.buffered_rows(), 3);
/// # Ok::<(), gristmill::BoxError>(())
/// ```
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
