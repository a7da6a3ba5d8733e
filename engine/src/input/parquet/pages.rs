//! Page-level pruning: within the row groups a filter's row-group statistics keep, the
//! page index (per-page min/max of each column) excludes runs of rows, which the reader
//! then neither fetches nor decodes (a `RowSelection`).
//!
//! The filter's columns have pages of their own sizes, so a row group is cut at every
//! page boundary of every filter column: within one such segment each column is in exactly
//! one page, and the segment's statistics are those pages'. A segment the filter's
//! statistics check excludes is skipped.

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::take;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, RowSelection, RowSelector};
use parquet::file::metadata::page_index::PageIndexProvider;

use crate::input::Predicate;

/// The rows of a split's row groups that the page index leaves to read.
#[derive(Clone, Debug)]
pub struct PageSelection {
    /// Which rows of the row groups read (in order) to decode.
    pub selection: RowSelection,
    /// Rows skipped.
    pub skipped_rows: u64,
}

/// One filter column's pages in one row group: where each starts, and their statistics.
struct ColumnPages {
    first_rows: Vec<u64>,
    mins: ArrayRef,
    maxes: ArrayRef,
}

/// The rows of `row_groups` the page index of `metadata` does not exclude for `filter`;
/// `None` when it excludes none (or the file has no page index).
pub fn select(
    metadata: &ArrowReaderMetadata,
    row_groups: &[usize],
    filter: &Predicate,
) -> Option<PageSelection> {
    let index = metadata.metadata().page_index()?;
    let mut selectors = Vec::new();
    let mut skipped_rows = 0;
    for &group in row_groups {
        let rows = metadata.metadata().row_group(group).num_rows().max(0) as u64;
        let keep = segments_kept(metadata, index.as_ref(), group, rows, filter);
        for (len, kept) in keep.unwrap_or_else(|| vec![(rows, true)]) {
            if !kept {
                skipped_rows += len;
            }
            push(&mut selectors, len, kept);
        }
    }
    (skipped_rows > 0).then(|| PageSelection { selection: RowSelection::from(selectors), skipped_rows })
}

/// Appends a run of `len` rows, merged with the last run when both are kept or skipped.
fn push(selectors: &mut Vec<RowSelector>, len: u64, kept: bool) {
    if len == 0 {
        return;
    }
    match selectors.last_mut() {
        Some(last) if last.skip != kept => last.row_count += len as usize,
        _ => selectors.push(if kept {
            RowSelector::select(len as usize)
        } else {
            RowSelector::skip(len as usize)
        }),
    }
}

/// Row group `group` cut into segments at every page boundary of the filter's columns:
/// each segment's length and whether the filter may match its rows. `None` when a filter
/// column has no page index here.
fn segments_kept(
    metadata: &ArrowReaderMetadata,
    index: &dyn PageIndexProvider,
    group: usize,
    rows: u64,
    filter: &Predicate,
) -> Option<Vec<(u64, bool)>> {
    let mut columns = Vec::new();
    for name in filter.columns() {
        columns.push((name, column_pages(metadata, index, group, name)?));
    }
    let mut starts: Vec<u64> = columns.iter().flat_map(|(_, c)| c.first_rows.iter().copied()).collect();
    starts.push(0);
    starts.sort_unstable();
    starts.dedup();
    starts.retain(|&s| s < rows);
    let stats = |name: &str| -> Option<(ArrayRef, ArrayRef)> {
        let (_, pages) = columns.iter().find(|(n, _)| *n == name)?;
        // The page of this column each segment lies in.
        let page_of =
            starts.iter().map(|&s| (pages.first_rows.partition_point(|&r| r <= s).max(1) - 1) as u32);
        let page_of = UInt32Array::from_iter_values(page_of);
        Some((take(&pages.mins, &page_of, None).ok()?, take(&pages.maxes, &page_of, None).ok()?))
    };
    let kept = filter.may_match(starts.len(), &stats);
    let ends = starts.iter().skip(1).copied().chain([rows]);
    Some(starts.iter().zip(ends).zip(kept).map(|((start, end), kept)| (end - start, kept)).collect())
}

/// The pages of column `name` in row group `group`, or `None` without a page index.
fn column_pages(
    metadata: &ArrowReaderMetadata,
    index: &dyn PageIndexProvider,
    group: usize,
    name: &str,
) -> Option<ColumnPages> {
    let converter = StatisticsConverter::try_new(name, metadata.schema(), metadata.parquet_schema()).ok()?;
    let column = converter.parquet_column_index()?;
    let locations = index.offset_index(group, column)?.page_locations();
    index.column_index(group, column)?;
    let first_rows = locations.iter().map(|p| p.first_row_index.max(0) as u64).collect::<Vec<_>>();
    let mins = converter.data_page_mins(index, [&group]).ok()?;
    let maxes = converter.data_page_maxes(index, [&group]).ok()?;
    (mins.len() == first_rows.len() && maxes.len() == first_rows.len()).then_some(ColumnPages {
        first_rows,
        mins,
        maxes,
    })
}
