//! `chaos`: word count whose tasks misbehave on purpose, for failure tests (like the crash
//! app of the MIT 6.824 MapReduce lab). Each task draws a number from a hash of the seed,
//! its kind and its index; that number picks one fate: crash (exit abruptly, no result),
//! fail (return an error), hang, sleep, panic (with the same message on every attempt), or
//! run normally. By default only first attempts
//! misbehave, so retries succeed and the output equals a fault-free word count.
//!
//! With `--broadcast-bytes N` its plan broadcasts a value of N bytes that every task reads
//! and checks first (the executor tests: broadcast values reach attempts after a crash).

use std::time::Duration;

use gristmill::ids::TaskKind;
use gristmill::prelude::*;
use serde::{Deserialize, Serialize};

use crate::wordcount_records::WordCountRecords;

/// How long a hanging task hangs before it gives up hanging (kept finite).
const HANG: Duration = Duration::from_secs(600);

/// Which tasks misbehave.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    /// Map tasks only.
    #[default]
    Map,
    /// Reduce tasks only.
    Reduce,
    /// Both.
    Both,
}

/// Word count with injected faults.
#[derive(clap::Args, Clone, Debug, Default, Serialize, Deserialize)]
pub struct Chaos {
    /// Seed of the fate of each task.
    #[arg(long, default_value_t = 1)]
    pub chaos_seed: u64,
    /// Tasks that misbehave.
    #[arg(long, value_enum, default_value = "map")]
    pub chaos_stage: Stage,
    /// Probability a task exits abruptly (no result, like a crash).
    #[arg(long, default_value_t = 0.0)]
    pub crash: f64,
    /// Probability a task fails with an error.
    #[arg(long, default_value_t = 0.0)]
    pub fail: f64,
    /// Probability a task hangs (for 10 minutes).
    #[arg(long, default_value_t = 0.0)]
    pub hang: f64,
    /// Probability a task sleeps `--sleep-ms` first.
    #[arg(long, default_value_t = 0.0)]
    pub sleep: f64,
    /// Probability a task panics (with the same message on every attempt).
    #[arg(long, default_value_t = 0.0)]
    pub panic: f64,
    /// How long sleeping tasks sleep.
    #[arg(long, default_value_t = 1000)]
    pub sleep_ms: u64,
    /// Misbehave on every attempt, not just the first (the job then fails).
    #[arg(long)]
    pub always: bool,
    /// Run map-only: each map task writes its (word, count) rows to its own part file.
    #[arg(long)]
    pub map_only: bool,
    /// Sleeping reducers sleep after reading their whole partition, just before their part
    /// file is closed, not before they start: they outlive the job they belong to.
    #[arg(long)]
    pub sleep_late: bool,
    /// Broadcast a value of this many bytes from the plan; every task checks it has it.
    #[arg(long, default_value_t = 0, hide = true)]
    pub broadcast_bytes: usize,
}

/// The broadcast value of `--broadcast-bytes`.
const BALLAST: &str = "ballast";

/// What happens to one task.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    Crash,
    Fail,
    Hang,
    Sleep,
    Panic,
    Normal,
}

impl Chaos {
    fn fate(&self, info: &TaskInfo) -> Fate {
        let stage_matches = matches!(
            (self.chaos_stage, info.task.kind),
            (Stage::Both, _) | (Stage::Map, TaskKind::Map) | (Stage::Reduce, TaskKind::Reduce)
        );
        if !stage_matches || (!self.always && info.attempt.0 > 0) {
            return Fate::Normal;
        }
        let kind = u64::from(info.task.kind == TaskKind::Reduce);
        let draw = unit(
            self.chaos_seed ^ (kind << 63) ^ u64::from(info.task.index).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let mut edge = 0.0;
        for (p, fate) in [
            (self.crash, Fate::Crash),
            (self.fail, Fate::Fail),
            (self.hang, Fate::Hang),
            (self.sleep, Fate::Sleep),
            (self.panic, Fate::Panic),
        ] {
            edge += p;
            if draw < edge {
                return fate;
            }
        }
        Fate::Normal
    }

    /// Carries out the task's fate before it does its work, then checks the broadcast value.
    fn meet_fate(&self, info: &TaskInfo) -> JobResult<()> {
        self.carry_out_fate(info)?;
        if self.broadcast_bytes > 0 {
            let ballast: String = info.broadcast(BALLAST)?;
            if ballast.len() != self.broadcast_bytes {
                return Err(format!(
                    "broadcast `{BALLAST}` has {} bytes, not {}",
                    ballast.len(),
                    self.broadcast_bytes
                )
                .into());
            }
        }
        Ok(())
    }

    fn carry_out_fate(&self, info: &TaskInfo) -> JobResult<()> {
        match self.fate(info) {
            Fate::Crash => {
                eprintln!("chaos: {} attempt {} crashes", info.task, info.attempt);
                std::process::exit(86);
            }
            Fate::Fail => {
                Err(format!("chaos: {} attempt {} fails on purpose", info.task, info.attempt).into())
            }
            Fate::Hang => {
                eprintln!("chaos: {} attempt {} hangs", info.task, info.attempt);
                std::thread::sleep(HANG);
                Ok(())
            }
            Fate::Sleep => {
                std::thread::sleep(Duration::from_millis(self.sleep_ms));
                Ok(())
            }
            // No attempt number: a deterministic bug panics the same way every time.
            Fate::Panic => panic!("chaos: {} panics on purpose", info.task),
            Fate::Normal => Ok(()),
        }
    }
}

/// A reducer that sleeps once it has reduced its whole partition (`--sleep-late`).
struct SleepsAtEnd {
    inner: Box<dyn Reducer>,
    sleep: Duration,
}

impl Reducer for SleepsAtEnd {
    fn reduce(&mut self, group: &KeyGroup<'_>, out: &mut Emitter) -> JobResult<()> {
        self.inner.reduce(group, out)
    }

    fn reduce_groups(&mut self, groups: &Groups<'_>, out: &mut Emitter) -> JobResult<()> {
        self.inner.reduce_groups(groups, out)
    }

    fn finish(&mut self, out: &mut Emitter) -> JobResult<()> {
        self.inner.finish(out)?;
        std::thread::sleep(self.sleep);
        Ok(())
    }
}

/// SplitMix64 of `x`, as a number in [0, 1).
fn unit(x: u64) -> f64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

impl Job for Chaos {
    const NAME: &'static str = "chaos";
    const ABOUT: &'static str =
        "Counts words while tasks crash, fail, hang or sleep on purpose (failure tests).";

    fn plan(&mut self, ctx: &gristmill::job::PlanContext) -> JobResult<()> {
        if self.broadcast_bytes > 0 {
            ctx.broadcast(BALLAST, &"b".repeat(self.broadcast_bytes))?;
        }
        Ok(())
    }

    fn validate(&self) -> JobResult<()> {
        let probabilities = [self.crash, self.fail, self.hang, self.sleep, self.panic];
        let total: f64 = probabilities.iter().sum();
        if probabilities.iter().any(|p| !(0.0..=1.0).contains(p)) || total > 1.0 {
            return Err(
                "--crash, --fail, --hang, --sleep and --panic are probabilities summing to at most 1".into(),
            );
        }
        Ok(())
    }

    fn map_output(&self) -> KeyedSchema {
        WordCountRecords {}.map_output()
    }

    fn reducers(&self) -> Option<usize> {
        self.map_only.then_some(0)
    }

    fn mapper(&self, info: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
        self.meet_fate(info)?;
        WordCountRecords {}.mapper(info)
    }

    fn reducer(&self, info: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
        if self.sleep_late && self.fate(info) == Fate::Sleep {
            let inner = WordCountRecords {}.reducer(info)?;
            return Ok(Box::new(SleepsAtEnd { inner, sleep: Duration::from_millis(self.sleep_ms) }));
        }
        self.meet_fate(info)?;
        WordCountRecords {}.reducer(info)
    }

    fn combiner(&self, info: &TaskInfo) -> Option<Box<dyn Reducer>> {
        WordCountRecords {}.combiner(info)
    }
}
