//! The broadcast hash join (Hadoop's replicated join, Spark's broadcast hash join): a
//! map-only job. Every process that runs map tasks loads the smaller side (the *build*
//! side) once into a hash table; each map task streams its split of the other side past it
//! and writes the joined rows straight to its part file. Nothing is sorted or shuffled, and
//! the larger side is read once and copied once, into the output.
//!
//! In cluster mode every task process loads the build side itself (on the engine's I/O
//! runtime, with the job's storage options), as each Hadoop mapper loads the replicated
//! table in its setup: the side must be small next to a map task's
//! split for that to pay, which [`super::Join::broadcast_limit`] bounds.
//!
//! **Output order.** A part file holds its split's matches in stream order; the build rows
//! of one key come in the order they were read (file listing order, then row order).
//! **Null keys** never match: those of the streamed side are counted as `join_null_keys`;
//! those of the build side are skipped (every task would count them again).

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::buffer::NullBuffer;
use arrow::compute::{cast, concat_batches, interleave, take};
use arrow::datatypes::{DataType, Decimal128Type, Int64Type, UInt64Type};
use gristmill::input::{InputFormat, ReadOptions, Split, SplitOptions, plan_splits};
use gristmill::prelude::*;
use gristmill::storage::resolve_inputs_with;
use hashbrown::hash_table::Entry;
use hashbrown::{DefaultHashBuilder, HashTable};

use super::{OUTPUT_BATCH_ROWS, SideSchema};

/// Bytes of build-side input read (and concatenated) per piece.
const BUILD_SPLIT_BYTES: u64 = 64 << 20;

/// Marks the end of a chain of build rows.
const NONE: u32 = u32::MAX;

/// The build side in memory: its rows and a hash table over their keys.
pub struct BuildSide {
    /// The rows, a batch per piece read.
    batches: Vec<RecordBatch>,
    /// Where each build row is, by build row id: (batch, row).
    locations: Vec<(u32, u32)>,
    table: KeyTable,
}

impl std::fmt::Debug for BuildSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildSide").field("rows", &self.locations.len()).finish_non_exhaustive()
    }
}

impl BuildSide {
    /// Reads every file of `side` (at `paths`, listed as the plan listed them) on the task's
    /// I/O runtime, with the job's storage options, and indexes its rows by key.
    pub fn load(side: &SideSchema, paths: &str, allow_uncommitted: bool, task: &TaskInfo) -> JobResult<Self> {
        let io = task.io()?;
        let spec = side.input_spec();
        let options = SplitOptions {
            split_size: BUILD_SPLIT_BYTES,
            format: Some(InputFormat::Parquet),
            csv: Default::default(),
            schema: None,
        };
        let splits = io.block_on(async {
            let files =
                resolve_inputs_with(&[paths.to_owned()], task.storage_options(), allow_uncommitted).await?;
            plan_splits(files, &spec, &options).await
        })?;
        let read = |split: &Split| -> gristmill::Result<Vec<RecordBatch>> {
            let mut batches = Vec::new();
            split.read(io, ReadOptions::default(), &mut |batch| {
                batches.push(batch);
                Ok(true)
            })?;
            Ok(concatenated(batches))
        };
        let pieces = read_in_parallel(&splits, rayon::current_num_threads(), read)?;
        let batches: Vec<RecordBatch> = pieces.into_iter().flatten().filter(|b| b.num_rows() > 0).collect();
        Self::index(batches, side.key)
    }

    /// Indexes `batches` by their column `key`.
    pub fn index(batches: Vec<RecordBatch>, key: usize) -> JobResult<Self> {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows >= NONE as usize {
            return Err(
                format!("the build side has {rows} rows; a broadcast join holds at most {NONE}").into()
            );
        }
        let mut locations = Vec::with_capacity(rows);
        for (b, batch) in batches.iter().enumerate() {
            locations.extend((0..batch.num_rows() as u32).map(|r| (b as u32, r)));
        }
        let keys: Vec<&ArrayRef> = batches.iter().map(|b| b.column(key)).collect();
        let table = KeyTable::build(&keys)?;
        Ok(BuildSide { batches, locations, table })
    }

    /// Build rows.
    pub fn rows(&self) -> usize {
        self.locations.len()
    }

    /// The matching (stream row, build row id) pairs of `keys`, in stream order.
    pub fn probe(&self, keys: &dyn Array) -> JobResult<Vec<(u32, u32)>> {
        let mut pairs = Vec::with_capacity(keys.len());
        let nulls = keys.logical_nulls();
        let nulls = nulls.as_ref().filter(|n| n.null_count() > 0);
        match &self.table {
            KeyTable::Dense(t) => t.probe(&i64_keys(keys)?, nulls, &mut pairs),
            KeyTable::Int(t) => t.probe(&i64_keys(keys)?, nulls, &mut pairs),
            KeyTable::Wide(t) => t.probe(&i128_keys(keys)?, nulls, &mut pairs),
            KeyTable::Bytes(t) => t.probe(&byte_keys(keys)?, nulls, &mut pairs),
        }
        Ok(pairs)
    }

    /// Column `column` of the build rows `ids`.
    fn gather(&self, column: usize, ids: &[(usize, usize)]) -> JobResult<ArrayRef> {
        let sources: Vec<&dyn Array> = self.batches.iter().map(|b| b.column(column).as_ref()).collect();
        Ok(interleave(&sources, ids)?)
    }

    fn num_columns(&self) -> usize {
        self.batches.first().map_or(0, RecordBatch::num_columns)
    }
}

/// `read` applied to every split by `threads` threads of their own, results in split order.
///
/// Not rayon: the loader runs inside a map task on the pool, and a pool thread waiting for
/// its parallel work may pick up another map task that waits for this very load.
fn read_in_parallel<T: Send>(
    splits: &[Split],
    threads: usize,
    read: impl Fn(&Split) -> gristmill::Result<T> + Sync,
) -> gristmill::Result<Vec<T>> {
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<gristmill::Result<T>>>> = splits.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, splits.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(split) = splits.get(i) else { break };
                    let result = read(split);
                    let failed = result.is_err();
                    *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                    if failed {
                        next.store(splits.len(), Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let mut out = Vec::with_capacity(splits.len());
    for slot in results {
        // The first failure in split order; splits skipped after it are not errors.
        match slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(result) => out.push(result?),
            None => continue,
        }
    }
    if out.len() < splits.len() {
        return Err(gristmill::Error::Internal("a build-side split was not read".into()));
    }
    Ok(out)
}

/// One batch of a split's batches, or the batches as they are if they cannot be one (a
/// string column over 2 GiB).
fn concatenated(batches: Vec<RecordBatch>) -> Vec<RecordBatch> {
    let Some(first) = batches.first() else { return batches };
    match concat_batches(first.schema_ref(), &batches) {
        Ok(one) => vec![one],
        Err(_) => batches,
    }
}

/// Build row ids by key: the head of each key's chain in a hash table, the rest linked
/// through `next` in build order.
struct Table<K> {
    heads: HashTable<u32>,
    keys: Vec<K>,
    next: Vec<u32>,
    hasher: DefaultHashBuilder,
}

impl<K: Hash + Eq> Table<K> {
    /// Indexes `keys` (one per build row id); rows whose key is null (`valid` false) are
    /// left out.
    fn new(keys: Vec<K>, valid: &[bool]) -> Self {
        let hasher = DefaultHashBuilder::default();
        let mut heads = HashTable::with_capacity(keys.len());
        let mut next = vec![NONE; keys.len()];
        // Inserted last row first, each in front of its chain: chains come out in build order.
        for id in (0..keys.len()).rev().filter(|&id| valid[id]) {
            let key = &keys[id];
            let hash = hasher.hash_one(key);
            match heads.entry(
                hash,
                |&h: &u32| keys[h as usize] == *key,
                |&h| hasher.hash_one(&keys[h as usize]),
            ) {
                Entry::Occupied(mut head) => {
                    next[id] = *head.get();
                    *head.get_mut() = id as u32;
                }
                Entry::Vacant(slot) => {
                    slot.insert(id as u32);
                }
            }
        }
        Table { heads, keys, next, hasher }
    }

    fn probe(&self, keys: &[K], nulls: Option<&NullBuffer>, pairs: &mut Vec<(u32, u32)>) {
        for (row, key) in keys.iter().enumerate() {
            if nulls.is_some_and(|n| n.is_null(row)) {
                continue;
            }
            let hash = self.hasher.hash_one(key);
            let Some(&head) = self.heads.find(hash, |&h| self.keys[h as usize] == *key) else { continue };
            let mut id = head;
            while id != NONE {
                pairs.push((row as u32, id));
                id = self.next[id as usize];
            }
        }
    }
}

/// Build row ids by integer key, for keys spanning a range at most [`DENSE_SPREAD`] times
/// the build rows: the head of each key's chain at `key - min` in a plain array (DuckDB's
/// perfect hash join). No hashing, and a streamed side clustered by key (a fact table in
/// its dimension's key order) probes the array in order instead of at random.
struct Dense {
    min: i64,
    heads: Vec<u32>,
    next: Vec<u32>,
}

/// Slots per build row a [`Dense`] table may take (4 bytes each: about what hashing takes).
const DENSE_SPREAD: u64 = 4;

impl Dense {
    /// The table of `keys`, or `None` when their range is too wide.
    fn new(keys: &[i64], valid: &[bool]) -> Option<Self> {
        let mut present = keys.iter().zip(valid).filter(|(_, v)| **v).map(|(k, _)| *k);
        let first = present.next()?;
        let (min, max) = present.fold((first, first), |(lo, hi), k| (lo.min(k), hi.max(k)));
        let span = (max as i128 - min as i128 + 1) as u64;
        if span > DENSE_SPREAD.saturating_mul(keys.len() as u64) {
            return None;
        }
        let mut heads = vec![NONE; span as usize];
        let mut next = vec![NONE; keys.len()];
        for id in (0..keys.len()).rev().filter(|&id| valid[id]) {
            let slot = &mut heads[keys[id].wrapping_sub(min) as u64 as usize];
            next[id] = *slot;
            *slot = id as u32;
        }
        Some(Dense { min, heads, next })
    }

    fn probe(&self, keys: &[i64], nulls: Option<&NullBuffer>, pairs: &mut Vec<(u32, u32)>) {
        for (row, key) in keys.iter().enumerate() {
            let slot = key.wrapping_sub(self.min) as u64 as usize;
            let Some(&head) = self.heads.get(slot) else { continue };
            if head == NONE || nulls.is_some_and(|n| n.is_null(row)) {
                continue;
            }
            let mut id = head;
            while id != NONE {
                pairs.push((row as u32, id));
                id = self.next[id as usize];
            }
        }
    }
}

/// The table for the key's type: integers, dates and booleans as `i64` (in a [`Dense`]
/// table when their range allows), 128-bit decimals as `i128`, strings and binary as
/// bytes.
enum KeyTable {
    Dense(Dense),
    Int(Table<i64>),
    Wide(Table<i128>),
    Bytes(Table<Box<[u8]>>),
}

impl KeyTable {
    fn build(columns: &[&ArrayRef]) -> JobResult<Self> {
        let valid: Vec<bool> = columns.iter().flat_map(|c| (0..c.len()).map(|r| c.is_valid(r))).collect();
        let Some(first) = columns.first() else { return Ok(KeyTable::Int(Table::new(Vec::new(), &[]))) };
        let table = match key_kind(first.data_type()) {
            Kind::Int => {
                let keys = collect_keys(columns, i64_keys)?;
                match Dense::new(&keys, &valid) {
                    Some(dense) => KeyTable::Dense(dense),
                    None => KeyTable::Int(Table::new(keys, &valid)),
                }
            }
            Kind::Wide => KeyTable::Wide(Table::new(collect_keys(columns, i128_keys)?, &valid)),
            Kind::Bytes => KeyTable::Bytes(Table::new(collect_keys(columns, byte_keys)?, &valid)),
        };
        Ok(table)
    }
}

enum Kind {
    Int,
    Wide,
    Bytes,
}

fn key_kind(data_type: &DataType) -> Kind {
    match data_type {
        DataType::Decimal128(_, _) => Kind::Wide,
        DataType::Utf8 | DataType::Binary => Kind::Bytes,
        _ => Kind::Int,
    }
}

fn collect_keys<K>(columns: &[&ArrayRef], keys: fn(&dyn Array) -> JobResult<Vec<K>>) -> JobResult<Vec<K>> {
    let mut all = Vec::new();
    for column in columns {
        all.extend(keys(column.as_ref())?);
    }
    Ok(all)
}

/// Integer-like keys as `i64` (a `u64` keeps its bits: equal keys stay equal); nulls as 0.
fn i64_keys(column: &dyn Array) -> JobResult<Vec<i64>> {
    if let DataType::UInt64 = column.data_type() {
        return Ok(column.as_primitive::<UInt64Type>().values().iter().map(|&v| v as i64).collect());
    }
    let cast = cast(column, &DataType::Int64)?;
    Ok(cast.as_primitive::<Int64Type>().values().to_vec())
}

fn i128_keys(column: &dyn Array) -> JobResult<Vec<i128>> {
    Ok(column.as_primitive::<Decimal128Type>().values().to_vec())
}

fn byte_keys(column: &dyn Array) -> JobResult<Vec<Box<[u8]>>> {
    let bytes = |v: Option<&[u8]>| Box::from(v.unwrap_or_default());
    Ok(match column.data_type() {
        DataType::Utf8 => column.as_string::<i32>().iter().map(|v| bytes(v.map(str::as_bytes))).collect(),
        _ => column.as_binary::<i32>().iter().map(bytes).collect(),
    })
}

/// The mapper of a broadcast join: probes the build side with each batch of the streamed
/// side and emits the joined rows, the left side's columns first.
pub struct ProbeRows {
    build: Arc<BuildSide>,
    /// The streamed side's key column.
    stream_key: usize,
    /// True when the build side is the left one.
    build_is_left: bool,
}

impl ProbeRows {
    /// A mapper streaming a side keyed on column `stream_key` past `build`.
    pub fn new(build: Arc<BuildSide>, stream_key: usize, build_is_left: bool) -> Self {
        ProbeRows { build, stream_key, build_is_left }
    }
}

impl Mapper for ProbeRows {
    fn map(&mut self, batch: &RecordBatch, out: &mut Emitter) -> JobResult<()> {
        let keys = batch.column(self.stream_key);
        if keys.null_count() > 0 {
            out.count("join_null_keys", keys.null_count() as u64);
        }
        let pairs = self.build.probe(keys.as_ref())?;
        for chunk in pairs.chunks(OUTPUT_BATCH_ROWS) {
            let stream = stream_columns(batch, chunk)?;
            let ids: Vec<(usize, usize)> = chunk
                .iter()
                .map(|&(_, id)| {
                    let (b, r) = self.build.locations[id as usize];
                    (b as usize, r as usize)
                })
                .collect();
            let build = (0..self.build.num_columns())
                .map(|c| self.build.gather(c, &ids))
                .collect::<JobResult<Vec<_>>>()?;
            let columns = if self.build_is_left { [build, stream] } else { [stream, build] }.concat();
            out.emit(RecordBatch::try_new(out.schema().clone(), columns)?)?;
        }
        Ok(())
    }
}

/// The streamed side's columns of the pairs in `chunk`: a slice when the chunk's rows are
/// consecutive (every row matched once, the common case of a foreign key), else a take.
fn stream_columns(batch: &RecordBatch, chunk: &[(u32, u32)]) -> JobResult<Vec<ArrayRef>> {
    let first = chunk[0].0 as usize;
    let consecutive = chunk.iter().enumerate().all(|(i, &(row, _))| row as usize == first + i);
    if consecutive {
        return Ok(batch.slice(first, chunk.len()).columns().to_vec());
    }
    let rows = UInt32Array::from_iter_values(chunk.iter().map(|&(row, _)| row));
    Ok(batch.columns().iter().map(|c| take(c, &rows, None)).collect::<Result<_, _>>()?)
}

/// The build side, loaded once per process by whichever mapper asks first; the others
/// wait for it (the loader reads with as many threads as the pool has).
#[derive(Clone, Debug, Default)]
pub struct SharedBuild {
    loaded: Arc<Mutex<Option<Arc<BuildSide>>>>,
}

impl SharedBuild {
    /// The build side, loading it with `load` if no thread has.
    pub fn get_or_load(&self, load: impl FnOnce() -> JobResult<BuildSide>) -> JobResult<Arc<BuildSide>> {
        let mut loaded =
            self.loaded.lock().map_err(|_| "loading the join's build side panicked in another task")?;
        if let Some(build) = loaded.as_ref() {
            return Ok(build.clone());
        }
        let build = Arc::new(load()?);
        *loaded = Some(build.clone());
        Ok(build)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    fn batch(keys: Vec<Option<i32>>, names: &[&str]) -> RecordBatch {
        let schema =
            Schema::new(vec![Field::new("k", DataType::Int32, true), Field::new("n", DataType::Utf8, false)]);
        let columns: Vec<ArrayRef> =
            vec![Arc::new(Int32Array::from(keys)), Arc::new(StringArray::from(names.to_vec()))];
        RecordBatch::try_new(Arc::new(schema), columns).unwrap()
    }

    #[test]
    fn duplicate_build_keys_match_in_build_order_across_batches_and_nulls_never_match() {
        let build = BuildSide::index(
            vec![
                batch(vec![Some(1), None, Some(2)], &["a", "b", "c"]),
                batch(vec![Some(1), Some(3)], &["d", "e"]),
            ],
            0,
        )
        .unwrap();
        assert_eq!(build.rows(), 5);
        let probe = Int32Array::from(vec![Some(3), None, Some(1), Some(9), Some(2)]);
        let pairs = build.probe(&probe).unwrap();
        // Row ids: a=0, b=1 (null), c=2, d=3, e=4.
        assert_eq!(pairs, vec![(0, 4), (2, 0), (2, 3), (4, 2)]);
    }

    #[test]
    fn sparse_integer_keys_are_hashed_and_dense_ones_addressed_directly_with_equal_matches() {
        let keys =
            |step: i32| batch(vec![Some(-2 * step), Some(0), None, Some(5 * step), Some(0)], &["a"; 5]);
        let dense = BuildSide::index(vec![keys(1)], 0).unwrap();
        let sparse = BuildSide::index(vec![keys(1_000_000)], 0).unwrap();
        assert!(matches!(dense.table, KeyTable::Dense(_)) && matches!(sparse.table, KeyTable::Int(_)));
        for (build, step) in [(dense, 1), (sparse, 1_000_000)] {
            let probe = Int32Array::from(vec![
                Some(0),
                Some(5 * step),
                None,
                Some(-2 * step),
                Some(7),
                Some(i32::MIN),
            ]);
            assert_eq!(build.probe(&probe).unwrap(), vec![(0, 1), (0, 4), (1, 3), (3, 0)], "step {step}");
        }
    }

    #[test]
    fn string_keys_and_unsigned_keys_keep_equality() {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, false)]));
        let keys: ArrayRef = Arc::new(StringArray::from(vec!["x", "", "yy", "x"]));
        let build = BuildSide::index(vec![RecordBatch::try_new(schema, vec![keys]).unwrap()], 0).unwrap();
        let pairs = build.probe(&StringArray::from(vec!["x", "y", ""])).unwrap();
        assert_eq!(pairs, vec![(0, 0), (0, 3), (2, 1)]);

        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::UInt64, false)]));
        let keys: ArrayRef = Arc::new(arrow::array::UInt64Array::from(vec![u64::MAX, 1]));
        let build = BuildSide::index(vec![RecordBatch::try_new(schema, vec![keys]).unwrap()], 0).unwrap();
        let probe = arrow::array::UInt64Array::from(vec![1, u64::MAX, u64::MAX - 1]);
        assert_eq!(build.probe(&probe).unwrap(), vec![(0, 1), (1, 0)]);
    }

    #[test]
    fn consecutive_matches_are_sliced_and_others_taken() {
        let stream = batch(vec![Some(1), Some(2), Some(3)], &["p", "q", "r"]);
        let sliced = stream_columns(&stream, &[(1, 0), (2, 0)]).unwrap();
        assert_eq!(sliced[1].as_string::<i32>().iter().flatten().collect::<Vec<_>>(), ["q", "r"]);
        let taken = stream_columns(&stream, &[(2, 0), (2, 1), (0, 0)]).unwrap();
        assert_eq!(taken[1].as_string::<i32>().iter().flatten().collect::<Vec<_>>(), ["r", "r", "p"]);
    }
}
