//! `Job::plan` and broadcast values, with `wordcount-stopwords`: its plan reads a stop-word
//! list once and broadcasts it; every map task leaves those words out. The plan runs once
//! per job (in the submitting process in cluster mode, never in tasks), and a plan error
//! fails the job before any task runs, naming the file.

use std::collections::BTreeMap;
use std::path::Path;

use crate::cluster_support::{Cluster, ClusterSpec};
use crate::support::*;

const STOP: [&str; 3] = ["the", "a", "of"];

/// Text files, the stop-word list, and word count's oracle without the stop words.
fn inputs(dir: &Path) -> (String, String, BTreeMap<String, u64>) {
    let files = write_text_files(&dir.join("text"), 4, 3000);
    let texts: Vec<String> = files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
    let mut expected = oracle_wordcount(&texts);
    let stopwords = dir.join("stop.txt");
    // Stop words that occur, and one that does not.
    let mut list: Vec<String> = expected.keys().take(2).cloned().collect();
    list.extend(STOP.map(String::from));
    std::fs::write(&stopwords, list.join("\n")).unwrap();
    let skipped: u64 = list.iter().filter_map(|w| expected.remove(w)).sum();
    assert!(skipped > 0, "some words are stop words");
    (s(&dir.join("text")).to_owned(), s(&stopwords).to_owned(), expected)
}

fn plan_runs(log: &Path) -> usize {
    std::fs::read_to_string(log).map_or(0, |text| text.lines().count())
}

#[test]
fn a_plan_runs_once_per_job_and_its_broadcast_value_reaches_every_task_locally_and_on_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let (text, stopwords, expected) = inputs(dir.path());

    let (local, log) = (dir.path().join("local"), dir.path().join("local-plans.log"));
    let args = ["--input", &text, "--stopwords", &stopwords, "--split-size", "16KiB", "--threads", "3"];
    let summary =
        run_ok("wordcount-stopwords", &[&args[..], &["--output", s(&local), "--plan-log", s(&log)]].concat());
    assert_eq!(read_word_counts(&local), expected, "local");
    assert_eq!(plan_runs(&log), 1, "the plan ran once: {summary}");

    let cluster = Cluster::start(ClusterSpec::default());
    let (remote, log) = (dir.path().join("cluster"), dir.path().join("cluster-plans.log"));
    cluster.run_ok(
        "wordcount-stopwords",
        &[&args[..], &["--output", s(&remote), "--plan-log", s(&log)]].concat(),
    );
    assert_eq!(read_word_counts(&remote), expected, "cluster: every map task had the stop words");
    assert_eq!(plan_runs(&log), 1, "the plan ran once, in the submitting process, never in a task");
}

#[test]
fn a_plan_error_fails_the_job_naming_the_file_before_any_task_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (text, _, _) = inputs(dir.path());
    let missing = dir.path().join("no-such-stopwords.txt");
    let (out, log) = (dir.path().join("out"), dir.path().join("plans.log"));
    let args = ["--input", &text, "--stopwords", s(&missing), "--output", s(&out), "--plan-log", s(&log)];

    let failed = run("wordcount-stopwords", &args);
    let err = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{err}");
    assert!(err.contains("invalid job") && err.contains(s(&missing)), "{err}");
    assert!(!out.exists(), "no task ran");
    assert_eq!(plan_runs(&log), 1);

    let cluster = Cluster::start(ClusterSpec::default());
    let failed = cluster.run("wordcount-stopwords", &args);
    let err = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{err}");
    assert!(err.contains(s(&missing)), "{err}");
    assert!(!err.contains("submitted"), "the job was never submitted: {err}");
    assert!(!out.exists(), "no task ran");
    assert_eq!(plan_runs(&log), 2, "planned once more, by the submitter");
}
