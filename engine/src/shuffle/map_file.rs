//! Map output on a worker's disk (cluster mode), Hadoop's `file.out` + `file.out.index`:
//! one data file per map attempt holding each partition's rows as one sorted Arrow IPC
//! stream, and an index of (offset, length, CRC-32, rows) per partition. The index is
//! written last and renamed into place, so a complete index means a complete output.
//!
//! A job's map outputs live in a directory named after the job's id and its secret
//! ([`job_shuffle_dir`]): only the job's own tasks, and the shuffle service checking the
//! secret, can name it. The shuffle directory itself is traversable but not listable
//! ([`restrict_shuffle_root`]), and job directories are private to the worker's user.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::spill::batch_rows_like;
use super::{KeyEncoder, MERGE_CHUNK_ROWS, MergeSpace, Run, RunMerger, compact_views};
use crate::error::{Error, Result, is_disk_full};
use crate::ids::{AttemptId, JobId};
use crate::security::JobSecret;
use crate::storage::{DirectFile, DirectReader};

/// Where one partition's rows are in a map output's data file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Byte offset in the data file.
    pub offset: u64,
    /// Length in bytes (0: no rows).
    pub len: u64,
    /// CRC-32 (IEEE) of those bytes.
    pub crc32: u32,
    /// Rows in it.
    pub rows: u64,
}

/// The index of one map output: a segment per partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapOutputIndex {
    /// `partitions[p]` is partition `p`'s segment.
    pub partitions: Vec<Segment>,
}

impl MapOutputIndex {
    /// Bytes of the data file.
    pub fn bytes(&self) -> u64 {
        self.partitions.iter().map(|s| s.len).sum()
    }
}

/// The files of one map attempt's output under a worker's shuffle directory.
#[derive(Clone, Debug)]
pub struct MapOutputFiles {
    /// The data file.
    pub data: PathBuf,
    /// The index file.
    pub index: PathBuf,
}

impl MapOutputFiles {
    /// The files of `attempt` of map task `map_task` of `job` (whose secret is `secret`)
    /// under `shuffle_dir`. With another secret, the files are in another directory.
    pub fn new(
        shuffle_dir: &Path,
        job: &JobId,
        secret: &JobSecret,
        map_task: u32,
        attempt: AttemptId,
    ) -> Self {
        let dir = job_shuffle_dir(shuffle_dir, job, secret);
        MapOutputFiles {
            data: dir.join(format!("m{map_task:06}-{attempt}.data")),
            index: dir.join(format!("m{map_task:06}-{attempt}.index")),
        }
    }

    /// Reads the index; fails if the output is incomplete or missing.
    pub fn read_index(&self) -> Result<MapOutputIndex> {
        let text = std::fs::read(&self.index).map_err(|e| fail(&self.index, e))?;
        serde_json::from_slice(&text).map_err(|e| fail(&self.index, e))
    }
}

/// A job's directory under a worker's shuffle directory (removed when the job ends):
/// `<job id>.<tag>`, the tag 16 hex digits of SHA-256 of the job's secret (domain
/// separated), so a task of another job cannot compute it.
pub fn job_shuffle_dir(shuffle_dir: &Path, job: &JobId, secret: &JobSecret) -> PathBuf {
    shuffle_dir.join(format!("{job}.{}", dir_tag(secret)))
}

/// The tag of a job's shuffle directory name.
fn dir_tag(secret: &JobSecret) -> String {
    let digest =
        Sha256::new().chain_update(b"gristmill-shuffle-dir").chain_update(secret.expose()).finalize();
    digest[..DIR_TAG_HEX / 2].iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex digits of the tag in a job's shuffle directory name.
const DIR_TAG_HEX: usize = 16;

/// True for `name` naming a shuffle directory of job `job` (whatever its secret).
pub(super) fn is_job_dir_name(name: &str, job: &str) -> bool {
    name.strip_prefix(job).and_then(|rest| rest.strip_prefix('.')).is_some_and(|tag| {
        tag.len() == DIR_TAG_HEX && tag.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Removes every shuffle directory of job `job` under `shuffle_dir` (the worker lists its
/// own directory: it may no longer know the job's secret); returns how many it removed.
pub fn remove_job_shuffle_dirs(shuffle_dir: &Path, job: &str) -> std::io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(shuffle_dir)? {
        let entry = entry?;
        if entry.file_name().to_str().is_some_and(|name| is_job_dir_name(name, job)) {
            std::fs::remove_dir_all(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Makes a worker's shuffle directory at most traversable by other users, never listable
/// (`0711` from `0755`; a private `0700` stays so), so nobody discovers the job
/// directories in it by listing.
pub fn restrict_shuffle_root(shuffle_dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(shuffle_dir)?.permissions().mode();
        std::fs::set_permissions(shuffle_dir, std::fs::Permissions::from_mode(mode & 0o7711))?;
    }
    #[cfg(not(unix))]
    let _ = shuffle_dir;
    Ok(())
}

/// Creates a job's shuffle directory (and any missing parent) private to this user (`0700`).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn fail(path: &Path, cause: impl std::fmt::Display) -> Error {
    Error::Shuffle { what: path.display().to_string(), cause: cause.to_string() }
}

/// A failed write of map output; a full disk is told apart (the attempt's own failure).
fn write_failed(path: &Path, error: std::io::Error) -> Error {
    if is_disk_full(&error) {
        Error::local_disk(path.display().to_string(), error)
    } else {
        fail(path, error)
    }
}

/// Names `path` in a failure of writing a partition, keeping a full disk's kind.
fn partition_failed(path: &Path, error: Error) -> Error {
    match error {
        Error::DiskFull { cause, .. } => Error::DiskFull { path: path.display().to_string(), cause },
        error => fail(path, error),
    }
}

/// Counts and checksums what passes through to the data file.
struct Checksummed<W: Write> {
    inner: W,
    bytes: u64,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a map attempt's output: the runs of each partition (`runs[p]`, each sorted by
/// the key) merged into one sorted stream per partition, in passes within `merge`'s budget.
/// With `compress`, buffers are LZ4-compressed where that shrinks them (a sample of the
/// first batch is compressed to see); without, never (every reader is on this host: the
/// bytes never cross a network, and compressing would cost CPU on both sides).
pub fn write_map_output(
    files: &MapOutputFiles,
    schema: &SchemaRef,
    key_columns: &[usize],
    runs: Vec<Vec<Run>>,
    merge: &MergeSpace,
    compress: bool,
) -> Result<MapOutputIndex> {
    if let Some(dir) = files.data.parent() {
        create_private_dir(dir).map_err(|e| write_failed(dir, e))?;
    }
    // Written directly (no page cache) under a staging name, then renamed; not synced: a
    // crash that cuts it fails its checksum where it is read, and the map runs again.
    let mut out = DirectFile::create(&files.data).map_err(|e| write_failed(&files.data, e))?.without_sync();
    let mut index = MapOutputIndex::default();
    let mut offset = 0u64;
    let mut compression = (!compress).then(IpcWriteOptions::default);
    for partition_runs in runs {
        let mut sink = Checksummed { inner: &mut out, bytes: 0, crc: crc32fast::Hasher::new() };
        let rows = merge
            .reduce_runs(schema, key_columns, partition_runs)
            .and_then(|runs| write_partition(&mut sink, schema, key_columns, runs, &mut compression))
            .map_err(|e| partition_failed(&files.data, e))?;
        let (len, crc32) = (sink.bytes, sink.crc.finalize());
        index.partitions.push(Segment { offset, len, crc32, rows });
        offset += len;
    }
    out.finish().map_err(|e| write_failed(&files.data, e))?;
    let tmp_index = files.index.with_extension("index.tmp");
    let json = serde_json::to_vec(&index).map_err(|e| fail(&tmp_index, e))?;
    std::fs::write(&tmp_index, json).map_err(|e| write_failed(&tmp_index, e))?;
    std::fs::rename(&tmp_index, &files.index).map_err(|e| write_failed(&files.index, e))?;
    Ok(index)
}

/// Writes one partition as an IPC stream (nothing at all when it has no rows). The first
/// partition with rows chooses the map output's `compression` from its first batch.
fn write_partition(
    sink: &mut impl Write,
    schema: &SchemaRef,
    key_columns: &[usize],
    runs: Vec<Run>,
    compression: &mut Option<IpcWriteOptions>,
) -> Result<u64> {
    let mut source = match &runs[..] {
        [] => return Ok(0),
        // One run is sorted already: copy it.
        [run] => PartitionSource::Run(run.clone().open()?),
        _ => {
            let encoder = KeyEncoder::new(schema, key_columns)?;
            PartitionSource::Merge(RunMerger::new(schema.clone(), encoder, runs, MERGE_CHUNK_ROWS)?)
        }
    };
    let Some(first) = source.next_batch()? else { return Ok(0) };
    let options = match compression {
        Some(options) => options.clone(),
        None => compression.insert(super::ipc_write_options_for(&first)?).clone(),
    };
    let ipc = |e: arrow::error::ArrowError| match e {
        arrow::error::ArrowError::IoError(_, io) if is_disk_full(&io) => {
            Error::DiskFull { path: String::new(), cause: io.to_string() }
        }
        e => Error::Internal(format!("writing map output: {e}")),
    };
    let mut writer = StreamWriter::try_new_with_options(sink, schema, options).map_err(ipc)?;
    let mut rows = 0u64;
    // In batches a reduce-side merge can hold one of per run.
    let step = batch_rows_like(&first);
    let mut next = Some(first);
    while let Some(batch) = next {
        rows += batch.num_rows() as u64;
        for offset in (0..batch.num_rows()).step_by(step) {
            let slice = batch.slice(offset, step.min(batch.num_rows() - offset));
            writer.write(&compact_views(&slice)?).map_err(ipc)?;
        }
        next = source.next_batch()?;
    }
    writer.finish().map_err(ipc)?;
    Ok(rows)
}

/// The sorted rows of one partition: its only run, or its runs merged.
enum PartitionSource {
    Run(super::RunReader),
    Merge(RunMerger),
}

impl PartitionSource {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        match self {
            PartitionSource::Run(reader) => reader.next_batch(),
            PartitionSource::Merge(merger) => Ok(merger.next_chunk()?.map(|chunk| chunk.batch)),
        }
    }
}

/// Opens the IPC stream at `offset..offset + len` of `path` for reading, batch by batch.
/// With `crc32` (map output read in place), the bytes are checked against it as they are
/// read, in the one pass the merge makes; fetched copies were checked on arrival.
pub fn open_segment(path: &Path, offset: u64, len: u64, crc32: Option<u32>) -> Result<SegmentReader> {
    let reader = DirectReader::open(path, offset..offset + len).map_err(|e| fail(path, e))?;
    let mismatch = Arc::new(AtomicBool::new(false));
    let verified = Verified {
        inner: reader,
        crc: crc32fast::Hasher::new(),
        left: len,
        expected: crc32,
        mismatch: mismatch.clone(),
    };
    let segment = crc32.map(|crc32| Segment { offset, len, crc32, rows: 0 });
    let mut reader = SegmentReader { stream: None, path: path.to_owned(), segment, mismatch };
    match StreamReader::try_new(verified, None) {
        Ok(stream) => reader.stream = Some(stream),
        Err(e) => return Err(reader.failed(e)),
    }
    Ok(reader)
}

/// Reads one partition's stream from a map output (or a fetched copy).
pub struct SegmentReader {
    /// `None` only while opening.
    stream: Option<StreamReader<Verified>>,
    path: PathBuf,
    /// The segment, when its checksum is known (read in place).
    segment: Option<Segment>,
    mismatch: Arc<AtomicBool>,
}

impl SegmentReader {
    /// The next batch, or `None` at the end of the stream.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let Some(stream) = &mut self.stream else { return Ok(None) };
        match stream.next().transpose() {
            Ok(batch) => Ok(batch),
            Err(e) => Err(self.failed(e)),
        }
    }

    /// A failed read: [`Error::CorruptMapOutput`] when the bytes do not match their
    /// checksum, found at the end of the stream, or (when the decoder choked on bad bytes
    /// first) by checking the whole segment now.
    fn failed(&self, cause: impl std::fmt::Display) -> Error {
        let corrupt = self.mismatch.load(Ordering::Relaxed)
            || self
                .segment
                .as_ref()
                .is_some_and(|s| read_segment_checked(&self.path, s, 1 << 20, |_, _| true).is_err());
        if corrupt {
            return Error::CorruptMapOutput {
                path: self.path.display().to_string(),
                cause: "CRC-32 mismatch".into(),
            };
        }
        fail(&self.path, cause)
    }
}

/// A segment's bytes, CRC-32 checked once the last one is read when a checksum is known.
pub struct Verified {
    inner: DirectReader,
    crc: crc32fast::Hasher,
    left: u64,
    expected: Option<u32>,
    mismatch: Arc<AtomicBool>,
}

impl Read for Verified {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let Some(expected) = self.expected else { return Ok(n) };
        self.crc.update(&buf[..n]);
        self.left = self.left.saturating_sub(n as u64);
        if self.left == 0 && std::mem::take(&mut self.crc).finalize() != expected {
            self.mismatch.store(true, Ordering::Relaxed);
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "CRC-32 mismatch"));
        }
        if self.left == 0 {
            self.expected = None;
        }
        Ok(n)
    }
}

/// Reads `segment` of `data` (for serving it) in chunks of `chunk_bytes`, the last one
/// shorter, handing each to `each` with its CRC-32; `each` returns false to stop. At the end
/// the segment's length and CRC-32 (combined from the chunks') are checked.
pub fn read_segment_checked(
    data: &Path,
    segment: &Segment,
    chunk_bytes: usize,
    mut each: impl FnMut(&[u8], u32) -> bool,
) -> Result<()> {
    let range = segment.offset..segment.offset + segment.len;
    let mut reader = DirectReader::open(data, range).map_err(|e| fail(data, e))?;
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; chunk_bytes.max(1)];
    let mut total = 0u64;
    loop {
        let n = read_full(&mut reader, &mut buf).map_err(|e| fail(data, e))?;
        if n == 0 {
            break;
        }
        let chunk_crc = crc32fast::hash(&buf[..n]);
        crc.combine(&crc32fast::Hasher::new_with_initial_len(chunk_crc, n as u64));
        total += n as u64;
        if !each(&buf[..n], chunk_crc) {
            return Ok(());
        }
    }
    if total != segment.len || crc.finalize() != segment.crc32 {
        return Err(fail(
            data,
            format!("segment at {} is corrupt (length or CRC-32 differs)", segment.offset),
        ));
    }
    Ok(())
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> JobSecret {
        JobSecret::from_string(text.to_owned())
    }

    #[test]
    fn a_full_disk_under_map_output_keeps_its_kind_and_names_the_file() {
        use crate::error::ErrorKind;
        let data = Path::new("/shuffle/j/m3.data");
        let full = write_failed(data, std::io::Error::from_raw_os_error(28));
        assert_eq!(full.kind(), ErrorKind::DiskFull);
        let inner = Error::DiskFull { path: String::new(), cause: "No space left on device".into() };
        let named = partition_failed(data, inner);
        assert!(matches!(&named, Error::DiskFull { path, .. } if path == "/shuffle/j/m3.data"), "{named:?}");
        let other = write_failed(data, std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert!(matches!(other, Error::Shuffle { .. }), "{other:?}");
    }

    /// Map output of one partition holding `rows` strings; its files and index.
    fn one_partition(dir: &Path, rows: usize) -> (MapOutputFiles, Segment) {
        one_partition_written(dir, rows, true)
    }

    fn one_partition_written(dir: &Path, rows: usize, compress: bool) -> (MapOutputFiles, Segment) {
        use arrow::array::StringArray;
        use arrow::datatypes::{DataType, Field, Schema};
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, false)]));
        let keys: Vec<String> = (0..rows).map(|i| format!("key-{i:06}")).collect();
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(keys))]).unwrap();
        let job = JobId::from_string("job-20260101T000000-0001".into());
        let files = MapOutputFiles::new(dir, &job, &secret("s"), 0, AttemptId(0));
        let spill = Arc::new(super::super::SpillDir::create(dir, &job).unwrap());
        let merge = MergeSpace { spill, budget: u64::MAX };
        let index = write_map_output(&files, &schema, &[0], vec![vec![Run::Memory(batch)]], &merge, compress)
            .unwrap();
        (files, index.partitions[0])
    }

    #[test]
    fn map_output_for_readers_on_this_host_only_is_not_compressed() {
        let (lz4, plain) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (lz4, compressed) = one_partition_written(lz4.path(), 20_000, true);
        let (plain, uncompressed) = one_partition_written(plain.path(), 20_000, false);
        assert!(
            compressed.len < uncompressed.len,
            "the keys compress, unless told not to: {} vs {} bytes",
            compressed.len,
            uncompressed.len
        );
        assert_eq!(read_all(&lz4, &compressed, Some(compressed.crc32)).unwrap(), 20_000);
        assert_eq!(read_all(&plain, &uncompressed, Some(uncompressed.crc32)).unwrap(), 20_000);
    }

    fn read_all(files: &MapOutputFiles, segment: &Segment, crc32: Option<u32>) -> Result<usize> {
        let mut reader = open_segment(&files.data, segment.offset, segment.len, crc32)?;
        let mut rows = 0;
        while let Some(batch) = reader.next_batch()? {
            rows += batch.num_rows();
        }
        Ok(rows)
    }

    #[test]
    fn map_output_read_in_place_is_checked_against_its_crc() {
        let dir = tempfile::tempdir().unwrap();
        let (files, segment) = one_partition(dir.path(), 20_000);
        assert_eq!(read_all(&files, &segment, Some(segment.crc32)).unwrap(), 20_000);

        // One flipped bit in the middle of the data.
        let mut bytes = std::fs::read(&files.data).unwrap();
        let middle = (segment.offset + segment.len / 2) as usize;
        bytes[middle] ^= 0x10;
        std::fs::write(&files.data, &bytes).unwrap();
        let err = read_all(&files, &segment, Some(segment.crc32)).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::CorruptMapOutput, "{err}");
        assert!(err.to_string().contains("CRC-32"), "{err}");

        // Bytes the IPC decoder trips on before the end: the segment is checked then.
        bytes[segment.offset as usize..segment.offset as usize + 16].fill(0xff);
        std::fs::write(&files.data, &bytes).unwrap();
        let err = read_all(&files, &segment, Some(segment.crc32)).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::CorruptMapOutput, "{err}");
        let unchecked = read_all(&files, &segment, None).unwrap_err();
        assert_eq!(unchecked.kind(), crate::error::ErrorKind::Io, "without a checksum: {unchecked}");
    }

    #[test]
    fn job_directories_depend_on_the_secret() {
        let root = Path::new("/shuffle");
        let job = JobId::from_string("j-1".into());
        let a = job_shuffle_dir(root, &job, &secret("one"));
        assert_eq!(a, job_shuffle_dir(root, &job, &secret("one")));
        assert_ne!(a, job_shuffle_dir(root, &job, &secret("two")));
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("j-1.") && name.len() == "j-1.".len() + DIR_TAG_HEX, "{name}");
        assert!(!name.contains("one"));
        assert_eq!(MapOutputFiles::new(root, &job, &secret("one"), 3, AttemptId(1)).data.parent(), Some(&*a));
    }

    #[test]
    fn a_job_s_directories_are_told_from_other_jobs() {
        let tag = dir_tag(&secret("s"));
        assert!(is_job_dir_name(&format!("j.{tag}"), "j"));
        assert!(!is_job_dir_name(&format!("j.b.{tag}"), "j"), "job j.b is another job");
        assert!(!is_job_dir_name(&format!("jj.{tag}"), "j"));
        assert!(!is_job_dir_name("j", "j"));
        assert!(!is_job_dir_name("j.0123456789ABCDEF", "j"));
    }

    #[cfg(unix)]
    #[test]
    fn directories_are_private_and_removed_by_job() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let chmod = |m| std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(m)).unwrap();
        chmod(0o755);
        restrict_shuffle_root(root.path()).unwrap();
        assert_eq!(mode(root.path()), 0o711);
        chmod(0o700);
        restrict_shuffle_root(root.path()).unwrap();
        assert_eq!(mode(root.path()), 0o700, "a private directory stays private");
        chmod(0o777);
        restrict_shuffle_root(root.path()).unwrap();
        assert_eq!(mode(root.path()), 0o711);
        let job = JobId::from_string("j".into());
        let other = JobId::from_string("j.b".into());
        let dir = job_shuffle_dir(root.path(), &job, &secret("s"));
        create_private_dir(&dir).unwrap();
        create_private_dir(&job_shuffle_dir(root.path(), &other, &secret("s"))).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(remove_job_shuffle_dirs(root.path(), "j").unwrap(), 1);
        assert!(!dir.exists());
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1, "job j.b's directory stays");
    }
}
