//! Local files mapped into memory, as shared bytes: the project's one use of `unsafe`.
//!
//! Mapped pages belong to the page cache, not to the process: a batch viewing them holds
//! memory the kernel can drop and read back. [`footprint`] tells a batch's own memory from
//! the mapped bytes it views, so memory budgets can count the two apart.

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::{Add, AddAssign};
use std::sync::{LazyLock, RwLock};

use arrow::array::{ArrayData, RecordBatch};
use arrow::buffer::Buffer;
use bytes::Bytes;

/// The address ranges of live mappings: start to end.
static MAPPED: LazyLock<RwLock<BTreeMap<usize, usize>>> = LazyLock::new(Default::default);

/// A mapping, listed in [`MAPPED`] while it lives.
struct Mapping(memmap2::Mmap);

impl Mapping {
    fn new(map: memmap2::Mmap) -> Self {
        let start = map.as_ptr() as usize;
        if !map.is_empty() {
            MAPPED.write().unwrap_or_else(|e| e.into_inner()).insert(start, start + map.len());
        }
        Mapping(map)
    }
}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // Unlisted before the field unmaps, so a later mapping at the same address is not
        // mistaken for this one.
        MAPPED.write().unwrap_or_else(|e| e.into_inner()).remove(&(self.0.as_ptr() as usize));
    }
}

/// The whole of `file` mapped read-only into memory. Slices of the result share the
/// mapping, which is unmapped when the last of them is dropped. Pages come from the page
/// cache: reading them copies nothing and allocates nothing.
#[allow(unsafe_code)]
pub fn map_file(file: &File) -> std::io::Result<Bytes> {
    // SAFETY: the mapping is read-only and private to this process. What `memmap2` cannot
    // rule out is another process changing the file under it: input files must not change
    // while a job reads them (as with every engine), and a file cut short would fault on
    // access rather than yield stale bytes.
    let map = unsafe { memmap2::MmapOptions::new().map(file) }?;
    Ok(Bytes::from_owner(Mapping::new(map)))
}

/// Memory held by batches, split by who holds it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Allocated by the process.
    pub owned: u64,
    /// Pages of mapped files, held by the page cache.
    pub mapped: u64,
}

impl Footprint {
    /// Both parts.
    pub fn total(&self) -> u64 {
        self.owned + self.mapped
    }

    /// `part` parts of `whole` of this footprint (rounded down).
    pub fn share(&self, part: usize, whole: usize) -> Footprint {
        let scale = |bytes: u64| (bytes as u128 * part as u128 / whole.max(1) as u128) as u64;
        Footprint { owned: scale(self.owned), mapped: scale(self.mapped) }
    }
}

impl Add for Footprint {
    type Output = Footprint;

    fn add(self, other: Footprint) -> Footprint {
        Footprint { owned: self.owned + other.owned, mapped: self.mapped + other.mapped }
    }
}

impl AddAssign for Footprint {
    fn add_assign(&mut self, other: Footprint) {
        *self = *self + other;
    }
}

impl std::iter::Sum for Footprint {
    fn sum<I: Iterator<Item = Footprint>>(iter: I) -> Footprint {
        iter.fold(Footprint::default(), Add::add)
    }
}

/// The memory `batch` holds: its buffers' capacities, as `get_array_memory_size` counts
/// them, less the struct overheads, split into owned and mapped.
pub fn footprint(batch: &RecordBatch) -> Footprint {
    let mapped = MAPPED.read().unwrap_or_else(|e| e.into_inner());
    let mut total = Footprint::default();
    for column in batch.columns() {
        add_array(&column.to_data(), &mapped, &mut total);
    }
    total
}

fn add_array(data: &ArrayData, mapped: &BTreeMap<usize, usize>, total: &mut Footprint) {
    for buffer in data.buffers() {
        add_buffer(buffer, mapped, total);
    }
    if let Some(nulls) = data.nulls() {
        add_buffer(nulls.buffer(), mapped, total);
    }
    for child in data.child_data() {
        add_array(child, mapped, total);
    }
}

fn add_buffer(buffer: &Buffer, mapped: &BTreeMap<usize, usize>, total: &mut Footprint) {
    let start = buffer.as_ptr() as usize;
    let in_mapping = mapped.range(..=start).next_back().is_some_and(|(_, &end)| start < end);
    let bytes = buffer.capacity() as u64;
    if in_mapping {
        total.mapped += bytes;
    } else {
        total.owned += bytes;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use arrow::array::{Array, FixedSizeBinaryArray, Int64Array};

    use super::*;

    #[test]
    fn maps_a_file_and_slices_share_it() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let content: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        file.write_all(&content).unwrap();
        let bytes = map_file(file.as_file()).unwrap();
        let slice = bytes.slice(4096..4200);
        drop(bytes);
        assert_eq!(&slice[..], &content[4096..4200]);
        assert!(map_file(tempfile::tempfile().as_ref().unwrap()).unwrap().is_empty());
    }

    #[test]
    fn a_batch_viewing_a_mapped_file_counts_those_bytes_apart() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&[7u8; 4000]).unwrap();
        let bytes = map_file(file.as_file()).unwrap();
        let records = FixedSizeBinaryArray::new(100, Buffer::from(bytes.slice(1000..3000)), None);
        let numbers = Int64Array::from_iter_values(0..20);
        let batch = RecordBatch::try_from_iter([
            ("record", Arc::new(records) as _),
            ("n", Arc::new(numbers.clone()) as _),
        ])
        .unwrap();

        let found = footprint(&batch);
        assert_eq!(found.mapped, 2000);
        assert_eq!(found.owned, numbers.to_data().buffers()[0].capacity() as u64);
        let indices = arrow::array::UInt32Array::from(vec![3, 1]);
        let copied = arrow::compute::take_record_batch(&batch, &indices).unwrap();
        assert_eq!(footprint(&copied).mapped, 0, "a copy owns its bytes");

        let start = bytes.as_ptr() as usize;
        drop((batch, bytes));
        assert!(!MAPPED.read().unwrap().contains_key(&start), "the mapping is unlisted");
    }
}
