//! What record closures write to: typed rows, and counters.

use std::marker::PhantomData;

use serde::Serialize;

use super::fold::PairTable;
use super::writer::RowWriter;
use crate::error::JobResult;
use crate::job::Emitter;

/// Where a [`map_rows`](super::map_rows) closure (or a combiner) emits `(key, value)` pairs.
///
/// ```
/// use gristmill::job::rows::map_rows;
///
/// // (country, amount) per sale; a key the closure keeps is emitted by reference.
/// let mapper = map_rows::<(String, f64), String, f64, _>(|(country, amount), out| {
///     if amount < 0.0 {
///         out.count("refunds", 1);
///         return Ok(());
///     }
///     out.emit_ref(&country, &amount)?;
///     out.emit("all".to_owned(), amount)
/// });
/// # let _ = mapper;
/// ```
pub struct KeyValueOut<'a, K, V> {
    pub(super) writer: &'a mut RowWriter,
    /// Where `emit` puts a pair: `None` for the columns of `writer`.
    pub(super) table: Option<&'a mut dyn PairTable<K, V>>,
    pub(super) out: &'a mut Emitter,
    pub(super) types: PhantomData<fn(K, V)>,
}

impl<'a, K, V> KeyValueOut<'a, K, V> {
    /// Pairs written straight into the columns of `writer`.
    pub(super) fn columns(writer: &'a mut RowWriter, out: &'a mut Emitter) -> Self {
        KeyValueOut { writer, table: None, out, types: PhantomData }
    }
}

impl<K: Serialize, V: Serialize> KeyValueOut<'_, K, V> {
    /// Emits one pair. Fails when a value does not fit its column (a `None` in a
    /// non-nullable column, or a type the map output does not declare).
    pub fn emit(&mut self, key: K, value: V) -> JobResult<()> {
        match &mut self.table {
            Some(table) => table.add(key, value, self.writer, self.out),
            None => self.emit_ref(&key, &value),
        }
    }

    /// Emits one pair by reference (no copy of a key the closure keeps). It goes straight
    /// to the map output's columns: a map task's table of folded pairs takes owned pairs.
    pub fn emit_ref(&mut self, key: &K, value: &V) -> JobResult<()> {
        self.writer.push(0, key)?;
        self.writer.push(1, value)?;
        self.writer.end_row(self.out)
    }

    /// Adds `n` to the job counter `name` (summed over the winning attempts).
    pub fn count(&mut self, name: &str, n: u64) {
        self.out.count(name, n);
    }
}

/// Where a [`reduce_rows`](super::reduce_rows) closure emits output rows.
///
/// ```
/// use gristmill::job::rows::reduce_rows;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Total { country: String, amount: f64 }
///
/// let reducer = reduce_rows::<String, f64, Total, _>(|country, amounts, out| {
///     let total = Total { country, amount: amounts.sum() };
///     if total.amount == 0.0 {
///         out.count("zero_totals", 1);
///     }
///     out.emit_ref(&total)
/// });
/// # let _ = reducer;
/// ```
pub struct RowOut<'a, T> {
    pub(super) writer: &'a mut RowWriter,
    pub(super) out: &'a mut Emitter,
    pub(super) types: PhantomData<fn(T)>,
}

impl<T: Serialize> RowOut<'_, T> {
    /// Emits one output row.
    pub fn emit(&mut self, row: T) -> JobResult<()> {
        self.emit_ref(&row)
    }

    /// Emits one output row by reference.
    pub fn emit_ref(&mut self, row: &T) -> JobResult<()> {
        self.writer.push(0, row)?;
        self.writer.end_row(self.out)
    }

    /// Adds `n` to the job counter `name` (summed over the winning attempts).
    pub fn count(&mut self, name: &str, n: u64) {
        self.out.count(name, n);
    }
}
