//! What a worker and its executor say to each other: length-delimited frames (a 4-byte
//! big-endian length, then that many bytes of JSON) over the executor's stdin (to it) and
//! a pipe that was its stdout (from it). Specs hold the job's secret and storage options,
//! so they travel only through these pipes, never through files, arguments or the
//! environment.

use std::io::{Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cluster::payload::{TaskFile, TaskResult};
use crate::job::Broadcasts;

/// Frames larger than this are refused (a spec is a few kilobytes; a reduce's list of map
/// outputs grows with the maps).
pub const MAX_FRAME_BYTES: usize = 256 << 20;

/// One attempt of the executor's job: which task, which try.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AttemptRef {
    /// True for a map task.
    pub is_map: bool,
    /// Split index or partition.
    pub index: u32,
    /// Attempt number.
    pub attempt: u32,
}

impl AttemptRef {
    /// The attempt `task` runs.
    pub fn of(task: &TaskFile) -> Self {
        AttemptRef { is_map: task.is_map, index: task.index, attempt: task.attempt }
    }
}

/// Run an attempt: its spec and where its per-attempt files go.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunAttempt {
    /// The spec a task process would read on its stdin.
    pub task: TaskFile,
    /// The memory its buffers and in-memory runs may use (what the driver reserved for it
    /// on the worker).
    pub memory_limit: Option<u64>,
    /// Where it notes each part file it stages (read by the worker when the attempt ends
    /// without reporting them, even if the executor died).
    pub staged_notes: PathBuf,
    /// Its log lines and error messages (created with the first; an attempt has no
    /// stdout log of its own: an executor's threads share one stdout, and a log never
    /// created reads as empty).
    pub stderr_log: PathBuf,
}

/// From the worker to its executor.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToExecutor {
    /// The values the job's plan broadcast, once, before the executor's first attempt:
    /// its attempts' specs come without them (Hadoop's distributed cache).
    Broadcasts(Broadcasts),
    /// Start an attempt (its spec without the job's broadcast values).
    Run(Box<RunAttempt>),
    /// Stop an attempt: it checks between batches and ends with a failure nobody reports.
    Cancel(AttemptRef),
}

/// From an executor to its worker.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromExecutor {
    /// An attempt ended with `result` (whatever it is, as a task process's result file).
    Finished {
        /// Which attempt.
        attempt: AttemptRef,
        /// How it ended.
        result: TaskResult,
    },
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The pipe failed or ended mid-frame.
    #[error("executor pipe: {0}")]
    Io(#[from] std::io::Error),
    /// A frame over [`MAX_FRAME_BYTES`].
    #[error("an executor frame of {0} bytes is over the limit")]
    TooLarge(usize),
    /// A frame that is not the expected message.
    #[error("an executor frame does not parse: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// The bytes of one frame holding `message`.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    let json = serde_json::to_vec(message)?;
    if json.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(json.len()));
    }
    let mut frame = Vec::with_capacity(4 + json.len());
    frame.extend_from_slice(&(json.len() as u32).to_be_bytes());
    frame.extend_from_slice(&json);
    Ok(frame)
}

fn frame_len(len: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// Reads the next message; `None` at the end of the stream between frames.
pub fn read_frame<T: for<'de> Deserialize<'de>>(input: &mut impl Read) -> Result<Option<T>, FrameError> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut body = vec![0u8; frame_len(len)?];
    input.read_exact(&mut body)?;
    Ok(Some(serde_json::from_slice(&body)?))
}

/// Writes one message and flushes.
pub fn write_frame<T: Serialize>(output: &mut impl Write, message: &T) -> Result<(), FrameError> {
    output.write_all(&encode(message)?)?;
    output.flush()?;
    Ok(())
}

/// [`read_frame`] on an async stream (the worker's side).
pub async fn read_frame_async<T: for<'de> Deserialize<'de>>(
    input: &mut (impl tokio::io::AsyncRead + Unpin),
) -> Result<Option<T>, FrameError> {
    use tokio::io::AsyncReadExt;
    let mut len = [0u8; 4];
    match input.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut body = vec![0u8; frame_len(len)?];
    input.read_exact(&mut body).await?;
    Ok(Some(serde_json::from_slice(&body)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_end_cleanly_between_frames() {
        let attempt = AttemptRef { is_map: true, index: 7, attempt: 1 };
        let mut bytes = encode(&ToExecutor::Cancel(attempt)).unwrap();
        bytes.extend(encode(&ToExecutor::Cancel(AttemptRef { attempt: 2, ..attempt })).unwrap());
        let mut input = &bytes[..];
        let mut seen = Vec::new();
        while let Some(ToExecutor::Cancel(a)) = read_frame(&mut input).unwrap() {
            seen.push(a.attempt);
        }
        assert_eq!(seen, [1, 2]);
        let cut = &bytes[..bytes.len() - 3];
        let mut input = cut;
        read_frame::<ToExecutor>(&mut input).unwrap();
        assert!(read_frame::<ToExecutor>(&mut input).is_err(), "a frame cut short is an error, not an end");
    }

    #[test]
    fn an_oversized_length_is_refused_before_reading() {
        let bytes = (MAX_FRAME_BYTES as u32 + 1).to_be_bytes();
        assert!(matches!(read_frame::<ToExecutor>(&mut &bytes[..]), Err(FrameError::TooLarge(_))));
    }
}
