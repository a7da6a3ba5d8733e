//! Drivers: plan a job, run its tasks, commit its output. [`local`] runs everything in this
//! process on a thread pool (the embedded default).

pub mod local;

pub use local::{JobReport, run_local};
