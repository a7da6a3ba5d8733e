//! TeraSort: sorts 100-byte records by their 10-byte keys into part files in global key
//! order (a sampled range partitioner), written as raw records that `valsort` or
//! `teravalidate` can check.
//!
//! Records pass through whole: the map output is a copy of each key and a view of the
//! record itself ([`InputSpec::fixed_records_whole`]), so until the reduce writes them the
//! records are held by the page cache (or the fetched bytes), not copied.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use gristmill::output::OutputFormat;
use gristmill::prelude::*;
use serde::{Deserialize, Serialize};

/// Bytes per record.
pub const RECORD_LEN: usize = 100;
/// Bytes of the key at the start of each record.
pub const KEY_LEN: usize = 10;

/// Sorts gensort records.
#[derive(clap::Args, Clone, Debug, Default, Serialize, Deserialize)]
pub struct TeraSort {}

impl Job for TeraSort {
    const NAME: &'static str = "terasort";
    const ABOUT: &'static str = "Sorts 100-byte records by their 10-byte keys into part files in global \
        key order, written as raw records (the sort benchmark's TeraSort).";

    fn input(&self) -> InputSpec {
        InputSpec::fixed_records_whole(RECORD_LEN, KEY_LEN)
    }

    fn map_output(&self) -> KeyedSchema {
        KeyedSchema::new([
            ("key", DataType::FixedSizeBinary(KEY_LEN as i32)),
            ("record", DataType::FixedSizeBinary(RECORD_LEN as i32)),
        ])
        .key(["key"])
    }

    fn output_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("record", DataType::FixedSizeBinary(RECORD_LEN as i32), false)]))
    }

    fn output_format(&self) -> OutputFormat {
        OutputFormat::Records
    }

    fn total_order(&self) -> bool {
        true
    }

    fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
        Ok(Box::new(IdentityMapper))
    }

    fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
        Ok(Box::new(WholeRecords))
    }
}

/// Emits the records of each group in the order they come: the `record` column alone.
struct WholeRecords;

impl WholeRecords {
    fn records(batch: &RecordBatch) -> JobResult<RecordBatch> {
        Ok(batch.project(&[1])?)
    }
}

impl Reducer for WholeRecords {
    fn reduce(&mut self, group: &KeyGroup<'_>, out: &mut Emitter) -> JobResult<()> {
        out.emit(Self::records(&group.rows())?)
    }

    fn reduce_groups(&mut self, groups: &Groups<'_>, out: &mut Emitter) -> JobResult<()> {
        out.emit(Self::records(groups.batch())?)
    }
}
