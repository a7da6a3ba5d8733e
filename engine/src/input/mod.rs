//! Inputs: planning splits and reading them as record batches.
//!
//! A [`Split`] is the unit of work of one map task: a byte range of a text file (a line
//! belongs to the split where it starts; CSV and JSON lines likewise), a whole compressed
//! text file, or a run of row groups of a Parquet file; or several whole small files,
//! packed together ([`CombinedSplit`]).

mod bad;
mod combined;
mod compressed;
mod csv;
mod json;
mod parquet;
mod partition_columns;
mod predicate;
mod predicate_parse;
mod records;
mod spec;
mod text;
pub(crate) mod text_rows;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use tokio::runtime::Handle;

pub use self::bad::{
    BadRecord, BadRecords, MAX_TEXT_BYTES, sort as sort_bad_records, too_many as too_many_bad_records,
};
pub use self::combined::{CombinedSplit, FILE_OPEN_COST};
pub use self::compressed::Codec;
pub use self::csv::{CsvFormat, CsvOptions, CsvSplit};
pub use self::json::{JsonFormat, JsonSplit};
pub use self::parquet::{ParquetSplit, Skipped, footer_schema};
pub use self::partition_columns::PartitionColumns;
pub use self::predicate::{CmpOp, Predicate, PredicateError};
pub use self::records::{RecordColumns, RecordFormat, RecordSplit};
pub use self::spec::{InputSpec, ParquetColumn, TextShape};
pub use self::text::TextSplit;
pub use self::text_rows::inferred_schema;

use crate::error::{Error, Result};
use crate::storage::{InputFile, StorageOptions};

/// How input files are decoded.
///
/// Detected per file by its name unless forced (`--format`, or
/// [`RunConfig::with_format`](crate::config::RunConfig::with_format)):
///
/// ```
/// use gristmill::config::RunConfig;
/// use gristmill::input::InputFormat;
///
/// // Files named `*.log` holding JSON lines.
/// let config = RunConfig::new(vec!["logs/*.log".into()], "out").with_format(Some(InputFormat::Json));
/// assert_eq!(config.format, Some(InputFormat::Json));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum InputFormat {
    /// Lines of UTF-8 text.
    Text,
    /// Apache Parquet.
    Parquet,
    /// CSV (or TSV) with a header line by default: see the `--csv-*` flags.
    Csv,
    /// JSON lines: one JSON object per line.
    Json,
}

impl InputFormat {
    /// The format of `file`: `forced` if given, else by its name's extension (`.parquet`;
    /// `.csv`, `.tsv`; `.json`, `.jsonl`, `.ndjson`, also compressed: `.csv.gz`), else text.
    pub fn detect(file: &InputFile, forced: Option<InputFormat>) -> InputFormat {
        forced.unwrap_or_else(|| {
            if file.location.path().as_ref().ends_with(".parquet") {
                InputFormat::Parquet
            } else if let Some(format) = text_rows::detect(file.location.path().as_ref()) {
                format
            } else {
                InputFormat::Text
            }
        })
    }
}

/// The index of `column` in `file`'s `schema`, or the error naming the file, the column
/// and the columns it has.
pub(crate) fn column_index(
    file: &InputFile,
    schema: &arrow::datatypes::Schema,
    column: &str,
) -> Result<usize> {
    schema.index_of(column).map_err(|_| Error::MissingColumn {
        path: file.display(),
        column: column.to_owned(),
        available: schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", "),
    })
}

/// How splits are planned.
#[derive(Clone, Debug)]
pub struct SplitOptions {
    /// Target bytes per split.
    pub split_size: u64,
    /// Decode every file with this format instead of detecting it.
    pub format: Option<InputFormat>,
    /// How CSV files are read.
    pub csv: CsvOptions,
    /// The schema of CSV and JSON lines input when the job's spec declares none
    /// (`--input-schema`); `None` infers it.
    pub schema: Option<SchemaRef>,
}

/// How splits are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Replace invalid UTF-8 in text with U+FFFD instead of failing.
    pub replace_invalid_utf8: bool,
}

/// The input of one map task.
#[derive(Clone, Debug)]
pub enum Split {
    /// A byte range of a text file.
    Text(TextSplit),
    /// Row groups of a Parquet file.
    Parquet(ParquetSplit),
    /// Whole fixed-size records of a binary file.
    Records(RecordSplit),
    /// A byte range of a CSV file.
    Csv(CsvSplit),
    /// A byte range of a JSON lines file.
    Json(JsonSplit),
    /// Whole small files, read one after the other.
    Combined(CombinedSplit),
    /// A split of a file below Hive partition directories: its rows get the partition
    /// columns the job reads.
    Partitioned(Box<Split>, Arc<PartitionColumns>),
}

impl Split {
    /// The file the split reads (the first one of a combined split, which is never empty).
    pub fn file(&self) -> &Arc<InputFile> {
        match self {
            Split::Text(s) => &s.file,
            Split::Parquet(s) => &s.file,
            Split::Records(s) => &s.file,
            Split::Csv(s) => &s.file,
            Split::Json(s) => &s.file,
            Split::Combined(s) => s.parts[0].file(),
            Split::Partitioned(split, _) => split.file(),
        }
    }

    /// The split's size in bytes (compressed size for Parquet and compressed files).
    pub fn bytes(&self) -> u64 {
        match self {
            Split::Text(s) => s.end - s.start,
            Split::Records(s) => s.end - s.start,
            Split::Parquet(s) => s.compressed_bytes,
            Split::Csv(s) => s.end - s.start,
            Split::Json(s) => s.end - s.start,
            Split::Combined(s) => s.bytes(),
            Split::Partitioned(split, _) => split.bytes(),
        }
    }

    /// Whether the split is all of one file (which a combined split may pack with others).
    pub fn is_whole_file(&self) -> bool {
        let whole = |start: u64, end: u64, file: &InputFile| start == 0 && end == file.size;
        match self {
            Split::Text(s) => whole(s.start, s.end, &s.file),
            Split::Records(s) => whole(s.start, s.end, &s.file),
            Split::Csv(s) => whole(s.start, s.end, &s.file),
            Split::Json(s) => whole(s.start, s.end, &s.file),
            Split::Parquet(s) => s.row_groups.len() == s.metadata.metadata().num_row_groups(),
            Split::Combined(_) => false,
            Split::Partitioned(split, _) => split.is_whole_file(),
        }
    }

    /// Row groups and compressed bytes a filter's statistics check skipped (Parquet).
    pub fn skipped(&self) -> Skipped {
        match self {
            Split::Parquet(s) => s.skipped(),
            Split::Combined(s) => s.parts.iter().map(Split::skipped).fold(Skipped::default(), |a, b| a + b),
            Split::Partitioned(split, _) => split.skipped(),
            Split::Text(_) | Split::Records(_) | Split::Csv(_) | Split::Json(_) => Skipped::default(),
        }
    }

    /// The file and the range, for messages: `/data/a.txt [bytes 0..1048576]`.
    pub fn describe(&self) -> String {
        match self {
            Split::Text(s) => format!("{} [bytes {}..{}]", s.file.display(), s.start, s.end),
            Split::Parquet(s) => format!("{} [{}]", s.file.display(), s.describe_row_groups()),
            Split::Records(s) => format!("{} [bytes {}..{}]", s.file.display(), s.start, s.end),
            Split::Csv(s) => format!("{} [bytes {}..{}]", s.file.display(), s.start, s.end),
            Split::Json(s) => format!("{} [bytes {}..{}]", s.file.display(), s.start, s.end),
            Split::Combined(s) => s.describe(),
            Split::Partitioned(split, _) => split.describe(),
        }
    }

    /// Reads the split, handing each batch to `sink` until it returns `false`. Runs on a
    /// CPU thread; I/O goes through the runtime behind `io`. Returns the input bytes read:
    /// [`Split::bytes`], or the decompressed bytes of compressed files. The first row that
    /// fails to parse fails the read, naming its file and line.
    pub fn read(
        &self,
        io: &Handle,
        options: ReadOptions,
        sink: &mut dyn FnMut(RecordBatch) -> Result<bool>,
    ) -> Result<u64> {
        self.read_keeping_bad(io, options, &BadRecords::new(0), sink)
    }

    /// Reads the split as [`Split::read`] does, but a row of text input that fails to
    /// parse (CSV, JSON lines, a line of text that is not UTF-8) is left out and handed to
    /// `bad`, which fails the read once it holds more than it allows.
    pub fn read_keeping_bad(
        &self,
        io: &Handle,
        options: ReadOptions,
        bad: &BadRecords,
        sink: &mut dyn FnMut(RecordBatch) -> Result<bool>,
    ) -> Result<u64> {
        match self {
            Split::Text(s) => s.read(io, options, bad, sink),
            Split::Parquet(s) => s.read(io, sink).map(|()| self.bytes()),
            Split::Records(s) => s.read(io, sink).map(|()| self.bytes()),
            Split::Csv(s) => s.read(io, bad, sink),
            Split::Json(s) => s.read(io, bad, sink),
            Split::Combined(s) => s.read(io, options, bad, sink),
            Split::Partitioned(split, columns) => {
                split.read_keeping_bad(io, options, bad, &mut |batch| sink(columns.add_to(batch)?))
            }
        }
    }
}

/// A split as it travels to a task process (cluster mode): the file and the range, not
/// the decoded footer. A combined split's url and size are its first file's.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SplitSpec {
    /// The file's URL or absolute path.
    pub url: String,
    /// The file's size, from the listing.
    pub size: u64,
    /// What part of it.
    pub range: SplitRange,
    /// The file's Hive partition values ([`InputFile::partitions`]).
    #[serde(default)]
    pub partitions: Vec<(String, Option<String>)>,
}

/// The part of a file a [`SplitSpec`] names.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum SplitRange {
    /// Lines starting in `start..end`.
    Text {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
        /// The whole file's compression, if compressed.
        #[serde(default)]
        codec: Option<Codec>,
    },
    /// Whole records in `start..end`.
    Records {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
        /// Bytes per record.
        record_len: usize,
        /// Bytes of the key.
        key_len: usize,
    },
    /// Row groups of a Parquet file.
    Parquet {
        /// The row groups.
        row_groups: Vec<usize>,
        /// Their compressed size.
        compressed_bytes: u64,
    },
    /// CSV records starting in `start..end`.
    Csv {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
        /// The field delimiter.
        delimiter: u8,
        /// Whether each file starts with a header line.
        header: bool,
        /// The inferred schema, as an Arrow IPC stream without batches; empty in a
        /// combined split's part: the previous part's.
        schema: Vec<u8>,
        /// The whole file's compression, if compressed.
        #[serde(default)]
        codec: Option<Codec>,
    },
    /// JSON lines starting in `start..end`.
    Json {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
        /// The inferred schema, as an Arrow IPC stream without batches; empty in a
        /// combined split's part: the previous part's.
        schema: Vec<u8>,
        /// The whole file's compression, if compressed.
        #[serde(default)]
        codec: Option<Codec>,
    },
    /// Whole small files ([`CombinedSplit`]), each with its own spec.
    Combined {
        /// The files' splits, in order.
        parts: Vec<SplitSpec>,
    },
}

impl Split {
    /// The split as a task process gets it. A combined split's parts repeat no schema:
    /// a part whose schema is the previous one's carries none.
    pub fn to_spec(&self) -> Result<SplitSpec> {
        let Split::Combined(combined) = self else { return self.file_spec() };
        let mut parts = combined.parts.iter().map(Split::file_spec).collect::<Result<Vec<_>>>()?;
        let mut previous: Option<Vec<u8>> = None;
        for part in &mut parts {
            if let SplitRange::Csv { schema, .. } | SplitRange::Json { schema, .. } = &mut part.range {
                if previous.as_ref() == Some(schema) {
                    schema.clear();
                } else {
                    previous = Some(schema.clone());
                }
            }
        }
        let first = parts.first().ok_or_else(|| Error::Internal("a combined split without files".into()))?;
        Ok(SplitSpec {
            url: first.url.clone(),
            size: first.size,
            range: SplitRange::Combined { parts },
            partitions: Vec::new(),
        })
    }

    /// The spec of a split of one file.
    fn file_spec(&self) -> Result<SplitSpec> {
        let file = self.file();
        let range = match self {
            Split::Partitioned(split, _) => return split.to_spec(),
            Split::Text(s) => SplitRange::Text { start: s.start, end: s.end, codec: s.codec },
            Split::Records(s) => SplitRange::Records {
                start: s.start,
                end: s.end,
                record_len: s.format.record_len,
                key_len: s.format.key_len,
            },
            Split::Parquet(s) => {
                SplitRange::Parquet { row_groups: s.row_groups.clone(), compressed_bytes: s.compressed_bytes }
            }
            Split::Csv(s) => SplitRange::Csv {
                start: s.start,
                end: s.end,
                delimiter: s.format.delimiter,
                header: s.format.header,
                schema: text_rows::schema_to_bytes(&s.format.schema)?,
                codec: s.codec,
            },
            Split::Json(s) => SplitRange::Json {
                start: s.start,
                end: s.end,
                schema: text_rows::schema_to_bytes(&s.format.schema)?,
                codec: s.codec,
            },
            Split::Combined(_) => {
                return Err(Error::Internal("a combined split inside a combined split".into()));
            }
        };
        Ok(SplitSpec { url: file.display(), size: file.size, range, partitions: file.partitions.clone() })
    }

    /// Rebuilds a split from its spec, its file's store configured with the job's
    /// `storage` options; Parquet footers are read again (a combined split's concurrently).
    pub async fn from_spec(spec: SplitSpec, input: &InputSpec, storage: &StorageOptions) -> Result<Split> {
        let SplitRange::Combined { mut parts } = spec.range else {
            return Self::from_file_spec(spec, input, storage).await;
        };
        if parts.is_empty() {
            return Err(Error::Config(format!("a combined split without files (first {})", spec.url)));
        }
        let mut previous: Vec<u8> = Vec::new();
        for part in &mut parts {
            if let SplitRange::Csv { schema, .. } | SplitRange::Json { schema, .. } = &mut part.range {
                if schema.is_empty() {
                    schema.clone_from(&previous);
                } else {
                    previous.clone_from(schema);
                }
            }
        }
        let parts = futures::stream::iter(parts.into_iter().map(|p| Self::from_file_spec(p, input, storage)))
            .buffered(PLAN_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(Split::Combined(CombinedSplit { parts }))
    }

    /// Rebuilds the split of one file.
    async fn from_file_spec(spec: SplitSpec, input: &InputSpec, storage: &StorageOptions) -> Result<Split> {
        let location = crate::storage::Location::parse_with(&spec.url, storage)?;
        let file = Arc::new(InputFile { location, size: spec.size, partitions: spec.partitions.clone() });
        let (columns, file_spec) = partition_columns::plan(&file, input);
        let input = &file_spec;
        let split = match spec.range {
            SplitRange::Text { start, end, codec } => {
                Split::Text(TextSplit { file, start, end, shape: input.text, codec })
            }
            SplitRange::Records { start, end, record_len, key_len } => {
                let columns = input.records.map(|f| f.columns).unwrap_or_default();
                let format = RecordFormat { record_len, key_len, columns };
                Split::Records(RecordSplit { file, start, end, format })
            }
            SplitRange::Parquet { row_groups, compressed_bytes } => {
                Split::Parquet(parquet::reopen(&file, input, row_groups, compressed_bytes).await?)
            }
            SplitRange::Csv { start, end, delimiter, header, schema, codec } => {
                let schema = text_rows::schema_from_bytes(&schema)?;
                let format = Arc::new(CsvFormat::new(&file, delimiter, header, schema, input)?);
                Split::Csv(CsvSplit { file, start, end, format, codec })
            }
            SplitRange::Json { start, end, schema, codec } => {
                let format = Arc::new(JsonFormat::new(&file, text_rows::schema_from_bytes(&schema)?, input)?);
                Split::Json(JsonSplit { file, start, end, format, codec })
            }
            SplitRange::Combined { .. } => {
                return Err(Error::Config(format!(
                    "a combined split inside a combined split ({})",
                    spec.url
                )));
            }
        };
        Ok(match (columns, &split) {
            (Some(columns), Split::Parquet(_) | Split::Csv(_) | Split::Json(_)) => {
                Split::Partitioned(Box::new(split), columns)
            }
            _ => split,
        })
    }
}

/// Files whose planning I/O (Parquet footers, magic bytes) is in flight at once; also
/// Parquet footers a task process reads again for a combined split.
pub const PLAN_CONCURRENCY: usize = 32;

/// The compression of the text, CSV or JSON lines file `file`: by its extension, or, when
/// a format is forced on a file without one, by its first bytes.
async fn text_codec(file: &InputFile, forced: Option<InputFormat>) -> Result<Option<Codec>> {
    let name = file.location.path().as_ref();
    if let Some(codec) = Codec::from_name(name) {
        return Ok(Some(codec));
    }
    let sniffed = matches!(forced, Some(InputFormat::Text | InputFormat::Csv | InputFormat::Json));
    if !sniffed || file.size == 0 {
        return Ok(None);
    }
    let head = 0..file.size.min(compressed::MAGIC_LEN as u64);
    let bytes = match file.location.local_file() {
        Some(path) => {
            let mut buf = Vec::new();
            let mut local = std::fs::File::open(&path).map_err(|e| Error::local_read(file.display(), e))?;
            crate::storage::read_local_range(&mut local, &head, &mut buf)
                .map_err(|e| Error::local_read(file.display(), e))?;
            bytes::Bytes::from(buf)
        }
        None => file
            .location
            .store()
            .get_range(file.location.path(), head)
            .await
            .map_err(|e| Error::read(file.display(), e))?,
    };
    Ok(Codec::sniff(&bytes))
}

/// What planning one file found with I/O of its own, before the files are taken in order.
enum Probed {
    /// Text, CSV or JSON lines, compressed or not.
    Lines(InputFormat, Option<Codec>),
    /// A Parquet file's splits (its footer read).
    Parquet(Vec<parquet::ParquetSplit>),
}

/// Does the I/O planning `file` needs on its own: its compression (sniffed when a format
/// is forced), or its Parquet footer.
async fn probe(file: &Arc<InputFile>, spec: &InputSpec, options: &SplitOptions) -> Result<Probed> {
    match InputFormat::detect(file, options.format) {
        InputFormat::Parquet => Ok(Probed::Parquet(parquet::plan(file, spec, options.split_size).await?)),
        InputFormat::Text if spec.records.is_some() => Ok(Probed::Lines(InputFormat::Text, None)),
        format => Ok(Probed::Lines(format, text_codec(file, options.format).await?)),
    }
}

/// Plans the splits of `files`: byte ranges of text, groups of Parquet row groups, whole
/// compressed files; then packs whole small files together ([`CombinedSplit`]). Reads
/// every Parquet footer once (up to [`PLAN_CONCURRENCY`] at a time, the splits in file
/// order) and checks it has the columns `spec` asks for; infers the schema of CSV and JSON
/// lines input from its first file and checks it likewise.
pub async fn plan_splits(
    files: Vec<InputFile>,
    spec: &InputSpec,
    options: &SplitOptions,
) -> Result<Vec<Split>> {
    let files: Vec<Arc<InputFile>> = files.into_iter().map(Arc::new).collect();
    let declared;
    let spec = match (&spec.schema, &options.schema) {
        (None, Some(schema)) => {
            declared = spec.clone().with_schema(schema.clone());
            &declared
        }
        _ => spec,
    };
    // Each file's spec: the job's, less the columns its Hive partition directories give.
    let specs: Vec<(Option<Arc<PartitionColumns>>, InputSpec)> = files
        .iter()
        .map(|file| match InputFormat::detect(file, options.format) {
            InputFormat::Text => (None, spec.clone()),
            _ => partition_columns::plan(file, spec),
        })
        .collect();
    let probes = files.iter().zip(&specs).map(|(file, (_, spec))| probe(file, spec, options));
    let probed: Vec<Probed> = futures::stream::iter(probes).buffered(PLAN_CONCURRENCY).try_collect().await?;
    let mut splits = Vec::new();
    let mut inferred = text_rows::Inferred::default();
    for ((file, probed), (columns, spec)) in files.iter().zip(probed).zip(&specs) {
        let planned: Vec<Split> = match probed {
            Probed::Parquet(planned) => planned.into_iter().map(Split::Parquet).collect(),
            Probed::Lines(InputFormat::Csv, codec) => {
                let format = inferred.csv(file, codec, &options.csv, spec).await?;
                let planned = csv::plan(file, &format, codec, options.split_size, options.csv.multiline);
                planned.into_iter().map(Split::Csv).collect()
            }
            Probed::Lines(InputFormat::Json, codec) => {
                let format = inferred.json(file, codec, spec).await?;
                json::plan(file, &format, codec, options.split_size).into_iter().map(Split::Json).collect()
            }
            Probed::Lines(_, codec) => match spec.records {
                Some(format) => {
                    records::plan(file, format, options.split_size)?.into_iter().map(Split::Records).collect()
                }
                None => text::plan(file, options.split_size, spec.text, codec).map(Split::Text).collect(),
            },
        };
        match columns {
            Some(columns) => splits.extend(
                planned.into_iter().map(|split| Split::Partitioned(Box::new(split), columns.clone())),
            ),
            None => splits.extend(planned),
        }
    }
    Ok(combined::pack(splits, options.split_size))
}
