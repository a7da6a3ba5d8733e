//! Distributed grep (the MapReduce paper's first example): mappers keep the lines that
//! match, the identity reducer writes them out, sorted.

use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, StringArray, StringBuilder};
use arrow::compute::filter_record_batch;
use gristmill::prelude::*;
use gristmill::run::JobReport;
use memchr::memmem;
use regex::Regex;
use serde::{Deserialize, Serialize};

/// Keeps the lines that match a pattern.
#[derive(clap::Args, Clone, Debug, Default, Serialize, Deserialize)]
pub struct Grep {
    /// The regular expression (Rust `regex` syntax) a line must match.
    #[arg(long, short = 'e')]
    pub pattern: String,

    /// Treat the pattern as a literal string, not a regular expression.
    #[arg(long, short = 'F')]
    pub fixed_strings: bool,

    /// For Parquet input: the Utf8 column holding the lines.
    #[arg(long, default_value = "text")]
    pub column: String,
}

impl Job for Grep {
    const NAME: &'static str = "grep";
    const ABOUT: &'static str = "Writes the input lines that match a pattern (output column: line), \
        and prints how many matched.";

    fn validate(&self) -> JobResult<()> {
        if !self.fixed_strings {
            Regex::new(&self.pattern).map_err(|e| format!("invalid --pattern: {e}"))?;
        }
        Ok(())
    }

    fn input(&self) -> InputSpec {
        // Chunks of lines: a literal is searched for over the whole chunk, and only the lines
        // it hits are cut out (ripgrep's way), instead of splitting every line first.
        InputSpec::text_chunks().with_parquet_columns([(self.column.as_str(), DataType::Utf8)])
    }

    fn map_output(&self) -> KeyedSchema {
        KeyedSchema::new([("line", DataType::Utf8)])
    }

    fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
        let matcher = if self.fixed_strings {
            Matcher::Literal(Box::new(memmem::Finder::new(self.pattern.as_bytes()).into_owned()))
        } else {
            Matcher::Regex(Regex::new(&self.pattern).map_err(|e| format!("invalid --pattern: {e}"))?)
        };
        Ok(Box::new(GrepMapper { matcher }))
    }

    fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
        Ok(Box::new(IdentityReducer))
    }

    fn describe_result(&self, report: &JobReport) -> Option<String> {
        Some(format!("{} matching lines", report.manifest.rows))
    }
}

enum Matcher {
    Literal(Box<memmem::Finder<'static>>),
    Regex(Regex),
}

struct GrepMapper {
    matcher: Matcher,
}

impl Mapper for GrepMapper {
    fn map(&mut self, batch: &RecordBatch, out: &mut Emitter) -> JobResult<()> {
        if InputSpec::is_text_chunks(batch) {
            return self.map_chunks(batch, out);
        }
        let lines = batch.column(0).as_string_opt::<i32>().ok_or("grep reads a Utf8 column")?;
        let mask = match &self.matcher {
            Matcher::Literal(finder) => literal_mask(lines, finder),
            Matcher::Regex(regex) => {
                BooleanArray::from_iter(lines.iter().map(|l| Some(l.is_some_and(|l| regex.is_match(l)))))
            }
        };
        out.emit(filter_record_batch(&batch.project(&[0])?, &mask)?)
    }
}

impl GrepMapper {
    /// Text input: emits the matching lines of each chunk of lines.
    fn map_chunks(&self, batch: &RecordBatch, out: &mut Emitter) -> JobResult<()> {
        let chunks = batch.column(0).as_string::<i32>();
        let mut matches = StringBuilder::new();
        for chunk in chunks.iter().flatten() {
            match &self.matcher {
                Matcher::Literal(finder) => {
                    lines_with_literal(chunk, finder, |line| matches.append_value(line))
                }
                Matcher::Regex(regex) => chunk
                    .lines()
                    .filter(|line| regex.is_match(line))
                    .for_each(|line| matches.append_value(line)),
            }
        }
        out.emit(RecordBatch::try_new(out.schema().clone(), vec![Arc::new(matches.finish())])?)
    }
}

/// Calls `f` with each line of `text` (as `str::lines` splits it) that contains the
/// literal, searching the whole text at once and cutting out only the lines hit.
fn lines_with_literal<'a>(text: &'a str, finder: &memmem::Finder<'_>, mut f: impl FnMut(&'a str)) {
    if finder.needle().is_empty() {
        text.lines().for_each(f);
        return;
    }
    let bytes = text.as_bytes();
    // Always the start of a line.
    let mut pos = 0;
    while let Some(hit) = finder.find(&bytes[pos..]) {
        let at = pos + hit;
        let start = memchr::memrchr(b'\n', &bytes[pos..at]).map_or(pos, |nl| pos + nl + 1);
        let end = memchr::memchr(b'\n', &bytes[at..]).map_or(bytes.len(), |nl| at + nl);
        let line = &text[start..end];
        let line = line.strip_suffix('\r').unwrap_or(line);
        // A hit may run past the line (a needle holding `\r` or `\n`): check the line itself.
        if finder.find(line.as_bytes()).is_some() {
            f(line);
        }
        if end >= bytes.len() {
            break;
        }
        pos = end + 1;
    }
}

/// Which lines contain the literal: one search over the whole values buffer (lines are
/// stored back to back), each hit checked against its own line.
fn literal_mask(lines: &StringArray, finder: &memmem::Finder<'_>) -> BooleanArray {
    let offsets = lines.value_offsets();
    let values = lines.value_data();
    let mut mask = vec![false; lines.len()];
    if finder.needle().is_empty() {
        mask.fill(true);
    } else {
        let base = offsets[0] as usize;
        let end = offsets[lines.len()] as usize;
        let mut pos = base;
        while let Some(hit) = finder.find(&values[pos..end]) {
            let at = pos + hit;
            let line = offsets.partition_point(|&o| o as usize <= at) - 1;
            let (start, stop) = (offsets[line] as usize, offsets[line + 1] as usize);
            mask[line] = finder.find(&values[start..stop]).is_some();
            pos = stop;
        }
    }
    for (i, m) in mask.iter_mut().enumerate() {
        *m &= lines.is_valid(i);
    }
    BooleanArray::from(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_lines_of_a_chunk_are_the_lines_that_contain_it() {
        let text = "xab\ncx\r\nabc\r\n\nzabcabc\nab\rc\nlast abc";
        for needle in ["abc", "x", "c\r", "b\nc", "", "\r", "abc\r", "last abc"] {
            let mut ours = Vec::new();
            lines_with_literal(text, &memmem::Finder::new(needle), |line| ours.push(line));
            let expected: Vec<&str> = text.lines().filter(|line| line.contains(needle)).collect();
            assert_eq!(ours, expected, "{needle:?}");
        }
    }

    #[test]
    fn literal_hits_never_span_lines() {
        let lines = StringArray::from(vec![Some("xab"), Some("cx"), None, Some("abc"), Some("")]);
        let mask = literal_mask(&lines, &memmem::Finder::new("abc"));
        assert_eq!(
            mask.iter().map(|m| m.unwrap()).collect::<Vec<_>>(),
            vec![false, false, false, true, false]
        );
        let sliced = lines.slice(1, 4);
        let mask = literal_mask(&sliced, &memmem::Finder::new("x"));
        assert_eq!(mask.iter().map(|m| m.unwrap()).collect::<Vec<_>>(), vec![true, false, false, false]);
    }
}
