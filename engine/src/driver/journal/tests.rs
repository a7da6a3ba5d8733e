use std::collections::HashMap;
use std::io::Write;

use gristmill_proto::v1::SubmitJobRequest;

use super::*;

const SECRET: &str = "AKIA-very-secret-key-7f3a";
const JOB_SECRET: &str = "job-secret-0f9e8d7c6b5a";

fn job_secret() -> JobSecret {
    JobSecret::from_string(JOB_SECRET.into())
}

fn request() -> SubmitJobRequest {
    SubmitJobRequest {
        name: "wordcount".into(),
        output: "s3://bucket/out".into(),
        storage_options: HashMap::from([("aws_secret_access_key".to_owned(), SECRET.to_owned())]),
        job_payload: format!(r#"{{"storage_options":{{"aws_secret_access_key":"{SECRET}"}}}}"#).into_bytes(),
        reducers: 3,
        ..Default::default()
    }
}

fn ended(id: &str) -> Record {
    Record::JobEnded(EndedJob {
        id: id.into(),
        state: EndState::Failed,
        message: "map task 1 failed".into(),
        rows: 0,
        files: 0,
        counters: Default::default(),
        ended_at_ms: 7,
    })
}

fn journal_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join(JOURNAL_FILE)).unwrap()
}

fn map_done(task: u32) -> Record {
    Record::MapDone(MapDone {
        job: "job-1".into(),
        map_task: task,
        attempt: 4,
        worker: "127.0.0.1:7001".into(),
        counters: [("map_input_records".to_owned(), 12)].into(),
        sealed_bad_records: String::new(),
    })
}

/// Writes three records, returns them.
fn three_records(dir: &Path) -> Vec<Record> {
    let (journal, replayed) = Journal::open(dir).unwrap();
    assert!(replayed.is_empty());
    let id = JobId::from_string("job-1".into());
    let submitted = journal.submitted(&id, "alice", &request(), &job_secret()).unwrap();
    let records = vec![Record::Epoch { n: 1 }, submitted, ended("job-1")];
    for record in &records {
        journal.append(record).unwrap();
    }
    records
}

#[test]
fn records_round_trip_and_requests_unseal() {
    let dir = tempfile::tempdir().unwrap();
    let written = three_records(dir.path());
    let (journal, replayed) = Journal::open(dir.path()).unwrap();
    assert_eq!(replayed, written);
    let Record::JobSubmitted(job) = &replayed[1] else { panic!("{replayed:?}") };
    assert_eq!(journal.request(job).unwrap(), request());
    assert_eq!(journal.secret(job).unwrap().unwrap().expose(), JOB_SECRET);
    journal.append_lazily(&map_done(3)).unwrap();
    let (_, replayed) = Journal::open(dir.path()).unwrap();
    assert_eq!(replayed.last(), Some(&map_done(3)));
}

#[test]
fn a_record_of_an_older_driver_has_no_secret_and_a_swapped_seal_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(dir.path()).unwrap();
    let id = JobId::from_string("job-1".into());
    let Record::JobSubmitted(mut job) = journal.submitted(&id, "alice", &request(), &job_secret()).unwrap()
    else {
        panic!("not a submission")
    };
    let older = SubmittedJob { sealed_secret: String::new(), ..job.clone() };
    assert!(journal.secret(&older).unwrap().is_none());
    // The sealed request in the secret's place: sealed to another context, refused.
    job.sealed_secret = job.sealed_request.clone();
    assert!(matches!(journal.secret(&job), Err(JournalError::Key { .. })));
}

#[test]
fn a_torn_tail_is_cut_off_and_appends_follow_the_good_records() {
    let dir = tempfile::tempdir().unwrap();
    let written = three_records(dir.path());
    let good = journal_bytes(dir.path()).len();
    let mut file = OpenOptions::new().append(true).open(dir.path().join(JOURNAL_FILE)).unwrap();
    file.write_all(&[200, 0, 0, 0, 1, 2]).unwrap(); // a header torn mid-write
    drop(file);
    let (journal, replayed) = Journal::open(dir.path()).unwrap();
    assert_eq!(replayed, written);
    assert_eq!(journal_bytes(dir.path()).len(), good, "the torn tail is truncated");
    journal.append(&Record::Epoch { n: 2 }).unwrap();
    let (_, replayed) = Journal::open(dir.path()).unwrap();
    assert_eq!(replayed.len(), 4);
    assert_eq!(replayed[3], Record::Epoch { n: 2 });
}

#[test]
fn a_bad_checksum_ends_the_log_there() {
    let dir = tempfile::tempdir().unwrap();
    let written = three_records(dir.path());
    let mut bytes = journal_bytes(dir.path());
    let last = bytes.len() - 3;
    bytes[last] ^= 0x55; // a flipped byte in the last record's body
    std::fs::write(dir.path().join(JOURNAL_FILE), &bytes).unwrap();
    let (_, replayed) = Journal::open(dir.path()).unwrap();
    assert_eq!(replayed, written[..2]);
}

#[test]
fn a_short_body_ends_the_log_there() {
    let dir = tempfile::tempdir().unwrap();
    let written = three_records(dir.path());
    let bytes = journal_bytes(dir.path());
    std::fs::write(dir.path().join(JOURNAL_FILE), &bytes[..bytes.len() - 1]).unwrap();
    let (_, replayed) = Journal::open(dir.path()).unwrap();
    assert_eq!(replayed, written[..2]);
}

#[test]
fn secrets_are_not_in_the_file_and_need_the_key() {
    let dir = tempfile::tempdir().unwrap();
    three_records(dir.path());
    let bytes = journal_bytes(dir.path());
    let found = bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes());
    assert!(!found, "the storage options' secret is in the journal in plaintext");
    let found = bytes.windows(JOB_SECRET.len()).any(|w| w == JOB_SECRET.as_bytes());
    assert!(!found, "the job's secret is in the journal in plaintext");
    let key = dir.path().join(KEY_FILE);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    // Another key (a journal copied without its own) does not open the request.
    std::fs::remove_file(&key).unwrap();
    let (journal, replayed) = Journal::open(dir.path()).unwrap();
    let Record::JobSubmitted(job) = &replayed[1] else { panic!("{replayed:?}") };
    let refused = journal.request(job).unwrap_err();
    assert!(matches!(refused, JournalError::Key { .. }), "{refused}");
}

#[test]
fn bad_records_are_sealed_to_their_job() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(dir.path()).unwrap();
    let row = crate::input::BadRecord {
        file: "/in/a.csv".into(),
        line: Some(3),
        offset: 12,
        reason: "incorrect number of fields".into(),
        text: "a private row".into(),
    };
    let sealed = journal.seal_bad_records("job-1", std::slice::from_ref(&row)).unwrap();
    assert!(!sealed.is_empty() && !sealed.contains("private"));
    let done = MapDone {
        job: "job-1".into(),
        map_task: 0,
        attempt: 0,
        worker: "127.0.0.1:7001".into(),
        counters: Default::default(),
        sealed_bad_records: sealed,
    };
    assert_eq!(journal.bad_records(&done).unwrap(), [row]);
    assert!(journal.bad_records(&MapDone { job: "job-2".into(), ..done }).is_err(), "sealed to its job");
    assert_eq!(journal.seal_bad_records("job-1", &[]).unwrap(), "", "none: nothing sealed");
}
