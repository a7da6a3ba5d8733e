//! [`PartWriter`]: writes one reduce attempt's part file through `object_store` (a
//! streaming multipart upload on object stores), as Parquet or as raw records.
//!
//! A writer dropped before [`PartWriter::close`] (its task failed or panicked) aborts its
//! upload, so no multipart upload is left behind on the store, holding storage.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tokio::io::AsyncWriteExt;
use tokio::runtime::Handle;

use super::dictionary::choose_dictionaries;
use super::{OutputFormat, PartFile};
use crate::error::{Error, Result};
use crate::ids::PartitionId;
use crate::storage::Location;

/// Rows per Parquet row group: bounds what a writer buffers.
const ROW_GROUP_ROWS: usize = 128 * 1024;

enum Sink {
    /// A Parquet file not started yet: its encodings are chosen from the first batch.
    ParquetPending {
        upload: Box<BufWriter>,
        schema: SchemaRef,
    },
    Parquet(Box<AsyncArrowWriter<BufWriter>>),
    Records {
        upload: Box<BufWriter>,
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
        let upload = BufWriter::new(location.store().clone(), location.path().clone());
        let sink = match format {
            OutputFormat::Parquet => Sink::ParquetPending { upload: Box::new(upload), schema },
            OutputFormat::Records => {
                check_record_schema(&schema)?;
                Sink::Records { upload: Box::new(upload), buffer: Vec::new() }
            }
        };
        Ok(PartWriter { sink: Some(sink), io: io.clone(), location, partition, rows: 0 })
    }

    /// Appends a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        let path = self.location.display();
        if let Some(Sink::ParquetPending { upload, schema }) =
            self.sink.take_if(|s| matches!(s, Sink::ParquetPending { .. }))
        {
            self.sink = Some(start_parquet(*upload, schema, Some(batch), &path)?);
        }
        match &mut self.sink {
            Some(Sink::Parquet(writer)) => {
                self.io.block_on(writer.write(batch)).map_err(|e| Error::write(path, Box::new(e)))
            }
            Some(Sink::Records { upload, buffer }) => {
                buffer.clear();
                append_records(batch, buffer);
                self.io.block_on(upload.write_all(buffer)).map_err(|e| Error::write(path, Box::new(e)))
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
            Sink::ParquetPending { upload, schema } => {
                start_parquet(*upload, schema, None, &location.display())?
            }
            sink => sink,
        };
        match sink {
            Sink::ParquetPending { .. } => {
                return Err(Error::Internal("a Parquet part file never started".into()));
            }
            Sink::Parquet(writer) => io.block_on(writer.close()).map(drop).map_err(|e| fail(Box::new(e)))?,
            Sink::Records { mut upload, .. } => {
                io.block_on(upload.shutdown()).map_err(|e| fail(Box::new(e)))?
            }
        }
        let name = location.path().filename().unwrap_or_default().to_owned();
        let bytes = io
            .block_on(location.store().head(location.path()))
            .map(|m| m.size)
            .map_err(|e| fail(Box::new(e)))?;
        Ok(PartFile { partition, name, rows, bytes })
    }
}

impl Drop for PartWriter {
    /// Aborts the upload of a part file that was never closed: a multipart upload in
    /// progress is cancelled and its parts deleted. Best effort: a failure is logged.
    fn drop(&mut self) {
        let Some(sink) = self.sink.take() else { return };
        let mut upload = match sink {
            Sink::ParquetPending { upload, .. } => *upload,
            Sink::Parquet(writer) => writer.into_inner(),
            Sink::Records { upload, .. } => *upload,
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

/// A Parquet writer of `schema` to `upload`, its dictionary encodings chosen from `first`.
fn start_parquet(
    upload: BufWriter,
    schema: SchemaRef,
    first: Option<&RecordBatch>,
    path: &str,
) -> Result<Sink> {
    let mut props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
    if let Some(batch) = first {
        props = choose_dictionaries(props, batch, ROW_GROUP_ROWS);
    }
    let writer = AsyncArrowWriter::try_new(upload, schema, Some(props.build()))
        .map_err(|e| Error::write(path.to_owned(), Box::new(e)))?;
    Ok(Sink::Parquet(Box::new(writer)))
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

fn append_records(batch: &RecordBatch, out: &mut Vec<u8>) {
    let columns: Vec<&dyn Array> = batch.columns().iter().map(|c| c.as_ref()).collect();
    for row in 0..batch.num_rows() {
        for column in &columns {
            match column.data_type() {
                DataType::FixedSizeBinary(_) => {
                    out.extend_from_slice(column.as_fixed_size_binary().value(row))
                }
                DataType::Binary => out.extend_from_slice(column.as_binary::<i32>().value(row)),
                _ => out.extend_from_slice(column.as_string::<i32>().value(row).as_bytes()),
            }
        }
    }
}
