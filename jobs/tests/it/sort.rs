//! TeraSort in local mode: global order across part files, every record kept, with and
//! without spilling; bad record files.

use gristmill_jobs::sample::SplitMix64;

use crate::support::*;

/// `n` random 100-byte records (a few with equal keys) in `files` files.
fn write_records(dir: &std::path::Path, n: usize, files: usize) -> Vec<[u8; 100]> {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = SplitMix64::new(5);
    let records: Vec<[u8; 100]> = (0..n)
        .map(|i| {
            let mut r = [0u8; 100];
            for chunk in r.chunks_mut(8) {
                let bytes = rng.next_u64().to_le_bytes();
                chunk.copy_from_slice(&bytes[..chunk.len()]);
            }
            if i % 97 == 0 {
                r[..10].copy_from_slice(b"duplicate!");
            }
            r
        })
        .collect();
    for (f, chunk) in records.chunks(n.div_ceil(files)).enumerate() {
        std::fs::write(dir.join(format!("part-{f:05}.dat")), chunk.concat()).unwrap();
    }
    records
}

/// The part files of a committed output, concatenated in name (= partition) order.
fn sorted_output(dir: &std::path::Path) -> (Vec<u8>, gristmill::output::Manifest) {
    let (manifest, names) = read_committed_raw(dir);
    (names.iter().flat_map(|name| std::fs::read(dir.join(name)).unwrap()).collect(), manifest)
}

/// The manifest and part names of a raw-record output, checking `_SUCCESS` lists exactly
/// the files present and their sizes match the row counts.
fn read_committed_raw(dir: &std::path::Path) -> (gristmill::output::Manifest, Vec<String>) {
    let manifest: gristmill::output::Manifest =
        serde_json::from_slice(&std::fs::read(dir.join("_SUCCESS")).unwrap()).unwrap();
    let mut present: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "_SUCCESS")
        .collect();
    present.sort();
    let listed: Vec<String> = manifest.files.iter().map(|f| f.name.clone()).collect();
    assert_eq!(present, listed);
    for (file, name) in manifest.files.iter().zip(&listed) {
        let size = std::fs::metadata(dir.join(name)).unwrap().len();
        assert_eq!(size, file.rows * 100, "{name} holds its rows as raw 100-byte records");
    }
    (manifest, listed)
}

#[test]
fn terasort_orders_records_globally_with_and_without_spilling() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let mut records = write_records(&input, 20_000, 3);
    records.sort_by(|a, b| a[..10].cmp(&b[..10]));
    let expected: Vec<u8> = records.concat();
    for (name, extra) in [("memory", vec![]), ("spill", vec!["--memory-limit", "1MiB"])] {
        let out = dir.path().join(name);
        let mut args = vec!["-i", s(&input), "-o", s(&out), "--reducers", "4", "--split-size", "300000"];
        args.extend(extra);
        run_ok("terasort", &args);
        let (got, manifest) = sorted_output(&out);
        assert_eq!(got.len(), expected.len());
        // Equal keys may come in any order; compare keys in order and the multiset of records.
        let keys = |data: &[u8]| data.chunks(100).map(|r| r[..10].to_vec()).collect::<Vec<_>>();
        assert_eq!(keys(&got), keys(&expected), "{name}: global key order");
        let mut got_records: Vec<&[u8]> = got.chunks(100).collect();
        got_records.sort();
        let mut want: Vec<&[u8]> = expected.chunks(100).collect();
        want.sort();
        assert_eq!(got_records, want, "{name}: every record exactly once");
        assert_eq!(manifest.files.len(), 4);
        assert!(manifest.files.iter().all(|f| f.rows > 2000), "sampled ranges balance the partitions");
        if name == "spill" {
            assert!(manifest.counters.get("spilled_bytes") > 0);
        }
    }
}

#[test]
fn a_record_file_of_the_wrong_size_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    write_records(&input, 10, 1);
    let bad = input.join("part-00001.dat");
    std::fs::write(&bad, [0u8; 150]).unwrap();
    let out = dir.path().join("out");
    let err = run_err("terasort", &["-i", s(&input), "-o", s(&out)]);
    assert!(err.contains(s(&bad)) && err.contains("not a multiple of the 100-byte record size"), "{err}");
    assert!(!out.join("_SUCCESS").exists());
}
