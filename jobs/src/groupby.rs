//! Group-by aggregation over Parquet input: one key column, sums, means and row counts,
//! as in db-benchmark's group-by queries:
//!
//! ```sql
//! SELECT id3, sum(v1) AS v1, avg(v3) AS v3 FROM g1 GROUP BY id3
//! -- groupby --input DIR --by id3 --sum v1 --mean v3 --output OUT
//! ```
//!
//! **Types.** The key is a string column (`Utf8`, `LargeUtf8` or `Utf8View`; output as
//! `Utf8`) or an integer column (`Int8`..`Int64`, `UInt8`..`UInt64`; output in its own
//! type). Aggregated columns are integers or floats (`Float32`, `Float64`). The output holds
//! the key, then one column per `--sum`, `--mean` and `--count` in command-line order, each
//! named after its input column (`count` for `--count`): a sum is `Int64` for signed
//! integers, `UInt64` for unsigned ones and `Float64` for floats; a mean is `Float64`
//! (exact integer sum / count for integer columns); a count is `Int64`. A sum that overflows
//! its type (in a map task's partial or in the total) fails the job with an error naming the
//! column. Since output columns are named after their input column, a column can be
//! aggregated once and cannot be the key.
//!
//! **Nulls** (SQL semantics): null values are skipped; a group without a non-null value
//! has a null sum and mean; null keys form one group of their own, with a null key.
//!
//! **Types are read from the input.** The map output's schema depends on the columns'
//! types, so `groupby` is a one-round [`Pipeline`]: before the round it reads the Parquet
//! footer of the first input file (or infers the schema of CSV and JSON lines input), checks the named columns exist and have supported types
//! (errors name the column, its type and the file), and runs a [`GroupByPlan`] (the job,
//! with the types resolved and serialized into every task). Every input file must then
//! have the first file's types (the engine names a file that does not); string keys of
//! any encoding are read as `Utf8View`.
//!
//! **Execution.** The mapper reads only the key and the aggregated columns, numbers groups
//! in a hash table over its whole split (module `keys`) and accumulates partial sums and
//! non-null counts per group, emitting one partial row per group at the end of its split
//! (or whenever it holds 2^20 groups, bounding memory). The shuffle only partitions the
//! partials, without sorting them ([`ReduceInput::Unordered`]): each reducer merges its
//! partition's partials in a hash table and sorts its final rows by key once (module
//! `hash_reduce`); a partition too large for memory reaches it sorted, and is merged over
//! whole runs of groups (module `partials`). Each part file holds its groups sorted by key.

mod cli;
mod hash_reduce;
mod keys;
mod partials;
mod table;

use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use gristmill::cluster::payload::TaskFile;
use gristmill::input::Predicate;
use gristmill::job::ParquetColumn;
use gristmill::pipeline::{Pipeline, Rounds, run_task_of};
use gristmill::prelude::*;
use serde::{Deserialize, Serialize};

pub use cli::AggregateFlags;

use hash_reduce::FinalReducer;
use partials::AggregateMapper;

/// Groups Parquet rows by one column and sums, averages or counts per group.
#[derive(clap::Args, Clone, Debug, Default, Serialize, Deserialize)]
pub struct GroupBy {
    /// The key column: strings (output as Utf8) or integers (output in their own type).
    /// Null keys form one group.
    #[arg(long, value_name = "COLUMN")]
    pub by: String,

    /// The aggregates, in command-line order.
    #[command(flatten)]
    pub aggregates: AggregateFlags,

    /// Only rows passing FILTER count, e.g. "l_shipdate <= '1998-09-02' and l_tax > 0.05":
    /// comparisons of a column with a value, combined with and/or. Row groups whose
    /// statistics exclude it are not read.
    #[arg(long = "where", value_name = "FILTER")]
    pub filter: Option<String>,
}

/// One aggregate of the output, over a column described by `C`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Aggregate<C> {
    /// `sum(column)`.
    Sum(C),
    /// `avg(column)`.
    Mean(C),
    /// `count(*)`.
    Count,
}

impl<C> Aggregate<C> {
    /// The aggregated column (none for `Count`).
    pub fn column(&self) -> Option<&C> {
        match self {
            Aggregate::Sum(c) | Aggregate::Mean(c) => Some(c),
            Aggregate::Count => None,
        }
    }

    /// The same aggregate over `f(column)`.
    pub fn try_map<D, E>(&self, f: impl FnOnce(&C) -> Result<D, E>) -> Result<Aggregate<D>, E> {
        Ok(match self {
            Aggregate::Sum(c) => Aggregate::Sum(f(c)?),
            Aggregate::Mean(c) => Aggregate::Mean(f(c)?),
            Aggregate::Count => Aggregate::Count,
        })
    }

    /// The flag that asked for it, e.g. `--sum v1`, given the column's name.
    fn flag(&self, name: impl FnOnce(&C) -> String) -> String {
        match self {
            Aggregate::Sum(c) => format!("--sum {}", name(c)),
            Aggregate::Mean(c) => format!("--mean {}", name(c)),
            Aggregate::Count => "--count".to_owned(),
        }
    }
}

/// The input column types the job reads.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnType {
    #[default]
    Utf8,
    LargeUtf8,
    Utf8View,
    Int8,
    Int16,
    Int32,
    Int64,
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    Float32,
    Float64,
}

/// The type sums of a column are accumulated and emitted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SumType {
    /// `Int64`, for signed integers.
    Signed,
    /// `UInt64`, for unsigned integers.
    Unsigned,
    /// `Float64`, for floats.
    Float,
}

impl SumType {
    /// The Arrow type of the sums.
    pub fn data_type(self) -> DataType {
        match self {
            SumType::Signed => DataType::Int64,
            SumType::Unsigned => DataType::UInt64,
            SumType::Float => DataType::Float64,
        }
    }
}

impl ColumnType {
    /// The supported type `ty`, if it is one.
    pub fn of(ty: &DataType) -> Option<Self> {
        use ColumnType as C;
        Some(match ty {
            DataType::Utf8 => C::Utf8,
            DataType::LargeUtf8 => C::LargeUtf8,
            DataType::Utf8View => C::Utf8View,
            DataType::Int8 => C::Int8,
            DataType::Int16 => C::Int16,
            DataType::Int32 => C::Int32,
            DataType::Int64 => C::Int64,
            DataType::UInt8 => C::UInt8,
            DataType::UInt16 => C::UInt16,
            DataType::UInt32 => C::UInt32,
            DataType::UInt64 => C::UInt64,
            DataType::Float32 => C::Float32,
            DataType::Float64 => C::Float64,
            _ => return None,
        })
    }

    /// The Arrow type.
    pub fn data_type(self) -> DataType {
        use ColumnType as C;
        match self {
            C::Utf8 => DataType::Utf8,
            C::LargeUtf8 => DataType::LargeUtf8,
            C::Utf8View => DataType::Utf8View,
            C::Int8 => DataType::Int8,
            C::Int16 => DataType::Int16,
            C::Int32 => DataType::Int32,
            C::Int64 => DataType::Int64,
            C::UInt8 => DataType::UInt8,
            C::UInt16 => DataType::UInt16,
            C::UInt32 => DataType::UInt32,
            C::UInt64 => DataType::UInt64,
            C::Float32 => DataType::Float32,
            C::Float64 => DataType::Float64,
        }
    }

    fn is_string(self) -> bool {
        matches!(self, ColumnType::Utf8 | ColumnType::LargeUtf8 | ColumnType::Utf8View)
    }

    /// How sums of this type are kept; `None` for strings.
    pub fn sum_type(self) -> Option<SumType> {
        let ty = self.data_type();
        if ty.is_signed_integer() {
            Some(SumType::Signed)
        } else if ty.is_unsigned_integer() {
            Some(SumType::Unsigned)
        } else if ty.is_floating() {
            Some(SumType::Float)
        } else {
            None
        }
    }

    /// Whether it can be a key: strings and integers.
    fn is_key(self) -> bool {
        self.is_string() || matches!(self.sum_type(), Some(SumType::Signed | SumType::Unsigned))
    }

    /// The type the mapper reads a key column as: strings as views, integers as they are.
    fn read_type(self) -> DataType {
        if self.is_string() { DataType::Utf8View } else { self.data_type() }
    }

    /// The type of a key column in the map output and the output.
    fn output_type(self) -> DataType {
        if self.is_string() { DataType::Utf8 } else { self.data_type() }
    }
}

/// A column of the input: its name and type.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its type in the input's first file.
    pub ty: ColumnType,
}

impl GroupBy {
    /// Checks the flags alone: at least one aggregate, and no output column named twice.
    pub fn check(&self) -> JobResult<()> {
        if let Some(filter) = &self.filter {
            Predicate::parse(filter).map_err(|e| format!("--where: {e}"))?;
        }
        check_outputs(&self.by, &self.aggregates.0, String::clone)
    }

    /// The job for input whose first file, `file`, has `schema`.
    pub fn plan(&self, file: &str, schema: &Schema) -> JobResult<GroupByPlan> {
        self.check()?;
        let find = |flag: &str, name: &str| -> JobResult<Column> {
            let Ok(field) = schema.field_with_name(name) else {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(
                    format!("{flag}: {file} has no column `{name}` (it has: {})", names.join(", ")).into()
                );
            };
            let ty = ColumnType::of(field.data_type()).ok_or_else(|| {
                format!(
                    "{flag}: column `{name}` of {file} has type {}, which groupby does not support",
                    field.data_type()
                )
            })?;
            Ok(Column { name: name.to_owned(), ty })
        };
        let key = find(&format!("--by {}", self.by), &self.by)?;
        if !key.ty.is_key() {
            return Err(format!(
                "--by {0}: column `{0}` of {file} has type {1}; group keys must be strings or integers",
                self.by,
                key.ty.data_type()
            )
            .into());
        }
        let mut aggregates = Vec::with_capacity(self.aggregates.0.len());
        for aggregate in &self.aggregates.0 {
            let flag = aggregate.flag(String::clone);
            let resolved = aggregate.try_map(|name| find(&flag, name))?;
            if let Some(column) = resolved.column().filter(|c| c.ty.sum_type().is_none()) {
                return Err(format!(
                    "{flag}: column `{}` of {file} has type {}; --sum and --mean take integer or \
                     floating-point columns",
                    column.name,
                    column.ty.data_type()
                )
                .into());
            }
            aggregates.push(resolved);
        }
        if let Some(filter) = &self.filter {
            let predicate = Predicate::parse(filter).map_err(|e| format!("--where: {e}"))?;
            for column in predicate.columns() {
                // The engine reads and tests the filter's columns itself: any type it can
                // compare with a literal (dates, say) will do; only a missing one is refused.
                if schema.field_with_name(column).is_err() {
                    find(&format!("--where {filter}"), column)?;
                }
            }
        }
        Ok(GroupByPlan { key, aggregates, filter: self.filter.clone() })
    }
}

/// Checks there is an aggregate and no two output columns share a name.
fn check_outputs<C>(key: &str, aggregates: &[Aggregate<C>], name: impl Fn(&C) -> String) -> JobResult<()> {
    if aggregates.is_empty() {
        return Err("nothing to compute: give at least one --sum COLUMN, --mean COLUMN or --count".into());
    }
    let mut outputs: Vec<(String, String)> = vec![(key.to_owned(), format!("--by {key}"))];
    for aggregate in aggregates {
        let output = aggregate.column().map_or_else(|| "count".to_owned(), &name);
        let flag = aggregate.flag(&name);
        if let Some((_, first)) = outputs.iter().find(|(o, _)| *o == output) {
            return Err(format!(
                "{flag} and {first} both make an output column named `{output}` (output columns are \
                 named after their input column): use each column once"
            )
            .into());
        }
        outputs.push((output, flag));
    }
    Ok(())
}

impl Pipeline for GroupBy {
    const NAME: &'static str = "groupby";
    const ABOUT: &'static str = "Groups Parquet rows by one column (--by) and outputs per group the \
        sums (--sum), means (--mean) and row count (--count) asked for, in that order, each named \
        after its input column; SQL null semantics. Part files are sorted by key.";

    fn run_task(job_name: &str, task: &TaskFile) -> Option<std::process::ExitCode> {
        run_task_of::<GroupByPlan>(job_name, task)
    }

    fn run(&self, rounds: &mut Rounds<'_>) -> gristmill::Result<()> {
        let config = |e: BoxError| gristmill::Error::Config(e.to_string());
        self.check().map_err(config)?;
        let inputs = rounds.inputs().to_vec();
        if inputs.is_empty() {
            return Err(gristmill::Error::Config(
                "groupby needs --input (Parquet, CSV or JSON lines files)".into(),
            ));
        }
        let (file, schema) = first_input_schema(rounds, &inputs).map_err(config)?;
        let plan = self.plan(&file, &schema).map_err(config)?;
        let output = rounds.output().to_owned();
        rounds.run(&plan, inputs, &output)?;
        Ok(())
    }
}

/// The first input file and its schema: the schema CSV or JSON lines input is inferred to
/// have, else the Parquet footer's.
fn first_input_schema(rounds: &Rounds<'_>, inputs: &[String]) -> JobResult<(String, SchemaRef)> {
    Ok(rounds.plan_context()?.schema(inputs)?)
}

/// The group-by job with its columns' types resolved (see the module docs): what every
/// task runs.
#[derive(clap::Args, Clone, Debug, Default, Serialize, Deserialize)]
pub struct GroupByPlan {
    /// The key column.
    #[arg(skip)]
    pub key: Column,
    /// The aggregates, in output order.
    #[arg(skip)]
    pub aggregates: Vec<Aggregate<Column>>,
    /// Only rows passing this filter (checked by [`GroupBy::plan`]) count.
    #[arg(skip)]
    #[serde(default)]
    pub filter: Option<String>,
}

impl GroupByPlan {
    /// The aggregated columns, as the mapper reads them after the key.
    fn value_columns(&self) -> impl Iterator<Item = &Column> {
        self.aggregates.iter().filter_map(Aggregate::column)
    }
}

impl Job for GroupByPlan {
    const NAME: &'static str = "groupby";
    const ABOUT: &'static str = GroupBy::ABOUT;

    fn validate(&self) -> JobResult<()> {
        check_outputs(&self.key.name, &self.aggregates, |c| c.name.clone())?;
        if !self.key.ty.is_key() {
            return Err(format!("the key `{}` is not a string or integer column", self.key.name).into());
        }
        match self.value_columns().find(|c| c.ty.sum_type().is_none()) {
            Some(c) => Err(format!("`{}` ({:?}) cannot be summed", c.name, c.ty).into()),
            None => Ok(()),
        }
    }

    fn input(&self) -> InputSpec {
        let mut spec = InputSpec::text_lines();
        let key = ParquetColumn { name: self.key.name.clone(), data_type: Some(self.key.ty.read_type()) };
        let values = self
            .value_columns()
            .map(|c| ParquetColumn { name: c.name.clone(), data_type: Some(c.ty.data_type()) });
        spec.parquet_columns = Some(std::iter::once(key).chain(values).collect());
        // Parsed when planned: a filter here always parses.
        match self.filter.as_deref().map(Predicate::parse) {
            Some(Ok(filter)) => spec.with_filter(filter),
            _ => spec,
        }
    }

    fn map_output(&self) -> KeyedSchema {
        let mut fields = vec![Field::new(&self.key.name, self.key.ty.output_type(), true)];
        for aggregate in &self.aggregates {
            let Some(column) = aggregate.column() else {
                fields.push(Field::new("count", DataType::Int64, false));
                continue;
            };
            let sum_type = column.ty.sum_type().map_or(DataType::Null, SumType::data_type);
            fields.push(Field::new(format!("{}.sum", column.name), sum_type, false));
            fields.push(Field::new(format!("{}.count", column.name), DataType::Int64, false));
        }
        KeyedSchema::from_schema(Arc::new(Schema::new(fields)))
    }

    fn output_schema(&self) -> SchemaRef {
        let mut fields = vec![Field::new(&self.key.name, self.key.ty.output_type(), true)];
        fields.extend(self.aggregates.iter().map(|aggregate| match aggregate {
            Aggregate::Count => Field::new("count", DataType::Int64, false),
            Aggregate::Mean(c) => Field::new(&c.name, DataType::Float64, true),
            Aggregate::Sum(c) => {
                Field::new(&c.name, c.ty.sum_type().map_or(DataType::Null, SumType::data_type), true)
            }
        }));
        Arc::new(Schema::new(fields))
    }

    fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
        Ok(Box::new(AggregateMapper::new(self)?))
    }

    fn reduce_input(&self) -> ReduceInput {
        ReduceInput::Unordered
    }

    fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
        Ok(Box::new(FinalReducer::new(self)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g1_schema() -> Schema {
        let field = |name: &str, ty: DataType| Field::new(name, ty, true);
        Schema::new(vec![
            field("id1", DataType::Utf8),
            field("id3", DataType::LargeUtf8),
            field("id6", DataType::Int32),
            field("v1", DataType::Int32),
            field("u", DataType::UInt16),
            field("v3", DataType::Float64),
            field("day", DataType::Date32),
        ])
    }

    fn group_by(by: &str, aggregates: Vec<Aggregate<String>>) -> GroupBy {
        GroupBy { by: by.to_owned(), aggregates: AggregateFlags(aggregates), filter: None }
    }

    fn plan_error(by: &str, aggregates: Vec<Aggregate<String>>) -> String {
        group_by(by, aggregates).plan("g1.parquet", &g1_schema()).unwrap_err().to_string()
    }

    #[test]
    fn plans_resolve_types_and_lay_out_partials_and_outputs() {
        let s = |c: &str| c.to_owned();
        let job = group_by("id3", vec![Aggregate::Mean(s("v3")), Aggregate::Count, Aggregate::Sum(s("u"))]);
        let plan = job.plan("g1.parquet", &g1_schema()).unwrap();
        plan.validate().unwrap();
        assert_eq!(plan.key, Column { name: s("id3"), ty: ColumnType::LargeUtf8 });
        let names = |schema: &Schema| -> Vec<String> {
            schema.fields().iter().map(|f| format!("{}:{}", f.name(), f.data_type())).collect()
        };
        assert_eq!(
            names(plan.map_output().schema()),
            ["id3:Utf8", "v3.sum:Float64", "v3.count:Int64", "count:Int64", "u.sum:UInt64", "u.count:Int64"]
        );
        assert_eq!(names(&plan.output_schema()), ["id3:Utf8", "v3:Float64", "count:Int64", "u:UInt64"]);
        let read: Vec<(String, Option<DataType>)> =
            plan.input().parquet_columns.unwrap().into_iter().map(|c| (c.name, c.data_type)).collect();
        let expected = [("id3", DataType::Utf8View), ("v3", DataType::Float64), ("u", DataType::UInt16)];
        assert_eq!(read, expected.map(|(n, t)| (s(n), Some(t))));

        let ints = group_by("id6", vec![Aggregate::Sum(s("v1"))]).plan("g1.parquet", &g1_schema()).unwrap();
        assert_eq!(names(&ints.output_schema()), ["id6:Int32", "v1:Int64"]);
    }

    #[test]
    fn bad_flags_and_columns_are_named_in_errors() {
        let s = |c: &str| c.to_owned();
        assert!(plan_error("id3", vec![]).contains("at least one --sum"));
        let twice = plan_error("id3", vec![Aggregate::Sum(s("v1")), Aggregate::Mean(s("v1"))]);
        assert!(twice.contains("--mean v1 and --sum v1") && twice.contains("`v1`"), "{twice}");
        let key = plan_error("id6", vec![Aggregate::Sum(s("id6"))]);
        assert!(key.contains("--sum id6 and --by id6"), "{key}");
        let unknown = plan_error("id3", vec![Aggregate::Sum(s("v9"))]);
        assert!(
            unknown.contains("--sum v9")
                && unknown.contains("no column `v9`")
                && unknown.contains("id1, id3")
        );
        let missing_key = plan_error("id9", vec![Aggregate::Count]);
        assert!(missing_key.contains("--by id9") && missing_key.contains("`id9`"), "{missing_key}");
        let string_sum = plan_error("id6", vec![Aggregate::Mean(s("id1"))]);
        assert!(
            string_sum.contains("--mean id1") && string_sum.contains("`id1`") && string_sum.contains("Utf8")
        );
        let float_key = plan_error("v3", vec![Aggregate::Count]);
        assert!(float_key.contains("`v3`") && float_key.contains("Float64"), "{float_key}");
        let date = plan_error("id3", vec![Aggregate::Sum(s("day"))]);
        assert!(
            date.contains("`day`") && date.contains("Date32") && date.contains("does not support"),
            "{date}"
        );
        assert!(GroupByPlan::default().validate().is_err(), "an unplanned job does not run");
    }
}
