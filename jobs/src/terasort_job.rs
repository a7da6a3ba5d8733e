//! TeraSort: sorts 100-byte records by their 10-byte keys into part files in global key
//! order (a sampled range partitioner), written as raw records that `valsort` or
//! `teravalidate` can check.

use arrow::datatypes::DataType;
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
        InputSpec::fixed_records(RECORD_LEN, KEY_LEN)
    }

    fn map_output(&self) -> KeyedSchema {
        KeyedSchema::new([
            ("key", DataType::FixedSizeBinary(KEY_LEN as i32)),
            ("value", DataType::FixedSizeBinary((RECORD_LEN - KEY_LEN) as i32)),
        ])
        .key(["key"])
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
        Ok(Box::new(IdentityReducer))
    }
}
