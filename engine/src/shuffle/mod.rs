//! The shuffle: map side partitions, sorts and combines map output into sorted runs; reduce
//! side merges the runs of one partition into key groups.
//!
//! Keys are compared in Arrow's row format (`arrow-row`): one memcmp-able byte string per
//! key, so multi-column keys of any type sort with one comparison.

mod map_side;
mod merge;
mod run;
mod spill;

pub use map_side::{MapOutputBuilder, MapOutputSpec, MapSideStats};
pub use merge::{GroupedChunk, RunMerger};
pub use run::{Run, RunReader, RunStore};
pub use spill::{SPILL_BATCH_ROWS, SpillDir, SpillFile};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::Schema;
use arrow::row::{RowConverter, Rows, SortField};

use crate::error::{Error, Result};

/// Rows of merged output handed to a reducer at once (cut at group boundaries).
pub const MERGE_CHUNK_ROWS: usize = 32 * 1024;

/// Encodes the key columns of batches of one schema as comparable rows.
pub struct KeyEncoder {
    converter: RowConverter,
    key_columns: Vec<usize>,
}

impl KeyEncoder {
    /// An encoder for the `key_columns` of `schema`.
    pub fn new(schema: &Schema, key_columns: &[usize]) -> Result<Self> {
        let fields =
            key_columns.iter().map(|&i| SortField::new(schema.field(i).data_type().clone())).collect();
        let converter = RowConverter::new(fields).map_err(Error::arrow("creating the key encoder"))?;
        Ok(KeyEncoder { converter, key_columns: key_columns.to_vec() })
    }

    /// The key rows of `batch`.
    pub fn encode(&self, batch: &RecordBatch) -> Result<Rows> {
        let keys: Vec<ArrayRef> = self.key_columns.iter().map(|&i| batch.column(i).clone()).collect();
        self.converter.convert_columns(&keys).map_err(Error::arrow("encoding keys"))
    }

    /// The key columns' indices.
    pub fn key_columns(&self) -> &[usize] {
        &self.key_columns
    }
}
