//! Word count at the record level: the MapReduce paper's code, nearly verbatim.

use gristmill::job::record::{map_lines, record_schema, reduce_records};
use gristmill::prelude::*;
use serde::{Deserialize, Serialize};

/// Counts words with the record-level API (slower than [`crate::wordcount`], same output).
#[derive(clap::Args, Clone, Debug, Default, Serialize, Deserialize)]
pub struct WordCountRecords {}

impl Job for WordCountRecords {
    const NAME: &'static str = "wordcount-records";
    const ABOUT: &'static str = "Counts words with the record-level API: map(line) -> emit(word, 1).";

    fn map_output(&self) -> KeyedSchema {
        record_schema::<str, u64>("word", "count")
    }

    fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
        Ok(map_lines::<str, u64, _>(|line, out| {
            line.split_whitespace().for_each(|word| out.emit(word, 1));
            Ok(())
        }))
    }

    fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
        Ok(sum())
    }

    fn combiner(&self, _: &TaskInfo) -> Option<Box<dyn Reducer>> {
        Some(sum())
    }
}

/// Sums each word's counts (the reducer and combiner of record-level word counts).
pub fn sum() -> Box<dyn Reducer> {
    reduce_records::<str, u64, str, u64, _>(|group, out| {
        out.emit(group.key(), group.values().sum());
        Ok(())
    })
}
