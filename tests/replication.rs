//! Replication with real processes on loopback: Keel clusters of three members under
//! concurrent writes, a leader killed with SIGKILL, a minority that cannot commit, and the
//! state every member ends with.
//!
//! Raft properties checked (Ongaro's thesis): a committed entry survives the loss of a
//! minority (3.6, leader completeness), and every member applies the same entries in the same
//! order (3.6.3, state machine safety), seen here as equal HashKV at equal revisions.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::ops::{
    agreed_leader, block_on, channel, converged, member_id, missing, writer, Acked,
    CONVERGE_TIMEOUT, STEP_TIMEOUT,
};
use common::{Cluster, Kind};
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::{PutRequest, RangeRequest};

#[test]
fn three_members_survive_a_killed_leader_and_agree() {
    let mut cluster = Cluster::start(Kind::Keel, 3, &[]);
    let endpoints: Vec<String> = cluster.members.iter().map(|m| m.endpoint.clone()).collect();
    block_on(async {
        let leader = agreed_leader(&endpoints, 0).await;
        let mut ids = Vec::new();
        for endpoint in &endpoints {
            ids.push(member_id(endpoint).await);
        }
        let leader_index = ids
            .iter()
            .position(|id| *id == leader)
            .expect("the leader is a member");

        let acked: Acked = Default::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let last_ack = Arc::new(Mutex::new(Instant::now()));
        let writers: Vec<_> = (0..4)
            .map(|id| {
                tokio::spawn(writer(
                    id,
                    endpoints.clone(),
                    acked.clone(),
                    stop.clone(),
                    last_ack.clone(),
                ))
            })
            .collect();
        // Writes flow through every member for a while.
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        while acked.lock().unwrap().len() < 200 {
            assert!(Instant::now() < deadline, "the cluster took no writes");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // SIGKILL the leader under load.
        cluster.kill(leader_index);
        let killed_at = Instant::now();
        let before = acked.lock().unwrap().len();
        let others: Vec<String> = endpoints
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != leader_index)
            .map(|(_, e)| e.clone())
            .collect();
        let new_leader = agreed_leader(&others, leader).await;
        assert_ne!(new_leader, leader, "the killed member cannot lead");
        // Writes resume on the survivors.
        while acked.lock().unwrap().len() < before + 200 {
            assert!(
                killed_at.elapsed() < CONVERGE_TIMEOUT,
                "no writes were acknowledged after the leader died; logs:\n{}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!(
            "writes resumed {:?} after the leader was killed",
            last_ack.lock().unwrap().duration_since(killed_at)
        );

        // The old leader rejoins under load and catches up.
        cluster.restart(leader_index);
        cluster.wait_healthy(leader_index);
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, std::sync::atomic::Ordering::Release);
        for writer in writers {
            writer.await.expect("writer task");
        }

        let revision = converged(&endpoints).await;
        let acked = acked.lock().unwrap().clone();
        assert!(revision as usize > acked.len(), "revision {revision}");
        for endpoint in &endpoints {
            let lost = missing(endpoint, &acked).await;
            assert!(
                lost.is_empty(),
                "{endpoint} lost {} acknowledged writes, e.g. {:?}",
                lost.len(),
                lost.first()
            );
        }
    });
}

/// Sends SIGSTOP or SIGCONT to member `index`'s process.
fn signal(cluster: &Cluster, index: usize, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(cluster.pid(index).to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal}");
}

#[test]
fn a_member_cut_off_from_the_majority_cannot_commit() {
    let cluster = Cluster::start(Kind::Keel, 3, &[]);
    let endpoints: Vec<String> = cluster.members.iter().map(|m| m.endpoint.clone()).collect();
    block_on(async {
        agreed_leader(&endpoints, 0).await;
        // Freeze two members: the third is a minority of one, whatever it was.
        signal(&cluster, 1, "STOP");
        signal(&cluster, 2, "STOP");
        let mut kv = KvClient::new(channel(&endpoints[0]));
        let put = kv
            .put(PutRequest {
                key: b"minority".to_vec(),
                value: b"never acknowledged".to_vec(),
                ..Default::default()
            })
            .await;
        let status = put.expect_err("a minority committed a write");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(
            status.message() == "etcdserver: request timed out"
                || status.message() == "etcdserver: no leader",
            "{status:?}"
        );
        // With check-quorum the cut-off member stops believing in a leader within an election
        // timeout; then a request that requires a leader (clientv3's WithRequireLeader, as
        // etcdctl's watch sends) fails with etcd's error.
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let mut request = tonic::Request::new(RangeRequest {
                key: b"minority".to_vec(),
                serializable: true,
                ..Default::default()
            });
            request
                .metadata_mut()
                .insert("hasleader", "true".parse().expect("metadata value"));
            match kv.range(request).await {
                Err(status) if status.message() == "etcdserver: no leader" => {
                    assert_eq!(status.code(), tonic::Code::Unavailable);
                    break;
                }
                other => assert!(
                    Instant::now() < deadline,
                    "the cut-off member still serves leader-requiring requests: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Heal: the majority comes back and the three agree again.
        signal(&cluster, 1, "CONT");
        signal(&cluster, 2, "CONT");
        agreed_leader(&endpoints, 0).await;
        let mut kv = KvClient::new(channel(&endpoints[1]));
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let put = kv
                .put(PutRequest {
                    key: b"healed".to_vec(),
                    value: b"yes".to_vec(),
                    ..Default::default()
                })
                .await;
            if put.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "no write after healing: {put:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        converged(&endpoints).await;
    });
}

#[test]
fn leases_kept_alive_through_a_follower_live_on_and_expire_on_the_leader() {
    use keel_proto::etcdserverpb::lease_client::LeaseClient;
    use keel_proto::etcdserverpb::{
        LeaseGrantRequest, LeaseKeepAliveRequest, LeaseTimeToLiveRequest,
    };

    let cluster = Cluster::start(Kind::Keel, 3, &[]);
    let endpoints: Vec<String> = cluster.members.iter().map(|m| m.endpoint.clone()).collect();
    block_on(async {
        let leader = agreed_leader(&endpoints, 0).await;
        let mut follower = None;
        for endpoint in &endpoints {
            if member_id(endpoint).await != leader {
                follower = Some(endpoint.clone());
                break;
            }
        }
        let follower = follower.expect("a follower");
        let mut lease = LeaseClient::new(channel(&follower));
        let granted = lease
            .lease_grant(LeaseGrantRequest { ttl: 3, id: 0 })
            .await
            .expect("grant through a follower")
            .into_inner();
        let mut kv = KvClient::new(channel(&follower));
        kv.put(PutRequest {
            key: b"leased".to_vec(),
            value: b"v".to_vec(),
            lease: granted.id,
            ..Default::default()
        })
        .await
        .expect("put with the lease");
        // Keep the lease alive through the follower for twice its TTL: only the leader's clock
        // counts, so the keep-alives must reach it.
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let mut responses = lease
            .lease_keep_alive(rx)
            .await
            .expect("keep-alive stream")
            .into_inner();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(6) {
            tx.unbounded_send(LeaseKeepAliveRequest { id: granted.id })
                .expect("send keep-alive");
            let response = tokio::time::timeout(STEP_TIMEOUT, responses.message())
                .await
                .expect("keep-alive answer in time")
                .expect("keep-alive answer")
                .expect("stream open");
            assert_eq!(response.ttl, 3, "{response:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let ttl = lease
            .lease_time_to_live(LeaseTimeToLiveRequest {
                id: granted.id,
                keys: true,
            })
            .await
            .expect("time to live through a follower")
            .into_inner();
        assert!(ttl.ttl >= 1 && ttl.ttl <= 3, "{ttl:?}");
        assert_eq!(ttl.keys, vec![b"leased".to_vec()]);
        // Stop: the leader expires the lease and every member deletes the key.
        drop(tx);
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        'members: for endpoint in &endpoints {
            let mut kv = KvClient::new(channel(endpoint));
            loop {
                let range = kv
                    .range(RangeRequest {
                        key: b"leased".to_vec(),
                        serializable: true,
                        ..Default::default()
                    })
                    .await
                    .expect("range")
                    .into_inner();
                if range.count == 0 {
                    continue 'members;
                }
                assert!(
                    Instant::now() < deadline,
                    "the lease never expired on {endpoint}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
}

/// Starts three Keel members with `--snapshot-count` `snapshot_count` and a catch-up window of
/// 10 entries, stops the third, lets `write` write through the first (it returns what was
/// acknowledged), restarts the third and checks that it holds every acknowledged key and that
/// it caught up from a snapshot. Returns the cluster for further checks.
fn caught_up_by_snapshot<F, Fut>(snapshot_count: u64, write: F) -> Cluster
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = BTreeMap<String, String>>,
{
    let snapshot_count = format!("--snapshot-count={snapshot_count}");
    let mut cluster = Cluster::start(
        Kind::Keel,
        3,
        &[
            &snapshot_count,
            "--experimental-snapshot-catchup-entries=10",
        ],
    );
    let endpoints: Vec<String> = cluster.members.iter().map(|m| m.endpoint.clone()).collect();
    block_on(async {
        agreed_leader(&endpoints, 0).await;
        cluster.kill(2);
        let acked = write(endpoints[0].clone()).await;
        cluster.restart(2);
        cluster.wait_healthy(2);
        converged(&endpoints).await;
        let lost = missing(&endpoints[2], &acked).await;
        assert!(
            lost.is_empty(),
            "the restarted member lacks {} keys, first {:?}",
            lost.len(),
            lost.first()
        );
    });
    assert!(
        cluster.members[2]
            .log()
            .contains("installed a snapshot from the leader"),
        "the member caught up without a snapshot; logs:\n{}",
        cluster.logs()
    );
    cluster
}

#[test]
fn a_member_behind_the_kept_log_is_caught_up_by_snapshot() {
    // Checkpoints every 100 entries keeping only 10 behind them: a member that misses a few
    // hundred writes can only catch up from a checkpoint streamed by the leader.
    let cluster = caught_up_by_snapshot(100, |endpoint| async move {
        let mut acked = BTreeMap::new();
        let mut kv = KvClient::new(channel(&endpoint));
        let mut n = 0;
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        while acked.len() < 600 {
            assert!(
                Instant::now() < deadline,
                "the two members took too few writes"
            );
            let key = format!("w/{n:05}");
            let put = kv
                .put(PutRequest {
                    key: key.clone().into_bytes(),
                    value: vec![b'x'; 100],
                    ..Default::default()
                })
                .await;
            if put.is_ok() {
                acked.insert(key, "x".repeat(100));
            }
            n += 1;
        }
        acked
    });
    // etcd's snapshot receive metrics on the member that caught up, and the round trips
    // measured to each peer.
    let endpoint = &cluster.members[2].endpoint;
    let (status, text) = common::http_get(endpoint, "/metrics").expect("metrics");
    assert_eq!(status, 200);
    let received = metric_values(&text, "etcd_network_snapshot_receive_success{From=");
    assert!(received.iter().sum::<f64>() >= 1.0, "metrics:\n{text}");
    let seconds = metric_values(
        &text,
        "etcd_network_snapshot_receive_total_duration_seconds{From=",
    );
    assert!(seconds.iter().sum::<f64>() > 0.0, "metrics:\n{text}");
    let round_trips = metric_values(&text, "etcd_network_peer_round_trip_time_seconds_count{To=");
    assert_eq!(round_trips.len(), 2, "metrics:\n{text}");
    assert!(
        round_trips.iter().all(|count| *count >= 1.0),
        "metrics:\n{text}"
    );
}

#[test]
fn a_member_behind_the_trimmed_log_is_caught_up_by_a_new_checkpoint() {
    // No checkpoint falls due by count: only the log's own trimming of applied entries (more
    // than 32 Ki beyond a catch-up window of 10) drops the entries a stopped member misses, so
    // it can catch up only from a checkpoint taken for it, newer than the dropped entries.
    const WRITES: usize = 40_000;
    const WRITERS: usize = 50;
    caught_up_by_snapshot(10_000_000, |endpoint| async move {
        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let endpoint = endpoint.clone();
            tasks.push(tokio::spawn(async move {
                let mut kv = KvClient::new(channel(&endpoint));
                let deadline = Instant::now() + CONVERGE_TIMEOUT;
                for n in (writer..WRITES).step_by(WRITERS) {
                    let request = PutRequest {
                        key: format!("w/{n:05}").into_bytes(),
                        value: b"x".to_vec(),
                        ..Default::default()
                    };
                    while kv.put(request.clone()).await.is_err() {
                        assert!(Instant::now() < deadline, "put {n} kept failing");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }));
        }
        for task in tasks {
            task.await.expect("writer");
        }
        (0..WRITES)
            .map(|n| (format!("w/{n:05}"), "x".to_string()))
            .collect()
    });
}

/// The values of the metric samples whose line starts with `prefix`.
fn metric_values(text: &str, prefix: &str) -> Vec<f64> {
    text.lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect()
}
