//! Parquet input: one split per row group (small consecutive row groups grouped), reading
//! only the projected columns.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::DataType;
use futures::StreamExt;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::errors::ParquetError;
use tokio::runtime::Handle;

use crate::error::{Error, Result};
use crate::job::{InputSpec, ParquetColumn};
use crate::storage::{InputFile, ObjectReader};

/// Rows per decoded batch.
const BATCH_ROWS: usize = 16 * 1024;

/// Row groups of one Parquet file.
#[derive(Clone, Debug)]
pub struct ParquetSplit {
    /// The file.
    pub file: Arc<InputFile>,
    /// The file's footer, read once at planning.
    pub metadata: ArrowReaderMetadata,
    /// The row groups to read (consecutive).
    pub row_groups: Vec<usize>,
    /// Their compressed size.
    pub compressed_bytes: u64,
    /// What to read, resolved against this file's schema.
    projection: Arc<Projection>,
}

/// The columns to read from one file: root indices to decode, and how to turn decoded
/// batches (in file order) into the declared columns (in declared order, declared types).
#[derive(Debug)]
struct Projection {
    roots: Vec<usize>,
    /// For each declared column: its index among the decoded columns, and a type to cast to.
    columns: Vec<(usize, Option<DataType>)>,
}

/// A failed Parquet read: the store's error when fetching bytes failed (network, access,
/// a missing object), else a corrupt file.
fn parquet_error(path: String, location: String, source: ParquetError) -> Error {
    match source {
        ParquetError::External(cause) => match cause.downcast::<object_store::Error>() {
            Ok(store) => Error::read(path, *store),
            Err(cause) => Error::CorruptParquet { path, location, source: ParquetError::External(cause) },
        },
        source => Error::CorruptParquet { path, location, source },
    }
}

/// Reads the footer of `file` and cuts it into splits of about `split_size` compressed bytes.
pub(super) async fn plan(
    file: &Arc<InputFile>,
    spec: &InputSpec,
    split_size: u64,
) -> Result<Vec<ParquetSplit>> {
    let mut reader = object_reader(file);
    let metadata = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new())
        .await
        .map_err(|source| parquet_error(file.display(), String::new(), source))?;
    let projection = Arc::new(resolve_projection(file, &metadata, spec.parquet_columns.as_deref())?);
    let mut splits = Vec::new();
    let mut group: Vec<usize> = Vec::new();
    let mut bytes = 0u64;
    for (i, rg) in metadata.metadata().row_groups().iter().enumerate() {
        group.push(i);
        bytes += rg.compressed_size().max(0) as u64;
        if bytes >= split_size {
            splits.push(split(file, &metadata, &projection, std::mem::take(&mut group), bytes));
            bytes = 0;
        }
    }
    if !group.is_empty() {
        splits.push(split(file, &metadata, &projection, group, bytes));
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
    let mut reader = object_reader(file);
    let metadata = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new())
        .await
        .map_err(|source| Error::CorruptParquet { path: file.display(), location: String::new(), source })?;
    let groups = metadata.metadata().num_row_groups();
    if let Some(bad) = row_groups.iter().find(|&&g| g >= groups) {
        return Err(Error::Config(format!("{} has {groups} row groups, not {}", file.display(), bad + 1)));
    }
    let projection = Arc::new(resolve_projection(file, &metadata, spec.parquet_columns.as_deref())?);
    Ok(split(file, &metadata, &projection, row_groups, compressed_bytes))
}

fn split(
    file: &Arc<InputFile>,
    metadata: &ArrowReaderMetadata,
    projection: &Arc<Projection>,
    row_groups: Vec<usize>,
    compressed_bytes: u64,
) -> ParquetSplit {
    ParquetSplit {
        file: file.clone(),
        metadata: metadata.clone(),
        row_groups,
        compressed_bytes,
        projection: projection.clone(),
    }
}

fn object_reader(file: &InputFile) -> ObjectReader {
    ObjectReader::new(file.location.clone(), file.size)
}

fn resolve_projection(
    file: &InputFile,
    metadata: &ArrowReaderMetadata,
    wanted: Option<&[ParquetColumn]>,
) -> Result<Projection> {
    let schema = metadata.schema();
    let Some(wanted) = wanted else {
        let all: Vec<usize> = (0..schema.fields().len()).collect();
        return Ok(Projection { columns: all.iter().map(|&i| (i, None)).collect(), roots: all });
    };
    let mut indices = Vec::with_capacity(wanted.len());
    for column in wanted {
        let index = schema.index_of(&column.name).map_err(|_| Error::MissingColumn {
            path: file.display(),
            column: column.name.clone(),
            available: schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", "),
        })?;
        let found = schema.field(index).data_type();
        let cast_to = match &column.data_type {
            Some(expected) if expected != found => {
                if !convertible(found, expected) {
                    return Err(Error::ColumnType {
                        path: file.display(),
                        column: column.name.clone(),
                        found: found.to_string(),
                        expected: expected.to_string(),
                    });
                }
                Some(expected.clone())
            }
            _ => None,
        };
        indices.push((index, cast_to));
    }
    let mut roots: Vec<usize> = indices.iter().map(|(i, _)| *i).collect();
    roots.sort_unstable();
    roots.dedup();
    let columns = indices
        .into_iter()
        .map(|(index, cast_to)| (roots.binary_search(&index).expect("root was added"), cast_to))
        .collect();
    Ok(Projection { roots, columns })
}

/// Conversions that never lose information: between string (or binary) encodings.
fn convertible(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let string = |t: &DataType| matches!(t, Utf8 | LargeUtf8 | Utf8View);
    let binary = |t: &DataType| matches!(t, Binary | LargeBinary | BinaryView);
    (string(from) && string(to)) || (binary(from) && binary(to))
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

    /// Decodes the split's row groups, handing batches of the declared columns to `sink`.
    pub fn read(&self, io: &Handle, sink: &mut dyn FnMut(RecordBatch) -> Result<bool>) -> Result<()> {
        let corrupt =
            |source| parquet_error(self.file.display(), format!(" ({})", self.describe_row_groups()), source);
        let mask =
            ProjectionMask::roots(self.metadata.parquet_schema(), self.projection.roots.iter().copied());
        let mut stream = ParquetRecordBatchStreamBuilder::new_with_metadata(
            object_reader(&self.file),
            self.metadata.clone(),
        )
        .with_row_groups(self.row_groups.clone())
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(corrupt)?;
        while let Some(batch) = io.block_on(stream.next()) {
            if !sink(self.conform(batch.map_err(corrupt)?)?)? {
                break;
            }
        }
        Ok(())
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
