//! The memory of the tasks this process runs, for the buffers sized far from where the
//! limit is known: direct I/O blocks ([`crate::storage::size_blocks_for`]) and the row
//! group a Parquet part writer holds before it writes it out.
//!
//! Process-wide, not passed down: a process runs one job's tasks (local mode, each thread
//! a task) or one task (cluster mode), so one value holds for all of them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Each task's memory; `u64::MAX` until set (no limit: the fastest sizes).
static TASK_MEMORY: AtomicU64 = AtomicU64::new(u64::MAX);

/// The least a Parquet writer may buffer before ending a row group: smaller row groups
/// cost readers more than they save here.
const MIN_ROW_GROUP_BYTES: u64 = 1 << 20;

/// Sets each task's memory to `bytes` and sizes the I/O buffers opened from now on to it.
pub fn set_task_memory(bytes: u64) {
    TASK_MEMORY.store(bytes, Relaxed);
    crate::storage::size_blocks_for(bytes);
}

/// Encoded bytes a Parquet part writer buffers at most before it ends its row group
/// early (fewer rows than `--row-group-size`): an eighth of a task's memory.
pub fn parquet_row_group_bytes() -> usize {
    let bytes = (TASK_MEMORY.load(Relaxed) / 8).max(MIN_ROW_GROUP_BYTES);
    usize::try_from(bytes).unwrap_or(usize::MAX)
}
