//! Word count against the sequential oracle: text with tricky line boundaries, many files,
//! small splits, several thread and reducer counts, Parquet input, the record-level job.

use crate::support::*;

#[test]
fn wordcount_equals_the_oracle_whatever_the_splits_threads_and_reducers() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_text_files(&dir.path().join("in"), 5, 60);
    let texts: Vec<String> = files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
    let expected = oracle_wordcount(&texts);
    assert!(expected.len() > 10);
    let input = format!("{}/in/*.txt", s(dir.path()));
    for (threads, reducers, split) in
        [("1", "1", "64MiB"), ("2", "3", "1000"), ("3", "7", "97"), ("2", "2", "8")]
    {
        let out = dir.path().join(format!("out-{threads}-{reducers}-{split}"));
        run_ok(
            "wordcount",
            &[
                "--input",
                &input,
                "--output",
                s(&out),
                "--threads",
                threads,
                "--reducers",
                reducers,
                "--split-size",
                split,
            ],
        );
        assert_eq!(read_word_counts(&out), expected, "threads {threads}, reducers {reducers}, split {split}");
        assert_eq!(read_committed(&out).manifest.files.len(), reducers.parse::<usize>().unwrap());
    }
}

#[test]
fn record_level_wordcount_equals_batch_level() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_text_files(&dir.path().join("in"), 3, 300);
    let texts: Vec<String> = files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
    let (input, out) = (dir.path().join("in"), dir.path().join("out"));
    let args = ["--input", s(&input), "--output", s(&out), "--split-size", "500", "--reducers", "3"];
    run_ok("wordcount-records", &args);
    assert_eq!(read_word_counts(&out), oracle_wordcount(&texts));
}

#[test]
fn wordcount_reads_a_parquet_column_across_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..500).map(|i| crate::support::tricky_text(i, 1)).collect();
    let values: Vec<&str> = lines.iter().map(String::as_str).collect();
    let path = dir.path().join("docs.parquet");
    write_parquet_strings(&path, "body", &values, 37);
    let out = dir.path().join("out");
    // A tiny split size puts each row group in its own split.
    run_ok("wordcount", &["--input", s(&path), "--output", s(&out), "--column", "body", "--split-size", "1"]);
    assert_eq!(read_word_counts(&out), oracle_wordcount(&lines));
    let manifest = read_committed(&out).manifest;
    assert_eq!(manifest.counters.get("map_input_records"), 500);
}

#[test]
fn mixed_text_and_parquet_inputs_in_one_job() {
    let dir = tempfile::tempdir().unwrap();
    let text = "one two\nthree\n";
    std::fs::write(dir.path().join("a.txt"), text).unwrap();
    write_parquet_strings(&dir.path().join("b.parquet"), "text", &["two three", "four"], 1);
    let out = dir.path().join("out");
    run_ok(
        "wordcount",
        &["-i", s(&dir.path().join("a.txt")), "-i", s(&dir.path().join("b.parquet")), "-o", s(&out)],
    );
    let expected = oracle_wordcount(&[text.to_owned(), "two three\nfour".to_owned()]);
    assert_eq!(read_word_counts(&out), expected);
}

#[test]
fn wordcount_larger_than_its_memory_limit_spills_and_still_equals_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let texts = write_wide_text(&dir.path().join("in"), 3 << 20);
    let (spill, out) = (dir.path().join("spill"), dir.path().join("out"));
    std::fs::create_dir(&spill).unwrap();
    let input = dir.path().join("in");
    // The record-level job emits one row per word, and 200K distinct words keep combined
    // runs large: far more map output than 1 MiB.
    run_ok(
        "wordcount-records",
        &[
            "-i",
            s(&input),
            "-o",
            s(&out),
            "--memory-limit",
            "1MiB",
            "--spill-dir",
            s(&spill),
            "--reducers",
            "3",
        ],
    );
    assert_eq!(read_word_counts(&out), oracle_wordcount(&texts));
    let manifest = read_committed(&out).manifest;
    assert!(manifest.counters.get("spilled_bytes") > 0, "{:?}", manifest.counters);
    assert_eq!(std::fs::read_dir(&spill).unwrap().count(), 0, "the job's spill directory is removed");
}
