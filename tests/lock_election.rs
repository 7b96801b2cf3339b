//! The Lock and Election services over gRPC, the same scenario against upstream etcd and
//! against Keel: mutual exclusion, release by unlock and by lease revocation, a waiter whose
//! session expired, campaigns queued behind a leader, Proclaim/Resign/Leader with etcd's
//! errors, and Observe following the leader. Each step's outcome (response fields without
//! the ids that differ between servers, or the error's code and text) must be the same on
//! both, revisions included.

mod common;

use std::time::Duration;

use common::ops::{block_on, channel};
use common::{Kind, Server};
use futures::FutureExt;
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::lease_client::LeaseClient;
use keel_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest, ResponseHeader,
};
use keel_proto::v3electionpb::election_client::ElectionClient;
use keel_proto::v3electionpb::{
    CampaignRequest, LeaderKey, LeaderRequest, ProclaimRequest, ResignRequest,
};
use keel_proto::v3lockpb::lock_client::LockClient;
use keel_proto::v3lockpb::{LockRequest, UnlockRequest};
use tonic::transport::Channel;

/// How long a step may wait for a blocked call to be released before the test fails.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(20);

/// The outcome of one step as text: leases as `L<n>` (ids differ between servers).
struct Log {
    lines: Vec<String>,
    leases: Vec<i64>,
}

impl Log {
    fn hide_leases(&self, text: String) -> String {
        let mut text = text;
        for (i, lease) in self.leases.iter().enumerate() {
            text = text
                .replace(&format!("{lease:x}"), &format!("L{i}"))
                .replace(&lease.to_string(), &format!("L{i}"));
        }
        text
    }

    fn push(&mut self, step: &str, outcome: String) {
        let line = self.hide_leases(format!("{step}: {outcome}"));
        self.lines.push(line);
    }
}

fn revision(header: &Option<ResponseHeader>) -> i64 {
    header.as_ref().map_or(-1, |h| h.revision)
}

fn status(error: &tonic::Status) -> String {
    format!("error {:?} {:?}", error.code(), error.message())
}

async fn grant(channel: &Channel, log: &mut Log) -> i64 {
    let id = LeaseClient::new(channel.clone())
        .lease_grant(LeaseGrantRequest { ttl: 60, id: 0 })
        .await
        .expect("lease grant")
        .into_inner()
        .id;
    log.leases.push(id);
    id
}

async fn revoke(channel: &Channel, id: i64) {
    LeaseClient::new(channel.clone())
        .lease_revoke(LeaseRevokeRequest { id })
        .await
        .expect("lease revoke");
}

/// Waits until `key` exists (a waiter has queued).
async fn queued(channel: &Channel, key: &[u8]) {
    let deadline = tokio::time::Instant::now() + RELEASE_TIMEOUT;
    loop {
        let found = KvClient::new(channel.clone())
            .range(RangeRequest {
                key: key.to_vec(),
                ..Default::default()
            })
            .await
            .expect("range")
            .into_inner()
            .count;
        if found > 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{key:?} never queued"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A write and a read, so that anything the server would answer a waiter before them has
/// arrived; the waiter must still be pending afterwards.
async fn settle(channel: &Channel) {
    KvClient::new(channel.clone())
        .put(PutRequest {
            key: b"settle".to_vec(),
            value: b"x".to_vec(),
            ..Default::default()
        })
        .await
        .expect("put");
}

fn session_key(name: &str, lease: i64) -> Vec<u8> {
    format!("{name}/{lease:x}").into_bytes()
}

async fn lock_scenario(channel: Channel) -> Vec<String> {
    let mut log = Log {
        lines: Vec::new(),
        leases: Vec::new(),
    };
    let lock = LockClient::new(channel.clone());
    let (l0, l1, l2, l3) = (
        grant(&channel, &mut log).await,
        grant(&channel, &mut log).await,
        grant(&channel, &mut log).await,
        grant(&channel, &mut log).await,
    );

    // The first locker holds at once; a second waits until the first unlocks.
    let held = lock
        .clone()
        .lock(LockRequest {
            name: b"m".to_vec(),
            lease: l0,
        })
        .await
        .expect("lock")
        .into_inner();
    log.push(
        "lock l0",
        format!(
            "{} rev {}",
            String::from_utf8_lossy(&held.key),
            revision(&held.header)
        ),
    );
    let mut waiter = {
        let mut lock = lock.clone();
        tokio::spawn(async move {
            lock.lock(LockRequest {
                name: b"m".to_vec(),
                lease: l1,
            })
            .await
        })
    };
    queued(&channel, &session_key("m", l1)).await;
    settle(&channel).await;
    assert!(
        (&mut waiter).now_or_never().is_none(),
        "a second holder got the lock"
    );
    // Locking again with the held session's lease is the holder's own lock.
    let again = lock
        .clone()
        .lock(LockRequest {
            name: b"m".to_vec(),
            lease: l0,
        })
        .await
        .expect("relock")
        .into_inner();
    log.push(
        "relock l0",
        format!(
            "{} rev {}",
            String::from_utf8_lossy(&again.key),
            revision(&again.header)
        ),
    );
    let unlocked = lock
        .clone()
        .unlock(UnlockRequest { key: held.key })
        .await
        .expect("unlock")
        .into_inner();
    log.push("unlock l0", format!("rev {}", revision(&unlocked.header)));
    let second = tokio::time::timeout(RELEASE_TIMEOUT, waiter)
        .await
        .expect("the waiter got the lock")
        .expect("join")
        .expect("lock")
        .into_inner();
    log.push(
        "lock l1",
        format!(
            "{} rev {}",
            String::from_utf8_lossy(&second.key),
            revision(&second.header)
        ),
    );

    // A holder's lease revoked releases the lock.
    let waiter = {
        let mut lock = lock.clone();
        tokio::spawn(async move {
            lock.lock(LockRequest {
                name: b"m".to_vec(),
                lease: l2,
            })
            .await
        })
    };
    queued(&channel, &session_key("m", l2)).await;
    revoke(&channel, l1).await;
    let third = tokio::time::timeout(RELEASE_TIMEOUT, waiter)
        .await
        .expect("the waiter got the lock")
        .expect("join")
        .expect("lock")
        .into_inner();
    log.push(
        "lock l2",
        format!(
            "{} rev {}",
            String::from_utf8_lossy(&third.key),
            revision(&third.header)
        ),
    );

    // A waiter whose own lease goes while it waits: its session expired.
    let waiter = {
        let mut lock = lock.clone();
        tokio::spawn(async move {
            lock.lock(LockRequest {
                name: b"m".to_vec(),
                lease: l3,
            })
            .await
        })
    };
    queued(&channel, &session_key("m", l3)).await;
    revoke(&channel, l3).await;
    lock.clone()
        .unlock(UnlockRequest { key: third.key })
        .await
        .expect("unlock");
    let expired = tokio::time::timeout(RELEASE_TIMEOUT, waiter)
        .await
        .expect("the waiter returned")
        .expect("join");
    log.push(
        "lock l3 expired",
        match expired {
            Ok(response) => format!("granted {:?}", response.into_inner().key),
            Err(error) => status(&error),
        },
    );
    // A lock on a lease that does not exist.
    let missing = lock
        .clone()
        .lock(LockRequest {
            name: b"m".to_vec(),
            lease: 12345,
        })
        .await;
    log.push(
        "lock without lease",
        match missing {
            Ok(response) => format!("granted {:?}", response.into_inner().key),
            Err(error) => status(&error),
        },
    );
    // No lease: the session grants one of 60 s, which the lock key carries.
    let own = lock
        .clone()
        .lock(LockRequest {
            name: b"own".to_vec(),
            lease: 0,
        })
        .await
        .expect("lock")
        .into_inner();
    let kv = KvClient::new(channel.clone())
        .range(RangeRequest {
            key: own.key.clone(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner()
        .kvs
        .remove(0);
    let granted = LeaseClient::new(channel.clone())
        .lease_time_to_live(keel_proto::etcdserverpb::LeaseTimeToLiveRequest {
            id: kv.lease,
            keys: true,
        })
        .await
        .expect("time to live")
        .into_inner();
    log.push(
        "lock with no lease",
        format!(
            "key is own/<lease hex> {} granted ttl {} carries the key {}",
            own.key == format!("own/{:x}", kv.lease).into_bytes(),
            granted.granted_ttl,
            granted.keys == vec![own.key.clone()]
        ),
    );
    log.lines
}

async fn election_scenario(endpoint: String) -> Vec<String> {
    let channel = channel(&endpoint);
    let mut log = Log {
        lines: Vec::new(),
        leases: Vec::new(),
    };
    let election = ElectionClient::new(channel.clone());
    let (a, b) = (
        grant(&channel, &mut log).await,
        grant(&channel, &mut log).await,
    );
    let none = election
        .clone()
        .leader(LeaderRequest {
            name: b"e".to_vec(),
        })
        .await;
    log.push(
        "leader of nobody",
        match none {
            Ok(response) => format!("{:?}", response.into_inner().kv),
            Err(error) => status(&error),
        },
    );
    // etcd sends Observe's response headers with its first message, once there is a
    // leader: the call completes only then, so it runs on its own (on a channel without the
    // per-call timeout) while the first candidate campaigns.
    let observing = {
        let mut election = ElectionClient::new(
            Channel::from_shared(format!("http://{endpoint}"))
                .expect("url")
                .connect_lazy(),
        );
        tokio::spawn(async move {
            election
                .observe(LeaderRequest {
                    name: b"e".to_vec(),
                })
                .await
        })
    };
    let first = election
        .clone()
        .campaign(CampaignRequest {
            name: b"e".to_vec(),
            lease: a,
            value: b"one".to_vec(),
        })
        .await
        .expect("campaign")
        .into_inner();
    let mut observer = tokio::time::timeout(RELEASE_TIMEOUT, observing)
        .await
        .expect("observe answered")
        .expect("join")
        .expect("observe")
        .into_inner();
    let leader = first.leader.clone().expect("leader key");
    log.push(
        "campaign a",
        format!(
            "rev {} leader {} {} rev {}",
            revision(&first.header),
            String::from_utf8_lossy(&leader.name),
            String::from_utf8_lossy(&leader.key),
            leader.rev
        ),
    );
    let observe = |log: &mut Log, step: &str, observer: &mut tonic::Streaming<_>| {
        let next: Option<keel_proto::v3electionpb::LeaderResponse> = block_in(observer);
        let next = next.expect("an observed leader");
        let kv = next.kv.expect("kv");
        log.push(
            step,
            format!(
                "rev {} {}={} create {} mod {}",
                revision(&next.header),
                String::from_utf8_lossy(&kv.key),
                String::from_utf8_lossy(&kv.value),
                kv.create_revision,
                kv.mod_revision
            ),
        );
    };
    observe(&mut log, "observe first", &mut observer);
    let mut second = {
        let mut election = election.clone();
        tokio::spawn(async move {
            election
                .campaign(CampaignRequest {
                    name: b"e".to_vec(),
                    lease: b,
                    value: b"two".to_vec(),
                })
                .await
        })
    };
    queued(&channel, &session_key("e", b)).await;
    settle(&channel).await;
    assert!((&mut second).now_or_never().is_none(), "two leaders");
    let proclaimed = election
        .clone()
        .proclaim(ProclaimRequest {
            leader: Some(leader.clone()),
            value: b"one-bis".to_vec(),
        })
        .await
        .expect("proclaim")
        .into_inner();
    log.push("proclaim", format!("rev {}", revision(&proclaimed.header)));
    observe(&mut log, "observe proclaimed", &mut observer);
    let current = election
        .clone()
        .leader(LeaderRequest {
            name: b"e".to_vec(),
        })
        .await
        .expect("leader")
        .into_inner();
    let kv = current.kv.expect("kv");
    log.push(
        "leader",
        format!(
            "rev {} {}={}",
            revision(&current.header),
            String::from_utf8_lossy(&kv.key),
            String::from_utf8_lossy(&kv.value)
        ),
    );
    for (step, request) in [
        (
            "proclaim by a stale key",
            ProclaimRequest {
                leader: Some(LeaderKey {
                    rev: leader.rev + 100,
                    ..leader.clone()
                }),
                value: b"x".to_vec(),
            },
        ),
        (
            "proclaim without a key",
            ProclaimRequest {
                leader: None,
                value: b"x".to_vec(),
            },
        ),
    ] {
        let outcome = election.clone().proclaim(request).await;
        log.push(
            step,
            match outcome {
                Ok(response) => format!("rev {}", revision(&response.into_inner().header)),
                Err(error) => status(&error),
            },
        );
    }
    let resigned = election
        .clone()
        .resign(ResignRequest {
            leader: Some(leader.clone()),
        })
        .await
        .expect("resign")
        .into_inner();
    log.push("resign", format!("rev {}", revision(&resigned.header)));
    let second = tokio::time::timeout(RELEASE_TIMEOUT, second)
        .await
        .expect("the second candidate leads")
        .expect("join")
        .expect("campaign")
        .into_inner();
    let second_leader = second.leader.expect("leader key");
    log.push(
        "campaign b",
        format!(
            "rev {} leader {} rev {}",
            revision(&second.header),
            String::from_utf8_lossy(&second_leader.key),
            second_leader.rev
        ),
    );
    observe(&mut log, "observe second", &mut observer);
    let resign_again = election
        .clone()
        .resign(ResignRequest {
            leader: Some(leader),
        })
        .await;
    log.push(
        "resign again",
        match resign_again {
            Ok(response) => format!("rev {}", revision(&response.into_inner().header)),
            Err(error) => status(&error),
        },
    );
    log.lines
}

/// The next message of a stream, within the release timeout (called from async code through
/// a nested wait on the current runtime).
fn block_in<T>(stream: &mut tonic::Streaming<T>) -> Option<T> {
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(async {
            tokio::time::timeout(RELEASE_TIMEOUT, stream.message())
                .await
                .expect("the stream answered in time")
                .expect("stream message")
        })
    })
}

#[test]
fn locks_behave_as_etcds() {
    let etcd = Server::start(Kind::Etcd, &[]);
    let keel = Server::start(Kind::Keel, &[]);
    let expected = block_on(async { lock_scenario(channel(&etcd.endpoint)).await });
    let seen = block_on(async { lock_scenario(channel(&keel.endpoint)).await });
    // etcd 3.5's Lock checks, once the keys before it are gone, that the waiter's own key
    // still exists and answers `mutex: session is expired` when its lease went meanwhile;
    // 3.4 (the etcd this test runs) grants the lock without its key. Keel follows 3.5.
    let expected: Vec<String> = expected
        .into_iter()
        .map(|line| {
            if line.starts_with("lock l3 expired: granted") {
                "lock l3 expired: error Unknown \"mutex: session is expired\"".to_string()
            } else {
                line
            }
        })
        .collect();
    assert_eq!(seen, expected);
}

#[test]
fn elections_behave_as_etcds() {
    let etcd = Server::start(Kind::Etcd, &[]);
    let keel = Server::start(Kind::Keel, &[]);
    let expected = block_on(async { election_scenario(etcd.endpoint.clone()).await });
    let seen = block_on(async { election_scenario(keel.endpoint.clone()).await });
    assert_eq!(seen, expected);
}
