//! Example Gristmill jobs, each also a binary in `src/bin/`:
//!
//! * [`wordcount::WordCount`]: counts words (batch level, in-mapper combining, combiner);
//! * [`wordcount_records::WordCountRecords`]: the same at the record level, in ten lines;
//! * [`grep::Grep`]: the paper's distributed grep;
//! * [`sample`]: the generator of Zipf-distributed sample text (`textgen`).

pub mod grep;
pub mod sample;
pub mod word_table;
pub mod wordcount;
pub mod wordcount_records;
