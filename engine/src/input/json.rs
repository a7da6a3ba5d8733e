//! JSON lines input (one JSON object per line), decoded by arrow-json: byte-range splits
//! cut at line boundaries like text, the schema inferred from a sample of the first file,
//! only the job's columns decoded.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow_json::reader::{Decoder, ReaderBuilder, infer_json_schema};
use tokio::runtime::Handle;

use super::bad::{BadRecords, BadRows};
use super::compressed::Codec;
use super::text::TextSplit;
use super::text_rows::{self, BATCH_ROWS, Columns};
use crate::error::{Error, Result};
use crate::input::{InputSpec, TextShape};
use crate::storage::InputFile;

/// How JSON lines files are decoded: the schema inferred from the input's first JSON
/// file, and the job's columns in it.
#[derive(Debug)]
pub struct JsonFormat {
    /// The inferred schema: every field of the sampled objects, in name order.
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
    /// The file's compression: then the split is the whole file.
    pub codec: Option<Codec>,
}

impl JsonFormat {
    /// The format for `schema` with `spec`'s columns resolved against it.
    pub(super) fn new(file: &InputFile, schema: SchemaRef, spec: &InputSpec) -> Result<Self> {
        let columns = Columns::resolve(file, &schema, spec)?;
        Ok(JsonFormat { schema, columns })
    }

    /// Infers the format from the first lines of `file`.
    pub(super) async fn infer(file: &InputFile, codec: Option<Codec>, spec: &InputSpec) -> Result<Self> {
        let (sample, whole) = text_rows::sample(file, codec).await?;
        let cut = if whole { sample.len() } else { memchr::memrchr(b'\n', &sample).map_or(0, |nl| nl + 1) };
        let sample = &sample[..cut];
        let schema = text_rows::infer_leniently(sample, |max| {
            infer_json_schema(std::io::Cursor::new(sample), max).map(|(schema, _)| schema)
        });
        Self::new(file, Arc::new(text_rows::nulls_as_strings(schema)), spec)
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

/// Cuts `file` into splits of `split_size` bytes; one split when compressed with `codec`.
pub(super) fn plan(
    file: &Arc<InputFile>,
    format: &Arc<JsonFormat>,
    codec: Option<Codec>,
    split_size: u64,
) -> Vec<JsonSplit> {
    super::text::plan(file, split_size, TextShape::Chunks, codec)
        .map(|s| JsonSplit { file: s.file, start: s.start, end: s.end, format: format.clone(), codec })
        .collect()
}

impl JsonSplit {
    /// Decodes the split's lines, handing batches of the job's columns to `sink`; a line
    /// that does not decode goes to `bad` (which fails the read when it allows none).
    /// Returns the bytes read (decompressed bytes of a compressed file).
    pub fn read(
        &self,
        io: &Handle,
        bad: &BadRecords,
        sink: &mut dyn FnMut(RecordBatch) -> Result<bool>,
    ) -> Result<u64> {
        let lines = TextSplit {
            file: self.file.clone(),
            start: self.start,
            end: self.end,
            shape: TextShape::Chunks,
            codec: self.codec,
        };
        let mut decoder = self.format.decoder(BATCH_ROWS)?;
        let mut bad = BadRows::new(&self.file, io, bad).with_codec(self.codec);
        lines.read_chunks(io, &mut |bytes, offset| {
            let (bytes, offset) = text_rows::skip_bom(bytes, offset);
            self.decode(&mut decoder, (io, &mut bad), bytes, offset, sink)
        })
    }

    /// Decodes `bytes`, whole lines from `offset` of the file. Returns `false` when `sink`
    /// wants no more.
    fn decode(
        &self,
        decoder: &mut Decoder,
        (io, bad): (&Handle, &mut BadRows),
        bytes: &[u8],
        offset: u64,
        sink: &mut dyn FnMut(RecordBatch) -> Result<bool>,
    ) -> Result<bool> {
        let mut pos = 0;
        while pos < bytes.len() {
            let (used, batch) = match decode_step(decoder, &bytes[pos..]) {
                Ok(step) => step,
                Err(e) if !bad.skipping() => return Err(self.locate(io, bytes, offset, &e)),
                Err(_) => {
                    // The decoder's state is unknown after an error: start a fresh one.
                    *decoder = self.format.decoder(BATCH_ROWS)?;
                    return self.salvage(bad, &bytes[pos..], offset + pos as u64, sink);
                }
            };
            if used == 0 && batch.is_none() {
                return Err(Error::Internal(format!("the JSON decoder stalled in {}", self.file.display())));
            }
            pos += used;
            if let Some(batch) = batch
                && !sink(self.format.columns.conform(&self.file, batch)?)?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Decodes `bytes` (whole lines from `offset`, at least one of them bad) line by line:
    /// the lines that do not decode go to `bad`, the others to `sink`. Returns `false`
    /// when `sink` wants no more.
    fn salvage(
        &self,
        bad: &mut BadRows,
        bytes: &[u8],
        offset: u64,
        sink: &mut dyn FnMut(RecordBatch) -> Result<bool>,
    ) -> Result<bool> {
        let mut good = Vec::new();
        let mut at = offset;
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            match decode_step(&mut self.format.decoder(1)?, line) {
                Ok((_, batch)) => good.extend(batch),
                Err(e) => bad.malformed(at, line, &line_reason(line, &e))?,
            }
            at += line.len() as u64;
        }
        match text_rows::concat(good)? {
            Some(batch) => sink(self.format.columns.conform(&self.file, batch)?),
            None => Ok(true),
        }
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
                return text_rows::malformed(
                    &self.file,
                    self.codec,
                    io,
                    offset + start as u64,
                    &line_reason(line, &e),
                );
            }
            start += line.len();
        }
        text_rows::malformed(&self.file, self.codec, io, offset, &text_rows::reason(error))
    }
}

/// Why `line` failed to decode with `error`.
fn line_reason(line: &[u8], error: &ArrowError) -> String {
    let mut reason = text_rows::reason(error);
    if line.trim_ascii_start().starts_with(b"[") {
        reason.push_str(" (JSON lines input holds one object per line, not an array)");
    }
    reason
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

#[cfg(test)]
mod tests {
    use arrow::datatypes::DataType;

    use super::super::text_rows::test_support::{Files, options};
    use super::*;

    /// Missing and null fields, escapes, Unicode, `\r\n`, a blank line, no final newline.
    const DATA: &str = "{\"k\": \"a\", \"v\": 1, \"s\": \"plain\"}\n\
        {\"k\": \"b\", \"s\": \"with \\\"quotes\\\", commas\\nand a newline\"}\r\n\
        \n\
        {\"v\": 3, \"k\": \"é\", \"s\": null}\n\
        {\"k\": \"ünï ✓\", \"v\": -4, \"s\": \"\"}";

    /// Columns in name order, as arrow-json infers them.
    const ROWS: [&str; 4] = ["a|plain|1", "b|with \"quotes\", commas\nand a newline|∅", "é|∅|3", "ünï ✓||-4"];

    #[test]
    fn every_split_size_reads_every_line_once() {
        let files = Files::new(&[("t.jsonl", DATA.as_bytes())]);
        for split_size in 1..=DATA.len() as u64 + 1 {
            let (names, rows) = files.read(&InputSpec::text_lines(), &options(split_size)).unwrap();
            assert_eq!(names, ["k", "s", "v"]);
            assert_eq!(rows, ROWS, "split size {split_size}");
        }
    }

    #[test]
    fn columns_are_projected_by_name() {
        let files = Files::new(&[("t.json", DATA.as_bytes())]);
        let spec =
            InputSpec::text_lines().with_parquet_columns([("v", DataType::Utf8), ("k", DataType::Utf8View)]);
        let (names, rows) = files.read(&spec, &options(9)).unwrap();
        assert_eq!(names, ["v", "k"]);
        assert_eq!(rows, ["1|a", "∅|b", "3|é", "-4|ünï ✓"], "numbers read as strings");
    }

    #[test]
    fn a_value_past_the_sample_that_does_not_parse_as_the_inferred_type_fails() {
        let mut data = "{\"v\": 12345}\n".repeat(90_000);
        data.push_str("{\"v\": \"x\"}\n");
        let files = Files::new(&[("big.jsonl", data.as_bytes())]);
        let message = files.read(&InputSpec::text_lines(), &options(1 << 20)).unwrap_err().to_string();
        assert!(message.contains("big.jsonl: malformed row at line 90001"), "{message}");
    }

    #[test]
    fn byte_order_marks_and_fields_null_in_the_sample() {
        let first = b"\xEF\xBB\xBF{\"k\": \"a\", \"n\": null}\n";
        let files = Files::new(&[("a.json", first), ("b.json", b"{\"k\": \"b\", \"n\": \"x\"}\n")]);
        let (names, rows) = files.read(&InputSpec::text_lines(), &options(2)).unwrap();
        assert_eq!(names, ["k", "n"]);
        assert_eq!(rows, ["a|∅", "b|x"]);
    }

    #[test]
    fn bad_records_are_skipped_and_kept_with_their_line_and_text() {
        let data = b"{\"k\": \"a\"}\n{\"k\": }\n\n{\"k\": \"b\"}\r\nnot json\r\n{\"k\": \"c\"}";
        let files = Files::new(&[("bad.jsonl", data)]);
        for split_size in [1, 7, 1000] {
            let bad = BadRecords::new(2);
            let (_, rows) =
                files.read_keeping_bad(&InputSpec::text_lines(), &options(split_size), &bad).unwrap();
            assert_eq!(rows, ["a", "b", "c"], "split size {split_size}");
            let kept: Vec<_> = bad.take().into_iter().map(|r| (r.line, r.offset, r.text)).collect();
            assert_eq!(kept, [(Some(2), 11, "{\"k\": }".to_owned()), (Some(5), 32, "not json".to_owned())]);
        }
        let error = files
            .read_keeping_bad(&InputSpec::text_lines(), &options(1000), &BadRecords::new(1))
            .unwrap_err();
        assert!(error.to_string().contains("line 5 (byte offset 32)"), "{error}");
    }

    #[test]
    fn syntax_and_type_errors_name_the_file_and_the_line() {
        let data =
            b"{\"k\": \"a\", \"v\": 1}\n{\"k\": \"b\", \"v\": 2}\n{\"k\": \"c\", \"v\": }\n{\"k\": \"d\"}\n";
        let files = Files::new(&[("bad.ndjson", data)]);
        for split_size in [1, 10, 1000] {
            let error = files.read(&InputSpec::text_lines(), &options(split_size)).unwrap_err();
            assert_eq!(error.kind(), crate::error::ErrorKind::CorruptInput);
            let message = error.to_string();
            assert!(message.contains("bad.ndjson: malformed row at line 3 (byte offset 38)"), "{message}");
        }
        let files = Files::new(&[("open.json", b"{\"k\": \"a\"}\n{\"k\": \"b\"\n{\"k\": \"c\"}\n")]);
        let message = files.read(&InputSpec::text_lines(), &options(1000)).unwrap_err().to_string();
        assert!(message.contains("line 2"), "{message}");
        let files = Files::new(&[("array.json", b"[{\"k\": \"a\"},\n{\"k\": \"b\"}]\n")]);
        let message = files.read(&InputSpec::text_lines(), &options(1000)).unwrap_err().to_string();
        assert!(message.contains("line 1") && message.contains("not an array"), "{message}");
        let files = Files::new(&[("t.json", b"{\"v\": 1}\n{\"v\": \"x\"}\n")]);
        let spec = InputSpec::text_lines().with_parquet_columns([("v", DataType::Int64)]);
        let message = files.read(&spec, &options(1000)).unwrap_err().to_string();
        assert!(message.contains("line 2 (byte offset 9)"), "{message}");
    }
}
