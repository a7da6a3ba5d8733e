//! `teragen`: writes records `start .. start + records` into part files, one part per slice
//! of record numbers, the parts generated in parallel (each skips ahead to its first record).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::TeraError;
use super::record::{Checksum, Layout, RECORD_LEN, RecordGenerator};

/// The name of the marker written last, once every part is complete.
pub const SUCCESS_FILE: &str = "_SUCCESS";

/// Records generated per buffer: about 1 MiB per write.
const BATCH_RECORDS: usize = 10_486;

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenSpec {
    /// How many records.
    pub records: u64,
    /// The number of the first record (gensort's `-b`).
    pub start: u128,
    /// How many part files (at least 1; parts may be empty when there are fewer records).
    pub parts: usize,
    /// The record layout.
    pub layout: Layout,
    /// Replace an earlier teragen output in the directory instead of refusing it.
    pub overwrite: bool,
}

impl GenSpec {
    /// `records` records from record 0, one part per thread of the current rayon pool,
    /// TeraGen's layout.
    pub fn new(records: u64) -> Self {
        GenSpec {
            records,
            start: 0,
            parts: rayon::current_num_threads(),
            layout: Layout::default(),
            overwrite: false,
        }
    }

    /// Starts at record number `start`.
    pub fn with_start(mut self, start: u128) -> Self {
        self.start = start;
        self
    }

    /// Writes `parts` part files.
    pub fn with_parts(mut self, parts: usize) -> Self {
        self.parts = parts;
        self
    }

    /// Uses `layout`.
    pub fn with_layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// Replaces an earlier teragen output.
    pub fn with_overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    /// The records of each part, in order: part `i` holds
    /// `start + records * i / parts .. start + records * (i + 1) / parts`.
    pub fn part_ranges(&self) -> Vec<PartRange> {
        let (n, p) = (u128::from(self.records), self.parts.max(1) as u128);
        (0..p)
            .map(|i| {
                let (lo, hi) = (n * i / p, n * (i + 1) / p);
                PartRange { first: self.start.wrapping_add(lo), count: (hi - lo) as u64 }
            })
            .collect()
    }

    fn check(&self) -> Result<(), TeraError> {
        if self.parts == 0 {
            return Err(TeraError::NoParts);
        }
        if self.records > 0 && self.start.checked_add(u128::from(self.records) - 1).is_none() {
            return Err(TeraError::RecordRange { start: self.start, records: self.records });
        }
        Ok(())
    }
}

/// The records of one part file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartRange {
    /// The number of its first record.
    pub first: u128,
    /// How many records.
    pub count: u64,
}

/// What [`teragen`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generated {
    /// Records written.
    pub records: u64,
    /// Bytes written (100 per record).
    pub bytes: u64,
    /// valsort's checksum of the records.
    pub checksum: Checksum,
    /// The part files, in record order.
    pub files: Vec<PathBuf>,
}

/// The name of part `index` of `parts`: `part-00000.dat`, zero-padded to at least five
/// digits and to the width of the last index, so that sorted names give record order.
pub fn part_name(index: usize, parts: usize) -> String {
    let width = parts.saturating_sub(1).to_string().len().max(5);
    format!("part-{index:0width$}.dat")
}

/// Writes the records of `spec` into `dir` (created if missing): the part files in
/// parallel on the current rayon pool, then `_SUCCESS`.
///
/// An existing non-empty `dir` is refused unless `spec.overwrite`; even then only an
/// earlier teragen output (part files and `_SUCCESS`) is replaced, never other files.
pub fn teragen(dir: &Path, spec: &GenSpec) -> Result<Generated, TeraError> {
    spec.check()?;
    prepare_output(dir, spec.overwrite)?;
    let ranges = spec.part_ranges();
    let files: Vec<PathBuf> = (0..ranges.len()).map(|i| dir.join(part_name(i, ranges.len()))).collect();
    let checksums = ranges
        .par_iter()
        .zip(&files)
        .with_max_len(1)
        .map(|(range, path)| write_part(path, spec.layout, *range))
        .collect::<Result<Vec<_>, _>>()?;
    let checksum = checksums.into_iter().fold(Checksum::default(), Checksum::combine);
    let generated =
        Generated { records: spec.records, bytes: spec.records * RECORD_LEN as u64, checksum, files };
    let success = dir.join(SUCCESS_FILE);
    let summary = format!(
        "{{\"records\": {}, \"start\": \"{}\", \"parts\": {}, \"layout\": \"{}\", \"checksum\": \"{}\"}}\n",
        spec.records,
        spec.start,
        spec.parts,
        spec.layout.name(),
        checksum
    );
    std::fs::write(&success, summary).map_err(|e| TeraError::io("write", &success, e))?;
    Ok(generated)
}

/// Creates `dir`, or checks that it may be written: empty, or (with `overwrite`) holding
/// only an earlier teragen output, which is removed.
fn prepare_output(dir: &Path, overwrite: bool) -> Result<(), TeraError> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return std::fs::create_dir_all(dir).map_err(|e| TeraError::io("create", dir, e));
        }
        Err(e) => return Err(TeraError::io("read", dir, e)),
        Ok(meta) if !meta.is_dir() => return Err(TeraError::NotADirectory { path: dir.to_owned() }),
        Ok(_) => {}
    }
    let mut ours = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| TeraError::io("read", dir, e))? {
        let entry = entry.map_err(|e| TeraError::io("read", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !overwrite {
            return Err(TeraError::OutputNotEmpty { path: dir.to_owned() });
        }
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if !(is_file && is_teragen_file(&name)) {
            return Err(TeraError::ForeignFile { path: dir.to_owned(), file: name });
        }
        ours.push(entry.path());
    }
    for path in ours {
        std::fs::remove_file(&path).map_err(|e| TeraError::io("remove", &path, e))?;
    }
    Ok(())
}

/// Whether `name` is one that [`teragen`] writes.
fn is_teragen_file(name: &str) -> bool {
    name == SUCCESS_FILE
        || name
            .strip_prefix("part-")
            .and_then(|rest| rest.strip_suffix(".dat"))
            .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// Writes one part file; returns the checksum of its records.
fn write_part(path: &Path, layout: Layout, range: PartRange) -> Result<Checksum, TeraError> {
    let mut file = File::create(path).map_err(|e| TeraError::io("create", path, e))?;
    let mut generator = RecordGenerator::new(layout, range.first);
    let mut buffer = vec![0u8; BATCH_RECORDS.min(range.count as usize) * RECORD_LEN];
    let mut checksum = Checksum::default();
    let mut left = range.count;
    while left > 0 {
        let n = (left as usize).min(BATCH_RECORDS);
        let batch = &mut buffer[..n * RECORD_LEN];
        generator.fill(batch);
        checksum.add_records(batch);
        file.write_all(batch).map_err(|e| TeraError::io("write", path, e))?;
        left -= n as u64;
    }
    Ok(checksum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_ranges_cover_the_records_in_order() {
        for (records, parts) in [(0u64, 3usize), (1, 4), (10, 3), (10_000, 7), (5, 5)] {
            let ranges = GenSpec::new(records).with_start(40).with_parts(parts).part_ranges();
            assert_eq!(ranges.len(), parts);
            let mut next = 40u128;
            for r in &ranges {
                assert_eq!(r.first, next);
                next += u128::from(r.count);
            }
            assert_eq!(next, 40 + u128::from(records));
            let (min, max) = (ranges.iter().map(|r| r.count).min(), ranges.iter().map(|r| r.count).max());
            assert!(max.unwrap() - min.unwrap() <= 1, "{records}/{parts}: {ranges:?}");
        }
    }

    #[test]
    fn part_names_sort_in_part_order() {
        assert_eq!(part_name(0, 4), "part-00000.dat");
        assert_eq!(part_name(123_456, 200_000), "part-123456.dat");
        let names: Vec<_> = (0..200_000).step_by(9_999).map(|i| part_name(i, 200_000)).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]));
        assert!(is_teragen_file("part-00012.dat") && is_teragen_file(SUCCESS_FILE));
        assert!(!is_teragen_file("part-.dat") && !is_teragen_file("part-1.txt") && !is_teragen_file("notes"));
    }

    #[test]
    fn the_last_record_number_is_checked() {
        let spec = GenSpec::new(2).with_start(u128::MAX);
        assert!(matches!(spec.check(), Err(TeraError::RecordRange { .. })));
        assert!(GenSpec::new(1).with_start(u128::MAX).check().is_ok());
        assert!(matches!(GenSpec::new(1).with_parts(0).check(), Err(TeraError::NoParts)));
    }
}
