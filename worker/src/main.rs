//! `gristmill-worker`: the worker daemon of cluster mode.
//!
//! Cluster mode is not built yet: jobs run in local mode (in-process, all cores). This
//! binary exists so the workspace has its final shape; it says so and exits non-zero.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "gristmill-worker: cluster mode is not available yet (protocol v{}); run job binaries in local mode",
        gristmill_proto::PROTOCOL_VERSION
    );
    ExitCode::FAILURE
}
