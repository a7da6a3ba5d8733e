//! Connecting to a driver, and the few conversions between wire enums and text.

use std::time::Duration;

use gristmill_proto::MAX_MESSAGE_BYTES;
use gristmill_proto::v1::JobState;
use gristmill_proto::v1::driver_client::DriverClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};

/// A client of the driver at `url` (`http://host:port`; a bare `host:port` works too).
pub async fn connect_driver(url: &str) -> Result<DriverClient<Channel>> {
    let url = if url.contains("://") { url.to_owned() } else { format!("http://{url}") };
    let fail = |cause: String| Error::Rpc { what: format!("connecting to the driver at {url}"), cause };
    let endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| fail(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(10));
    let channel = endpoint.connect().await.map_err(|e| fail(format!("{e} (is the driver running?)")))?;
    Ok(DriverClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// A job state as users read it.
pub fn state_name(state: JobState) -> &'static str {
    match state {
        JobState::Unspecified => "unknown",
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Committing => "committing",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

/// True for a state a job never leaves.
pub fn is_final(state: JobState) -> bool {
    matches!(state, JobState::Succeeded | JobState::Failed | JobState::Cancelled)
}

/// Turns a gRPC status into an error naming what was attempted.
pub fn status_error(what: impl Into<String>) -> impl FnOnce(tonic::Status) -> Error {
    let what = what.into();
    move |status| Error::Rpc { what, cause: status.message().to_owned() }
}
