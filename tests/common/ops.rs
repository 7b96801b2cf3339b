//! Cluster operations over gRPC shared by the process tests: a writer that records what was
//! acknowledged, leader and convergence checks, and the reads that find lost writes.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_proto::etcdserverpb::{HashKvRequest, PutRequest, RangeRequest, StatusRequest};
use tonic::transport::Channel;

/// Every network step gives up after this long instead of hanging.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the cluster may take to agree again after a fault (a liveness bound, not a
/// performance figure: elections take about a second).
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `future` on a small tokio runtime.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(future)
}

/// How long one request of the side-by-side gRPC tests may take before the test fails (a
/// bound against hangs, not a performance figure).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Awaits `future`; the test fails, naming `what`, if it takes longer than [`REPLY_TIMEOUT`].
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(REPLY_TIMEOUT, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {REPLY_TIMEOUT:?}"))
}

/// A lazily connecting channel to `endpoint` with the step timeout.
pub fn channel(endpoint: &str) -> Channel {
    Channel::from_shared(format!("http://{endpoint}"))
        .expect("valid url")
        .connect_timeout(Duration::from_secs(2))
        .timeout(STEP_TIMEOUT)
        .connect_lazy()
}

/// The leader each member reports (0 when it knows none), or `None` when it does not answer.
pub async fn leader_of(endpoint: &str) -> Option<u64> {
    let mut client = MaintenanceClient::new(channel(endpoint));
    let status = tokio::time::timeout(STEP_TIMEOUT, client.status(StatusRequest {}))
        .await
        .ok()?
        .ok()?
        .into_inner();
    Some(status.leader)
}

/// Waits until every member in `endpoints` names the same leader, other than `not`; returns
/// its id.
pub async fn agreed_leader(endpoints: &[String], not: u64) -> u64 {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let mut leaders = Vec::new();
        for endpoint in endpoints {
            leaders.push(leader_of(endpoint).await);
        }
        if let Some(Some(first)) = leaders.first() {
            if *first != 0 && *first != not && leaders.iter().all(|l| *l == Some(*first)) {
                return *first;
            }
        }
        assert!(
            Instant::now() < deadline,
            "members did not agree on a leader: {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The member id behind each endpoint.
pub async fn member_id(endpoint: &str) -> u64 {
    let mut client = MaintenanceClient::new(channel(endpoint));
    client
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner()
        .header
        .expect("header")
        .member_id
}

/// Waits until every member reports the same revision and the same HashKV at it; returns
/// the revision.
pub async fn converged(endpoints: &[String]) -> i64 {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let mut seen = Vec::new();
        for endpoint in endpoints {
            let mut kv = KvClient::new(channel(endpoint));
            let range = kv
                .range(RangeRequest {
                    key: b"\0".to_vec(),
                    range_end: b"\0".to_vec(),
                    count_only: true,
                    serializable: true,
                    ..Default::default()
                })
                .await;
            let Ok(range) = range else {
                seen.push(None);
                continue;
            };
            let revision = range.into_inner().header.expect("header").revision;
            let mut maintenance = MaintenanceClient::new(channel(endpoint));
            let hash = maintenance.hash_kv(HashKvRequest { revision }).await;
            seen.push(hash.ok().map(|h| (revision, h.into_inner().hash)));
        }
        if let Some(Some(first)) = seen.first() {
            if seen.iter().all(|s| s.as_ref() == Some(first)) {
                return first.0;
            }
        }
        assert!(
            Instant::now() < deadline,
            "members did not converge to one revision and hash: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Acknowledged writes: key -> value. A write that failed or timed out may or may not have
/// applied; only acknowledged ones must survive.
pub type Acked = Arc<Mutex<BTreeMap<String, String>>>;

/// Puts keys round-robin over `endpoints` until `stop` is set; records what was acknowledged
/// and when the last acknowledgement happened.
pub async fn writer(
    id: usize,
    endpoints: Vec<String>,
    acked: Acked,
    stop: Arc<std::sync::atomic::AtomicBool>,
    last_ack: Arc<Mutex<Instant>>,
) {
    let clients: Vec<KvClient<Channel>> = endpoints
        .iter()
        .map(|e| KvClient::new(channel(e)))
        .collect();
    let mut n = 0usize;
    // Bounded in count as well as by the stop flag.
    while !stop.load(std::sync::atomic::Ordering::Acquire) && n < 100_000 {
        let key = format!("w{id}/{n:06}");
        let value = format!("v{n}");
        let mut client = clients[n % clients.len()].clone();
        let put = client.put(PutRequest {
            key: key.clone().into_bytes(),
            value: value.clone().into_bytes(),
            ..Default::default()
        });
        match tokio::time::timeout(STEP_TIMEOUT, put).await {
            Ok(Ok(_)) => {
                acked.lock().unwrap().insert(key, value);
                *last_ack.lock().unwrap() = Instant::now();
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
        n += 1;
    }
}

/// Reads every acknowledged key from `endpoint` (linearizably) and returns the ones missing or
/// different.
pub async fn missing(endpoint: &str, acked: &BTreeMap<String, String>) -> Vec<String> {
    let mut kv = KvClient::new(channel(endpoint));
    let range = kv
        .range(RangeRequest {
            key: b"w".to_vec(),
            range_end: b"x".to_vec(),
            ..Default::default()
        })
        .await
        .expect("range over every written key")
        .into_inner();
    let found: BTreeMap<String, String> = range
        .kvs
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        })
        .collect();
    acked
        .iter()
        .filter(|(k, v)| found.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect()
}
