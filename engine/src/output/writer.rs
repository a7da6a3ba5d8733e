//! [`PartWriter`]: writes one attempt's part file, as Parquet, CSV, JSON lines or raw
//! records, staged
//! (see [`super::staged`]): an open multipart upload on object stores, a hidden local file
//! written directly (large direct writes, no page cache, see [`DirectFile`]) on the local
//! file system. Nothing appears under the part's name until the committer publishes it.
//!
//! A writer dropped before [`PartWriter::close`] (its task failed or panicked) aborts its
//! upload or deletes its file.

use std::io::Write;

use arrow::array::{Array, AsArray, BinaryArray, FixedSizeBinaryArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use tokio::runtime::Handle;

use super::dictionary::choose_dictionaries;
use super::hive::PartitionedWriter;
use super::staged::{Staged, StagedUpload};
use super::{Codec, OutputDir, OutputFormat, OutputLayout, ParquetOutput, PartFile};
use crate::error::{Error, Result};
use crate::ids::PartitionId;
use crate::storage::{DirectFile, Location};

/// Where a part file's bytes go.
enum Target {
    Upload(Box<StagedUpload>),
    Local(Box<DirectFile>),
}

impl Target {
    /// Writes the rest; returns the bytes written and how the committer publishes them.
    fn finish(self) -> std::io::Result<(u64, Staged)> {
        match self {
            Target::Upload(upload) => upload.finish(),
            Target::Local(file) => Ok((file.finish_staged()?, Staged::LocalFile)),
        }
    }
}

impl Write for Target {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            Target::Upload(upload) => upload.write(bytes),
            Target::Local(file) => file.write(bytes),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Target::Upload(upload) => upload.flush(),
            Target::Local(file) => file.flush(),
        }
    }
}

/// A text part file's bytes, compressed or not.
enum TextTarget {
    Plain(Target),
    Gzip(flate2::write::GzEncoder<Target>),
    Zstd(zstd::stream::write::Encoder<'static, Target>),
}

impl TextTarget {
    fn new(target: Target, codec: Codec) -> std::io::Result<Self> {
        Ok(match codec {
            Codec::Gzip(level) => {
                let level = level.map_or_else(flate2::Compression::default, flate2::Compression::new);
                TextTarget::Gzip(flate2::write::GzEncoder::new(target, level))
            }
            Codec::Zstd(level) => {
                TextTarget::Zstd(zstd::stream::write::Encoder::new(target, level.unwrap_or(0))?)
            }
            _ => TextTarget::Plain(target),
        })
    }

    /// Ends the compressed stream; returns the target.
    fn finish(self) -> std::io::Result<Target> {
        match self {
            TextTarget::Plain(target) => Ok(target),
            TextTarget::Gzip(encoder) => encoder.finish(),
            TextTarget::Zstd(encoder) => encoder.finish(),
        }
    }
}

impl Write for TextTarget {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            TextTarget::Plain(target) => target.write(bytes),
            TextTarget::Gzip(encoder) => encoder.write(bytes),
            TextTarget::Zstd(encoder) => encoder.write(bytes),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            TextTarget::Plain(target) => target.flush(),
            TextTarget::Gzip(encoder) => encoder.flush(),
            TextTarget::Zstd(encoder) => encoder.flush(),
        }
    }
}

type JsonWriter = arrow_json::Writer<TextTarget, arrow_json::writer::LineDelimited>;

enum Sink {
    /// A Parquet file not started yet: its encodings are chosen from the first batch.
    ParquetPending {
        target: Target,
        schema: SchemaRef,
        options: ParquetOutput,
    },
    Parquet(Box<ArrowWriter<Target>>),
    Records {
        target: Target,
        buffer: Vec<u8>,
    },
    /// CSV with a header line (written before the first row, or at the close of a file
    /// without rows).
    Csv(Box<arrow_csv::Writer<TextTarget>>),
    /// JSON lines, nulls written out (`"c":null`), so that every line names every column.
    Json(Box<JsonWriter>),
}

/// Writes one part file. Called from CPU threads: encoding runs on the caller, uploads on
/// the runtime behind the `io` handle it was created with.
pub struct PartWriter {
    /// `None` once closed; dropping it aborts the upload or deletes the staging file.
    sink: Option<Sink>,
    location: Location,
    /// The part's path relative to the output directory.
    name: String,
    schema: SchemaRef,
    partition: PartitionId,
    rows: u64,
}

impl PartWriter {
    /// Starts the part file of `partition` named `name` (its path relative to the output
    /// directory) at `location`, in `layout`'s format and codec.
    pub fn create(
        io: &Handle,
        location: Location,
        name: String,
        schema: SchemaRef,
        partition: PartitionId,
        layout: &OutputLayout,
    ) -> Result<Self> {
        let fail = |e: std::io::Error| Error::write(location.display(), Box::new(e));
        let (target, staged) = match location.local_file() {
            Some(path) => {
                (Target::Local(Box::new(DirectFile::create(&path).map_err(fail)?)), Staged::LocalFile)
            }
            None => {
                let upload = StagedUpload::create(io, &location).map_err(fail)?;
                let staged = Staged::Upload { id: upload.id().clone(), parts: Vec::new() };
                (Target::Upload(Box::new(upload)), staged)
            }
        };
        super::staged::note_staged(&name, staged);
        let text = |target| TextTarget::new(target, layout.text_codec).map_err(fail);
        let sink = match layout.format {
            OutputFormat::Parquet => {
                Sink::ParquetPending { target, schema: schema.clone(), options: layout.parquet }
            }
            OutputFormat::Records => {
                check_record_schema(&schema)?;
                Sink::Records { target, buffer: Vec::new() }
            }
            OutputFormat::Csv => {
                Sink::Csv(Box::new(arrow_csv::WriterBuilder::new().with_header(true).build(text(target)?)))
            }
            OutputFormat::Json => Sink::Json(Box::new(
                arrow_json::WriterBuilder::new().with_explicit_nulls(true).build(text(target)?),
            )),
        };
        Ok(PartWriter { sink: Some(sink), location, name, schema, partition, rows: 0 })
    }

    /// Appends a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        let path = self.location.display();
        if let Some(Sink::ParquetPending { target, schema, options }) =
            self.sink.take_if(|s| matches!(s, Sink::ParquetPending { .. }))
        {
            self.sink = Some(start_parquet(target, schema, options, Some(batch), &path)?);
        }
        let fail = |e: Box<dyn std::error::Error + Send + Sync>| Error::write(path.clone(), e);
        match &mut self.sink {
            Some(Sink::Parquet(writer)) => {
                writer.write(batch).map_err(|e| fail(Box::new(e)))?;
                // A row group is held encoded until it is complete: end it early rather than
                // outgrow the task's memory.
                if writer.in_progress_size() >= crate::memory::parquet_row_group_bytes() {
                    writer.flush().map_err(|e| fail(Box::new(e)))?;
                }
                Ok(())
            }
            Some(Sink::Records { target, buffer }) => {
                let records = match as_one_fixed_size_column(batch) {
                    Some(values) => values,
                    None => {
                        buffer.clear();
                        append_records(batch, buffer);
                        buffer
                    }
                };
                target.write_all(records).map_err(|e| fail(Box::new(e)))
            }
            Some(Sink::Csv(writer)) => writer.write(batch).map_err(|e| fail(Box::new(e))),
            Some(Sink::Json(writer)) => writer.write(batch).map_err(|e| fail(Box::new(e))),
            Some(Sink::ParquetPending { .. }) | None => {
                Err(Error::Internal(format!("{path}: write after close")))
            }
        }
    }

    /// Finishes the file (footer, last upload part) and reports what was written and
    /// where it is staged.
    pub fn close(mut self) -> Result<PartFile> {
        let sink = self.sink.take().ok_or_else(|| Error::Internal("part writer closed twice".into()))?;
        let location = &self.location;
        let fail = |e: Box<dyn std::error::Error + Send + Sync>| Error::write(location.display(), e);
        let sink = match sink {
            // No rows: a file with the schema and no row groups.
            Sink::ParquetPending { target, schema, options } => {
                start_parquet(target, schema, options, None, &location.display())?
            }
            sink => sink,
        };
        let target = match sink {
            Sink::ParquetPending { .. } => {
                return Err(Error::Internal("a Parquet part file never started".into()));
            }
            // Writes the footer and hands the target back.
            Sink::Parquet(writer) => writer.into_inner().map_err(|e| fail(Box::new(e)))?,
            Sink::Records { target, .. } => target,
            Sink::Csv(mut writer) => {
                if self.rows == 0 {
                    // The header alone: readers then still know the columns.
                    writer
                        .write(&RecordBatch::new_empty(self.schema.clone()))
                        .map_err(|e| fail(Box::new(e)))?;
                }
                writer.into_inner().finish().map_err(|e| fail(Box::new(e)))?
            }
            Sink::Json(mut writer) => {
                writer.finish().map_err(|e| fail(Box::new(e)))?;
                writer.into_inner().finish().map_err(|e| fail(Box::new(e)))?
            }
        };
        let (bytes, staged) = target.finish().map_err(|e| fail(Box::new(e)))?;
        let name = std::mem::take(&mut self.name);
        Ok(PartFile { partition: self.partition, name, rows: self.rows, bytes, staged })
    }
}

/// Writes one attempt's output: one part file, or with Hive partitioning one per value of
/// the partition columns.
pub enum OutputWriter {
    /// One part file.
    Single(PartWriter),
    /// A part file per partition value.
    Partitioned(Box<PartitionedWriter>),
}

impl OutputWriter {
    /// Starts the output of `partition` written by `attempt` of `job` in `dir`, as `layout`
    /// says; `schema` is what the job emits (partition columns included).
    pub fn create(
        io: &Handle,
        dir: &OutputDir,
        part: PartName<'_>,
        schema: SchemaRef,
        layout: &OutputLayout,
    ) -> Result<Self> {
        let name = super::part_name(part.partition, part.job, part.attempt, layout);
        if layout.partition_by.is_empty() {
            let location = dir.location().child(&name);
            return Ok(OutputWriter::Single(PartWriter::create(
                io,
                location,
                name,
                schema,
                part.partition,
                layout,
            )?));
        }
        let writer = PartitionedWriter::new(io, dir, name, schema, part.partition, layout)?;
        Ok(OutputWriter::Partitioned(Box::new(writer)))
    }

    /// Appends a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            OutputWriter::Single(writer) => writer.write(batch),
            OutputWriter::Partitioned(writer) => writer.write(batch),
        }
    }

    /// Finishes every file; returns them, staged for the commit (in name order).
    pub fn close(self) -> Result<Vec<PartFile>> {
        match self {
            OutputWriter::Single(writer) => Ok(vec![writer.close()?]),
            OutputWriter::Partitioned(writer) => writer.close(),
        }
    }
}

/// Whose part file: the partition, the job run and the attempt.
#[derive(Clone, Copy, Debug)]
pub struct PartName<'a> {
    /// The reduce partition (or map task of a map-only job).
    pub partition: PartitionId,
    /// The job run.
    pub job: &'a crate::ids::JobId,
    /// The attempt.
    pub attempt: crate::ids::AttemptId,
}

/// A Parquet writer of `schema` to `target` with `options`, its dictionary encodings chosen
/// from `first`. Page statistics make the writer add the column and offset indexes (the
/// page index), so readers can skip pages as well as row groups.
fn start_parquet(
    target: Target,
    schema: SchemaRef,
    options: ParquetOutput,
    first: Option<&RecordBatch>,
    path: &str,
) -> Result<Sink> {
    let rows = options.row_group_rows.max(1);
    let mut props = WriterProperties::builder()
        .set_compression(options.compression.to_parquet()?)
        .set_max_row_group_row_count(Some(rows))
        .set_statistics_enabled(EnabledStatistics::Page);
    if let Some(batch) = first {
        props = choose_dictionaries(props, batch, rows);
    }
    let writer = ArrowWriter::try_new(target, schema, Some(props.build()))
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
