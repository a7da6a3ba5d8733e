//! Typed rows into a mapper: each input row deserialized into the closure's row type.

use std::marker::PhantomData;

use arrow::array::{ArrayRef, RecordBatch};
use serde::Serialize;
use serde::de::{Deserialize, DeserializeOwned};
use serde_arrow::Deserializer;
use serde_arrow::utils::Item;

use super::columns::RowColumns;
use super::flat::FlatRows;
use super::fold::PairTable;
use super::out::KeyValueOut;
use super::writer::RowWriter;
use super::{key_columns, value_columns};
use crate::error::{BoxError, JobResult};
use crate::job::{Emitter, Mapper, Reducer};

pub(super) struct RowMapper<In, K, V, F> {
    pub(super) f: F,
    pub(super) input: RowColumns,
    pub(super) writer: Option<RowWriter>,
    /// The row type does not read from flat columns: serde_arrow reads it.
    pub(super) serde_only: bool,
    /// Emitted pairs folded by key, when the job's combiner is a fold.
    pub(super) table: Option<Box<dyn PairTable<K, V>>>,
    pub(super) types: PhantomData<fn(In, K, V)>,
}

impl<In, K, V, F> Mapper for RowMapper<In, K, V, F>
where
    In: DeserializeOwned,
    K: Serialize + DeserializeOwned + 'static,
    V: Serialize + DeserializeOwned + 'static,
    F: FnMut(In, &mut KeyValueOut<'_, K, V>) -> JobResult<()> + Send,
{
    fn map(&mut self, batch: &RecordBatch, out: &mut Emitter) -> JobResult<()> {
        let writer = RowWriter::get_or_create(&mut self.writer, out, || {
            Ok(vec![key_columns::<K>()?, value_columns::<V>()?])
        })?;
        let columns = input_columns(&self.input, batch)?;
        let table = self.table.as_deref_mut().map(|t| t as &mut dyn PairTable<K, V>);
        let mut kv = KeyValueOut { writer, table, out, types: PhantomData };
        let cast = self.input.cast(&columns)?;
        let flat = FlatRows::new(&cast, self.input.serde_names().is_some()).filter(|_| !self.serde_only);
        match flat.map(|rows| flat_rows(&rows, &mut self.f, &mut kv)) {
            Some(Ok(())) => {}
            Some(Err(RowsError::Job(e))) => return Err(e),
            // A row type whose `Deserialize` does not read a sequence (a custom impl, a
            // flattened struct) fails on the first row, before any closure ran: such a type
            // takes serde_arrow from then on.
            Some(Err(RowsError::FirstRow)) | None => {
                self.serde_only = true;
                let (item, array) = self.input.join(&columns)?;
                let rows = Deserializer::from_arrow(&[item], std::slice::from_ref(&array))?;
                for row in &rows {
                    let Item(row) = Item::<In>::deserialize(row)?;
                    (self.f)(row, &mut kv)?;
                }
            }
        }
        kv.writer.flush(kv.out)
    }

    fn finish(&mut self, out: &mut Emitter) -> JobResult<()> {
        if let (Some(table), Some(writer)) = (&mut self.table, &mut self.writer) {
            table.empty_into(writer, out)?;
            table.count_into(out);
            writer.flush(out)?;
        }
        Ok(())
    }

    fn combine_in_memory(&mut self, combiner: Box<dyn Reducer>, memory_bytes: usize) {
        let table = combiner.into_pair_table(memory_bytes);
        self.table =
            table.and_then(|any| any.downcast::<Box<dyn PairTable<K, V>>>().ok()).map(|table| *table);
    }
}

/// Why [`flat_rows`] stopped.
enum RowsError {
    /// The first row did not deserialize from flat columns: nothing ran yet.
    FirstRow,
    /// The closure, or a later row, failed.
    Job(BoxError),
}

/// Calls `f` with each row of `rows`.
fn flat_rows<In: DeserializeOwned, O>(
    rows: &FlatRows<'_>,
    f: &mut impl FnMut(In, &mut O) -> JobResult<()>,
    out: &mut O,
) -> Result<(), RowsError> {
    for i in 0..rows.len() {
        let row = match In::deserialize(rows.row(i)) {
            Ok(row) => row,
            Err(_) if i == 0 => return Err(RowsError::FirstRow),
            Err(e) => return Err(RowsError::Job(e.into())),
        };
        f(row, out).map_err(RowsError::Job)?;
    }
    Ok(())
}

/// The batch's columns the row type reads: a struct's fields by name, otherwise the first.
fn input_columns(input: &RowColumns, batch: &RecordBatch) -> JobResult<Vec<ArrayRef>> {
    let Some(names) = input.projection() else {
        return Ok(vec![batch.columns().first().ok_or("the input batch has no column")?.clone()]);
    };
    names
        .iter()
        .map(|name| {
            let i = batch.schema().index_of(name).map_err(|_| {
                let have: Vec<String> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
                format!("the input has no column `{name}` (it has {have:?})")
            })?;
            Ok(batch.column(i).clone())
        })
        .collect()
}
