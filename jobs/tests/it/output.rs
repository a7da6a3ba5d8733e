//! The commit protocol as a user sees it: `_SUCCESS`, refusing committed output,
//! `--overwrite`, empty input, and a failing job that leaves nothing that looks complete.

use std::sync::Arc;

use gristmill::config::RunConfig;
use gristmill::local::run_local;
use gristmill::prelude::*;
use gristmill::progress::Progress;
use gristmill_jobs::wordcount::WordCount;

use crate::support::*;

#[test]
fn committed_output_is_refused_then_replaced_with_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "a b a\n").unwrap();
    std::fs::write(dir.path().join("b.txt"), "b c\n").unwrap();
    let out = dir.path().join("out");
    run_ok("wordcount", &["-i", s(&dir.path().join("a.txt")), "-o", s(&out), "--reducers", "3"]);
    let first = read_committed(&out);

    let err = run_err("wordcount", &["-i", s(&dir.path().join("b.txt")), "-o", s(&out)]);
    assert_eq!(
        err.trim(),
        format!(
            "error: output {} already holds a committed result (_SUCCESS); pass --overwrite to replace it",
            s(&out)
        )
    );
    assert_eq!(read_committed(&out).manifest, first.manifest, "the refused run changed nothing");

    run_ok(
        "wordcount",
        &["-i", s(&dir.path().join("b.txt")), "-o", s(&out), "--overwrite", "--reducers", "2"],
    );
    let counts = read_word_counts(&out);
    assert_eq!(counts.into_iter().collect::<Vec<_>>(), vec![("b".to_owned(), 1), ("c".to_owned(), 1)]);
    assert_ne!(read_committed(&out).manifest.job_id, first.manifest.job_id);
}

#[test]
fn empty_input_gives_an_empty_committed_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.txt"), "").unwrap();
    std::fs::create_dir(dir.path().join("empty-dir")).unwrap();
    for (name, input) in [("file", dir.path().join("empty.txt")), ("dir", dir.path().join("empty-dir"))] {
        let out = dir.path().join(format!("out-{name}"));
        run_ok("wordcount", &["-i", s(&input), "-o", s(&out), "--reducers", "2"]);
        let committed = read_committed(&out);
        assert_eq!(committed.manifest.rows, 0);
        assert_eq!(committed.manifest.files.len(), 2, "one (empty) part file per reducer");
    }
}

#[test]
fn part_file_names_sort_in_partition_order_and_hidden_inputs_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(input.join("sub")).unwrap();
    std::fs::write(input.join("a.txt"), "x y\n").unwrap();
    std::fs::write(input.join("sub/b.txt"), "y z\n").unwrap();
    std::fs::write(input.join("_SUCCESS"), "not text to count\n").unwrap();
    std::fs::write(input.join(".hidden"), "hidden words\n").unwrap();
    let out = dir.path().join("out");
    run_ok("wordcount", &["-i", s(&input), "-o", s(&out), "--reducers", "12"]);
    let committed = read_committed(&out);
    let names: Vec<_> = committed.manifest.files.iter().map(|f| f.name.clone()).collect();
    for (i, name) in names.iter().enumerate() {
        assert!(name.starts_with(&format!("part-{i:05}-")), "{name}");
    }
    let counts = read_word_counts(&out);
    assert_eq!(counts.keys().cloned().collect::<Vec<_>>(), vec!["x", "y", "z"]);
}

/// A word count whose mapper panics on a chosen word: user code that crashes.
#[derive(clap::Args, Clone, Debug, serde::Serialize, serde::Deserialize)]
struct PanicsOn {
    #[arg(long)]
    word: String,
}

impl Job for PanicsOn {
    const NAME: &'static str = "panics-on";
    const ABOUT: &'static str = "test job";

    fn map_output(&self) -> KeyedSchema {
        WordCount::default().map_output()
    }

    fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
        let word = self.word.clone();
        Ok(gristmill::job::record::map_lines::<str, u64, _>(move |line, out| {
            for w in line.split_whitespace() {
                assert!(w != word, "found the forbidden word {w}");
                out.emit(w, 1);
            }
            Ok(())
        }))
    }

    fn reducer(&self, task: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
        WordCount::default().reducer(task)
    }
}

#[test]
fn a_panic_in_user_code_fails_the_job_naming_the_split_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("ok.txt");
    let bad = dir.path().join("bad.txt");
    std::fs::write(&ok, "fine words here\n".repeat(100)).unwrap();
    std::fs::write(&bad, "fine\nfine boom\n").unwrap();
    let out = dir.path().join("out");
    let config = RunConfig::new(vec![s(&ok).to_owned(), s(&bad).to_owned()], s(&out)).with_threads(2);
    let job = PanicsOn { word: "boom".into() };
    let err = run_local(&job, &config, &Arc::new(Progress::default())).unwrap_err().to_string();
    assert!(err.contains("panicked: found the forbidden word boom"), "{err}");
    assert!(err.contains(&format!("{} [bytes 0..15]", s(&bad))), "{err}");
    assert!(!out.join("_SUCCESS").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&out).map(|d| d.collect()).unwrap_or_default();
    assert!(leftovers.is_empty(), "no part files left behind: {leftovers:?}");
}

/// Copies `from`'s first listed part file with rows into `to` as `name`.
fn copy_first_part(from: &std::path::Path, to: &std::path::Path, name: &str) {
    let manifest = read_committed(from).manifest;
    let first = &manifest.files.iter().find(|f| f.rows > 0).expect("a part with rows").name;
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(from.join(first), to.join(name)).unwrap();
}

#[test]
fn reading_a_committed_output_reads_exactly_the_files_its_manifest_lists() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "a b a\nc d\n").unwrap();
    let counted = dir.path().join("counted");
    run_ok("wordcount", &["-i", s(&dir.path().join("a.txt")), "-o", s(&counted), "--reducers", "2"]);
    let words = read_word_counts(&counted).into_keys().collect::<Vec<_>>();
    // A stray part file another job left in the committed output: never read.
    copy_first_part(&counted, &counted, "part-00000-job-20260101T000000-0bad-a0.parquet");

    let recounted = dir.path().join("recounted");
    run_ok("wordcount", &["-i", s(&counted), "--column", "word", "-o", s(&recounted)]);
    let counts = read_word_counts(&recounted);
    assert_eq!(counts.keys().cloned().collect::<Vec<_>>(), words);
    assert!(counts.values().all(|&n| n == 1), "each committed row read once: {counts:?}");
}

#[test]
fn an_output_without_success_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "a b\n").unwrap();
    let counted = dir.path().join("counted");
    run_ok("wordcount", &["-i", s(&dir.path().join("a.txt")), "-o", s(&counted), "--reducers", "1"]);
    let partial = dir.path().join("partial");
    copy_first_part(&counted, &partial, "part-00000-job-20260101T000000-0bad-a0.parquet");

    let out = dir.path().join("out");
    let args = ["-i", s(&partial), "--column", "word", "-o", s(&out)];
    let err = run_err("wordcount", &args);
    assert_eq!(
        err.trim(),
        format!(
            "error: {} is not a committed output (no _SUCCESS); pass --allow-uncommitted to read it anyway",
            s(&partial)
        )
    );
    assert!(!out.join("_SUCCESS").exists());
    run_ok("wordcount", &[&args[..], &["--allow-uncommitted"]].concat());
    assert_eq!(read_word_counts(&out).into_iter().collect::<Vec<_>>(), [("a".into(), 1), ("b".into(), 1)]);
}

#[test]
fn a_foreign_success_marker_reads_every_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "a b\n").unwrap();
    let counted = dir.path().join("counted");
    run_ok("wordcount", &["-i", s(&dir.path().join("a.txt")), "-o", s(&counted), "--reducers", "1"]);
    let spark = dir.path().join("spark");
    copy_first_part(&counted, &spark, "part-00000-5f2c-c000.snappy.parquet");
    copy_first_part(&counted, &spark, "part-00001-5f2c-c000.snappy.parquet");
    std::fs::write(spark.join("_SUCCESS"), "").unwrap();

    let out = dir.path().join("out");
    run_ok("wordcount", &["-i", s(&spark), "--column", "word", "-o", s(&out)]);
    assert_eq!(read_word_counts(&out).into_iter().collect::<Vec<_>>(), [("a".into(), 2), ("b".into(), 2)]);
}
