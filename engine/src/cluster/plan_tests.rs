//! One plan in every mode: what a cluster's task process is given is what local mode runs.

use std::sync::Arc;

use arrow::datatypes::DataType;

use super::payload::{JobPayload, MapSplit};
use crate::config::RunConfig;
use crate::error::JobResult;
use crate::ids::{AttemptId, JobId};
use crate::input::{BadRecords, Split};
use crate::job::{Broadcasts, IdentityMapper, IdentityReducer, Job, KeyedSchema, Mapper, Reducer, TaskInfo};
use crate::plan::{JobPlan, PartitionerChoice, TaskResources, TaskSettings, plan_job};
use crate::progress::Progress;
use crate::shuffle::{RunBudget, RunStore, SpillDir};

/// Lines of text, sorted (in total order when asked).
#[derive(clap::Args, serde::Serialize, serde::Deserialize)]
struct Lines {
    #[arg(long)]
    total_order: bool,
}

impl Job for Lines {
    const NAME: &'static str = "lines";
    const ABOUT: &'static str = "Sorts lines";
    fn map_output(&self) -> KeyedSchema {
        KeyedSchema::new([("line", DataType::Utf8)])
    }
    fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
        Ok(Box::new(IdentityMapper))
    }
    fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
        Ok(Box::new(IdentityReducer))
    }
    fn total_order(&self) -> bool {
        self.total_order
    }
}

/// Plans `job` as local mode does (sampling with the job's run store) or as a submission
/// does (`store: None`, a scratch one).
fn plan(
    job: &Lines,
    config: &RunConfig,
    io: &tokio::runtime::Handle,
    store: Option<&Arc<RunStore>>,
) -> JobPlan {
    let progress = Progress::default();
    let bad_records = BadRecords::new(config.max_bad_records);
    let job_id = JobId::generate();
    let resources = TaskResources {
        io,
        job_id: &job_id,
        attempt: AttemptId(0),
        bad_records: &bad_records,
        store,
        progress: &progress,
    };
    plan_job(job, config, Broadcasts::default(), &resources).unwrap()
}

#[test]
fn a_task_process_is_given_the_plan_local_mode_runs() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("lines.txt");
    std::fs::write(&input, (0..2000).map(|i| format!("line {:05}\n", (i * 7919) % 2000)).collect::<String>())
        .unwrap();
    let mut config =
        RunConfig::new(vec![input.display().to_string()], dir.path().join("out").display().to_string())
            .with_threads(2)
            .with_split_size(4096);
    config.reducers = 3;
    let io = crate::local::io_runtime().unwrap();
    let spill = Arc::new(SpillDir::create(dir.path(), &JobId::generate()).unwrap());
    let store = Arc::new(RunStore::new(spill, config.run_budget()));
    for total_order in [false, true] {
        let job = Lines { total_order };
        let local = plan(&job, &config, io.handle(), Some(&store));
        let submitted = plan(&job, &config, io.handle(), None);
        assert_eq!(local.tasks, submitted.tasks);
        let expected = if total_order { "a range" } else { "the hash" };
        match &local.tasks.partitioner {
            PartitionerChoice::Range(points) => assert_eq!((total_order, points.len()), (true, 2)),
            PartitionerChoice::Default => assert!(!total_order, "{expected}"),
            other => panic!("{other:?} instead of {expected}"),
        }
        assert_eq!(local.tasks.num_partitions, 3);

        // The payload as the task process reads it: the plan's settings, with each task
        // process's share of the run budget.
        let json =
            serde_json::to_vec(&JobPayload::of_plan(&job, &config, &submitted.tasks).unwrap()).unwrap();
        let payload: JobPayload = serde_json::from_slice(&json).unwrap();
        let in_task = payload.task_settings(&job);
        let budget = local.tasks.run_budget;
        assert_eq!(in_task.run_budget, RunBudget { owned: budget.owned / 2, mapped: budget.mapped / 2 });
        assert_eq!(TaskSettings { run_budget: budget, ..in_task.clone() }, local.tasks);

        // Each map task travels as its split's spec and reads back as the same split.
        assert!(local.map_tasks.len() > 2, "{} map tasks", local.map_tasks.len());
        assert_eq!(local.map_tasks.len(), submitted.map_tasks.len());
        for (task, sent) in local.map_tasks.iter().zip(&submitted.map_tasks) {
            let spec = MapSplit { input: sent.input, split: sent.split.to_spec().unwrap() };
            let shipped: MapSplit = serde_json::from_slice(&serde_json::to_vec(&spec).unwrap()).unwrap();
            let split =
                io.block_on(Split::from_spec(shipped.split, &job.input(), &in_task.storage_options)).unwrap();
            assert_eq!((shipped.input, split.describe()), (task.input, task.split.describe()));
        }
    }
}
