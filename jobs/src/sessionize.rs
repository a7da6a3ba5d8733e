//! Sessions of click streams: a secondary sort written with typed records. Clicks are keyed
//! by (user, time) but grouped by user, so each user's clicks reach the reducer in time
//! order, and a gap longer than `--gap` starts a new session.
//!
//! The unit of the timestamps is read from the input's schema by the job's plan: the `ts`
//! column's unit when it is a timestamp, microseconds when it holds integers (epoch
//! ticks, as JSON lines do), or `--time-unit` when given, which overrides both.

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use gristmill::job::PlanContext;
use gristmill::job::rows::{map_rows, reduce_rows, row_output_schema, row_schema, rows_input};
use gristmill::prelude::*;
use serde::{Deserialize, Serialize};

/// Cuts each user's clicks into sessions.
#[derive(clap::Args, Clone, Debug, Serialize, Deserialize)]
pub struct Sessionize {
    /// A gap longer than this between a user's consecutive clicks starts a new session.
    #[arg(long, default_value = "30m", value_parser = gristmill::config::parse_duration)]
    pub gap: Duration,
    /// The unit of the input's `ts` column (and of the output's timestamps): s, ms, us or
    /// ns. Default: the unit of the input's timestamps, or us for integer ticks.
    #[arg(long, value_parser = parse_unit)]
    pub time_unit: Option<Unit>,
    /// The unit found by the plan (or given), for the tasks.
    #[arg(skip)]
    #[serde(default)]
    pub unit: Unit,
}

/// A timestamp unit, as the command line names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unit {
    /// Seconds.
    S,
    /// Milliseconds.
    Ms,
    /// Microseconds.
    #[default]
    Us,
    /// Nanoseconds.
    Ns,
}

fn parse_unit(text: &str) -> Result<Unit, String> {
    match text {
        "s" => Ok(Unit::S),
        "ms" => Ok(Unit::Ms),
        "us" => Ok(Unit::Us),
        "ns" => Ok(Unit::Ns),
        other => Err(format!("`{other}` is not a time unit (use s, ms, us or ns)")),
    }
}

impl Unit {
    fn of(unit: TimeUnit) -> Self {
        match unit {
            TimeUnit::Second => Unit::S,
            TimeUnit::Millisecond => Unit::Ms,
            TimeUnit::Microsecond => Unit::Us,
            TimeUnit::Nanosecond => Unit::Ns,
        }
    }

    /// The unit of the `ts` column of `schema` (read from `file`): a timestamp's, or
    /// microseconds for integer ticks.
    fn of_input(file: &str, schema: &Schema) -> JobResult<Self> {
        let Ok(field) = schema.field_with_name("ts") else {
            return Err(format!("{file} has no column `ts` (the clicks' timestamps)").into());
        };
        match field.data_type() {
            DataType::Timestamp(unit, _) => Ok(Unit::of(*unit)),
            t if t.is_integer() => Ok(Unit::Us),
            other => Err(format!(
                "column `ts` of {file} is {other}: sessionize needs a timestamp or integer ticks (see --time-unit)"
            )
            .into()),
        }
    }

    fn arrow(self) -> TimeUnit {
        match self {
            Unit::S => TimeUnit::Second,
            Unit::Ms => TimeUnit::Millisecond,
            Unit::Us => TimeUnit::Microsecond,
            Unit::Ns => TimeUnit::Nanosecond,
        }
    }

    /// `duration` in this unit.
    fn ticks(self, duration: Duration) -> i64 {
        let ticks = match self {
            Unit::S => duration.as_secs() as u128,
            Unit::Ms => duration.as_millis(),
            Unit::Us => duration.as_micros(),
            Unit::Ns => duration.as_nanos(),
        };
        i64::try_from(ticks).unwrap_or(i64::MAX)
    }
}

/// The columns of a click the job reads (`url` is not needed); `ts` in its unit's ticks.
#[derive(Deserialize)]
struct Click {
    user_id: i64,
    ts: i64,
}

/// The map output key: sorted by both fields, grouped by the first.
#[derive(Serialize, Deserialize)]
struct UserTime {
    user_id: i64,
    ts: i64,
}

/// One session of one user.
#[derive(Serialize, Deserialize)]
struct Session {
    user_id: i64,
    session_start: i64,
    session_end: i64,
    clicks: i64,
}

impl Job for Sessionize {
    const NAME: &'static str = "sessionize";
    const ABOUT: &'static str =
        "Cuts click streams (user_id, ts, url) into sessions: a gap longer than --gap starts a new one.";

    fn plan(&mut self, ctx: &PlanContext) -> JobResult<()> {
        self.unit = match self.time_unit {
            Some(unit) => unit,
            // No input: the engine says so.
            None if ctx.inputs().is_empty() => Unit::default(),
            None => {
                let (file, schema) = ctx.schema(ctx.inputs())?;
                Unit::of_input(&file, &schema)?
            }
        };
        Ok(())
    }

    fn input(&self) -> InputSpec {
        rows_input::<Click>()
    }

    fn map_output(&self) -> KeyedSchema {
        // Sorted by (user_id, ts), grouped by user_id: a secondary sort on time.
        row_schema::<UserTime, i64>().group_by(1)
    }

    fn output_schema(&self) -> SchemaRef {
        let rows = row_output_schema::<Session>();
        let timestamp = DataType::Timestamp(self.unit.arrow(), None);
        let fields: Vec<Field> = rows
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "session_start" | "session_end" => f.as_ref().clone().with_data_type(timestamp.clone()),
                _ => f.as_ref().clone(),
            })
            .collect();
        Arc::new(Schema::new(fields))
    }

    fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
        Ok(map_rows::<Click, UserTime, i64, _>(|click, out| {
            out.emit(UserTime { user_id: click.user_id, ts: click.ts }, click.ts)
        }))
    }

    fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
        let gap = self.unit.ticks(self.gap);
        Ok(reduce_rows::<UserTime, i64, Session, _>(move |key, times, out| {
            let mut session: Option<Session> = None;
            for ts in times {
                match session.as_mut() {
                    Some(s) if ts - s.session_end <= gap => {
                        s.session_end = ts;
                        s.clicks += 1;
                    }
                    _ => {
                        if let Some(ended) = session.take() {
                            out.emit(ended)?;
                        }
                        session = Some(Session {
                            user_id: key.user_id,
                            session_start: ts,
                            session_end: ts,
                            clicks: 1,
                        });
                    }
                }
            }
            session.map_or(Ok(()), |last| out.emit(last))
        }))
    }
}
