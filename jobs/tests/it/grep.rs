//! Distributed grep against a sequential scan.

use crate::support::*;

fn matching_lines(texts: &[String], keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut lines: Vec<String> =
        texts.iter().flat_map(|t| t.lines()).filter(|l| keep(l)).map(str::to_owned).collect();
    lines.sort();
    lines
}

fn grep_output(dir: &std::path::Path) -> Vec<String> {
    let mut lines: Vec<String> = read_committed(dir).rows().map(|r| as_str(&r[0]).clone()).collect();
    lines.sort();
    lines
}

#[test]
fn grep_regex_and_fixed_strings_equal_a_sequential_scan() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_text_files(&dir.path().join("in"), 4, 300);
    let texts: Vec<String> = files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
    let input = s(&dir.path().join("in")).to_owned();

    let out = dir.path().join("regex");
    let stdout = run_ok(
        "grep",
        &["--pattern", "^gamma|ü", "--input", &input, "--output", s(&out), "--split-size", "333"],
    );
    let regex = regex::Regex::new("^gamma|ü").unwrap();
    let expected = matching_lines(&texts, |l| regex.is_match(l));
    assert!(!expected.is_empty());
    assert_eq!(grep_output(&out), expected);
    assert_eq!(stdout.trim(), format!("{} matching lines", expected.len()));

    let out = dir.path().join("fixed");
    run_ok("grep", &["-F", "--pattern", "a.b", "--input", &input, "--output", s(&out)]);
    assert!(grep_output(&out).is_empty(), "a.b is literal and never occurs");
    let out = dir.path().join("fixed2");
    run_ok(
        "grep",
        &["-F", "-e", "x-y", "--input", &input, "--output", s(&out), "--reducers", "5", "--split-size", "64"],
    );
    assert_eq!(grep_output(&out), matching_lines(&texts, |l| l.contains("x-y")));
}

#[test]
fn grep_rejects_an_invalid_regex_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "x\n").unwrap();
    let err =
        run_err("grep", &["-e", "(", "-i", s(&dir.path().join("a.txt")), "-o", s(&dir.path().join("o"))]);
    assert!(err.contains("invalid --pattern"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// Text arrives in chunks of lines; a Parquet value is one line even when it holds a
/// newline, and both kinds of input mix in one job.
#[test]
fn grep_matches_whole_parquet_values_and_text_lines_in_one_job() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("a.txt");
    std::fs::write(&text, "needle one\r\nnone\nneedle two\nlast needle").unwrap();
    let parquet = dir.path().join("b.parquet");
    write_parquet_strings(&parquet, "text", &["a needle\nsecond line", "no", "needle"], 2);
    let inputs = ["-i", s(&text), "-i", s(&parquet)];

    let out = dir.path().join("fixed");
    run_ok("grep", &[&["-F", "-e", "needle", "-o", s(&out)][..], &inputs].concat());
    let expected = ["a needle\nsecond line", "last needle", "needle", "needle one", "needle two"];
    assert_eq!(grep_output(&out), expected);

    // `$` ends the value, not a line within it: the Parquet value with a newline is one line.
    let out = dir.path().join("regex");
    run_ok("grep", &[&["-e", "^needle|needle$", "-o", s(&out)][..], &inputs].concat());
    assert_eq!(grep_output(&out), ["last needle", "needle", "needle one", "needle two"]);
}
