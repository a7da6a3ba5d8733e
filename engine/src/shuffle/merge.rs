//! Reduce side of the shuffle: a streaming k-way merge of sorted runs into chunks of whole
//! key groups. It holds one batch per run (plus the chunk being built), so a partition
//! larger than memory merges from spilled runs without being loaded whole.

use std::cmp::Ordering;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::row::Rows;

use super::KeyEncoder;
use super::gather::prefetch;
use super::prefix::Prefixes;
use super::run::{Run, RunReader};
use crate::error::{Error, Result};

/// A chunk of merged rows, sorted by key, holding whole groups: group `i` starts at
/// `starts[i]`.
#[derive(Debug)]
pub struct GroupedChunk {
    /// The rows.
    pub batch: RecordBatch,
    /// The first row of each group.
    pub starts: Vec<usize>,
}

/// One run being merged: its current batch and position.
struct Cursor {
    reader: RunReader,
    batch: RecordBatch,
    keys: Rows,
    prefixes: Prefixes,
    position: usize,
    /// Index of `batch` in the merger's arena of the chunk being built.
    arena: usize,
    /// The run is consumed: the cursor loses every match.
    done: bool,
}

/// A cursor's place in the merge tree: its current key prefix in the high 96 bits and the
/// cursor's index in the low 32 (which prefixes leave zero). A consumed run's prefix is all
/// ones. Two heads whose prefixes differ compare in (key, run) order by themselves.
type Head = u128;

/// The cursor of a head.
fn cursor_of(head: Head) -> usize {
    head as u32 as usize
}

/// The key prefix of a head.
fn prefix_of(head: Head) -> u128 {
    head >> 32
}

/// Merges sorted runs of one partition, yielding chunks cut at group boundaries. Rows of
/// equal keys come in run order, so the order values reach a reducer is deterministic.
pub struct RunMerger {
    schema: SchemaRef,
    encoder: KeyEncoder,
    cursors: Vec<Cursor>,
    /// A tree of losers over the cursors (Knuth's tournament tree) ordered by (current key,
    /// cursor index): `tree[0]` is the smallest cursor's head and every other node the
    /// loser of the match played there. Moving the winner on replays one path from its
    /// leaf: log2(runs) comparisons, where a binary heap's sift-down makes about twice as
    /// many. The nodes hold heads, not cursor indices, so most matches compare two integers
    /// without touching a cursor.
    tree: Vec<Head>,
    /// The batches the current chunk's rows come from.
    arena: Vec<RecordBatch>,
    chunk_rows: usize,
}

impl RunMerger {
    /// A merger of `runs` (each sorted by the encoder's key columns, in run order).
    pub fn new(schema: SchemaRef, encoder: KeyEncoder, runs: Vec<Run>, chunk_rows: usize) -> Result<Self> {
        if u32::try_from(runs.len()).is_err() {
            return Err(Error::Internal(format!("{} runs to merge: at most 2^32 - 1", runs.len())));
        }
        let mut merger = RunMerger {
            schema,
            encoder,
            cursors: Vec::with_capacity(runs.len()),
            tree: Vec::new(),
            arena: Vec::new(),
            chunk_rows: chunk_rows.max(1),
        };
        for run in runs {
            let mut reader = run.open()?;
            if let Some(batch) = next_non_empty(&mut reader)? {
                let index = merger.cursors.len();
                let keys = merger.encoder.encode(&batch)?;
                let prefixes = Prefixes::of(&keys);
                check_sorted(&keys, &prefixes, index)?;
                let cursor = Cursor { reader, batch, keys, prefixes, position: 0, arena: 0, done: false };
                merger.cursors.push(cursor);
            }
        }
        merger.build_tree();
        Ok(merger)
    }

    /// Plays every match bottom-up. Leaf `c` sits at node `n + c` of an implicit binary
    /// tree whose node `i` has children `2i` and `2i + 1`: the path [`RunMerger::replay`]
    /// climbs.
    fn build_tree(&mut self) {
        let n = self.cursors.len();
        let mut winners = vec![0; 2 * n];
        for c in 0..n {
            winners[n + c] = self.head(c);
        }
        self.tree = vec![0; n.max(1)];
        for node in (1..n).rev() {
            let (a, b) = (winners[2 * node], winners[2 * node + 1]);
            let (winner, loser) = if self.less(a, b) { (a, b) } else { (b, a) };
            winners[node] = winner;
            self.tree[node] = loser;
        }
        if n > 0 {
            self.tree[0] = winners[1];
        }
    }

    /// The cursor with the smallest current key, unless every run is consumed.
    fn top(&self) -> Option<usize> {
        let cursor = cursor_of(*self.tree.first()?);
        (!self.cursors.get(cursor)?.done).then_some(cursor)
    }

    /// Cursor `c`'s current head.
    fn head(&self, c: usize) -> Head {
        let cursor = &self.cursors[c];
        let prefix = if cursor.done { Head::MAX << 32 } else { cursor.prefixes.prefixes[cursor.position] };
        prefix | c as Head
    }

    /// Plays cursor `leaf`'s current head up the tree from its leaf to the root.
    fn replay(&mut self, leaf: usize) {
        let mut winner = self.head(leaf);
        let mut node = (leaf + self.cursors.len()) / 2;
        while node > 0 {
            let parked = self.tree[node];
            // Without a branch: which side wins is a coin toss for random keys.
            let parked_wins = (self.less(parked, winner) as Head).wrapping_neg();
            let loser = (winner & parked_wins) | (parked & !parked_wins);
            winner ^= parked ^ loser;
            self.tree[node] = loser;
            node /= 2;
        }
        self.tree[0] = winner;
    }

    /// Orders heads by current key, then by run (so equal keys come in run order); a
    /// consumed run comes after every other.
    #[inline]
    fn less(&self, a: Head, b: Head) -> bool {
        if prefix_of(a) != prefix_of(b) {
            return a < b;
        }
        self.less_by_cursors(cursor_of(a), cursor_of(b))
    }

    /// [`RunMerger::less`] for heads of equal prefixes: equal or longer keys, or a
    /// consumed run.
    fn less_by_cursors(&self, a: usize, b: usize) -> bool {
        let (ca, cb) = (&self.cursors[a], &self.cursors[b]);
        if ca.done || cb.done {
            return !ca.done || (cb.done && a < b);
        }
        let keys = ca.prefixes.compare(&ca.keys, ca.position, &cb.prefixes, &cb.keys, cb.position);
        keys.then(a.cmp(&b)) == Ordering::Less
    }

    /// Moves the top cursor past its current row, loading its run's next batch when needed
    /// (and checking the run stays sorted across batches).
    fn advance_top(&mut self, top: usize) -> Result<()> {
        let cursor = &mut self.cursors[top];
        cursor.position += 1;
        if let Some(ahead) = cursor.prefixes.prefixes.get(cursor.position + PREFETCH_ROWS) {
            prefetch(ahead);
        }
        if cursor.position == cursor.batch.num_rows() {
            let Some(batch) = next_non_empty(&mut cursor.reader)? else {
                cursor.done = true;
                self.replay(top);
                return Ok(());
            };
            let keys = self.encoder.encode(&batch)?;
            let previous_last = cursor.keys.row(cursor.batch.num_rows() - 1).owned();
            if keys.row(0) < previous_last.row() {
                return Err(unsorted(top));
            }
            let prefixes = Prefixes::of(&keys);
            check_sorted(&keys, &prefixes, top)?;
            cursor.batch = batch;
            cursor.prefixes = prefixes;
            cursor.keys = keys;
            cursor.position = 0;
            cursor.arena = self.arena.len();
            self.arena.push(cursor.batch.clone());
        }
        self.replay(top);
        Ok(())
    }

    /// The next chunk of whole groups, or `None` when every run is consumed.
    pub fn next_chunk(&mut self) -> Result<Option<GroupedChunk>> {
        if self.top().is_none() {
            return Ok(None);
        }
        self.arena.clear();
        for cursor in self.cursors.iter_mut().filter(|c| !c.done) {
            cursor.arena = self.arena.len();
            self.arena.push(cursor.batch.clone());
        }
        let mut picks: Vec<(usize, usize)> = Vec::with_capacity(self.chunk_rows);
        let mut starts = Vec::new();
        let mut previous = PreviousKey::default();
        while let Some(top) = self.top() {
            if starts.is_empty() || previous.differs(&self.cursors[top]) {
                if picks.len() >= self.chunk_rows {
                    break;
                }
                starts.push(picks.len());
                previous.set(&self.cursors[top]);
            }
            let cursor = &self.cursors[top];
            picks.push((cursor.arena, cursor.position));
            self.advance_top(top)?;
        }
        Ok(Some(GroupedChunk { batch: self.gather(&picks)?, starts }))
    }

    fn gather(&self, picks: &[(usize, usize)]) -> Result<RecordBatch> {
        let contiguous = picks.windows(2).all(|w| w[1].0 == w[0].0 && w[1].1 == w[0].1 + 1);
        if contiguous {
            let (arena, start) = picks[0];
            return Ok(self.arena[arena].slice(start, picks.len()));
        }
        super::gather::gather(&self.schema, &self.arena, picks)
    }
}

/// The key of the group being gathered: its prefix, and its bytes unless the prefix
/// holds them.
#[derive(Default)]
struct PreviousKey {
    prefix: u128,
    exact_len: Option<usize>,
    bytes: Vec<u8>,
}

impl PreviousKey {
    fn set(&mut self, cursor: &Cursor) {
        self.prefix = cursor.prefixes.prefixes[cursor.position];
        self.exact_len = cursor.prefixes.exact_len;
        if self.exact_len.is_none() {
            self.bytes.clear();
            self.bytes.extend_from_slice(cursor.keys.row(cursor.position).as_ref());
        }
    }

    fn differs(&self, cursor: &Cursor) -> bool {
        if cursor.prefixes.prefixes[cursor.position] != self.prefix {
            return true;
        }
        if self.exact_len.is_some() && self.exact_len == cursor.prefixes.exact_len {
            return false;
        }
        let key = cursor.keys.row(cursor.position);
        match self.exact_len {
            // An exact key is its prefix's first bytes.
            Some(len) => key.as_ref() != &self.prefix.to_be_bytes()[..len],
            None => key.as_ref() != self.bytes.as_slice(),
        }
    }
}

fn next_non_empty(reader: &mut RunReader) -> Result<Option<RecordBatch>> {
    while let Some(batch) = reader.next_batch()? {
        if batch.num_rows() > 0 {
            return Ok(Some(batch));
        }
    }
    Ok(None)
}

/// How far ahead of a cursor its key prefixes are loaded: the cursors' reads interleave,
/// too many streams for the CPU to foresee.
const PREFETCH_ROWS: usize = 16;

/// Fails unless `keys` (of run `run`) are in order.
fn check_sorted(keys: &Rows, prefixes: &Prefixes, run: usize) -> Result<()> {
    let n = prefixes.prefixes.len();
    let in_order = (1..n).all(|i| prefixes.compare(keys, i - 1, prefixes, keys, i) != Ordering::Greater);
    if in_order { Ok(()) } else { Err(unsorted(run)) }
}

fn unsorted(run: usize) -> Error {
    Error::Internal(format!("map output run {run} is not sorted by key (did a combiner change keys?)"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
        ]))
    }

    fn run(rows: &[(&str, i64)]) -> RecordBatch {
        let k = StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>());
        let v = Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>());
        RecordBatch::try_new(schema(), vec![Arc::new(k), Arc::new(v)]).unwrap()
    }

    /// Each chunk's (key, value) rows and group starts.
    type Chunks = Vec<(Vec<(String, i64)>, Vec<usize>)>;

    fn merge_all(runs: Vec<RecordBatch>, chunk: usize) -> Chunks {
        let enc = KeyEncoder::new(&schema(), &[0]).unwrap();
        let runs = runs.into_iter().map(Run::Memory).collect();
        let mut m = RunMerger::new(schema(), enc, runs, chunk).unwrap();
        let mut out = Vec::new();
        while let Some(c) = m.next_chunk().unwrap() {
            let k = c.batch.column(0).as_string::<i32>();
            let v = c.batch.column(1).as_primitive::<Int64Type>();
            let rows = (0..c.batch.num_rows()).map(|i| (k.value(i).to_owned(), v.value(i))).collect();
            out.push((rows, c.starts));
        }
        out
    }

    #[test]
    fn merges_in_key_then_run_order_and_cuts_at_groups() {
        let a = run(&[("a", 1), ("c", 2), ("c", 3)]);
        let b = run(&[("a", 10), ("b", 11), ("c", 12)]);
        let chunks = merge_all(vec![a, b], 2);
        let flat: Vec<_> = chunks.iter().flat_map(|c| c.0.clone()).collect();
        let expect: Vec<(String, i64)> = [("a", 1), ("a", 10), ("b", 11), ("c", 2), ("c", 3), ("c", 12)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        assert_eq!(flat, expect);
        // chunk of 2 rows: [a a], [b], wait: b is a new group after 2 rows, so it starts a new chunk.
        assert_eq!(chunks[0].1, vec![0]);
        assert_eq!(chunks[0].0.len(), 2);
        assert_eq!(chunks[1].0[0].0, "b");
        // the c group is never split.
        assert!(chunks.iter().filter(|c| c.0.iter().any(|r| r.0 == "c")).count() == 1);
    }

    #[test]
    fn many_runs_of_uneven_lengths_merge_in_key_then_run_order() {
        // Seven runs (not a power of two), one empty, ending at different keys; "m" is in
        // five of them. A value is 10 * run + position, so (key, value) order is (key, run,
        // position) order: the order the merge must produce.
        let runs = vec![
            run(&[]),
            run(&[("a", 10), ("m", 11)]),
            run(&[("m", 20)]),
            run(&[("c", 30), ("m", 31), ("m", 32), ("z", 33)]),
            run(&[("m", 40), ("q", 41)]),
            run(&[("a", 50)]),
            run(&[("m", 60), ("m", 61), ("q", 62), ("z", 63)]),
        ];
        let mut expected: Vec<(String, i64)> = Vec::new();
        for batch in &runs {
            let (k, v) = (batch.column(0).as_string::<i32>(), batch.column(1).as_primitive::<Int64Type>());
            expected.extend((0..batch.num_rows()).map(|i| (k.value(i).to_owned(), v.value(i))));
        }
        expected.sort();
        let chunks = merge_all(runs, 4);
        let merged: Vec<(String, i64)> = chunks.iter().flat_map(|c| c.0.clone()).collect();
        assert_eq!(merged, expected);
        // The seven rows of "m" are one group, never split across chunks.
        assert_eq!(chunks.iter().filter(|c| c.0.iter().any(|r| r.0 == "m")).count(), 1);
    }

    #[test]
    fn keys_equal_in_their_first_twelve_bytes_merge_by_their_whole_bytes() {
        let long = |tail: &str| format!("the same twelve bytes, then {tail}");
        let (a, b, c) = (long("a"), long("b"), long("c"));
        let runs = vec![run(&[(&b, 1), (&c, 2)]), run(&[(&a, 3), (&b, 4)]), run(&[(&c, 5)])];
        let chunks = merge_all(runs, 100);
        let merged: Vec<(String, i64)> = chunks[0].0.clone();
        let expected = [(&a, 3), (&b, 1), (&b, 4), (&c, 2), (&c, 5)].map(|(k, v)| (k.clone(), v));
        assert_eq!(merged, expected);
        assert_eq!(chunks[0].1, [0, 1, 3]);
    }

    /// A run read as two batches: `SORTED_READ_ROWS` rows in order, then `last`.
    fn two_batch_run(last: &str) -> Run {
        use crate::shuffle::{FlushBatches, SORTED_READ_ROWS, SortedRows};
        let keys: Vec<String> = (0..SORTED_READ_ROWS).map(|i| format!("k{i:06}")).collect();
        let mut rows: Vec<(&str, i64)> = keys.iter().map(|k| (k.as_str(), 0)).collect();
        rows.push((last, 1));
        let flush = Arc::new(FlushBatches::new(schema(), vec![run(&rows)]).unwrap());
        Run::Sorted(Arc::new(SortedRows::new(flush, (0..rows.len() as u32).collect())))
    }

    #[test]
    fn single_run_is_sliced_and_unsorted_runs_are_rejected() {
        use crate::shuffle::SORTED_READ_ROWS;
        let chunks = merge_all(vec![run(&[("x", 1), ("y", 2), ("y", 3)])], 100);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].1, vec![0, 1]);
        let enc = KeyEncoder::new(&schema(), &[0]).unwrap();
        let unsorted = RunMerger::new(schema(), enc, vec![Run::Memory(run(&[("b", 1), ("a", 2)]))], 10);
        assert!(unsorted.err().unwrap().to_string().contains("not sorted"));
        // Out of order across two batches of one run: found when the second is read.
        let enc = KeyEncoder::new(&schema(), &[0]).unwrap();
        let mut m = RunMerger::new(schema(), enc, vec![two_batch_run("a")], 100_000).unwrap();
        assert!(m.next_chunk().unwrap_err().to_string().contains("not sorted"));
        let enc = KeyEncoder::new(&schema(), &[0]).unwrap();
        let mut m = RunMerger::new(schema(), enc, vec![two_batch_run("z")], 100_000).unwrap();
        assert_eq!(m.next_chunk().unwrap().unwrap().batch.num_rows(), SORTED_READ_ROWS + 1);
    }

    #[test]
    fn a_key_spans_runs_whose_keys_are_exact_in_one_and_not_in_the_other() {
        // Empty strings encode in one byte, so the first run's prefixes are its whole keys;
        // the second run has a longer key too. The empty key is still one group.
        let chunks = merge_all(vec![run(&[("", 1), ("", 2)]), run(&[("", 3), ("x", 4)])], 100);
        assert_eq!(chunks[0].1, vec![0, 3]);
        let values: Vec<i64> = chunks[0].0.iter().map(|r| r.1).collect();
        assert_eq!(values, [1, 2, 3, 4]);
    }

    #[test]
    fn integer_keys_merge_on_prefixes_in_key_then_run_order() {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        let ints = |keys: Vec<i64>| {
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(keys))]).unwrap();
            Run::Memory(batch)
        };
        let runs = vec![ints(vec![i64::MIN, -5, 7, 7]), ints(vec![-5, 0, 7, i64::MAX])];
        let enc = KeyEncoder::new(&schema, &[0]).unwrap();
        let mut merger = RunMerger::new(schema.clone(), enc, runs, 100).unwrap();
        let chunk = merger.next_chunk().unwrap().unwrap();
        let keys = chunk.batch.column(0).as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(keys, [i64::MIN, -5, -5, 0, 7, 7, 7, i64::MAX]);
        assert_eq!(chunk.starts, [0, 1, 3, 4, 7]);
        assert!(merger.next_chunk().unwrap().is_none());
    }
}
