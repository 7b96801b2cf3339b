//! The Lease service: Grant, Revoke, KeepAlive, TimeToLive, Leases.
//!
//! Grants and revocations go through the log. Keep-alives only move the lease's deadline in
//! the member's lease clocks (as etcd's leader does): they are not logged.

use std::pin::Pin;
use std::sync::atomic::Ordering;

use futures::{Stream, StreamExt};
use keel_engine::mvcc;
use keel_proto::etcdserverpb as pb;
use keel_proto::etcdserverpb::lease_server::Lease;
use tonic::{Request, Response, Status, Streaming};

use crate::api::auth::Credentials;
use crate::api::error::mvcc_status;
use crate::server::auth::{Access, AuthInfo};
use crate::server::command::Command;
use crate::server::error::ServerError;
use crate::server::state::{Applied, Shared, SharedRef};

/// The Lease service.
pub struct LeaseService {
    shared: SharedRef,
}

impl LeaseService {
    /// A service over `shared`.
    pub fn new(shared: SharedRef) -> LeaseService {
        LeaseService { shared }
    }
}

/// etcd's lease checks: `access` to every key of `lease_ids` (an admin may do anything).
fn check_leases(
    shared: &Shared,
    user: &Option<AuthInfo>,
    lease_ids: &[i64],
    access: Access,
) -> Result<(), ServerError> {
    let Some(user) = user else {
        return Ok(());
    };
    let auth = shared.auth();
    let store = shared.read_store();
    for id in lease_ids {
        auth.check_lease_keys(&store, user, *id, access)?;
    }
    Ok(())
}

/// After the answer was read: an auth revision that moved since the caller's credentials were
/// checked fails the request (the client retries with fresh ones), as etcd does.
fn recheck_revision(shared: &Shared, user: &Option<AuthInfo>) -> Result<(), ServerError> {
    match user {
        Some(user) if user.revision != shared.auth().revision() => {
            Err(ServerError::AuthOldRevision)
        }
        _ => Ok(()),
    }
}

type KeepAliveStream =
    Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        self.shared.refuse_if_learner()?;
        let credentials = Credentials::of(&request);
        let mut request = request.into_inner();
        credentials.require_user(&self.shared).await?;
        if request.ttl > mvcc::LEASE_TTL_MAX_SECONDS {
            return Err(mvcc_status(mvcc::MvccError::LeaseTtlTooLarge));
        }
        if request.id == 0 {
            request.id = self.shared.ids.next_lease_id();
        }
        // etcd raises a TTL below its minimum (1.5 election timeouts) to the minimum.
        request.ttl = request.ttl.max(self.shared.limits.lease_ttl_min_seconds);
        self.shared.check_quota(64).await?;
        match self.shared.propose(Command::LeaseGrant(request)).await? {
            Applied::LeaseGrant { id, ttl } => {
                self.shared.metrics.lease_granted.inc();
                Ok(Response::new(pb::LeaseGrantResponse {
                    header: self.shared.header().at(self.shared.current_revision()),
                    id,
                    ttl,
                    error: String::new(),
                }))
            }
            other => Err(Status::internal(format!(
                "unexpected apply result {other:?}"
            ))),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        self.shared.refuse_if_learner()?;
        let credentials = Credentials::of(&request);
        let request = request.into_inner();
        let user = credentials.require_user(&self.shared).await?;
        match self
            .shared
            .propose_as(user, Command::LeaseRevoke(request))
            .await?
        {
            Applied::LeaseRevoke { revision } => {
                self.shared.metrics.lease_revoked.inc();
                Ok(Response::new(pb::LeaseRevokeResponse {
                    header: self.shared.header().at(revision),
                }))
            }
            other => Err(Status::internal(format!(
                "unexpected apply result {other:?}"
            ))),
        }
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        self.shared.refuse_if_learner()?;
        let shared = self.shared.clone();
        let credentials = Credentials::of(&request);
        let requests = request.into_inner();
        // One response per request, in order; the stream ends when the client closes its
        // side, on a transport error, or when the server stops.
        let responses = requests
            .take_while(move |_| {
                let stopping = shared.stopping.load(Ordering::Acquire);
                futures::future::ready(!stopping)
            })
            .then({
                let shared = self.shared.clone();
                move |request| {
                    let shared = shared.clone();
                    let credentials = credentials.clone();
                    async move {
                        let request = request?;
                        // etcd's checkLeaseRenew: a user, with write access to the lease's keys.
                        let user = credentials.require_user(&shared).await?;
                        check_leases(&shared, &user, &[request.id], Access::Write)?;
                        recheck_revision(&shared, &user)?;
                        // Only the leader's clock counts: a keep-alive that reached a follower
                        // renews the lease on the leader.
                        let clock = shared.lease_clock(request.id, true).await?;
                        if clock.is_some() {
                            shared.metrics.lease_renewed.inc();
                        }
                        Ok(pb::LeaseKeepAliveResponse {
                            header: shared.header().at(shared.current_revision()),
                            id: request.id,
                            // etcd answers a keep-alive of an unknown lease with TTL 0.
                            ttl: clock.map_or(0, |c| c.granted_ttl),
                        })
                    }
                }
            });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        self.shared.refuse_if_learner()?;
        let credentials = Credentials::of(&request);
        let request = request.into_inner();
        let user = credentials.require_user(&self.shared).await?;
        if request.keys {
            check_leases(&self.shared, &user, &[request.id], Access::Read)?;
        }
        let (info, revision) = {
            let store = self.shared.read_store();
            (
                store.lease_time_to_live(request.id, request.keys),
                store.current_revision(),
            )
        };
        recheck_revision(&self.shared, &user)?;
        let header = self.shared.header().at(revision);
        let info = match info {
            Ok(info) => info,
            // etcd reports a lease it does not know with TTL -1 rather than an error
            // (etcdctl prints "lease ... already expired").
            Err(mvcc::MvccError::LeaseNotFound) => {
                return Ok(Response::new(pb::LeaseTimeToLiveResponse {
                    header,
                    id: request.id,
                    ttl: -1,
                    granted_ttl: 0,
                    keys: Vec::new(),
                }))
            }
            Err(other) => return Err(mvcc_status(other)),
        };
        let remaining = self
            .shared
            .lease_clock(request.id, false)
            .await?
            .map_or(info.granted_ttl_seconds, |c| c.remaining_seconds);
        Ok(Response::new(pb::LeaseTimeToLiveResponse {
            header,
            id: request.id,
            ttl: remaining,
            granted_ttl: info.granted_ttl_seconds,
            keys: info.keys,
        }))
    }

    async fn lease_leases(
        &self,
        request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        self.shared.refuse_if_learner()?;
        let user = Credentials::of(&request).require_user(&self.shared).await?;
        if user.is_some() {
            let ids: Vec<i64> = self
                .shared
                .read_store()
                .leases()
                .iter()
                .map(|l| l.id)
                .collect();
            check_leases(&self.shared, &user, &ids, Access::Read)?;
        }
        let store = self.shared.read_store();
        recheck_revision(&self.shared, &user)?;
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: self.shared.header().at(store.current_revision()),
            leases: store
                .leases()
                .into_iter()
                .map(|l| pb::LeaseStatus { id: l.id })
                .collect(),
        }))
    }
}
