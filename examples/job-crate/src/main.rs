//! Taxi trips per pickup zone and hour: a Gristmill job in a crate of its own, written with
//! typed records (`gristmill::job::rows`).
//!
//! `select zone, hour, count(*), sum(fare), avg(distance) from trips
//!  where fare >= 0 and distance >= MIN_DISTANCE group by zone, hour`,
//! over Parquet, CSV or JSON lines with at least the columns `zone`, `hour`, `fare` and
//! `distance`. Refunds (negative fares) and trips shorter than `--min-distance` are skipped
//! and counted (the counters `refunds` and `short_trips`, in the summary and in `_SUCCESS`).

// `#[derive(clap::Args)]` expands to `clap::...` paths: the engine's clap, not one of our own.
use gristmill::clap;
use gristmill::job::rows::{combine_rows, map_rows, reduce_rows, row_output_schema, row_schema, rows_input};
use gristmill::prelude::*;
use serde::{Deserialize, Serialize};

/// The job's own flags, beside the engine's (`--input`, `--output`, `--reducers`, `--driver`, ...).
/// Its fields travel to every task, in this process or on a cluster's workers.
#[derive(clap::Args, Serialize, Deserialize)]
struct TripStats {
    /// Skip trips shorter than this many miles (counted as `short_trips`).
    #[arg(long, default_value_t = 0.0)]
    min_distance: f64,
}

/// The columns a trip is read from (only these are read; a decimal fare is read as `f64`).
#[derive(Deserialize)]
struct Trip {
    zone: String,
    hour: i32,
    fare: f64,
    distance: f64,
}

/// The key: a composite key sorts by its fields in order.
#[derive(Serialize, Deserialize)]
struct ZoneHour {
    zone: String,
    hour: i32,
}

/// Partial sums: what the mapper emits per trip and the combiner adds up per map task.
#[derive(Serialize, Deserialize)]
struct Totals {
    trips: u64,
    fare: f64,
    distance: f64,
}

/// One output row: its fields are the part files' columns.
#[derive(Serialize, Deserialize)]
struct ZoneStats {
    zone: String,
    hour: i32,
    trips: u64,
    fare: f64,
    mean_distance: f64,
}

fn add_up(values: impl Iterator<Item = Totals>) -> Totals {
    values.fold(Totals { trips: 0, fare: 0.0, distance: 0.0 }, |sum, t| Totals {
        trips: sum.trips + t.trips,
        fare: sum.fare + t.fare,
        distance: sum.distance + t.distance,
    })
}

impl Job for TripStats {
    const NAME: &'static str = "trip-stats";
    const ABOUT: &'static str = "Trips, fares and mean distance per pickup zone and hour";

    fn validate(&self) -> JobResult<()> {
        if self.min_distance.is_nan() || self.min_distance < 0.0 {
            return Err(format!("--min-distance must be at least 0, not {}", self.min_distance).into());
        }
        Ok(())
    }

    fn input(&self) -> InputSpec {
        rows_input::<Trip>()
    }

    fn map_output(&self) -> KeyedSchema {
        row_schema::<ZoneHour, Totals>()
    }

    fn output_schema(&self) -> gristmill::arrow::datatypes::SchemaRef {
        row_output_schema::<ZoneStats>()
    }

    fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
        let min_distance = self.min_distance;
        Ok(map_rows::<Trip, ZoneHour, Totals, _>(move |trip, out| {
            if trip.fare < 0.0 {
                out.count("refunds", 1);
                return Ok(());
            }
            if trip.distance < min_distance {
                out.count("short_trips", 1);
                return Ok(());
            }
            let key = ZoneHour { zone: trip.zone, hour: trip.hour };
            out.emit(key, Totals { trips: 1, fare: trip.fare, distance: trip.distance })
        }))
    }

    fn combiner(&self, _: &TaskInfo) -> Option<Box<dyn Reducer>> {
        Some(combine_rows::<ZoneHour, Totals, _>(|key, values, out| out.emit(key, add_up(values))))
    }

    fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
        Ok(reduce_rows::<ZoneHour, Totals, ZoneStats, _>(|key, values, out| {
            let sum = add_up(values);
            out.emit(ZoneStats {
                zone: key.zone,
                hour: key.hour,
                trips: sum.trips,
                fare: sum.fare,
                mean_distance: sum.distance / sum.trips as f64,
            })
        }))
    }
}

fn main() -> std::process::ExitCode {
    gristmill::main::<TripStats>()
}
