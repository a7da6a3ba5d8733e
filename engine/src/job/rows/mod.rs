//! Typed records: rows, keys and values as serde types.
//!
//! A mapper reads each input row as a `#[derive(Deserialize)]` struct whose fields select
//! and type the columns ([`rows_input`] projects the input to them); keys and values are
//! scalars, tuples or `#[derive(Serialize, Deserialize)]` structs; a reducer receives each
//! key with its values and emits rows of an output type. The engine buffers emitted rows
//! into Arrow batches, so the shuffle is the batch level's. Rows of flat columns (integers,
//! floats, booleans, text, and dates or timestamps on output) are read and written column by
//! column with typed builders; any other column (a list, a nested struct, a decimal) goes
//! through serde_arrow.
//!
//! ```
//! use gristmill::prelude::*;
//! use gristmill::job::rows::{map_rows, reduce_rows, row_output_schema, row_schema, rows_input};
//! use serde::{Deserialize, Serialize};
//!
//! /// A row of TPC-H lineitem: only these columns are read.
//! #[derive(Deserialize)]
//! struct LineItem {
//!     l_suppkey: i64,
//!     l_extendedprice: f64,
//!     l_discount: f64,
//! }
//!
//! /// An output row.
//! #[derive(Serialize, Deserialize)]
//! struct Revenue {
//!     supplier: i64,
//!     revenue: f64,
//! }
//!
//! let input: InputSpec = rows_input::<LineItem>();
//! let map_output: KeyedSchema = row_schema::<i64, f64>();
//! let output = row_output_schema::<Revenue>();
//! let mapper = map_rows::<LineItem, i64, f64, _>(|item, out| {
//!     if item.l_discount > 0.1 {
//!         out.count("big_discounts", 1);
//!     }
//!     out.emit(item.l_suppkey, item.l_extendedprice * (1.0 - item.l_discount))
//! });
//! let reducer = reduce_rows::<i64, f64, Revenue, _>(|supplier, values, out| {
//!     out.emit(Revenue { supplier, revenue: values.sum() })
//! });
//! # let _ = (input, map_output, output, mapper, reducer);
//! ```
//!
//! ## Columns and keys
//!
//! A struct takes one column per field, named after the field; a tuple one per element,
//! named `key_0`, `key_1`, ... (or `value_0`, ...); any other type one column, `key` or
//! `value` (or `value` for an output row). `String` is `Utf8`, `Vec<u8>` with
//! `serde_bytes` is `Binary`, `Option<T>` is nullable. A composite key sorts by its columns
//! in field order, each in Arrow's row format order (numbers by value, text bytewise,
//! nulls first), and is hashed to a partition by the stable
//! [`HashPartitioner`](crate::partition::HashPartitioner): XXH3 over each column's value
//! bytes in order, seeded by the previous column's hash. Input columns are cast to the
//! row type's where they differ and the cast is lossless or numeric (a decimal read as
//! `f64`, a timestamp as `i64`, a dictionary of strings as `String`); output columns take
//! the declared schema's types (an `i64` written to a `Timestamp` column).
//!
//! ## Secondary sort
//!
//! A job whose map output is `row_schema::<K, V>().group_by(n)` sorts by the whole key `K`
//! but hands the reducer groups of its first `n` columns: the reducer gets the group's first
//! key and the values in key order (Hadoop's grouping comparator). See the `sessionize`
//! example job.

mod columns;
mod flat;
mod fold;
mod map;
mod out;
mod reduce;
mod writer;

pub use columns::RowColumns;
pub use fold::fold_values;
pub use out::{KeyValueOut, RowOut};
pub use reduce::RowValues;

use std::marker::PhantomData;
use std::sync::Arc;

use arrow::datatypes::{Field, FieldRef, Schema, SchemaRef};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::JobResult;
use crate::job::{InputSpec, KeyedSchema, Mapper, ParquetColumn, Reducer};

fn key_columns<K: DeserializeOwned>() -> JobResult<RowColumns> {
    RowColumns::of::<K>("key")
}

fn value_columns<V: DeserializeOwned>() -> JobResult<RowColumns> {
    RowColumns::of::<V>("value")
}

fn output_columns<Out: DeserializeOwned>() -> JobResult<RowColumns> {
    RowColumns::of::<Out>("value")
}

/// The map output of `(K, V)` pairs: `K`'s columns (the key) then `V`'s.
///
/// # Panics
/// When `K` or `V` cannot be laid out in Arrow columns (a map, an enum with data), or a
/// value column has a key column's name: both are mistakes in the job's types, shown on
/// its first run.
///
/// ```
/// use gristmill::job::rows::row_schema;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Day { country: String, day: i32 }
///
/// // A composite key (sorted by country, then day) and a scalar value.
/// let keyed = row_schema::<Day, f64>();
/// let names: Vec<&str> = keyed.schema().fields().iter().map(|f| f.name().as_str()).collect();
/// assert_eq!(names, ["country", "day", "value"]);
/// assert_eq!(keyed.key_indices()?, [0, 1]);
/// // A secondary sort: grouped by country alone, days in order within a group.
/// assert_eq!(row_schema::<Day, f64>().group_by(1).grouping_columns()?, Some(1));
/// # Ok::<(), gristmill::Error>(())
/// ```
pub fn row_schema<K: DeserializeOwned, V: DeserializeOwned>() -> KeyedSchema {
    let (keys, values) = match (key_columns::<K>(), value_columns::<V>()) {
        (Ok(keys), Ok(values)) => (keys, values),
        (Err(e), _) | (_, Err(e)) => panic!("the map output types have no Arrow layout: {e}"),
    };
    let fields: Vec<FieldRef> = keys.fields().iter().chain(values.fields()).cloned().collect();
    let schema = Schema::new(fields);
    let key_names: Vec<&str> = keys.fields().iter().map(|f| f.name().as_str()).collect();
    if let Some(clash) = values.fields().iter().find(|f| key_names.contains(&f.name().as_str())) {
        panic!("the value column `{}` has the name of a key column; rename one of the fields", clash.name());
    }
    KeyedSchema::from_schema(Arc::new(schema)).key(key_names)
}

/// The output schema of rows of type `Out` (for [`Job::output_schema`](crate::job::Job::output_schema)).
///
/// # Panics
/// When `Out` cannot be laid out in Arrow columns.
///
/// ```
/// use gristmill::arrow::datatypes::DataType;
/// use gristmill::job::rows::row_output_schema;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Revenue { supplier: i64, revenue: f64, note: Option<String> }
///
/// let schema = row_output_schema::<Revenue>();
/// assert_eq!(schema.field(0).data_type(), &DataType::Int64);
/// assert!(schema.field_with_name("note")?.is_nullable());
/// # Ok::<(), gristmill::BoxError>(())
/// ```
pub fn row_output_schema<Out: DeserializeOwned>() -> SchemaRef {
    let columns =
        output_columns::<Out>().unwrap_or_else(|e| panic!("the output type has no Arrow layout: {e}"));
    let fields: Vec<Field> = columns.fields().iter().map(|f| f.as_ref().clone()).collect();
    Arc::new(Schema::new(fields))
}

/// Reads only the columns `In`'s fields name (Parquet, CSV and JSON lines input; text input
/// is one `line` per row, read as a `String`), each in the file's type, cast to the field's
/// when it is read.
///
/// ```
/// use gristmill::job::rows::rows_input;
///
/// #[derive(serde::Deserialize)]
/// struct LineItem { l_suppkey: i64, l_extendedprice: f64 }
///
/// let spec = rows_input::<LineItem>();
/// let columns: Vec<String> = spec.parquet_columns.unwrap().into_iter().map(|c| c.name).collect();
/// assert_eq!(columns, ["l_suppkey", "l_extendedprice"]);
/// // A text line is a `String` row: no projection.
/// assert!(rows_input::<String>().parquet_columns.is_none());
/// ```
pub fn rows_input<In: DeserializeOwned>() -> InputSpec {
    let spec = InputSpec::text_lines();
    let Ok(columns) = RowColumns::of::<In>("line") else { return spec };
    match columns.projection() {
        Some(names) => InputSpec {
            parquet_columns: Some(
                names
                    .iter()
                    .map(|name| ParquetColumn { name: (*name).to_owned(), data_type: None })
                    .collect(),
            ),
            ..spec
        },
        None => spec,
    }
}

/// A mapper from a closure over each input row, read as an `In`, emitting `(K, V)` pairs.
///
/// ```
/// use std::sync::Arc;
///
/// use gristmill::arrow::array::{Float64Array, StringArray};
/// use gristmill::job::rows::{map_rows, row_schema};
/// use gristmill::prelude::*;
///
/// #[derive(serde::Deserialize)]
/// struct Sale { country: String, amount: f64 }
///
/// let mut mapper = map_rows::<Sale, String, f64, _>(|sale, out| out.emit(sale.country, sale.amount));
/// // Columns are found by name; others are not read.
/// let sales = RecordBatch::try_from_iter([
///     ("amount", Arc::new(Float64Array::from(vec![1.5, 2.0])) as _),
///     ("country", Arc::new(StringArray::from(vec!["fr", "de"])) as _),
///     ("comment", Arc::new(StringArray::from(vec!["", ""])) as _),
/// ])?;
/// let mut out = Emitter::new(row_schema::<String, f64>().schema().clone());
/// mapper.map(&sales, &mut out)?;
/// assert_eq!(out.buffered_rows(), 2);
/// # Ok::<(), gristmill::BoxError>(())
/// ```
pub fn map_rows<In, K, V, F>(f: F) -> Box<dyn Mapper>
where
    In: DeserializeOwned + 'static,
    K: Serialize + DeserializeOwned + 'static,
    V: Serialize + DeserializeOwned + 'static,
    F: FnMut(In, &mut KeyValueOut<'_, K, V>) -> JobResult<()> + Send + 'static,
{
    match RowColumns::of::<In>("line") {
        Ok(input) => Box::new(map::RowMapper {
            f,
            input,
            writer: None,
            serde_only: false,
            table: None,
            types: PhantomData::<fn(In, K, V)>,
        }),
        Err(e) => Box::new(Failing(format!("the input row type has no Arrow layout: {e}"))),
    }
}

/// A reducer from a closure over each key and its values, emitting rows of type `Out`.
///
/// ```
/// use std::sync::Arc;
///
/// use gristmill::arrow::array::{AsArray, Float64Array, StringArray};
/// use gristmill::arrow::datatypes::Float64Type;
/// use gristmill::job::rows::{reduce_rows, row_output_schema, row_schema};
/// use gristmill::prelude::*;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Total { country: String, total: f64 }
///
/// let mut reducer = reduce_rows::<String, f64, Total, _>(|country, amounts, out| {
///     out.emit(Total { country, total: amounts.sum() })
/// });
/// let sorted = RecordBatch::try_new(
///     row_schema::<String, f64>().schema().clone(),
///     vec![Arc::new(StringArray::from(vec!["de", "fr", "fr"])), Arc::new(Float64Array::from(vec![4.0, 1.5, 2.0]))],
/// )?;
/// let mut out = Emitter::new(row_output_schema::<Total>());
/// reducer.reduce_groups(&Groups::new(&sorted, &[0, 1], &[0]), &mut out)?;
/// assert_eq!(out.take_batches()[0].column(1).as_primitive::<Float64Type>().values(), &[4.0, 3.5]);
/// # Ok::<(), gristmill::BoxError>(())
/// ```
pub fn reduce_rows<K, V, Out, F>(f: F) -> Box<dyn Reducer>
where
    K: DeserializeOwned + 'static,
    V: DeserializeOwned + 'static,
    Out: Serialize + DeserializeOwned + 'static,
    F: FnMut(K, RowValues<'_, V>, &mut RowOut<'_, Out>) -> JobResult<()> + Send + 'static,
{
    Box::new(reduce::Grouped(reduce::RowReducer {
        f,
        layout: None,
        writer: None,
        types: PhantomData::<fn(K, V, Out)>,
    }))
}

/// A combiner from a closure over each key and its values of one map task, emitting
/// `(K, V)` pairs of the map output.
///
/// ```
/// use gristmill::job::rows::combine_rows;
///
/// // In `Job::combiner`: partial sums per key before the shuffle.
/// let combiner = combine_rows::<String, f64, _>(|country, amounts, out| out.emit(country, amounts.sum()));
/// # let _ = combiner;
/// ```
pub fn combine_rows<K, V, F>(f: F) -> Box<dyn Reducer>
where
    K: Serialize + DeserializeOwned + 'static,
    V: Serialize + DeserializeOwned + 'static,
    F: FnMut(K, RowValues<'_, V>, &mut KeyValueOut<'_, K, V>) -> JobResult<()> + Send + 'static,
{
    Box::new(reduce::Grouped(reduce::RowCombiner {
        f,
        groups: reduce::PairGroups::default(),
        types: PhantomData::<fn(K, V)>,
    }))
}

/// A mapper that fails its task with a message (a row type with no Arrow layout).
struct Failing(String);

impl Mapper for Failing {
    fn map(&mut self, _: &arrow::array::RecordBatch, _: &mut crate::job::Emitter) -> JobResult<()> {
        Err(self.0.clone().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Emitter, Groups};
    use arrow::array::RecordBatch;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Key {
        country: String,
        year: i32,
    }

    fn map_all(batch: &RecordBatch) -> (Vec<RecordBatch>, crate::job::Counters) {
        #[derive(Deserialize)]
        struct Sale {
            country: String,
            year: i32,
            amount: f64,
        }
        let mut mapper = map_rows::<Sale, Key, f64, _>(|sale, out| {
            if sale.amount < 0.0 {
                out.count("refunds", 1);
            }
            out.emit(Key { country: sale.country, year: sale.year }, sale.amount)
        });
        let mut out = Emitter::new(row_schema::<Key, f64>().schema().clone());
        mapper.map(batch, &mut out).unwrap();
        (out.take_batches(), out.take_counters())
    }

    fn sales() -> RecordBatch {
        use arrow::array::{Float64Array, Int32Array, StringArray};
        let columns: Vec<arrow::array::ArrayRef> = vec![
            Arc::new(Int32Array::from(vec![2024, 2024, 2025, 2024])),
            Arc::new(StringArray::from(vec!["fr", "fr", "fr", "de"])),
            Arc::new(Float64Array::from(vec![1.5, -0.5, 2.0, 4.0])),
            Arc::new(StringArray::from(vec!["x", "y", "z", "w"])),
        ];
        let names = ["year", "country", "amount", "unread"];
        RecordBatch::try_from_iter(names.into_iter().zip(columns)).unwrap()
    }

    #[test]
    fn composite_keys_are_columns_in_field_order_and_rows_read_by_field_name() {
        let schema = row_schema::<Key, f64>();
        let names: Vec<&str> = schema.schema().fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["country", "year", "value"]);
        assert_eq!(schema.key_indices().unwrap(), [0, 1]);
        let spec = rows_input::<Key>();
        let read: Vec<String> = spec.parquet_columns.unwrap().into_iter().map(|c| c.name).collect();
        assert_eq!(read, ["country", "year"]);

        let (batches, counters) = map_all(&sales());
        assert_eq!(counters.get("refunds"), 1);
        let batch = &batches[0];
        assert_eq!(batch.num_rows(), 4);
        let countries: Vec<_> =
            batch.column(0).as_any().downcast_ref::<arrow::array::StringArray>().unwrap().iter().collect();
        assert_eq!(countries, [Some("fr"), Some("fr"), Some("fr"), Some("de")]);
    }

    #[test]
    fn a_reducer_gets_each_group_s_key_and_values_and_emits_typed_rows() {
        #[derive(Serialize, Deserialize)]
        struct Total {
            country: String,
            year: i32,
            total: f64,
            sales: u64,
        }
        // Rows 0 and 1 share a key: groups start at 0, 2 and 3.
        let (batches, _) = map_all(&sales());
        let keyed = row_schema::<Key, f64>();
        let key_columns = keyed.key_indices().unwrap();
        let mut reducer = reduce_rows::<Key, f64, Total, _>(|key, values, out| {
            let sales = values.len() as u64;
            out.emit(Total { country: key.country, year: key.year, total: values.sum(), sales })
        });
        let mut out = Emitter::new(row_output_schema::<Total>());
        reducer.reduce_groups(&Groups::new(&batches[0], &[0, 2, 3], &key_columns), &mut out).unwrap();
        let rows = out.take_batches();
        let totals = rows[0].column(2).as_any().downcast_ref::<arrow::array::Float64Array>().unwrap();
        let counts = rows[0].column(3).as_any().downcast_ref::<arrow::array::UInt64Array>().unwrap();
        assert_eq!(totals.values(), &[1.0, 2.0, 4.0]);
        assert_eq!(counts.values(), &[2, 1, 1]);
    }

    #[test]
    fn a_value_that_does_not_fit_its_column_is_an_error_not_a_panic() {
        let mut mapper = map_rows::<String, String, Option<i64>, _>(|line, out| out.emit(line, None));
        // The declared map output says the value is not nullable.
        let keyed = KeyedSchema::new([
            ("key", arrow::datatypes::DataType::Utf8),
            ("value", arrow::datatypes::DataType::Int64),
        ]);
        let mut out = Emitter::new(keyed.schema().clone());
        let lines = RecordBatch::try_from_iter([(
            "line",
            Arc::new(arrow::array::StringArray::from(vec!["a"])) as arrow::array::ArrayRef,
        )])
        .unwrap();
        assert!(mapper.map(&lines, &mut out).is_err());
    }
}
