//! Maintenance Downgrade ENABLE and CANCEL as etcd 3.5 answers them (3.4.23, the etcd these
//! tests can run, has no Downgrade): ENABLE records the target through the log, so every
//! member shows it in Status's `downgrade_info` (etcd 3.6's field, which Keel sets while a
//! downgrade is in progress), it outlives a restart (etcd keeps it in the backend's cluster
//! bucket), and CANCEL clears it.

mod common;

use std::time::{Duration, Instant};

use common::ops::{block_on, within};
use common::{Cluster, Kind};
use keel_proto::etcdserverpb as pb;
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use pb::downgrade_request::DowngradeAction::{self, Cancel, Enable};
use tonic::transport::Channel;

/// Every network step gives up after this long instead of hanging.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

async fn channel(endpoint: &str) -> Channel {
    within(
        "connect",
        Channel::from_shared(format!("http://{endpoint}"))
            .expect("valid url")
            .connect(),
    )
    .await
    .expect("connect")
}

/// The answer to a Downgrade request: the cluster version, or the error's code and message.
async fn downgrade(
    channel: &Channel,
    action: DowngradeAction,
    version: &str,
) -> Result<String, (tonic::Code, String)> {
    let request = pb::DowngradeRequest {
        action: action as i32,
        version: version.into(),
    };
    within(
        "downgrade",
        MaintenanceClient::new(channel.clone()).downgrade(request),
    )
    .await
    .map(|r| r.into_inner().version)
    .map_err(|s| (s.code(), s.message().to_string()))
}

/// Status's `downgrade_info` on the member behind `channel`.
async fn downgrade_info(channel: &Channel) -> Option<pb::DowngradeInfo> {
    within(
        "status",
        MaintenanceClient::new(channel.clone()).status(pb::StatusRequest {}),
    )
    .await
    .expect("status")
    .into_inner()
    .downgrade_info
}

/// Polls `channel`'s Status until its `downgrade_info` is `expected` (a follower applies the
/// entry shortly after the leader answers).
async fn wait_downgrade_info(channel: &Channel, expected: &Option<pb::DowngradeInfo>) {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let info = downgrade_info(channel).await;
        if &info == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "downgrade_info stayed {info:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn enabled() -> Option<pb::DowngradeInfo> {
    Some(pb::DowngradeInfo {
        enabled: true,
        target_version: "3.4.0".into(),
    })
}

const IN_PROGRESS: &str = "etcdserver: cluster has a downgrade job in progress";
const NONE_IN_FLIGHT: &str = "etcdserver: no inflight downgrade job";

#[test]
fn enable_shows_in_status_and_survives_a_restart_until_cancel() {
    // A small checkpoint interval, so that the puts after ENABLE take a checkpoint holding
    // the downgrade as well as leaving it in the WAL.
    let mut cluster = Cluster::start(Kind::Keel, 1, &["--snapshot-count", "5"]);
    block_on(async {
        let endpoint = cluster.members[0].endpoint.clone();
        let member = channel(&endpoint).await;
        assert_eq!(downgrade_info(&member).await, None, "before ENABLE");
        assert_eq!(downgrade(&member, Enable, "3.4").await, Ok("3.5.0".into()));
        assert_eq!(downgrade_info(&member).await, enabled());
        assert_eq!(
            downgrade(&member, Enable, "3.4").await,
            Err((tonic::Code::FailedPrecondition, IN_PROGRESS.into()))
        );
        for i in 0..20 {
            let put = pb::PutRequest {
                key: format!("k{i}").into_bytes(),
                value: vec![b'v'; 2048],
                ..Default::default()
            };
            within("put", KvClient::new(member.clone()).put(put))
                .await
                .expect("put");
        }
    });

    cluster.restart(0);
    cluster.wait_healthy(0);
    block_on(async {
        let member = channel(&cluster.members[0].endpoint).await;
        assert_eq!(downgrade_info(&member).await, enabled(), "after a restart");
        assert_eq!(
            downgrade(&member, Enable, "3.4.0").await,
            Err((tonic::Code::FailedPrecondition, IN_PROGRESS.into())),
            "ENABLE after a restart"
        );
        assert_eq!(downgrade(&member, Cancel, "").await, Ok("3.5.0".into()));
        assert_eq!(downgrade_info(&member).await, None, "after CANCEL");
        assert_eq!(
            downgrade(&member, Cancel, "").await,
            Err((tonic::Code::FailedPrecondition, NONE_IN_FLIGHT.into()))
        );
    });

    cluster.restart(0);
    cluster.wait_healthy(0);
    block_on(async {
        let member = channel(&cluster.members[0].endpoint).await;
        assert_eq!(
            downgrade_info(&member).await,
            None,
            "CANCEL after a restart"
        );
        // A new downgrade may start once the last one ended.
        assert_eq!(downgrade(&member, Enable, "3.4").await, Ok("3.5.0".into()));
        assert_eq!(downgrade_info(&member).await, enabled());
    });
}

#[test]
fn enable_on_one_member_shows_on_every_member() {
    let cluster = Cluster::start(Kind::Keel, 3, &[]);
    block_on(async {
        let mut members = Vec::new();
        for member in &cluster.members {
            members.push(channel(&member.endpoint).await);
        }
        for member in &members {
            assert_eq!(downgrade_info(member).await, None, "before ENABLE");
        }
        // ENABLE on the last member (a follower or the leader: the entry goes through the
        // log either way), CANCEL on the first.
        assert_eq!(
            downgrade(&members[2], Enable, "3.4").await,
            Ok("3.5.0".into())
        );
        for member in &members {
            wait_downgrade_info(member, &enabled()).await;
        }
        // Every member refuses a second ENABLE (each reads linearizably first).
        for member in &members {
            assert_eq!(
                downgrade(member, Enable, "3.4").await,
                Err((tonic::Code::FailedPrecondition, IN_PROGRESS.into()))
            );
        }
        assert_eq!(downgrade(&members[0], Cancel, "").await, Ok("3.5.0".into()));
        for member in &members {
            wait_downgrade_info(member, &None).await;
            assert_eq!(
                downgrade(member, Cancel, "").await,
                Err((tonic::Code::FailedPrecondition, NONE_IN_FLIGHT.into()))
            );
        }
    });
}
