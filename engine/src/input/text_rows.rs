//! What CSV and JSON lines input share: detection by name, a bounded sample of the first
//! file for schema inference, the job's columns resolved against the inferred schema, the
//! schema as it travels to task processes, and where a malformed row is.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::{can_cast_types, cast, filter_record_batch};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use arrow::error::ArrowError;
use bytes::Bytes;
use object_store::ObjectStoreExt;
use tokio::runtime::Handle;

use super::InputFormat;
use super::compressed::{self, Codec};
use super::csv::{CsvFormat, CsvOptions};
use super::json::JsonFormat;
use super::predicate::Predicate;
use crate::error::{Error, Result};
use crate::input::{InputSpec, ParquetColumn};
use crate::storage::InputFile;

/// Rows per decoded batch.
pub(super) const BATCH_ROWS: usize = 16 * 1024;
/// Bytes of the first file read to infer a schema.
const SAMPLE_BYTES: u64 = 1 << 20;

/// CSV or JSON lines by the file's extension (`.csv`, `.tsv`, `.json`, `.jsonl`, `.ndjson`),
/// also before a compression extension (`.csv.gz`, `.jsonl.zst`).
pub(super) fn detect(path: &str) -> Option<InputFormat> {
    let path = Codec::strip_extension(path).to_ascii_lowercase();
    if [".csv", ".tsv"].iter().any(|ext| path.ends_with(ext)) {
        Some(InputFormat::Csv)
    } else if [".json", ".jsonl", ".ndjson"].iter().any(|ext| path.ends_with(ext)) {
        Some(InputFormat::Json)
    } else {
        None
    }
}

/// The CSV and JSON formats inferred while planning: from the first file of each kind
/// (and, for CSV, of each delimiter); later files are read with the same schema.
#[derive(Default)]
pub(super) struct Inferred {
    csv: Vec<Arc<CsvFormat>>,
    json: Option<Arc<JsonFormat>>,
}

impl Inferred {
    /// The CSV format for `file`, inferred from it if it is the first of its dialect.
    pub(super) async fn csv(
        &mut self,
        file: &InputFile,
        codec: Option<Codec>,
        options: &CsvOptions,
        spec: &InputSpec,
    ) -> Result<Arc<CsvFormat>> {
        if let Some(format) = self.csv.iter().find(|f| f.reads(file, options)) {
            return Ok(format.clone());
        }
        let format = Arc::new(match &spec.schema {
            Some(schema) => CsvFormat::declared(file, options, schema.clone(), spec)?,
            None => CsvFormat::infer(file, codec, options, spec).await?,
        });
        // An empty file has no splits and says nothing of the others' schema.
        if file.size > 0 {
            self.csv.push(format.clone());
        }
        Ok(format)
    }

    /// The JSON format, inferred from `file` if it is the first JSON file.
    pub(super) async fn json(
        &mut self,
        file: &InputFile,
        codec: Option<Codec>,
        spec: &InputSpec,
    ) -> Result<Arc<JsonFormat>> {
        if let Some(format) = &self.json {
            return Ok(format.clone());
        }
        let format = Arc::new(match &spec.schema {
            Some(schema) => JsonFormat::new(file, schema.clone(), spec)?,
            None => JsonFormat::infer(file, codec, spec).await?,
        });
        if file.size > 0 {
            self.json = Some(format.clone());
        }
        Ok(format)
    }
}

/// The schema CSV or JSON lines `file` would be read with: `declared` if given, else
/// inferred as planning infers it (for jobs that resolve their columns' types before they
/// run); `None` for other formats.
pub async fn inferred_schema(
    file: &InputFile,
    format: Option<InputFormat>,
    csv: &CsvOptions,
    declared: Option<&SchemaRef>,
) -> Result<Option<SchemaRef>> {
    let spec = InputSpec::text_lines();
    let detected = InputFormat::detect(file, format);
    if let (Some(schema), InputFormat::Csv | InputFormat::Json) = (declared, detected) {
        return Ok(Some(file.with_partition_fields(schema)));
    }
    Ok(match detected {
        InputFormat::Csv => {
            let codec = super::text_codec(file, format).await?;
            Some(file.with_partition_fields(&CsvFormat::infer(file, codec, csv, &spec).await?.schema))
        }
        InputFormat::Json => {
            let codec = super::text_codec(file, format).await?;
            Some(file.with_partition_fields(&JsonFormat::infer(file, codec, &spec).await?.schema))
        }
        _ => None,
    })
}

/// The first bytes of `file` (decompressed, with `codec`), for schema inference, and
/// whether they are the whole file.
pub(super) async fn sample(file: &InputFile, codec: Option<Codec>) -> Result<(Bytes, bool)> {
    let len = file.size.min(SAMPLE_BYTES);
    if len == 0 {
        return Ok((Bytes::new(), true));
    }
    if let Some(codec) = codec {
        let (bytes, whole) = compressed::head(file, codec, SAMPLE_BYTES).await?;
        return Ok((bytes.slice(skip_bom(&bytes, 0).1 as usize..), whole));
    }
    let bytes = file
        .location
        .store()
        .get_range(file.location.path(), 0..len)
        .await
        .map_err(|e| Error::read(file.display(), e))?;
    let (bytes, whole) = (bytes.slice(skip_bom(&bytes, 0).1 as usize..), len == file.size);
    Ok((bytes, whole))
}

/// The UTF-8 byte order mark some tools write at the start of a file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// `bytes` from `offset` of a file, without the byte order mark if they start the file
/// with one, and the offset of what is left.
pub(super) fn skip_bom(bytes: &[u8], offset: u64) -> (&[u8], u64) {
    match bytes.strip_prefix(BOM) {
        Some(rest) if offset == 0 => (rest, BOM.len() as u64),
        _ => (bytes, offset),
    }
}

/// `schema` with columns of type `Null` (empty in the whole sample) read as strings, as
/// DuckDB does: a `Null` column would drop the values that come later.
pub(super) fn nulls_as_strings(schema: Schema) -> Schema {
    let fields: Vec<FieldRef> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Null => Arc::new(f.as_ref().clone().with_data_type(DataType::Utf8).with_nullable(true)),
            _ => f.clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// Infers a schema with `infer(max_records)`. When the sample holds a malformed record,
/// infers from the records before it: reading then reports that record with its line.
pub(super) fn infer_leniently(
    sample: &[u8],
    infer: impl Fn(Option<usize>) -> std::result::Result<Schema, ArrowError>,
) -> Schema {
    if let Ok(schema) = infer(None) {
        return schema;
    }
    // Inference reads records in order, so it fails for every count past the bad record.
    let (mut good, mut bad) = (0, memchr::memchr_iter(b'\n', sample).count() + 1);
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        if infer(Some(mid)).is_ok() {
            good = mid;
        } else {
            bad = mid;
        }
    }
    infer(Some(good)).unwrap_or_else(|_| Schema::empty())
}

/// The job's columns resolved against a file's inferred schema: how to decode them, and how
/// decoded batches become the declared columns (in declared order, declared types).
#[derive(Debug)]
pub(super) struct Columns {
    /// The inferred fields, each column read typed as it is decoded.
    pub(super) fields: Vec<FieldRef>,
    /// Indices of the columns to decode, ascending, each once.
    pub(super) roots: Vec<usize>,
    /// For each declared column: its position among the decoded ones, and a type to cast to.
    columns: Vec<(usize, Option<DataType>)>,
    /// The schema of the batches handed to mappers.
    output: SchemaRef,
    /// The job's row filter: its columns are decoded too, and only passing rows kept.
    filter: Option<Arc<Predicate>>,
}

impl Columns {
    /// Resolves the columns `spec` reads (every column when it names none) and its row
    /// filter's against `schema`, inferred from `file`.
    pub(super) fn resolve(file: &InputFile, schema: &Schema, spec: &InputSpec) -> Result<Self> {
        let filter = spec.filter.clone().filter(|_| spec.filter_rows);
        let mut fields: Vec<FieldRef> = schema.fields().iter().cloned().collect();
        let Some(wanted) = spec.parquet_columns.as_deref() else {
            let roots: Vec<usize> = (0..fields.len()).collect();
            let columns = roots.iter().map(|&i| (i, None)).collect();
            if let Some(filter) = &filter {
                filter.columns().iter().try_for_each(|c| index_of(file, schema, c).map(drop))?;
            }
            return Ok(Columns { fields, roots, columns, output: Arc::new(schema.clone()), filter });
        };
        let mut indices = Vec::with_capacity(wanted.len());
        let mut decided = vec![false; fields.len()];
        for column in wanted {
            let index = index_of(file, schema, &column.name)?;
            let found = schema.field(index).data_type();
            // A column read twice is decoded once, as its first declaration says.
            if !decided[index] {
                let ty = column.data_type.as_ref().map_or_else(|| found.clone(), |t| decode_type(found, t));
                fields[index] = Arc::new(Field::new(column.name.clone(), ty, true));
                decided[index] = true;
            }
            indices.push((index, cast_to(file, column, found, fields[index].data_type())?));
        }
        let mut roots: Vec<usize> = indices.iter().map(|(i, _)| *i).collect();
        for column in filter.as_ref().map(|f| f.columns()).unwrap_or_default() {
            roots.push(index_of(file, schema, column)?);
        }
        roots.sort_unstable();
        roots.dedup();
        let output = indices
            .iter()
            .zip(wanted)
            .map(|((index, cast_to), column)| {
                let ty = cast_to.clone().unwrap_or_else(|| fields[*index].data_type().clone());
                Field::new(column.name.clone(), ty, true)
            })
            .collect::<Vec<_>>();
        let columns = indices
            .into_iter()
            .map(|(index, cast_to)| (roots.binary_search(&index).unwrap_or(0), cast_to))
            .collect();
        Ok(Columns { fields, roots, columns, output: Arc::new(Schema::new(output)), filter })
    }

    /// The schema of the decoded columns alone (the roots, in order).
    pub(super) fn projected_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(self.roots.iter().map(|&i| self.fields[i].clone()).collect::<Vec<_>>()))
    }

    /// The whole schema, the read columns typed as they are decoded.
    pub(super) fn decode_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(self.fields.clone()))
    }

    /// Turns a batch of the decoded columns (the roots, in order) into the declared ones,
    /// the rows the filter rejects left out.
    pub(super) fn conform(&self, file: &InputFile, batch: RecordBatch) -> Result<RecordBatch> {
        let batch = match &self.filter {
            Some(filter) => {
                let passing = filter.evaluate(&batch).map_err(|e| Error::Filter {
                    path: file.display(),
                    filter: e.filter,
                    reason: e.reason,
                })?;
                filter_record_batch(&batch, &passing).map_err(Error::arrow("filtering rows"))?
            }
            None => batch,
        };
        let mut columns = Vec::with_capacity(self.columns.len());
        for (position, cast_to) in &self.columns {
            let column = batch.column(*position);
            columns.push(match cast_to {
                Some(ty) => cast(column, ty).map_err(Error::arrow("converting a column"))?,
                None => column.clone(),
            });
        }
        RecordBatch::try_new(self.output.clone(), columns).map_err(Error::arrow("projecting columns"))
    }
}

/// The index of `column` in `schema`, inferred from `file`.
fn index_of(file: &InputFile, schema: &Schema, column: &str) -> Result<usize> {
    super::column_index(file, schema, column)
}

/// The type to cast `column`, found as `found` and decoded as `decoded`, to: its declared
/// type where that differs.
fn cast_to(
    file: &InputFile,
    column: &ParquetColumn,
    found: &DataType,
    decoded: &DataType,
) -> Result<Option<DataType>> {
    match &column.data_type {
        Some(declared) if declared != decoded => {
            if !can_cast_types(decoded, declared) {
                return Err(Error::ColumnType {
                    path: file.display(),
                    column: column.name.clone(),
                    found: found.to_string(),
                    expected: declared.to_string(),
                });
            }
            Ok(Some(declared.clone()))
        }
        _ => Ok(None),
    }
}

/// The type to decode a column declared as `declared` in: the declared type where both
/// decoders parse it from text, `Utf8` for other string types, else the inferred type
/// (then cast).
fn decode_type(found: &DataType, declared: &DataType) -> DataType {
    use DataType::*;
    match declared {
        Utf8 | Utf8View | Boolean | Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64
        | Float32 | Float64 | Decimal32(..) | Decimal64(..) | Decimal128(..) | Decimal256(..) => {
            declared.clone()
        }
        LargeUtf8 => Utf8,
        Dictionary(_, value) if matches!(**value, Utf8 | LargeUtf8 | Utf8View) => Utf8,
        _ => found.clone(),
    }
}

/// `schema` as bytes (an Arrow IPC stream without batches), to travel in a split's spec.
pub(crate) fn schema_to_bytes(schema: &Schema) -> Result<Vec<u8>> {
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), schema)
        .map_err(Error::arrow("serializing a schema"))?;
    writer.finish().map_err(Error::arrow("serializing a schema"))?;
    writer.into_inner().map_err(Error::arrow("serializing a schema"))
}

/// The schema [`schema_to_bytes`] wrote.
pub(crate) fn schema_from_bytes(bytes: &[u8]) -> Result<SchemaRef> {
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| Error::Config(format!("invalid serialized schema: {e}")))?;
    Ok(reader.schema())
}

/// `batches` (of one schema) as one batch; `None` when there are none.
pub(super) fn concat(batches: Vec<RecordBatch>) -> Result<Option<RecordBatch>> {
    let Some(first) = batches.first() else { return Ok(None) };
    let schema = first.schema();
    arrow::compute::concat_batches(&schema, &batches).map(Some).map_err(Error::arrow("joining the good rows"))
}

/// The error for a malformed row that starts at `offset` of `file` (of its decompressed
/// bytes, with `codec`): with its line number when the bytes before it are few enough to
/// count (this is the failure path only).
pub(super) fn malformed(
    file: &Arc<InputFile>,
    codec: Option<Codec>,
    io: &Handle,
    offset: u64,
    reason: &str,
) -> Error {
    let line = super::bad::LineCounter::new(file, io, codec).line_at(offset);
    let what = if codec.is_some() { "decompressed byte offset" } else { "byte offset" };
    let location = match line {
        Some(line) => format!("line {line} ({what} {offset})"),
        None => format!("{what} {offset}"),
    };
    Error::MalformedRow { path: file.display(), location, reason: reason.to_owned() }
}

/// A decoder's complaint without its prefix (`Csv error: `) and its own line numbers,
/// which count from wherever the decoder started, not from the file's start.
pub(super) fn reason(error: &ArrowError) -> String {
    let text = match error {
        ArrowError::CsvError(m) | ArrowError::JsonError(m) | ArrowError::ParseError(m) => m.clone(),
        other => other.to_string(),
    };
    let mut text = strip_line_numbers(&text);
    if text.len() > 400 {
        let cut = (0..=400).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Removes ` at line N` and ` for line N` (arrow-csv's relative line numbers).
fn strip_line_numbers(text: &str) -> String {
    let mut out = text.to_owned();
    for marker in [" at line ", " for line "] {
        while let Some(at) = out.find(marker) {
            let digits = out[at + marker.len()..].bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                break;
            }
            out.replace_range(at..at + marker.len() + digits, "");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_name_formats() {
        assert_eq!(detect("/d/a.csv"), Some(InputFormat::Csv));
        assert_eq!(detect("/d/a.TSV"), Some(InputFormat::Csv));
        for name in ["a.json", "a.jsonl", "a.ndjson"] {
            assert_eq!(detect(name), Some(InputFormat::Json));
        }
        assert_eq!(detect("a.txt"), None);
        assert_eq!(detect("a.csv.gz"), Some(InputFormat::Csv), "compressed CSV");
        assert_eq!(detect("a.JSONL.zst"), Some(InputFormat::Json));
        assert_eq!(detect("a.txt.gz"), None, "compressed text");
    }

    #[test]
    fn decoder_line_numbers_are_removed() {
        let error = ArrowError::ParseError(
            "Error while parsing value 'x' as type 'Int64' for column 1 at line 7. Row data: '[a,x]'".into(),
        );
        assert_eq!(
            reason(&error),
            "Error while parsing value 'x' as type 'Int64' for column 1. Row data: '[a,x]'"
        );
        let error = ArrowError::CsvError("incorrect number of fields for line 3, expected 2 got 1".into());
        assert_eq!(reason(&error), "incorrect number of fields, expected 2 got 1");
    }

    #[test]
    fn schemas_survive_the_trip_to_a_task() {
        let schema =
            Schema::new(vec![Field::new("a", DataType::Int64, true), Field::new("b", DataType::Utf8, true)]);
        let back = schema_from_bytes(&schema_to_bytes(&schema).unwrap()).unwrap();
        assert_eq!(back.as_ref(), &schema);
    }
}

/// Helpers for the CSV and JSON lines tests: files in a directory, planned and read whole.
#[cfg(test)]
pub(super) mod test_support {
    use arrow::util::display::{ArrayFormatter, FormatOptions};

    use super::super::{BadRecords, Split, SplitOptions, plan_splits};
    use super::*;

    /// A directory of input files and a runtime to plan and read them with.
    pub(in crate::input) struct Files {
        pub(in crate::input) dir: tempfile::TempDir,
        pub(in crate::input) runtime: tokio::runtime::Runtime,
    }

    impl Files {
        pub(in crate::input) fn new(files: &[(&str, &[u8])]) -> Self {
            let dir = tempfile::tempdir().unwrap();
            for (name, bytes) in files {
                std::fs::write(dir.path().join(name), bytes).unwrap();
            }
            Files { dir, runtime: tokio::runtime::Runtime::new().unwrap() }
        }

        /// Plans every file (in name order) with `options`.
        pub(in crate::input) fn plan(&self, spec: &InputSpec, options: &SplitOptions) -> Result<Vec<Split>> {
            let input = vec![self.dir.path().display().to_string()];
            self.runtime.block_on(async {
                let files = crate::storage::resolve_inputs(&input, &Default::default()).await?;
                plan_splits(files, spec, options).await
            })
        }

        /// Plans and reads every split: the column names and the rows, each as `a|b|c`
        /// (a null as `∅`).
        pub(in crate::input) fn read(
            &self,
            spec: &InputSpec,
            options: &SplitOptions,
        ) -> Result<(Vec<String>, Vec<String>)> {
            self.read_keeping_bad(spec, options, &BadRecords::new(0))
        }

        /// Reads as [`Files::read`] does, handing bad rows to `bad`.
        pub(in crate::input) fn read_keeping_bad(
            &self,
            spec: &InputSpec,
            options: &SplitOptions,
            bad: &BadRecords,
        ) -> Result<(Vec<String>, Vec<String>)> {
            let (mut names, mut rows) = (Vec::new(), Vec::new());
            for split in self.plan(spec, options)? {
                split.read_keeping_bad(self.runtime.handle(), Default::default(), bad, &mut |batch| {
                    if names.is_empty() {
                        names = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
                    }
                    rows.extend(format_rows(&batch));
                    Ok(true)
                })?;
            }
            Ok((names, rows))
        }
    }

    /// The options: `split_size`, the format by extension, default CSV options.
    pub(in crate::input) fn options(split_size: u64) -> SplitOptions {
        SplitOptions { split_size, format: None, csv: Default::default(), schema: None }
    }

    fn format_rows(batch: &RecordBatch) -> Vec<String> {
        let options = FormatOptions::default().with_null("∅");
        let formatters: Vec<_> =
            batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap()).collect();
        (0..batch.num_rows())
            .map(|row| formatters.iter().map(|f| f.value(row).to_string()).collect::<Vec<_>>().join("|"))
            .collect()
    }
}

#[cfg(test)]
mod spec_tests {
    use arrow::datatypes::DataType;

    use super::super::{Split, SplitSpec};
    use super::test_support::{Files, options};
    use super::*;

    /// A split sent to a task process (spec, JSON, rebuilt) reads the same rows.
    #[test]
    fn splits_survive_the_trip_to_a_task_process() {
        let files = Files::new(&[("a.csv", b"k;v\nx;1\ny;2\n"), ("b.jsonl", b"{\"k\": \"z\", \"v\": 3}\n")]);
        let spec =
            InputSpec::text_lines().with_parquet_columns([("v", DataType::Utf8), ("k", DataType::Utf8)]);
        let mut options = options(5);
        options.csv.delimiter = Some(b';');
        let read = |split: &Split| {
            let mut rows = 0;
            split
                .read(files.runtime.handle(), Default::default(), &mut |batch| {
                    assert_eq!(batch.schema().field(0).name(), "v");
                    rows += batch.num_rows();
                    Ok(true)
                })
                .unwrap();
            rows
        };
        let splits = files.plan(&spec, &options).unwrap();
        assert!(
            splits.iter().any(|s| matches!(s, Split::Csv(_)))
                && splits.iter().any(|s| matches!(s, Split::Json(_)))
        );
        for split in &splits {
            let json = serde_json::to_string(&split.to_spec().unwrap()).unwrap();
            let spec_back: SplitSpec = serde_json::from_str(&json).unwrap();
            let rebuilt =
                files.runtime.block_on(Split::from_spec(spec_back, &spec, &Default::default())).unwrap();
            assert_eq!(rebuilt.describe(), split.describe());
            assert_eq!(read(&rebuilt), read(split));
        }
    }

    /// Small files packed into one split travel as one spec, the schema written once.
    #[test]
    fn combined_splits_survive_the_trip_to_a_task_process_with_one_schema() {
        let names: Vec<String> = (0..20).map(|i| format!("t{i:02}.csv")).collect();
        let data: Vec<String> = (0..20).map(|i| format!("k,v\nkey{i},{i}\n")).collect();
        let files: Vec<(&str, &[u8])> =
            names.iter().zip(&data).map(|(n, d)| (n.as_str(), d.as_bytes())).collect();
        let files = Files::new(&files);
        let spec = InputSpec::text_lines();
        let splits = files.plan(&spec, &options(1 << 30)).unwrap();
        assert_eq!(splits.len(), 1, "one packed split");
        assert!(splits[0].describe().starts_with("20 packed files"), "{}", splits[0].describe());
        let json = serde_json::to_string(&splits[0].to_spec().unwrap()).unwrap();
        assert_eq!(json.matches("\"schema\":[]").count(), 19, "{json}");
        let back: SplitSpec = serde_json::from_str(&json).unwrap();
        let rebuilt = files.runtime.block_on(Split::from_spec(back, &spec, &Default::default())).unwrap();
        assert_eq!(rebuilt.describe(), splits[0].describe());
        let mut rows = Vec::new();
        rebuilt
            .read(files.runtime.handle(), Default::default(), &mut |batch| {
                let keys = batch.column(0).as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
                rows.extend(keys.iter().map(|k| k.unwrap().to_owned()));
                Ok(true)
            })
            .unwrap();
        assert_eq!(rows, (0..20).map(|i| format!("key{i}")).collect::<Vec<_>>());
    }
}
