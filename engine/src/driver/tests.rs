//! The driver's gRPC service in-process, secured with certificates made for the test:
//! who may attach, submit, cancel and report, and the refusals of everyone else.

use std::path::Path;
use std::time::Duration;

use gristmill_proto::PROTOCOL_VERSION;
use gristmill_proto::v1::driver_client::DriverClient;
use gristmill_proto::v1::{
    AttemptKey, BinaryChunk, DriverMessage, JobRef, ListJobsRequest, MapDone, MapTaskSpec, Register,
    SubmitJobRequest, TaskKind, TaskReport, WorkerMessage, driver_message, task_report, worker_message,
};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::cluster::rpc::{DriverEndpoint, connect_driver};
use crate::driver::{DEFAULT_MAX_WORKER_SLOTS, DriverConfig, serve};
use crate::scheduler::SchedulerConfig;
use crate::security::certs::{self, CertsDir, Validity};
use crate::security::{ClientTls, ServerSecurity};

struct TestDriver {
    url: String,
    certs: Option<CertsDir>,
    _dir: tempfile::TempDir,
}

impl TestDriver {
    async fn start(secured: bool) -> TestDriver {
        let dir = tempfile::tempdir().unwrap();
        let certs = secured.then(|| {
            let certs = CertsDir::new(dir.path().join("certs"));
            certs::create_ca(&certs, false).unwrap();
            certs::create_node(&certs, &["127.0.0.1".into()], false).unwrap();
            for user in ["alice", "bob", "admin"] {
                certs::create_client(&certs, user, false).unwrap();
            }
            certs
        });
        let config = DriverConfig {
            listen: "127.0.0.1:0".into(),
            http: None,
            data_dir: dir.path().join("driver"),
            heartbeat_interval: Duration::from_millis(100),
            scheduler: SchedulerConfig::default(),
            security: ServerSecurity { certs_dir: certs.clone(), ..ServerSecurity::default() },
            max_worker_slots: DEFAULT_MAX_WORKER_SLOTS,
            binaries: crate::driver::BinaryLimits::default(),
            history: crate::driver::HistoryLimits::default(),
            distribution: Default::default(),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(serve(config, move |addrs| {
            let _ = tx.send(addrs.grpc);
        }));
        let addr = rx.await.expect("the driver starts");
        let scheme = if secured { "https" } else { "http" };
        TestDriver { url: format!("{scheme}://{addr}"), certs, _dir: dir }
    }

    async fn client(&self, tls: Option<ClientTls>) -> crate::Result<DriverClient<Channel>> {
        connect_driver(&DriverEndpoint::new(&self.url, tls)?).await
    }

    async fn user(&self, user: &str) -> DriverClient<Channel> {
        self.client(Some(ClientTls::user(self.certs.as_ref().unwrap(), user).unwrap())).await.unwrap()
    }

    async fn node(&self) -> DriverClient<Channel> {
        self.client(Some(ClientTls::node(self.certs.as_ref().unwrap()).unwrap())).await.unwrap()
    }
}

fn register(version: u32, slots: u32) -> WorkerMessage {
    register_on(version, slots, "")
}

fn register_on(version: u32, slots: u32, host_id: &str) -> WorkerMessage {
    let register = Register {
        protocol_version: version,
        slots,
        shuffle_address: "127.0.0.1:1".into(),
        host_id: host_id.into(),
        ..Default::default()
    };
    WorkerMessage { body: Some(worker_message::Body::Register(register)) }
}

/// An attached worker: its upstream and the driver's messages.
struct FakeWorker {
    up: mpsc::Sender<WorkerMessage>,
    down: tonic::Streaming<DriverMessage>,
}

impl FakeWorker {
    async fn attach(client: &mut DriverClient<Channel>) -> FakeWorker {
        Self::attach_on(client, "").await
    }

    /// A worker of one slot on the host `host_id` (none: its map output is never read in place).
    async fn attach_on(client: &mut DriverClient<Channel>, host_id: &str) -> FakeWorker {
        let (up, rx) = mpsc::channel(16);
        up.send(register_on(PROTOCOL_VERSION, 1, host_id)).await.unwrap();
        let mut down = client.attach(ReceiverStream::new(rx)).await.unwrap().into_inner();
        let first = down.message().await.unwrap().expect("a Registered message");
        assert!(matches!(first.body, Some(driver_message::Body::Registered(_))));
        FakeWorker { up, down }
    }

    /// The next task the driver launches here, within a bound.
    async fn next_task(&mut self) -> Option<gristmill_proto::v1::RunTask> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while let Ok(Ok(Some(message))) = tokio::time::timeout_at(deadline, self.down.message()).await {
            if let Some(driver_message::Body::Run(run)) = message.body {
                return Some(run);
            }
        }
        None
    }

    async fn report_map_done(&self, attempt: AttemptKey) {
        let report = TaskReport {
            attempt: Some(attempt),
            result: Some(task_report::Result::MapDone(MapDone { output_bytes: 0 })),
            counters: Default::default(),
            bad_records: Vec::new(),
        };
        self.up.send(WorkerMessage { body: Some(worker_message::Body::Report(report)) }).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_s_settings_go_to_a_worker_with_its_first_attempt_only() {
    let driver = TestDriver::start(false).await;
    let mut client = driver.client(None).await.unwrap();
    let mut worker = FakeWorker::attach(&mut client).await;
    let out = tempfile::tempdir().unwrap();
    let mut request = submit_request(&mut client, &out.path().join("a").display().to_string()).await;
    request.job_payload = br#"{"broadcasts":{"big":"0123456789"}}"#.to_vec();
    let second_split = MapTaskSpec { description: "a.txt:1+1".into(), split_payload: br#"{"m":1}"#.to_vec() };
    request.map_tasks.push(second_split);
    client.submit_job(request.clone()).await.unwrap();

    let first = worker.next_task().await.expect("the first map");
    assert_eq!(first.job_payload, request.job_payload, "the first attempt carries the settings");
    worker.report_map_done(first.attempt.unwrap()).await;
    let second = worker.next_task().await.expect("the second map");
    assert!(second.job_payload.is_empty(), "the worker has them: none with the second attempt");
    let index = second.attempt.as_ref().unwrap().index as usize;
    assert_eq!(second.split_payload, request.map_tasks[index].split_payload, "its own split still comes");

    // A worker that attaches anew (a new session) gets them again.
    drop(worker);
    let mut again = FakeWorker::attach(&mut client).await;
    let run = again.next_task().await.expect("the second map, run again");
    assert_eq!(run.job_payload, request.job_payload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_output_stays_uncompressed_only_while_every_worker_shares_the_host() {
    let driver = TestDriver::start(false).await;
    let mut client = driver.client(None).await.unwrap();
    let mut here = FakeWorker::attach_on(&mut client, "host-a").await;
    let out = tempfile::tempdir().unwrap();
    let mut request = submit_request(&mut client, &out.path().join("a").display().to_string()).await;
    for i in 1..3 {
        let split = MapTaskSpec { description: format!("a.txt:{i}+1"), split_payload: b"{}".to_vec() };
        request.map_tasks.push(split);
    }
    client.submit_job(request).await.unwrap();
    let first = here.next_task().await.expect("the first map");
    assert!(first.map_output_stays_on_host, "every worker (one) is on host-a");

    // A worker on another host: map output written from now on may cross hosts.
    let mut elsewhere = FakeWorker::attach_on(&mut client, "host-b").await;
    let second = elsewhere.next_task().await.expect("the second map, on the idle worker");
    assert!(!second.map_output_stays_on_host);
    here.report_map_done(first.attempt.unwrap()).await;
    let third = here.next_task().await.expect("the third map");
    assert!(!third.map_output_stays_on_host, "host-b's reducer would fetch it");
}

/// Uploads a small stand-in binary and submits a one-map job writing under `output`.
async fn submit(client: &mut DriverClient<Channel>, output: &Path) -> String {
    try_submit(client, &output.display().to_string()).await.unwrap()
}

/// [`submit`] to `output` as written, the driver's refusal returned.
async fn try_submit(client: &mut DriverClient<Channel>, output: &str) -> Result<String, tonic::Status> {
    let request = submit_request(client, output).await;
    Ok(client.submit_job(request).await?.into_inner().job_id)
}

/// Uploads a small stand-in binary; a request for a one-map job of it writing to `output`.
async fn submit_request(client: &mut DriverClient<Channel>, output: &str) -> SubmitJobRequest {
    let bytes = b"#!/bin/sh\nexit 0\n".to_vec();
    let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    let chunk =
        BinaryChunk { digest: digest.clone(), total_bytes: bytes.len() as u64, data: bytes, zstd: false };
    client.upload_binary(futures::stream::iter(vec![chunk])).await.unwrap();
    SubmitJobRequest {
        protocol_version: PROTOCOL_VERSION,
        name: "test".into(),
        binary_digest: digest,
        job_payload: b"{}".to_vec(),
        map_tasks: vec![MapTaskSpec { description: "a.txt:0+1".into(), split_payload: b"{}".to_vec() }],
        reducers: 1,
        output: output.to_owned(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_speaking_another_protocol_version_is_refused() {
    let driver = TestDriver::start(false).await;
    let mut client = driver.client(None).await.unwrap();
    let refused = client.attach(futures::stream::iter(vec![register(PROTOCOL_VERSION + 1, 1)])).await;
    let Err(status) = refused else { panic!("another version is refused") };
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(status.message().contains("protocol version"), "{}", status.message());
    FakeWorker::attach(&mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_follow_certificates_and_owners_cancel_their_own_jobs() {
    let driver = TestDriver::start(true).await;
    let out = tempfile::tempdir().unwrap();

    // A client certificate may not attach as a worker.
    let mut alice = driver.user("alice").await;
    let refused = alice.attach(futures::stream::iter(vec![register(PROTOCOL_VERSION, 1)])).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("user alice may not attach as a worker"), "{}", refused.message());

    // A node certificate may not submit or list jobs.
    let mut node = driver.node().await;
    let refused = node.list_jobs(ListJobsRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert!(refused.message().contains("needs a client certificate"), "{}", refused.message());

    // A worker may not advertise more than the cap.
    let refused =
        node.attach(futures::stream::iter(vec![register(PROTOCOL_VERSION, 100_000)])).await.unwrap_err();
    assert!(refused.message().contains("--max-worker-slots"), "{}", refused.message());

    // Jobs show their owner; only the owner or admin cancels.
    let job = submit(&mut alice, &out.path().join("a")).await;
    let listed = alice.list_jobs(ListJobsRequest {}).await.unwrap().into_inner().jobs;
    assert_eq!(listed[0].owner, "alice");
    let mut bob = driver.user("bob").await;
    let refused = bob.cancel_job(JobRef { job_id: job.clone() }).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert!(refused.message().contains("only its owner or admin"), "{}", refused.message());
    let status = alice.cancel_job(JobRef { job_id: job.clone() }).await.unwrap().into_inner();
    assert_eq!(status.state(), gristmill_proto::v1::JobState::Cancelled);
    let other = submit(&mut bob, &out.path().join("b")).await;
    let mut admin = driver.user("admin").await;
    let status = admin.cancel_job(JobRef { job_id: other }).await.unwrap().into_inner();
    assert_eq!(status.state(), gristmill_proto::v1::JobState::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_report_counts_only_from_the_worker_that_runs_the_attempt() {
    let driver = TestDriver::start(true).await;
    let out = tempfile::tempdir().unwrap();
    let mut node = driver.node().await;
    let mut first = FakeWorker::attach(&mut node).await;
    let mut second = FakeWorker::attach(&mut driver.node().await).await;
    let mut alice = driver.user("alice").await;
    let job = submit(&mut alice, &out.path().join("a")).await;

    // The one map task goes to one of the two workers; the other forges its report.
    let (runner, forger, run) = tokio::select! {
        Some(run) = first.next_task() => (first, second, run),
        Some(run) = second.next_task() => (second, first, run),
    };
    assert_eq!(run.job_secret.len(), 64, "tasks get their job's secret");
    let attempt = run.attempt.clone().unwrap();
    assert_eq!(attempt.kind, TaskKind::Map as i32);
    forger.report_map_done(attempt.clone()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = alice.get_job(JobRef { job_id: job.clone() }).await.unwrap().into_inner();
    assert_eq!(status.maps_done, 0, "the forged report is ignored");

    runner.report_map_done(attempt).await;
    let mut done = 0;
    for _ in 0..50 {
        done = alice.get_job(JobRef { job_id: job.clone() }).await.unwrap().into_inner().maps_done;
        if done == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(done, 1, "the runner's report counts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_without_a_valid_certificate_of_the_cluster_ca_are_refused() {
    let driver = TestDriver::start(true).await;
    let certs = driver.certs.clone().unwrap();

    // No certificate at all: a plain TLS client that trusts the CA.
    let ca = std::fs::read_to_string(certs.ca_cert()).unwrap();
    let tls =
        tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(ca));
    crate::security::install_crypto_provider();
    let channel =
        tonic::transport::Endpoint::from_shared(driver.url.clone()).unwrap().tls_config(tls).unwrap();
    let result = match channel.connect().await {
        Ok(channel) => DriverClient::new(channel).list_jobs(ListJobsRequest {}).await.map(|_| ()),
        Err(e) => Err(tonic::Status::unavailable(e.to_string())),
    };
    assert!(result.is_err(), "a client without a certificate is refused");

    // Plaintext to a secured driver.
    let plain = DriverEndpoint { url: driver.url.replace("https://", "http://"), tls: None };
    let refused = match connect_driver(&plain).await {
        Ok(mut client) => client.list_jobs(ListJobsRequest {}).await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "plaintext is refused");

    // A certificate of another CA.
    let foreign = tempfile::tempdir().unwrap();
    let foreign = CertsDir::new(foreign.path());
    certs::create_ca(&foreign, false).unwrap();
    certs::create_client(&foreign, "alice", false).unwrap();
    let mixed = mixed_tls(&certs, &foreign, "alice");
    assert_refused(&driver, mixed, "another CA").await;

    // An expired certificate of the right CA.
    let expired = Validity { from_days: -30, until_days: -1 };
    certs::create_client_valid(&certs, "old", expired, false).unwrap();
    assert_refused(&driver, ClientTls::user(&certs, "old").unwrap(), "expired").await;
}

/// Trusts `trusted`'s CA but presents `user`'s certificate of `presented`.
fn mixed_tls(trusted: &CertsDir, presented: &CertsDir, user: &str) -> ClientTls {
    let dir = tempfile::tempdir().unwrap().keep();
    let mixed = CertsDir::new(&dir);
    std::fs::copy(trusted.ca_cert(), mixed.ca_cert()).unwrap();
    std::fs::copy(presented.client_cert(user), mixed.client_cert(user)).unwrap();
    std::fs::copy(presented.client_key(user), mixed.client_key(user)).unwrap();
    ClientTls::user(&mixed, user).unwrap()
}

async fn assert_refused(driver: &TestDriver, tls: ClientTls, what: &str) {
    let outcome = match driver.client(Some(tls)).await {
        Ok(mut client) => client.list_jobs(ListJobsRequest {}).await.map(|_| ()).map_err(|s| s.to_string()),
        Err(e) => Err(e.to_string()),
    };
    assert!(outcome.is_err(), "a client with a certificate of {what} is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_refuses_to_replace_a_committed_output_without_overwrite() {
    let driver = TestDriver::start(false).await;
    let mut client = driver.client(None).await.unwrap();
    let out = tempfile::tempdir().unwrap();
    let committed = out.path().join("committed");
    std::fs::create_dir(&committed).unwrap();
    std::fs::write(committed.join(crate::output::SUCCESS_FILE), b"{}").unwrap();
    let bytes = b"#!/bin/sh\nexit 0\n".to_vec();
    let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    let chunk =
        BinaryChunk { digest: digest.clone(), total_bytes: bytes.len() as u64, data: bytes, zstd: false };
    client.upload_binary(futures::stream::iter(vec![chunk])).await.unwrap();
    let request = |overwrite| SubmitJobRequest {
        protocol_version: PROTOCOL_VERSION,
        name: "test".into(),
        binary_digest: digest.clone(),
        map_tasks: vec![MapTaskSpec { description: "a.txt:0+1".into(), split_payload: b"{}".to_vec() }],
        reducers: 1,
        output: committed.display().to_string(),
        overwrite,
        ..Default::default()
    };

    // As a client that skipped its own check would send it.
    let refused = client.submit_job(request(false)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::AlreadyExists, "{refused:?}");
    assert!(refused.message().contains(&committed.display().to_string()), "{}", refused.message());
    assert!(
        client.list_jobs(ListJobsRequest {}).await.unwrap().into_inner().jobs.is_empty(),
        "no job was created"
    );

    let job = client.submit_job(request(true)).await.unwrap().into_inner().job_id;
    assert!(!job.is_empty(), "with overwrite the job is accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_the_limit_is_refused_over_grpc_and_leaves_nothing() {
    let driver = TestDriver::start(false).await;
    let mut client = driver.client(None).await.unwrap();
    let store = driver._dir.path().join("driver").join("binaries");
    let digest = "ab".repeat(32);
    let announced = BinaryChunk {
        digest: digest.clone(),
        data: vec![0; 16],
        total_bytes: crate::driver::DEFAULT_MAX_BINARY_BYTES + 1,
        zstd: false,
    };
    let refused = client.upload_binary(futures::stream::iter(vec![announced])).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("limit of 1073741824 bytes"), "{}", refused.message());

    let wrong = BinaryChunk { digest, data: b"not it".to_vec(), total_bytes: 6, zstd: false };
    let refused = client.upload_binary(futures::stream::iter(vec![wrong])).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert_eq!(std::fs::read_dir(&store).unwrap().count(), 0, "nothing is left in {}", store.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_at_a_time_writes_an_output() {
    let driver = TestDriver::start(true).await;
    let out = tempfile::tempdir().unwrap();
    let (a, b) = (out.path().join("a"), out.path().join("b"));
    let mut alice = driver.user("alice").await;
    let mut bob = driver.user("bob").await;
    // No worker is attached: the job stays queued.
    let first = submit(&mut alice, &a).await;

    // However the output is spelled, and whoever submits.
    for (client, output) in [(&mut alice, a.display().to_string()), (&mut bob, format!("{}/", a.display()))] {
        let refused = try_submit(client, &output).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
        assert!(refused.message().contains(&format!("job {first},")), "{}", refused.message());
        assert!(!refused.message().contains('\n'), "one line: {}", refused.message());
    }
    let jobs = alice.list_jobs(ListJobsRequest {}).await.unwrap().into_inner().jobs;
    assert_eq!(jobs.len(), 1, "no job was created");

    let other = submit(&mut bob, &b).await;
    assert_ne!(other, first, "another output is accepted meanwhile");

    alice.cancel_job(JobRef { job_id: first.clone() }).await.unwrap();
    let again =
        try_submit(&mut alice, &format!("{}/", a.display())).await.expect("accepted once the first ended");
    let refused = try_submit(&mut bob, &a.display().to_string()).await.unwrap_err();
    assert!(refused.message().contains(&again), "the new job writes it now: {}", refused.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_submissions_to_one_output_one_is_accepted() {
    let driver = TestDriver::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").display().to_string();
    let mut client = driver.client(None).await.unwrap();
    try_submit(&mut client, &format!("{out}-warm-up")).await.unwrap();
    let submissions = (0..8).map(|_| {
        let (mut client, out) = (client.clone(), out.clone());
        tokio::spawn(async move { try_submit(&mut client, &out).await })
    });
    let results = futures::future::join_all(submissions).await;
    let accepted = results.into_iter().filter(|r| r.as_ref().unwrap().is_ok()).count();
    assert_eq!(accepted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_drivers_never_write_one_output_at_once() {
    let (first, second) = (TestDriver::start(false).await, TestDriver::start(false).await);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").display().to_string();
    let mut a = first.client(None).await.unwrap();
    let mut b = second.client(None).await.unwrap();
    let job = try_submit(&mut a, &out).await.unwrap();
    let lock = std::fs::read_to_string(dir.path().join("out").join(crate::output::LOCK_FILE)).unwrap();
    assert!(lock.contains(&job), "the lock names its job: {lock}");

    let refused = try_submit(&mut b, &out).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains(&format!("job {job} ")), "{}", refused.message());

    a.cancel_job(JobRef { job_id: job }).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let accepted = loop {
        match try_submit(&mut b, &out).await {
            Ok(job) => break job,
            Err(e) if tokio::time::Instant::now() < deadline => {
                assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the lock was never released: {e:?}"),
        }
    };
    let refused = try_submit(&mut a, &out).await.unwrap_err();
    assert!(
        refused.message().contains(&accepted),
        "the other driver's job holds it now: {}",
        refused.message()
    );
}
