//! Leadership transfer with real processes on loopback, Keel beside upstream etcd: etcdctl's
//! `move-leader`, MoveLeader's refusals (`not leader` from a follower, `bad leader transferee`
//! for an id that is no voter), and a leader that hands over before it stops on SIGTERM.

mod common;

use std::time::{Duration, Instant};

use common::ops::block_on;
use common::{error_lines, etcdctl, Cluster, Kind};
use keel_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_proto::etcdserverpb::{MoveLeaderRequest, StatusRequest};
use tonic::transport::Channel;

/// Every network step gives up after this long instead of hanging.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the members may take to agree on a leader (a liveness bound).
const AGREE_TIMEOUT: Duration = Duration::from_secs(60);

fn client(endpoint: &str) -> MaintenanceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{endpoint}"))
        .expect("valid url")
        .connect_timeout(Duration::from_secs(2))
        .timeout(STEP_TIMEOUT)
        .connect_lazy();
    MaintenanceClient::new(channel)
}

/// (member id, leader id, raft term) as `endpoint` reports them.
async fn status(endpoint: &str) -> Option<(u64, u64, u64)> {
    let status = client(endpoint)
        .status(StatusRequest {})
        .await
        .ok()?
        .into_inner();
    let header = status.header?;
    Some((header.member_id, status.leader, status.raft_term))
}

/// Waits until every endpoint names the same leader (other than `not`): (index of the
/// leader's endpoint, every member id by endpoint, the term).
async fn agreed(endpoints: &[String], not: u64) -> (usize, Vec<u64>, u64) {
    let deadline = Instant::now() + AGREE_TIMEOUT;
    loop {
        let mut seen = Vec::new();
        for endpoint in endpoints {
            seen.push(status(endpoint).await);
        }
        if let Some(seen) = seen.into_iter().collect::<Option<Vec<_>>>() {
            let leader = seen[0].1;
            if leader != 0 && leader != not && seen.iter().all(|s| s.1 == leader) {
                let ids: Vec<u64> = seen.iter().map(|s| s.0).collect();
                if let Some(at) = ids.iter().position(|id| *id == leader) {
                    return (at, ids, seen[at].2);
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "the members did not agree on a leader"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A MoveLeader refusal as the client sees it: gRPC code and message.
async fn move_leader_error(endpoint: &str, target: u64) -> String {
    match client(endpoint)
        .move_leader(MoveLeaderRequest { target_id: target })
        .await
    {
        Ok(_) => "ok".to_string(),
        Err(status) => format!("{:?}: {}", status.code(), status.message()),
    }
}

/// One scripted session against a 3-member cluster of `kind`; what it printed, with member
/// ids replaced by their roles.
fn session(kind: Kind) -> Vec<String> {
    let cluster = Cluster::start(kind, 3, &[]);
    let endpoints: Vec<String> = cluster.members.iter().map(|m| m.endpoint.clone()).collect();
    block_on(async {
        let mut out = Vec::new();
        let (leader, ids, term) = agreed(&endpoints, 0).await;
        let follower = (leader + 1) % 3;
        let (leader_id, follower_id) = (ids[leader], ids[follower]);
        out.push(move_leader_error(&endpoints[follower], leader_id).await);
        out.push(move_leader_error(&endpoints[leader], 0xdead).await);
        out.push(move_leader_error(&endpoints[leader], leader_id).await);
        let moved = etcdctl(
            &cluster.endpoints(),
            &["move-leader", &format!("{follower_id:x}")],
            None,
        );
        assert!(moved.status.success(), "{}", error_lines(&moved));
        out.push(
            String::from_utf8_lossy(&moved.stdout)
                .replace(&format!("{leader_id:x}"), "<leader>")
                .replace(&format!("{follower_id:x}"), "<follower>"),
        );
        let (now, _, new_term) = agreed(&endpoints, leader_id).await;
        out.push(format!(
            "new leader is the transferee: {}, term advanced by {}",
            now == follower,
            new_term - term
        ));
        out
    })
}

/// etcd 3.4.23 and Keel answer the same session the same way (codes, texts, etcdctl output).
#[test]
fn move_leader_matches_etcd() {
    let etcd = session(Kind::Etcd);
    let keel = session(Kind::Keel);
    assert_eq!(keel, etcd);
    assert_eq!(etcd[0], "FailedPrecondition: etcdserver: not leader");
    assert_eq!(
        etcd[1],
        "FailedPrecondition: etcdserver: bad leader transferee"
    );
}

/// SIGTERM on the leader: it hands leadership over before it exits (as etcd does), so the two
/// others have a leader in the next term without waiting out an election timeout, and the
/// member says so in its log.
#[test]
fn a_leader_stopped_with_sigterm_hands_over_first() {
    let mut cluster = Cluster::start(Kind::Keel, 3, &[]);
    let endpoints: Vec<String> = cluster.members.iter().map(|m| m.endpoint.clone()).collect();
    let leader = block_on(async {
        let (leader, ids, term) = agreed(&endpoints, 0).await;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &cluster.pid(leader).to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + AGREE_TIMEOUT;
        while cluster.members[leader].is_running() {
            assert!(Instant::now() < deadline, "the leader did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let others: Vec<String> = (0..3)
            .filter(|i| *i != leader)
            .map(|i| endpoints[i].clone())
            .collect();
        let (_, _, new_term) = agreed(&others, ids[leader]).await;
        assert_eq!(new_term, term + 1, "{}", cluster.logs());
        leader
    });
    assert!(
        cluster.members[leader]
            .log()
            .contains("handed leadership over before stopping"),
        "{}",
        cluster.logs()
    );
}
