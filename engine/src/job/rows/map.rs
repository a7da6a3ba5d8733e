//! Typed rows into a mapper: each input row deserialized into the closure's row type.

use std::marker::PhantomData;

use arrow::array::{ArrayRef, RecordBatch};
use serde::Serialize;
use serde::de::{Deserialize, DeserializeOwned};
use serde_arrow::Deserializer;
use serde_arrow::utils::Item;

use super::columns::RowColumns;
use super::out::KeyValueOut;
use super::writer::RowWriter;
use super::{key_columns, value_columns};
use crate::error::JobResult;
use crate::job::{Emitter, Mapper};

pub(super) struct RowMapper<In, K, V, F> {
    pub(super) f: F,
    pub(super) input: RowColumns,
    pub(super) writer: Option<RowWriter>,
    pub(super) types: PhantomData<fn(In, K, V)>,
}

impl<In, K, V, F> Mapper for RowMapper<In, K, V, F>
where
    In: DeserializeOwned,
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
    F: FnMut(In, &mut KeyValueOut<'_, K, V>) -> JobResult<()> + Send,
{
    fn map(&mut self, batch: &RecordBatch, out: &mut Emitter) -> JobResult<()> {
        let writer = RowWriter::get_or_create(&mut self.writer, out, || {
            Ok(vec![key_columns::<K>()?, value_columns::<V>()?])
        })?;
        let columns = input_columns(&self.input, batch)?;
        let (item, array) = self.input.join(&columns)?;
        let rows = Deserializer::from_arrow(&[item], std::slice::from_ref(&array))?;
        let mut kv = KeyValueOut { writer, out, types: PhantomData };
        for row in &rows {
            let Item(row) = Item::<In>::deserialize(row)?;
            (self.f)(row, &mut kv)?;
        }
        kv.writer.flush(kv.out)
    }
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
