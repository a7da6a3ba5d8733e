//! Packs serialized rows into Arrow batches of the emitter's schema.

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::FieldRef;
use serde::Serialize;
use serde_arrow::ArrayBuilder;
use serde_arrow::utils::Item;

use super::columns::RowColumns;
use super::flat::FlatColumns;
use crate::error::JobResult;
use crate::job::Emitter;

/// Rows buffered before they are handed to the engine as one batch.
const ROWS_PER_BATCH: usize = 8192;

/// One serde type's share of a batch: its columns and what fills them.
struct Part {
    columns: RowColumns,
    builder: PartBuilder,
}

/// Typed builders where the columns are flat, serde_arrow's builder otherwise.
enum PartBuilder {
    Flat(FlatColumns),
    Serde(ArrayBuilder),
}

/// Buffers rows made of one or more serde values side by side (a key then a value, or a
/// whole output row) and emits them as batches of the emitter's schema, whose columns
/// decide the Arrow types written (a declared `Timestamp` column takes an `i64`).
pub struct RowWriter {
    parts: Vec<Part>,
    rows: usize,
}

impl RowWriter {
    /// A writer of `parts` laid out in order over the columns of `out`'s schema.
    pub fn new(parts: Vec<RowColumns>, out: &Emitter) -> JobResult<Self> {
        let fields: Vec<FieldRef> = out.schema().fields().iter().cloned().collect();
        let wanted: usize = parts.iter().map(RowColumns::len).sum();
        if wanted != fields.len() {
            return Err(format!(
                "the rows take {wanted} columns but the schema they are written to has {}: {:?}",
                fields.len(),
                fields.iter().map(|f| f.name()).collect::<Vec<_>>()
            )
            .into());
        }
        let mut start = 0;
        let mut built = Vec::with_capacity(parts.len());
        for columns in parts {
            let part_fields = &fields[start..start + columns.len()];
            start += columns.len();
            let builder = match FlatColumns::new(part_fields, columns.serde_names()) {
                Some(flat) => PartBuilder::Flat(flat),
                None => PartBuilder::Serde(ArrayBuilder::from_arrow(&[columns.item_field(part_fields)])?),
            };
            built.push(Part { columns, builder });
        }
        Ok(RowWriter { parts: built, rows: 0 })
    }

    /// The writer in `slot`, made on first use (when the emitter's schema is known).
    pub fn get_or_create<'a>(
        slot: &'a mut Option<RowWriter>,
        out: &Emitter,
        parts: impl FnOnce() -> JobResult<Vec<RowColumns>>,
    ) -> JobResult<&'a mut RowWriter> {
        if slot.is_none() {
            *slot = Some(RowWriter::new(parts()?, out)?);
        }
        slot.as_mut().ok_or_else(|| "no row writer".into())
    }

    /// Appends `value` as part `part` of the current row.
    pub fn push<T: Serialize + ?Sized>(&mut self, part: usize, value: &T) -> JobResult<()> {
        match &mut self.parts[part].builder {
            PartBuilder::Flat(flat) => flat.push(value)?,
            PartBuilder::Serde(builder) => builder.push(Item(value))?,
        }
        Ok(())
    }

    /// Marks the current row complete; emits a batch once enough rows are buffered.
    pub fn end_row(&mut self, out: &mut Emitter) -> JobResult<()> {
        self.rows += 1;
        if self.rows >= ROWS_PER_BATCH { self.flush(out) } else { Ok(()) }
    }

    /// Emits the buffered rows as one batch.
    pub fn flush(&mut self, out: &mut Emitter) -> JobResult<()> {
        if self.rows == 0 {
            return Ok(());
        }
        self.rows = 0;
        let mut columns: Vec<ArrayRef> = Vec::new();
        for part in &mut self.parts {
            match &mut part.builder {
                PartBuilder::Flat(flat) => columns.extend(flat.finish()?),
                PartBuilder::Serde(builder) => {
                    let item = builder.to_arrow()?.into_iter().next().ok_or("serde_arrow built no array")?;
                    columns.extend(part.columns.split(item)?);
                }
            }
        }
        out.emit(RecordBatch::try_new(out.schema().clone(), columns)?)
    }
}
