//! `teragen` and `teravalidate` through their binaries: the records against a naive
//! sequential oracle written here from the published layout (LCG stepped one by one, no
//! skip-ahead; hex by `format!`; bitwise CRC-32), the checksum across a sort, order and
//! duplicate checks, bad input, and the published valsort checksum of 1,000,000 gensort
//! records.

use std::path::{Path, PathBuf};

use crate::support::*;

const A: u128 = 0x2360ed051fc65da44385df649fccf645;
const C: u128 = 0x4a696d47726179524950202020202001;

/// gensort 1.3+ `gen_rec`'s XOR constants, (hi8, top two bytes of lo8) per 10-byte part.
const GENSORT_MASKS: [(u64, u16); 10] = [
    (0, 0),
    (0xF0E8E4E2E1D8D4D2, 0xD1CC),
    (0xCAC9C6C5C3B8B4B2, 0xB1AC),
    (0xAAA9A6A5A39C9A99, 0x9695),
    (0x938E8D8B87787472, 0x716C),
    (0x6A696665635C5A59, 0x5655),
    (0x534E4D4B473C3A39, 0x3635),
    (0x332E2D2B271E1D1B, 0x170F),
    (0xC8C4C2C198949291, 0x8CE0),
    (0x170F332E2D2B271E, 0x1D1B),
];

/// The LCG's values x(1) ..= x(n), stepped one by one from x(0) = 0.
fn lcg_values(n: usize) -> Vec<u128> {
    let mut x = 0u128;
    (0..n)
        .map(|_| {
            x = A.wrapping_mul(x).wrapping_add(C);
            x
        })
        .collect()
}

/// The 10 high bytes of a 128-bit value, written out from its two 64-bit halves.
fn high_ten(hi: u64, lo: u64) -> Vec<u8> {
    let mut bytes = hi.to_be_bytes().to_vec();
    bytes.extend_from_slice(&lo.to_be_bytes()[..2]);
    bytes
}

/// Records 0 .. n of the TeraGen layout, field by field.
fn oracle_teragen(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 100);
    for (number, r) in lcg_values(n).into_iter().enumerate() {
        let (hi, lo) = ((r >> 64) as u64, r as u64);
        out.extend(high_ten(hi, lo));
        out.extend([0x00, 0x11]);
        out.extend(format!("{number:032X}").bytes());
        out.extend([0x88, 0x99, 0xAA, 0xBB]);
        for digit in format!("{:012X}", lo & 0xFFFF_FFFF_FFFF).bytes() {
            out.extend([digit; 4]);
        }
        out.extend([0xCC, 0xDD, 0xEE, 0xFF]);
    }
    out
}

/// Records 0 .. n of the gensort 1.3+ layout: part i of record k from x(k + 1 + i).
fn oracle_gensort(n: usize) -> Vec<u8> {
    let values = lcg_values(n + 9);
    let mut out = Vec::with_capacity(n * 100);
    for k in 0..n {
        for (i, (mask_hi, mask_lo)) in GENSORT_MASKS.into_iter().enumerate() {
            let r = values[k + i];
            out.extend(high_ten((r >> 64) as u64 ^ mask_hi, r as u64 ^ (u64::from(mask_lo) << 48)));
        }
    }
    out
}

/// CRC-32 (IEEE, reflected), bit by bit.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// valsort's checksum of `records`, as 32 hex digits.
fn checksum(records: &[u8]) -> String {
    let sum = records.chunks(100).fold(0u128, |sum, r| sum.wrapping_add(u128::from(crc32(r))));
    format!("{sum:032x}")
}

/// The non-hidden files of `dir` in name order, concatenated; and their names.
pub(crate) fn read_parts(dir: &Path) -> (Vec<u8>, Vec<String>) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with('_') && !n.starts_with('.'))
        .collect();
    names.sort();
    let bytes = names.iter().flat_map(|n| std::fs::read(dir.join(n)).unwrap()).collect();
    (bytes, names)
}

/// The value of `name: value` in a binary's output.
fn field<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(": ")))
        .unwrap_or_else(|| panic!("no `{name}:` in {out}"))
}

fn teragen(args: &[&str]) -> String {
    run_ok("teragen", args)
}

/// Runs teravalidate expecting failure; returns (stdout, the one stderr line).
fn teravalidate_fails(dir: &Path) -> (String, String) {
    let out = run("teravalidate", &["--input", s(dir)]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr.trim().to_owned())
}

fn write_records(path: &Path, records: &[u8]) -> PathBuf {
    std::fs::write(path, records).unwrap();
    path.to_owned()
}

#[test]
fn teragen_parts_equal_a_sequential_oracle() {
    let dir = tempfile::tempdir().unwrap();
    for (layout, oracle) in [("teragen", oracle_teragen(10_000)), ("gensort", oracle_gensort(10_000))] {
        let out = dir.path().join(layout);
        let stdout =
            teragen(&["--records", "10000", "--output", s(&out), "--parts", "7", "--layout", layout]);
        let (bytes, names) = read_parts(&out);
        assert_eq!(names.len(), 7);
        assert_eq!(names[0], "part-00000.dat");
        assert_eq!(names[6], "part-00006.dat");
        assert!(bytes == oracle, "{layout}: the parts differ from the sequential oracle");
        assert!(out.join("_SUCCESS").exists());
        assert_eq!(field(&stdout, "records"), "10000");
        assert_eq!(field(&stdout, "checksum"), checksum(&oracle));
    }
    // More parts than records: empty parts, same bytes.
    let out = dir.path().join("sparse");
    teragen(&["--records", "3", "--output", s(&out), "--parts", "5"]);
    let (bytes, names) = read_parts(&out);
    assert_eq!(names.len(), 5);
    assert_eq!(bytes, oracle_teragen(3));
}

#[test]
fn start_gives_the_tail_of_a_larger_run() {
    let dir = tempfile::tempdir().unwrap();
    for layout in ["teragen", "gensort"] {
        let whole = dir.path().join(format!("{layout}-whole"));
        teragen(&["-n", "1000", "-o", s(&whole), "--parts", "3", "--layout", layout]);
        let tail = dir.path().join(format!("{layout}-tail"));
        teragen(&["-n", "400", "-o", s(&tail), "--parts", "2", "--start", "600", "--layout", layout]);
        assert_eq!(read_parts(&tail).0, read_parts(&whole).0[600 * 100..], "{layout}");
    }
    // Far out in the sequence (past 2^64) the same holds; the record number is in the record.
    let start: u128 = (1 << 100) + 12_345;
    let (whole, tail) = (dir.path().join("far-whole"), dir.path().join("far-tail"));
    teragen(&["-n", "50", "-o", s(&whole), "--parts", "2", "--start", &start.to_string()]);
    teragen(&["-n", "20", "-o", s(&tail), "--start", &(start + 30).to_string()]);
    let (whole, tail) = (read_parts(&whole).0, read_parts(&tail).0);
    assert_eq!(tail, whole[30 * 100..]);
    assert_eq!(&tail[12..44], format!("{:032X}", start + 30).as_bytes());
}

#[test]
fn checksum_survives_sorting_and_only_sorted_output_validates() {
    let dir = tempfile::tempdir().unwrap();
    let unsorted = dir.path().join("unsorted");
    let generated = teragen(&["-n", "10000", "-o", s(&unsorted), "--parts", "3"]);
    let (records, names) = read_parts(&unsorted);
    let expected_sum = checksum(&records);
    assert_eq!(field(&generated, "checksum"), expected_sum);

    // Unsorted: fails naming the first record whose key is below its predecessor's.
    let first =
        (1..10_000).find(|&i| records[i * 100..i * 100 + 10] < records[(i - 1) * 100..i * 100 - 90]).unwrap();
    let bounds = [0, 3333, 6666, 10_000]; // parts of 3333, 3333 and 3334 records
    let file = bounds.iter().rposition(|&b| b <= first).unwrap();
    let index = first - bounds[file];
    let (stdout, err) = teravalidate_fails(&unsorted);
    assert_eq!(field(&stdout, "records"), "10000");
    assert_eq!(field(&stdout, "checksum"), expected_sum);
    assert_eq!(field(&stdout, "order"), "FAILED");
    let path = unsorted.join(&names[file]);
    assert!(
        err.contains(&format!("{} record {index} (record {first} overall)", s(&path))),
        "{err} should name record {first}"
    );

    // Sorted (records as 100-byte chunks, by their whole bytes), split over two files.
    let mut chunks: Vec<&[u8]> = records.chunks(100).collect();
    chunks.sort_unstable();
    let sorted_bytes = chunks.concat();
    let sorted = dir.path().join("sorted");
    std::fs::create_dir(&sorted).unwrap();
    write_records(&sorted.join("a.dat"), &sorted_bytes[..4321 * 100]);
    write_records(&sorted.join("b.dat"), &sorted_bytes[4321 * 100..]);
    std::fs::write(sorted.join(".hidden"), b"not records").unwrap();
    std::fs::write(sorted.join("_SUCCESS"), b"").unwrap();
    let stdout = run_ok("teravalidate", &["--input", s(&sorted)]);
    assert_eq!(field(&stdout, "records"), "10000");
    assert_eq!(field(&stdout, "checksum"), expected_sum);
    assert_eq!(field(&stdout, "duplicate keys"), "0");
    assert_eq!(field(&stdout, "order"), "ok");
}

#[test]
fn a_disorder_at_a_file_boundary_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let record = |key: u8| {
        let mut r = vec![b'x'; 100];
        r[..10].fill(key);
        r
    };
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    write_records(&input.join("part-0"), &[record(1), record(5), record(9)].concat());
    let second = write_records(&input.join("part-1"), &[record(8), record(10)].concat());
    let (stdout, err) = teravalidate_fails(&input);
    assert_eq!(field(&stdout, "unordered records"), "1");
    assert!(err.contains(&format!("{} record 0 (record 3 overall)", s(&second))), "{err}");
    assert!(
        err.contains("key 08080808080808080808") && err.contains("previous key 09090909090909090909"),
        "{err}"
    );
}

#[test]
fn duplicate_keys_are_counted_within_and_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let record = |key: u8, fill: u8| {
        let mut r = vec![fill; 100];
        r[..10].fill(key);
        r[9] = 0xff; // unsigned order: 0xff sorts after 0x7f
        r
    };
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    // Keys 1 1 1 | 2 ; 2 3 3 0x80: duplicates 2 + 0 + (boundary 1) + 1 = 4.
    let first = [record(1, b'a'), record(1, b'b'), record(1, b'c'), record(2, b'a')].concat();
    let second = [record(2, b'b'), record(3, b'a'), record(3, b'a'), record(0x80, b'z')].concat();
    write_records(&input.join("1.dat"), &first);
    write_records(&input.join("2.dat"), &second);
    write_records(&input.join("3.dat"), &[]); // empty files are allowed
    let stdout = run_ok("teravalidate", &["--input", s(&input)]);
    assert_eq!(field(&stdout, "records"), "8");
    assert_eq!(field(&stdout, "duplicate keys"), "4");
    assert_eq!(field(&stdout, "order"), "ok");
    assert_eq!(field(&stdout, "checksum"), checksum(&[first, second].concat()));
}

#[test]
fn a_partial_record_fails_naming_the_file_and_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    teragen(&["-n", "10", "-o", s(&input), "--parts", "2"]);
    let bad = input.join("part-00001.dat");
    let mut bytes = std::fs::read(&bad).unwrap();
    bytes.truncate(250);
    std::fs::write(&bad, bytes).unwrap();
    let (stdout, err) = teravalidate_fails(&input);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(err.contains(s(&bad)) && err.contains("size 250 bytes"), "{err}");

    let err = run_err("teravalidate", &["--input", s(&dir.path().join("missing"))]);
    assert!(err.starts_with("error: input not found"), "{err}");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = run_err("teravalidate", &["--input", s(&empty)]);
    assert!(err.contains("no records to validate"), "{err}");
}

#[test]
fn teragen_refuses_a_non_empty_output_unless_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    teragen(&["-n", "100", "-o", s(&out), "--parts", "4"]);
    let err = run_err("teragen", &["-n", "100", "-o", s(&out)]);
    assert!(err.starts_with("error: ") && err.contains("not empty") && err.contains("--overwrite"), "{err}");

    // --overwrite replaces the earlier output entirely: no stale part files remain.
    teragen(&["-n", "100", "-o", s(&out), "--parts", "2", "--start", "7", "--overwrite"]);
    let (bytes, names) = read_parts(&out);
    assert_eq!(names, ["part-00000.dat", "part-00001.dat"]);
    assert_eq!(bytes, oracle_teragen(107)[700..]);

    // ... but never deletes a file teragen did not write.
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let err = run_err("teragen", &["-n", "100", "-o", s(&out), "--overwrite"]);
    assert!(err.contains("notes.txt"), "{err}");
    assert!(out.join("notes.txt").exists() && out.join("part-00000.dat").exists());

    let err =
        run_err("teragen", &["-n", "2", "-o", s(&dir.path().join("x")), "--start", &u128::MAX.to_string()]);
    assert!(err.contains("past the last record number"), "{err}");
}

/// A published valsort result for 1,000,000 records of gensort's (1.3+) binary mode:
/// "Records: 1000000   Checksum: 7a0e0d4868cd4" (GenSort 100 MB input, sorted output).
#[test]
fn known_answer_one_million_gensort_records() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let stdout = teragen(&["-n", "1000000", "-o", s(&out), "--parts", "3", "--layout", "gensort"]);
    let expected = format!("{:0>32}", "7a0e0d4868cd4");
    assert_eq!(field(&stdout, "checksum"), expected);
    let (stdout, _) = teravalidate_fails(&out);
    assert_eq!(field(&stdout, "records"), "1000000");
    assert_eq!(field(&stdout, "checksum"), expected);

    // TeraSort end to end: the sorted output validates, with the input's checksum (the
    // published one), spilling under a small memory limit.
    let sorted = dir.path().join("sorted");
    run_ok("terasort", &["-i", s(&out), "-o", s(&sorted), "--reducers", "3", "--memory-limit", "32MiB"]);
    let validate =
        std::process::Command::new(bin("teravalidate")).args(["--input", s(&sorted)]).output().unwrap();
    let stdout = String::from_utf8(validate.stdout).unwrap();
    assert!(validate.status.success(), "{stdout} {}", String::from_utf8_lossy(&validate.stderr));
    assert_eq!(field(&stdout, "records"), "1000000");
    assert_eq!(field(&stdout, "checksum"), expected);
    assert_eq!(field(&stdout, "order"), "ok");
}
