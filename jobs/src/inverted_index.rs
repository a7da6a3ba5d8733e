//! Inverted index (an example of the MapReduce paper): for each word, the documents that
//! contain it.
//!
//! The mapper emits a (word, doc_id) pair for every word occurrence of every document
//! (words as `str::split_whitespace` splits them); there is no combiner, so the shuffle
//! carries every pair. The reducer sorts and de-duplicates each word's doc ids, vectorized
//! over whole chunks of groups, and emits `word` (Utf8), `doc_count` (UInt64) and `doc_ids`
//! (a sorted `List<UInt64>`).

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, ListBuilder, StringBuilder, UInt64Array, UInt64Builder};
use arrow::datatypes::{Field, Schema, SchemaRef, UInt64Type};
use gristmill::prelude::*;
use serde::{Deserialize, Serialize};

use crate::wordcount::for_each_word;

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
        KeyedSchema::new([("word", DataType::Utf8), ("doc_id", DataType::UInt64)]).key(["word"])
    }

    fn output_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("word", DataType::Utf8, false),
            Field::new("doc_count", DataType::UInt64, false),
            Field::new("doc_ids", doc_ids_type(), false),
        ]))
    }

    fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
        Ok(Box::new(PostWords { id_column: self.id_column.clone() }))
    }

    fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
        Ok(Box::new(BuildPostings::default()))
    }
}

/// The mapper: one (word, doc_id) row per word occurrence, one output batch per input batch.
struct PostWords {
    id_column: String,
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
        let mut words = StringBuilder::with_capacity(texts.len() * 8, texts.value_data().len());
        let mut doc_ids = Vec::with_capacity(texts.len() * 8);
        for (text, &id) in texts.iter().zip(ids.iter()) {
            for_each_word(text.unwrap_or_default(), |word| {
                words.append_value(word);
                doc_ids.push(id);
            });
        }
        let columns: Vec<ArrayRef> = vec![Arc::new(words.finish()), Arc::new(UInt64Array::from(doc_ids))];
        out.emit(RecordBatch::try_new(out.schema().clone(), columns)?)
    }
}

/// The reducer: per word, the sorted distinct doc ids and their number.
#[derive(Default)]
struct BuildPostings {
    /// One group's doc ids, reused across groups.
    scratch: Vec<u64>,
}

impl BuildPostings {
    /// Emits the postings of the groups at `ranges` of `batch`.
    fn postings(
        &mut self,
        batch: &RecordBatch,
        ranges: impl Iterator<Item = Range<usize>>,
        out: &mut Emitter,
    ) -> JobResult<()> {
        let words = batch.column(0).as_string::<i32>();
        let ids = batch.column(1).as_primitive::<UInt64Type>().values();
        let mut keys = StringBuilder::new();
        let mut counts = Vec::new();
        let mut lists = ListBuilder::with_capacity(UInt64Builder::with_capacity(ids.len()), 0)
            .with_field(Arc::new(Field::new_list_field(DataType::UInt64, false)));
        for range in ranges {
            keys.append_value(words.value(range.start));
            self.scratch.clear();
            self.scratch.extend_from_slice(&ids[range]);
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

impl Reducer for BuildPostings {
    fn reduce(&mut self, group: &KeyGroup<'_>, out: &mut Emitter) -> JobResult<()> {
        let (batch, range) = group.batch_and_range();
        self.postings(batch, std::iter::once(range), out)
    }

    fn reduce_groups(&mut self, groups: &Groups<'_>, out: &mut Emitter) -> JobResult<()> {
        self.postings(groups.batch(), (0..groups.len()).map(|i| groups.range(i)), out)
    }
}
