//! [`PartWriter`]: writes one reduce attempt's part file, as Parquet or as raw records:
//! through `object_store` (a streaming multipart upload) on object stores, and as a
//! [`DirectFile`] (large direct writes, no page cache) on the local file system.
//!
//! A writer dropped before [`PartWriter::close`] (its task failed or panicked) aborts its
//! upload, so no multipart upload is left behind on the store, holding storage.

use std::io::Write as _;

use arrow::array::{Array, AsArray, BinaryArray, FixedSizeBinaryArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, SchemaRef};
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use parquet::arrow::{ArrowWriter, AsyncArrowWriter};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tokio::io::AsyncWriteExt;
use tokio::runtime::Handle;

use super::dictionary::choose_dictionaries;
use super::{OutputFormat, PartFile};
use crate::error::{Error, Result};
use crate::ids::PartitionId;
use crate::storage::{DirectFile, Location};

/// Rows per Parquet row group: bounds what a writer buffers.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Where a part file's bytes go: an object store upload, or a local file written directly
/// (see [`DirectFile`]).
enum Target {
    Store(Box<BufWriter>),
    Local(Box<DirectFile>),
}

enum Sink {
    /// A Parquet file not started yet: its encodings are chosen from the first batch.
    ParquetPending {
        target: Target,
        schema: SchemaRef,
    },
    Parquet(Box<AsyncArrowWriter<BufWriter>>),
    LocalParquet(Box<ArrowWriter<DirectFile>>),
    Records {
        target: Target,
        buffer: Vec<u8>,
    },
}

/// Writes one part file. Called from CPU threads: encoding runs on the caller, uploads on
/// the runtime behind `io`.
pub struct PartWriter {
    /// `None` once closed.
    sink: Option<Sink>,
    io: Handle,
    location: Location,
    partition: PartitionId,
    rows: u64,
}

impl PartWriter {
    /// Starts the part file of `partition` at `location`.
    pub fn create(
        io: &Handle,
        location: Location,
        schema: SchemaRef,
        partition: PartitionId,
        format: OutputFormat,
    ) -> Result<Self> {
        let target = match location.local_file() {
            Some(path) => Target::Local(Box::new(
                DirectFile::create(&path).map_err(|e| Error::write(location.display(), Box::new(e)))?,
            )),
            None => {
                Target::Store(Box::new(BufWriter::new(location.store().clone(), location.path().clone())))
            }
        };
        let sink = match format {
            OutputFormat::Parquet => Sink::ParquetPending { target, schema },
            OutputFormat::Records => {
                check_record_schema(&schema)?;
                Sink::Records { target, buffer: Vec::new() }
            }
        };
        Ok(PartWriter { sink: Some(sink), io: io.clone(), location, partition, rows: 0 })
    }

    /// Appends a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        let path = self.location.display();
        if let Some(Sink::ParquetPending { target, schema }) =
            self.sink.take_if(|s| matches!(s, Sink::ParquetPending { .. }))
        {
            self.sink = Some(start_parquet(target, schema, Some(batch), &path)?);
        }
        let fail = |e: Box<dyn std::error::Error + Send + Sync>| Error::write(path.clone(), e);
        match &mut self.sink {
            Some(Sink::Parquet(writer)) => {
                self.io.block_on(writer.write(batch)).map_err(|e| fail(Box::new(e)))
            }
            Some(Sink::LocalParquet(writer)) => writer.write(batch).map_err(|e| fail(Box::new(e))),
            Some(Sink::Records { target, buffer }) => {
                let records = match as_one_fixed_size_column(batch) {
                    Some(values) => values,
                    None => {
                        buffer.clear();
                        append_records(batch, buffer);
                        buffer
                    }
                };
                match target {
                    Target::Store(upload) => self.io.block_on(upload.write_all(records)),
                    Target::Local(file) => file.write_all(records),
                }
                .map_err(|e| fail(Box::new(e)))
            }
            Some(Sink::ParquetPending { .. }) | None => {
                Err(Error::Internal(format!("{path}: write after close")))
            }
        }
    }

    /// Finishes the file (footer, last upload part) and reports what was written.
    pub fn close(mut self) -> Result<PartFile> {
        // Taken first: a failed close is not aborted again on drop (object_store aborts an
        // upload whose completion fails, and a shut-down writer cannot be aborted).
        let sink = self.sink.take().ok_or_else(|| Error::Internal("part writer closed twice".into()))?;
        let (io, location, partition, rows) = (&self.io, &self.location, self.partition, self.rows);
        let fail = |e: Box<dyn std::error::Error + Send + Sync>| Error::write(location.display(), e);
        let sink = match sink {
            // No rows: a file with the schema and no row groups.
            Sink::ParquetPending { target, schema } => {
                start_parquet(target, schema, None, &location.display())?
            }
            sink => sink,
        };
        let local = match sink {
            Sink::ParquetPending { .. } => {
                return Err(Error::Internal("a Parquet part file never started".into()));
            }
            Sink::Parquet(writer) => {
                io.block_on(writer.close()).map_err(|e| fail(Box::new(e)))?;
                None
            }
            // Writes the footer and hands the file back.
            Sink::LocalParquet(writer) => Some(writer.into_inner().map_err(|e| fail(Box::new(e)))?),
            Sink::Records { target: Target::Store(mut upload), .. } => {
                io.block_on(upload.shutdown()).map_err(|e| fail(Box::new(e)))?;
                None
            }
            Sink::Records { target: Target::Local(file), .. } => Some(*file),
        };
        let name = location.path().filename().unwrap_or_default().to_owned();
        let bytes = match local {
            Some(file) => file.finish().map_err(|e| fail(Box::new(e)))?,
            None => io
                .block_on(location.store().head(location.path()))
                .map(|m| m.size)
                .map_err(|e| fail(Box::new(e)))?,
        };
        Ok(PartFile { partition, name, rows, bytes })
    }
}

impl Drop for PartWriter {
    /// Aborts the upload of a part file that was never closed: a multipart upload in
    /// progress is cancelled and its parts deleted. Best effort: a failure is logged.
    fn drop(&mut self) {
        let Some(sink) = self.sink.take() else { return };
        // A local file deletes its unfinished staging file when dropped.
        let mut upload = match sink {
            Sink::ParquetPending { target: Target::Store(upload), .. }
            | Sink::Records { target: Target::Store(upload), .. } => *upload,
            Sink::Parquet(writer) => writer.into_inner(),
            Sink::ParquetPending { target: Target::Local(_), .. }
            | Sink::Records { target: Target::Local(_), .. }
            | Sink::LocalParquet(_) => return,
        };
        let path = self.location.display();
        let abort = async move {
            if let Err(e) = upload.abort().await {
                tracing::warn!(%path, error = %e, "could not abort the upload of a failed part file");
            }
        };
        if Handle::try_current().is_ok() {
            // On a runtime thread (never in the engine's own use): cannot block here.
            self.io.spawn(abort);
        } else {
            // `BufWriter::abort` panics on a writer already shut down; never unwind out of
            // a drop.
            let aborted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.io.block_on(abort)));
            if aborted.is_err() {
                tracing::warn!(path = %self.location.display(), "aborting the upload of a failed part file panicked");
            }
        }
    }
}

/// A Parquet writer of `schema` to `target`, its dictionary encodings chosen from `first`.
fn start_parquet(target: Target, schema: SchemaRef, first: Option<&RecordBatch>, path: &str) -> Result<Sink> {
    let mut props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
    if let Some(batch) = first {
        props = choose_dictionaries(props, batch, ROW_GROUP_ROWS);
    }
    let fail = |e| Error::write(path.to_owned(), Box::new(e));
    Ok(match target {
        Target::Store(upload) => Sink::Parquet(Box::new(
            AsyncArrowWriter::try_new(*upload, schema, Some(props.build())).map_err(fail)?,
        )),
        Target::Local(file) => Sink::LocalParquet(Box::new(
            ArrowWriter::try_new(*file, schema, Some(props.build())).map_err(fail)?,
        )),
    })
}

/// Raw records are the bytes of each row's columns back to back: every column must be
/// binary (fixed-size or not) or text.
fn check_record_schema(schema: &SchemaRef) -> Result<()> {
    for field in schema.fields() {
        if !matches!(field.data_type(), DataType::FixedSizeBinary(_) | DataType::Binary | DataType::Utf8) {
            return Err(Error::InvalidJob(format!(
                "raw record output needs binary or text columns; `{}` is {}",
                field.name(),
                field.data_type()
            )));
        }
    }
    Ok(())
}

/// The bytes of `batch`'s rows as records, when they are already laid out as such: one
/// fixed-size binary column without nulls (TeraSort's whole records).
fn as_one_fixed_size_column(batch: &RecordBatch) -> Option<&[u8]> {
    let [column] = batch.columns() else { return None };
    let values = column.as_fixed_size_binary_opt().filter(|c| c.null_count() == 0)?;
    let len = values.len() * values.value_length() as usize;
    Some(&values.value_data()[..len])
}

/// Appends each row of `batch` as its columns' bytes, one after the other. Columns are
/// downcast once per batch, not once per value.
fn append_records(batch: &RecordBatch, out: &mut Vec<u8>) {
    /// One column's bytes of a row.
    enum Bytes<'a> {
        Fixed(&'a FixedSizeBinaryArray),
        Binary(&'a BinaryArray),
        Text(&'a StringArray),
    }
    let columns: Vec<Bytes<'_>> = batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::FixedSizeBinary(_) => Bytes::Fixed(c.as_fixed_size_binary()),
            DataType::Binary => Bytes::Binary(c.as_binary::<i32>()),
            _ => Bytes::Text(c.as_string::<i32>()),
        })
        .collect();
    let fixed_width: usize = batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::FixedSizeBinary(width) => *width as usize,
            _ => 0,
        })
        .sum();
    out.reserve(fixed_width * batch.num_rows());
    for row in 0..batch.num_rows() {
        for column in &columns {
            match column {
                Bytes::Fixed(array) => out.extend_from_slice(array.value(row)),
                Bytes::Binary(array) => out.extend_from_slice(array.value(row)),
                Bytes::Text(array) => out.extend_from_slice(array.value(row).as_bytes()),
            }
        }
    }
}
