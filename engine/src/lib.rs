//! # Gristmill
//!
//! A parallel MapReduce batch engine over Arrow record batches. A job is an ordinary Rust
//! binary: implement [`Job`](job::Job), and `main` is one line.
//!
//! ```no_run
//! use gristmill::prelude::*;
//! use gristmill::job::record::{map_lines, record_schema, reduce_records};
//!
//! /// Counts words: the MapReduce paper's running example, at the record level.
//! #[derive(clap::Args, serde::Serialize, serde::Deserialize)]
//! struct WordCount {}
//!
//! impl Job for WordCount {
//!     const NAME: &'static str = "wordcount";
//!     const ABOUT: &'static str = "Counts words in text";
//!     fn map_output(&self) -> KeyedSchema {
//!         record_schema::<str, u64>("word", "count")
//!     }
//!     fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
//!         Ok(map_lines::<str, u64, _>(|line, out| {
//!             line.split_whitespace().for_each(|w| out.emit(w, 1));
//!             Ok(())
//!         }))
//!     }
//!     fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
//!         Ok(reduce_records::<str, u64, str, u64, _>(|g, out| {
//!             out.emit(g.key(), g.values().sum());
//!             Ok(())
//!         }))
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     gristmill::main::<WordCount>()
//! }
//! ```
//!
//! ## How a job runs (local mode)
//!
//! [`storage`] resolves inputs through `object_store`; [`input`] plans splits (byte ranges
//! of text, row groups of Parquet) and reads them as batches; [`exec`] runs map tasks on a
//! rayon pool, where [`shuffle`] partitions ([`partition`]), sorts and combines their
//! output; reduce tasks merge each partition's sorted runs and reduce key groups; [`output`]
//! writes Parquet part files and commits them with a `_SUCCESS` manifest. [`local`] ties
//! the phases together, behind [`run`], the one runner of every mode; [`cli`] is the
//! command line. In cluster mode [`driver`] is the cluster's master.

pub mod cli;
pub mod cluster;
pub mod config;
pub mod driver;
pub mod error;
pub mod exec;
pub mod ids;
pub mod input;
pub mod job;
pub mod local;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod output;
pub mod partition;
pub mod pipeline;
pub mod plan;
pub mod progress;
pub mod run;
pub mod scheduler;
pub mod security;
pub mod settings;
pub mod shuffle;
pub mod storage;
pub mod telemetry;

#[cfg(test)]
mod doc_examples;

pub use cli::main;

// The versions of the crates a job's code touches that the engine is built with: a job crate
// uses `gristmill::arrow` (and so on) rather than its own dependency, so the two can never
// disagree on a version.
pub use arrow;
pub use clap;
pub use logging::VERSION;
pub use parquet;
pub use serde;
pub use serde_arrow;

/// The allocator of every binary linked with the engine (feature `mimalloc`, on by default;
/// a job binary that sets its own `#[global_allocator]` turns the feature off). mimalloc
/// keeps freed memory for reuse and asks for transparent huge pages itself, where glibc's
/// allocator unmaps every large buffer on free and faults fresh pages in for the next one.
/// On our virtual machines a fresh page costs the host a fault too: TeraSort of 5 GB on 2
/// threads took 17-24 s with glibc (most of it system time, 2.8M page faults) and 8.8-9.0 s
/// with mimalloc (60K page faults).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
pub use error::{BoxError, Error, JobResult, Result};

/// What job authors import.
///
/// ```
/// use gristmill::prelude::*;
///
/// // The job API's traits and types, Arrow's `RecordBatch` and `DataType`, and the
/// // error type of user code.
/// fn check(batch: &RecordBatch) -> JobResult<()> {
///     if batch.schema().field(0).data_type() != &DataType::Utf8 {
///         return Err("expected text in the first column".into());
///     }
///     Ok(())
/// }
/// # let _ = check;
/// ```
pub mod prelude {
    pub use crate::error::{BoxError, JobResult};
    pub use crate::job::{
        Counters, Emitter, Groups, IdentityMapper, IdentityReducer, InputSpec, Job, JobInput, KeyGroup,
        KeyedSchema, Mapper, ReduceInput, Reducer, TaskInfo,
    };
    pub use arrow::array::RecordBatch;
    pub use arrow::datatypes::DataType;
}
