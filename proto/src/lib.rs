//! # gristmill-proto
//!
//! The gRPC contract between Gristmill's driver, workers and submitting job binaries
//! (package `gristmill.v1`, in `proto/gristmill/v1/gristmill.proto`), compiled at build
//! time with protox, so no system `protoc` is needed. Generated code only: conversions to
//! the engine's domain types live in `gristmill::rpc`.

/// The protocol version every peer sends; the driver refuses others.
pub const PROTOCOL_VERSION: u32 = 2;

/// Largest gRPC message any peer sends or accepts (chunks are at most 1 MiB; task
/// payloads carry a job's settings and splits).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Bytes per streamed chunk of binaries and shuffle data.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Generated messages and services of `gristmill.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("gristmill.v1");
}
