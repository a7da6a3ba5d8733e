//! Bad records: rows of text input that fail to parse (a CSV row with the wrong column
//! count or a value that does not parse as its column's type, a JSON syntax error, a line
//! of text that is not UTF-8).
//!
//! By default the first one fails the job, naming the file and the line. With
//! `--max-bad-records N` a reader skips such a row instead and hands it to [`BadRecords`]
//! with its file, line, byte offset, reason and raw text; the job writes them aside (in
//! `_bad_records/` inside its output) and fails once more than `N` were found, naming the
//! last one.

use std::io::Read;
use std::sync::{Arc, Mutex};

use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use super::compressed::Codec;
use crate::error::{Error, Result};
use crate::storage::InputFile;

/// Bytes of a bad row's text kept (the rest is cut, marked with `…`): bounds the memory
/// `N` bad rows take.
pub const MAX_TEXT_BYTES: usize = 64 << 10;
/// Bytes before a bad row read to count its line; past it only the offset is given.
const LINE_COUNT_LIMIT: u64 = 256 << 20;

/// One row that failed to parse.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadRecord {
    /// The file, as users name it.
    pub file: String,
    /// Its 1-based line, when the bytes before it were few enough to count (and the file
    /// is not compressed).
    pub line: Option<u64>,
    /// The byte offset of its first byte (of compressed text: in the decompressed text).
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
    /// The row's text without its line break (invalid UTF-8 replaced by U+FFFD), cut to
    /// [`MAX_TEXT_BYTES`].
    pub text: String,
}

impl BadRecord {
    /// Where it is: `line 12 (byte offset 3456)`, or the offset alone.
    pub fn location(&self) -> String {
        location(self.line, self.offset)
    }
}

/// Where a row is: `line 12 (byte offset 3456)`, or the offset alone.
pub(crate) fn location(line: Option<u64>, offset: u64) -> String {
    match line {
        Some(line) => format!("line {line} (byte offset {offset})"),
        None => format!("byte offset {offset}"),
    }
}

/// The bad records of a task or a job: at most `max` kept; one more fails.
#[derive(Debug)]
pub struct BadRecords {
    max: u64,
    kept: Mutex<Vec<BadRecord>>,
}

impl BadRecords {
    /// A collector allowing `max` bad records (0: the first one fails).
    pub fn new(max: u64) -> Self {
        BadRecords { max, kept: Mutex::new(Vec::new()) }
    }

    /// The bad records allowed.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Keeps `record`, found with `cause`. Fails with `cause` itself when no bad record is
    /// allowed, and with [`Error::TooManyBadRecords`] naming `record` once it is one more
    /// than allowed.
    pub fn keep(&self, record: BadRecord, cause: Error) -> Result<()> {
        if self.max == 0 {
            return Err(cause);
        }
        let mut kept = self.kept.lock().map_err(|_| Error::Internal("bad records poisoned".into()))?;
        if kept.len() as u64 >= self.max {
            return Err(too_many(self.max, &record));
        }
        tracing::debug!(file = %record.file, offset = record.offset, reason = %record.reason, "skipped a bad record");
        kept.push(record);
        Ok(())
    }

    /// The bad records kept so far.
    pub fn count(&self) -> u64 {
        self.kept.lock().map_or(0, |k| k.len() as u64)
    }

    /// Takes the records kept, in file and offset order.
    pub fn take(&self) -> Vec<BadRecord> {
        let mut rows = self.kept.lock().map(|mut k| std::mem::take(&mut *k)).unwrap_or_default();
        sort(&mut rows);
        rows
    }
}

/// Sorts bad records by file and offset: the order they are written in.
pub fn sort(rows: &mut [BadRecord]) {
    rows.sort_by(|a, b| (&a.file, a.offset).cmp(&(&b.file, b.offset)));
}

/// The error for more than `max` bad records, `last` the one past the limit.
pub fn too_many(max: u64, last: &BadRecord) -> Error {
    Error::TooManyBadRecords {
        max,
        path: last.file.clone(),
        location: last.location(),
        reason: last.reason.clone(),
    }
}

/// The bad rows of one split as its reader finds them: counts their lines (once per
/// split, from where the last one was) and hands them to the job's [`BadRecords`].
pub(crate) struct BadRows<'a> {
    file: &'a Arc<InputFile>,
    records: &'a BadRecords,
    lines: LineCounter<'a>,
}

impl<'a> BadRows<'a> {
    /// The bad rows of `file`, kept in `records`.
    pub(crate) fn new(file: &'a Arc<InputFile>, io: &'a Handle, records: &'a BadRecords) -> Self {
        BadRows { file, records, lines: LineCounter::new(file, io, None) }
    }

    /// Rows of a file compressed with `codec` (if any): their offsets are in the
    /// decompressed text, whose lines are counted by decompressing it again (once).
    pub(crate) fn with_codec(mut self, codec: Option<Codec>) -> Self {
        self.lines.codec = codec;
        self
    }

    /// True when bad rows are skipped rather than failing the read.
    pub(crate) fn skipping(&self) -> bool {
        self.records.max > 0
    }

    /// A CSV or JSON row at `offset` with raw `text` that does not decode for `reason`:
    /// kept, or the error to fail with ([`Error::MalformedRow`] when none are allowed).
    pub(crate) fn malformed(&mut self, offset: u64, text: &[u8], reason: &str) -> Result<()> {
        let record = self.record(offset, text, reason.to_owned());
        let cause = Error::MalformedRow {
            path: record.file.clone(),
            location: record.location(),
            reason: record.reason.clone(),
        };
        self.records.keep(record, cause)
    }

    /// A line of text at `offset` that is not UTF-8 from `bad_byte` on: kept, or the error to
    /// fail with ([`Error::InvalidUtf8`] when none are allowed).
    pub(crate) fn invalid_utf8(&mut self, offset: u64, bad_byte: u64, text: &[u8]) -> Result<()> {
        let reason = format!("invalid UTF-8 at byte offset {bad_byte}");
        let record = self.record(offset, text, reason);
        let cause = Error::InvalidUtf8 { path: record.file.clone(), offset: bad_byte, line: record.line };
        self.records.keep(record, cause)
    }

    fn record(&mut self, offset: u64, text: &[u8], reason: String) -> BadRecord {
        let text = text.strip_suffix(b"\n").unwrap_or(text);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let mut text = String::from_utf8_lossy(&text[..text.len().min(MAX_TEXT_BYTES)]).into_owned();
        if text.len() >= MAX_TEXT_BYTES {
            text.push('…');
        }
        BadRecord { file: self.file.display(), line: self.lines.line_at(offset), offset, reason, text }
    }
}

/// Counts the lines of a file up to byte offsets of its text (decompressed, for a
/// compressed file), forward from the last offset counted.
pub(crate) struct LineCounter<'a> {
    file: &'a Arc<InputFile>,
    io: &'a Handle,
    /// The file's compression: lines are then counted by decompressing it again.
    codec: Option<Codec>,
    /// Newlines before `counted_to`.
    newlines: u64,
    counted_to: u64,
    /// A compressed file's text after `counted_to`.
    decompressed: Option<Box<dyn Read + Send>>,
}

impl<'a> LineCounter<'a> {
    /// A counter of `file`'s lines, compressed with `codec` if any.
    pub(crate) fn new(file: &'a Arc<InputFile>, io: &'a Handle, codec: Option<Codec>) -> Self {
        LineCounter { file, io, codec, newlines: 0, counted_to: 0, decompressed: None }
    }

    /// The 1-based line `offset` of the file is on, if within [`LINE_COUNT_LIMIT`] bytes of
    /// the last one counted. Counts forward from there: a split's bad rows come in order,
    /// so a compressed file is decompressed again once for all of them.
    pub(crate) fn line_at(&mut self, offset: u64) -> Option<u64> {
        if offset < self.counted_to {
            (self.newlines, self.counted_to, self.decompressed) = (0, 0, None);
        }
        if offset - self.counted_to > LINE_COUNT_LIMIT {
            return None;
        }
        while self.counted_to < offset {
            let end = (self.counted_to + (8 << 20)).min(offset);
            let bytes = self.text(self.counted_to..end)?;
            if bytes.is_empty() {
                break;
            }
            self.newlines += memchr::memchr_iter(b'\n', &bytes).count() as u64;
            self.counted_to += bytes.len() as u64;
        }
        Some(self.newlines + 1)
    }

    /// Bytes `range` of the file's text (decompressed), read after those before it.
    fn text(&mut self, range: std::ops::Range<u64>) -> Option<Vec<u8>> {
        let Some(codec) = self.codec else {
            let (store, path) = (self.file.location.store(), self.file.location.path());
            return self.io.block_on(store.get_range(path, range)).ok().map(|b| b.to_vec());
        };
        if self.decompressed.is_none() {
            self.decompressed = super::compressed::decompressed(self.file, codec, self.io);
        }
        let mut bytes = Vec::new();
        let text = self.decompressed.as_mut()?;
        text.take(range.end - range.start).read_to_end(&mut bytes).ok()?;
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(file: &str, offset: u64) -> BadRecord {
        BadRecord {
            file: file.into(),
            line: Some(offset + 1),
            offset,
            reason: "bad".into(),
            text: "x".into(),
        }
    }

    #[test]
    fn past_the_limit_the_last_one_is_named() {
        let records = BadRecords::new(2);
        records.keep(record("b.csv", 9), Error::Internal("b".into())).unwrap();
        records.keep(record("a.csv", 4), Error::Internal("a".into())).unwrap();
        let error = records.keep(record("c.csv", 7), Error::Internal("c".into())).unwrap_err();
        assert_eq!(error.kind(), crate::error::ErrorKind::CorruptInput);
        let message = error.to_string();
        assert!(message.contains("c.csv") && message.contains("line 8 (byte offset 7)"), "{message}");
        assert!(message.contains("more than 2 bad records"), "{message}");
        assert_eq!(records.count(), 2);
        let files: Vec<_> = records.take().into_iter().map(|r| r.file).collect();
        assert_eq!(files, ["a.csv", "b.csv"], "in file order");
    }

    #[test]
    fn with_none_allowed_the_cause_fails() {
        let records = BadRecords::new(0);
        let error = records.keep(record("a.csv", 0), Error::Internal("the cause".into())).unwrap_err();
        assert!(error.to_string().contains("the cause"), "{error}");
        assert_eq!(records.count(), 0);
    }
}
