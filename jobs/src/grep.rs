//! Distributed grep (the MapReduce paper's first example): mappers keep the lines that
//! match, the identity reducer writes them out, sorted.

use arrow::array::{Array, AsArray, BooleanArray, StringArray};
use arrow::compute::filter_record_batch;
use gristmill::driver::JobReport;
use gristmill::prelude::*;
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
        InputSpec::text_lines().with_parquet_columns([(self.column.as_str(), DataType::Utf8)])
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
