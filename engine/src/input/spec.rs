//! What a job's mappers read: [`InputSpec`] (text lines or chunks, Parquet columns, fixed-size
//! records, a filter, a declared schema). The job API re-exports these from
//! [`job`](crate::job), where a job author meets them; they live here because the readers
//! of this module consume them, so `input` needs nothing from `job`.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::{Predicate, RecordColumns, RecordFormat};

/// The field metadata key that marks text-chunk batches.
const TEXT_CHUNKS_MARKER: &str = "gristmill.text_chunks";

/// A column a job reads from Parquet input.
///
/// ```
/// use gristmill::job::ParquetColumn;
/// use gristmill::prelude::*;
///
/// // Read `amount` (a `Decimal128(15, 2)` in the files) as 64-bit decimals, `note` as stored.
/// let mut spec = InputSpec::text_lines();
/// spec.parquet_columns = Some(vec![
///     ParquetColumn { name: "amount".into(), data_type: Some(DataType::Decimal64(15, 2)) },
///     ParquetColumn { name: "note".into(), data_type: None },
/// ]);
/// # let _ = spec;
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ParquetColumn {
    /// The column's name in the file.
    pub name: String,
    /// The type the mapper expects; `None` takes the file's type. Lossless conversions are
    /// made: between string (or binary) encodings (`Utf8`, `LargeUtf8`, `Utf8View`), from
    /// strings to a dictionary of strings, and between decimal widths of the same precision
    /// and scale (e.g. a file's `Decimal128(15, 2)` read as `Decimal64(15, 2)`). Where the
    /// Parquet decoder can produce the declared type itself, it does (no second pass).
    pub data_type: Option<DataType>,
}

/// How text input reaches a mapper.
///
/// ```
/// use gristmill::job::TextShape;
/// use gristmill::prelude::*;
///
/// assert_eq!(InputSpec::text_lines().text, TextShape::Lines);
/// assert_eq!(InputSpec::text_chunks().text, TextShape::Chunks);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TextShape {
    /// One row per line, terminators removed (Hadoop's `TextInputFormat`).
    #[default]
    Lines,
    /// One row per chunk of whole lines, terminators kept (up to a few MiB a row): for jobs
    /// that scan text without caring where lines end (word count, a literal search), which
    /// then skip splitting it into lines. See [`InputSpec::text_chunks`].
    Chunks,
}

/// What a job's mappers read.
///
/// Text input arrives as batches with one `Utf8` column `line` (terminators removed), as
/// chunks of whole lines when [`InputSpec::text_chunks`] says so, or as fixed-size records
/// when [`InputSpec::fixed_records`] says so.
/// Parquet input arrives as batches of the declared columns, in the declared order.
///
/// What [`Job::input`](crate::job::Job::input) returns; typed records make one with
/// [`rows_input`](crate::job::rows::rows_input).
///
/// ```
/// use std::sync::Arc;
///
/// use gristmill::arrow::array::StringArray;
/// use gristmill::arrow::datatypes::{Field, Schema};
/// use gristmill::input::Predicate;
/// use gristmill::prelude::*;
///
/// // Two columns of lineitem, only the rows shipped by the cutoff (row groups pruned).
/// let shipped = InputSpec::text_lines()
///     .with_parquet_columns([("l_quantity", DataType::Float64), ("l_returnflag", DataType::Utf8)])
///     .with_filter(Predicate::parse("l_shipdate <= '1998-09-02'")?);
/// assert_eq!(shipped.parquet_columns.as_ref().map(Vec::len), Some(2));
/// // Only row groups pruned: the mapper tests the filter itself.
/// let pruned = InputSpec::text_lines().with_pruning(Predicate::parse("l_quantity > 40")?);
/// assert!(!pruned.filter_rows);
///
/// // CSV read with a declared schema: zip codes stay strings.
/// let schema = Arc::new(Schema::new(vec![Field::new("zip", DataType::Utf8, true), Field::new("n", DataType::Int64, true)]));
/// let zips = InputSpec::text_lines().with_schema(schema);
/// assert!(zips.schema.is_some());
///
/// // 100-byte records with a 10-byte key (TeraSort), copied or passed through whole.
/// assert_eq!(InputSpec::fixed_records(100, 10).records.map(|r| r.key_len), Some(10));
/// assert!(InputSpec::fixed_records_whole(100, 10).records.is_some());
///
/// // Text as lines, or as chunks of whole lines told apart from Parquet rows.
/// let lines = RecordBatch::try_new(InputSpec::text_schema(), vec![Arc::new(StringArray::from(vec!["a line"]))])?;
/// let chunk = RecordBatch::try_new(InputSpec::text_chunks_schema(), vec![Arc::new(StringArray::from(vec!["a\nb\n"]))])?;
/// assert!(!InputSpec::is_text_chunks(&lines) && InputSpec::is_text_chunks(&chunk));
/// # Ok::<(), gristmill::BoxError>(())
/// ```
#[derive(Clone, Debug)]
pub struct InputSpec {
    /// Columns read from Parquet files; `None` reads every column.
    pub parquet_columns: Option<Vec<ParquetColumn>>,
    /// Read non-Parquet files as fixed-size binary records instead of text lines.
    pub records: Option<RecordFormat>,
    /// Lines or chunks of lines, for text files.
    pub text: TextShape,
    /// Only rows passing this reach the mapper (Parquet input; see [`InputSpec::with_filter`]).
    pub filter: Option<Arc<Predicate>>,
    /// False when the filter only prunes row groups and the mapper filters rows itself
    /// ([`InputSpec::with_pruning`]).
    pub filter_rows: bool,
    /// CSV and JSON lines input is read with this schema instead of one inferred from a
    /// sample ([`InputSpec::with_schema`]).
    pub schema: Option<SchemaRef>,
}

impl InputSpec {
    /// Lines of text (and every column of Parquet input).
    pub fn text_lines() -> Self {
        InputSpec {
            parquet_columns: None,
            records: None,
            text: TextShape::Lines,
            filter: None,
            filter_rows: false,
            schema: None,
        }
    }

    /// Reads CSV and JSON lines input with `schema` instead of inferring one from a sample
    /// of the first file (Spark's `DataFrameReader.schema`): for CSV, the columns of each
    /// record in order (a header line is skipped, its names unused); for JSON lines, the
    /// fields read from each object by name (others ignored, missing ones null). A value
    /// that does not parse as its column's type makes the row malformed (see
    /// `--max-bad-records`). The job's columns are resolved against it by name.
    pub fn with_schema(mut self, schema: SchemaRef) -> Self {
        self.schema = Some(schema);
        self
    }

    /// Only the rows of Parquet input that pass `filter` reach the mapper: row groups whose
    /// statistics exclude it are not read at all (counted as `input_row_groups_skipped` and
    /// `input_bytes_skipped`), and its columns are decoded first, the rest only for the
    /// passing rows. Its columns need not be among those the job reads.
    pub fn with_filter(mut self, filter: Predicate) -> Self {
        self.filter = Some(Arc::new(filter));
        self.filter_rows = true;
        self
    }

    /// Like [`InputSpec::with_filter`], but only row groups are skipped: the rows of those
    /// read reach the mapper unfiltered. For a mapper that tests the filter itself while it
    /// aggregates, faster than a second pass deciding row by row.
    pub fn with_pruning(mut self, filter: Predicate) -> Self {
        self.filter = Some(Arc::new(filter));
        self.filter_rows = false;
        self
    }

    /// Chunks of whole lines (and every column of Parquet input): each text batch has one
    /// row, a `Utf8` column `text` holding complete lines with their terminators (the file's
    /// last line may lack one). Every line of the split is in exactly one chunk, as with
    /// [`InputSpec::text_lines`]. Batches of this shape are told apart from Parquet batches
    /// by [`InputSpec::is_text_chunks`].
    pub fn text_chunks() -> Self {
        InputSpec { text: TextShape::Chunks, ..Self::text_lines() }
    }

    /// Fixed-size binary records of `record_len` bytes, arriving as batches of two
    /// `FixedSizeBinary` columns: `key` (the first `key_len` bytes) and `value` (the rest).
    pub fn fixed_records(record_len: usize, key_len: usize) -> Self {
        let key_len = key_len.min(record_len);
        let format = RecordFormat { record_len, key_len, columns: Default::default() };
        InputSpec { records: Some(format), ..Self::text_lines() }
    }

    /// Fixed-size binary records of `record_len` bytes, arriving as batches of two
    /// `FixedSizeBinary` columns: `key` (a copy of the first `key_len` bytes) and `record`
    /// (the whole record, not copied: a view of the bytes read, of the page cache for a
    /// local file). For jobs that pass records through whole, like a sort.
    pub fn fixed_records_whole(record_len: usize, key_len: usize) -> Self {
        let mut spec = Self::fixed_records(record_len, key_len);
        if let Some(format) = spec.records.as_mut() {
            format.columns = RecordColumns::KeyRecord;
        }
        spec
    }

    /// From Parquet input, read these columns with these types.
    pub fn with_parquet_columns<'a>(
        mut self,
        columns: impl IntoIterator<Item = (&'a str, DataType)>,
    ) -> Self {
        let columns = columns
            .into_iter()
            .map(|(name, ty)| ParquetColumn { name: name.to_owned(), data_type: Some(ty) })
            .collect();
        self.parquet_columns = Some(columns);
        self
    }

    /// The schema of text-input batches.
    pub fn text_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, false)]))
    }

    /// The schema of text-chunk batches ([`InputSpec::text_chunks`]): a `text` column marked
    /// by field metadata, so a mapper reading text and Parquet can tell the two apart.
    pub fn text_chunks_schema() -> SchemaRef {
        let marker = std::collections::HashMap::from([(TEXT_CHUNKS_MARKER.to_owned(), "true".to_owned())]);
        Arc::new(Schema::new(vec![Field::new("text", DataType::Utf8, false).with_metadata(marker)]))
    }

    /// True when `batch` holds chunks of lines from a text file, not rows of Parquet input.
    pub fn is_text_chunks(batch: &RecordBatch) -> bool {
        let schema = batch.schema();
        schema.fields().len() == 1 && schema.field(0).metadata().contains_key(TEXT_CHUNKS_MARKER)
    }
}
