//! The record level: the MapReduce paper's API over typed keys and values.
//!
//! ```
//! use gristmill::prelude::*;
//! use gristmill::job::record::{map_lines, reduce_records};
//!
//! // map(line) -> emit(word, 1)
//! let mapper = map_lines::<str, u64, _>(|line, out| {
//!     for word in line.split_whitespace() {
//!         out.emit(word, 1);
//!     }
//!     Ok(())
//! });
//! // reduce(word, counts) -> emit(word, sum)
//! let reducer = reduce_records::<str, u64, str, u64, _>(|group, out| {
//!     out.emit(group.key(), group.values().sum());
//!     Ok(())
//! });
//! # let _ = (mapper, reducer);
//! ```
//!
//! Keys and values are Rust types that map to one Arrow column each ([`ArrowField`]): `str`
//! (Utf8), `[u8]` (Binary), `u64`, `i64`, `u32`, `i32`, `f64`, `bool`. The engine packs
//! them into Arrow builders, so the shuffle is the same as for batch-level jobs.

use arrow::array::{
    Array, ArrayBuilder, ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, BooleanBuilder, PrimitiveArray,
    PrimitiveBuilder, RecordBatch, StringArray, StringBuilder,
};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Float64Type, Int32Type, Int64Type, SchemaRef, UInt32Type, UInt64Type,
};
use std::marker::PhantomData;

use crate::error::JobResult;
use crate::job::{Emitter, Groups, KeyGroup, KeyedSchema, Mapper, Reducer};

/// Rows a [`RecordEmitter`] buffers before it hands a batch to the engine.
const RECORD_BATCH_ROWS: usize = 8192;

/// A Rust type stored as one Arrow column.
///
/// Implemented for `str`, `[u8]`, `bool`, `u64`, `i64`, `u32`, `i32` and `f64`: the key and
/// value types of [`map_lines`] and [`reduce_records`].
///
/// ```
/// use gristmill::arrow::array::Array;
/// use gristmill::arrow::datatypes::DataType;
/// use gristmill::job::record::ArrowField;
///
/// assert_eq!(<str as ArrowField>::data_type(), DataType::Utf8);
/// let mut builder = <u64 as ArrowField>::builder(2);
/// <u64 as ArrowField>::append(&mut builder, 7);
/// let column = builder.finish();
/// assert_eq!((column.len(), <u64 as ArrowField>::value(&column, 0)), (1, 7));
/// ```
pub trait ArrowField: 'static {
    /// How a value is passed around: by copy for numbers, by reference for text and bytes.
    type Value<'a>: Copy;
    /// The Arrow array type of the column.
    type Array: Array + 'static;
    /// The builder that packs values.
    type Builder: ArrayBuilder;

    /// The column's Arrow type.
    fn data_type() -> DataType;
    /// A new, empty builder.
    fn builder(capacity: usize) -> Self::Builder;
    /// Appends one value.
    fn append(builder: &mut Self::Builder, value: Self::Value<'_>);
    /// Reads row `i` of a column of this type.
    fn value(array: &Self::Array, i: usize) -> Self::Value<'_>;
}

impl ArrowField for str {
    type Value<'a> = &'a str;
    type Array = StringArray;
    type Builder = StringBuilder;

    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn builder(capacity: usize) -> StringBuilder {
        StringBuilder::with_capacity(capacity, capacity * 8)
    }
    fn append(builder: &mut StringBuilder, value: &str) {
        builder.append_value(value);
    }
    fn value(array: &StringArray, i: usize) -> &str {
        array.value(i)
    }
}

impl ArrowField for [u8] {
    type Value<'a> = &'a [u8];
    type Array = BinaryArray;
    type Builder = BinaryBuilder;

    fn data_type() -> DataType {
        DataType::Binary
    }
    fn builder(capacity: usize) -> BinaryBuilder {
        BinaryBuilder::with_capacity(capacity, capacity * 8)
    }
    fn append(builder: &mut BinaryBuilder, value: &[u8]) {
        builder.append_value(value);
    }
    fn value(array: &BinaryArray, i: usize) -> &[u8] {
        array.value(i)
    }
}

impl ArrowField for bool {
    type Value<'a> = bool;
    type Array = BooleanArray;
    type Builder = BooleanBuilder;

    fn data_type() -> DataType {
        DataType::Boolean
    }
    fn builder(capacity: usize) -> BooleanBuilder {
        BooleanBuilder::with_capacity(capacity)
    }
    fn append(builder: &mut BooleanBuilder, value: bool) {
        builder.append_value(value);
    }
    fn value(array: &BooleanArray, i: usize) -> bool {
        array.value(i)
    }
}

macro_rules! primitive_field {
    ($native:ty, $arrow:ty) => {
        impl ArrowField for $native {
            type Value<'a> = $native;
            type Array = PrimitiveArray<$arrow>;
            type Builder = PrimitiveBuilder<$arrow>;

            fn data_type() -> DataType {
                <$arrow as ArrowPrimitiveType>::DATA_TYPE
            }
            fn builder(capacity: usize) -> Self::Builder {
                PrimitiveBuilder::with_capacity(capacity)
            }
            fn append(builder: &mut Self::Builder, value: $native) {
                builder.append_value(value);
            }
            fn value(array: &Self::Array, i: usize) -> $native {
                array.value(i)
            }
        }
    };
}

primitive_field!(u64, UInt64Type);
primitive_field!(i64, Int64Type);
primitive_field!(u32, UInt32Type);
primitive_field!(i32, Int32Type);
primitive_field!(f64, Float64Type);

/// The keyed schema of a record-level job: key column `key_name`, value column `value_name`.
///
/// ```
/// use gristmill::arrow::datatypes::DataType;
/// use gristmill::job::record::record_schema;
///
/// let schema = record_schema::<str, u64>("word", "count");
/// assert_eq!(schema.key_indices()?, [0]);
/// assert_eq!(schema.schema().field(1).data_type(), &DataType::UInt64);
/// # Ok::<(), gristmill::Error>(())
/// ```
pub fn record_schema<K: ArrowField + ?Sized, V: ArrowField + ?Sized>(
    key_name: &str,
    value_name: &str,
) -> KeyedSchema {
    KeyedSchema::new([(key_name, K::data_type()), (value_name, V::data_type())]).key([key_name])
}

/// Packs emitted (key, value) pairs into Arrow batches.
///
/// What a [`map_lines`] or [`reduce_records`] closure writes to:
///
/// ```
/// use gristmill::job::record::map_lines;
///
/// // Emits (word, length); counts the lines without a word.
/// let mapper = map_lines::<str, u64, _>(|line, out| {
///     if line.trim().is_empty() {
///         out.count("blank_lines", 1);
///     }
///     for word in line.split_whitespace() {
///         out.emit(word, word.len() as u64);
///     }
///     Ok(())
/// });
/// # let _ = mapper;
/// ```
pub struct RecordEmitter<K: ArrowField + ?Sized, V: ArrowField + ?Sized> {
    keys: K::Builder,
    values: V::Builder,
    schema: Option<SchemaRef>,
    counters: crate::job::Counters,
}

impl<K: ArrowField + ?Sized, V: ArrowField + ?Sized> RecordEmitter<K, V> {
    fn new() -> Self {
        RecordEmitter {
            keys: K::builder(RECORD_BATCH_ROWS),
            values: V::builder(RECORD_BATCH_ROWS),
            schema: None,
            counters: Default::default(),
        }
    }

    /// Emits one (key, value) pair.
    pub fn emit(&mut self, key: K::Value<'_>, value: V::Value<'_>) {
        K::append(&mut self.keys, key);
        V::append(&mut self.values, value);
    }

    /// Adds `n` to the job counter `name` (summed over the winning attempts).
    pub fn count(&mut self, name: &str, n: u64) {
        self.counters.add(name, n);
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    /// Hands buffered pairs to `out` as one batch, and the counters.
    fn flush(&mut self, out: &mut Emitter) -> JobResult<()> {
        for (name, n) in std::mem::take(&mut self.counters).iter() {
            out.count(name, n);
        }
        if self.len() == 0 {
            return Ok(());
        }
        let schema = self.schema.get_or_insert_with(|| out.schema().clone()).clone();
        let columns: Vec<ArrayRef> = vec![self.keys.finish(), self.values.finish()];
        out.emit(RecordBatch::try_new(schema, columns)?)
    }

    fn flush_if_full(&mut self, out: &mut Emitter) -> JobResult<()> {
        if self.len() >= RECORD_BATCH_ROWS { self.flush(out) } else { Ok(()) }
    }
}

/// A mapper from a closure over each input line (or the first column of Parquet input,
/// which must be Utf8).
///
/// ```
/// use std::sync::Arc;
///
/// use gristmill::arrow::array::{AsArray, StringArray};
/// use gristmill::job::record::{map_lines, record_schema};
/// use gristmill::prelude::*;
///
/// // Distributed grep's map: (line, 1) for each line holding "error".
/// let mut mapper = map_lines::<str, u64, _>(|line, out| {
///     if line.contains("error") {
///         out.emit(line, 1);
///     }
///     Ok(())
/// });
/// let lines = RecordBatch::try_new(InputSpec::text_schema(), vec![Arc::new(StringArray::from(vec!["ok", "an error"]))])?;
/// let mut out = Emitter::new(record_schema::<str, u64>("line", "n").schema().clone());
/// mapper.map(&lines, &mut out)?;
/// assert_eq!(out.take_batches()[0].column(0).as_string::<i32>().value(0), "an error");
/// # Ok::<(), gristmill::BoxError>(())
/// ```
pub fn map_lines<K, V, F>(f: F) -> Box<dyn Mapper>
where
    K: ArrowField + ?Sized,
    V: ArrowField + ?Sized,
    F: FnMut(&str, &mut RecordEmitter<K, V>) -> JobResult<()> + Send + 'static,
    RecordEmitter<K, V>: Send,
{
    Box::new(LineMapper { f, out: RecordEmitter::<K, V>::new() })
}

struct LineMapper<F, K: ArrowField + ?Sized, V: ArrowField + ?Sized> {
    f: F,
    out: RecordEmitter<K, V>,
}

impl<K, V, F> Mapper for LineMapper<F, K, V>
where
    K: ArrowField + ?Sized,
    V: ArrowField + ?Sized,
    F: FnMut(&str, &mut RecordEmitter<K, V>) -> JobResult<()> + Send,
    RecordEmitter<K, V>: Send,
{
    fn map(&mut self, batch: &RecordBatch, out: &mut Emitter) -> JobResult<()> {
        let lines = first_column_as::<StringArray>(batch)?;
        for line in lines.iter().flatten() {
            (self.f)(line, &mut self.out)?;
            self.out.flush_if_full(out)?;
        }
        self.out.flush(out)
    }
}

fn first_column_as<A: Array + 'static>(batch: &RecordBatch) -> JobResult<&A> {
    let column = batch.columns().first().ok_or("the input batch has no column")?;
    column.as_any().downcast_ref::<A>().ok_or_else(|| {
        format!("the input column has type {}, not {}", column.data_type(), std::any::type_name::<A>()).into()
    })
}

/// One key and its values, as a record-level reducer sees them.
///
/// ```
/// use gristmill::job::record::reduce_records;
///
/// // (word, counts) -> (word, mean count), skipping keys seen once.
/// let reducer = reduce_records::<str, u64, str, f64, _>(|group, out| {
///     if group.len() > 1 && !group.is_empty() {
///         let sum: u64 = group.values().sum();
///         out.emit(group.key(), sum as f64 / group.len() as f64);
///     }
///     Ok(())
/// });
/// # let _ = reducer;
/// ```
pub struct RecordGroup<'a, K: ArrowField + ?Sized, V: ArrowField + ?Sized> {
    keys: &'a K::Array,
    values: &'a V::Array,
    rows: std::ops::Range<usize>,
}

impl<'a, K: ArrowField + ?Sized, V: ArrowField + ?Sized> RecordGroup<'a, K, V> {
    /// The key.
    pub fn key(&self) -> K::Value<'a> {
        K::value(self.keys, self.rows.start)
    }

    /// The values of this key, in merge order.
    pub fn values(&self) -> impl Iterator<Item = V::Value<'a>> + 'a {
        let values = self.values;
        self.rows.clone().map(move |i| V::value(values, i))
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Never true: a group has at least one value.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// A reducer (or combiner) from a closure over each key and its values. The map output
/// must be the key column followed by the value column ([`record_schema`]).
///
/// ```
/// use std::sync::Arc;
///
/// use gristmill::arrow::array::{AsArray, StringArray, UInt64Array};
/// use gristmill::arrow::datatypes::UInt64Type;
/// use gristmill::job::record::{record_schema, reduce_records};
/// use gristmill::prelude::*;
///
/// let mut reducer = reduce_records::<str, u64, str, u64, _>(|group, out| {
///     out.emit(group.key(), group.values().sum());
///     Ok(())
/// });
/// let schema = record_schema::<str, u64>("word", "count");
/// let sorted = RecordBatch::try_new(
///     schema.schema().clone(),
///     vec![Arc::new(StringArray::from(vec!["a", "a", "b"])), Arc::new(UInt64Array::from(vec![1, 1, 1]))],
/// )?;
/// let mut out = Emitter::new(schema.schema().clone());
/// reducer.reduce_groups(&Groups::new(&sorted, &[0, 2], &[0]), &mut out)?;
/// assert_eq!(out.take_batches()[0].column(1).as_primitive::<UInt64Type>().values(), &[2, 1]);
/// # Ok::<(), gristmill::BoxError>(())
/// ```
pub fn reduce_records<K, V, KO, VO, F>(f: F) -> Box<dyn Reducer>
where
    K: ArrowField + ?Sized,
    V: ArrowField + ?Sized,
    KO: ArrowField + ?Sized,
    VO: ArrowField + ?Sized,
    F: FnMut(&RecordGroup<'_, K, V>, &mut RecordEmitter<KO, VO>) -> JobResult<()> + Send + 'static,
    RecordEmitter<KO, VO>: Send,
{
    Box::new(RecordReducer { f, out: RecordEmitter::<KO, VO>::new(), _in: PhantomData::<fn(&K, &V)> })
}

struct RecordReducer<F, K: ?Sized, V: ?Sized, KO: ArrowField + ?Sized, VO: ArrowField + ?Sized> {
    f: F,
    out: RecordEmitter<KO, VO>,
    _in: PhantomData<fn(&K, &V)>,
}

impl<K, V, KO, VO, F> Reducer for RecordReducer<F, K, V, KO, VO>
where
    K: ArrowField + ?Sized,
    V: ArrowField + ?Sized,
    KO: ArrowField + ?Sized,
    VO: ArrowField + ?Sized,
    F: FnMut(&RecordGroup<'_, K, V>, &mut RecordEmitter<KO, VO>) -> JobResult<()> + Send,
    RecordEmitter<KO, VO>: Send,
{
    fn reduce(&mut self, group: &KeyGroup<'_>, out: &mut Emitter) -> JobResult<()> {
        let (batch, rows) = group.batch_and_range();
        self.reduce_rows(batch, std::iter::once(rows), out)
    }

    fn reduce_groups(&mut self, groups: &Groups<'_>, out: &mut Emitter) -> JobResult<()> {
        self.reduce_rows(groups.batch(), (0..groups.len()).map(|i| groups.range(i)), out)
    }
}

impl<K, V, KO, VO, F> RecordReducer<F, K, V, KO, VO>
where
    K: ArrowField + ?Sized,
    V: ArrowField + ?Sized,
    KO: ArrowField + ?Sized,
    VO: ArrowField + ?Sized,
    F: FnMut(&RecordGroup<'_, K, V>, &mut RecordEmitter<KO, VO>) -> JobResult<()> + Send,
    RecordEmitter<KO, VO>: Send,
{
    fn reduce_rows(
        &mut self,
        batch: &RecordBatch,
        groups: impl Iterator<Item = std::ops::Range<usize>>,
        out: &mut Emitter,
    ) -> JobResult<()> {
        let keys = typed_column::<K>(batch, 0)?;
        let values = typed_column::<V>(batch, 1)?;
        for rows in groups {
            (self.f)(&RecordGroup::<K, V> { keys, values, rows }, &mut self.out)?;
            self.out.flush_if_full(out)?;
        }
        self.out.flush(out)
    }
}

fn typed_column<F: ArrowField + ?Sized>(batch: &RecordBatch, i: usize) -> JobResult<&F::Array> {
    let column = batch.columns().get(i).ok_or_else(|| {
        format!("a record-level reducer needs column {i}, the batch has {}", batch.num_columns())
    })?;
    column.as_any().downcast_ref::<F::Array>().ok_or_else(|| {
        format!("column {i} has type {}, the reducer reads {}", column.data_type(), F::data_type()).into()
    })
}
