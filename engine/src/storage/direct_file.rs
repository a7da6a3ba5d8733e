//! [`DirectFile`]: writes a new local file sequentially in large aligned blocks that bypass
//! the page cache (`O_DIRECT`) where the file system allows it, with the writes on a
//! background thread so that they overlap the caller's work. [`DirectReader`] reads a byte
//! range of a file the same way.
//!
//! Why: a buffered write first allocates and fills a page cache page for every 4 KiB
//! written. On the virtual machines we run on, fresh pages are expensive (about 1 s of
//! system time per GB, more when two threads write at once), while a direct write of 8 MiB
//! costs almost no CPU. TeraSort writes its whole input back out, so this is the
//! difference between spending most of the reduce in the kernel and not.
//!
//! The file appears under its name only when [`DirectFile::finish`] succeeds: until then
//! it is written as a hidden staging file (see [`staging_name`]) in the same directory,
//! which a dropped writer deletes.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Alignment of buffers, offsets and lengths for `O_DIRECT`: 4 KiB covers every logical
/// block size in use (512 B and 4 KiB).
const ALIGN: usize = 4096;
/// Bytes per write.
const BLOCK: usize = 8 << 20;
/// Bytes per read (reads of 8 MiB were slower than 4 MiB on our virtual disks).
const READ_BLOCK: usize = 4 << 20;
/// Blocks queued between the caller and the background writer or reader.
const QUEUED: usize = 2;
/// The smallest blocks a task's memory sizes them to: below that, a direct write or read
/// costs more in system calls than it saves.
const MIN_BLOCK: usize = 64 << 10;

/// A block of a `share`th of the calling task's memory ([`crate::memory::task_memory`]),
/// within [`MIN_BLOCK`] and `max` (the fastest size on our disks when memory allows).
fn block_for_task(share: u64, max: usize) -> usize {
    let bytes = usize::try_from(crate::memory::task_memory() / share).unwrap_or(usize::MAX);
    bytes.clamp(MIN_BLOCK, max) / ALIGN * ALIGN
}

/// Bytes per write of a direct file the calling task opens: a writer holds three blocks
/// of a 32nd of its memory.
fn write_block() -> usize {
    block_for_task(32, BLOCK)
}

/// Bytes per read of a direct file the calling task opens: a reader holds four blocks of a
/// 128th of its memory (a merge opens many readers).
fn read_block() -> usize {
    block_for_task(128, READ_BLOCK)
}

/// The memory one [`DirectReader`] the calling task opens holds in blocks, at most.
pub fn read_buffer_bytes() -> u64 {
    ((QUEUED + 2) * (read_block() + ALIGN)) as u64
}

/// The memory a [`DirectReader`] of `len` bytes the calling task opens holds, at most:
/// one block of its size when one holds it all.
pub fn read_buffer_bytes_for(len: u64) -> u64 {
    match read_block_for(len) {
        (block, true) => (block + ALIGN) as u64,
        _ => read_buffer_bytes(),
    }
}

/// The block length of a reader of `len` bytes (from any offset), and whether one block
/// holds them all: then the block is only as large as they need.
fn read_block_for(len: u64) -> (usize, bool) {
    let block = read_block();
    // An unaligned start can add an alignment unit at either end.
    let span = len.next_multiple_of(ALIGN as u64).saturating_add(ALIGN as u64);
    match usize::try_from(span) {
        Ok(span) if span <= block => (span, true),
        _ => (block, false),
    }
}

/// The hidden name a file is written under until it is finished: `.{name}.inprogress`.
pub fn staging_name(name: &str) -> String {
    format!(".{name}.inprogress")
}

/// A buffer whose start is aligned to [`ALIGN`], and how much of it is filled.
struct Block {
    memory: Vec<u8>,
    start: usize,
    filled: usize,
}

impl Block {
    /// A block of `len` bytes (a multiple of [`ALIGN`]).
    fn new(len: usize) -> Self {
        let memory = vec![0u8; len + ALIGN];
        let start = memory.as_ptr().align_offset(ALIGN);
        Block { memory, start, filled: 0 }
    }

    fn spare(&mut self) -> &mut [u8] {
        let end = self.capacity() + self.start;
        &mut self.memory[self.start + self.filled..end]
    }

    /// Bytes it holds when full.
    fn capacity(&self) -> usize {
        self.memory.len().saturating_sub(ALIGN)
    }

    fn filled(&self) -> &[u8] {
        &self.memory[self.start..self.start + self.filled]
    }

    /// Zero-pads the filled part to a multiple of [`ALIGN`].
    fn pad(&mut self) {
        let padded = self.filled.next_multiple_of(ALIGN);
        self.memory[self.start + self.filled..self.start + padded].fill(0);
        self.filled = padded;
    }
}

/// Blocks of one length passed back and forth between a caller and its I/O thread: a
/// returned block is reused, and a new one allocated only while fewer than `limit` exist.
struct BlockPool {
    returned: Receiver<Block>,
    allocated: usize,
    limit: usize,
    len: usize,
}

impl BlockPool {
    /// The next free block, waiting for one to come back if need be; `None` once the other
    /// side is gone.
    fn take(&mut self) -> Option<Block> {
        let block = match self.returned.try_recv() {
            Ok(block) => block,
            Err(_) if self.allocated < self.limit => {
                self.allocated += 1;
                return Some(Block::new(self.len));
            }
            Err(_) => self.returned.recv().ok()?,
        };
        // A file's small first block (see `DirectFile::create`) is replaced, not reused.
        Some(if block.capacity() < self.len { Block::new(self.len) } else { block })
    }
}

/// A new local file written sequentially. Implements [`Write`]; call [`DirectFile::finish`]
/// to complete it.
pub struct DirectFile {
    path: PathBuf,
    staging: PathBuf,
    block: Block,
    /// The file and the writer's ends of its channels, until the first full block starts
    /// the background writer: a file that fits its first block is written without one.
    unstarted: Option<(File, Receiver<Block>, SyncSender<Block>)>,
    /// Full blocks to the background writer; `None` once finished.
    to_writer: Option<SyncSender<Block>>,
    /// Written blocks coming back for reuse (the one being filled counts as allocated).
    pool: BlockPool,
    writer: Option<JoinHandle<io::Result<File>>>,
    /// Bytes written by the caller.
    len: u64,
    /// Finished as a staging file: not deleted when dropped.
    keep_staging: bool,
    /// Sync the file's length to disk before it gets its name.
    sync: bool,
}

impl DirectFile {
    /// Starts writing `path` (its directory is created if needed). Fails if its staging
    /// file cannot be created.
    pub fn create(path: &Path) -> io::Result<DirectFile> {
        let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{}: not a file name", path.display()))
        })?;
        let staging = path.with_file_name(staging_name(name));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_direct(&staging, Access::Write)?;
        let (to_writer, queued) = sync_channel::<Block>(QUEUED);
        let (recycle, recycled) = sync_channel::<Block>(QUEUED + 1);
        let block_len = write_block();
        Ok(DirectFile {
            path: path.to_owned(),
            staging,
            // Small: many files are (a tiny map task's output); a block of megabytes,
            // zeroed, and a writer thread would cost more than writing them.
            block: Block::new(MIN_BLOCK.min(block_len)),
            unstarted: Some((file, queued, recycle)),
            to_writer: Some(to_writer),
            pool: BlockPool { returned: recycled, allocated: 1, limit: QUEUED + 1, len: block_len },
            writer: None,
            len: 0,
            keep_staging: false,
            sync: true,
        })
    }

    /// Finishes without syncing the file's length to disk: for files whose loss or
    /// truncation in a crash is detected and costs only work (map output: checksummed, a
    /// bad segment is fetched as failed and its map run again). A sync costs milliseconds,
    /// longer than a tiny map task takes (bench/README.md, "Many small tasks").
    pub fn without_sync(mut self) -> Self {
        self.sync = false;
        self
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True before anything was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes what is buffered, sets the file's exact length and gives it its name.
    pub fn finish(mut self) -> io::Result<u64> {
        let len = self.complete()?;
        std::fs::rename(&self.staging, &self.path)?;
        Ok(len)
    }

    /// Writes what is buffered and sets the file's exact length, leaving it under its
    /// staging name for a committer to rename (see [`crate::output::publish`]).
    pub fn finish_staged(mut self) -> io::Result<u64> {
        let len = self.complete()?;
        self.keep_staging = true;
        Ok(len)
    }

    fn complete(&mut self) -> io::Result<u64> {
        self.block.pad();
        let last = std::mem::replace(&mut self.block, Block { memory: Vec::new(), start: 0, filled: 0 });
        let file = match self.unstarted.take() {
            // It all fits in the first block: written here.
            Some((file, _, _)) => {
                self.to_writer = None;
                write_block_at(file, &self.staging, &last, 0)?
            }
            None => {
                self.send(last)?;
                self.to_writer = None;
                self.join_writer()?
            }
        };
        // The last block was padded to the alignment; cut the padding off.
        file.set_len(self.len)?;
        // Cheap after direct writes (the data is on the device): makes the length durable
        // before the name appears.
        if self.sync {
            file.sync_data()?;
        }
        Ok(self.len)
    }

    /// Hands a full block to the background writer (started now if need be).
    fn send(&mut self, block: Block) -> io::Result<()> {
        if let Some((file, queued, recycle)) = self.unstarted.take() {
            let staging = self.staging.clone();
            let writer = std::thread::Builder::new()
                .name("direct-file".into())
                .spawn(move || write_blocks(file, &staging, queued, recycle))?;
            self.writer = Some(writer);
        }
        let Some(to_writer) = &self.to_writer else { return Err(closed()) };
        if to_writer.send(block).is_err() {
            // The writer stopped: its result says why.
            self.to_writer = None;
            return Err(self.join_writer().err().unwrap_or_else(closed));
        }
        Ok(())
    }

    fn next_block(&mut self) -> io::Result<Block> {
        if let Some(block) = self.pool.take() {
            return Ok(block);
        }
        // The writer stopped: its result says why.
        self.to_writer = None;
        Err(self.join_writer().err().unwrap_or_else(closed))
    }

    fn join_writer(&mut self) -> io::Result<File> {
        let writer = self.writer.take().ok_or_else(closed)?;
        writer.join().map_err(|_| io::Error::other("the file writer thread panicked"))?
    }
}

impl Write for DirectFile {
    fn write(&mut self, mut bytes: &[u8]) -> io::Result<usize> {
        let total = bytes.len();
        while !bytes.is_empty() {
            let spare = self.block.spare();
            let n = spare.len().min(bytes.len());
            spare[..n].copy_from_slice(&bytes[..n]);
            self.block.filled += n;
            bytes = &bytes[n..];
            if self.block.filled == self.block.capacity() {
                let next = self.next_block()?;
                let full = std::mem::replace(&mut self.block, next);
                self.send(full)?;
            }
        }
        self.len += total as u64;
        Ok(total)
    }

    /// Blocks are written when full; a flush does not force a partial block out (it could
    /// not be written at an aligned length).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for DirectFile {
    /// An unfinished file is deleted: its staging file never gets the file's name.
    fn drop(&mut self) {
        self.to_writer = None;
        let _ = self.join_writer();
        if self.keep_staging {
            return;
        }
        if let Err(e) = std::fs::remove_file(&self.staging)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.staging.display(), error = %e, "could not delete an unfinished file");
        }
    }
}

/// Reads a byte range of a file in large aligned blocks that bypass the page cache
/// (`O_DIRECT`) where the file system allows it, reading ahead on a background thread: the
/// reading counterpart of [`DirectFile`], for files read once (map output being served,
/// fetched shuffle data being merged).
pub struct DirectReader {
    /// The block holding `position`, once read; its file offset.
    block: Option<(u64, Block)>,
    /// Blocks read ahead, in file order; an error ends them.
    blocks: Receiver<io::Result<(u64, Block)>>,
    /// Consumed blocks going back to the reading thread.
    recycle: SyncSender<Block>,
    /// The next byte to return, and one past the last.
    position: u64,
    end: u64,
}

impl DirectReader {
    /// Opens bytes `range` of `path`.
    pub fn open(path: &Path, range: std::ops::Range<u64>) -> io::Result<DirectReader> {
        let file = open_direct(path, Access::Read)?;
        let (ahead, blocks) = sync_channel(QUEUED);
        let (recycle, recycled) = sync_channel(QUEUED + 2);
        let (len, whole) = read_block_for(range.end - range.start);
        let pool = BlockPool { returned: recycled, allocated: 0, limit: QUEUED + 2, len };
        let span = range.clone();
        if whole {
            // One block holds it all: read here, without a thread (a reduce opens one
            // reader per map output; tiny ones are common).
            read_blocks(file, path, span, &ahead, pool);
        } else {
            let path = path.to_owned();
            std::thread::Builder::new()
                .name("direct-read".into())
                .spawn(move || read_blocks(file, &path, span, &ahead, pool))?;
        }
        Ok(DirectReader { block: None, blocks, recycle, position: range.start, end: range.end })
    }

    /// Moves to the block holding `self.position`.
    fn next_block(&mut self) -> io::Result<()> {
        if let Some((_, old)) = self.block.take() {
            // The reading thread may have stopped: then the block is not needed.
            let _ = self.recycle.try_send(old);
        }
        // The reading thread stops early only at the file's end.
        let (offset, block) = self.blocks.recv().map_err(|_| ended_early())??;
        if offset + block.filled as u64 <= self.position {
            return Err(ended_early());
        }
        self.block = Some((offset, block));
        Ok(())
    }
}

impl Read for DirectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.position >= self.end || out.is_empty() {
            return Ok(0);
        }
        let holds = |(offset, block): &(u64, Block)| self.position < offset + block.filled as u64;
        if !self.block.as_ref().is_some_and(holds) {
            self.next_block()?;
        }
        let (offset, block) = self.block.as_ref().expect("a block was just read");
        let at = (self.position - offset) as usize;
        let n = (block.filled - at).min((self.end - self.position) as usize).min(out.len());
        out[..n].copy_from_slice(&block.filled()[at..at + n]);
        self.position += n as u64;
        Ok(n)
    }
}

/// The reading thread of a [`DirectReader`]: reads the aligned blocks covering `range` in
/// order, until the file or the range ends or the reader is dropped.
fn read_blocks(
    mut file: File,
    path: &Path,
    range: std::ops::Range<u64>,
    ahead: &SyncSender<io::Result<(u64, Block)>>,
    mut pool: BlockPool,
) {
    let mut offset = range.start - range.start % ALIGN as u64;
    let end = range.end.next_multiple_of(ALIGN as u64);
    while offset < end {
        let Some(mut block) = pool.take() else { return };
        let wanted = (end - offset).min(pool.len as u64) as usize;
        if let Err(e) = fill_block(&mut file, path, &mut block, offset, wanted) {
            let _ = ahead.send(Err(e));
            return;
        }
        let (read, short) = (block.filled as u64, block.filled < wanted);
        if ahead.send(Ok((offset, block))).is_err() || short {
            return;
        }
        offset += read;
    }
}

/// Reads `wanted` bytes at `offset` into `block`, fewer at the file's end.
fn fill_block(file: &mut File, path: &Path, block: &mut Block, offset: u64, wanted: usize) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    block.filled = 0;
    while block.filled < wanted {
        let (range, at) = (block.start + block.filled..block.start + wanted, offset + block.filled as u64);
        let n = match file.read_at(&mut block.memory[range.clone()], at) {
            Ok(n) => n,
            Err(e) => {
                *file = buffered_after_refusal(e, path, Access::Read)?;
                file.read_at(&mut block.memory[range], at)?
            }
        };
        block.filled += n;
        // A short read is the file's end (direct reads are whole blocks otherwise; a read
        // at an unaligned offset would be refused).
        if n == 0 || !n.is_multiple_of(ALIGN) {
            return Ok(());
        }
    }
    Ok(())
}

fn ended_early() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "the file ends before the range does")
}

fn closed() -> io::Error {
    io::Error::other("the file's writer already stopped")
}

/// The background writer: writes each block at the end of the file, then recycles it.
fn write_blocks(
    mut file: File,
    path: &Path,
    blocks: Receiver<Block>,
    recycle: SyncSender<Block>,
) -> io::Result<File> {
    let mut offset = 0u64;
    for mut block in blocks {
        file = write_block_at(file, path, &block, offset)?;
        offset += block.filled as u64;
        block.filled = 0;
        // The caller may be gone or have enough blocks; either way the block is not needed.
        let _ = recycle.try_send(block);
    }
    Ok(file)
}

/// Writes `block`'s bytes at `offset` of `file` (reopened for buffered I/O where direct
/// I/O is refused); the file to go on with.
fn write_block_at(mut file: File, path: &Path, block: &Block, offset: u64) -> io::Result<File> {
    use std::os::unix::fs::FileExt;
    if let Err(e) = file.write_all_at(block.filled(), offset) {
        file = buffered_after_refusal(e, path, Access::Write)?;
        file.write_all_at(block.filled(), offset)?;
    }
    Ok(file)
}

#[derive(Clone, Copy)]
enum Access {
    Read,
    Write,
}

/// After a direct read or write failed with `error`: where the file system refused the
/// direct I/O itself (`EINVAL`: alignment rules stricter than [`ALIGN`], or direct I/O
/// accepted at open and refused later), `path` reopened for buffered I/O, to retry with.
/// Any other error is returned as it is.
fn buffered_after_refusal(error: io::Error, path: &Path, access: Access) -> io::Result<File> {
    #[cfg(target_os = "linux")]
    if error.raw_os_error() == Some(libc::EINVAL) {
        tracing::debug!(path = %path.display(), "direct I/O refused; continuing with buffered I/O");
        return match access {
            Access::Read => File::open(path),
            Access::Write => OpenOptions::new().write(true).open(path),
        };
    }
    let _ = (path, access);
    Err(error)
}

/// Opens `path` with `O_DIRECT` (creating it to write), or for buffered I/O on file systems
/// that refuse direct I/O.
fn open_direct(path: &Path, access: Access) -> io::Result<File> {
    let mut options = OpenOptions::new();
    match access {
        Access::Read => options.read(true),
        Access::Write => options.write(true).create(true).truncate(true),
    };
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut direct = options.clone();
        match direct.custom_flags(libc::O_DIRECT).open(path) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            result => return result,
        }
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn writes_every_byte_in_order_at_any_length() {
        let dir = tempfile::tempdir().unwrap();
        // Empty, under one alignment unit, one unit, blocks and pieces of blocks.
        for len in [0, 1, ALIGN - 1, ALIGN, BLOCK - 1, BLOCK, 3 * BLOCK + 12_345] {
            let path = dir.path().join(format!("sub/f-{len}.dat"));
            let data = pattern(len);
            let mut file = DirectFile::create(&path).unwrap();
            // Uneven pieces, so that writes straddle block ends.
            for piece in data.chunks(1_000_003) {
                file.write_all(piece).unwrap();
            }
            assert_eq!(file.len(), len as u64);
            assert!(!path.exists(), "not visible before it is finished");
            assert_eq!(file.finish().unwrap(), len as u64);
            assert_eq!(std::fs::read(&path).unwrap(), data, "length {len}");
            assert!(!path.with_file_name(staging_name(&format!("f-{len}.dat"))).exists());
        }
    }

    #[test]
    fn reads_any_range_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let len = 2 * BLOCK + 5_000;
        let data = pattern(len);
        std::fs::write(&path, &data).unwrap();
        let (a, u) = (ALIGN as u64, BLOCK as u64);
        let ranges = [0..0, 0..1, 3..a + 7, a..2 * a, u - 1..u + 1, 5..2 * u + 5_000, 2 * u..2 * u + 5_000];
        for range in ranges {
            let mut reader = DirectReader::open(&path, range.clone()).unwrap();
            let mut out = Vec::new();
            // Odd-sized reads, so that they straddle block ends.
            let mut buf = vec![0u8; 777_777];
            loop {
                let n = reader.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            assert_eq!(out, &data[range.start as usize..range.end as usize], "{range:?}");
        }
        let mut past_the_end = DirectReader::open(&path, len as u64 - 10..len as u64 + 10).unwrap();
        let error = past_the_end.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn refused_direct_io_continues_buffered() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let file = open_direct(&path, Access::Write).unwrap();
        // An unaligned buffer: refused (EINVAL) where the file is open for direct I/O.
        let data = pattern(ALIGN + 1);
        let unaligned = &data[1..];
        let file = match file.write_all_at(unaligned, 0) {
            Ok(()) => file,
            Err(e) => {
                let file = buffered_after_refusal(e, &path, Access::Write).unwrap();
                file.write_all_at(unaligned, 0).unwrap();
                file
            }
        };
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), unaligned);
        let other = io::Error::from(io::ErrorKind::PermissionDenied);
        assert!(buffered_after_refusal(other, &path, Access::Read).is_err());
    }

    #[test]
    fn a_dropped_file_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part.dat");
        let mut file = DirectFile::create(&path).unwrap();
        file.write_all(&pattern(BLOCK + 10)).unwrap();
        drop(file);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_file_that_cannot_be_created_names_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, b"x").unwrap();
        let error = DirectFile::create(&blocker.join("part.dat")).err().unwrap();
        assert!(
            matches!(error.kind(), io::ErrorKind::AlreadyExists | io::ErrorKind::NotADirectory),
            "{error}"
        );
    }
}
