//! The KV service: Range, Put, DeleteRange, Txn, Compact.
//!
//! Reads (Range and read-only Txn) are served on the front core from the shared store. A
//! linearizable read first waits for a ReadIndex round (batched with every read waiting at
//! that moment) and for this member to apply up to that index; a serializable read is served
//! from this member's store as it is. Writes go through the raft core, from any member.

use keel_engine::mvcc;
use keel_proto::etcdserverpb as pb;
use keel_proto::etcdserverpb::kv_server::Kv;
use tonic::{Request, Response, Status};

use crate::api::auth::Credentials;
use crate::api::error::mvcc_status;
use crate::server::apply::txn_writes;
use crate::server::auth::{Access, AuthInfo};
use crate::server::command::Command;
use crate::server::convert;
use crate::server::error::ServerError;
use crate::server::state::{Applied, SharedRef};

/// The KV service.
pub struct KvService {
    shared: SharedRef,
}

impl KvService {
    /// A service over `shared`.
    pub fn new(shared: SharedRef) -> KvService {
        KvService { shared }
    }
}

fn unexpected(applied: Applied) -> Status {
    Status::internal(format!("etcdserver: unexpected apply result {applied:?}"))
}

/// True when every range of a read-only txn is serializable (etcd then serves it without a
/// ReadIndex round).
fn txn_serializable(txn: &pb::TxnRequest) -> bool {
    use pb::request_op::Request;
    txn.success
        .iter()
        .chain(&txn.failure)
        .all(|op| match &op.request {
            Some(Request::RequestRange(range)) => range.serializable,
            Some(Request::RequestTxn(inner)) => txn_serializable(inner),
            _ => true,
        })
}

impl KvService {
    /// etcd's check after a read: credentials checked at an auth revision that changed
    /// meanwhile make the read fail (the client retries with fresh ones).
    fn recheck_revision(&self, user: &Option<AuthInfo>) -> Result<(), ServerError> {
        match user {
            Some(user) if user.revision != 0 && user.revision != self.shared.auth().revision() => {
                Err(ServerError::AuthOldRevision)
            }
            _ => Ok(()),
        }
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let credentials = Credentials::of(&request);
        if !request.get_ref().serializable {
            // A linearizable read waits for a ReadIndex round; a serializable one is served
            // from this member's store as it is (a learner serves only those, as etcd's).
            self.shared.refuse_if_learner()?;
            self.shared.linearizable_barrier().await?;
        }
        let user = credentials.caller(&self.shared).await?;
        let request = request.into_inner();
        if let Some(user) = &user {
            self.shared
                .auth()
                .check_keys(user, &request.key, &request.range_end, Access::Read)?;
        }
        let request = convert::range_request(&request)?;
        mvcc::check_range_request(&request).map_err(mvcc_status)?;
        self.shared.metrics.range_total.inc();
        let response = self
            .shared
            .read_store()
            .range(&request)
            .map_err(mvcc_status)?;
        self.recheck_revision(&user)?;
        Ok(Response::new(convert::range_response(
            response,
            &self.shared.header(),
        )))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        self.shared.refuse_if_learner()?;
        let credentials = Credentials::of(&request);
        let mut request = request.into_inner();
        convert::check_put(&mut request)?;
        let user = credentials.caller(&self.shared).await?;
        self.shared
            .check_quota(request.key.len() + request.value.len())
            .await?;
        self.shared.metrics.put_total.inc();
        match self.shared.propose_as(user, Command::Put(request)).await? {
            Applied::Put(response) => Ok(Response::new(convert::put_response(
                response,
                &self.shared.header(),
            ))),
            other => Err(unexpected(other)),
        }
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        self.shared.refuse_if_learner()?;
        let credentials = Credentials::of(&request);
        let request = request.into_inner();
        mvcc::check_delete_request(&convert::delete_request(&request)).map_err(mvcc_status)?;
        let user = credentials.caller(&self.shared).await?;
        self.shared.metrics.delete_total.inc();
        match self
            .shared
            .propose_as(user, Command::DeleteRange(request))
            .await?
        {
            Applied::DeleteRange(response) => Ok(Response::new(convert::delete_response(
                response,
                &self.shared.header(),
            ))),
            other => Err(unexpected(other)),
        }
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        self.shared.refuse_if_learner()?;
        let credentials = Credentials::of(&request);
        let request = request.into_inner();
        let txn = convert::txn_request(&request)?;
        mvcc::check_txn_request(&txn, self.shared.limits.txn_ops_max).map_err(mvcc_status)?;
        self.shared.metrics.txn_total.inc();
        let user = credentials.caller(&self.shared).await?;
        if !txn_writes(&request) {
            if !txn_serializable(&request) {
                self.shared.linearizable_barrier().await?;
            }
            // A txn that only reads needs no log entry (etcd serves it the same way); it is
            // answered under the store's read lock, atomically against apply.
            let answer = {
                let store = self.shared.read_store();
                if let Some(user) = &user {
                    self.shared.auth().check_txn(&store, user, &request)?;
                }
                store.txn_read_only(&txn).map_err(mvcc_status)?
            };
            self.recheck_revision(&user)?;
            if let Some(response) = answer {
                return Ok(Response::new(convert::txn_response(
                    response,
                    &self.shared.header(),
                )));
            }
        }
        self.shared
            .check_quota(request.compare.len() * 8 + request.success.len() * 64)
            .await?;
        match self.shared.propose_as(user, Command::Txn(request)).await? {
            Applied::Txn(response) => Ok(Response::new(convert::txn_response(
                response,
                &self.shared.header(),
            ))),
            other => Err(unexpected(other)),
        }
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        self.shared.refuse_if_learner()?;
        let credentials = Credentials::of(&request);
        let request = request.into_inner();
        // Compaction is an admin's (etcd 3.5.28 and later; 3.4 let any user compact).
        credentials.require_admin(&self.shared).await?;
        // Refuse a future or already-compacted revision before it enters the log, with the
        // errors etcd returns for them.
        {
            let store = self.shared.read_store();
            if request.revision > store.current_revision() {
                return Err(mvcc_status(mvcc::MvccError::FutureRevision));
            }
            if request.revision <= store.compact_revision() {
                return Err(mvcc_status(mvcc::MvccError::Compacted));
            }
        }
        match self.shared.propose(Command::Compact(request)).await? {
            Applied::Compact { revision } => Ok(Response::new(pb::CompactionResponse {
                header: self.shared.header().at(revision),
            })),
            other => Err(unexpected(other)),
        }
    }
}
