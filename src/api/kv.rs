//! The KV service: Range, Put, DeleteRange, Txn, Compact.
//!
//! Reads (Range and read-only Txn) are served on the front core from the shared store; a
//! write is acknowledged only after it is applied, so every read that starts after a write's
//! acknowledgement sees it: reads are linearizable on a single member whether or not the
//! client asked for `serializable`. Writes go through the log core.

use keel_engine::mvcc;
use keel_proto::etcdserverpb as pb;
use keel_proto::etcdserverpb::kv_server::Kv;
use tonic::{Request, Response, Status};

use crate::api::convert;
use crate::server::apply::txn_writes;
use crate::server::command::Command;
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

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let request = convert::range_request(request.get_ref())?;
        mvcc::check_range_request(&request).map_err(|e| convert::status(&e))?;
        self.shared.metrics.range_total.inc();
        let response = self
            .shared
            .read_store()
            .range(&request)
            .map_err(|e| convert::status(&e))?;
        Ok(Response::new(convert::range_response(
            response,
            &self.shared.header,
        )))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let mut request = request.into_inner();
        convert::check_put(&mut request)?;
        self.shared
            .check_quota(request.key.len() + request.value.len())
            .await?;
        self.shared.metrics.put_total.inc();
        match self.shared.propose(Command::Put(request)).await? {
            Applied::Put(response) => Ok(Response::new(convert::put_response(
                response,
                &self.shared.header,
            ))),
            other => Err(unexpected(other)),
        }
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let request = request.into_inner();
        mvcc::check_delete_request(&convert::delete_request(&request))
            .map_err(|e| convert::status(&e))?;
        self.shared.metrics.delete_total.inc();
        match self.shared.propose(Command::DeleteRange(request)).await? {
            Applied::DeleteRange(response) => Ok(Response::new(convert::delete_response(
                response,
                &self.shared.header,
            ))),
            other => Err(unexpected(other)),
        }
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        let request = request.into_inner();
        let txn = convert::txn_request(&request)?;
        mvcc::check_txn_request(&txn, self.shared.limits.txn_ops_max)
            .map_err(|e| convert::status(&e))?;
        self.shared.metrics.txn_total.inc();
        if !txn_writes(&request) {
            // A txn that only reads needs no log entry (etcd serves it the same way). The
            // store's txn takes `&mut` because it may write; a read-only txn changes
            // nothing, and holding the write lock keeps it atomic against apply.
            let response = self
                .shared
                .write_store()
                .txn(&txn)
                .map_err(|e| convert::status(&e))?;
            return Ok(Response::new(convert::txn_response(
                response,
                &self.shared.header,
            )));
        }
        self.shared
            .check_quota(request.compare.len() * 8 + request.success.len() * 64)
            .await?;
        match self.shared.propose(Command::Txn(request)).await? {
            Applied::Txn(response) => Ok(Response::new(convert::txn_response(
                response,
                &self.shared.header,
            ))),
            other => Err(unexpected(other)),
        }
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let request = request.into_inner();
        // Refuse a future or already-compacted revision before it enters the log, with the
        // errors etcd returns for them.
        {
            let store = self.shared.read_store();
            if request.revision > store.current_revision() {
                return Err(convert::status(&mvcc::MvccError::FutureRevision));
            }
            if request.revision <= store.compact_revision() {
                return Err(convert::status(&mvcc::MvccError::Compacted));
            }
        }
        match self.shared.propose(Command::Compact(request)).await? {
            Applied::Compact { revision } => Ok(Response::new(pb::CompactionResponse {
                header: self.shared.header.at(revision),
            })),
            other => Err(unexpected(other)),
        }
    }
}
