//! Fixed-size binary records (TeraSort's 100-byte records): splits fall on record
//! boundaries, and each record becomes a row of two `FixedSizeBinary` columns, `key` (its
//! first `key_len` bytes) and `value` (the rest).

use std::sync::Arc;

use arrow::array::{FixedSizeBinaryArray, RecordBatch};
use arrow::buffer::Buffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use object_store::ObjectStoreExt;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::storage::InputFile;

/// Bytes fetched per request (rounded down to whole records).
const CHUNK_BYTES: u64 = 4 << 20;

/// The layout of fixed-size records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordFormat {
    /// Bytes per record.
    pub record_len: usize,
    /// Bytes of the key at the start of each record.
    pub key_len: usize,
}

impl RecordFormat {
    /// The schema of record batches: `key` and `value`, both fixed-size binary.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("key", DataType::FixedSizeBinary(self.key_len as i32), false),
            Field::new("value", DataType::FixedSizeBinary((self.record_len - self.key_len) as i32), false),
        ]))
    }
}

/// Records `start / len .. end / len` of a file of fixed-size records.
#[derive(Clone, Debug)]
pub struct RecordSplit {
    /// The file.
    pub file: Arc<InputFile>,
    /// First byte (a record boundary).
    pub start: u64,
    /// One past the last byte (a record boundary).
    pub end: u64,
    /// The record layout.
    pub format: RecordFormat,
}

/// Cuts a file into splits of whole records, about `split_size` bytes each.
pub(super) fn plan(file: &Arc<InputFile>, format: RecordFormat, split_size: u64) -> Result<Vec<RecordSplit>> {
    let len = format.record_len as u64;
    if !file.size.is_multiple_of(len) {
        return Err(Error::BadRecordFile {
            path: file.display(),
            cause: format!("its size {} is not a multiple of the {len}-byte record size", file.size),
        });
    }
    let step = (split_size / len).max(1) * len;
    Ok((0..file.size)
        .step_by(step as usize)
        .map(|start| RecordSplit { file: file.clone(), start, end: (start + step).min(file.size), format })
        .collect())
}

impl RecordSplit {
    /// Reads the split's records as batches of `key` and `value`, fetching one chunk ahead.
    pub fn read(&self, io: &Handle, sink: &mut dyn FnMut(RecordBatch) -> Result<bool>) -> Result<()> {
        let chunk = (CHUNK_BYTES / self.format.record_len as u64).max(1) * self.format.record_len as u64;
        let mut ranges = (self.start..self.end).step_by(chunk as usize).map(|s| s..(s + chunk).min(self.end));
        if let Some(path) = self.file.location.local_file() {
            return self.read_local(&path, ranges, sink);
        }
        let mut pending = ranges.next().map(|r| self.fetch(io, r));
        while let Some(fetch) = pending.take() {
            pending = ranges.next().map(|r| self.fetch(io, r));
            let bytes = io
                .block_on(fetch)
                .map_err(|e| Error::Internal(format!("fetch task failed: {e}")))?
                .map_err(|source| Error::read(self.file.display(), source))?;
            if !sink(self.to_batch(&bytes)?)? {
                break;
            }
        }
        Ok(())
    }

    /// Reads a local file with plain reads into one buffer reused for every range.
    fn read_local(
        &self,
        path: &std::path::Path,
        ranges: impl Iterator<Item = std::ops::Range<u64>>,
        sink: &mut dyn FnMut(RecordBatch) -> Result<bool>,
    ) -> Result<()> {
        let error = |e| Error::local_read(self.file.display(), e);
        let mut file = std::fs::File::open(path).map_err(error)?;
        let mut buf = Vec::new();
        for range in ranges {
            buf.clear();
            crate::storage::read_local_range(&mut file, &range, &mut buf).map_err(error)?;
            if !sink(self.to_batch(&buf)?)? {
                break;
            }
        }
        Ok(())
    }

    fn fetch(&self, io: &Handle, range: std::ops::Range<u64>) -> JoinHandle<object_store::Result<Bytes>> {
        let (store, path) = (self.file.location.store().clone(), self.file.location.path().clone());
        io.spawn(async move { store.get_range(&path, range).await })
    }

    fn to_batch(&self, bytes: &[u8]) -> Result<RecordBatch> {
        let RecordFormat { record_len, key_len } = self.format;
        let records = bytes.len() / record_len;
        let mut keys = Vec::with_capacity(records * key_len);
        let mut values = Vec::with_capacity(records * (record_len - key_len));
        for record in bytes.chunks_exact(record_len) {
            keys.extend_from_slice(&record[..key_len]);
            values.extend_from_slice(&record[key_len..]);
        }
        let key = FixedSizeBinaryArray::try_new(key_len as i32, Buffer::from_vec(keys), None)
            .map_err(Error::arrow("record keys"))?;
        let value =
            FixedSizeBinaryArray::try_new((record_len - key_len) as i32, Buffer::from_vec(values), None)
                .map_err(Error::arrow("record values"))?;
        RecordBatch::try_new(self.format.schema(), vec![Arc::new(key), Arc::new(value)])
            .map_err(Error::arrow("a batch of records"))
    }
}
