//! Inner equi-join of two Parquet datasets, by one of two strategies (`--strategy`):
//!
//! * **broadcast** ([`BuildSide`], [`ProbeRows`]): a map-only job in which every process
//!   loads the smaller side into a hash table and map tasks stream the other side past it.
//!   Chosen by default when the smaller side's files total at most `--broadcast-limit` bytes
//!   (Spark's `autoBroadcastJoinThreshold` compares file sizes the same way).
//! * **repartition**, described below: the reduce-side join of the MapReduce literature, for
//!   sides of any size. Each side has its own input and mapper, the mappers tag rows with
//!   their side, and the reducers pair the rows of each key.
//!
//! **Map output.** One row per input row (rows with a null key never match and are dropped,
//! counted as `join_null_keys`): `join_key`, `join_side` (0 left, 1 right), `join_seq` (a
//! number unique per map-output row: map task index and row number), then every left column
//! and every right column, all nullable; a row fills its own side's columns and leaves the
//! other side's null. The key is `[join_key, join_side, join_seq]`, so within a join key all
//! left rows come before all right rows; a custom partitioner ([`JoinKeyPartitioner`]) hashes
//! the join key alone, so every row of a join key reaches the same reducer.
//!
//! `join_side` is in the key rather than left to the merge's tie order: the reduce-side merge
//! does hand equal keys over in run order and map tasks are numbered left input first, but
//! that is an accident of planning, not a promise the engine makes. `join_seq` is in the key
//! because the merge never cuts a key group across chunks: keyed on `[join_key, join_side]`
//! alone, a key frequent on the right side would arrive as one group, whole in memory. With
//! the sequence number every group is one row, chunks are cut every 32K rows, and the right
//! rows of a frequent key stream through.
//!
//! **Memory on frequent keys.** The reducer ([`pairs::JoinGroups`]) buffers the left rows of
//! the current key only (copied out of the merged chunks as they pass) and streams the right
//! rows against them, emitting output in batches of [`OUTPUT_BATCH_ROWS`] rows that the
//! engine writes out as soon as a few MiB are buffered. A key with `L` left and `R` right
//! rows costs memory for `L` rows plus a chunk, never `L × R`.
//!
//! **Schemas.** Each side's schema is read from the Parquet footer of its first file (in
//! listing order) by the job's plan ([`Job::plan`]), once per job, with the job's storage
//! options; tasks get it with the job's parameters. Every file of the side is then read
//! with exactly those columns and types (a file lacking one is an error naming it). The output holds every left column under its own name, then every right column, a
//! right column whose name is already taken getting a `right_` prefix (repeated until
//! unique). String keys of any offset width are read as `Utf8`, binary keys as `Binary`;
//! the two keys must then have the same type.

mod broadcast;
mod pairs;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt8Array, UInt64Array, new_null_array};
use arrow::compute::{filter_record_batch, is_not_null};
use arrow::datatypes::{Field, Schema, SchemaRef};
use gristmill::config::parse_byte_size;
use gristmill::job::{ParquetColumn, PlanContext};
use gristmill::partition::{HashPartitioner, Partitioner};
use gristmill::prelude::*;
use serde::{Deserialize, Serialize};

pub use broadcast::{BuildSide, ProbeRows};
pub use pairs::JoinGroups;

/// The default `--broadcast-limit`: the smaller side's file bytes up to which the join is
/// a broadcast join. In memory a side takes about 2-4 times its Parquet bytes.
pub const DEFAULT_BROADCAST_LIMIT: u64 = 1 << 30;

/// How the two sides meet.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    /// Broadcast the smaller side if its files total at most `--broadcast-limit`, else
    /// repartition.
    #[default]
    Auto,
    /// Load the smaller side into a hash table in every process and stream the other past
    /// it, in a map-only job (no shuffle; output in the streamed side's order).
    Broadcast,
    /// Shuffle both sides by key and pair them in reducers (any size; output sorted by key
    /// within each part file).
    Repartition,
}

/// Rows per output batch the reducer emits.
pub const OUTPUT_BATCH_ROWS: usize = 8192;

/// Map-output column: the join key.
pub const KEY: usize = 0;
/// Map-output column: 0 for a left row, 1 for a right row.
pub const SIDE: usize = 1;
/// Map-output column: a number unique per row (map task index << 40 | row number).
pub const SEQ: usize = 2;
/// The first map-output column holding a side's columns.
const FIRST_DATA_COLUMN: usize = 3;

/// `join_side` of left rows.
pub const LEFT: u8 = 0;
/// `join_side` of right rows.
pub const RIGHT: u8 = 1;

/// Joins two Parquet datasets on one key column each.
#[derive(clap::Args, Clone, Debug, Default, Serialize, Deserialize)]
pub struct Join {
    /// The left side: Parquet file, directory, glob or URL. In a repartition join a
    /// reducer holds the left rows of one key in memory while the right rows stream past:
    /// put the side with fewer rows per key here.
    #[arg(long, value_name = "PATH|GLOB|URL")]
    pub left: String,

    /// The left side's key column.
    #[arg(long, value_name = "COLUMN")]
    pub left_key: String,

    /// The right side: Parquet file, directory, glob or URL.
    #[arg(long, value_name = "PATH|GLOB|URL")]
    pub right: String,

    /// The right side's key column (same type as the left key).
    #[arg(long, value_name = "COLUMN")]
    pub right_key: String,

    /// How the sides meet.
    #[arg(long, value_enum, default_value_t = Strategy::Auto)]
    pub strategy: Strategy,

    /// With `--strategy auto`: the most bytes of Parquet files the smaller side may have
    /// to be broadcast (e.g. 512MiB).
    #[arg(long, value_name = "BYTES", default_value = "1GiB", value_parser = parse_byte_size)]
    pub broadcast_limit: u64,

    /// What [`Job::plan`] read of each side; `None` before it ran.
    #[arg(skip)]
    #[serde(default)]
    planned: Option<Planned>,

    /// A broadcast join's build side, loaded once per process.
    #[arg(skip)]
    #[serde(skip)]
    build: broadcast::SharedBuild,
}

impl Join {
    /// A join of `left` on `left_key` with `right` on `right_key`.
    pub fn new(left: &str, left_key: &str, right: &str, right_key: &str) -> Self {
        Join {
            left: left.to_owned(),
            left_key: left_key.to_owned(),
            right: right.to_owned(),
            right_key: right_key.to_owned(),
            strategy: Strategy::Auto,
            broadcast_limit: DEFAULT_BROADCAST_LIMIT,
            planned: None,
            build: Default::default(),
        }
    }

    /// With `strategy`.
    pub fn with_strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// The layout of what [`Job::plan`] read (computed again on each call: no I/O).
    pub fn layout(&self) -> JobResult<Layout> {
        let Some(planned) = &self.planned else {
            return Err("the join was not planned: its plan reads the sides' schemas".into());
        };
        let side = |index: usize, name: &'static str, key: &str| -> JobResult<SideSchema> {
            let read = &planned.sides[index];
            let side = SideSchema::from_schema(name, read.file.clone(), &read.schema, key)?;
            Ok(SideSchema { bytes: read.bytes, ..side })
        };
        let mut layout = Layout::new(side(0, "left", &self.left_key)?, side(1, "right", &self.right_key)?)?;
        layout.build_side =
            build_side(self.strategy, self.broadcast_limit, layout.sides.each_ref().map(|s| s.bytes));
        Ok(layout)
    }

    /// The paths of side `side` (0 left, 1 right).
    fn paths(&self, side: usize) -> &str {
        if side == 0 { &self.left } else { &self.right }
    }
}

/// What the join's plan read, for its tasks.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Planned {
    /// Left, then right.
    sides: [SideFile; 2],
    /// `--allow-uncommitted`: tasks list a broadcast join's build side as the plan did.
    allow_uncommitted: bool,
}

/// One side as the plan found it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SideFile {
    /// Its first file, whose footer gave the schema.
    file: String,
    /// That footer's schema.
    #[serde(with = "gristmill::job::schema_serde")]
    schema: SchemaRef,
    /// The bytes of all its files.
    bytes: u64,
}

impl SideFile {
    /// Lists side `side` (`left` or `right`) at `paths` and reads its first file's footer.
    fn read(ctx: &PlanContext, side: &str, paths: &str) -> JobResult<Self> {
        let files = ctx.list(&[paths.to_owned()])?;
        let Some(first) = files.first() else {
            return Err(format!("--{side} {paths} holds no files to read a schema from").into());
        };
        let schema = ctx.parquet_schema(first)?;
        Ok(SideFile { file: first.display(), schema, bytes: files.iter().map(|f| f.size).sum() })
    }
}

/// One side's schema as found in its first file.
#[derive(Clone, Debug)]
pub struct SideSchema {
    /// `left` or `right` (for messages).
    pub side: &'static str,
    /// The first file, whose footer gave the schema.
    pub file: String,
    /// The columns read, in file order (the key's type normalized).
    pub fields: Vec<Field>,
    /// The key column's index in `fields`.
    pub key: usize,
    /// The bytes of all its files.
    pub bytes: u64,
}

impl SideSchema {
    /// The side described by `schema` (of `file`), keyed on column `key`.
    pub fn from_schema(side: &'static str, file: String, schema: &Schema, key: &str) -> JobResult<Self> {
        let Ok(index) = schema.index_of(key) else {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(format!(
                "--{side}-key `{key}`: {file} has no such column (it has: {})",
                names.join(", ")
            )
            .into());
        };
        let found = schema.field(index).data_type();
        let Some(key_type) = key_type(found) else {
            return Err(format!(
                "--{side}-key `{key}` of {file} has type {found}; join keys must be integers, strings, \
                 binary, dates or decimals"
            )
            .into());
        };
        let mut fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), f.is_nullable()))
            .collect();
        fields[index] = fields[index].clone().with_data_type(key_type);
        Ok(SideSchema { side, file, fields, key: index, bytes: 0 })
    }

    fn key_field(&self) -> &Field {
        &self.fields[self.key]
    }

    /// What the engine reads from every file of this side: every column, with these types.
    fn input_spec(&self) -> InputSpec {
        let mut spec = InputSpec::text_lines();
        spec.parquet_columns = Some(
            self.fields
                .iter()
                .map(|f| ParquetColumn { name: f.name().clone(), data_type: Some(f.data_type().clone()) })
                .collect(),
        );
        spec
    }
}

/// The type a key column of type `found` is read as, if it can be a join key.
fn key_type(found: &DataType) -> Option<DataType> {
    use DataType::*;
    match found {
        Int8
        | Int16
        | Int32
        | Int64
        | UInt8
        | UInt16
        | UInt32
        | UInt64
        | Date32
        | Date64
        | Boolean
        | Decimal128(_, _) => Some(found.clone()),
        Utf8 | LargeUtf8 | Utf8View => Some(Utf8),
        Binary | LargeBinary | BinaryView => Some(Binary),
        _ => None,
    }
}

/// Where each side's columns go: the map output's layout and the output schema.
#[derive(Debug)]
pub struct Layout {
    /// The two sides, left first.
    pub sides: [SideSchema; 2],
    /// `join_key`, `join_side`, `join_seq`, the left columns, the right columns.
    pub map_output: KeyedSchema,
    /// The left columns, then the right columns (renamed where taken).
    pub output: SchemaRef,
    /// A broadcast join's build side (0 left, 1 right); `None` for a repartition join.
    pub build_side: Option<usize>,
}

impl Layout {
    /// Checks the keys agree and lays out the map output and the output.
    pub fn new(left: SideSchema, right: SideSchema) -> JobResult<Self> {
        let (lk, rk) = (left.key_field(), right.key_field());
        if lk.data_type() != rk.data_type() {
            return Err(format!(
                "the join keys have different types: --left-key `{}` of {} is {}, --right-key `{}` of {} is {}",
                lk.name(),
                left.file,
                lk.data_type(),
                rk.name(),
                right.file,
                rk.data_type()
            )
            .into());
        }
        let mut map_fields = vec![
            Field::new("join_key", lk.data_type().clone(), false),
            Field::new("join_side", DataType::UInt8, false),
            Field::new("join_seq", DataType::UInt64, false),
        ];
        for side in [&left, &right] {
            map_fields.extend(
                side.fields
                    .iter()
                    .map(|f| Field::new(format!("{}.{}", side.side, f.name()), f.data_type().clone(), true)),
            );
        }
        let map_output = KeyedSchema::from_schema(Arc::new(Schema::new(map_fields))).key([
            "join_key",
            "join_side",
            "join_seq",
        ]);
        let output = Arc::new(Schema::new(output_fields(&left.fields, &right.fields)));
        Ok(Layout { sides: [left, right], map_output, output, build_side: None })
    }

    /// The map-output columns of side `side` (0 left, 1 right).
    pub fn columns_of(&self, side: usize) -> std::ops::Range<usize> {
        let left = self.sides[0].fields.len();
        match side {
            0 => FIRST_DATA_COLUMN..FIRST_DATA_COLUMN + left,
            _ => FIRST_DATA_COLUMN + left..FIRST_DATA_COLUMN + left + self.sides[1].fields.len(),
        }
    }
}

/// The side to broadcast, if any: the smaller (the left on a tie), when the strategy asks
/// for a broadcast or allows one and the side's `bytes` are within `limit`.
pub fn build_side(strategy: Strategy, limit: u64, bytes: [u64; 2]) -> Option<usize> {
    let smaller = usize::from(bytes[1] < bytes[0]);
    match strategy {
        Strategy::Broadcast => Some(smaller),
        Strategy::Auto => (bytes[smaller] <= limit).then_some(smaller),
        Strategy::Repartition => None,
    }
}

/// The output fields: left names as they are, right names prefixed with `right_` until
/// they are not taken.
fn output_fields(left: &[Field], right: &[Field]) -> Vec<Field> {
    let mut fields: Vec<Field> = left.to_vec();
    for field in right {
        let mut name = field.name().clone();
        while fields.iter().any(|f| f.name() == &name) {
            name = format!("right_{name}");
        }
        fields.push(field.clone().with_name(name));
    }
    fields
}

impl Job for Join {
    const NAME: &'static str = "join";
    const ABOUT: &'static str = "Inner equi-join of two Parquet datasets: a broadcast hash join when the \
        smaller side is within --broadcast-limit, else a reduce-side (repartition) join. Output: every \
        left column, then every right column (`right_` prefixed where a name is taken), one row per \
        matching pair.";

    fn plan(&mut self, ctx: &PlanContext) -> JobResult<()> {
        let sides = [SideFile::read(ctx, "left", &self.left)?, SideFile::read(ctx, "right", &self.right)?];
        self.planned = Some(Planned { sides, allow_uncommitted: ctx.allow_uncommitted() });
        // The keys are checked now, so the methods below cannot fail once planned.
        self.layout().map(drop)
    }

    fn inputs(&self) -> Vec<JobInput> {
        // Unplanned, no inputs: the engine then refuses to run the job.
        let Ok(layout) = self.layout() else { return Vec::new() };
        let input = |side: usize| JobInput {
            paths: vec![self.paths(side).to_owned()],
            spec: layout.sides[side].input_spec(),
        };
        match layout.build_side {
            Some(build) => vec![input(1 - build)],
            None => vec![input(0), input(1)],
        }
    }

    fn map_output(&self) -> KeyedSchema {
        match self.layout() {
            Ok(Layout { build_side: Some(_), output, .. }) => KeyedSchema::from_schema(output),
            Ok(layout) => layout.map_output,
            Err(_) => KeyedSchema::from_schema(Arc::new(Schema::empty())),
        }
    }

    fn reducers(&self) -> Option<usize> {
        self.layout().ok()?.build_side.map(|_| 0)
    }

    fn output_schema(&self) -> SchemaRef {
        self.layout().map_or_else(|_| Arc::new(Schema::empty()), |layout| layout.output)
    }

    fn mapper(&self, task: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
        let layout = self.layout()?;
        if let Some(build) = layout.build_side {
            let side = &layout.sides[build];
            let allow_uncommitted = self.planned.as_ref().is_some_and(|p| p.allow_uncommitted);
            let loaded = self
                .build
                .get_or_load(|| BuildSide::load(side, self.paths(build), allow_uncommitted, task))?;
            let stream_key = layout.sides[1 - build].key;
            return Ok(Box::new(ProbeRows::new(loaded, stream_key, build == 0)));
        }
        let side = match task.input {
            0 => LEFT,
            1 => RIGHT,
            other => return Err(format!("join has two inputs, not input {other}").into()),
        };
        let other = &layout.sides[1 - usize::from(side)];
        Ok(Box::new(TagRows {
            side,
            key: layout.sides[usize::from(side)].key,
            others: other.fields.iter().map(|f| f.data_type().clone()).collect(),
            next_seq: u64::from(task.task.index) << 40,
        }))
    }

    fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
        let layout = self.layout()?;
        Ok(Box::new(JoinGroups::new(&layout, OUTPUT_BATCH_ROWS)?))
    }

    fn partitioner(&self) -> Option<Box<dyn Partitioner>> {
        Some(Box::new(JoinKeyPartitioner))
    }
}

/// The mapper of one side: tags each row with its side and a sequence number, and pads
/// the other side's columns with nulls.
struct TagRows {
    side: u8,
    /// The key column's index in input batches.
    key: usize,
    /// The other side's column types.
    others: Vec<DataType>,
    next_seq: u64,
}

impl Mapper for TagRows {
    fn map(&mut self, batch: &RecordBatch, out: &mut Emitter) -> JobResult<()> {
        let nulls = batch.column(self.key).null_count();
        let batch = if nulls > 0 {
            out.count("join_null_keys", nulls as u64);
            filter_record_batch(batch, &is_not_null(batch.column(self.key))?)?
        } else {
            batch.clone()
        };
        let rows = batch.num_rows();
        let seq = UInt64Array::from_iter_values(self.next_seq..self.next_seq + rows as u64);
        self.next_seq += rows as u64;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(out.schema().fields().len());
        columns.push(batch.column(self.key).clone());
        columns.push(Arc::new(UInt8Array::from_value(self.side, rows)));
        columns.push(Arc::new(seq));
        let padding = self.others.iter().map(|t| new_null_array(t, rows));
        if self.side == LEFT {
            columns.extend(batch.columns().iter().cloned());
            columns.extend(padding);
        } else {
            columns.extend(padding);
            columns.extend(batch.columns().iter().cloned());
        }
        out.emit(RecordBatch::try_new(out.schema().clone(), columns)?)
    }
}

/// Routes map-output rows by the join key alone (the first key column), so both sides of
/// a key, and all its sequence numbers, reach the same reducer.
#[derive(Clone, Copy, Debug, Default)]
pub struct JoinKeyPartitioner;

impl Partitioner for JoinKeyPartitioner {
    fn partition(
        &self,
        keys: &[ArrayRef],
        num_partitions: usize,
        out: &mut Vec<u32>,
    ) -> gristmill::Result<()> {
        HashPartitioner.partition(&keys[..1], num_partitions, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: &[(&str, DataType)]) -> Schema {
        Schema::new(fields.iter().map(|(n, t)| Field::new(*n, t.clone(), true)).collect::<Vec<_>>())
    }

    #[test]
    fn clashing_right_names_get_a_prefix_until_unique() {
        let left =
            schema(&[("id", DataType::Int64), ("name", DataType::Utf8), ("right_name", DataType::Utf8)]);
        let right = schema(&[("id", DataType::Int64), ("name", DataType::Utf8), ("qty", DataType::Int32)]);
        let left = SideSchema::from_schema("left", "l.parquet".into(), &left, "id").unwrap();
        let right = SideSchema::from_schema("right", "r.parquet".into(), &right, "id").unwrap();
        let layout = Layout::new(left, right).unwrap();
        let names: Vec<&str> = layout.output.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["id", "name", "right_name", "right_id", "right_right_name", "qty"]);
        assert_eq!(layout.columns_of(0), 3..6);
        assert_eq!(layout.columns_of(1), 6..9);
        assert_eq!(layout.map_output.key_indices().unwrap(), vec![0, 1, 2]);
    }

    #[test]
    fn the_smaller_side_is_broadcast_when_asked_or_within_the_limit() {
        assert_eq!(build_side(Strategy::Auto, 100, [100, 500]), Some(0));
        assert_eq!(build_side(Strategy::Auto, 100, [500, 99]), Some(1));
        assert_eq!(build_side(Strategy::Auto, 100, [70, 70]), Some(0), "the left on a tie");
        assert_eq!(build_side(Strategy::Auto, 100, [101, 500]), None, "over the limit");
        assert_eq!(build_side(Strategy::Broadcast, 1, [500, 400]), Some(1));
        assert_eq!(build_side(Strategy::Repartition, u64::MAX, [1, 1]), None);
    }

    #[test]
    fn keys_must_exist_be_joinable_and_agree() {
        let s = schema(&[("id", DataType::Int32), ("x", DataType::Float64), ("s", DataType::LargeUtf8)]);
        let err = SideSchema::from_schema("left", "l.parquet".into(), &s, "nope").unwrap_err().to_string();
        assert!(
            err.contains("--left-key `nope`") && err.contains("l.parquet") && err.contains("id, x, s"),
            "{err}"
        );
        let err = SideSchema::from_schema("left", "l.parquet".into(), &s, "x").unwrap_err().to_string();
        assert!(err.contains("Float64"), "{err}");
        let strings = SideSchema::from_schema("left", "l.parquet".into(), &s, "s").unwrap();
        assert_eq!(strings.key_field().data_type(), &DataType::Utf8, "string keys are read as Utf8");
        let ints = SideSchema::from_schema("right", "r.parquet".into(), &s, "id").unwrap();
        let err = Layout::new(strings, ints).unwrap_err().to_string();
        assert!(
            err.contains("`s` of l.parquet is Utf8") && err.contains("`id` of r.parquet is Int32"),
            "{err}"
        );
    }
}
