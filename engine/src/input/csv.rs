//! CSV input, decoded by arrow-csv: byte-range splits cut at line boundaries like text (a
//! record belongs to the split where it starts), the schema inferred from a sample of the
//! first file, the job's columns projected by name.
//!
//! A quoted field may hold line breaks. Inside a split that is fine; but a split cannot
//! tell whether its first line starts inside such a field. So a split whose last record
//! runs on past the end of its last line fails, naming the place, and `--csv-multiline`
//! reads each file as one split instead. Quotes are `"`, doubled inside a quoted field.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow_csv::reader::{Decoder, Format, ReaderBuilder};
use tokio::runtime::Handle;

use super::bad::{BadRecords, BadRows};
use super::compressed::Codec;
use super::text::TextSplit;
use super::text_rows::{self, BATCH_ROWS, Columns};
use crate::error::{Error, Result};
use crate::input::{InputSpec, TextShape};
use crate::storage::InputFile;

/// How CSV files are read (the `--csv-*` flags).
///
/// ```
/// use gristmill::config::RunConfig;
/// use gristmill::input::{CsvOptions, InputFormat};
///
/// // Semicolon-separated files without a header line, whatever their names.
/// let csv = CsvOptions { header: false, delimiter: Some(b';'), ..CsvOptions::default() };
/// let config = RunConfig::new(vec!["exports/".into()], "out").with_format(Some(InputFormat::Csv)).with_csv(csv);
/// assert_eq!(config.csv.delimiter, Some(b';'));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CsvOptions {
    /// The first line of each file names the columns.
    pub header: bool,
    /// The field delimiter; `None`: tab for `.tsv` files, else comma.
    pub delimiter: Option<u8>,
    /// Quoted fields may span lines: read each file as one split.
    pub multiline: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions { header: true, delimiter: None, multiline: false }
    }
}

impl CsvOptions {
    /// The delimiter of `file`.
    fn delimiter_of(&self, file: &InputFile) -> u8 {
        let name = Codec::strip_extension(file.location.path().as_ref());
        let tsv = name.to_ascii_lowercase().ends_with(".tsv");
        self.delimiter.unwrap_or(if tsv { b'\t' } else { b',' })
    }
}

/// How a CSV file is decoded: its dialect, the schema inferred from the first file of the
/// input with this dialect, and the job's columns in it.
#[derive(Debug)]
pub struct CsvFormat {
    /// The field delimiter.
    pub delimiter: u8,
    /// Whether each file starts with a header line.
    pub header: bool,
    /// The inferred schema (every column).
    pub schema: SchemaRef,
    columns: Columns,
}

/// Bytes `start..end` of a CSV file: the records that start in that range.
#[derive(Clone, Debug)]
pub struct CsvSplit {
    /// The file.
    pub file: Arc<InputFile>,
    /// First byte of the range.
    pub start: u64,
    /// One past the last byte of the range.
    pub end: u64,
    /// The dialect, schema and columns.
    pub format: Arc<CsvFormat>,
    /// The file's compression: then the split is the whole file.
    pub codec: Option<Codec>,
}

impl CsvFormat {
    /// The format for `schema` with `spec`'s columns resolved against it.
    pub(super) fn new(
        file: &InputFile,
        delimiter: u8,
        header: bool,
        schema: SchemaRef,
        spec: &InputSpec,
    ) -> Result<Self> {
        let columns = Columns::resolve(file, &schema, spec)?;
        Ok(CsvFormat { delimiter, header, schema, columns })
    }

    /// The format of `file` read with the schema the job declares.
    pub(super) fn declared(
        file: &InputFile,
        options: &CsvOptions,
        schema: SchemaRef,
        spec: &InputSpec,
    ) -> Result<Self> {
        Self::new(file, options.delimiter_of(file), options.header, schema, spec)
    }

    /// Infers the format of `file` (and of the input's other files with its delimiter).
    pub(super) async fn infer(
        file: &InputFile,
        codec: Option<Codec>,
        options: &CsvOptions,
        spec: &InputSpec,
    ) -> Result<Self> {
        let delimiter = options.delimiter_of(file);
        let (sample, whole) = text_rows::sample(file, codec).await?;
        let sample = if whole { &sample[..] } else { &sample[..last_record_end(&sample)] };
        let format = Format::default().with_header(options.header).with_delimiter(delimiter);
        let schema = text_rows::infer_leniently(sample, |max| {
            format.infer_schema(std::io::Cursor::new(sample), max).map(|(schema, _)| schema)
        });
        Self::new(file, delimiter, options.header, Arc::new(text_rows::nulls_as_strings(schema)), spec)
    }

    /// Whether this format reads `file` (same delimiter).
    pub(super) fn reads(&self, file: &InputFile, options: &CsvOptions) -> bool {
        options.delimiter_of(file) == self.delimiter
    }

    fn decoder(&self, skip_header: bool, batch_rows: usize) -> Decoder {
        ReaderBuilder::new(self.columns.decode_schema())
            .with_delimiter(self.delimiter)
            .with_header(skip_header)
            .with_header_validation(skip_header)
            .with_projection(self.columns.roots.clone())
            .with_batch_size(batch_rows)
            .build_decoder()
    }
}

/// Cuts `file` into splits of `split_size` bytes, or one split with `multiline` or when
/// compressed with `codec`.
pub(super) fn plan(
    file: &Arc<InputFile>,
    format: &Arc<CsvFormat>,
    codec: Option<Codec>,
    split_size: u64,
    multiline: bool,
) -> Vec<CsvSplit> {
    let size = if multiline { file.size.max(1) } else { split_size };
    super::text::plan(file, size, TextShape::Chunks, codec)
        .map(|s| CsvSplit { file: s.file, start: s.start, end: s.end, format: format.clone(), codec })
        .collect()
}

impl CsvSplit {
    /// Decodes the split's records, handing batches of the job's columns to `sink`; a
    /// record that does not decode goes to `bad` (which fails the read when it allows none).
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
        let header = self.start == 0 && self.format.header;
        let mut reader = SplitReader {
            split: self,
            io,
            decoder: self.format.decoder(header, BATCH_ROWS),
            header,
            carry: Vec::new(),
            carry_offset: 0,
            bad: BadRows::new(&self.file, io, bad).with_codec(self.codec),
        };
        let mut stopped = false;
        let read = lines.read_chunks(io, &mut |bytes, offset| {
            let (bytes, offset) = text_rows::skip_bom(bytes, offset);
            stopped = !reader.push(bytes, offset, sink)?;
            Ok(!stopped)
        })?;
        if !stopped {
            reader.finish(sink)?;
        }
        Ok(read)
    }

    /// The reason for `error`; a split after a file's first may have started inside a
    /// quoted multi-line field, which looks like a malformed row: say so.
    fn hint(&self, error: &ArrowError) -> String {
        let reason = text_rows::reason(error);
        if self.start == 0 {
            return reason;
        }
        format!(
            "{reason} (if a quoted field with line breaks spans the split boundary at byte {}, pass \
             --csv-multiline)",
            self.start
        )
    }
}

/// The state of one split's read: the decoder, and the start of a record that continues
/// past the bytes decoded so far.
struct SplitReader<'a> {
    split: &'a CsvSplit,
    io: &'a Handle,
    decoder: Decoder,
    /// The next record is the file's header line.
    header: bool,
    carry: Vec<u8>,
    carry_offset: u64,
    bad: BadRows<'a>,
}

impl SplitReader<'_> {
    /// Decodes the whole records of `bytes` (whole lines from `offset`), keeping a record
    /// that goes on for the next. Returns `false` when `sink` wants no more.
    fn push(
        &mut self,
        bytes: &[u8],
        offset: u64,
        sink: &mut dyn FnMut(RecordBatch) -> Result<bool>,
    ) -> Result<bool> {
        let mut carry = std::mem::take(&mut self.carry);
        let (run, at) = if carry.is_empty() {
            (bytes, offset)
        } else {
            carry.extend_from_slice(bytes);
            (&carry[..], self.carry_offset)
        };
        let end = last_record_end(run);
        let more = self.decode(&run[..end], at, false, sink)?;
        self.carry = run[end..].to_vec();
        self.carry_offset = at + end as u64;
        Ok(more)
    }

    /// Decodes what is left after the split's last line: the file's last record, without
    /// a line break. A quoted field still open fails.
    fn finish(mut self, sink: &mut dyn FnMut(RecordBatch) -> Result<bool>) -> Result<()> {
        let (split, offset) = (self.split, self.carry_offset);
        if self.carry.is_empty() {
            return Ok(());
        }
        // A compressed split is its whole file: what is left ends the file.
        if split.codec.is_none() && offset + (self.carry.len() as u64) < split.file.size {
            let reason = format!(
                "a quoted field runs on past the end of the split at byte {}: a split boundary inside a \
                 quoted multi-line field is not supported; pass --csv-multiline to read each file whole",
                split.end
            );
            return Err(text_rows::malformed(&split.file, split.codec, self.io, offset, &reason));
        }
        if last_record_end(&[&self.carry[..], b"\n"].concat()) == 0 {
            let reason = "a quoted field is not closed before the end of the file";
            return Err(text_rows::malformed(&split.file, split.codec, self.io, offset, reason));
        }
        let carry = std::mem::take(&mut self.carry);
        self.decode(&carry, offset, true, sink).map(drop)
    }

    /// Decodes `bytes`, whole records from `offset` of the file, the last one at the end
    /// of the file when `eof`. Returns `false` when `sink` wants no more.
    fn decode(
        &mut self,
        bytes: &[u8],
        offset: u64,
        eof: bool,
        sink: &mut dyn FnMut(RecordBatch) -> Result<bool>,
    ) -> Result<bool> {
        let header = self.header;
        // The header line is the first record of the first bytes decoded.
        self.header &= bytes.is_empty();
        let mut pos = 0;
        while pos < bytes.len() {
            let (used, batch) = match decode_step(&mut self.decoder, &bytes[pos..], eof) {
                Ok(step) => step,
                Err(e) if !self.bad.skipping() => return Err(self.locate(bytes, offset, header, &e)),
                Err(_) => {
                    // The decoder's state is unknown after an error: start a fresh one.
                    self.decoder = self.split.format.decoder(false, BATCH_ROWS);
                    let at = offset + pos as u64;
                    return self.salvage(&bytes[pos..], at, header && pos == 0, sink);
                }
            };
            if used == 0 && batch.is_none() {
                return Err(Error::Internal(format!(
                    "the CSV decoder stalled in {}",
                    self.split.file.display()
                )));
            }
            pos += used;
            if let Some(batch) = batch
                && !sink(self.split.format.columns.conform(&self.split.file, batch)?)?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Decodes `bytes` (whole records from `offset`, the header line first if `header`, at
    /// least one record bad) a record at a time: the records that do not decode go to
    /// `bad`, the others to `sink`. A bad header line fails. Returns `false` when `sink`
    /// wants no more.
    fn salvage(
        &mut self,
        bytes: &[u8],
        offset: u64,
        mut header: bool,
        sink: &mut dyn FnMut(RecordBatch) -> Result<bool>,
    ) -> Result<bool> {
        let split = self.split;
        let (mut good, mut pos) = (Vec::new(), 0);
        while pos < bytes.len() {
            let end = pos + record_len(&bytes[pos..]);
            let (record, at) = (&bytes[pos..end], offset + pos as u64);
            match decode_step(&mut split.format.decoder(header, 1), record, true) {
                Ok((_, batch)) => good.extend(batch),
                Err(e) if header => {
                    return Err(text_rows::malformed(&split.file, split.codec, self.io, at, &split.hint(&e)));
                }
                Err(e) => self.bad.malformed(at, record, &text_rows::reason(&e))?,
            }
            header = false;
            pos = end;
        }
        match text_rows::concat(good)? {
            Some(batch) => sink(split.format.columns.conform(&split.file, batch)?),
            None => Ok(true),
        }
    }

    /// The error for `bytes` (whole records from `offset`, the header line first if
    /// `header`), which failed to decode with `error`: decodes them again one record at a
    /// time to find the bad one.
    fn locate(&self, bytes: &[u8], offset: u64, header: bool, error: &ArrowError) -> Error {
        let split = self.split;
        let mut decoder = split.format.decoder(header, 1);
        let mut pos = 0;
        while pos < bytes.len() {
            // The decoder leaves a record's line break (or the `\n` of `\r\n`) to the next one.
            pos += bytes[pos..].iter().take_while(|&&b| b == b'\n' || b == b'\r').count();
            match decode_step(&mut decoder, &bytes[pos..], true) {
                Ok((0, _)) => break,
                Ok((used, _)) => pos += used,
                Err(e) => {
                    return text_rows::malformed(
                        &split.file,
                        split.codec,
                        self.io,
                        offset + pos as u64,
                        &split.hint(&e),
                    );
                }
            }
        }
        text_rows::malformed(&split.file, split.codec, self.io, offset, &split.hint(error))
    }
}

/// One decoder call and the batch it completed: the bytes used and the batch.
fn decode_step(
    decoder: &mut Decoder,
    bytes: &[u8],
    eof: bool,
) -> std::result::Result<(usize, Option<RecordBatch>), ArrowError> {
    let used = decoder.decode(bytes)?;
    if eof && used == bytes.len() {
        // An empty read ends the last record, which may lack a line break.
        decoder.decode(&[])?;
    }
    Ok((used, decoder.flush()?))
}

/// The length of the first record of `bytes` (which start at a record's start), its line
/// break included: up to the first line break outside quotes, or all of `bytes`.
fn record_len(bytes: &[u8]) -> usize {
    let mut quoted = false;
    for at in memchr::memchr2_iter(b'"', b'\n', bytes) {
        if bytes[at] == b'"' {
            quoted = !quoted;
        } else if !quoted {
            return at + 1;
        }
    }
    bytes.len()
}

/// Where the last whole record of `bytes` (which start at a record's start) ends: after
/// the last line break outside quotes; 0 when there is none.
fn last_record_end(bytes: &[u8]) -> usize {
    let mut quoted = false;
    let mut end = 0;
    for at in memchr::memchr2_iter(b'"', b'\n', bytes) {
        if bytes[at] == b'"' {
            quoted = !quoted;
        } else if !quoted {
            end = at + 1;
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::DataType;

    use super::super::InputFormat;
    use super::super::text_rows::test_support::{Files, options};
    use super::*;

    /// Quoting, embedded delimiters and quotes, Unicode, empty fields, `\r\n`, no final newline.
    const DATA: &str = "k,v,s\n\
        a,1,plain\n\
        b,2,\"with, comma\"\n\
        \"c\",3,\"say \"\"hi\"\"\"\r\n\
        é,,ünïcödé ✓\n\
        ,5,\n\
        a,6,last";

    const ROWS: [&str; 6] =
        ["a|1|plain", "b|2|with, comma", "c|3|say \"hi\"", "é|∅|ünïcödé ✓", "∅|5|∅", "a|6|last"];

    #[test]
    fn every_split_size_reads_every_record_once() {
        let files = Files::new(&[("t.csv", DATA.as_bytes())]);
        for split_size in 1..=DATA.len() as u64 + 1 {
            let (names, rows) = files.read(&InputSpec::text_lines(), &options(split_size)).unwrap();
            assert_eq!(names, ["k", "v", "s"]);
            assert_eq!(rows, ROWS, "split size {split_size}");
        }
    }

    #[test]
    fn types_are_inferred_and_columns_projected_by_name() {
        let files = Files::new(&[("t.csv", DATA.as_bytes())]);
        let splits = files.plan(&InputSpec::text_lines(), &options(1 << 20)).unwrap();
        let super::super::Split::Csv(split) = &splits[0] else { panic!("not a CSV split") };
        let types: Vec<_> = split.format.schema.fields().iter().map(|f| f.data_type().clone()).collect();
        assert_eq!(types, [DataType::Utf8, DataType::Int64, DataType::Utf8]);
        // Declared order; a number read as a string; a string column as a view.
        let spec =
            InputSpec::text_lines().with_parquet_columns([("s", DataType::Utf8View), ("v", DataType::Utf8)]);
        let (names, rows) = files.read(&spec, &options(7)).unwrap();
        assert_eq!(names, ["s", "v"]);
        assert_eq!(rows[..3], ["plain|1", "with, comma|2", "say \"hi\"|3"]);
        let missing = InputSpec::text_lines().with_parquet_columns([("nope", DataType::Utf8)]);
        let error = files.read(&missing, &options(7)).unwrap_err();
        assert!(
            error.to_string().contains("no column `nope`") && error.to_string().contains("t.csv"),
            "{error}"
        );
    }

    #[test]
    fn headerless_files_and_delimiters() {
        let files = Files::new(&[("t.tsv", b"a\t1\nb,c\t2\n"), ("u.txt", b"x;1\n")]);
        let mut options = options(3);
        options.csv.header = false;
        let (names, rows) = files.read(&InputSpec::text_lines(), &options).unwrap();
        assert_eq!(names, ["column_1", "column_2"]);
        assert_eq!(rows, ["a|1", "b,c|2", "x;1"], "tab for .tsv; u.txt is text");
        // Forced CSV with another delimiter.
        let files = Files::new(&[("u.txt", b"x;1\ny;2\n")]);
        options.csv.delimiter = Some(b';');
        options.format = Some(InputFormat::Csv);
        assert_eq!(files.read(&InputSpec::text_lines(), &options).unwrap().1, ["x|1", "y|2"]);
    }

    #[test]
    fn malformed_rows_name_the_file_the_line_and_the_reason() {
        let files = Files::new(&[("bad.csv", b"k,v\na,1\nb,2\nc\nd,4\n")]);
        for split_size in [1, 5, 100] {
            let error = files.read(&InputSpec::text_lines(), &options(split_size)).unwrap_err();
            let message = error.to_string();
            assert_eq!(error.kind(), crate::error::ErrorKind::CorruptInput);
            assert!(message.contains("bad.csv") && message.contains("line 4 (byte offset 12)"), "{message}");
            assert!(message.contains("incorrect number of fields, expected 2 got 1"), "{message}");
        }
        // A value that does not parse as the column's type.
        let files = Files::new(&[("t.csv", b"k,v\na,1\nb,x\n")]);
        let spec = InputSpec::text_lines().with_parquet_columns([("v", DataType::Int64)]);
        let message = files.read(&spec, &options(4)).unwrap_err().to_string();
        assert!(
            message.contains("line 3 (byte offset 8)") && message.contains("'x' as type 'Int64'"),
            "{message}"
        );
    }

    #[test]
    fn bad_records_are_skipped_and_kept_with_their_line_and_text() {
        let files = Files::new(&[("bad.csv", b"k,v\na,1\nb,2\nc\nd,4\n\"e,\",5,6\n")]);
        for split_size in [1, 5, 100] {
            let bad = BadRecords::new(5);
            let (_, rows) =
                files.read_keeping_bad(&InputSpec::text_lines(), &options(split_size), &bad).unwrap();
            assert_eq!(rows, ["a|1", "b|2", "d|4"], "split size {split_size}");
            let kept: Vec<_> = bad.take().into_iter().map(|r| (r.line, r.offset, r.text)).collect();
            assert_eq!(kept, [(Some(4), 12, "c".to_owned()), (Some(6), 18, "\"e,\",5,6".to_owned())]);
        }
        let error =
            files.read_keeping_bad(&InputSpec::text_lines(), &options(5), &BadRecords::new(1)).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("more than 1 bad records") && message.contains("line 6 (byte offset 18)"),
            "{message}"
        );
        // A header that is not the first file's still fails.
        let files = Files::new(&[("a.csv", b"k,v\na,1\n"), ("b.csv", b"v,k\n2,b\n")]);
        let error =
            files.read_keeping_bad(&InputSpec::text_lines(), &options(100), &BadRecords::new(5)).unwrap_err();
        assert!(error.to_string().contains("header"), "{error}");
    }

    #[test]
    fn a_value_past_the_sample_that_does_not_parse_as_the_inferred_type_fails() {
        let mut data = String::from("k,v\n");
        data.push_str(&"a,123456789012\n".repeat(80_000));
        data.push_str("b,x\n");
        let files = Files::new(&[("big.csv", data.as_bytes())]);
        let message = files.read(&InputSpec::text_lines(), &options(1 << 20)).unwrap_err().to_string();
        assert!(message.contains("big.csv: malformed row at line 80002"), "{message}");
        assert!(message.contains("'x' as type 'Int64'"), "{message}");
    }

    #[test]
    fn a_second_file_with_another_header_is_refused() {
        let files = Files::new(&[("a.csv", b"k,v\na,1\n"), ("b.csv", b"v,k\n2,b\n")]);
        let message = files.read(&InputSpec::text_lines(), &options(100)).unwrap_err().to_string();
        assert!(
            message.contains("b.csv: malformed row at line 1") && message.contains("header"),
            "{message}"
        );
    }

    #[test]
    fn multi_line_fields_need_one_split_per_file() {
        let data = b"k,s\na,\"two\nlines\"\nb,\"x\"\n";
        let files = Files::new(&[("m.csv", data)]);
        let mut options = options(6);
        let message = files.read(&InputSpec::text_lines(), &options).unwrap_err().to_string();
        assert!(
            message.contains("m.csv: malformed row at line 2") && message.contains("--csv-multiline"),
            "{message}"
        );
        options.csv.multiline = true;
        assert_eq!(files.plan(&InputSpec::text_lines(), &options).unwrap().len(), 1);
        let (_, rows) = files.read(&InputSpec::text_lines(), &options).unwrap();
        assert_eq!(rows, ["a|two\nlines", "b|x"]);
        // Within one split a multi-line field is read without the flag.
        options.csv.multiline = false;
        options.split_size = 100;
        assert_eq!(files.read(&InputSpec::text_lines(), &options).unwrap().1, rows);
        let files = Files::new(&[("open.csv", b"k,s\na,\"never closed\n")]);
        let message = files.read(&InputSpec::text_lines(), &options).unwrap_err().to_string();
        assert!(message.contains("line 2") && message.contains("not closed"), "{message}");
    }

    #[test]
    fn byte_order_marks_columns_empty_in_the_sample_and_empty_files() {
        let files =
            Files::new(&[("a.csv", b""), ("b.csv", b"\xEF\xBB\xBFk,e\nx,\n"), ("c.csv", b"k,e\ny,later\n")]);
        for split_size in [1, 4, 100] {
            let (names, rows) = files.read(&InputSpec::text_lines(), &options(split_size)).unwrap();
            assert_eq!(names, ["k", "e"], "the schema comes from the first non-empty file, without its BOM");
            assert_eq!(rows, ["x|∅", "y|later"], "a column empty in the sample is read as strings");
        }
    }

    #[test]
    fn record_ends_skip_quoted_line_breaks() {
        assert_eq!(last_record_end(b"a,b\nc,d"), 4);
        assert_eq!(last_record_end(b"a,\"b\nc\"\nd"), 8);
        assert_eq!(last_record_end(b"a,\"b\nc"), 0);
        assert_eq!(last_record_end(b"\"\"\"\"\n"), 5);
    }
}
