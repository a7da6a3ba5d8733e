//! Inverted index (an example of the MapReduce paper): for each word, the documents that
//! contain it.
//!
//! The mapper combines in memory (words as `str::split_whitespace` splits them): per word
//! of its split, the list of documents it occurs in, each once per run of occurrences, so
//! the shuffle carries one (word, doc_ids) row per distinct word of a split instead of one
//! row per word occurrence. The reducer concatenates, sorts and de-duplicates each word's
//! doc ids, vectorized over whole chunks of groups, and emits `word` (Utf8), `doc_count`
//! (UInt64) and `doc_ids` (a sorted `List<UInt64>`).

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, ListBuilder, StringBuilder, UInt64Array, UInt64Builder};
use arrow::datatypes::{Field, Schema, SchemaRef, UInt64Type};
use gristmill::prelude::*;
use serde::{Deserialize, Serialize};

use crate::group_ranges::{ByRanges, MergeRanges};
use crate::word_table::WordTable;
use crate::wordcount::{ascii_word_ranges, for_each_word};

/// Doc ids a mapper holds before it emits its lists (bounds its memory: 8 bytes each).
const MAX_PENDING_IDS: usize = 8 << 20;

/// Builds an inverted index of documents: word -> sorted, distinct doc ids.
#[derive(clap::Args, Clone, Debug, Serialize, Deserialize)]
pub struct InvertedIndex {
    /// The UInt64 column holding each document's id.
    #[arg(long, default_value = "doc_id")]
    pub id_column: String,

    /// The Utf8 column holding each document's text.
    #[arg(long, default_value = "text")]
    pub text_column: String,
}

impl Default for InvertedIndex {
    fn default() -> Self {
        InvertedIndex { id_column: "doc_id".into(), text_column: "text".into() }
    }
}

/// The type of the `doc_ids` output column: a list of non-null UInt64.
pub fn doc_ids_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::UInt64, false)))
}

impl Job for InvertedIndex {
    const NAME: &'static str = "inverted-index";
    const ABOUT: &'static str = "Builds an inverted index of Parquet documents (doc_id UInt64, text Utf8). \
        Output columns: word (Utf8), doc_count (UInt64), doc_ids (sorted List<UInt64>).";

    fn input(&self) -> InputSpec {
        InputSpec::text_lines().with_parquet_columns([
            (self.id_column.as_str(), DataType::UInt64),
            (self.text_column.as_str(), DataType::Utf8),
        ])
    }

    fn map_output(&self) -> KeyedSchema {
        KeyedSchema::new([("word", DataType::Utf8), ("doc_ids", doc_ids_type())]).key(["word"])
    }

    fn output_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("word", DataType::Utf8, false),
            Field::new("doc_count", DataType::UInt64, false),
            Field::new("doc_ids", doc_ids_type(), false),
        ]))
    }

    fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
        Ok(Box::new(PostWords { id_column: self.id_column.clone(), ..PostWords::default() }))
    }

    fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
        Ok(Box::new(ByRanges(BuildPostings::default())))
    }
}

/// The mapper: per distinct word of the split, the doc ids it occurs in.
#[derive(Default)]
struct PostWords {
    id_column: String,
    /// Word -> 1 + its index in `lists`.
    words: WordTable,
    lists: Vec<Vec<u64>>,
    pending_ids: usize,
}

impl PostWords {
    /// Records that `word` occurs in document `id` (`value` is the word's table entry).
    fn post(value: &mut u64, lists: &mut Vec<Vec<u64>>, pending: &mut usize, id: u64) {
        if *value == 0 {
            lists.push(Vec::new());
            *value = lists.len() as u64;
        }
        let list = &mut lists[*value as usize - 1];
        if list.last() != Some(&id) {
            list.push(id);
            *pending += 1;
        }
    }

    fn emit_lists(&mut self, out: &mut Emitter) -> JobResult<()> {
        if self.words.is_empty() {
            return Ok(());
        }
        let mut words = StringBuilder::with_capacity(self.words.len(), self.words.len() * 8);
        let mut lists =
            ListBuilder::with_capacity(UInt64Builder::with_capacity(self.pending_ids), self.words.len())
                .with_field(Arc::new(Field::new_list_field(DataType::UInt64, false)));
        let mut invalid = false;
        self.words.drain(|word, index| match std::str::from_utf8(word) {
            Ok(word) => {
                words.append_value(word);
                lists.values().append_slice(&self.lists[index as usize - 1]);
                lists.append(true);
            }
            Err(_) => invalid = true,
        });
        self.lists.clear();
        self.pending_ids = 0;
        if invalid {
            return Err("a posted word is not UTF-8 (engine bug: words come from Utf8 columns)".into());
        }
        let columns: Vec<ArrayRef> = vec![Arc::new(words.finish()), Arc::new(lists.finish())];
        out.emit(RecordBatch::try_new(out.schema().clone(), columns)?)
    }
}

impl Mapper for PostWords {
    fn map(&mut self, batch: &RecordBatch, out: &mut Emitter) -> JobResult<()> {
        let ids = batch.column(0);
        if ids.null_count() > 0 {
            let name = &self.id_column;
            return Err(format!(
                "{} documents have a null {name} (every document needs an id)",
                ids.null_count()
            )
            .into());
        }
        let ids = ids.as_primitive::<UInt64Type>().values();
        let texts = batch.column(1).as_string::<i32>();
        let (offsets, values) = (texts.value_offsets(), texts.value_data());
        let (table, lists, pending) = (&mut self.words, &mut self.lists, &mut self.pending_ids);
        for (row, &id) in ids.iter().enumerate() {
            let text = offsets[row] as usize..offsets[row + 1] as usize;
            if texts.is_null(row) {
                continue;
            }
            if values[text.clone()].is_ascii() {
                // Words are read straight from the batch's buffer.
                ascii_word_ranges(values, text, |w| {
                    Self::post(table.value_in(values, w), lists, pending, id)
                });
            } else {
                for_each_word(texts.value(row), |w| {
                    Self::post(table.value(w.as_bytes()), lists, pending, id)
                });
            }
        }
        if self.pending_ids >= MAX_PENDING_IDS {
            self.emit_lists(out)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Emitter) -> JobResult<()> {
        self.emit_lists(out)
    }
}

/// The reducer: per word, the sorted distinct doc ids and their number.
#[derive(Default)]
struct BuildPostings {
    /// One group's doc ids, reused across groups.
    scratch: Vec<u64>,
}

impl MergeRanges for BuildPostings {
    /// Emits the postings of the groups at `ranges` of `batch`.
    fn merge(&mut self, batch: &RecordBatch, ranges: &[Range<usize>], out: &mut Emitter) -> JobResult<()> {
        let words = batch.column(0).as_string::<i32>();
        let partial_lists = batch.column(1).as_list::<i32>();
        let (list_offsets, ids) =
            (partial_lists.value_offsets(), partial_lists.values().as_primitive::<UInt64Type>().values());
        let mut keys = StringBuilder::new();
        let mut counts = Vec::new();
        let mut lists = ListBuilder::with_capacity(UInt64Builder::with_capacity(ids.len()), 0)
            .with_field(Arc::new(Field::new_list_field(DataType::UInt64, false)));
        for range in ranges.iter().cloned() {
            keys.append_value(words.value(range.start));
            self.scratch.clear();
            // The rows of one group are adjacent: their lists are one slice of the values.
            let (first, last) = (list_offsets[range.start] as usize, list_offsets[range.end] as usize);
            self.scratch.extend_from_slice(&ids[first..last]);
            self.scratch.sort_unstable();
            self.scratch.dedup();
            counts.push(self.scratch.len() as u64);
            lists.values().append_slice(&self.scratch);
            lists.append(true);
        }
        let columns: Vec<ArrayRef> =
            vec![Arc::new(keys.finish()), Arc::new(UInt64Array::from(counts)), Arc::new(lists.finish())];
        out.emit(RecordBatch::try_new(out.schema().clone(), columns)?)
    }
}
