//! [`Emitter`]: where mappers, combiners and reducers put their output batches.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};

use crate::error::{BoxError, JobResult};

/// Where an [`Emitter`] hands its batches while user code is still running (the engine's
/// part writer, for reducers).
///
/// ```
/// use std::sync::{Arc, Mutex};
///
/// use gristmill::arrow::array::Int64Array;
/// use gristmill::job::{BatchSink, Emitter};
/// use gristmill::prelude::*;
///
/// let written = Arc::new(Mutex::new(0));
/// let rows = written.clone();
/// let sink: BatchSink = Box::new(move |batch| {
///     *rows.lock().unwrap() += batch.num_rows();
///     Ok(())
/// });
/// let schema = KeyedSchema::new([("n", DataType::Int64)]).schema().clone();
/// let mut out = Emitter::new(schema.clone()).with_sink(0, sink); // hand on every batch
/// out.emit(RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2]))])?)?;
/// assert_eq!(*written.lock().unwrap(), 2);
/// # Ok::<(), gristmill::BoxError>(())
/// ```
pub type BatchSink = Box<dyn FnMut(RecordBatch) -> crate::error::Result<()> + Send>;

/// Named counters (Hadoop's counters): tasks add to them, the job sums them.
///
/// User code bumps them through its emitter ([`Emitter::count`], `out.count(..)` in record
/// closures); the job's sums are in the summary and in the `_SUCCESS` manifest.
///
/// ```
/// use gristmill::job::Counters;
///
/// let mut task_one = Counters::default();
/// task_one.add("malformed", 2);
/// let mut task_two = Counters::default();
/// task_two.add("malformed", 1);
/// task_two.add("empty", 4);
/// task_one.merge(&task_two);
/// assert_eq!(task_one.get("malformed"), 3);
/// assert_eq!(task_one.get("never_added"), 0);
/// assert_eq!(task_one.iter().collect::<Vec<_>>(), [("empty", 4), ("malformed", 3)]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters(BTreeMap<String, u64>);

impl Counters {
    /// Adds `n` to counter `name`.
    pub fn add(&mut self, name: &str, n: u64) {
        match self.0.get_mut(name) {
            Some(v) => *v += n,
            None => {
                self.0.insert(name.to_owned(), n);
            }
        }
    }

    /// The value of counter `name` (0 when never added to).
    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// Adds every counter of `other` to this one.
    pub fn merge(&mut self, other: &Counters) {
        for (name, n) in &other.0 {
            self.add(name, *n);
        }
    }

    /// Counters in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

/// Collects the batches a mapper, combiner or reducer emits, checked against the declared
/// schema, and the user counters it bumps.
///
/// With a sink ([`Emitter::with_sink`]), batches are handed on as soon as more than a limit
/// is buffered, even in the middle of one call of user code: a reducer that emits a lot
/// from one chunk of groups (a join's frequent key) runs in bounded memory.
///
/// The engine makes one per task; a test makes its own to run a mapper or reducer:
///
/// ```
/// use std::sync::Arc;
///
/// use gristmill::arrow::array::{StringArray, UInt64Array};
/// use gristmill::prelude::*;
///
/// let schema = KeyedSchema::new([("word", DataType::Utf8), ("count", DataType::UInt64)]).schema().clone();
/// let mut out = Emitter::new(schema.clone());
/// // Columns of the declared types, in the declared order (names may differ).
/// let batch = RecordBatch::try_from_iter([
///     ("w", Arc::new(StringArray::from(vec!["a", "b"])) as _),
///     ("c", Arc::new(UInt64Array::from(vec![1, 2])) as _),
/// ])?;
/// out.emit(batch)?;
/// out.count("words", 2);
/// assert_eq!(out.buffered_rows(), 2);
/// assert!(out.buffered_bytes() > 0);
/// assert_eq!(out.schema(), &schema);
/// out.flush()?; // without a sink, batches stay until taken
/// let batches = out.take_batches();
/// assert_eq!(batches[0].schema(), schema);
/// assert_eq!(out.take_counters().get("words"), 2);
/// # Ok::<(), gristmill::BoxError>(())
/// ```
pub struct Emitter {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    rows: usize,
    bytes: usize,
    counters: Counters,
    sink: Option<(BatchSink, usize)>,
}

impl Emitter {
    /// An emitter for batches of `schema`.
    pub fn new(schema: SchemaRef) -> Self {
        Emitter { schema, batches: Vec::new(), rows: 0, bytes: 0, counters: Counters::default(), sink: None }
    }

    /// Hands buffered batches to `sink` whenever at least `limit_bytes` are buffered.
    pub fn with_sink(mut self, limit_bytes: usize, sink: BatchSink) -> Self {
        self.sink = Some((sink, limit_bytes));
        self
    }

    /// Hands every buffered batch to the sink; without a sink, does nothing.
    pub fn flush(&mut self) -> crate::error::Result<()> {
        if self.sink.is_none() {
            return Ok(());
        }
        for batch in self.take_batches() {
            let (sink, _) = self.sink.as_mut().expect("checked above");
            sink(batch)?;
        }
        Ok(())
    }

    /// The schema emitted batches must have.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Emits a batch. Its columns must have the declared types in the declared order;
    /// column names may differ (the declared ones are used).
    pub fn emit(&mut self, batch: RecordBatch) -> JobResult<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = if batch.schema_ref() == &self.schema { batch } else { self.conform(batch)? };
        self.rows += batch.num_rows();
        self.bytes += batch.get_array_memory_size();
        self.batches.push(batch);
        if self.sink.as_ref().is_some_and(|(_, limit)| self.bytes >= *limit) {
            self.flush().map_err(|e| Box::new(e) as BoxError)?;
        }
        Ok(())
    }

    fn conform(&self, batch: RecordBatch) -> JobResult<RecordBatch> {
        let expected: Vec<_> = self.schema.fields().iter().map(|f| f.data_type()).collect();
        let found: Vec<_> = batch.schema().fields().iter().map(|f| f.data_type().clone()).collect();
        if expected.len() != found.len() || expected.iter().zip(&found).any(|(e, f)| *e != f) {
            return Err(format!(
                "emitted a batch of types {found:?}, but the declared schema has {expected:?}"
            )
            .into());
        }
        Ok(RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())?)
    }

    /// Adds `n` to the user counter `name`.
    pub fn count(&mut self, name: &str, n: u64) {
        self.counters.add(name, n);
    }

    /// Rows emitted and not yet taken.
    pub fn buffered_rows(&self) -> usize {
        self.rows
    }

    /// Memory held by batches emitted and not yet taken.
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    /// Takes the emitted batches, leaving the emitter empty.
    pub fn take_batches(&mut self) -> Vec<RecordBatch> {
        self.rows = 0;
        self.bytes = 0;
        std::mem::take(&mut self.batches)
    }

    /// Takes the user counters.
    pub fn take_counters(&mut self) -> Counters {
        std::mem::take(&mut self.counters)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{StringArray, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("word", DataType::Utf8, false),
            Field::new("count", DataType::UInt64, false),
        ]))
    }

    #[test]
    fn renames_columns_of_matching_types_and_rejects_others() {
        let mut out = Emitter::new(schema());
        let other = Arc::new(Schema::new(vec![
            Field::new("w", DataType::Utf8, true),
            Field::new("c", DataType::UInt64, true),
        ]));
        let batch = RecordBatch::try_new(
            other,
            vec![Arc::new(StringArray::from(vec!["a"])), Arc::new(UInt64Array::from(vec![1]))],
        )
        .unwrap();
        out.emit(batch.clone()).unwrap();
        assert_eq!(out.buffered_rows(), 1);
        assert_eq!(out.take_batches()[0].schema(), schema());

        let wrong = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("w", DataType::Utf8, true)])),
            vec![Arc::new(StringArray::from(vec!["a"]))],
        )
        .unwrap();
        assert!(out.emit(wrong).unwrap_err().to_string().contains("declared schema"));
    }

    #[test]
    fn a_sink_takes_batches_past_the_limit_in_the_middle_of_user_code() {
        let written = Arc::new(std::sync::Mutex::new(Vec::<usize>::new()));
        let seen = written.clone();
        let sink: BatchSink = Box::new(move |batch| {
            seen.lock().unwrap().push(batch.num_rows());
            Ok(())
        });
        let one = RecordBatch::try_new(
            schema(),
            vec![Arc::new(StringArray::from(vec!["a"; 100])), Arc::new(UInt64Array::from(vec![1; 100]))],
        )
        .unwrap();
        let limit = one.get_array_memory_size() * 2;
        let mut out = Emitter::new(schema()).with_sink(limit, sink);
        out.emit(one.clone()).unwrap();
        assert!(written.lock().unwrap().is_empty(), "below the limit, batches stay buffered");
        out.emit(one.clone()).unwrap();
        assert_eq!(*written.lock().unwrap(), vec![100, 100], "at the limit, both are handed on");
        assert_eq!((out.buffered_rows(), out.buffered_bytes()), (0, 0));
        out.emit(one.slice(0, 10)).unwrap();
        out.flush().unwrap();
        assert_eq!(*written.lock().unwrap(), vec![100, 100, 10], "flush hands on the rest");

        let failing: BatchSink = Box::new(|_| Err(crate::error::Error::Internal("disk full".into())));
        let mut out = Emitter::new(schema()).with_sink(0, failing);
        assert!(out.emit(one).unwrap_err().to_string().contains("disk full"));
        let mut plain = Emitter::new(schema());
        plain.flush().unwrap();
    }

    #[test]
    fn counters_add_and_merge() {
        let mut a = Counters::default();
        a.add("x", 2);
        let mut b = Counters::default();
        b.add("x", 3);
        b.add("y", 1);
        a.merge(&b);
        assert_eq!((a.get("x"), a.get("y"), a.get("z")), (5, 1, 0));
    }
}
