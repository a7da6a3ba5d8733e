//! Parquet input: one split per row group (small consecutive row groups grouped), reading
//! only the projected columns.

mod budget;
mod pages;
mod projection;
mod pruning;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use futures::StreamExt;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderBuilder, ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::errors::ParquetError;
use parquet::file::metadata::PageIndexPolicy;
use tokio::runtime::Handle;

use crate::error::{Error, Result};
use crate::input::InputSpec;
use crate::storage::{InputFile, ObjectReader};
use projection::Projection;

/// What a filter's statistics let a split skip.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Row groups never read.
    pub row_groups: u64,
    /// Their compressed bytes.
    pub bytes: u64,
    /// Rows of the row groups read that the page index excluded (never decoded).
    pub rows: u64,
}

/// What two splits skipped together.
impl std::ops::Add for Skipped {
    type Output = Skipped;

    fn add(self, other: Skipped) -> Skipped {
        Skipped {
            row_groups: self.row_groups + other.row_groups,
            bytes: self.bytes + other.bytes,
            rows: self.rows + other.rows,
        }
    }
}

/// Rows per decoded batch.
const BATCH_ROWS: usize = 16 * 1024;

/// Row groups of one Parquet file.
#[derive(Clone, Debug)]
pub struct ParquetSplit {
    /// The file.
    pub file: Arc<InputFile>,
    /// The file's footer, read once at planning, with the schema to decode to.
    pub metadata: ArrowReaderMetadata,
    /// The row groups to read (consecutive).
    pub row_groups: Vec<usize>,
    /// Their compressed size.
    pub compressed_bytes: u64,
    /// What to read, resolved against this file's schema.
    projection: Arc<Projection>,
    /// The job's filter, if it filters rows (not only row groups).
    filter: Option<Arc<crate::input::Predicate>>,
    /// The row groups left to read once the filter's statistics check is done.
    pruned: pruning::Pruned,
    /// The rows of those the page index leaves to read, when it excludes some.
    pages: Option<pages::PageSelection>,
}

/// A failed Parquet read: the store's error when fetching bytes failed (network, access,
/// a missing object), a feature this build cannot decode, else a corrupt file.
fn parquet_error(path: String, location: String, source: ParquetError) -> Error {
    match source {
        ParquetError::External(cause) => match cause.downcast::<object_store::Error>() {
            Ok(store) => Error::read(path, *store),
            Err(cause) => Error::CorruptParquet { path, location, source: ParquetError::External(cause) },
        },
        source if is_unsupported(&source) => Error::UnsupportedParquet { path, location, source },
        source => Error::CorruptParquet { path, location, source },
    }
}

/// What the decoder says of a feature it knows but cannot decode: a codec compiled out
/// (a `General` error), or one not implemented (`NYI`, e.g. LZO). The Arrow reader may
/// pass either on as text only, hence the message test.
const UNSUPPORTED_MESSAGES: [&str; 3] = ["Disabled feature at compile time", "NYI: ", "not supported yet"];

fn is_unsupported(error: &ParquetError) -> bool {
    if matches!(error, ParquetError::NYI(_)) {
        return true;
    }
    let message = error.to_string();
    UNSUPPORTED_MESSAGES.iter().any(|m| message.contains(m))
}

/// Reads the footer of `file` and cuts it into splits of about `split_size` compressed bytes.
pub(super) async fn plan(
    file: &Arc<InputFile>,
    spec: &InputSpec,
    split_size: u64,
) -> Result<Vec<ParquetSplit>> {
    let metadata = load_metadata(file, spec).await?;
    let (projection, metadata) = projection::resolve(file, &metadata, spec.parquet_columns.as_deref())?;
    if let Some(filter) = &spec.filter {
        pruning::check_columns(file, &metadata, filter)?;
    }
    let projection = Arc::new(projection);
    let mut splits = Vec::new();
    let mut group: Vec<usize> = Vec::new();
    let mut bytes = 0u64;
    for (i, rg) in metadata.metadata().row_groups().iter().enumerate() {
        group.push(i);
        bytes += rg.compressed_size().max(0) as u64;
        if bytes >= split_size {
            splits.push(split(file, &metadata, &projection, spec, std::mem::take(&mut group), bytes));
            bytes = 0;
        }
    }
    if !group.is_empty() {
        splits.push(split(file, &metadata, &projection, spec, group, bytes));
    }
    Ok(splits)
}

/// Rebuilds a planned split in a task process: reads the footer again (one ranged read)
/// and resolves the columns, as planning did.
pub(super) async fn reopen(
    file: &Arc<InputFile>,
    spec: &InputSpec,
    row_groups: Vec<usize>,
    compressed_bytes: u64,
) -> Result<ParquetSplit> {
    let metadata = load_metadata(file, spec).await?;
    let groups = metadata.metadata().num_row_groups();
    if let Some(bad) = row_groups.iter().find(|&&g| g >= groups) {
        return Err(Error::Config(format!("{} has {groups} row groups, not {}", file.display(), bad + 1)));
    }
    let (projection, metadata) = projection::resolve(file, &metadata, spec.parquet_columns.as_deref())?;
    Ok(split(file, &metadata, &Arc::new(projection), spec, row_groups, compressed_bytes))
}

/// Reads the footer of `file`, with the page index when the job filters rows (for
/// page-level pruning).
async fn load_metadata(file: &Arc<InputFile>, spec: &InputSpec) -> Result<ArrowReaderMetadata> {
    let mut options = ArrowReaderOptions::new();
    if spec.filter.is_some() && spec.filter_rows {
        options = options.with_page_index_policy(PageIndexPolicy::Optional);
    }
    ArrowReaderMetadata::load_async(&mut object_reader(file), options)
        .await
        .map_err(|source| parquet_error(file.display(), String::new(), source))
}

fn split(
    file: &Arc<InputFile>,
    metadata: &ArrowReaderMetadata,
    projection: &Arc<Projection>,
    spec: &InputSpec,
    row_groups: Vec<usize>,
    compressed_bytes: u64,
) -> ParquetSplit {
    let pruned = pruning::prune(metadata, &row_groups, spec.filter.as_deref());
    let filter = spec.filter.clone().filter(|_| spec.filter_rows);
    let pages = filter.as_deref().and_then(|f| pages::select(metadata, &pruned.read, f));
    ParquetSplit {
        file: file.clone(),
        metadata: metadata.clone(),
        row_groups,
        compressed_bytes,
        projection: projection.clone(),
        filter,
        pruned,
        pages,
    }
}

/// The Arrow schema of `file`'s Parquet footer, with the columns of its Hive partition
/// directories (for jobs that read a schema while they plan).
pub async fn footer_schema(file: &InputFile) -> Result<arrow::datatypes::SchemaRef> {
    let metadata = ArrowReaderMetadata::load_async(&mut object_reader(file), ArrowReaderOptions::new())
        .await
        .map_err(|source| parquet_error(file.display(), String::new(), source))?;
    Ok(file.with_partition_fields(metadata.schema()))
}

fn object_reader(file: &InputFile) -> ObjectReader {
    ObjectReader::new(file.location.clone(), file.size)
}

impl ParquetSplit {
    /// `row group 3` or `row groups 0-7`.
    pub fn describe_row_groups(&self) -> String {
        match (self.row_groups.first(), self.row_groups.last()) {
            (Some(a), Some(b)) if a == b => format!("row group {a}"),
            (Some(a), Some(b)) => format!("row groups {a}-{b}"),
            _ => "no row groups".to_owned(),
        }
    }

    /// Row groups and compressed bytes the filter's row-group statistics check skipped,
    /// and rows of the others its page index check skipped.
    pub fn skipped(&self) -> Skipped {
        Skipped {
            row_groups: self.pruned.skipped_groups,
            bytes: self.pruned.skipped_bytes,
            rows: self.pages.as_ref().map_or(0, |p| p.skipped_rows),
        }
    }

    /// Decodes the split's row groups (those the filter does not exclude), handing batches
    /// of the declared columns, and only the rows that pass the filter, to `sink`; page by
    /// page when a row group's column chunks exceed the decoder's share of the task's
    /// memory ([`crate::memory::parquet_decode_bytes`]).
    pub fn read(&self, io: &Handle, sink: &mut dyn FnMut(RecordBatch) -> Result<bool>) -> Result<()> {
        self.read_within(io, crate::memory::parquet_decode_bytes(), sink)
    }

    fn read_within(
        &self,
        io: &Handle,
        budget: u64,
        sink: &mut dyn FnMut(RecordBatch) -> Result<bool>,
    ) -> Result<()> {
        if self.pruned.read.is_empty() {
            return Ok(());
        }
        let corrupt = |source| self.error(source);
        let mut fetched = self.mask();
        if let Some(filter) = &self.filter {
            fetched.union(&pruning::filter_mask(&self.metadata, filter));
        }
        let file = self.metadata.metadata();
        if budget::fetch_within(file, &self.pruned.read, &fetched, budget) == budget::Fetch::Paged {
            let chunks = budget::PagedChunks::new(&self.file, io.clone());
            let builder =
                ParquetRecordBatchReaderBuilder::new_with_metadata(chunks.clone(), self.metadata.clone());
            let reader = self.configure(builder).build().map_err(corrupt)?;
            for batch in reader {
                let batch = batch.map_err(|e| chunks.failure().unwrap_or_else(|| ParquetError::from(e)));
                if !sink(self.conform(batch.map_err(corrupt)?)?)? {
                    break;
                }
            }
            return Ok(());
        }
        let builder = ParquetRecordBatchStreamBuilder::new_with_metadata(
            object_reader(&self.file),
            self.metadata.clone(),
        );
        let mut stream = self.configure(builder).build().map_err(corrupt)?;
        while let Some(batch) = io.block_on(stream.next()) {
            if !sink(self.conform(batch.map_err(corrupt)?)?)? {
                break;
            }
        }
        Ok(())
    }

    /// The error reading this split failed with, naming the file and its row groups.
    fn error(&self, source: ParquetError) -> Error {
        parquet_error(self.file.display(), format!(" ({})", self.describe_row_groups()), source)
    }

    fn mask(&self) -> ProjectionMask {
        ProjectionMask::roots(self.metadata.parquet_schema(), self.projection.roots.iter().copied())
    }

    /// The split's row groups, columns, filter and page selection, for either reader.
    fn configure<T>(&self, builder: ArrowReaderBuilder<T>) -> ArrowReaderBuilder<T> {
        let mut builder = builder
            .with_row_groups(self.pruned.read.clone())
            .with_projection(self.mask())
            .with_batch_size(BATCH_ROWS);
        if let Some(filter) = &self.filter {
            builder = builder.with_row_filter(pruning::row_filter(&self.metadata, filter));
        }
        if let Some(pages) = &self.pages {
            builder = builder.with_row_selection(pages.selection.clone());
        }
        builder
    }

    fn conform(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let (mut fields, mut columns) = (Vec::new(), Vec::new());
        for (index, cast_to) in &self.projection.columns {
            let field = batch.schema().field(*index).clone();
            let column = batch.column(*index);
            match cast_to {
                Some(ty) => {
                    columns.push(cast(column, ty).map_err(Error::arrow("converting a Parquet column"))?);
                    fields.push(field.with_data_type(ty.clone()));
                }
                None => {
                    columns.push(column.clone());
                    fields.push(field);
                }
            }
        }
        let schema = Arc::new(arrow::datatypes::Schema::new(fields));
        RecordBatch::try_new(schema, columns).map_err(Error::arrow("projecting Parquet columns"))
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{ArrayRef, AsArray, Decimal128Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Decimal64Type, Field, Int32Type, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    use super::*;

    /// A file with a string, a `DECIMAL(15, 2)` (stored as `INT64`) and an integer column.
    fn write_file(path: &std::path::Path) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("flag", DataType::Utf8, false),
            Field::new("price", DataType::Decimal128(15, 2), false),
            Field::new("n", DataType::Int64, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec!["A", "N", "A", "a longer string than twelve bytes"])),
            Arc::new(
                Decimal128Array::from(vec![1050, -3, 99_999_999_999_999, 0])
                    .with_precision_and_scale(15, 2)
                    .unwrap(),
            ),
            Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let mut writer = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    /// Writes the test file into a new directory; plans it with `spec`.
    fn plan_test_file(
        spec: &InputSpec,
    ) -> (tempfile::TempDir, tokio::runtime::Runtime, Result<Vec<ParquetSplit>>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        write_file(&path);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let files = runtime
            .block_on(crate::storage::resolve_inputs(&[path.display().to_string()], &Default::default()))
            .unwrap();
        let splits = runtime.block_on(plan(&Arc::new(files[0].clone()), spec, 1 << 30));
        (dir, runtime, splits)
    }

    #[test]
    fn declared_types_are_decoded_directly_and_values_survive() {
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let spec = InputSpec::text_lines().with_parquet_columns([
            ("price", DataType::Decimal64(15, 2)),
            ("flag", DataType::Utf8View),
            ("flag", dict.clone()),
            ("n", DataType::Int64),
        ]);
        let (_dir, runtime, splits) = plan_test_file(&spec);
        let splits = splits.unwrap();
        // The flag is read twice with different types: one of them must be cast.
        let casts: Vec<_> = splits[0].projection.columns.iter().map(|(_, cast)| cast.clone()).collect();
        assert_eq!(casts[0], None, "the decimal is decoded as Decimal64");
        assert_eq!(casts[3], None);
        assert_eq!(casts[1..3].iter().filter(|c| c.is_some()).count(), 2, "a column read twice is cast");

        let mut batches = Vec::new();
        splits[0]
            .read(runtime.handle(), &mut |b| {
                batches.push(b);
                Ok(true)
            })
            .unwrap();
        let batch = &batches[0];
        let types: Vec<_> = batch.schema().fields().iter().map(|f| f.data_type().clone()).collect();
        assert_eq!(types, [DataType::Decimal64(15, 2), DataType::Utf8View, dict, DataType::Int64]);
        let prices = batch.column(0).as_primitive::<Decimal64Type>().values().to_vec();
        assert_eq!(prices, [1050, -3, 99_999_999_999_999, 0]);
        let flags: Vec<_> = batch.column(1).as_string_view().iter().map(Option::unwrap).collect();
        assert_eq!(flags, ["A", "N", "A", "a longer string than twelve bytes"]);
        let dictionary = batch.column(2).as_dictionary::<Int32Type>();
        let values = dictionary.values().as_string::<i32>();
        let decoded: Vec<_> = dictionary.keys().values().iter().map(|&k| values.value(k as usize)).collect();
        assert_eq!(decoded, flags);
    }

    #[test]
    fn a_feature_the_build_cannot_decode_is_unsupported_not_corrupt_and_not_retried() {
        let location = " (row groups 2-5)".to_owned();
        let causes = [
            ParquetError::General("Disabled feature at compile time: zstd".into()),
            ParquetError::NYI("The codec type LZO is not supported yet".into()),
            ParquetError::ArrowError("Parquet error: NYI: The codec type LZO is not supported yet".into()),
        ];
        for cause in causes {
            let error = parquet_error("data/z.parquet".into(), location.clone(), cause);
            assert_eq!(error.kind(), crate::error::ErrorKind::Unsupported, "{error}");
            assert!(!error.is_retryable());
            let message = error.to_string();
            assert!(message.starts_with("data/z.parquet: unsupported Parquet feature (row groups 2-5): "));
            assert!(!message.contains("corrupt"), "{message}");
        }
        let corrupt = parquet_error("z.parquet".into(), location, ParquetError::EOF("short".into()));
        assert_eq!(corrupt.kind(), crate::error::ErrorKind::CorruptInput);
    }

    #[test]
    fn hinted_strings_need_no_cast() {
        let spec = InputSpec::text_lines().with_parquet_columns([("flag", DataType::Utf8View)]);
        let splits = plan_test_file(&spec).2.unwrap();
        assert_eq!(splits[0].projection.columns, [(0, None)]);
        // A decimal read at another scale is refused, naming the file and the column.
        let spec = InputSpec::text_lines().with_parquet_columns([("price", DataType::Decimal64(15, 3))]);
        let error = plan_test_file(&spec).2.unwrap_err();
        assert!(error.to_string().contains("price") && error.to_string().contains("t.parquet"), "{error}");
    }

    #[test]
    fn a_filter_skips_row_groups_its_statistics_exclude_and_passes_only_matching_rows() {
        use arrow::array::Int64Array;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sorted.parquet");
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        let n: Vec<i64> = (0..4000).collect();
        let s: Vec<String> = n.iter().map(|i| format!("row {i}")).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(n)), Arc::new(StringArray::from(s))],
        )
        .unwrap();
        let props = WriterProperties::builder().set_max_row_group_row_count(Some(1000)).build();
        let mut writer =
            ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();

        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let files = runtime
            .block_on(crate::storage::resolve_inputs(&[path.display().to_string()], &Default::default()))
            .unwrap();
        let file = Arc::new(files[0].clone());
        // The job reads `s` only; the filter is on `n`.
        let filter = crate::input::Predicate::parse("n >= 2500 and n < 3100").unwrap();
        let spec = InputSpec::text_lines().with_parquet_columns([("s", DataType::Utf8)]).with_filter(filter);
        let splits = runtime.block_on(plan(&file, &spec, 1 << 30)).unwrap();
        let skipped = splits[0].skipped();
        assert_eq!(
            (skipped.row_groups, splits[0].pruned.read.clone()),
            (2, vec![2, 3]),
            "row groups 0, 1 excluded"
        );
        assert!(skipped.bytes > 0);
        let mut rows = Vec::new();
        splits[0]
            .read(runtime.handle(), &mut |b| {
                assert_eq!(b.num_columns(), 1, "the filter's column is not handed to the mapper");
                rows.extend(b.column(0).as_string::<i32>().iter().map(|v| v.unwrap().to_owned()));
                Ok(true)
            })
            .unwrap();
        let expected: Vec<String> = (2500..3100).map(|i| format!("row {i}")).collect();
        assert_eq!(rows, expected);
        let missing = InputSpec::text_lines().with_filter(crate::input::Predicate::parse("zz > 1").unwrap());
        let error = runtime.block_on(plan(&file, &missing, 1 << 30)).unwrap_err();
        assert!(error.to_string().contains("no column `zz`"), "{error}");
    }

    /// Writes `n` (0..4000) and `s` (`row {n}`, padded) in one row group, pages of at most
    /// 100 rows, `s` in smaller pages than `n` by byte size.
    fn one_row_group_many_pages(path: &std::path::Path) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        let n: Vec<i64> = (0..4000).collect();
        let s: Vec<String> = n.iter().map(|i| format!("row {i}{}", "-".repeat(60))).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(n)), Arc::new(StringArray::from(s))],
        )
        .unwrap();
        let props = WriterProperties::builder()
            .set_dictionary_enabled(false)
            .set_data_page_row_count_limit(100)
            .set_data_page_size_limit(2048)
            .set_write_batch_size(10)
            .build();
        write_batch(path, &batch, props);
    }

    /// Writes `batch` to a new Parquet file at `path` with `props`.
    pub(super) fn write_batch(path: &std::path::Path, batch: &RecordBatch, props: WriterProperties) {
        let file = std::fs::File::create(path).unwrap();
        let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
        writer.write(batch).unwrap();
        writer.close().unwrap();
    }

    #[test]
    fn the_page_index_skips_pages_a_filter_excludes_across_columns_of_other_page_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pages.parquet");
        one_row_group_many_pages(&path);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let files = runtime
            .block_on(crate::storage::resolve_inputs(&[path.display().to_string()], &Default::default()))
            .unwrap();
        let file = Arc::new(files[0].clone());
        let padded = |i: i64| format!("row {i}{}", "-".repeat(60));
        let filter = format!("n >= 2500 and n < 3100 or s = '{}'", padded(10));
        let filter = crate::input::Predicate::parse(&filter).unwrap();
        let spec = InputSpec::text_lines().with_parquet_columns([("n", DataType::Int64)]).with_filter(filter);
        let splits = runtime.block_on(plan(&file, &spec, 1 << 30)).unwrap();
        let skipped = splits[0].skipped();
        assert_eq!(skipped.row_groups, 0, "one row group, and it holds matches");
        // Pages of n hold 100 rows: at most 7 pages of n plus one of s remain.
        assert!(skipped.rows >= 4000 - 800, "pages skipped: {skipped:?}");
        let mut rows = Vec::new();
        splits[0]
            .read(runtime.handle(), &mut |b| {
                rows.extend(
                    b.column(0).as_primitive::<arrow::datatypes::Int64Type>().values().iter().copied(),
                );
                Ok(true)
            })
            .unwrap();
        let expected: Vec<i64> = [10].into_iter().chain(2500..3100).collect();
        assert_eq!(rows, expected);
    }
}
