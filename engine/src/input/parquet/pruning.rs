//! A job's filter on Parquet input ([`Predicate`]): row groups whose statistics exclude it
//! are not read, and the reader decodes the filter's columns first and the rest only for
//! the rows that pass (parquet's `RowFilter`).

use std::sync::Arc;

use arrow::array::ArrayRef;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{ArrowPredicateFn, ArrowReaderMetadata, RowFilter};

use crate::error::Result;
use crate::input::Predicate;
use crate::storage::InputFile;

/// What a filter left of a split's row groups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// The row groups to read.
    pub read: Vec<usize>,
    /// Row groups skipped.
    pub skipped_groups: u64,
    /// Their compressed bytes.
    pub skipped_bytes: u64,
}

/// Checks the filter's columns are in the file.
pub fn check_columns(file: &InputFile, metadata: &ArrowReaderMetadata, filter: &Predicate) -> Result<()> {
    let schema = metadata.schema();
    for column in filter.columns() {
        crate::input::column_index(file, schema, column)?;
    }
    Ok(())
}

/// The row groups of `row_groups` whose statistics do not exclude `filter`.
pub fn prune(metadata: &ArrowReaderMetadata, row_groups: &[usize], filter: Option<&Predicate>) -> Pruned {
    let Some(filter) = filter else {
        return Pruned { read: row_groups.to_vec(), ..Pruned::default() };
    };
    let file = metadata.metadata();
    let groups: Vec<_> = row_groups.iter().map(|&i| file.row_group(i)).collect();
    let stats = |column: &str| -> Option<(ArrayRef, ArrayRef)> {
        let converter =
            StatisticsConverter::try_new(column, metadata.schema(), metadata.parquet_schema()).ok()?;
        let mins = converter.row_group_mins(groups.iter().copied()).ok()?;
        let maxes = converter.row_group_maxes(groups.iter().copied()).ok()?;
        Some((mins, maxes))
    };
    let may = filter.may_match(row_groups.len(), &stats);
    let mut pruned = Pruned::default();
    for ((&index, group), keep) in row_groups.iter().zip(&groups).zip(may) {
        if keep {
            pruned.read.push(index);
        } else {
            pruned.skipped_groups += 1;
            pruned.skipped_bytes += group.compressed_size().max(0) as u64;
        }
    }
    pruned
}

/// The columns `filter` reads.
pub fn filter_mask(metadata: &ArrowReaderMetadata, filter: &Predicate) -> ProjectionMask {
    let schema = metadata.schema();
    let roots: Vec<usize> = filter.columns().iter().filter_map(|c| schema.index_of(c).ok()).collect();
    ProjectionMask::roots(metadata.parquet_schema(), roots)
}

/// The reader's row filter for `filter`: decodes its columns, keeps the rows that pass.
pub fn row_filter(metadata: &ArrowReaderMetadata, filter: &Arc<Predicate>) -> RowFilter {
    let mask = filter_mask(metadata, filter);
    let filter = filter.clone();
    let predicate = ArrowPredicateFn::new(mask, move |batch| {
        filter.evaluate(&batch).map_err(|e| arrow::error::ArrowError::ComputeError(e.to_string()))
    });
    RowFilter::new(vec![Box::new(predicate)])
}
