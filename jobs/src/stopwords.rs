//! `wordcount-stopwords`: word count that leaves out the words of a stop-word list, a side
//! file read once by the job's plan and broadcast to every task (Hadoop's distributed
//! cache). It shows [`Job::plan`] and [`PlanContext::broadcast`]; the tests use it to see
//! that the plan runs once per job, in local and cluster mode alike.

use std::collections::HashSet;
use std::io::Write;

use gristmill::job::PlanContext;
use gristmill::job::record::{map_lines, record_schema};
use gristmill::prelude::*;
use serde::{Deserialize, Serialize};

use crate::wordcount_records::sum;

/// The broadcast value holding the stop words.
pub const STOPWORDS: &str = "stopwords";

/// Counts the words of the input that are not in `--stopwords`.
#[derive(clap::Args, Clone, Debug, Default, Serialize, Deserialize)]
pub struct StopWordCount {
    /// The stop words, one a line: a file or URL, read once when the job is planned.
    #[arg(long, value_name = "PATH|URL")]
    pub stopwords: String,

    /// Appends a line to this file each time the plan runs (for tests).
    #[arg(long, hide = true, value_name = "FILE")]
    pub plan_log: Option<std::path::PathBuf>,
}

impl Job for StopWordCount {
    const NAME: &'static str = "wordcount-stopwords";
    const ABOUT: &'static str = "Counts words, leaving out those of a stop-word list (--stopwords) read once \
        when the job is planned and broadcast to every task.";

    fn plan(&mut self, ctx: &PlanContext) -> JobResult<()> {
        if let Some(log) = &self.plan_log {
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
            writeln!(file, "planned in process {}", std::process::id())?;
        }
        let bytes = ctx.read(&self.stopwords)?;
        let text =
            std::str::from_utf8(&bytes).map_err(|e| format!("{}: not UTF-8 text: {e}", self.stopwords))?;
        let words: Vec<&str> = text.split_whitespace().collect();
        ctx.broadcast(STOPWORDS, &words)
    }

    fn map_output(&self) -> KeyedSchema {
        record_schema::<str, u64>("word", "count")
    }

    fn mapper(&self, task: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
        let stop: HashSet<String> = task.broadcast::<Vec<String>>(STOPWORDS)?.into_iter().collect();
        Ok(map_lines::<str, u64, _>(move |line, out| {
            for word in line.split_whitespace() {
                if stop.contains(word) {
                    out.count("stopwords_skipped", 1);
                } else {
                    out.emit(word, 1);
                }
            }
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
