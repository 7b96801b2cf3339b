//! The Keel server core: the state every thread shares, the raft core's loop, and apply.
//!
//! * [`state`]: [`state::Shared`], what the raft core and the front cores share (the store,
//!   limits, the channels into the raft core), and its request paths (propose, ReadIndex,
//!   lease clocks).
//! * [`log`]: the raft core's loop, which batches proposals, drives the raft node
//!   ([`crate::raft::node`]) and expires leases.
//! * [`apply`]: applying a committed command to the store.
//! * [`command`]: the commands that travel through the log.
//! * [`convert`]: etcd's protobuf requests and responses to and from the engine's.
//! * [`error`]: [`error::ServerError`], the typed error of every failed request.
//!
//! The server core knows nothing of gRPC: results are typed ([`state::Applied`],
//! [`error::ServerError`]), and the API layer, which uses this module (never the reverse),
//! turns them into etcd's replies. Threads and startup are in `crate::member`.

pub mod apply;
pub mod auth;
pub mod command;
pub mod convert;
pub mod error;
pub mod log;
pub mod membership;
pub mod state;
pub mod tokens;

use std::sync::atomic::Ordering;
use std::time::Duration;

use keel_proto::etcdserverpb as pb;

use crate::server::command::Command;
use crate::server::state::SharedRef;

/// Proposals queued for the raft core before writers wait (back-pressure).
pub const PROPOSALS_QUEUED_MAX: usize = 16 * 1024;

/// The raft term a single member reports (etcd's first election makes a new single member's
/// term 2).
pub const SINGLE_MEMBER_TERM: u64 = 2;

/// Publishes this member's name and client URLs through the log (etcd's `publish`), retrying
/// until it applies, so that every member lists them.
pub async fn publish_attributes(shared: SharedRef) {
    let attributes = pb::Member {
        id: shared.member_id,
        name: shared.member.name.clone(),
        client_ur_ls: shared.member.client_urls.clone(),
        ..Default::default()
    };
    while !shared.stopping.load(Ordering::Acquire) {
        let command = Command::MemberAttributes(attributes.clone());
        if shared.propose(command).await.is_ok() {
            shared.published.store(true, Ordering::Release);
            tracing::info!("published local member attributes to the cluster");
            return;
        }
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
}
