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

/// Compressed column-chunk bytes a Parquet reader may hold for one row group: a quarter
/// of a task's memory. A row group larger than that is read page by page.
pub fn parquet_decode_bytes() -> u64 {
    task_memory() / 4
}

/// A process whose memory limit is below this gives freed memory back to the OS at once.
const PROMPT_RELEASE_BELOW: u64 = 1 << 30;

/// How long (ms) a process with more memory keeps freed pages before giving them back:
/// long enough for the next map-buffer flush or merge to take them again.
const LAZY_RELEASE_MS: std::ffi::c_long = 1000;

/// Tells the allocator how the process's memory is limited.
///
/// Under a limit below 1 GiB, mimalloc gives freed pages back to the OS at once rather than
/// after its purge delay, so the process's resident memory follows what the engine accounts
/// for: TeraSort at `--memory-limit 16MiB` peaked at 106-130 MiB of anonymous memory with the
/// delay and at 51-61 MiB without (the `memory_bound` test's bound is 124 MiB).
///
/// Above it, freed pages are kept for a second instead of mimalloc's 10 ms: a map task
/// frees its sorted buffer at each flush and allocates the next one at once, and a page
/// given back costs a fault and a zeroing in the kernel when it is taken again. The SF5
/// revenue job at the batch level (2 threads) spent 1.1-3.4 s of system time in 2.2-3.6 s
/// with the 10 ms delay and 0.5-1.5 s in 1.9-2.7 s with this one, at about 7% more peak RSS.
#[allow(unsafe_code)]
pub fn fit_allocator_to(limit: u64) {
    #[cfg(feature = "mimalloc")]
    {
        let delay = if limit < PROMPT_RELEASE_BELOW { 0 } else { LAZY_RELEASE_MS };
        // SAFETY: sets an option of the allocator the `mimalloc` feature links in; mimalloc
        // reads its options atomically, and they may change at any time.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, delay) };
    }
    #[cfg(not(feature = "mimalloc"))]
    let _ = limit;
}

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_t` (milliseconds; 0 purges at once).
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

#[cfg(feature = "mimalloc")]
#[allow(unsafe_code)]
unsafe extern "C" {
    /// mimalloc's own `mi_option_set`, always in the library libmimalloc-sys links (which
    /// declares it only with its `extended` feature).
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}
