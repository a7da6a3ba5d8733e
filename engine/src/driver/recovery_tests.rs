//! A driver restarted on its data directory: new epoch, resumed and historic jobs.

use std::sync::Arc;
use std::time::Duration;

use gristmill_proto::v1::{JobState, MapTaskSpec, SubmitJobRequest};

use super::state::{DriverState, Submission};
use super::{DEFAULT_MAX_WORKER_SLOTS, DriverConfig, HistoryLimits};
use crate::cluster::binary::bytes_digest;
use crate::ids::JobId;
use crate::scheduler::SchedulerConfig;
use crate::security::ServerSecurity;

fn config(dir: &std::path::Path) -> DriverConfig {
    DriverConfig {
        listen: "127.0.0.1:0".into(),
        http: None,
        data_dir: dir.join("driver"),
        heartbeat_interval: Duration::from_millis(100),
        scheduler: SchedulerConfig::default(),
        security: ServerSecurity::default(),
        max_worker_slots: DEFAULT_MAX_WORKER_SLOTS,
        binaries: super::BinaryLimits::default(),
        history: HistoryLimits::default(),
        distribution: Default::default(),
    }
}

fn submit(state: &Arc<DriverState>, id: &str, output: &std::path::Path, digest: &str) -> JobId {
    let id = JobId::from_string(id.into());
    let request = SubmitJobRequest {
        name: "wordcount".into(),
        binary_digest: digest.into(),
        output: output.display().to_string(),
        map_tasks: vec![MapTaskSpec { description: "a.txt:0+10".into(), split_payload: vec![1] }],
        reducers: 2,
        ..Default::default()
    };
    let output_key = output.display().to_string();
    state.submit(Submission { id: id.clone(), owner: "alice".into(), request, output_key }).unwrap();
    id
}

fn state_of(state: &DriverState, id: &JobId) -> JobState {
    state.status(id).expect("the job is known").state()
}

/// Submits `jobs` (id, output) to a first driver on `dir`, which then goes away as in a
/// crash: the journal is what a restarted driver finds.
fn submitted_before_a_crash(dir: &std::path::Path, jobs: &[(&str, &std::path::Path)]) -> Vec<JobId> {
    let digest = bytes_digest(b"bin");
    let first = Arc::new(DriverState::new(&config(dir), None).unwrap());
    first.binaries.store().put(&digest, b"bin").unwrap();
    jobs.iter().map(|(id, output)| submit(&first, id, output, &digest)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_driver_resumes_unfinished_jobs_and_remembers_ended_ones() {
    let dir = tempfile::tempdir().unwrap();
    let digest = bytes_digest(b"a job binary");
    let (ended, running, orphan) = {
        let first = Arc::new(DriverState::new(&config(dir.path()), None).unwrap());
        assert_eq!((first.epoch(), first.attempt_base()), (1, 0));
        first.binaries.store().put(&digest, b"a job binary").unwrap();
        let ended = submit(&first, "job-ended", &dir.path().join("out1"), &digest);
        first.update(|s, now| {
            s.cancel(now, &ended);
        });
        let running = submit(&first, "job-running", &dir.path().join("out2"), &digest);
        let orphan = submit(&first, "job-orphan", &dir.path().join("out3"), &bytes_digest(b"gone"));
        (ended, running, orphan)
    };
    let second = Arc::new(DriverState::new(&config(dir.path()), None).unwrap());
    assert_eq!((second.epoch(), second.attempt_base()), (2, super::recovery::ATTEMPTS_PER_EPOCH));
    assert_eq!(state_of(&second, &ended), JobState::Cancelled);
    assert!(second.has_ended(&ended));
    assert_eq!(state_of(&second, &running), JobState::Queued, "resumed from scratch");
    assert!(second.binaries_in_use().contains(&digest), "its binary is never evicted");
    let orphan_status = second.status(&orphan).unwrap();
    assert_eq!(orphan_status.state(), JobState::Failed);
    assert!(orphan_status.error.contains("binary"), "{}", orphan_status.error);
    let listed: Vec<String> = second.statuses().into_iter().map(|s| s.job_id).collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    // The resumed job ends in this run; a third start knows it ended.
    second.update(|s, now| {
        s.cancel(now, &running);
    });
    drop(second);
    let third = DriverState::new(&config(dir.path()), None).unwrap();
    assert_eq!(third.epoch(), 3);
    assert_eq!(state_of(&third, &running), JobState::Cancelled);
    assert_eq!(state_of(&third, &orphan), JobState::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_jobs_beyond_the_history_limit_are_forgotten_but_stay_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let digest = bytes_digest(b"bin");
    let limited = |dir: &std::path::Path| DriverConfig {
        history: HistoryLimits { max_jobs: 1, max_age: Duration::from_secs(3600) },
        ..config(dir)
    };
    let state = Arc::new(DriverState::new(&limited(dir.path()), None).unwrap());
    let ids: Vec<JobId> = (0..3)
        .map(|i| {
            let id = submit(&state, &format!("job-{i}"), &dir.path().join(format!("out{i}")), &digest);
            state.update(|s, now| {
                s.cancel(now, &id);
            });
            std::thread::sleep(Duration::from_millis(5));
            id
        })
        .collect();
    state.trim_ended();
    assert!(state.status(&ids[0]).is_none() && state.status(&ids[1]).is_none());
    assert_eq!(state_of(&state, &ids[2]), JobState::Cancelled);
    drop(state);
    let roomy = DriverState::new(&config(dir.path()), None).unwrap();
    assert!(ids.iter().all(|id| roomy.status(id).is_some()), "the journal kept them all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_jobs_lock_their_outputs_again_or_are_cancelled_when_another_job_holds_them() {
    use crate::output::{LOCK_FILE, LockHolder, OutputDir};
    use crate::storage::Location;
    let dir = tempfile::tempdir().unwrap();
    let (free, taken) = (dir.path().join("free"), dir.path().join("taken"));
    let [free_job, taken_job]: [JobId; 2] =
        submitted_before_a_crash(dir.path(), &[("job-free", &free), ("job-taken", &taken)])
            .try_into()
            .unwrap();
    // While the driver was away, another driver's job took the second output.
    let other = OutputDir::new(Location::parse(taken.to_str().unwrap()).unwrap());
    other.lock(&LockHolder::new("job-of-another-driver", "bob")).await.unwrap();
    let second = Arc::new(DriverState::new(&config(dir.path()), None).unwrap());
    super::state::relock_resumed(second.clone()).await;
    assert_eq!(state_of(&second, &free_job), JobState::Queued);
    let lock = std::fs::read_to_string(free.join(LOCK_FILE)).expect("the free output is locked again");
    assert!(lock.contains("job-free"), "{lock}");
    assert_eq!(state_of(&second, &taken_job), JobState::Cancelled);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lock = std::fs::read_to_string(taken.join(LOCK_FILE)).unwrap();
    assert!(lock.contains("job-of-another-driver"), "the other job's lock stays: {lock}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_commit_finished_before_the_crash_ends_as_succeeded_not_run_again() {
    use crate::output::{Manifest, SUCCESS_FILE};
    let dir = tempfile::tempdir().unwrap();
    let (done, older) = (dir.path().join("done"), dir.path().join("older"));
    let [done_job, older_job]: [JobId; 2] =
        submitted_before_a_crash(dir.path(), &[("job-done", &done), ("job-older", &older)])
            .try_into()
            .unwrap();
    // The first driver died after writing job-done's _SUCCESS, before journaling its end;
    // job-older's output holds an earlier job's result.
    for (out, job) in [(&done, "job-done"), (&older, "job-before")] {
        std::fs::create_dir_all(out).unwrap();
        let manifest = Manifest::new("wordcount", job, &[], Default::default());
        std::fs::write(out.join(SUCCESS_FILE), serde_json::to_vec(&manifest).unwrap()).unwrap();
    }
    let second = DriverState::open(&config(dir.path()), None).await.unwrap();
    assert_eq!(state_of(&second, &done_job), JobState::Succeeded);
    assert_eq!(state_of(&second, &older_job), JobState::Queued, "runs again");
    drop(second);
    let third = DriverState::new(&config(dir.path()), None).unwrap();
    assert_eq!(state_of(&third, &done_job), JobState::Succeeded, "journaled as ended");
}

/// Attaches a worker at `address` holding `held`; returns its id and session stream.
fn attach(
    state: &Arc<DriverState>,
    id: &str,
    address: &str,
    held: &[gristmill_proto::v1::HeldMapOutput],
) -> (
    crate::ids::WorkerId,
    tokio::sync::mpsc::Receiver<Result<gristmill_proto::v1::DriverMessage, tonic::Status>>,
) {
    let (downlink, rx) = tokio::sync::mpsc::channel(64);
    let link = super::state::WorkerLink {
        downlink,
        shuffle_address: address.into(),
        shuffle_dir: String::new(),
        host_id: String::new(),
        payloads_sent: Default::default(),
    };
    let worker = crate::ids::WorkerId(id.into());
    state.attach(worker.clone(), link, 4, 0);
    state.adopt_held(&worker, address, held);
    (worker, rx)
}

/// The (map task, attempt, secret) of every `Run` queued on a session stream.
fn runs(
    rx: &mut tokio::sync::mpsc::Receiver<Result<gristmill_proto::v1::DriverMessage, tonic::Status>>,
) -> Vec<(u32, u32, String)> {
    use gristmill_proto::v1::driver_message::Body;
    let mut out = Vec::new();
    while let Ok(Ok(message)) = rx.try_recv() {
        if let Some(Body::Run(run)) = message.body {
            let key = run.attempt.unwrap();
            out.push((key.index, key.attempt, run.job_secret));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_job_adopts_the_map_outputs_a_returning_worker_holds_and_keeps_its_secret() {
    use gristmill_proto::v1::HeldMapOutput;
    let dir = tempfile::tempdir().unwrap();
    let digest = bytes_digest(b"bin");
    let id = JobId::from_string("job-maps".into());
    let request = SubmitJobRequest {
        name: "wordcount".into(),
        binary_digest: digest.clone(),
        output: dir.path().join("out").display().to_string(),
        map_tasks: (0..3)
            .map(|i| MapTaskSpec { description: format!("a.txt:{i}"), split_payload: vec![1] })
            .collect(),
        reducers: 2,
        ..Default::default()
    };
    let secret = {
        let first = Arc::new(DriverState::new(&config(dir.path()), None).unwrap());
        first.binaries.store().put(&digest, b"bin").unwrap();
        let output_key = request.output.clone();
        first.submit(Submission { id: id.clone(), owner: "alice".into(), request, output_key }).unwrap();
        let (worker, mut rx) = attach(&first, "w1", "127.0.0.1:7001", &[]);
        let launched = runs(&mut rx);
        assert_eq!(launched.len(), 3, "{launched:?}");
        // Maps 0 and 1 succeed on the worker (journaled); map 2 is still running at the crash.
        let counters = std::collections::HashMap::from([("map_input_records".to_owned(), 5)]);
        first.journal_map_done(&id, 0, 0, &worker, (&counters, &[]));
        first.journal_map_done(&id, 1, 0, &worker, (&counters, &[]));
        launched[0].2.clone()
    };
    let second = Arc::new(DriverState::new(&config(dir.path()), None).unwrap());
    // A stranger at another address launches nothing of the held job.
    let (_, mut other) = attach(&second, "w9", "127.0.0.1:7009", &[]);
    assert!(runs(&mut other).is_empty(), "the resumed job waits for the worker holding its maps");
    let held = |map_task, attempt| HeldMapOutput { job_id: id.to_string(), map_task, attempt };
    // The worker is back holding both outputs, plus one of an attempt the journal never accepted.
    let (_, mut back) = attach(&second, "w2", "127.0.0.1:7001", &[held(0, 0), held(1, 0), held(2, 0)]);
    let status = second.status(&id).unwrap();
    assert_eq!(status.maps_done, 2, "maps 0 and 1 adopted, map 2 not: {status:?}");
    assert_eq!(status.counters.get("map_input_records"), Some(&10), "the adopted maps' counters count");
    let relaunched: Vec<(u32, u32, String)> = runs(&mut other).into_iter().chain(runs(&mut back)).collect();
    assert_eq!(relaunched.len(), 1, "only map 2 runs again: {relaunched:?}");
    let (task, attempt, resumed_secret) = &relaunched[0];
    assert_eq!((*task, *attempt), (2, second.attempt_base()));
    assert_eq!(resumed_secret, &secret, "the resumed job keeps its secret: the held outputs stay readable");
}

/// Journals, as a dead driver would have, a staged part of each of `attempts` of each
/// partition of `job` (hidden local files in `out`), and returns them.
fn stage_locally(
    dir: &std::path::Path,
    out: &std::path::Path,
    job: &JobId,
    attempts: &[u32],
) -> Vec<super::journal::JournaledPart> {
    use super::journal::{Journal, JournaledPart, PartStaged, Record};
    use crate::ids::{AttemptId, PartitionId};
    use crate::output::{OutputLayout, Staged, part_name};
    std::fs::create_dir_all(out).unwrap();
    let (journal, _) = Journal::open(&dir.join("driver")).unwrap();
    let mut parts = Vec::new();
    for partition in 0..2 {
        for &attempt in attempts {
            let name = part_name(PartitionId(partition), job, AttemptId(attempt), &OutputLayout::default());
            std::fs::write(out.join(crate::storage::staging_name(&name)), format!("rows of {name}")).unwrap();
            let part = JournaledPart { partition, name, rows: 3, bytes: 20, staged: Staged::LocalFile };
            journal
                .append(&Record::PartStaged(PartStaged { job: job.to_string(), part: part.clone() }))
                .unwrap();
            parts.push(part);
        }
    }
    parts
}

fn names_in(out: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_the_last_driver_began_is_finished_and_other_staged_parts_are_discarded() {
    use super::journal::{CommitBegun, Journal, Record};
    use crate::output::{LOCK_FILE, Manifest, SUCCESS_FILE};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let [job]: [JobId; 1] = submitted_before_a_crash(dir.path(), &[("job-commit", &out)]).try_into().unwrap();
    // Attempts 0 and 1 of both partitions staged; the commit of attempts 1 began, and the
    // driver died after publishing partition 0's winner only.
    let parts = stage_locally(dir.path(), &out, &job, &[0, 1]);
    let (winners, losers): (Vec<_>, Vec<_>) = parts.into_iter().partition(|p| p.name.contains("-a1."));
    {
        let (journal, _) = Journal::open(&dir.path().join("driver")).unwrap();
        let begun = CommitBegun {
            job: job.to_string(),
            winners: winners.clone(),
            losers: losers[..1].to_vec(),
            counters: [("reduce_output_records".to_owned(), 6)].into(),
        };
        journal.append(&Record::CommitBegun(begun)).unwrap();
    }
    std::fs::rename(out.join(crate::storage::staging_name(&winners[0].name)), out.join(&winners[0].name))
        .unwrap();

    let second = DriverState::open(&config(dir.path()), None).await.unwrap();
    assert_eq!(state_of(&second, &job), JobState::Succeeded, "the commit was finished, not run again");
    let mut expected: Vec<String> = winners.iter().map(|p| p.name.clone()).collect();
    expected.push(SUCCESS_FILE.to_owned());
    expected.sort();
    assert_eq!(names_in(&out), expected, "the winners and _SUCCESS, no staged part, no lock ({LOCK_FILE})");
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(out.join(SUCCESS_FILE)).unwrap()).unwrap();
    assert_eq!(manifest.job_id, job.as_str());
    assert_eq!((manifest.rows, manifest.files.len()), (6, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_begun_commit_that_cannot_finish_is_rolled_back_and_the_job_runs_again() {
    use super::journal::{CommitBegun, Journal, Record};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let [job]: [JobId; 1] =
        submitted_before_a_crash(dir.path(), &[("job-rollback", &out)]).try_into().unwrap();
    let winners = stage_locally(dir.path(), &out, &job, &[0]);
    {
        let (journal, _) = Journal::open(&dir.path().join("driver")).unwrap();
        let begun = CommitBegun {
            job: job.to_string(),
            winners: winners.clone(),
            losers: vec![],
            counters: Default::default(),
        };
        journal.append(&Record::CommitBegun(begun)).unwrap();
    }
    // Partition 0 was published; partition 1's staged file is lost (its disk was wiped):
    // the commit cannot finish.
    std::fs::rename(out.join(crate::storage::staging_name(&winners[0].name)), out.join(&winners[0].name))
        .unwrap();
    std::fs::remove_file(out.join(crate::storage::staging_name(&winners[1].name))).unwrap();

    let second = DriverState::open(&config(dir.path()), None).await.unwrap();
    assert_eq!(state_of(&second, &job), JobState::Queued, "rolled back: the job runs again");
    assert!(names_in(&out).is_empty(), "nothing of the half commit is left: {:?}", names_in(&out));
}
