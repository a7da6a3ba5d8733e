//! PageRank as a pipeline of MapReduce rounds ([`PageRank`]), each round's committed output
//! feeding the next.
//!
//! **Variant.** The nodes are every id that appears as `src` or `dst` of an edge (N of them);
//! every edge row counts, so duplicate edges weigh more and a self-loop sends rank to its own
//! node; a node without outgoing edges is dangling and its rank is spread uniformly over all
//! N nodes. Ranks start at 1/N and each iteration computes, with damping d (0.85),
//!
//! ```text
//! rank'(v) = (1 - d) / N + d * (sum over edges u -> v of rank(u) / outdeg(u) + dangling / N)
//! ```
//!
//! where `dangling` is the sum of the ranks of dangling nodes; ranks always sum to 1.
//!
//! **Rounds.** Round 0 ([`Adjacency`]) turns edges into one row per node: `node`, `out` (its
//! destinations, a sorted `List<UInt64>`, empty for dangling nodes); N is its row count.
//! Then one round per iteration ([`Iterate`]): the mapper emits each node's adjacency row
//! and a share `rank / outdeg` to each destination, and sums the rank of its dangling nodes;
//! the reducer sums each node's shares and computes its new rank. Intermediate rounds write
//! `node`, `rank`, `out` into scratch directories (`<output>/_rounds/...`, removed at the
//! end); the last writes `node` (UInt64), `rank` (Float64) to the output, sorted by node
//! within each part.
//!
//! **The dangling mass in one round.** Every reducer needs the total dangling rank before it
//! computes any rank. The map output's key is `[kind, node]`: after its last batch, each
//! mapper emits its partial dangling sum once per reduce partition `p` as a row with kind 0
//! and node `p`, which [`MassPartitioner`] routes to partition `p` (node rows, kind 1, go
//! by the hash of the node). Kind 0 sorts first, so each reducer's first group holds every
//! mapper's partial sum, and it adds them up before the node groups arrive.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, ListArray, RecordBatch, UInt8Array, UInt32Array, UInt64Array,
    new_null_array,
};
use arrow::compute::{cast, take};
use arrow::datatypes::{Field, Float64Type, Schema, SchemaRef, UInt8Type, UInt64Type};
use gristmill::cluster::payload::TaskFile;
use gristmill::partition::{HashPartitioner, Partitioner};
use gristmill::pipeline::{Pipeline, Rounds, run_task_of};
use gristmill::prelude::*;
use serde::{Deserialize, Serialize};

/// Ranks the nodes of a graph of UInt64 ids.
#[derive(clap::Args, Clone, Debug, Serialize, Deserialize)]
pub struct PageRank {
    /// Parquet edges with columns `src` and `dst` (UInt64): file, directory, glob or URL.
    #[arg(long, value_name = "PATH|GLOB|URL")]
    pub edges: String,

    /// Iterations, each a MapReduce round (after one that builds the adjacency lists).
    #[arg(long, default_value_t = 10)]
    pub iterations: usize,

    /// The damping factor: the probability of following an edge rather than jumping.
    #[arg(long, default_value_t = 0.85)]
    pub damping: f64,
}

impl Pipeline for PageRank {
    const NAME: &'static str = "pagerank";
    const ABOUT: &'static str = "PageRank of a graph given as Parquet edges (src, dst: UInt64), one \
        MapReduce round per iteration; dangling nodes' rank is spread uniformly. Output columns: \
        node (UInt64), rank (Float64), sorted by node within each part.";

    fn run_task(job_name: &str, task: &TaskFile) -> Option<std::process::ExitCode> {
        run_task_of::<Adjacency>(job_name, task).or_else(|| run_task_of::<Iterate>(job_name, task))
    }

    fn run(&self, rounds: &mut Rounds<'_>) -> gristmill::Result<()> {
        if !rounds.inputs().is_empty() {
            return Err(gristmill::Error::Config("pagerank reads --edges, not --input".into()));
        }
        if self.iterations == 0 {
            return Err(gristmill::Error::Config("--iterations must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&self.damping) {
            return Err(gristmill::Error::Config(format!("--damping {} is not in [0, 1]", self.damping)));
        }
        let graph = rounds.scratch("graph");
        let nodes = rounds.run(&Adjacency::default(), vec![self.edges.clone()], &graph)?.manifest.rows;
        let mut input = graph;
        for iteration in 1..=self.iterations {
            let last = iteration == self.iterations;
            let output =
                if last { rounds.output().to_owned() } else { rounds.scratch(&format!("rank-{iteration}")) };
            let job = Iterate { nodes, damping: self.damping, first: iteration == 1, last };
            rounds.run(&job, vec![input], &output)?;
            input = output;
        }
        Ok(())
    }
}

/// The type of adjacency lists: `List<UInt64>` of non-null items.
pub fn out_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::UInt64, false)))
}

/// Round 0: edges to one row per node with its sorted destinations.
#[derive(clap::Args, Clone, Debug, Default, Serialize, Deserialize)]
pub struct Adjacency {}

impl Job for Adjacency {
    const NAME: &'static str = "pagerank-graph";
    const ABOUT: &'static str = "Builds adjacency lists: node (UInt64), out (List<UInt64>).";

    fn input(&self) -> InputSpec {
        InputSpec::text_lines().with_parquet_columns([("src", DataType::UInt64), ("dst", DataType::UInt64)])
    }

    fn map_output(&self) -> KeyedSchema {
        let fields =
            vec![Field::new("node", DataType::UInt64, false), Field::new("dst", DataType::UInt64, true)];
        KeyedSchema::from_schema(Arc::new(Schema::new(fields))).key(["node"])
    }

    fn output_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("node", DataType::UInt64, false),
            Field::new("out", out_type(), false),
        ]))
    }

    fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
        Ok(Box::new(EdgeEnds))
    }

    fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
        Ok(Box::new(CollectOut::default()))
    }
}

/// Emits (src, dst) for every edge and (dst, null), so nodes without outgoing edges appear.
struct EdgeEnds;

impl Mapper for EdgeEnds {
    fn map(&mut self, batch: &RecordBatch, out: &mut Emitter) -> JobResult<()> {
        let nulls = batch.column(0).null_count() + batch.column(1).null_count();
        if nulls > 0 {
            return Err(format!("{nulls} edge ends are null (src and dst must be set)").into());
        }
        let (src, dst) = (batch.column(0).clone(), batch.column(1).clone());
        out.emit(RecordBatch::try_new(out.schema().clone(), vec![src, dst.clone()])?)?;
        let none = new_null_array(&DataType::UInt64, batch.num_rows());
        out.emit(RecordBatch::try_new(out.schema().clone(), vec![dst, none])?)
    }
}

/// Per node: the sorted destinations of its edges (one per edge row).
#[derive(Default)]
struct CollectOut {
    scratch: Vec<u64>,
}

impl Reducer for CollectOut {
    fn reduce(&mut self, group: &KeyGroup<'_>, out: &mut Emitter) -> JobResult<()> {
        let rows = group.rows();
        let starts = [0];
        self.reduce_groups(&Groups::new(&rows, &starts, &[0]), out)
    }

    fn reduce_groups(&mut self, groups: &Groups<'_>, out: &mut Emitter) -> JobResult<()> {
        let batch = groups.batch();
        let nodes = batch.column(0).as_primitive::<UInt64Type>();
        let dsts = batch.column(1).as_primitive::<UInt64Type>();
        let mut offsets = Vec::with_capacity(groups.len() + 1);
        let mut values = Vec::with_capacity(batch.num_rows());
        let mut keys = Vec::with_capacity(groups.len());
        offsets.push(0i32);
        for i in 0..groups.len() {
            let range = groups.range(i);
            keys.push(nodes.value(range.start));
            self.scratch.clear();
            self.scratch.extend(range.filter(|&r| dsts.is_valid(r)).map(|r| dsts.value(r)));
            self.scratch.sort_unstable();
            values.extend_from_slice(&self.scratch);
            offsets.push(i32::try_from(values.len())?);
        }
        let list = ListArray::try_new(
            Arc::new(Field::new_list_field(DataType::UInt64, false)),
            arrow::buffer::OffsetBuffer::new(offsets.into()),
            Arc::new(UInt64Array::from(values)),
            None,
        )?;
        let columns: Vec<ArrayRef> = vec![Arc::new(UInt64Array::from(keys)), Arc::new(list)];
        out.emit(RecordBatch::try_new(out.schema().clone(), columns)?)
    }
}

/// `kind` of the rows carrying a mapper's partial dangling sum to one partition.
const DANGLING: u8 = 0;
/// `kind` of the rows of a node: its adjacency row and the shares sent to it.
const NODE: u8 = 1;

/// One iteration: ranks in, ranks out.
#[derive(clap::Args, Clone, Debug, Serialize, Deserialize)]
pub struct Iterate {
    /// N, the number of nodes.
    #[arg(long)]
    pub nodes: u64,
    /// The damping factor.
    #[arg(long)]
    pub damping: f64,
    /// The first iteration: the input has no ranks yet (every node starts at 1/N).
    #[arg(long)]
    pub first: bool,
    /// The last iteration: write `node` and `rank` only.
    #[arg(long)]
    pub last: bool,
}

impl Job for Iterate {
    const NAME: &'static str = "pagerank-iteration";
    const ABOUT: &'static str = "One PageRank iteration: node, out[, rank] -> node, rank[, out].";

    fn input(&self) -> InputSpec {
        let mut spec = InputSpec::text_lines();
        let column = |name: &str, ty: Option<DataType>| gristmill::job::ParquetColumn {
            name: name.to_owned(),
            data_type: ty,
        };
        let mut columns = vec![column("node", Some(DataType::UInt64)), column("out", None)];
        if !self.first {
            columns.push(column("rank", Some(DataType::Float64)));
        }
        spec.parquet_columns = Some(columns);
        spec
    }

    fn map_output(&self) -> KeyedSchema {
        let fields = vec![
            Field::new("kind", DataType::UInt8, false),
            Field::new("node", DataType::UInt64, false),
            Field::new("mass", DataType::Float64, false),
            Field::new("out", out_type(), true),
        ];
        KeyedSchema::from_schema(Arc::new(Schema::new(fields))).key(["kind", "node"])
    }

    fn output_schema(&self) -> SchemaRef {
        let mut fields =
            vec![Field::new("node", DataType::UInt64, false), Field::new("rank", DataType::Float64, false)];
        if !self.last {
            fields.push(Field::new("out", out_type(), false));
        }
        Arc::new(Schema::new(fields))
    }

    fn mapper(&self, task: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
        let initial = self.first.then(|| 1.0 / self.nodes as f64);
        Ok(Box::new(SendShares { initial, dangling: 0.0, partitions: task.num_partitions }))
    }

    fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
        Ok(Box::new(SumShares {
            nodes: self.nodes as f64,
            damping: self.damping,
            dangling: None,
            with_out: !self.last,
        }))
    }

    fn partitioner(&self) -> Option<Box<dyn Partitioner>> {
        Some(Box::new(MassPartitioner))
    }
}

/// The iteration's mapper.
struct SendShares {
    /// The rank of every node in the first iteration.
    initial: Option<f64>,
    /// The rank of the dangling nodes seen so far.
    dangling: f64,
    /// Reduce partitions: each gets this mapper's dangling sum.
    partitions: usize,
}

impl Mapper for SendShares {
    fn map(&mut self, batch: &RecordBatch, out: &mut Emitter) -> JobResult<()> {
        let n = batch.num_rows();
        let nodes = batch.column(0).clone();
        let lists = match batch.column(1) {
            list if list.data_type() == &out_type() => list.clone(),
            other => cast(other, &out_type())?,
        };
        let ranks: Vec<f64> = match self.initial {
            Some(rank) => vec![rank; n],
            None => batch.column(2).as_primitive::<Float64Type>().values().to_vec(),
        };
        let kind: ArrayRef = Arc::new(UInt8Array::from_value(NODE, n));
        let zero: ArrayRef = Arc::new(Float64Array::from_value(0.0, n));
        out.emit(RecordBatch::try_new(out.schema().clone(), vec![kind, nodes, zero, lists.clone()])?)?;

        let lists = lists.as_list::<i32>();
        let offsets = lists.value_offsets();
        let (first, end) = (offsets[0] as usize, offsets[n] as usize);
        let mut shares = Vec::with_capacity(end - first);
        for (i, rank) in ranks.iter().enumerate() {
            let degree = (offsets[i + 1] - offsets[i]) as usize;
            if degree == 0 {
                self.dangling += rank;
            } else {
                shares.extend(std::iter::repeat_n(rank / degree as f64, degree));
            }
        }
        let m = shares.len();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt8Array::from_value(NODE, m)),
            lists.values().slice(first, end - first),
            Arc::new(Float64Array::from(shares)),
            new_null_array(&out_type(), m),
        ];
        out.emit(RecordBatch::try_new(out.schema().clone(), columns)?)
    }

    fn finish(&mut self, out: &mut Emitter) -> JobResult<()> {
        // The partial dangling sum, once for every reduce partition p (node = p).
        let p = self.partitions;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt8Array::from_value(DANGLING, p)),
            Arc::new(UInt64Array::from_iter_values(0..p as u64)),
            Arc::new(Float64Array::from_value(self.dangling, p)),
            new_null_array(&out_type(), p),
        ];
        out.emit(RecordBatch::try_new(out.schema().clone(), columns)?)
    }
}

/// The iteration's reducer: adds up the partial dangling sums (the partition's first
/// group), then each node's shares.
struct SumShares {
    nodes: f64,
    damping: f64,
    /// The total dangling rank, once the first group has been reduced.
    dangling: Option<f64>,
    /// Write the adjacency lists too (for the next iteration).
    with_out: bool,
}

impl Reducer for SumShares {
    fn reduce(&mut self, group: &KeyGroup<'_>, out: &mut Emitter) -> JobResult<()> {
        let rows = group.rows();
        let starts = [0];
        self.reduce_groups(&Groups::new(&rows, &starts, &[0, 1]), out)
    }

    fn reduce_groups(&mut self, groups: &Groups<'_>, out: &mut Emitter) -> JobResult<()> {
        let batch = groups.batch();
        let kinds = batch.column(0).as_primitive::<UInt8Type>().values();
        let nodes = batch.column(1).as_primitive::<UInt64Type>().values();
        let mass = batch.column(2).as_primitive::<Float64Type>().values();
        let lists = batch.column(3);
        let (d, n) = (self.damping, self.nodes);
        let (mut keys, mut ranks, mut adjacency) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..groups.len() {
            let range = groups.range(i);
            if kinds[range.start] == DANGLING {
                *self.dangling.get_or_insert(0.0) += mass[range].iter().sum::<f64>();
                continue;
            }
            let node = nodes[range.start];
            let Some(dangling) = self.dangling else {
                return Err(format!("node {node} came before the dangling mass").into());
            };
            let mut own = range.clone().filter(|&r| lists.is_valid(r));
            let (Some(row), None) = (own.next(), own.next()) else {
                return Err(format!("node {node} does not have exactly one adjacency row").into());
            };
            let incoming: f64 = mass[range].iter().sum();
            keys.push(node);
            ranks.push((1.0 - d) / n + d * (incoming + dangling / n));
            adjacency.push(row as u32);
        }
        if keys.is_empty() {
            return Ok(());
        }
        let mut columns: Vec<ArrayRef> =
            vec![Arc::new(UInt64Array::from(keys)), Arc::new(Float64Array::from(ranks))];
        if self.with_out {
            columns.push(take(lists.as_ref(), &UInt32Array::from(adjacency), None)?);
        }
        out.emit(RecordBatch::try_new(out.schema().clone(), columns)?)
    }
}

/// Routes node rows by the hash of the node, and the dangling-mass row meant for partition
/// `p` (kind 0, node `p`) to partition `p`.
#[derive(Clone, Copy, Debug, Default)]
pub struct MassPartitioner;

impl Partitioner for MassPartitioner {
    fn partition(
        &self,
        keys: &[ArrayRef],
        num_partitions: usize,
        out: &mut Vec<u32>,
    ) -> gristmill::Result<()> {
        HashPartitioner.partition(&keys[1..2], num_partitions, out)?;
        let kinds = keys[0].as_primitive::<UInt8Type>().values();
        let nodes = keys[1].as_primitive::<UInt64Type>().values();
        for (i, _) in kinds.iter().enumerate().filter(|(_, k)| **k == DANGLING) {
            if nodes[i] >= num_partitions as u64 {
                return Err(gristmill::Error::Internal(format!(
                    "dangling mass for partition {} of {num_partitions}",
                    nodes[i]
                )));
            }
            out[i] = nodes[i] as u32;
        }
        Ok(())
    }
}
