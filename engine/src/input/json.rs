//! JSON lines input (one JSON object per line), decoded by arrow-json: byte-range splits
//! cut at line boundaries like text, the schema inferred from a sample of the first file,
//! only the job's columns decoded.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow_json::reader::{Decoder, ReaderBuilder, infer_json_schema};
use tokio::runtime::Handle;

use super::text::TextSplit;
use super::text_rows::{self, BATCH_ROWS, Columns};
use crate::error::{Error, Result};
use crate::job::{InputSpec, TextShape};
use crate::storage::InputFile;

/// How JSON lines files are decoded: the schema inferred from the input's first JSON
/// file, and the job's columns in it.
#[derive(Debug)]
pub struct JsonFormat {
    /// The inferred schema (every field of the sampled objects).
    pub schema: SchemaRef,
    columns: Columns,
}

/// Bytes `start..end` of a JSON lines file: the lines that start in that range.
#[derive(Clone, Debug)]
pub struct JsonSplit {
    /// The file.
    pub file: Arc<InputFile>,
    /// First byte of the range.
    pub start: u64,
    /// One past the last byte of the range.
    pub end: u64,
    /// The schema and columns.
    pub format: Arc<JsonFormat>,
}

impl JsonFormat {
    /// The format for `schema` with `spec`'s columns resolved against it.
    pub(super) fn new(file: &InputFile, schema: SchemaRef, spec: &InputSpec) -> Result<Self> {
        let columns = Columns::resolve(file, &schema, spec.parquet_columns.as_deref())?;
        Ok(JsonFormat { schema, columns })
    }

    /// Infers the format from the first lines of `file`.
    pub(super) async fn infer(file: &InputFile, spec: &InputSpec) -> Result<Self> {
        let (sample, whole) = text_rows::sample(file).await?;
        let cut = if whole { sample.len() } else { memchr::memrchr(b'\n', &sample).map_or(0, |nl| nl + 1) };
        let sample = &sample[..cut];
        let schema = text_rows::infer_leniently(sample, |max| {
            infer_json_schema(std::io::Cursor::new(sample), max).map(|(schema, _)| schema)
        });
        Self::new(file, Arc::new(schema), spec)
    }

    fn decoder(&self, batch_rows: usize) -> Result<Decoder> {
        ReaderBuilder::new(self.columns.projected_schema())
            .with_batch_size(batch_rows)
            // Numbers and booleans read as strings where a job declares a string column.
            .with_coerce_primitive(true)
            .build_decoder()
            .map_err(Error::arrow("building a JSON decoder"))
    }
}

/// Cuts `file` into splits of `split_size` bytes.
pub(super) fn plan(file: &Arc<InputFile>, format: &Arc<JsonFormat>, split_size: u64) -> Vec<JsonSplit> {
    super::text::plan(file, split_size, TextShape::Chunks)
        .map(|s| JsonSplit { file: s.file, start: s.start, end: s.end, format: format.clone() })
        .collect()
}

impl JsonSplit {
    /// Decodes the split's lines, handing batches of the job's columns to `sink`.
    pub fn read(&self, io: &Handle, sink: &mut dyn FnMut(RecordBatch) -> Result<bool>) -> Result<()> {
        let lines =
            TextSplit { file: self.file.clone(), start: self.start, end: self.end, shape: TextShape::Chunks };
        let mut decoder = self.format.decoder(BATCH_ROWS)?;
        lines.read_chunks(io, &mut |bytes, offset| self.decode(&mut decoder, io, bytes, offset, sink))
    }

    /// Decodes `bytes`, whole lines from `offset` of the file. Returns `false` when `sink`
    /// wants no more.
    fn decode(
        &self,
        decoder: &mut Decoder,
        io: &Handle,
        bytes: &[u8],
        offset: u64,
        sink: &mut dyn FnMut(RecordBatch) -> Result<bool>,
    ) -> Result<bool> {
        let mut pos = 0;
        while pos < bytes.len() {
            let (used, batch) =
                decode_step(decoder, &bytes[pos..]).map_err(|e| self.locate(io, bytes, offset, &e))?;
            if used == 0 && batch.is_none() {
                return Err(Error::Internal(format!("the JSON decoder stalled in {}", self.file.display())));
            }
            pos += used;
            if let Some(batch) = batch
                && !sink(self.format.columns.conform(batch)?)?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The error for `bytes` (whole lines from `offset`), which failed to decode with
    /// `error`: decodes them again line by line to find the bad one.
    fn locate(&self, io: &Handle, bytes: &[u8], offset: u64, error: &ArrowError) -> Error {
        let mut start = 0;
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            let failed = match self.format.decoder(1) {
                Ok(mut decoder) => decode_step(&mut decoder, line).err(),
                Err(e) => return e,
            };
            if let Some(e) = failed {
                return text_rows::malformed(&self.file, io, offset + start as u64, &text_rows::reason(&e));
            }
            start += line.len();
        }
        text_rows::malformed(&self.file, io, offset, &text_rows::reason(error))
    }
}

/// One decoder call over whole lines and the batch it completed: the bytes used and the
/// batch. A record left open at the end of the bytes is an error.
fn decode_step(
    decoder: &mut Decoder,
    bytes: &[u8],
) -> std::result::Result<(usize, Option<RecordBatch>), ArrowError> {
    let used = decoder.decode(bytes)?;
    if used == bytes.len() && decoder.has_partial_record() {
        return Err(ArrowError::JsonError("the JSON value is not complete at the end of its line".into()));
    }
    Ok((used, decoder.flush()?))
}
