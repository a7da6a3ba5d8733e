//! Helpers: generated inputs, running job binaries, reading output independently.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use gristmill::output::{BAD_RECORDS_DIR, Manifest};
use gristmill_jobs::sample::SplitMix64;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field as ParquetField;

/// A job binary built by this package.
pub fn bin(name: &str) -> PathBuf {
    match name {
        "wordcount" => env!("CARGO_BIN_EXE_wordcount").into(),
        "wordcount-records" => env!("CARGO_BIN_EXE_wordcount-records").into(),
        "grep" => env!("CARGO_BIN_EXE_grep").into(),
        "terasort" => env!("CARGO_BIN_EXE_terasort").into(),
        "tpch-q1" => env!("CARGO_BIN_EXE_tpch-q1").into(),
        "groupby" => env!("CARGO_BIN_EXE_groupby").into(),
        "inverted-index" => env!("CARGO_BIN_EXE_inverted-index").into(),
        "teragen" => env!("CARGO_BIN_EXE_teragen").into(),
        "teravalidate" => env!("CARGO_BIN_EXE_teravalidate").into(),
        "join" => env!("CARGO_BIN_EXE_join").into(),
        "pagerank" => env!("CARGO_BIN_EXE_pagerank").into(),
        "chaos" => env!("CARGO_BIN_EXE_chaos").into(),
        "revenue" => env!("CARGO_BIN_EXE_revenue").into(),
        "sessionize" => env!("CARGO_BIN_EXE_sessionize").into(),
        "wordcount-stopwords" => env!("CARGO_BIN_EXE_wordcount-stopwords").into(),
        other => panic!("no binary {other}"),
    }
}

/// Runs a job binary with `args` (progress off) and returns its output.
pub fn run(name: &str, args: &[&str]) -> Output {
    run_program(&bin(name), args)
}

/// Runs the job binary at `program` (one built outside this package) with `args` (progress off).
pub fn run_program(program: &Path, args: &[&str]) -> Output {
    Command::new(program).args(args).env("GRISTMILL_PROGRESS", "off").output().expect("job binary starts")
}

/// Runs a job binary that must succeed; returns its stdout.
pub fn run_ok(name: &str, args: &[&str]) -> String {
    let out = run(name, args);
    assert!(out.status.success(), "{name} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a job binary that must fail; returns its stderr.
pub fn run_err(name: &str, args: &[&str]) -> String {
    let out = run(name, args);
    assert!(!out.status.success(), "{name} {args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

/// Text with the cases that break line splitting: `\r\n`, empty lines, lines longer than
/// a split, Unicode whitespace, and (sometimes) a last line without a newline.
pub fn tricky_text(seed: u64, lines: usize) -> String {
    let mut rng = SplitMix64::new(seed);
    let words = ["alpha", "beta", "gamma", "δέλτα", "e", "Alpha", "x-y", "über", "😀", "z"];
    let spaces = [" ", " ", "  ", "\t", "\u{a0}", "\u{3000}", "\x0b"];
    let mut text = String::new();
    for _ in 0..lines {
        let kind = rng.below(10);
        let n = if kind == 0 {
            0
        } else if kind == 1 {
            300
        } else {
            rng.below(8) as usize
        };
        for k in 0..n {
            if k > 0 || rng.below(4) == 0 {
                text.push_str(spaces[rng.below(spaces.len() as u64) as usize]);
            }
            text.push_str(words[rng.below(words.len() as u64) as usize]);
        }
        text.push_str(if rng.below(3) == 0 { "\r\n" } else { "\n" });
    }
    if rng.below(2) == 0 {
        text.push_str("last line without newline");
    }
    text
}

/// Writes `files` tricky text files into `dir`.
pub fn write_text_files(dir: &Path, files: usize, lines: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    (0..files)
        .map(|i| {
            let path = dir.join(format!("input-{i:02}.txt"));
            std::fs::write(&path, tricky_text(i as u64 + 1, lines)).unwrap();
            path
        })
        .collect()
}

/// The sequential oracle of word count: `str::split_whitespace` over whole files.
pub fn oracle_wordcount(texts: &[String]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for text in texts {
        for word in text.split_whitespace() {
            *counts.entry(word.to_owned()).or_insert(0) += 1;
        }
    }
    counts
}

/// Writes a Parquet file with one Utf8 column `name` holding `values`, `rows_per_group`
/// rows per row group.
pub fn write_parquet_strings(path: &Path, name: &str, values: &[&str], rows_per_group: usize) {
    let schema = Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, true)]));
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(rows_per_group)).build();
    let mut writer = ArrowWriter::try_new(File::create(path).unwrap(), schema.clone(), Some(props)).unwrap();
    for chunk in values.chunks(rows_per_group.max(1)) {
        let column: ArrayRef = Arc::new(StringArray::from(chunk.to_vec()));
        writer.write(&RecordBatch::try_new(schema.clone(), vec![column]).unwrap()).unwrap();
    }
    writer.close().unwrap();
}

/// A committed output, read back with the parquet crate's record reader (not the Arrow
/// path our writer uses): the manifest and each part file's rows, in file-name order.
pub struct CommittedOutput {
    pub manifest: Manifest,
    pub parts: Vec<(String, Vec<Vec<ParquetField>>)>,
}

impl CommittedOutput {
    /// Every row of every part, in part order.
    pub fn rows(&self) -> impl Iterator<Item = &Vec<ParquetField>> {
        self.parts.iter().flat_map(|(_, rows)| rows)
    }
}

/// Reads an output directory and checks the commit: `_SUCCESS` lists exactly the part
/// files present, with their row counts.
pub fn read_committed(dir: &Path) -> CommittedOutput {
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(dir.join("_SUCCESS")).expect("_SUCCESS exists")).unwrap();
    let mut present: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "_SUCCESS" && n != BAD_RECORDS_DIR)
        .collect();
    present.sort();
    let mut bad: Vec<String> = match std::fs::read_dir(dir.join(BAD_RECORDS_DIR)) {
        Ok(entries) => {
            entries.map(|e| format!("{BAD_RECORDS_DIR}/{}", e.unwrap().file_name().display())).collect()
        }
        Err(_) => Vec::new(),
    };
    bad.sort();
    let listed_bad: Vec<String> = manifest.bad_records.iter().map(|f| f.name.clone()).collect();
    assert_eq!(bad, listed_bad, "_SUCCESS lists exactly the bad records files present");
    let listed: Vec<String> = manifest.files.iter().map(|f| f.name.clone()).collect();
    assert_eq!(present, listed, "_SUCCESS lists exactly the files present, in partition order");
    let mut parts = Vec::new();
    for (i, file) in manifest.files.iter().enumerate() {
        assert_eq!(file.partition as usize, i);
        let reader = SerializedFileReader::new(File::open(dir.join(&file.name)).unwrap()).unwrap();
        let rows: Vec<Vec<ParquetField>> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| r.unwrap().get_column_iter().map(|(_, f)| f.clone()).collect())
            .collect();
        assert_eq!(rows.len() as u64, file.rows, "row count of {}", file.name);
        parts.push((file.name.clone(), rows));
    }
    assert_eq!(manifest.rows, parts.iter().map(|p| p.1.len() as u64).sum::<u64>());
    CommittedOutput { manifest, parts }
}

/// Reads a word-count output as (word -> count), checking each part is sorted by word and
/// no word appears twice.
pub fn read_word_counts(dir: &Path) -> BTreeMap<String, u64> {
    let output = read_committed(dir);
    let mut counts = BTreeMap::new();
    for (name, rows) in &output.parts {
        let words: Vec<&String> = rows.iter().map(|r| as_str(&r[0])).collect();
        assert!(words.windows(2).all(|w| w[0] < w[1]), "{name} is sorted by word, without duplicates");
        for row in rows {
            let count = match &row[1] {
                ParquetField::ULong(n) => *n,
                other => panic!("count is not a UInt64: {other:?}"),
            };
            assert!(counts.insert(as_str(&row[0]).clone(), count).is_none(), "a word in two partitions");
        }
    }
    counts
}

/// A string field's value.
pub fn as_str(field: &ParquetField) -> &String {
    match field {
        ParquetField::Str(s) => s,
        other => panic!("not a string: {other:?}"),
    }
}

/// A path as &str.
pub fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// About `bytes` of Zipf text over a 200K-word vocabulary in 2 files: map output that a
/// combiner cannot shrink much, for spill tests.
pub fn write_wide_text(dir: &Path, bytes: u64) -> Vec<String> {
    let spec =
        gristmill_jobs::sample::TextSpec { bytes, files: 2, vocabulary: 200_000, exponent: 0.5, seed: 9 };
    gristmill_jobs::sample::write_text(dir, &spec).unwrap();
    let mut texts = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        texts.push(std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    texts
}

/// The Python interpreter of the test venv (duckdb, tpchgen-cli, pyarrow): `$GRISTMILL_PYTHON`,
/// else `$HOME/.cache/gristmill-venv/bin/python`. Fails (never skips) when it is missing or
/// lacks a module, telling how to get it.
pub fn python() -> PathBuf {
    let python = std::env::var_os("GRISTMILL_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").expect("HOME is set");
        Path::new(&home).join(".cache/gristmill-venv/bin/python")
    });
    let check = Command::new(&python).args(["-c", "import duckdb, pyarrow"]).output();
    match check {
        Ok(out) if out.status.success() => python,
        Ok(out) => panic!(
            "{} lacks duckdb or pyarrow ({}): run scripts/test, which creates the test venv",
            python.display(),
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("no message")
        ),
        Err(e) => panic!(
            "no Python at {} ({e}): run scripts/test, which creates the test venv, or set GRISTMILL_PYTHON",
            python.display()
        ),
    }
}

/// Runs `script` with the test venv's Python and `args`; returns its stdout.
///
/// A script that ran to its end exits with `os._exit(0)`, skipping interpreter teardown:
/// pyarrow's thread pools sometimes abort there ("terminate called without an active
/// exception") after the work is done and printed.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let script = format!("{script}\nimport os as _os, sys as _sys\n_sys.stdout.flush()\n_os._exit(0)\n");
    let out = Command::new(python()).arg("-c").arg(&script).args(args).output().expect("python starts");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A console script (e.g. `tpchgen-cli`) installed beside the test venv's Python. Fails
/// when it is missing, telling how to get it.
pub fn venv_script(name: &str) -> PathBuf {
    let dir = run_python("import sysconfig; print(sysconfig.get_path('scripts'))", &[]);
    let path = Path::new(dir.trim()).join(name);
    assert!(path.is_file(), "no {} : run scripts/test, which installs it into the test venv", path.display());
    path
}
