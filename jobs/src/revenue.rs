//! Revenue per supplier over TPC-H lineitem, written with typed records: the query a new
//! user writes first, the obvious way.

use gristmill::job::rows::{
    RowValues, fold_values, map_rows, reduce_rows, row_output_schema, row_schema, rows_input,
};
use gristmill::prelude::*;
use serde::{Deserialize, Serialize};

pub mod batch;

/// `select l_suppkey, sum(l_extendedprice * (1 - l_discount)) from lineitem group by 1`.
#[derive(clap::Args, Clone, Debug, Default, Serialize, Deserialize)]
pub struct Revenue {
    /// Which version of the job runs: typed records (the example) or the same job written
    /// over whole batches (what it is measured against).
    #[arg(long, value_enum, default_value_t = Api::Rows)]
    #[serde(default)]
    pub api: Api,
}

/// The two versions of the job.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Api {
    /// Typed records: `map_rows`, `fold_values`, `reduce_rows`.
    #[default]
    Rows,
    /// Arrow kernels over whole batches ([`batch::BatchRevenue`], [`batch::SumPerKey`]).
    Batches,
}

/// The columns of lineitem the job reads (decimals are read as `f64`).
#[derive(Deserialize)]
struct LineItem {
    l_suppkey: i64,
    l_extendedprice: f64,
    l_discount: f64,
}

/// One output row.
#[derive(Serialize, Deserialize)]
pub struct SupplierRevenue {
    /// `l_suppkey`.
    pub supplier: i64,
    /// The sum of `l_extendedprice * (1 - l_discount)` over the supplier's line items.
    pub revenue: f64,
}

impl Job for Revenue {
    const NAME: &'static str = "revenue";
    const ABOUT: &'static str = "Sums the discounted revenue per supplier of TPC-H lineitem (typed records).";

    fn input(&self) -> InputSpec {
        rows_input::<LineItem>()
    }

    fn map_output(&self) -> KeyedSchema {
        row_schema::<i64, f64>()
    }

    fn output_schema(&self) -> arrow::datatypes::SchemaRef {
        row_output_schema::<SupplierRevenue>()
    }

    fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
        if self.api == Api::Batches {
            return Ok(Box::new(batch::BatchRevenue));
        }
        Ok(map_rows::<LineItem, i64, f64, _>(|item, out| {
            out.emit(item.l_suppkey, item.l_extendedprice * (1.0 - item.l_discount))
        }))
    }

    fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
        if self.api == Api::Batches {
            return Ok(Box::new(batch::SumPerKey));
        }
        Ok(reduce_rows::<i64, f64, SupplierRevenue, _>(|supplier, values: RowValues<'_, f64>, out| {
            out.emit(SupplierRevenue { supplier, revenue: values.sum() })
        }))
    }

    fn combiner(&self, _: &TaskInfo) -> Option<Box<dyn Reducer>> {
        if self.api == Api::Batches {
            return Some(Box::new(batch::SumPerKey));
        }
        // A fold, as Spark's `reduceByKey(_ + _)`: map tasks sum as they go.
        Some(fold_values::<i64, f64, _>(|revenue, more| *revenue += more))
    }
}
