//! Following a submitted job until it ends, through driver restarts: when the watch
//! stream breaks, the submitter connects again with exponential backoff and keeps
//! following the same job id, for up to the driver timeout (a restarted driver resumes
//! the job from its journal).

use std::time::{Duration, Instant};

use gristmill_proto::v1::driver_client::DriverClient;
use gristmill_proto::v1::{JobRef, JobStatus};
use tonic::transport::Channel;

use super::rpc::{DriverEndpoint, connect_driver, is_final, state_name};
use crate::error::{Error, Result};

/// The first pause before reconnecting; doubled after every failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How to follow a job.
pub struct Follow<'a> {
    /// The driver.
    pub driver: &'a DriverEndpoint,
    /// The job.
    pub job_id: &'a str,
    /// Print progress lines on stderr.
    pub show_progress: bool,
    /// How long the driver may be unreachable before the submitter gives up.
    pub driver_timeout: Duration,
}

/// What Ctrl-C does while a submitter follows its job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnInterrupt {
    /// Ask "cancel job X? [y/N]" when stdin is a terminal; otherwise (or on "no") detach,
    /// leaving the job running.
    #[default]
    AskOnTerminal,
    /// Cancel the job (`--cancel-on-interrupt`) and follow it to its end.
    Cancel,
}

/// How following a job ended.
pub enum Followed {
    /// The job ended with this status.
    Ended(Box<JobStatus>),
    /// Ctrl-C: the submitter stopped following; the job keeps running.
    Detached,
}

/// [`follow`], handling Ctrl-C as `on_interrupt` says.
pub async fn follow_interruptible(
    client: &mut DriverClient<Channel>,
    how: &Follow<'_>,
    on_interrupt: OnInterrupt,
) -> Result<Followed> {
    let mut canceller = client.clone();
    let following = follow(client, how);
    tokio::pin!(following);
    loop {
        tokio::select! {
            status = &mut following => return status.map(|s| Followed::Ended(Box::new(s))),
            interrupted = tokio::signal::ctrl_c() => {
                if interrupted.is_err() {
                    return (&mut following).await.map(|s| Followed::Ended(Box::new(s)));
                }
                if !wants_cancel(on_interrupt, how.job_id).await {
                    eprintln!(
                        "detached: job {0} keeps running; follow it again with `gristmill wait {0} --driver {1}` \
                         (or cancel it with `gristmill cancel {0}`)",
                        how.job_id, how.driver.url
                    );
                    return Ok(Followed::Detached);
                }
                eprintln!("cancelling job {}", how.job_id);
                let job = JobRef { job_id: how.job_id.to_owned() };
                if let Err(e) = canceller.cancel_job(job).await {
                    eprintln!("could not cancel job {}: {}", how.job_id, e.message());
                }
            }
        }
    }
}

/// Whether Ctrl-C cancels the job: always with [`OnInterrupt::Cancel`], else if the user
/// at the terminal says so.
async fn wants_cancel(on_interrupt: OnInterrupt, job_id: &str) -> bool {
    use std::io::IsTerminal;
    if on_interrupt == OnInterrupt::Cancel {
        return true;
    }
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!("\ncancel job {job_id}? [y/N] ");
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await;
    matches!(answer, Ok(Ok(line)) if matches!(line.trim(), "y" | "Y" | "yes" | "Yes"))
}

/// Why one watch ended without the job's end.
enum Broken {
    /// Worth reconnecting (the driver went away or restarts).
    Retry(Error),
    /// Not (the job is unknown, the user may not see it, ...).
    Fatal(Error),
}

/// Follows the job until it ends; reconnects while the driver is away.
pub async fn follow(client: &mut DriverClient<Channel>, how: &Follow<'_>) -> Result<JobStatus> {
    let mut progress = Progress { show: how.show_progress, last: (String::new(), None) };
    let mut unreachable_since: Option<Instant> = None;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let error = match watch_once(client, how.job_id, &mut progress, &mut unreachable_since).await {
            Ok(status) => return Ok(status),
            Err(Broken::Fatal(e)) => return Err(e),
            Err(Broken::Retry(e)) => e,
        };
        if unreachable_since.is_none() {
            // The last watch got through: this is a new outage.
            backoff = FIRST_BACKOFF;
        }
        let since = *unreachable_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= how.driver_timeout {
            return Err(error);
        }
        if backoff == FIRST_BACKOFF {
            eprintln!("lost the driver ({error}); reconnecting for up to {:?}", how.driver_timeout);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        match connect_driver(how.driver).await {
            Ok(fresh) => *client = fresh,
            Err(e) => tracing::debug!(error = %e, "the driver is still unreachable"),
        }
    }
}

/// One watch stream: the final status, or why it broke. Every status received clears
/// `unreachable_since`.
async fn watch_once(
    client: &mut DriverClient<Channel>,
    job_id: &str,
    progress: &mut Progress,
    unreachable_since: &mut Option<Instant>,
) -> std::result::Result<JobStatus, Broken> {
    let what = format!("following job {job_id}");
    let broken = |status: tonic::Status| classify(&what, status);
    let mut stream =
        client.watch_job(JobRef { job_id: job_id.to_owned() }).await.map_err(broken)?.into_inner();
    while let Some(status) = stream.message().await.map_err(broken)? {
        *unreachable_since = None;
        progress.show(job_id, &status);
        if is_final(status.state()) {
            return Ok(status);
        }
    }
    Err(Broken::Retry(Error::Rpc { what, cause: "the driver closed the stream before the job ended".into() }))
}

/// Transport trouble and a driver going away are retried; refusals are not.
fn classify(what: &str, status: tonic::Status) -> Broken {
    use tonic::Code;
    let error = Error::Rpc { what: what.to_owned(), cause: status.message().to_owned() };
    match status.code() {
        Code::Unavailable
        | Code::Unknown
        | Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::Internal => Broken::Retry(error),
        _ => Broken::Fatal(error),
    }
}

/// Progress lines on stderr, at most one a second and only when they change.
struct Progress {
    show: bool,
    last: (String, Option<Instant>),
}

impl Progress {
    fn show(&mut self, job_id: &str, status: &JobStatus) {
        if !self.show {
            return;
        }
        let state = status.state();
        let line = format!(
            "{job_id} {}: map {}/{}, reduce {}/{}",
            state_name(state),
            status.maps_done,
            status.maps_total,
            status.reduces_done,
            status.reduces_total
        );
        let due = self.last.1.is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
        if line != self.last.0 && (due || is_final(state)) {
            eprintln!("{line}");
            self.last = (line, Some(Instant::now()));
        }
    }
}
