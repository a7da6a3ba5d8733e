//! Fixed-size binary records (TeraSort's 100-byte records): splits fall on record
//! boundaries, and each record becomes a row of two `FixedSizeBinary` columns: `key` (its
//! first `key_len` bytes) and either `value` (the rest) or `record` (the whole record; see
//! [`RecordColumns`]).

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
///
/// Made by [`InputSpec::fixed_records`](crate::input::InputSpec::fixed_records) and
/// [`InputSpec::fixed_records_whole`](crate::input::InputSpec::fixed_records_whole):
///
/// ```
/// use gristmill::arrow::datatypes::DataType;
/// use gristmill::input::{RecordColumns, RecordFormat};
///
/// let tera = RecordFormat { record_len: 100, key_len: 10, columns: RecordColumns::KeyValue };
/// let schema = tera.schema();
/// assert_eq!(schema.field(0).data_type(), &DataType::FixedSizeBinary(10));
/// assert_eq!(schema.field(1).data_type(), &DataType::FixedSizeBinary(90));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordFormat {
    /// Bytes per record.
    pub record_len: usize,
    /// Bytes of the key at the start of each record.
    pub key_len: usize,
    /// The columns a record becomes.
    pub columns: RecordColumns,
}

/// The columns a record becomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecordColumns {
    /// `key` (the first `key_len` bytes) and `value` (the rest), both copied out of the
    /// bytes read.
    #[default]
    KeyValue,
    /// `key` (copied) and `record`, the whole record, not copied: a view of the bytes read
    /// (of a local file mapped into memory, so of the page cache). A sort that keeps its
    /// rows until the reduce then holds the page cache's copy of its input, not one of its
    /// own (TeraSort's 5 GB).
    KeyRecord,
}

impl RecordFormat {
    /// The schema of record batches: `key` and `value` (or `record`), fixed-size binary.
    pub fn schema(&self) -> SchemaRef {
        let second = match self.columns {
            RecordColumns::KeyValue => ("value", self.record_len - self.key_len),
            RecordColumns::KeyRecord => ("record", self.record_len),
        };
        Arc::new(Schema::new(vec![
            Field::new("key", DataType::FixedSizeBinary(self.key_len as i32), false),
            Field::new(second.0, DataType::FixedSizeBinary(second.1 as i32), false),
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
    /// Reads the split's records as batches of the format's columns, fetching one chunk
    /// ahead.
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
            if !sink(self.to_batch(&bytes, Some(&bytes))?)? {
                break;
            }
        }
        Ok(())
    }

    /// Reads a local file: with plain reads into one buffer reused for every range, or, for
    /// [`RecordColumns::KeyRecord`], mapped into memory, each batch's `record` column a view
    /// of the mapping (which lives as long as the last batch viewing it).
    fn read_local(
        &self,
        path: &std::path::Path,
        ranges: impl Iterator<Item = std::ops::Range<u64>>,
        sink: &mut dyn FnMut(RecordBatch) -> Result<bool>,
    ) -> Result<()> {
        let error = |e| Error::local_read(self.file.display(), e);
        let mut file = std::fs::File::open(path).map_err(error)?;
        let mapped = match self.format.columns {
            RecordColumns::KeyRecord => Some(self.map(&file)?),
            RecordColumns::KeyValue => None,
        };
        let mut buf = Vec::new();
        for range in ranges {
            let batch = match &mapped {
                Some(bytes) => {
                    let chunk = bytes.slice(range.start as usize..range.end as usize);
                    self.to_batch(&chunk, Some(&chunk))?
                }
                None => {
                    buf.clear();
                    crate::storage::read_local_range(&mut file, &range, &mut buf).map_err(error)?;
                    self.to_batch(&buf, None)?
                }
            };
            if !sink(batch)? {
                break;
            }
        }
        Ok(())
    }

    /// The whole of `file` mapped into memory, checked to hold the split.
    fn map(&self, file: &std::fs::File) -> Result<Bytes> {
        let error = |e| Error::local_read(self.file.display(), e);
        let bytes = crate::storage::map_file(file).map_err(error)?;
        if (bytes.len() as u64) < self.end {
            let cause = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "shorter than when planned");
            return Err(error(cause));
        }
        Ok(bytes)
    }

    fn fetch(&self, io: &Handle, range: std::ops::Range<u64>) -> JoinHandle<object_store::Result<Bytes>> {
        let (store, path) = (self.file.location.store().clone(), self.file.location.path().clone());
        io.spawn(async move { store.get_range(&path, range).await })
    }

    /// The records in `bytes` as a batch; `shared` is the same bytes, when they can be
    /// shared rather than copied (for [`RecordColumns::KeyRecord`]).
    fn to_batch(&self, bytes: &[u8], shared: Option<&Bytes>) -> Result<RecordBatch> {
        let RecordFormat { record_len, key_len, columns } = self.format;
        let records = bytes.len() / record_len;
        let mut keys = Vec::with_capacity(records * key_len);
        let second = match columns {
            RecordColumns::KeyValue => {
                let mut values = Vec::with_capacity(records * (record_len - key_len));
                for record in bytes.chunks_exact(record_len) {
                    keys.extend_from_slice(&record[..key_len]);
                    values.extend_from_slice(&record[key_len..]);
                }
                FixedSizeBinaryArray::try_new((record_len - key_len) as i32, Buffer::from_vec(values), None)
            }
            RecordColumns::KeyRecord => {
                for record in bytes.chunks_exact(record_len) {
                    keys.extend_from_slice(&record[..key_len]);
                }
                let whole = match shared {
                    Some(shared) => Buffer::from(shared.slice(..records * record_len)),
                    None => Buffer::from(&bytes[..records * record_len]),
                };
                FixedSizeBinaryArray::try_new(record_len as i32, whole, None)
            }
        }
        .map_err(Error::arrow("record values"))?;
        let key = FixedSizeBinaryArray::try_new(key_len as i32, Buffer::from_vec(keys), None)
            .map_err(Error::arrow("record keys"))?;
        RecordBatch::try_new(self.format.schema(), vec![Arc::new(key), Arc::new(second)])
            .map_err(Error::arrow("a batch of records"))
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;

    use super::*;
    use crate::storage::Location;

    /// A record's two columns.
    type Row = (Vec<u8>, Vec<u8>);

    /// The file's bytes, and the records of a split of it read in several chunks.
    fn read_all(columns: RecordColumns, records: usize) -> (Vec<u8>, Vec<Row>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.dat");
        let bytes: Vec<u8> = (0..records * 100).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let location = Location::parse(path.to_str().unwrap()).unwrap();
        let file = Arc::new(InputFile::new(location, bytes.len() as u64));
        let format = RecordFormat { record_len: 100, key_len: 10, columns };
        // Starts past the first record, ends before the last: a split within the file.
        let split = RecordSplit { file, start: 100, end: (records as u64 - 1) * 100, format };
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut rows = Vec::new();
        split
            .read(runtime.handle(), &mut |batch| {
                assert_eq!(batch.schema(), format.schema());
                let (key, second) =
                    (batch.column(0).as_fixed_size_binary(), batch.column(1).as_fixed_size_binary());
                rows.extend((0..batch.num_rows()).map(|i| (key.value(i).to_vec(), second.value(i).to_vec())));
                Ok(true)
            })
            .unwrap();
        (bytes, rows)
    }

    #[test]
    fn whole_records_are_read_as_a_key_and_the_record_itself() {
        // More than one read chunk of records.
        let records = (CHUNK_BYTES / 100) as usize * 2 + 7;
        let (bytes, rows) = read_all(RecordColumns::KeyRecord, records);
        assert_eq!(rows.len(), records - 2);
        for (i, (key, record)) in rows.iter().enumerate() {
            let expected = &bytes[(i + 1) * 100..(i + 2) * 100];
            assert_eq!((key.as_slice(), record.as_slice()), (&expected[..10], expected));
        }
        let (_, split) = read_all(RecordColumns::KeyValue, records);
        for ((key, value), (whole_key, record)) in split.iter().zip(&rows) {
            assert_eq!((key, value.as_slice()), (whole_key, &record[10..]));
        }
    }
}
