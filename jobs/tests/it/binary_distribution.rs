//! Job binaries reaching the workers: stripped of debug info, compressed, fetched from
//! each other (the driver names the peer) or from an object store, verified by digest
//! wherever they come from. Fetches are counted on each worker's `/metrics`
//! (`gristmill_worker_binary_fetches_total{source}`), which is what these tests read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gristmill::security::certs::CertsDir;
use gristmill_proto::v1::BinaryRef;
use gristmill_proto::v1::binary_peer_client::BinaryPeerClient;

use super::cluster::local_vs_cluster;
use super::cluster_support::{Cluster, ClusterSpec, HttpAuth, free_address};
use super::metrics::{body_of, parse_metrics, sum};
use super::support::{bin, s, write_text_files};

/// Wordcount's flags over `files` text files, one map task per file at least.
fn wordcount_args(dir: &Path, files: usize) -> Vec<String> {
    let text = dir.join("text");
    if !text.exists() {
        write_text_files(&text, files, 400);
    }
    ["--input", s(&text), "--reducers", "2", "--split-size", "4000", "--threads", "1"]
        .map(String::from)
        .to_vec()
}

fn run_and_compare(cluster: &Cluster, dir: &Path, files: usize) {
    let args = wordcount_args(dir, files);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    local_vs_cluster(cluster, dir, "wordcount", &args);
}

/// `(source, fetches)` and `(source, failures)` of job binaries, summed per source over
/// the workers `workers` (indexes).
fn fetch_counts(cluster: &Cluster, scratch: &Path, workers: &[usize], metric: &str, source: &str) -> f64 {
    workers
        .iter()
        .map(|&i| {
            let text = cluster.http_get_at(&cluster.worker_http[i], "/metrics", HttpAuth::Certificate);
            let samples = parse_metrics(scratch, body_of(&text));
            sum(&samples, metric, &[&format!("source=\"{source}\"")])
        })
        .sum()
}

const FETCHES: &str = "gristmill_worker_binary_fetches_total";
const FAILURES: &str = "gristmill_worker_binary_fetch_failures_total";

/// The binaries (64 hex digits) in worker `i`'s cache.
fn cached_binaries(cluster: &Cluster, i: usize) -> Vec<PathBuf> {
    let dir = cluster.dir().join(format!("worker-{i}")).join("binaries");
    let Ok(listing) = std::fs::read_dir(dir) else { return Vec::new() };
    listing
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().len() == 64)
        .collect()
}

fn peer_cluster(workers: usize, fanout: &str) -> Cluster {
    let driver_args = ["--heartbeat-timeout", "5", "--no-speculation", "--binary-peer-fanout", fanout]
        .map(String::from)
        .to_vec();
    Cluster::start(ClusterSpec {
        workers,
        slots: 1,
        driver_args,
        worker_http: true,
        ..ClusterSpec::default()
    })
}

#[test]
fn workers_fetch_the_stripped_binary_from_each_other() {
    // One fetch per source at a time: the second and third workers are sent to peers.
    let cluster = peer_cluster(3, "1");
    let dir = tempfile::tempdir().unwrap();
    run_and_compare(&cluster, dir.path(), 6);

    let all = [0, 1, 2];
    let from_peers = fetch_counts(&cluster, dir.path(), &all, FETCHES, "peer");
    let from_driver = fetch_counts(&cluster, dir.path(), &all, FETCHES, "driver");
    assert!(from_peers >= 1.0, "a worker fetched from a peer ({from_driver} from the driver)");
    assert_eq!(from_driver + from_peers, 3.0, "each worker fetched the binary once");
    assert_eq!(fetch_counts(&cluster, dir.path(), &all, FAILURES, "peer"), 0.0);

    // What they run is the job binary without its debug info, under its own digest.
    let submitted = std::fs::metadata(bin("wordcount")).unwrap().len();
    for i in all {
        let cached = cached_binaries(&cluster, i);
        assert_eq!(cached.len(), 1, "worker {i}: {cached:?}");
        let shipped = std::fs::read(&cached[0]).unwrap();
        assert!((shipped.len() as u64) < submitted, "stripped: {} of {submitted} bytes", shipped.len());
        let digest = gristmill::cluster::binary::bytes_digest(&shipped);
        assert_eq!(cached[0].file_name().unwrap().to_str().unwrap(), digest);
    }
}

#[test]
fn a_peer_serving_a_truncated_binary_is_passed_over_for_the_driver() {
    let mut cluster = peer_cluster(1, "4");
    let dir = tempfile::tempdir().unwrap();
    run_and_compare(&cluster, dir.path(), 6);
    // Worker 0 holds the binary; the compressed copy it serves loses its second half.
    let cached = cached_binaries(&cluster, 0);
    let compressed = cached[0].with_extension("zst");
    let bytes = std::fs::read(&compressed).unwrap();
    std::fs::write(&compressed, &bytes[..bytes.len() / 2]).unwrap();

    for _ in 0..2 {
        cluster.worker_http.push(free_address());
        cluster.add_worker(1);
    }
    cluster.wait_for_workers(3);
    let again = dir.path().join("again");
    std::fs::create_dir(&again).unwrap();
    std::fs::rename(dir.path().join("text"), again.join("text")).unwrap();
    run_and_compare(&cluster, &again, 6);

    let new = [1, 2];
    let failed = fetch_counts(&cluster, dir.path(), &new, FAILURES, "peer");
    assert!(failed >= 1.0, "the new workers were sent to worker 0 and refused its bytes");
    // Each then fetched it elsewhere (the driver, or the other new worker), verified.
    let fetched = fetch_counts(&cluster, dir.path(), &new, FETCHES, "driver")
        + fetch_counts(&cluster, dir.path(), &new, FETCHES, "peer");
    let cached: Vec<PathBuf> = new.iter().flat_map(|&i| cached_binaries(&cluster, i)).collect();
    assert_eq!(fetched, cached.len() as f64, "one good fetch per worker that got a task: {cached:?}");
    for path in cached {
        let digest = gristmill::cluster::binary::bytes_digest(&std::fs::read(&path).unwrap());
        assert_eq!(path.file_name().unwrap().to_str().unwrap(), digest, "no bad copy was kept");
    }
}

#[test]
fn workers_fetch_the_binary_from_the_binary_store() {
    let bucket = super::s3::create_bucket("binaries");
    let store = format!("s3://{bucket}/jobs");
    let driver_args = ["--heartbeat-timeout", "5", "--binary-store", &store].map(String::from).to_vec();
    let spec = ClusterSpec {
        workers: 2,
        slots: 1,
        driver_args,
        env: super::s3::s3_env(),
        worker_http: true,
        ..ClusterSpec::default()
    };
    let cluster = Cluster::start(spec);
    let dir = tempfile::tempdir().unwrap();
    run_and_compare(&cluster, dir.path(), 4);

    assert!(fetch_counts(&cluster, dir.path(), &[0, 1], FETCHES, "store") >= 1.0);
    assert_eq!(fetch_counts(&cluster, dir.path(), &[0, 1], FETCHES, "driver"), 0.0);
    assert_eq!(fetch_counts(&cluster, dir.path(), &[0, 1], FETCHES, "peer"), 0.0);
    let listed = super::s3::boto(
        "print(json.dumps([o['Key'] for o in s3.list_objects_v2(Bucket=sys.argv[1]).get('Contents', [])]))",
        &[&bucket],
    );
    let keys: Vec<String> = serde_json::from_str(listed.trim()).unwrap();
    let cached = cached_binaries(&cluster, 0);
    let digest = cached[0].file_name().unwrap().to_str().unwrap();
    assert_eq!(keys, vec![format!("jobs/{digest}.zst")], "put there once, under the shipped digest");
}

/// The answer of worker `worker`'s `BinaryPeer` service to a fetch of `digest` with `tls`.
fn fetch_from_worker(
    address: &str,
    tls: tonic::transport::ClientTlsConfig,
    digest: &str,
) -> Result<u64, String> {
    gristmill::security::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("https://{address}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .tls_config(tls)
            .map_err(|e| e.to_string())?;
        let channel = endpoint.connect().await.map_err(|e| format!("connect: {e}"))?;
        let mut client = BinaryPeerClient::new(channel);
        let mut stream = client
            .fetch_binary(BinaryRef { digest: digest.to_owned() })
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
            .into_inner();
        let mut bytes = 0;
        while let Some(chunk) =
            stream.message().await.map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        {
            bytes += chunk.data.len() as u64;
        }
        Ok(bytes)
    })
}

#[test]
fn a_worker_serves_binaries_to_node_certificates_only() {
    let cluster = peer_cluster(1, "4");
    let dir = tempfile::tempdir().unwrap();
    run_and_compare(&cluster, dir.path(), 2);
    let cached = cached_binaries(&cluster, 0);
    let digest = cached[0].file_name().unwrap().to_str().unwrap().to_owned();
    let address = cluster.worker_address(0);
    let certs = CertsDir::new(cluster.certs.as_ref().unwrap());
    let tls = |user: Option<&str>| {
        let tls = match user {
            Some(user) => gristmill::security::ClientTls::user(&certs, user).unwrap(),
            None => gristmill::security::ClientTls::node(&certs).unwrap(),
        };
        tls.tonic()
    };

    let served = fetch_from_worker(&address, tls(None), &digest).unwrap();
    assert!(served > 0, "a node certificate is served");

    let as_user =
        fetch_from_worker(&address, tls(Some(super::cluster_support::TEST_USER)), &digest).unwrap_err();
    assert!(as_user.starts_with("PermissionDenied"), "a client certificate is refused: {as_user}");

    let ca = std::fs::read_to_string(certs.ca_cert()).unwrap();
    let anonymous =
        tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(ca));
    let refused = fetch_from_worker(&address, anonymous, &digest);
    assert!(refused.is_err(), "no certificate, no binary: {refused:?}");
}
