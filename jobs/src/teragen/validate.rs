//! `teravalidate`: checks that the records of a directory's files, taken in sorted file-name
//! order, have non-decreasing keys, and computes valsort's record count, checksum and
//! duplicate-key count.
//!
//! The files are cut into chunks of whole records that are summarized in parallel (count,
//! checksum, duplicates and disorders inside the chunk, first and last key), then the
//! summaries are joined in order, comparing each chunk's first key with the previous
//! chunk's last key: valsort's partition summaries.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::TeraError;
use super::record::{Checksum, KEY_LEN, Key, RECORD_LEN, key_of};

/// Records per chunk summarized by one task (32 MB).
const CHUNK_RECORDS: u64 = 320_000;
/// Records per read (4 MB).
const READ_RECORDS: u64 = 40_000;

/// The outcome of validating a sequence of record files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validation {
    /// Files read, in order.
    pub files: Vec<PathBuf>,
    /// Records read.
    pub records: u64,
    /// valsort's checksum of the records.
    pub checksum: Checksum,
    /// Records whose key equals the previous record's key (valsort's count).
    pub duplicate_keys: u64,
    /// Records whose key is below the previous record's key.
    pub unordered_records: u64,
    /// The first of those, if any.
    pub first_disorder: Option<Disorder>,
}

impl Validation {
    /// Whether the keys never decrease.
    pub fn is_ordered(&self) -> bool {
        self.unordered_records == 0
    }
}

/// A record whose key is below its predecessor's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disorder {
    /// The file holding the record.
    pub file: PathBuf,
    /// Its index in that file (0-based).
    pub index: u64,
    /// Its index among all records (0-based, valsort's "first unordered record").
    pub record: u64,
    /// Its key.
    pub key: Key,
    /// The previous record's key (possibly the last record of an earlier file).
    pub previous_key: Key,
}

/// Lowercase hex of a key, for messages.
pub fn key_hex(key: &Key) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// The files [`validate_dir`] reads: every file of `dir` whose name does not start with `.`
/// or `_`, sorted by name. A subdirectory is an error, not skipped.
pub fn record_files(dir: &Path) -> Result<Vec<PathBuf>, TeraError> {
    let meta = std::fs::metadata(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TeraError::InputNotFound { path: dir.to_owned() },
        _ => TeraError::io("read", dir, e),
    })?;
    if !meta.is_dir() {
        return Err(TeraError::NotADirectory { path: dir.to_owned() });
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| TeraError::io("read", dir, e))? {
        let entry = entry.map_err(|e| TeraError::io("read", dir, e))?;
        let name = entry.file_name();
        if name.as_encoded_bytes().first().is_some_and(|b| *b == b'.' || *b == b'_') {
            continue;
        }
        names.push(name);
    }
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let path = dir.join(name);
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => Err(TeraError::NestedDirectory { path }),
                Ok(_) => Ok(path),
                Err(e) => Err(TeraError::io("read", &path, e)),
            }
        })
        .collect()
}

/// Validates the record files of `dir` (see [`record_files`]) on the current rayon pool.
pub fn validate_dir(dir: &Path) -> Result<Validation, TeraError> {
    let files = record_files(dir)?;
    if files.is_empty() {
        return Err(TeraError::NoRecords { path: dir.to_owned() });
    }
    validate_files(&files)
}

/// Validates `files` as one sequence of records, in the order given. Every file's size
/// must be a whole number of records; this is checked before any record is read.
pub fn validate_files(files: &[PathBuf]) -> Result<Validation, TeraError> {
    let mut chunks = Vec::new();
    for (file, path) in files.iter().enumerate() {
        let size = std::fs::metadata(path).map_err(|e| TeraError::io("read", path, e))?.len();
        if size % RECORD_LEN as u64 != 0 {
            return Err(TeraError::PartialRecord { path: path.clone(), size });
        }
        let records = size / RECORD_LEN as u64;
        chunks.extend((0..records).step_by(CHUNK_RECORDS as usize).map(|first| Chunk {
            file,
            first,
            count: CHUNK_RECORDS.min(records - first),
        }));
    }
    let summaries: Vec<Summary> = chunks
        .par_iter()
        .with_max_len(1)
        .map(|chunk| summarize(&files[chunk.file], chunk))
        .collect::<Result<_, _>>()?;

    let mut v = Validation {
        files: files.to_vec(),
        records: 0,
        checksum: Checksum::default(),
        duplicate_keys: 0,
        unordered_records: 0,
        first_disorder: None,
    };
    let mut previous: Option<Key> = None;
    for (chunk, s) in chunks.iter().zip(summaries) {
        let disorder = |index: u64, previous_key: Key, key: Key| Disorder {
            file: files[chunk.file].clone(),
            index: chunk.first + index,
            record: v.records + index,
            key,
            previous_key,
        };
        if let Some(p) = previous {
            if p == s.first_key {
                v.duplicate_keys += 1;
            } else if p > s.first_key {
                v.unordered_records += 1;
                if v.first_disorder.is_none() {
                    v.first_disorder = Some(disorder(0, p, s.first_key));
                }
            }
        }
        if v.first_disorder.is_none() {
            v.first_disorder = s.first_disorder.map(|(i, p, k)| disorder(i, p, k));
        }
        v.duplicate_keys += s.duplicate_keys;
        v.unordered_records += s.unordered_records;
        v.checksum = v.checksum.combine(s.checksum);
        v.records += s.records;
        previous = Some(s.last_key);
    }
    if v.records == 0 {
        return Err(TeraError::NoRecords { path: files[0].parent().unwrap_or(Path::new("")).to_owned() });
    }
    Ok(v)
}

/// `count` records of file number `file` from its record `first` on.
#[derive(Clone, Copy, Debug)]
struct Chunk {
    file: usize,
    first: u64,
    count: u64,
}

/// What a chunk holds, for joining with its neighbours.
struct Summary {
    records: u64,
    checksum: Checksum,
    duplicate_keys: u64,
    unordered_records: u64,
    /// The first disorder inside the chunk: (index in the chunk, previous key, key).
    first_disorder: Option<(u64, Key, Key)>,
    first_key: Key,
    last_key: Key,
}

fn summarize(path: &Path, chunk: &Chunk) -> Result<Summary, TeraError> {
    let read_err = |e| TeraError::io("read", path, e);
    let mut file = File::open(path).map_err(read_err)?;
    file.seek(SeekFrom::Start(chunk.first * RECORD_LEN as u64)).map_err(read_err)?;
    let mut buffer = vec![0u8; (READ_RECORDS.min(chunk.count) as usize) * RECORD_LEN];
    let mut s = Summary {
        records: 0,
        checksum: Checksum::default(),
        duplicate_keys: 0,
        unordered_records: 0,
        first_disorder: None,
        first_key: [0; KEY_LEN],
        last_key: [0; KEY_LEN],
    };
    let mut previous: Option<Key> = None;
    while s.records < chunk.count {
        let n = READ_RECORDS.min(chunk.count - s.records) as usize;
        let batch = &mut buffer[..n * RECORD_LEN];
        file.read_exact(batch).map_err(read_err)?;
        for record in batch.chunks_exact(RECORD_LEN) {
            let key = key_of(record);
            match previous {
                None => s.first_key = key,
                Some(p) if p == key => s.duplicate_keys += 1,
                Some(p) if p > key => {
                    s.unordered_records += 1;
                    s.first_disorder.get_or_insert((s.records, p, key));
                }
                Some(_) => {}
            }
            s.checksum.add_record(record);
            previous = Some(key);
            s.records += 1;
        }
    }
    s.last_key = previous.unwrap_or_default();
    Ok(s)
}
