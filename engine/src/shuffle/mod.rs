//! The shuffle: map side partitions, sorts and combines map output into sorted runs; reduce
//! side merges the runs of one partition into key groups.
//!
//! Keys are compared in Arrow's row format (`arrow-row`): one memcmp-able byte string per
//! key, so multi-column keys of any type sort with one comparison.

mod gather;
mod held;
mod map_file;
mod map_side;
mod merge;
mod passes;
mod prefix;
mod regroup;
mod run;
mod spill;

pub use gather::{FlushBatches, SortedRows};
pub use held::{HeldOutput, held_map_outputs};
pub use map_file::{
    MapOutputFiles, MapOutputIndex, Segment, SegmentReader, job_shuffle_dir, open_segment,
    read_segment_checked, remove_job_shuffle_dirs, restrict_shuffle_root, write_map_output,
};
pub use map_side::{MapOutputBuilder, MapOutputSpec, MapSideStats};
pub use merge::{GroupedChunk, RunMerger};
pub use passes::{MergeSpace, merge_bytes};
pub use regroup::Regrouper;
pub use run::{Run, RunBudget, RunReader, RunStore, SORTED_READ_ROWS};
pub use spill::{SPILL_BATCH_BYTES, SPILL_BATCH_ROWS, SpillDir, SpillFile};

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, RecordBatch};
use arrow::buffer::{Buffer, OffsetBuffer};
use arrow::datatypes::{DataType, Schema};
use arrow::row::{RowConverter, Rows, SortField};
use arrow_ipc::CompressionType;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};

use crate::error::{Error, Result};

/// How shuffle files (map output and spills) are written: buffers LZ4-compressed, as Spark
/// compresses shuffle data by default. The null-padded rows of a join's two sides shrink
/// several times over; readers decompress transparently.
pub(crate) fn ipc_write_options() -> Result<IpcWriteOptions> {
    IpcWriteOptions::default()
        .try_with_compression(Some(CompressionType::LZ4_FRAME))
        .map_err(|e| Error::Internal(format!("shuffle file compression: {e}")))
}

/// Rows of a batch that [`ipc_write_options_for`] compresses to see whether it pays.
const COMPRESSION_SAMPLE_ROWS: usize = 4096;

/// The options for a shuffle file of batches like `sample`: LZ4 ([`ipc_write_options`])
/// when it shrinks the first rows of `sample` by at least a tenth, no compression when it
/// does not. Compressing costs CPU on both sides of the shuffle, for nothing on
/// incompressible data such as TeraSort's random records (5 s of a 24 s cluster run).
pub(crate) fn ipc_write_options_for(sample: &RecordBatch) -> Result<IpcWriteOptions> {
    let lz4 = ipc_write_options()?;
    let plain = IpcWriteOptions::default();
    let sample = compact_views(&sample.slice(0, sample.num_rows().min(COMPRESSION_SAMPLE_ROWS)))?;
    let encoded_len = |options: &IpcWriteOptions| -> Result<usize> {
        let context = "sampling shuffle compression";
        let mut bytes = Vec::new();
        let mut writer = StreamWriter::try_new_with_options(&mut bytes, &sample.schema(), options.clone())
            .map_err(Error::arrow(context))?;
        writer.write(&sample).map_err(Error::arrow(context))?;
        writer.finish().map_err(Error::arrow(context))?;
        drop(writer);
        Ok(bytes.len())
    };
    Ok(if encoded_len(&lz4)? * 10 <= encoded_len(&plain)? * 9 { lz4 } else { plain })
}

/// Rows of merged output handed to a reducer at once (cut at group boundaries).
pub const MERGE_CHUNK_ROWS: usize = 32 * 1024;

/// Encodes the key columns of batches of one schema as comparable rows.
pub struct KeyEncoder {
    converter: RowConverter,
    key_columns: Vec<usize>,
}

impl KeyEncoder {
    /// An encoder for the `key_columns` of `schema`.
    pub fn new(schema: &Schema, key_columns: &[usize]) -> Result<Self> {
        let fields =
            key_columns.iter().map(|&i| SortField::new(schema.field(i).data_type().clone())).collect();
        let converter = RowConverter::new(fields).map_err(Error::arrow("creating the key encoder"))?;
        Ok(KeyEncoder { converter, key_columns: key_columns.to_vec() })
    }

    /// The key rows of `batch`.
    pub fn encode(&self, batch: &RecordBatch) -> Result<Rows> {
        if let Some(rows) = self.encode_fixed_size(std::slice::from_ref(batch)) {
            return Ok(rows);
        }
        let keys: Vec<ArrayRef> = self.key_columns.iter().map(|&i| batch.column(i).clone()).collect();
        self.converter.convert_columns(&keys).map_err(Error::arrow("encoding keys"))
    }

    /// The key rows of every row of `batches`, numbered in order across them.
    pub fn encode_all(&self, batches: &[RecordBatch]) -> Result<Rows> {
        if let Some(rows) = self.encode_fixed_size(batches) {
            return Ok(rows);
        }
        let total = batches.iter().map(RecordBatch::num_rows).sum();
        let mut rows = self.converter.empty_rows(total, 0);
        for batch in batches {
            let keys: Vec<ArrayRef> = self.key_columns.iter().map(|&i| batch.column(i).clone()).collect();
            self.converter.append(&mut rows, &keys).map_err(Error::arrow("encoding keys"))?;
        }
        Ok(rows)
    }

    /// The key rows of `batches` built here, when the key is one fixed-size binary column
    /// without nulls (TeraSort's): in Arrow's row format such a key is a 1 (valid) and its
    /// bytes, one copy here, where `RowConverter` goes value by value through options.
    fn encode_fixed_size(&self, batches: &[RecordBatch]) -> Option<Rows> {
        let [column] = self.key_columns[..] else { return None };
        let arrays = batches
            .iter()
            .map(|b| b.column(column).as_fixed_size_binary_opt().filter(|a| a.null_count() == 0))
            .collect::<Option<Vec<_>>>()?;
        let width = arrays.first()?.value_length() as usize;
        let rows: usize = arrays.iter().map(|a| a.len()).sum();
        // Offsets of a `BinaryArray` are `i32`.
        let bytes = rows.checked_mul(width + 1).filter(|&n| n <= i32::MAX as usize)?;
        let mut values = Vec::with_capacity(bytes);
        for array in arrays {
            for key in array.value_data().chunks_exact(width).take(array.len()) {
                values.push(1);
                values.extend_from_slice(key);
            }
        }
        let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(width + 1, rows));
        let keys = BinaryArray::new(offsets, Buffer::from_vec(values), None);
        Some(self.converter.from_binary(keys))
    }

    /// The key columns' indices.
    pub fn key_columns(&self) -> &[usize] {
        &self.key_columns
    }
}

/// `batch` with its view columns (`Utf8View`, `BinaryView`) compacted before it is written
/// as Arrow IPC. IPC writes every data buffer a view column references, whole, so a slice or
/// a merged chunk of a column read from Parquet would carry its source's buffers into every
/// batch written: a join's map output grew to 35 times its input before this.
pub(crate) fn compact_views(batch: &RecordBatch) -> Result<RecordBatch> {
    let is_view = |c: &ArrayRef| matches!(c.data_type(), DataType::Utf8View | DataType::BinaryView);
    if !batch.columns().iter().any(is_view) {
        return Ok(batch.clone());
    }
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|column| match column.data_type() {
            DataType::Utf8View => Arc::new(column.as_string_view().gc()) as ArrayRef,
            DataType::BinaryView => Arc::new(column.as_binary_view().gc()),
            _ => column.clone(),
        })
        .collect();
    RecordBatch::try_new(batch.schema(), columns)
        .map_err(|e| Error::Internal(format!("compacting view columns: {e}")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, RecordBatch, StringArray, UInt32Array};
    use arrow::datatypes::{DataType, Field, Schema, UInt32Type};
    use proptest::prelude::*;

    use super::*;
    use crate::ids::JobId;
    use crate::partition::HashPartitioner;

    #[test]
    fn shuffle_files_are_compressed_only_where_it_pays() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Binary, false)]));
        let batch_of = |values: Vec<Vec<u8>>| {
            let array = arrow::array::BinaryArray::from_iter_values(values);
            RecordBatch::try_new(schema.clone(), vec![Arc::new(array)]).unwrap()
        };
        // xorshift bytes: incompressible, like TeraSort's random records.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let random = batch_of(
            (0..5000)
                .map(|_| {
                    (0..90)
                        .map(|_| {
                            state ^= state << 13;
                            state ^= state >> 7;
                            state ^= state << 17;
                            state as u8
                        })
                        .collect()
                })
                .collect(),
        );
        let repetitive = batch_of((0..5000).map(|i| format!("value {}", i % 7).into_bytes()).collect());
        let compresses = |batch: &RecordBatch| {
            format!("{:?}", ipc_write_options_for(batch).unwrap()).contains("LZ4_FRAME")
        };
        assert!(!compresses(&random));
        assert!(compresses(&repetitive));
    }

    /// Bytes of `batch` written as an Arrow IPC stream.
    fn ipc_bytes(batch: &RecordBatch) -> usize {
        let mut buf = Vec::new();
        let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut buf, &batch.schema()).unwrap();
        writer.write(batch).unwrap();
        writer.finish().unwrap();
        drop(writer);
        buf.len()
    }

    #[test]
    fn a_slice_of_a_view_column_is_written_without_its_source_buffers() {
        let values: Vec<String> =
            (0..20_000).map(|i| format!("a string longer than twelve bytes {i}")).collect();
        let views = arrow::array::StringViewArray::from_iter_values(values.iter());
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8View, false)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(views)]).unwrap();
        let slice = batch.slice(1000, 10);
        let compact = compact_views(&slice).unwrap();
        assert_eq!(compact, slice, "same rows");
        let (before, after) = (ipc_bytes(&slice), ipc_bytes(&compact));
        assert!(after * 100 < before, "{after} bytes written compacted, {before} not");
        assert_eq!(compact_views(&RecordBatch::new_empty(batch.schema())).unwrap().num_rows(), 0);
    }

    /// Map output (key, input position) through several flushes, in memory or spilled, then
    /// merged per partition: returns each partition's rows in merge order.
    fn shuffle(keys: &[String], flushes: usize, memory: u64, chunk: usize) -> Vec<Vec<(String, u32)>> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("i", DataType::UInt32, false),
        ]));
        let dir = tempfile::tempdir().unwrap();
        let spill = Arc::new(SpillDir::create(dir.path(), &JobId::generate()).unwrap());
        let store = Arc::new(RunStore::new(spill, RunBudget::uniform(memory)));
        let spec = MapOutputSpec {
            key_columns: vec![0],
            num_partitions: 3,
            partitioner: Arc::new(HashPartitioner),
            combiner: None,
            store,
            sort: true,
        };
        let mut builder = MapOutputBuilder::new(schema.clone(), spec).unwrap();
        let per_flush = keys.len().div_ceil(flushes.max(1)).max(1);
        for (f, chunk) in keys.chunks(per_flush).enumerate() {
            let ids: Vec<u32> = (0..chunk.len()).map(|i| (f * per_flush + i) as u32).collect();
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(StringArray::from(chunk.to_vec())), Arc::new(UInt32Array::from(ids))],
            )
            .unwrap();
            // Two batches per flush (one may be empty): rows are numbered across them.
            let half = batch.num_rows() / 2;
            builder.flush(vec![batch.slice(0, half), batch.slice(half, batch.num_rows() - half)]).unwrap();
        }
        let (runs, _) = builder.finish();
        runs.into_iter()
            .map(|partition_runs| {
                let encoder = KeyEncoder::new(&schema, &[0]).unwrap();
                let mut merger = RunMerger::new(schema.clone(), encoder, partition_runs, chunk).unwrap();
                let mut rows = Vec::new();
                while let Some(c) = merger.next_chunk().unwrap() {
                    let k = c.batch.column(0).as_string::<i32>();
                    let i = c.batch.column(1).as_primitive::<UInt32Type>();
                    for s in &c.starts {
                        assert!(*s == 0 || k.value(*s) != k.value(*s - 1), "a group starts at a new key");
                    }
                    rows.extend((0..c.batch.num_rows()).map(|r| (k.value(r).to_owned(), i.value(r))));
                }
                rows
            })
            .collect()
    }

    #[test]
    fn fixed_size_keys_encode_as_the_row_converter_encodes_them() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::FixedSizeBinary(3), false),
            Field::new("v", DataType::UInt32, false),
        ]));
        let keys = arrow::array::FixedSizeBinaryArray::try_from_iter(
            [b"zzz", b"\0\0\x01", b"abc", b"\xff\xff\xff", b"abd"].into_iter(),
        )
        .unwrap();
        let values = UInt32Array::from(vec![1, 2, 3, 4, 5]);
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(keys), Arc::new(values)]).unwrap();
        let batches = [batch.slice(1, 3), batch.slice(0, 1), batch.slice(4, 1)];
        let encoder = KeyEncoder::new(&schema, &[0]).unwrap();
        let fast = encoder.encode_all(&batches).unwrap();
        let general = RowConverter::new(vec![SortField::new(DataType::FixedSizeBinary(3))]).unwrap();
        let mut expected = general.empty_rows(5, 0);
        for b in &batches {
            general.append(&mut expected, &[b.column(0).clone()]).unwrap();
        }
        let bytes = |rows: &Rows| rows.iter().map(|r| r.as_ref().to_vec()).collect::<Vec<_>>();
        assert_eq!(bytes(&fast), bytes(&expected));
        assert_eq!(bytes(&encoder.encode(&batches[0]).unwrap()), bytes(&expected)[..3]);
    }

    proptest! {
        /// Every row comes out exactly once, each partition sorted by key, equal keys in
        /// input order, whether runs stay in memory or spill, whatever the chunk size.
        #[test]
        fn shuffle_round_trip(
            keys in prop::collection::vec("[a-d]{0,3}|long-key-[a-z]{9}", 0..300),
            flushes in 1usize..5,
            spill in any::<bool>(),
            chunk in 1usize..50,
        ) {
            let partitions = shuffle(&keys, flushes, if spill { 0 } else { u64::MAX }, chunk);
            let mut all: Vec<(String, u32)> = partitions.iter().flatten().cloned().collect();
            all.sort_by_key(|r| r.1);
            let expected: Vec<(String, u32)> = keys.iter().cloned().zip(0u32..).collect();
            prop_assert_eq!(all, expected);
            for rows in &partitions {
                let mut stable = rows.clone();
                stable.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()).then(a.1.cmp(&b.1)));
                prop_assert_eq!(rows, &stable);
            }
        }
    }
}
