//! `gristmill worker drain ID`: an operator drains a worker as SIGTERM would. The driver
//! asks the worker, which answers with its own `Draining` (carrying its `--drain-timeout`),
//! so a drain started either way runs the same: no new tasks, running ones finish, the
//! worker exits once released (see the scheduler's `drain` module).

use std::time::Instant;

use gristmill_proto::v1::DrainWorkerReply;
use tonic::Status;

use super::state::DriverState;
use crate::ids::WorkerId;
use crate::scheduler::WorkerState;
use crate::security::identity::{ADMIN_USER, Identity};

/// Asks `worker` to drain, for `identity` (admin only: it takes capacity from everyone).
pub fn ask_to_drain(
    state: &DriverState,
    identity: &Identity,
    worker: &WorkerId,
) -> Result<DrainWorkerReply, Status> {
    if !matches!(identity, Identity::Anonymous) && *identity != Identity::Client(ADMIN_USER.into()) {
        return Err(Status::permission_denied(format!(
            "{identity} may not drain workers: only {ADMIN_USER} may"
        )));
    }
    let view = state.read(|s| s.workers(Instant::now())).into_iter().find(|w| &w.id == worker);
    let Some(view) = view else {
        return Err(Status::not_found(format!("no worker {worker}")));
    };
    match view.state {
        WorkerState::Lost { reason } => {
            Err(Status::failed_precondition(format!("worker {worker} is lost ({reason}); nothing to drain")))
        }
        WorkerState::Draining => Ok(DrainWorkerReply { state: "draining".into() }),
        WorkerState::Alive if state.ask_to_drain(worker) => {
            tracing::info!(%worker, by = %identity, "asked the worker to drain");
            Ok(DrainWorkerReply { state: "draining".into() })
        }
        WorkerState::Alive => Err(Status::unavailable(format!("worker {worker} cannot be reached"))),
    }
}
