//! Which Parquet columns of a part file get dictionary encoding, judged from a sample of
//! its first batch.
//!
//! Dictionary encoding interns every value in a hash table (about 100 instructions a
//! value) until the dictionary outgrows its page limit, then falls back to plain encoding
//! for the rest of the row group. On high-cardinality columns (keys, prices, comments,
//! postings) that interning buys nothing: profiling the join of TPC-H orders with lineitem,
//! it was 22% of all instructions. A column keeps the dictionary only if its sample says
//! values repeat often and a row group's dictionary would fit its page limit.

use std::collections::HashSet;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use arrow::row::{RowConverter, SortField};
use parquet::arrow::ArrowSchemaConverter;
use parquet::file::properties::{DEFAULT_DICTIONARY_PAGE_SIZE_LIMIT, WriterPropertiesBuilder};

/// Values sampled per column.
const SAMPLE_VALUES: usize = 4096;

/// How often a sampled value must repeat on average for a dictionary to pay (the codec
/// already shrinks short repeats of plain values).
const MIN_REPEATS: usize = 8;

/// Turns dictionary encoding off for the leaf columns of `batch` whose sample predicts a
/// dictionary that would not pay (see the module docs). Columns it cannot judge keep the
/// writer's default (on).
pub fn choose_dictionaries(
    mut props: WriterPropertiesBuilder,
    batch: &RecordBatch,
    row_group_rows: usize,
) -> WriterPropertiesBuilder {
    let Ok(parquet_schema) = ArrowSchemaConverter::new().convert(batch.schema_ref()) else {
        return props;
    };
    let wanted: Vec<bool> =
        batch.columns().iter().map(|column| dictionary_pays(column, row_group_rows)).collect();
    for leaf in 0..parquet_schema.num_columns() {
        let root = parquet_schema.get_column_root_idx(leaf);
        if !wanted[root] {
            props = props.set_column_dictionary_enabled(parquet_schema.column(leaf).path().clone(), false);
        }
    }
    props
}

/// Whether `column`'s sampled values repeat [`MIN_REPEATS`] times on average and a row
/// group's dictionary is expected to fit the dictionary page.
fn dictionary_pays(column: &ArrayRef, row_group_rows: usize) -> bool {
    let values = leaf_values(column);
    let sample = values.slice(0, values.len().min(SAMPLE_VALUES));
    let Some((seen, distinct, distinct_bytes)) = distinct_values(&sample) else {
        return true;
    };
    if seen == 0 {
        return true;
    }
    // Distinct values grow at most linearly with rows: a pessimistic row-group estimate.
    let scale = row_group_rows.max(seen) as f64 / seen as f64;
    let dictionary_bytes = distinct_bytes as f64 * scale;
    distinct * MIN_REPEATS <= seen && dictionary_bytes <= DEFAULT_DICTIONARY_PAGE_SIZE_LIMIT as f64
}

/// The values a list column's leaf holds; any other column itself.
fn leaf_values(column: &ArrayRef) -> ArrayRef {
    match column.data_type() {
        DataType::List(_) => leaf_values(column.as_list::<i32>().values()),
        DataType::LargeList(_) => leaf_values(column.as_list::<i64>().values()),
        _ => column.clone(),
    }
}

/// (non-null values seen, distinct ones, bytes of the distinct ones as a dictionary page
/// stores them), or `None` for a type without a row encoding.
fn distinct_values(sample: &ArrayRef) -> Option<(usize, usize, usize)> {
    let converter = RowConverter::new(vec![SortField::new(sample.data_type().clone())]).ok()?;
    let rows = converter.convert_columns(std::slice::from_ref(sample)).ok()?;
    let width = sample.data_type().primitive_width();
    let mut distinct = HashSet::with_capacity(sample.len());
    let (mut seen, mut bytes) = (0, 0);
    for i in (0..sample.len()).filter(|&i| sample.is_valid(i)) {
        seen += 1;
        let row = rows.row(i);
        if distinct.insert(row) {
            // Plain-encoded dictionary entries: the value, and a 4-byte length if variable.
            bytes += width.unwrap_or(row.as_ref().len() + 4);
        }
    }
    Some((seen, distinct.len(), bytes))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{StringArray, UInt64Array};
    use arrow::datatypes::{Field, Schema};
    use parquet::schema::types::ColumnPath;

    use super::*;

    fn dictionary_enabled(batch: &RecordBatch, column: &str) -> bool {
        let builder = parquet::file::properties::WriterProperties::builder();
        let props = choose_dictionaries(builder, batch, 128 * 1024).build();
        props.dictionary_enabled(&ColumnPath::from(column))
    }

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> =
            columns.iter().map(|(name, c)| Field::new(*name, c.data_type().clone(), false)).collect();
        let arrays = columns.into_iter().map(|(_, c)| c).collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
    }

    #[test]
    fn unique_keys_and_comments_get_no_dictionary_and_repeated_flags_keep_it() {
        let n = 10_000u64;
        let flags: StringArray = (0..n).map(|i| Some(["A", "N", "R"][i as usize % 3])).collect();
        let comments: StringArray = (0..n).map(|i| Some(format!("comment number {i} of many"))).collect();
        let batch = batch(vec![
            ("key", Arc::new(UInt64Array::from_iter_values(0..n))),
            ("flag", Arc::new(flags)),
            ("comment", Arc::new(comments)),
        ]);
        assert!(!dictionary_enabled(&batch, "key"));
        assert!(dictionary_enabled(&batch, "flag"));
        assert!(!dictionary_enabled(&batch, "comment"));
    }

    #[test]
    fn keys_repeated_in_short_runs_get_no_dictionary_and_quantities_keep_it() {
        // Each key 4 times in a row (an order's lines after a join); quantities 1 to 50.
        let keys = UInt64Array::from_iter_values((0..10_000u64).map(|i| i / 4));
        let quantities = UInt64Array::from_iter_values((0..10_000u64).map(|i| 1 + i * 7919 % 50));
        let batch = batch(vec![("key", Arc::new(keys)), ("quantity", Arc::new(quantities))]);
        assert!(!dictionary_enabled(&batch, "key"));
        assert!(dictionary_enabled(&batch, "quantity"));
    }
}
