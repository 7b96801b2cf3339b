//! The Lock and Election services (etcd's `v3lockpb` and `v3electionpb`): distributed locks
//! and leader election built, as etcd builds them, on leases and revisions.
//!
//! # How a lock works
//!
//! Lock `name` with lease `L` is the key `name/<L in hex>`, created with a txn that only
//! creates it when it does not exist (so a session that already waits or holds keeps its
//! place) and carries the lease, so the key goes when the lease is revoked or expires. Its
//! create revision is its place in the queue: the holder is the key of the prefix `name/`
//! with the lowest create revision. A waiter waits until no key of the prefix with a lower
//! create revision is left, then checks its own key still exists (a lease that expired
//! meanwhile took it: `mutex: session is expired`). Unlock deletes the key. A waiter whose
//! call is cancelled or fails deletes its key, so it never becomes a holder nobody knows.
//!
//! An election is the same queue under `name/`: campaigning creates the candidate's key with
//! its proposal as the value and waits until it is first; the leader is the first key;
//! Proclaim updates the leader's value only while its key is the one it created (same create
//! revision), Resign deletes it, Observe streams the leader's key-value each time the leader
//! or its value changes.
//!
//! Every read and write goes through the KV service with the caller's credentials, so auth
//! applies as to the caller's own requests; the waits follow the store's revisions on this
//! member (no extra log entries).

use std::pin::Pin;
use std::sync::atomic::Ordering;

use futures::channel::mpsc;
use futures::{FutureExt, SinkExt, Stream};
use keel_proto::etcdserverpb as pb;
use keel_proto::etcdserverpb::kv_server::Kv;
use keel_proto::mvccpb;
use keel_proto::v3electionpb as epb;
use keel_proto::v3electionpb::election_server::Election;
use keel_proto::v3lockpb as lpb;
use keel_proto::v3lockpb::lock_server::Lock;
use tonic::{Request, Response, Status};

use crate::api::kv::KvService;
use crate::server::state::SharedRef;

/// etcd's error when the session's lease expired while its lock waited.
const SESSION_EXPIRED: &str = "mutex: session is expired";
/// etcd's error for Proclaim by a candidate that does not lead.
const NOT_LEADER: &str = "election: not leader";
/// etcd's error for Leader when no candidate campaigns.
const NO_LEADER: &str = "election: no leader";
/// etcd's error for Proclaim and Resign without a leader key.
const MISSING_LEADER_KEY: &str = "\"leader\" field must be provided";

/// The TTL of the lease etcd's session grants when a Lock or Campaign names none.
const SESSION_TTL_SECONDS: i64 = 60;

/// How many events one look at the store takes while following a key.
const EVENTS_MAX: usize = 1024;

/// A Go error returned by an etcd gRPC handler that is not a gRPC status reaches the client
/// with code Unknown and the error's text.
fn go_error(text: &str) -> Status {
    Status::unknown(text)
}

/// An error of a KV call made for the caller, as etcd's services return their own client's
/// errors: a Go error (code Unknown) with the error's text.
fn as_go_error(status: Status) -> Status {
    go_error(status.message())
}

/// The KV calls of one request, made with the caller's metadata and extensions (its token or
/// certificate), as etcd's services call its own KV server with the caller's context.
struct Caller {
    kv: KvService,
    shared: SharedRef,
    metadata: tonic::metadata::MetadataMap,
    extensions: tonic::Extensions,
}

impl Caller {
    fn of<T>(shared: &SharedRef, request: &Request<T>) -> Caller {
        Caller {
            kv: KvService::new(shared.clone()),
            shared: shared.clone(),
            metadata: request.metadata().clone(),
            extensions: request.extensions().clone(),
        }
    }

    /// The same caller, for work that outlives this request's handler.
    fn again(&self) -> Caller {
        Caller {
            kv: KvService::new(self.shared.clone()),
            shared: self.shared.clone(),
            metadata: self.metadata.clone(),
            extensions: self.extensions.clone(),
        }
    }

    fn request<T>(&self, message: T) -> Request<T> {
        Request::from_parts(self.metadata.clone(), self.extensions.clone(), message)
    }

    async fn txn(&self, txn: pb::TxnRequest) -> Result<pb::TxnResponse, Status> {
        self.kv
            .txn(self.request(txn))
            .await
            .map(Response::into_inner)
            .map_err(as_go_error)
    }

    async fn range(&self, range: pb::RangeRequest) -> Result<pb::RangeResponse, Status> {
        self.kv
            .range(self.request(range))
            .await
            .map(Response::into_inner)
            .map_err(as_go_error)
    }

    /// The session's lease: `lease`, or for 0 a new lease of etcd's default session TTL
    /// (60 s), as etcd's session makes one when none is given.
    async fn session_lease(&self, lease: i64) -> Result<i64, Status> {
        use keel_proto::etcdserverpb::lease_server::Lease;
        if lease != 0 {
            return Ok(lease);
        }
        let granted = crate::api::lease::LeaseService::new(self.shared.clone())
            .lease_grant(self.request(pb::LeaseGrantRequest {
                ttl: SESSION_TTL_SECONDS,
                id: 0,
            }))
            .await
            .map_err(as_go_error)?;
        Ok(granted.into_inner().id)
    }

    async fn delete(&self, key: &[u8]) -> Result<pb::DeleteRangeResponse, Status> {
        let request = pb::DeleteRangeRequest {
            key: key.to_vec(),
            ..Default::default()
        };
        self.kv
            .delete_range(self.request(request))
            .await
            .map(Response::into_inner)
            .map_err(as_go_error)
    }

    /// The first-created key of `prefix`, with `max_create_revision` when above 0 (clientv3's
    /// `WithFirstCreate`, or `WithLastCreate` + `WithMaxCreateRev` when `last`).
    async fn edge_of(
        &self,
        prefix: &[u8],
        last: bool,
        max_create_revision: i64,
    ) -> Result<pb::RangeResponse, Status> {
        self.range(pb::RangeRequest {
            max_create_revision,
            ..edge_range(prefix, last)
        })
        .await
    }

    /// Waits until no key of `prefix` with a create revision at or below `max_create_revision`
    /// is left (etcd's `waitDeletes`); the header of the last read.
    async fn wait_deletes(
        &self,
        prefix: &[u8],
        max_create_revision: i64,
    ) -> Result<Option<pb::ResponseHeader>, Status> {
        loop {
            let changed = self.shared.revision_changed.listen();
            let stopping = self.shared.stop_event.listen();
            if self.shared.stopping.load(Ordering::Acquire) {
                return Err(crate::server::state::stopped_status().into());
            }
            let response = self.edge_of(prefix, true, max_create_revision).await?;
            if response.kvs.is_empty() {
                return Ok(response.header);
            }
            futures::select! {
                _ = changed.fuse() => {}
                _ = stopping.fuse() => {}
            }
        }
    }
}

/// The end of the range of keys starting with `prefix` (etcd's `GetPrefixRangeEnd`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The key a session with `lease` has under `prefix` (`<prefix><lease in hex>`).
fn session_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    key
}

/// `name` + "/".
fn prefix_of(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

fn compare_create(key: &[u8], revision: i64) -> pb::Compare {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    pb::Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(TargetUnion::CreateRevision(revision)),
        ..Default::default()
    }
}

fn op_put(key: &[u8], value: &[u8], lease: i64) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    }
}

fn op_get(key: &[u8]) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

/// The key of `prefix` created first (or, with `last`, last): clientv3's `WithFirstCreate`
/// and `WithLastCreate`.
fn edge_range(prefix: &[u8], last: bool) -> pb::RangeRequest {
    use pb::range_request::{SortOrder, SortTarget};
    let order = if last {
        SortOrder::Descend
    } else {
        SortOrder::Ascend
    };
    pb::RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: order as i32,
        sort_target: SortTarget::Create as i32,
        ..Default::default()
    }
}

fn op_first_create(prefix: &[u8]) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestRange(edge_range(
            prefix, false,
        ))),
    }
}

fn op_delete(key: &[u8]) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestDeleteRange(
            pb::DeleteRangeRequest {
                key: key.to_vec(),
                ..Default::default()
            },
        )),
    }
}

/// The key-values of the `index`th response of a txn, when it is a range.
fn range_kvs(response: &pb::TxnResponse, index: usize) -> &[mvccpb::KeyValue] {
    match response
        .responses
        .get(index)
        .and_then(|r| r.response.as_ref())
    {
        Some(pb::response_op::Response::ResponseRange(range)) => &range.kvs,
        _ => &[],
    }
}

/// Deletes a waiting session's key when its wait ends without the lock or leadership (the
/// call failed or the client went away), unless disarmed.
struct Withdraw {
    caller: Option<Caller>,
    key: Vec<u8>,
}

impl Withdraw {
    fn disarm(&mut self) {
        self.caller = None;
    }
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        if let Some(caller) = self.caller.take() {
            let key = std::mem::take(&mut self.key);
            glommio::spawn_local(async move {
                let _ = caller.delete(&key).await;
            })
            .detach();
        }
    }
}

/// The Lock service.
pub struct LockService {
    shared: SharedRef,
}

impl LockService {
    /// A service over `shared`.
    pub fn new(shared: SharedRef) -> LockService {
        LockService { shared }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(
        &self,
        request: Request<lpb::LockRequest>,
    ) -> Result<Response<lpb::LockResponse>, Status> {
        let caller = Caller::of(&self.shared, &request);
        let mut request = request.into_inner();
        request.lease = caller.session_lease(request.lease).await?;
        let prefix = prefix_of(&request.name);
        let key = session_key(&prefix, request.lease);
        let txn = caller
            .txn(pb::TxnRequest {
                compare: vec![compare_create(&key, 0)],
                success: vec![op_put(&key, b"", request.lease), op_first_create(&prefix)],
                failure: vec![op_get(&key), op_first_create(&prefix)],
            })
            .await?;
        let my_revision = if txn.succeeded {
            txn.header.as_ref().map_or(0, |h| h.revision)
        } else {
            range_kvs(&txn, 0)
                .first()
                .map_or(0, |kv| kv.create_revision)
        };
        let owner = range_kvs(&txn, 1);
        if owner.is_empty() || owner[0].create_revision == my_revision {
            return Ok(Response::new(lpb::LockResponse {
                header: txn.header,
                key,
            }));
        }
        let mut withdraw = Withdraw {
            caller: Some(caller.again()),
            key: key.clone(),
        };
        caller.wait_deletes(&prefix, my_revision - 1).await?;
        let mine = caller
            .range(pb::RangeRequest {
                key: key.clone(),
                ..Default::default()
            })
            .await?;
        withdraw.disarm();
        if mine.kvs.is_empty() {
            return Err(go_error(SESSION_EXPIRED));
        }
        Ok(Response::new(lpb::LockResponse {
            header: mine.header,
            key,
        }))
    }

    async fn unlock(
        &self,
        request: Request<lpb::UnlockRequest>,
    ) -> Result<Response<lpb::UnlockResponse>, Status> {
        let caller = Caller::of(&self.shared, &request);
        let deleted = caller.delete(&request.into_inner().key).await?;
        Ok(Response::new(lpb::UnlockResponse {
            header: deleted.header,
        }))
    }
}

/// The Election service.
pub struct ElectionService {
    shared: SharedRef,
}

impl ElectionService {
    /// A service over `shared`.
    pub fn new(shared: SharedRef) -> ElectionService {
        ElectionService { shared }
    }
}

/// Proclaim's txn: `value` on the leader's key, only while it is the key that campaigned.
async fn proclaim(
    caller: &Caller,
    leader: &epb::LeaderKey,
    value: &[u8],
) -> Result<pb::TxnResponse, Status> {
    let txn = caller
        .txn(pb::TxnRequest {
            compare: vec![compare_create(&leader.key, leader.rev)],
            success: vec![op_put(&leader.key, value, leader.lease)],
            failure: Vec::new(),
        })
        .await?;
    if !txn.succeeded {
        return Err(go_error(NOT_LEADER));
    }
    Ok(txn)
}

/// Resign's txn: the leader's key deleted, only while it is the key that campaigned.
async fn resign(caller: &Caller, leader: &epb::LeaderKey) -> Result<pb::TxnResponse, Status> {
    caller
        .txn(pb::TxnRequest {
            compare: vec![compare_create(&leader.key, leader.rev)],
            success: vec![op_delete(&leader.key)],
            failure: Vec::new(),
        })
        .await
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<epb::LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<epb::CampaignRequest>,
    ) -> Result<Response<epb::CampaignResponse>, Status> {
        let caller = Caller::of(&self.shared, &request);
        let mut request = request.into_inner();
        request.lease = caller.session_lease(request.lease).await?;
        let prefix = prefix_of(&request.name);
        let key = session_key(&prefix, request.lease);
        let txn = caller
            .txn(pb::TxnRequest {
                compare: vec![compare_create(&key, 0)],
                success: vec![op_put(&key, &request.value, request.lease)],
                failure: vec![op_get(&key)],
            })
            .await?;
        let mut leader = epb::LeaderKey {
            name: request.name.clone(),
            key: key.clone(),
            rev: txn.header.as_ref().map_or(0, |h| h.revision),
            lease: request.lease,
        };
        if !txn.succeeded {
            let existing = range_kvs(&txn, 0).first().cloned().unwrap_or_default();
            leader.rev = existing.create_revision;
            if existing.value != request.value {
                if let Err(error) = proclaim(&caller, &leader, &request.value).await {
                    let _ = resign(&caller, &leader).await;
                    return Err(error);
                }
            }
        }
        let mut withdraw = Withdraw {
            caller: Some(caller.again()),
            key: key.clone(),
        };
        caller.wait_deletes(&prefix, leader.rev - 1).await?;
        withdraw.disarm();
        Ok(Response::new(epb::CampaignResponse {
            header: txn.header,
            leader: Some(leader),
        }))
    }

    async fn proclaim(
        &self,
        request: Request<epb::ProclaimRequest>,
    ) -> Result<Response<epb::ProclaimResponse>, Status> {
        let caller = Caller::of(&self.shared, &request);
        let request = request.into_inner();
        let leader = request.leader.ok_or_else(|| go_error(MISSING_LEADER_KEY))?;
        let txn = proclaim(&caller, &leader, &request.value).await?;
        Ok(Response::new(epb::ProclaimResponse { header: txn.header }))
    }

    async fn leader(
        &self,
        request: Request<epb::LeaderRequest>,
    ) -> Result<Response<epb::LeaderResponse>, Status> {
        let caller = Caller::of(&self.shared, &request);
        let prefix = prefix_of(&request.into_inner().name);
        let response = caller.edge_of(&prefix, false, 0).await?;
        let kv = response
            .kvs
            .into_iter()
            .next()
            .ok_or_else(|| go_error(NO_LEADER))?;
        Ok(Response::new(epb::LeaderResponse {
            header: response.header,
            kv: Some(kv),
        }))
    }

    type ObserveStream = ObserveStream;

    async fn observe(
        &self,
        request: Request<epb::LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let caller = Caller::of(&self.shared, &request);
        let prefix = prefix_of(&request.into_inner().name);
        let (sender, receiver) = mpsc::channel(8);
        glommio::spawn_local(observe(caller, prefix, sender)).detach();
        Ok(Response::new(Box::pin(receiver)))
    }

    async fn resign(
        &self,
        request: Request<epb::ResignRequest>,
    ) -> Result<Response<epb::ResignResponse>, Status> {
        let caller = Caller::of(&self.shared, &request);
        let leader = request
            .into_inner()
            .leader
            .ok_or_else(|| go_error(MISSING_LEADER_KEY))?;
        let txn = resign(&caller, &leader).await?;
        Ok(Response::new(epb::ResignResponse { header: txn.header }))
    }
}

/// The events on `key` (with `range_end`) from `from` on, waiting for the store to reach
/// `from` first; `None` when the member stops or `from` was compacted away.
async fn events_from(
    caller: &Caller,
    key: &[u8],
    range_end: &[u8],
    from: i64,
) -> Option<(Vec<keel_engine::mvcc::Event>, i64)> {
    let shared = &caller.shared;
    loop {
        let changed = shared.revision_changed.listen();
        let stopping = shared.stop_event.listen();
        if shared.stopping.load(Ordering::Acquire) {
            return None;
        }
        {
            let store = shared.read_store();
            let current = store.current_revision();
            if from <= current {
                let events = store.events(from, key, range_end, EVENTS_MAX).ok()?;
                let next = if events.len() < EVENTS_MAX {
                    current + 1
                } else {
                    events.last().map_or(current + 1, |e| e.kv.mod_revision + 1)
                };
                if !events.is_empty() {
                    return Some((events, next));
                }
            }
        }
        futures::select! {
            _ = changed.fuse() => {}
            _ = stopping.fuse() => return None,
        }
    }
}

/// Observe's stream: the leader's key-value now (or once a candidate appears), then every
/// change of its value, then the next leader once its key is deleted; as etcd's `observe`.
async fn observe(
    caller: Caller,
    prefix: Vec<u8>,
    mut sender: mpsc::Sender<Result<epb::LeaderResponse, Status>>,
) {
    let range_end = prefix_end(&prefix);
    loop {
        let first = match caller.edge_of(&prefix, false, 0).await {
            Ok(first) => first,
            Err(status) => {
                let _ = sender.send(Err(status)).await;
                return;
            }
        };
        let header_revision = first.header.as_ref().map_or(0, |h| h.revision);
        let (mut header, kv) = match first.kvs.into_iter().next() {
            Some(kv) => (first.header.unwrap_or_default(), kv),
            None => {
                // Wait for the first put under the prefix (a delete would only spin).
                let mut from = header_revision;
                let found = loop {
                    let Some((events, next)) =
                        events_from(&caller, &prefix, &range_end, from).await
                    else {
                        return;
                    };
                    from = next;
                    if let Some(event) = events
                        .into_iter()
                        .find(|e| e.kind == keel_engine::mvcc::EventKind::Put)
                    {
                        break event.kv;
                    }
                };
                let kv = crate::server::convert::key_value(found);
                let mut header = caller
                    .shared
                    .header()
                    .at(kv.mod_revision)
                    .unwrap_or_default();
                header.revision = kv.mod_revision;
                (header, kv)
            }
        };
        let leader_key = kv.key.clone();
        let response = epb::LeaderResponse {
            header: Some(header),
            kv: Some(kv),
        };
        if sender.send(Ok(response)).await.is_err() {
            return;
        }
        // Follow the leader's key until it is deleted.
        let mut from = header.revision + 1;
        'follow: loop {
            let Some((events, next)) = events_from(&caller, &leader_key, &[], from).await else {
                return;
            };
            from = next;
            for event in events {
                if event.kind == keel_engine::mvcc::EventKind::Delete {
                    break 'follow;
                }
                header = caller.shared.header().at(next - 1).unwrap_or_default();
                let response = epb::LeaderResponse {
                    header: Some(header),
                    kv: Some(crate::server::convert::key_value(event.kv)),
                };
                if sender.send(Ok(response)).await.is_err() {
                    return;
                }
            }
        }
    }
}
