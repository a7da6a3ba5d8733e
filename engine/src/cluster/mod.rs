//! Cluster mode, the parts that run inside job binaries and workers:
//!
//! * [`payload`]: what a submitted job and each task carry to task processes (JSON the
//!   job binary reads; opaque to the driver and the worker);
//! * [`task`]: the hidden task role of every job binary (`<job> __gristmill-task -`, its
//!   spec on stdin), run by workers as child processes;
//! * [`shuffle_service`] and [`fetch`]: map output served by workers, fetched by reducers;
//! * [`submit`]: a job binary submitting itself to a driver (`--driver URL`);
//! * [`executor`]: the executor role (`<job> __gristmill-executor`), one process per job
//!   and worker running the job's attempts on its threads;
//! * [`live`]: live counters a running task process writes for its worker to read;
//! * [`binary`]: job binaries by content digest;
//! * [`binary_transfer`]: job binaries on the wire: stripped, zstd-compressed;
//! * [`private_dir`]: directories only their owner may use (binary stores, digest cache).
//!
//! The driver itself is in [`crate::driver`]; the worker daemon is the
//! `gristmill-worker` crate.

pub mod binary;
pub mod binary_transfer;
pub mod executor;
pub mod fetch;
pub mod follow;
pub mod live;
pub mod payload;
#[cfg(test)]
mod plan_tests;
pub mod private_dir;
pub mod rpc;
pub mod shuffle_service;
pub mod submit;
pub mod task;
pub mod task_logs;

/// The argument that puts a job binary in task role.
pub const TASK_ROLE_ARG: &str = "__gristmill-task";

/// What identifies this host: its name and the kernel's boot id. Workers with equal ids
/// share a file system, so a reducer reads the map output of a worker on its own host
/// straight from that worker's shuffle directory (Spark's host-local shuffle reads).
/// Empty where unknown, and then nothing is read host-locally.
pub fn host_id() -> String {
    let read = |path| std::fs::read_to_string(path).map(|s| s.trim().to_owned()).unwrap_or_default();
    let boot = read("/proc/sys/kernel/random/boot_id");
    if boot.is_empty() {
        return String::new();
    }
    format!("{}/{boot}", read("/proc/sys/kernel/hostname"))
}
