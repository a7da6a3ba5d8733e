//! Resuming the jobs an earlier driver left unfinished, and adopting the map outputs that
//! re-attached workers still hold (see [`recovery`](super::super::recovery)).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gristmill_proto::v1::HeldMapOutput;

use super::{DriverState, JobRecord, job_spec, lock};
use crate::driver::journal::{MapDone, Record, now_ms};
use crate::driver::recovery::{Recovered, Unfinished};
use crate::ids::{AttemptId, JobId, WorkerId};
use crate::security::JobSecret;

/// How long a resumed job waits for the workers holding its map outputs to re-attach
/// before it runs the missing maps again. Workers retry every half second, so a live
/// one is back within a second or two of the driver.
pub const RESUME_GRACE: Duration = Duration::from_secs(10);

impl DriverState {
    /// Queues the unfinished jobs again (held while their map outputs' workers re-attach)
    /// and keeps the ended ones as history. Their actions (none before workers attach) are
    /// carried out on the next event.
    pub(super) fn resume(&self, recovered: Recovered) {
        let Recovered { epoch, unfinished, ended } = recovered;
        tracing::info!(epoch, resumed = unfinished.len(), ended = ended.len(), "replayed the driver journal");
        lock(&self.history).extend(ended);
        for job in unfinished {
            if !self.binaries.store().contains(&job.request.binary_digest) {
                self.end_unresumable(
                    job,
                    "its job binary is no longer stored on the driver; submit it again",
                );
                continue;
            }
            self.resume_one(job);
        }
    }

    fn resume_one(&self, job: Unfinished) {
        let id = JobId::from_string(job.job.id.clone());
        let ago = Duration::from_millis(now_ms().saturating_sub(job.job.submitted_at_ms));
        let output_key =
            super::super::commit::output_key(&job.request).unwrap_or_else(|_| job.request.output.clone());
        let spec = job_spec(&id, &job.job.owner, &job.request);
        // An older driver's record has no secret: the job's map outputs are unreadable then.
        let (secret, maps) = match job.secret {
            Some(secret) => (secret, job.maps),
            None => (JobSecret::generate(), HashMap::new()),
        };
        let mut record = JobRecord::new(&id, job.request, output_key, job.job.owner, secret);
        record.submitted = Instant::now().checked_sub(ago).unwrap_or_else(Instant::now);
        record.awaiting = maps.values().map(|m| m.worker.clone()).collect::<HashSet<_>>();
        record.recovered_maps = maps;
        let held = !record.recovered_maps.is_empty();
        tracing::info!(job = %id, name = %spec.name, maps = spec.map_tasks.len(), recovered = record.recovered_maps.len(), "resuming a job from the journal");
        lock(&self.jobs).insert(id.clone(), record);
        let mut scheduler = lock(&self.scheduler);
        let now = Instant::now();
        match scheduler.submit(now, spec) {
            Ok(()) if held => scheduler.hold(&id, now + RESUME_GRACE),
            Ok(()) => {}
            Err(e) => tracing::error!(job = %id, error = %e, "cannot resume the job"),
        }
    }

    /// A worker attached at `shuffle_address` holding `held`: adopts the outputs that resumed
    /// jobs' journals name (same task and attempt), and releases the jobs that await no
    /// other worker.
    pub fn adopt_held(self: &Arc<Self>, worker: &WorkerId, shuffle_address: &str, held: &[HeldMapOutput]) {
        let mut adopted = Vec::new();
        let mut released = Vec::new();
        {
            let mut jobs = lock(&self.jobs);
            for h in held {
                let id = JobId::from_string(h.job_id.clone());
                let Some(record) = jobs.get(&id).filter(|r| r.ended.is_none()) else { continue };
                let journaled = record.recovered_maps.get(&h.map_task).filter(|m| m.attempt == h.attempt);
                let Some(done) = journaled.cloned() else { continue };
                // Within the limit: the last driver checked the job's sum with them.
                let kept = match self.journal.bad_records(&done) {
                    Ok(rows) => {
                        jobs.get_mut(&id).map_or(Ok(()), |r| r.bad_records.offer(done.map_task, rows))
                    }
                    Err(e) => Err(crate::error::Error::Internal(e.to_string())),
                };
                match kept {
                    Ok(()) => adopted.push((id, done)),
                    // Not adopted: the map runs again and reports its bad records anew.
                    Err(e) => {
                        tracing::warn!(job = %id, error = %e, "cannot adopt a map output's bad records")
                    }
                }
            }
            for (id, record) in jobs.iter_mut().filter(|(_, r)| r.ended.is_none()) {
                if record.awaiting.remove(shuffle_address) && record.awaiting.is_empty() {
                    released.push(id.clone());
                }
            }
        }
        self.update(|s, now| {
            for (job, done) in adopted {
                let counters = done.counters.into_iter().collect();
                s.adopt_map_output(now, &job, done.map_task, AttemptId(done.attempt), worker, counters);
            }
            for job in released {
                tracing::info!(job = %job, "every worker holding the resumed job's map outputs is back");
                s.release(now, &job);
            }
        });
    }

    /// Journals the accepted output of a map attempt that `worker` holds, so a restarted
    /// driver can adopt it.
    pub fn journal_map_done(
        &self,
        job: &JobId,
        map_task: u32,
        attempt: u32,
        worker: &WorkerId,
        (counters, bad_records): (&HashMap<String, u64>, &[crate::input::BadRecord]),
    ) {
        let Some(address) = lock(&self.workers).get(worker).map(|l| l.shuffle_address.clone()) else {
            return;
        };
        let sealed_bad_records = self.journal.seal_bad_records(job.as_str(), bad_records).unwrap_or_else(|e| {
            tracing::warn!(job = %job, map_task, error = %e, "cannot seal the bad records: a restarted driver would run the map again");
            String::new()
        });
        let done = MapDone {
            job: job.to_string(),
            map_task,
            attempt,
            worker: address,
            counters: counters.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            sealed_bad_records,
        };
        // Not synced: lost in a crash, the map runs again (see `Journal::append_lazily`).
        if let Err(e) = self.journal.append_lazily(&Record::MapDone(done)) {
            tracing::warn!(job = %job, map_task, error = %e, "cannot journal a map output: a restarted driver would run the map again");
        }
    }
}
