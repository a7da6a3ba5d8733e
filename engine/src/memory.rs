//! The memory of the task the calling thread works for, for the buffers sized far from
//! where the limit is known: direct I/O blocks ([`crate::storage::read_buffer_bytes`] and
//! the writer's) and the row group a Parquet part writer holds before it writes it out.
//!
//! Not passed down: inside an executor each attempt's thread carries its own budget (its
//! [`crate::cluster::executor::scope`]); any other process runs one job's tasks (local
//! mode, each thread a task with an equal share) or one task (a task process), so one
//! process-wide value holds for all of them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Each task's memory in this process; `u64::MAX` until set (no limit: the fastest sizes).
static TASK_MEMORY: AtomicU64 = AtomicU64::new(u64::MAX);

/// The least a Parquet writer may buffer before ending a row group: smaller row groups
/// cost readers more than they save here.
const MIN_ROW_GROUP_BYTES: u64 = 1 << 20;

/// Sets the memory of each task this process runs outside an executor's attempts to
/// `bytes`, for the I/O buffers opened from now on.
pub fn set_task_memory(bytes: u64) {
    TASK_MEMORY.store(bytes, Relaxed);
}

/// The memory of the task the calling thread works for: its executor attempt's budget,
/// else the process's (see [`set_task_memory`]).
pub fn task_memory() -> u64 {
    match crate::cluster::executor::scope::current().and_then(|scope| scope.memory_limit) {
        Some(bytes) => bytes,
        None => TASK_MEMORY.load(Relaxed),
    }
}

/// Encoded bytes a Parquet part writer buffers at most before it ends its row group
/// early (fewer rows than `--row-group-size`): an eighth of a task's memory.
pub fn parquet_row_group_bytes() -> usize {
    let bytes = (task_memory() / 8).max(MIN_ROW_GROUP_BYTES);
    usize::try_from(bytes).unwrap_or(usize::MAX)
}
