//! Word count, batch level: the mapper counts words of its whole split in a hash table
//! (in-mapper combining) and emits each distinct word once; the combiner and reducer sum
//! counts per word, vectorized over whole chunks of groups.
//!
//! A word is a maximal run of non-whitespace characters (`str::split_whitespace`),
//! case-sensitive.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, AsArray, StringBuilder, UInt64Array};
use arrow::datatypes::UInt64Type;
use gristmill::prelude::*;
use serde::{Deserialize, Serialize};

use crate::group_ranges::{ByRanges, MergeRanges};
use crate::word_table::{SHORT, WordTable};

/// Distinct words a mapper holds before it emits them (bounds its memory).
const MAX_DISTINCT_WORDS: usize = 1 << 20;

/// Counts words in text, or in a Utf8 column of Parquet input.
#[derive(clap::Args, Clone, Debug, Default, Serialize, Deserialize)]
pub struct WordCount {
    /// For Parquet, CSV or JSON lines input: the column holding the text.
    #[arg(long, default_value = "text")]
    pub column: String,
}

impl Job for WordCount {
    const NAME: &'static str = "wordcount";
    const ABOUT: &'static str = "Counts the words (maximal runs of non-whitespace) of text input. \
        Output columns: word (Utf8), count (UInt64).";

    fn input(&self) -> InputSpec {
        // Words never span lines, and a line's end is whitespace: chunks of lines need no
        // splitting into lines first.
        InputSpec::text_chunks().with_parquet_columns([(self.column.as_str(), DataType::Utf8)])
    }

    fn map_output(&self) -> KeyedSchema {
        KeyedSchema::new([("word", DataType::Utf8), ("count", DataType::UInt64)]).key(["word"])
    }

    fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
        Ok(Box::new(CountWords::default()))
    }

    fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
        Ok(Box::new(ByRanges(SumCounts)))
    }

    fn combiner(&self, _: &TaskInfo) -> Option<Box<dyn Reducer>> {
        Some(Box::new(ByRanges(SumCounts)))
    }
}

/// Calls `f` with each word of `text`, as `str::split_whitespace` splits it (with a fast
/// path for ASCII text).
pub fn for_each_word<'a>(text: &'a str, mut f: impl FnMut(&'a str)) {
    if !text.is_ascii() {
        text.split_whitespace().for_each(f);
        return;
    }
    // Splitting ASCII at ASCII whitespace keeps every piece on char boundaries.
    ascii_word_ranges(text.as_bytes(), 0..text.len(), |word| f(&text[word]));
}

/// Calls `f` with the range (within `bytes`) of each word of the ASCII text `bytes[text]`.
pub fn ascii_word_ranges(bytes: &[u8], text: Range<usize>, f: impl FnMut(Range<usize>)) {
    ascii_words_of_lines(bytes, &[text.start, text.end], f);
}

/// Calls `f` with the range (within `bytes`) of each word of the ASCII lines
/// `bytes[bounds[i]..bounds[i + 1]]` (ascending bounds; a word never spans two lines).
///
/// Word boundaries come from bit masks per 64 bytes of the whole buffer, whitespace and
/// line starts: no branch per byte, and no per-line setup.
#[inline(always)]
pub fn ascii_words_of_lines(bytes: &[u8], bounds: &[usize], mut f: impl FnMut(Range<usize>)) {
    let (Some(&first), Some(&last)) = (bounds.first(), bounds.last()) else { return };
    let mut line_starts = bounds[1..].iter().copied().peekable();
    let mut edges = Edges::default();
    for (block, chunk) in bytes[first..last].chunks(64).enumerate() {
        let base = first + block * 64;
        let mut new_line = 0u64;
        while let Some(start) = line_starts.next_if(|&start| start < base + 64) {
            new_line |= 1 << (start - base);
        }
        edges.next_block(chunk, new_line, base, &mut f);
        while let Some(word) = edges.next_word() {
            f(base + word.start..base + word.end);
        }
    }
    if let Some(start) = edges.open {
        f(start..last);
    }
}

/// Counts the words of the ASCII text `text` (line ends are whitespace too) into `counts`:
/// [`ascii_words_of_lines`] fused with the table's lookup. A short word inside a block is
/// one 8-byte load from a fixed-size window, without bounds checks; its slot is prefetched
/// and looked up after the next block's words are found, so lookups overlap their misses.
pub fn count_ascii_words(counts: &mut WordTable, text: &[u8]) {
    let mut edges = Edges::default();
    let (mut ready, mut next) = (Vec::with_capacity(64), Vec::with_capacity(64));
    for (block, chunk) in text.chunks(64).enumerate() {
        let base = block * 64;
        edges.next_block(chunk, 0, base, |word| counts.add_in(text, word));
        let Some(window) = text.get(base..).and_then(|rest| rest.first_chunk::<72>()) else {
            // The last block: too close to the end for the window.
            while let Some(word) = edges.next_word() {
                counts.add_in(text, base + word.start..base + word.end);
            }
            continue;
        };
        while let Some(word) = edges.next_word() {
            let (start, len) = (word.start & 63, word.end - word.start);
            match window[start..].first_chunk::<8>() {
                Some(&eight) if len <= SHORT => next.push(counts.prefetch_short(eight, len)),
                _ => counts.add_in(text, base + word.start..base + word.end),
            }
        }
        ready.drain(..).for_each(|key| counts.add_short(key));
        std::mem::swap(&mut ready, &mut next);
    }
    ready.drain(..).for_each(|key| counts.add_short(key));
    if let Some(start) = edges.open {
        counts.add_in(text, start..text.len());
    }
}

/// The word starts and ends of one 64-byte block at a time. Starts and ends alternate, so
/// the `k`-th start of a block pairs with its `k`-th end (after the end of a word carried
/// in from the block before): one predictable branch per word.
#[derive(Default)]
struct Edges {
    starts: u64,
    ends: u64,
    /// Where the block starts.
    base: usize,
    /// Where the word still open at the end of the last block started.
    open: Option<usize>,
}

impl Edges {
    /// Takes the next block, `chunk` at `base` (`new_line`: bits where a line starts), and
    /// hands `f` the word carried into it if it ends in it.
    #[inline(always)]
    fn next_block(&mut self, chunk: &[u8], new_line: u64, base: usize, mut f: impl FnMut(Range<usize>)) {
        // Past the end of the text counts as whitespace: it ends the last word.
        let space = space_mask(chunk) | (!0u64).checked_shl(chunk.len() as u32).unwrap_or(0);
        self.base = base;
        let space_before = (space << 1) | u64::from(self.open.is_none());
        self.ends = (space | new_line) & !space_before;
        self.starts = !space & (space_before | new_line);
        if let Some(start) = self.open
            && self.ends != 0
        {
            f(start..base + self.ends.trailing_zeros() as usize);
            self.ends &= self.ends - 1;
            self.open = None;
        }
    }

    /// The next word that starts and ends in the block, as bit positions; a word that goes
    /// on past the block is kept open for the next one.
    #[inline(always)]
    fn next_word(&mut self) -> Option<Range<usize>> {
        if self.starts == 0 || self.open.is_some() {
            return None;
        }
        let start = self.starts.trailing_zeros() as usize;
        self.starts &= self.starts - 1;
        if self.ends == 0 {
            self.open = Some(self.base + start);
            return None;
        }
        let end = self.ends.trailing_zeros() as usize;
        self.ends &= self.ends - 1;
        Some(start..end)
    }
}

/// Bit `i` set when `chunk[i]` (ASCII, at most 64 bytes) is whitespace as
/// `char::is_whitespace` defines it for ASCII: space and `\t \n \x0b \x0c \r` (9..=13).
#[inline(always)]
fn space_mask(chunk: &[u8]) -> u64 {
    match chunk.first_chunk::<64>() {
        Some(block) => space_mask_64(block),
        None => {
            let mut block = [b'x'; 64]; // padding that is not whitespace
            block[..chunk.len()].copy_from_slice(chunk);
            space_mask_64(&block)
        }
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
use sse2::space_mask_64;

/// [`space_mask`] of a whole block, 16 bytes per SSE2 compare (SSE2 is part of x86-64).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[allow(unsafe_code)]
mod sse2 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set_epi64x, _mm_set1_epi8,
        _mm_sub_epi8,
    };

    #[inline(always)]
    pub(super) fn space_mask_64(block: &[u8; 64]) -> u64 {
        // SAFETY: this module is only compiled where SSE2 is enabled for the whole build.
        unsafe { mask(block) }
    }

    #[target_feature(enable = "sse2")]
    fn mask(block: &[u8; 64]) -> u64 {
        let mut mask = 0u64;
        for (k, sixteen) in block.chunks_exact(16).enumerate() {
            let half = |at: usize| i64::from_le_bytes(sixteen[at..at + 8].try_into().expect("8 bytes"));
            let bytes = _mm_set_epi64x(half(8), half(0));
            let blank = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b' ' as i8));
            // 9..=13: the byte minus 9 is at most 4, unsigned.
            let minus_9 = _mm_sub_epi8(bytes, _mm_set1_epi8(9));
            let control = _mm_cmpeq_epi8(_mm_min_epu8(minus_9, _mm_set1_epi8(4)), minus_9);
            let bits = _mm_movemask_epi8(_mm_or_si128(blank, control)) as u32 as u64;
            mask |= bits << (16 * k);
        }
        mask
    }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
use space_mask_swar as space_mask_64;

/// [`space_mask`] of a whole block, 8 bytes at a time in a `u64` (SWAR), where SSE2 is not
/// available.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn space_mask_swar(block: &[u8; 64]) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut mask = 0u64;
    for (k, eight) in block.chunks_exact(8).enumerate() {
        let x = u64::from_le_bytes(eight.try_into().expect("8 bytes"));
        // ASCII bytes are below 0x80, so adding at most 0x77 never carries into the next byte.
        let control = x.wrapping_add(0x77 * ONES) & !x.wrapping_add(0x72 * ONES); // 9..=13
        let y = x ^ (0x20 * ONES);
        let blank = !((y & !HIGH).wrapping_add(!HIGH) | y); // high bit set where the byte is 0x20
        let high_bits = (control | blank) & HIGH;
        // Gathers the high bit of each byte into 8 adjacent bits.
        let bits = ((high_bits >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) & 0xff;
        mask |= bits << (8 * k);
    }
    mask
}

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
        let (offsets, values) = (lines.value_offsets(), lines.value_data());
        let text = offsets[0] as usize..offsets[lines.len()] as usize;
        if lines.null_count() == 0 && values[text.clone()].is_ascii() {
            // Words are read straight from the batch's buffer.
            if lines.len() == 1 {
                count_ascii_words(&mut self.counts, &values[text]);
            } else {
                let bounds: Vec<usize> = offsets.iter().map(|&o| o as usize).collect();
                ascii_words_of_lines(values, &bounds, |word| self.counts.add_in(values, word));
            }
        } else {
            for line in lines.iter().flatten() {
                for_each_word(line, |word| self.counts.add(word.as_bytes()));
            }
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

/// Sums the counts of each word (the combiner and the reducer, as `ByRanges(SumCounts)`),
/// vectorized over whole runs of groups.
pub struct SumCounts;

impl MergeRanges for SumCounts {
    fn merge(&mut self, batch: &RecordBatch, ranges: &[Range<usize>], out: &mut Emitter) -> JobResult<()> {
        let words = batch.column(0).as_string::<i32>();
        let counts = batch.column(1).as_primitive::<UInt64Type>().values();
        let mut keys = StringBuilder::with_capacity(ranges.len(), ranges.len() * 8);
        let mut sums = Vec::with_capacity(ranges.len());
        for range in ranges {
            keys.append_value(words.value(range.start));
            sums.push(counts[range.clone()].iter().sum::<u64>());
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

    #[test]
    fn every_space_mask_flags_exactly_ascii_whitespace() {
        for start in (0u8..128).step_by(64) {
            let block: [u8; 64] = std::array::from_fn(|i| start + i as u8);
            let expected =
                (0..64).filter(|&i| (block[i] as char).is_whitespace()).fold(0u64, |m, i| m | 1 << i);
            assert_eq!(space_mask_64(&block), expected);
            assert_eq!(space_mask_swar(&block), expected);
            assert_eq!(space_mask(&block[..10]), expected & 0x3ff);
        }
    }

    proptest::proptest! {
        /// Any ASCII text, words across 64-byte blocks included, splits as `split_whitespace`.
        #[test]
        fn ascii_words_split_like_split_whitespace(
            bytes in proptest::collection::vec(proptest::sample::select(
                vec![b'a', b'b', b' ', b'\t', b'\n', 0x0b, 0x0c, b'\r', 0x08, 0x0e, 0x1f, 0x21, 0x7f, 0]), 0..300),
        ) {
            let text = String::from_utf8(bytes).unwrap();
            let mut ours = Vec::new();
            for_each_word(&text, |w| ours.push(w));
            proptest::prop_assert_eq!(ours, text.split_whitespace().collect::<Vec<_>>());
        }

        /// Counting fused with splitting counts what `split_whitespace` splits, words of every
        /// length and across blocks and the window's end included.
        #[test]
        fn fused_counts_equal_split_whitespace_counts(
            bytes in proptest::collection::vec(proptest::sample::select(
                vec![b'a', b'b', b'c', b' ', b'\n', b'\r', 0]), 0..400),
            long_runs in proptest::collection::vec(1usize..40, 0..4),
        ) {
            let mut bytes = bytes;
            for (i, run) in long_runs.into_iter().enumerate() {
                let at = (i * 97) % (bytes.len() + 1);
                bytes.splice(at..at, std::iter::repeat_n(b'x', run));
            }
            let text = String::from_utf8(bytes).unwrap();
            let mut table = WordTable::default();
            count_ascii_words(&mut table, text.as_bytes());
            let mut ours = std::collections::BTreeMap::new();
            table.drain(|word, n| { ours.insert(word.to_vec(), n); });
            let mut expected = std::collections::BTreeMap::new();
            for word in text.split_whitespace() {
                *expected.entry(word.as_bytes().to_vec()).or_insert(0u64) += 1;
            }
            proptest::prop_assert_eq!(ours, expected);
        }

        /// Words of lines cut at any bounds: as `split_whitespace` splits each line.
        #[test]
        fn words_of_lines_never_span_lines(
            bytes in proptest::collection::vec(proptest::sample::select(vec![b'a', b'b', b' ', b'\n']), 0..300),
            cuts in proptest::collection::vec(0usize..300, 0..20),
        ) {
            let mut bounds: Vec<usize> = cuts.into_iter().filter(|&c| c <= bytes.len()).collect();
            bounds.extend([0, bytes.len()]);
            bounds.sort_unstable();
            let mut ours = Vec::new();
            ascii_words_of_lines(&bytes, &bounds, |w| ours.push(&bytes[w]));
            let text = std::str::from_utf8(&bytes).unwrap();
            let expected: Vec<&[u8]> = bounds.windows(2)
                .flat_map(|b| text[b[0]..b[1]].split_whitespace().map(str::as_bytes)).collect();
            proptest::prop_assert_eq!(ours, expected);
        }
    }
}
