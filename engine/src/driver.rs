//! Drivers: plan a job, run its tasks, commit its output. [`local`] runs everything in this
//! process on a thread pool (the embedded default); [`cluster`] is the long-lived driver
//! of cluster mode.

pub mod cluster;
pub mod local;

pub use local::{JobReport, run_local};
