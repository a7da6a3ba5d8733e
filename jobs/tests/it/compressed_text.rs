//! Compressed text input: files made by the gzip, zstd, bzip2 and xz command-line tools
//! read as their plain text, one map task per file, and bad ones failing with file and
//! offset.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// The command-line tools and the extensions they name their output with.
const TOOLS: [(&str, &str); 4] = [("gzip", "gz"), ("zstd", "zst"), ("bzip2", "bz2"), ("xz", "xz")];

/// `data` compressed by `tool` (`gzip -c` and the like). Fails, never skips, without it.
pub fn compress(tool: &str, data: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    std::fs::write(&plain, data).unwrap();
    let out = Command::new(tool)
        .args(["-c", "-q", s(&plain)])
        .output()
        .unwrap_or_else(|e| panic!("no `{tool}` ({e}): run scripts/test, which installs it"));
    assert!(out.status.success(), "{tool} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// `text` compressed by `tool` in two halves, concatenated as `cat a.gz b.gz` makes them
/// (gzip members, zstd frames, bzip2 and xz streams); the cut is inside a line.
fn compress_in_two(tool: &str, text: &str) -> Vec<u8> {
    let mut cut = text.len() / 2;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    let mut bytes = compress(tool, &text.as_bytes()[..cut]);
    bytes.extend(compress(tool, &text.as_bytes()[cut..]));
    bytes
}

/// Tricky text (CRLF, empty and long lines, Unicode whitespace) of about `lines` lines.
fn text(lines: usize) -> String {
    (0..4).map(|seed| tricky_text(seed + 40, lines / 4)).collect::<Vec<_>>().join("\n")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Runs wordcount with `args` plus the output; returns the counts, the counters and the
/// summary (stderr).
fn wordcount(out: &Path, args: &[&str]) -> (BTreeMap<String, u64>, gristmill::job::Counters, String) {
    let run = run("wordcount", &[args, &["--output", s(out)]].concat());
    let summary = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "wordcount {args:?} failed: {summary}");
    (read_word_counts(out), read_committed(out).manifest.counters, summary)
}

#[test]
fn wordcount_over_plain_and_every_codec_counts_the_plain_text_five_times() {
    let dir = tempfile::tempdir().unwrap();
    let (input, text) = (dir.path().join("in"), text(2_000));
    write(&input, "plain.txt", text.as_bytes());
    let mut stored = text.len() as u64;
    for (tool, ext) in TOOLS {
        stored += std::fs::metadata(write(&input, &format!("text.{ext}"), &compress_in_two(tool, &text)))
            .unwrap()
            .len();
    }
    let five: BTreeMap<String, u64> =
        oracle_wordcount(std::slice::from_ref(&text)).into_iter().map(|(w, n)| (w, 5 * n)).collect();
    let out = dir.path().join("out");
    let args = ["--input", s(&input), "--split-size", "1000", "--threads", "2", "--reducers", "3"];
    let (counts, counters, _) = wordcount(&out, &args);
    assert_eq!(counts, five);
    // Input bytes are decompressed bytes; storage bytes the bytes read from disk (the plain
    // file's splits read a little past their ends to finish their last lines).
    assert_eq!(counters.get("map_input_bytes"), 5 * text.len() as u64, "{counters:?}");
    assert!(counters.get("storage_get_bytes") >= stored, "{counters:?} {stored}");
}

#[test]
fn a_compressed_file_larger_than_the_split_size_is_one_map_task() {
    let dir = tempfile::tempdir().unwrap();
    let text = text(4_000);
    let gz = compress("gzip", text.as_bytes());
    assert!(gz.len() > 8 * 4096, "several splits' worth: {}", gz.len());
    let input = write(&dir.path().join("in"), "big.log.gz", &gz);
    let out = dir.path().join("out");
    let (counts, counters, summary) = wordcount(&out, &["--input", s(&input), "--split-size", "4096"]);
    assert_eq!(counts, oracle_wordcount(std::slice::from_ref(&text)));
    assert!(summary.contains(" 1 map tasks"), "one map task: {summary}");
    assert_eq!(counters.get("map_input_bytes"), text.len() as u64, "{counters:?}");
    assert_eq!(counters.get("storage_get_bytes"), gz.len() as u64, "the compressed bytes, once");
}

#[test]
fn forced_text_format_detects_gzip_without_an_extension_by_its_magic_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let text = text(400);
    let input = write(&dir.path().join("in"), "events", &compress("gzip", text.as_bytes()));
    let out = dir.path().join("out");
    let (counts, _, _) = wordcount(&out, &["--input", s(&input), "--format", "text"]);
    assert_eq!(counts, oracle_wordcount(std::slice::from_ref(&text)));
    // Without the forced format an extensionless file is plain text, as before.
    let err = run_err("wordcount", &["--input", s(&input), "--output", s(&dir.path().join("out2"))]);
    assert!(err.contains("invalid UTF-8"), "{err}");
}

#[test]
fn grep_over_zstd_text_equals_grep_over_the_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let text = text(1_000);
    let plain = write(&dir.path().join("plain"), "a.txt", text.as_bytes());
    let zst = write(&dir.path().join("zst"), "a.txt.zst", &compress_in_two("zstd", &text));
    let lines = |input: &Path, out: &str| {
        let out = dir.path().join(out);
        run_ok("grep", &["-e", "^gamma|ü", "--input", s(input), "--output", s(&out), "--split-size", "500"]);
        let mut lines: Vec<String> = read_committed(&out).rows().map(|r| as_str(&r[0]).clone()).collect();
        lines.sort();
        lines
    };
    let expected = lines(&plain, "plain-out");
    assert!(!expected.is_empty());
    assert_eq!(lines(&zst, "zst-out"), expected);
}

#[test]
fn truncated_gzip_and_corrupt_zstd_fail_naming_the_file_and_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let text = text(2_000);
    let gz = compress("gzip", text.as_bytes());
    let cut = write(&dir.path().join("cut"), "x.gz", &gz[..gz.len() / 2]);
    let err = run_err("wordcount", &["--input", s(&cut), "--output", s(&dir.path().join("out1"))]);
    let expected = format!("truncated gzip stream in {} at compressed byte ", s(&cut));
    assert!(err.contains(&expected), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // zstd's checksum (on by default in the tool) or its block decoder catches a flipped byte.
    let mut zst = compress("zstd", text.as_bytes());
    let middle = zst.len() / 2;
    zst[middle] ^= 0x5a;
    let bad = write(&dir.path().join("bad"), "y.zst", &zst);
    let err = run_err("wordcount", &["--input", s(&bad), "--output", s(&dir.path().join("out2"))]);
    let expected = format!("corrupt zstd stream in {} at compressed byte ", s(&bad));
    assert!(err.contains(&expected), "{err}");
}
