//! `gristmill-proto`: the gRPC contract between the Gristmill driver, workers and job
//! binaries (package `gristmill.v1`).
//!
//! This crate holds only the wire types and generated tonic/prost code, no logic. It is a
//! placeholder until cluster mode lands: local mode never crosses a process boundary, so it
//! needs no wire format.

/// The protocol version a worker and a driver compare at registration.
pub const PROTOCOL_VERSION: u32 = 1;
