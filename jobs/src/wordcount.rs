//! Word count, batch level: the mapper counts words of its whole split in a hash table
//! (in-mapper combining) and emits each distinct word once; the combiner and reducer sum
//! counts per word, vectorized over whole chunks of groups.
//!
//! A word is a maximal run of non-whitespace characters (`str::split_whitespace`),
//! case-sensitive.

use std::sync::Arc;

use arrow::array::{Array, AsArray, StringArray, StringBuilder, UInt64Array};
use arrow::datatypes::UInt64Type;
use gristmill::prelude::*;
use serde::{Deserialize, Serialize};

use crate::word_table::WordTable;

/// Distinct words a mapper holds before it emits them (bounds its memory).
const MAX_DISTINCT_WORDS: usize = 1 << 20;

/// Counts words in text, or in a Utf8 column of Parquet input.
#[derive(clap::Args, Clone, Debug, Default, Serialize, Deserialize)]
pub struct WordCount {
    /// For Parquet input: the Utf8 column holding the text.
    #[arg(long, default_value = "text")]
    pub column: String,
}

impl Job for WordCount {
    const NAME: &'static str = "wordcount";
    const ABOUT: &'static str = "Counts the words (maximal runs of non-whitespace) of text input. \
        Output columns: word (Utf8), count (UInt64).";

    fn input(&self) -> InputSpec {
        InputSpec::text_lines().with_parquet_columns([(self.column.as_str(), DataType::Utf8)])
    }

    fn map_output(&self) -> KeyedSchema {
        KeyedSchema::new([("word", DataType::Utf8), ("count", DataType::UInt64)]).key(["word"])
    }

    fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
        Ok(Box::new(CountWords::default()))
    }

    fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
        Ok(Box::new(SumCounts))
    }

    fn combiner(&self, _: &TaskInfo) -> Option<Box<dyn Reducer>> {
        Some(Box::new(SumCounts))
    }
}

/// Calls `f` with each word of `text`, as `str::split_whitespace` splits it (with a fast
/// path for ASCII text).
pub fn for_each_word<'a>(text: &'a str, mut f: impl FnMut(&'a str)) {
    if !text.is_ascii() {
        text.split_whitespace().for_each(f);
        return;
    }
    let bytes = text.as_bytes();
    let mut start = None;
    for (i, &b) in bytes.iter().enumerate() {
        match (IS_ASCII_SPACE[b as usize], start) {
            (true, Some(s)) => {
                f(&text[s..i]);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        f(&text[s..]);
    }
}

/// ASCII whitespace as `char::is_whitespace` defines it: space and \t \n \v \f \r.
static IS_ASCII_SPACE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 9;
    while b <= 13 {
        table[b] = true;
        b += 1;
    }
    table[32] = true;
    table
};

/// The word-count mapper: counts in a hash table, emits at the end of the split.
#[derive(Default)]
pub struct CountWords {
    counts: WordTable,
}

impl CountWords {
    fn emit_counts(&mut self, out: &mut Emitter) -> JobResult<()> {
        if self.counts.is_empty() {
            return Ok(());
        }
        let mut words = StringBuilder::with_capacity(self.counts.len(), self.counts.len() * 8);
        let mut counts = Vec::with_capacity(self.counts.len());
        let mut invalid = false;
        self.counts.drain(|word, count| match std::str::from_utf8(word) {
            Ok(word) => {
                words.append_value(word);
                counts.push(count);
            }
            Err(_) => invalid = true,
        });
        if invalid {
            return Err("a counted word is not UTF-8 (engine bug: words come from Utf8 columns)".into());
        }
        let columns: Vec<Arc<dyn Array>> =
            vec![Arc::new(words.finish()), Arc::new(UInt64Array::from(counts))];
        out.emit(RecordBatch::try_new(out.schema().clone(), columns)?)
    }
}

impl Mapper for CountWords {
    fn map(&mut self, batch: &RecordBatch, out: &mut Emitter) -> JobResult<()> {
        let lines = batch.column(0).as_string_opt::<i32>().ok_or("wordcount reads a Utf8 column")?;
        for line in lines.iter().flatten() {
            for_each_word(line, |word| self.counts.add(word.as_bytes()));
        }
        if self.counts.len() >= MAX_DISTINCT_WORDS {
            self.emit_counts(out)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Emitter) -> JobResult<()> {
        self.emit_counts(out)
    }
}

/// Sums the counts of each word (the combiner and the reducer).
pub struct SumCounts;

impl Reducer for SumCounts {
    fn reduce(&mut self, group: &KeyGroup<'_>, out: &mut Emitter) -> JobResult<()> {
        let rows = group.rows();
        let total: u64 = rows.column(1).as_primitive::<UInt64Type>().values().iter().sum();
        let word = rows.column(0).as_string::<i32>().value(0);
        let columns: Vec<Arc<dyn Array>> =
            vec![Arc::new(StringArray::from(vec![word])), Arc::new(UInt64Array::from(vec![total]))];
        out.emit(RecordBatch::try_new(out.schema().clone(), columns)?)
    }

    fn reduce_groups(&mut self, groups: &Groups<'_>, out: &mut Emitter) -> JobResult<()> {
        let batch = groups.batch();
        let words = batch.column(0).as_string::<i32>();
        let counts = batch.column(1).as_primitive::<UInt64Type>().values();
        let mut keys = StringBuilder::with_capacity(groups.len(), groups.len() * 8);
        let mut sums = Vec::with_capacity(groups.len());
        for i in 0..groups.len() {
            let range = groups.range(i);
            keys.append_value(words.value(range.start));
            sums.push(counts[range].iter().sum::<u64>());
        }
        let columns: Vec<Arc<dyn Array>> = vec![Arc::new(keys.finish()), Arc::new(UInt64Array::from(sums))];
        out.emit(RecordBatch::try_new(out.schema().clone(), columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_split_whitespace() {
        for text in ["", "  a  b\tc\x0bd\x0ce\r", "héllo wörld\u{a0}x\u{3000}y", "a\u{85}b", "x"] {
            let mut ours = Vec::new();
            for_each_word(text, |w| ours.push(w));
            assert_eq!(ours, text.split_whitespace().collect::<Vec<_>>(), "{text:?}");
        }
    }
}
