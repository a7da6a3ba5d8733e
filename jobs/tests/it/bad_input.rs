//! Bad input: each case exits non-zero with one line naming the path and the cause, and
//! leaves no `_SUCCESS`.

use std::path::Path;

use crate::support::*;

/// Runs wordcount expecting failure; checks the one-line message and that no output
/// looks committed.
fn fails_with(args: &[&str], out: &Path, expected: &[&str]) -> String {
    let err = run_err("wordcount", args);
    let line = err.trim();
    assert_eq!(line.lines().count(), 1, "one line: {err}");
    assert!(line.starts_with("error: "), "{line}");
    for part in expected {
        assert!(line.contains(part), "`{line}` should mention `{part}`");
    }
    assert!(!out.join("_SUCCESS").exists());
    line.to_owned()
}

#[test]
fn missing_input_and_empty_glob() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let missing = dir.path().join("no-such-file.txt");
    fails_with(&["-i", s(&missing), "-o", s(&out)], &out, &["input not found", s(&missing)]);
    let glob = format!("{}/*.nothing", s(dir.path()));
    fails_with(&["-i", &glob, "-o", s(&out)], &out, &["glob matched no files", &glob]);
}

#[test]
fn unreadable_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "words\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    let out = dir.path().join("out");
    // Root reads any file: run the job as `nobody` then (a copy of the binary it may execute).
    let mut command = if is_root() {
        let exe = dir.path().join("wordcount");
        std::fs::copy(bin("wordcount"), &exe).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(exe);
        c
    } else {
        std::process::Command::new(bin("wordcount"))
    };
    let result =
        command.args(["-i", s(&secret), "-o", s(&out)]).env("GRISTMILL_PROGRESS", "off").output().unwrap();
    let err = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success());
    assert!(err.trim().starts_with("error: cannot read"), "{err}");
    assert!(err.contains(s(&secret)) && err.to_lowercase().contains("permission denied"), "{err}");
    assert!(!out.join("_SUCCESS").exists());
}

fn is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false)
}

#[test]
fn corrupt_parquet_and_missing_column() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let corrupt = dir.path().join("corrupt.parquet");
    std::fs::write(&corrupt, b"PAR1 this is not really parquet at all PAR1").unwrap();
    fails_with(&["-i", s(&corrupt), "-o", s(&out)], &out, &[s(&corrupt), "corrupt Parquet file"]);

    let good = dir.path().join("good.parquet");
    write_parquet_strings(&good, "body", &["a b", "c"], 1);
    fails_with(
        &["-i", s(&good), "-o", s(&out), "--column", "text"],
        &out,
        &[s(&good), "no column `text`", "the file has: body"],
    );
}

#[test]
fn wrong_column_type() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let path = dir.path().join("numbers.parquet");
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
        "text",
        arrow::datatypes::DataType::Int64,
        false,
    )]));
    let batch = arrow::array::RecordBatch::try_new(
        schema.clone(),
        vec![std::sync::Arc::new(arrow::array::Int64Array::from(vec![1, 2]))],
    )
    .unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    fails_with(
        &["-i", s(&path), "-o", s(&out)],
        &out,
        &[s(&path), "column `text` has type Int64, expected Utf8"],
    );
}

#[test]
fn invalid_utf8_names_file_and_offset_unless_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let path = dir.path().join("latin1.txt");
    let mut data = b"good line\nsecond good line\n".repeat(50);
    let offset = data.len() + 4;
    data.extend_from_slice(b"caf\xe9\xff au lait\nlast\n");
    std::fs::write(&path, &data).unwrap();
    fails_with(
        &["-i", s(&path), "-o", s(&out), "--split-size", "100"],
        &out,
        &[s(&path), &format!("invalid UTF-8 at byte offset {}", offset - 1), "--replace-invalid-utf8"],
    );
    run_ok("wordcount", &["-i", s(&path), "-o", s(&out), "--replace-invalid-utf8"]);
    let counts = read_word_counts(&out);
    assert_eq!(counts.get("caf\u{fffd}\u{fffd}"), Some(&1));
    assert_eq!(counts.get("good"), Some(&100));
}

#[test]
fn bad_flags_are_rejected_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::write(dir.path().join("a.txt"), "a\n").unwrap();
    let input = dir.path().join("a.txt");
    fails_with(&["-i", s(&input), "-o", s(&out), "--threads", "0"], &out, &["--threads must be at least 1"]);
    let err = run_err("wordcount", &["-i", s(&input), "-o", s(&out), "--split-size", "12 parsecs"]);
    assert!(err.contains("--split-size"), "{err}");
    assert!(!out.exists());
}

#[test]
fn unwritable_spill_directory() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(dir.path().join("a.txt"), "a b\n").unwrap();
    let spill = dir.path().join("spill");
    std::fs::create_dir(&spill).unwrap();
    std::fs::set_permissions(&spill, std::fs::Permissions::from_mode(0o555)).unwrap();
    let (input, out) = (dir.path().join("a.txt"), dir.path().join("out"));
    let args = ["-i", s(&input), "-o", s(&out), "--spill-dir", s(&spill)];
    let result = as_unprivileged(dir.path(), "wordcount")
        .args(args)
        .env("GRISTMILL_PROGRESS", "off")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success());
    assert!(err.trim().starts_with(&format!("error: spill to {} failed", s(&spill))), "{err}");
    assert!(err.contains("not writable") && err.contains("ermission denied"), "{err}");
    assert!(!out.join("_SUCCESS").exists());
}

#[test]
fn disk_full_while_spilling_fails_cleanly_and_leaves_no_spill_files() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    crate::support::write_wide_text(&input, 3 << 20);
    let (spill, out) = (dir.path().join("spill"), dir.path().join("out"));
    std::fs::create_dir(&spill).unwrap();
    // A 256 KiB file-size limit (with SIGXFSZ ignored, so writes fail with EFBIG) stands in
    // for a disk that fills up: the first spill file to pass it fails.
    let script = format!(
        "trap '' XFSZ; ulimit -f 256; exec {} -i {} -o {} --spill-dir {} --memory-limit 1MiB --threads 2",
        bin("wordcount-records").display(),
        s(&input),
        s(&out),
        s(&spill)
    );
    let result = std::process::Command::new("sh")
        .args(["-c", &script])
        .env("GRISTMILL_PROGRESS", "off")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success(), "{err}");
    assert!(err.contains("spill to") && err.contains("File too large"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!out.join("_SUCCESS").exists());
    let left: Vec<_> = std::fs::read_dir(&spill).unwrap().collect();
    assert!(left.is_empty(), "spill files left behind: {left:?}");
}

/// A command running job binary `name` as `nobody` when the tests run as root (root
/// ignores file permissions); `dir` must be world-readable to hold the binary's copy.
fn as_unprivileged(dir: &Path, name: &str) -> std::process::Command {
    use std::os::unix::fs::PermissionsExt;
    if !is_root() {
        return std::process::Command::new(bin(name));
    }
    let exe = dir.join(name);
    std::fs::copy(bin(name), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = std::process::Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(exe);
    c
}

#[test]
fn mixed_schemas_in_one_input_work_by_column_name_or_fail_naming_the_odd_file() {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    write_parquet_strings(&input.join("a.parquet"), "text", &["x y", "y"], 10);
    // b has the text column in another position, beside an extra column.
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("text", DataType::LargeUtf8, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![1, 2])),
        Arc::new(arrow::array::LargeStringArray::from(vec!["y z", "z"])),
    ];
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(input.join("b.parquet")).unwrap(),
        schema.clone(),
        None,
    )
    .unwrap();
    w.write(&RecordBatch::try_new(schema, columns).unwrap()).unwrap();
    w.close().unwrap();
    let out = dir.path().join("out");
    run_ok("wordcount", &["-i", s(&input), "-o", s(&out)]);
    let counts = read_word_counts(&out);
    assert_eq!(
        counts.into_iter().collect::<Vec<_>>(),
        vec![("x".into(), 1), ("y".into(), 3), ("z".into(), 2)]
    );

    // c's text column is a number: the job fails naming c.
    let bad_schema = Arc::new(Schema::new(vec![Field::new("text", DataType::Int64, false)]));
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(input.join("c.parquet")).unwrap(),
        bad_schema.clone(),
        None,
    )
    .unwrap();
    w.write(
        &RecordBatch::try_new(bad_schema, vec![Arc::new(Int64Array::from(vec![7])) as ArrayRef]).unwrap(),
    )
    .unwrap();
    w.close().unwrap();
    let out2 = dir.path().join("out2");
    fails_with(
        &["-i", s(&input), "-o", s(&out2)],
        &out2,
        &[s(&input.join("c.parquet")), "has type Int64, expected Utf8"],
    );
}
