//! The Watch service.
//!
//! Each Watch stream is one task on the front core that accepted it. A watcher is only a
//! position: the next revision it has to see. When the raft core applies a batch it bumps the
//! store revision and notifies; every stream then catches each of its watchers up from the
//! store's event feed, in bounded slices. Nothing is buffered per watcher, so a slow client
//! only slows its own stream (its task waits on the bounded response channel) and never
//! holds back apply or other watchers. A watcher that falls behind a compaction is canceled
//! with the compact revision, as etcd does.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::channel::mpsc;
use futures::{FutureExt, SinkExt, Stream, StreamExt};
use keel_engine::mvcc;
use keel_proto::etcdserverpb as pb;
use keel_proto::etcdserverpb::watch_server::Watch;
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::api::auth::Credentials;
use crate::server::auth::Access;
use crate::server::convert;
use crate::server::error::ServerError;
use crate::server::state::{SharedRef, GRPC_OVERHEAD_BYTES};

/// Responses buffered per stream before the stream's task waits for the client. Small on
/// purpose: a response may hold up to [`CATCH_UP_EVENTS_MAX`] events, and a client that
/// reads slowly should cost the server little memory.
pub const STREAM_RESPONSES_MAX: usize = 8;
/// Events read from the store per watcher per catch-up slice.
pub const CATCH_UP_EVENTS_MAX: usize = 1024;
/// Watchers one stream may hold.
pub const STREAM_WATCHERS_MAX: usize = 100_000;
/// etcd's default interval for `progress_notify` watchers.
pub const PROGRESS_NOTIFY_INTERVAL_DEFAULT: Duration = Duration::from_secs(600);

/// The Watch service.
pub struct WatchService {
    shared: SharedRef,
}

impl WatchService {
    /// A service over `shared`.
    pub fn new(shared: SharedRef) -> WatchService {
        WatchService { shared }
    }
}

type WatchResponseStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchResponseStream;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.shared.refuse_if_learner()?;
        let (sender, receiver) = mpsc::channel(STREAM_RESPONSES_MAX);
        let stream = WatchStream {
            credentials: Credentials::of(&request),
            shared: self.shared.clone(),
            sender,
            watchers: BTreeMap::new(),
            next_watch_id: 0,
        };
        // Handlers run on the glommio executor that owns the connection, so the stream's
        // task stays on that core with it.
        glommio::spawn_local(stream.run(request.into_inner())).detach();
        Ok(Response::new(Box::pin(receiver)))
    }
}

struct Watcher {
    key: Vec<u8>,
    range_end: Vec<u8>,
    /// The next revision this watcher has to see.
    next_revision: i64,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    progress_notify: bool,
    fragment: bool,
    /// Whether an event was sent since the last progress tick.
    sent_since_tick: bool,
}

/// The client went away; the stream's task ends.
struct Gone;

struct WatchStream {
    /// Who opened the stream: every watch it creates is checked against their roles.
    credentials: Credentials,
    shared: SharedRef,
    sender: mpsc::Sender<Result<pb::WatchResponse, Status>>,
    watchers: BTreeMap<i64, Watcher>,
    next_watch_id: i64,
}

impl WatchStream {
    async fn run(mut self, requests: Streaming<pb::WatchRequest>) {
        self.shared.metrics.watch_streams.inc();
        let _ = self.serve(requests).await;
        self.shared.metrics.watchers.sub(self.watchers.len() as i64);
        self.shared.metrics.watch_streams.dec();
    }

    async fn serve(&mut self, requests: Streaming<pb::WatchRequest>) -> Result<(), Gone> {
        let mut requests = requests.fuse();
        let mut requests_open = true;
        let interval = self.shared.watch_progress_interval;
        let mut tick = glommio::timer::Timer::new(interval).fuse();
        loop {
            // Listen before catching up, so that a revision applied in between still wakes
            // this task.
            let changed = self.shared.revision_changed.listen();
            let stopping = self.shared.stop_event.listen();
            if self.shared.stopping.load(Ordering::Acquire) {
                return Err(Gone);
            }
            self.catch_up().await?;
            let next_request = async {
                if requests_open {
                    requests.next().await
                } else {
                    futures::future::pending().await
                }
            };
            futures::select! {
                request = next_request.fuse() => match request {
                    Some(Ok(request)) => self.handle(request).await?,
                    // A transport error ends the stream.
                    Some(Err(_)) => return Err(Gone),
                    // The client closed its side; etcd keeps sending events until the
                    // stream is torn down.
                    None => requests_open = false,
                },
                _ = changed.fuse() => {}
                _ = stopping.fuse() => return Err(Gone),
                _ = tick => {
                    self.progress_tick().await?;
                    tick = glommio::timer::Timer::new(interval).fuse();
                }
            }
        }
    }

    async fn send(&mut self, response: pb::WatchResponse) -> Result<(), Gone> {
        self.sender.send(Ok(response)).await.map_err(|_| Gone)
    }

    fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        self.shared.header().at(revision)
    }

    async fn handle(&mut self, request: pb::WatchRequest) -> Result<(), Gone> {
        use pb::watch_request::RequestUnion;
        match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => self.create(create).await,
            Some(RequestUnion::CancelRequest(cancel)) => {
                if self.watchers.remove(&cancel.watch_id).is_some() {
                    self.shared.metrics.watchers.dec();
                    let revision = self.shared.current_revision();
                    let response = pb::WatchResponse {
                        header: self.header(revision),
                        watch_id: cancel.watch_id,
                        canceled: true,
                        ..Default::default()
                    };
                    self.send(response).await?;
                }
                Ok(())
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                // Catch everyone up first, so the progress revision promises that every
                // event at or below it was delivered.
                self.catch_up().await?;
                let revision = self.shared.current_revision();
                let response = pb::WatchResponse {
                    header: self.header(revision),
                    watch_id: -1,
                    ..Default::default()
                };
                self.send(response).await
            }
            None => Ok(()),
        }
    }

    async fn watch_permitted(&self, key: &[u8], range_end: &[u8]) -> Result<(), ServerError> {
        if let Some(user) = self.credentials.caller(&self.shared).await? {
            self.shared
                .auth()
                .check_keys(&user, key, range_end, Access::Read)?;
        }
        Ok(())
    }

    async fn create(&mut self, create: pb::WatchCreateRequest) -> Result<(), Gone> {
        let current = self.shared.current_revision();
        let refuse = |id: i64, reason: &str| pb::WatchResponse {
            header: self.shared.header().at(current),
            watch_id: id,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        };
        // etcd's isWatchPermitted, first of all: read access to the watched keys (an empty
        // key is "\0"). A refused watch is answered as created and canceled, with id -1 and
        // the reason (the gRPC error as Go prints it); the stream stays open.
        let key: &[u8] = if create.key.is_empty() {
            &[0]
        } else {
            &create.key
        };
        if let Err(error) = self.watch_permitted(key, &create.range_end).await {
            let reason = match error {
                ServerError::InvalidAuthToken
                | ServerError::AuthOldRevision
                | ServerError::UserEmpty => error,
                _ => ServerError::PermissionDenied,
            };
            // etcd puts the gRPC error's Go text in the reason.
            let status = tonic::Status::from(reason);
            let text = format!(
                "rpc error: code = {:?} desc = {}",
                status.code(),
                status.message()
            );
            let response = refuse(-1, &text);
            return self.send(response).await;
        }
        let single_or_from_key = create.range_end.is_empty() || create.range_end == [0];
        if !single_or_from_key && create.key >= create.range_end {
            let response = refuse(-1, "mvcc: watcher range is empty");
            return self.send(response).await;
        }
        if self.watchers.len() >= STREAM_WATCHERS_MAX {
            let response = refuse(-1, "keel: too many watchers on this stream");
            return self.send(response).await;
        }
        let id = if create.watch_id != 0 {
            if self.watchers.contains_key(&create.watch_id) {
                // etcd answers with watch id -1, not the id asked for.
                let response = refuse(-1, "mvcc: duplicate watch ID provided on the WatchStream");
                return self.send(response).await;
            }
            create.watch_id
        } else {
            while self.watchers.contains_key(&self.next_watch_id) {
                self.next_watch_id += 1;
            }
            let id = self.next_watch_id;
            self.next_watch_id += 1;
            id
        };
        use pb::watch_create_request::FilterType;
        let watcher = Watcher {
            key: create.key,
            range_end: create.range_end,
            next_revision: if create.start_revision <= 0 {
                current + 1
            } else {
                create.start_revision
            },
            no_put: create.filters.contains(&(FilterType::Noput as i32)),
            no_delete: create.filters.contains(&(FilterType::Nodelete as i32)),
            prev_kv: create.prev_kv,
            progress_notify: create.progress_notify,
            fragment: create.fragment,
            sent_since_tick: false,
        };
        self.watchers.insert(id, watcher);
        self.shared.metrics.watchers.inc();
        let response = pb::WatchResponse {
            header: self.header(current),
            watch_id: id,
            created: true,
            ..Default::default()
        };
        self.send(response).await
    }

    /// Sends every watcher the events it has not seen yet.
    async fn catch_up(&mut self) -> Result<(), Gone> {
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            while let Some(watcher) = self.watchers.get(&id) {
                let (feed, current, compact) = {
                    let store = self.shared.read_store();
                    let current = store.current_revision();
                    if watcher.next_revision > current {
                        break;
                    }
                    let feed = store.events(
                        watcher.next_revision,
                        &watcher.key,
                        &watcher.range_end,
                        CATCH_UP_EVENTS_MAX,
                    );
                    (feed, current, store.compact_revision())
                };
                let events = match feed {
                    Ok(events) => events,
                    Err(mvcc::MvccError::Compacted) => {
                        self.watchers.remove(&id);
                        self.shared.metrics.watchers.dec();
                        // etcd's cancel for a compacted watch carries header revision 0.
                        let response = pb::WatchResponse {
                            header: self.header(0),
                            watch_id: id,
                            canceled: true,
                            compact_revision: compact,
                            ..Default::default()
                        };
                        self.send(response).await?;
                        break;
                    }
                    Err(_) => break,
                };
                let complete = events.len() < CATCH_UP_EVENTS_MAX;
                let next = if complete {
                    current + 1
                } else {
                    events.last().map_or(current + 1, |e| e.kv.mod_revision + 1)
                };
                let header_revision = next - 1;
                let watcher = self.watchers.get_mut(&id).expect("watcher present");
                watcher.next_revision = next;
                let (no_put, no_delete, prev_kv, fragment) = (
                    watcher.no_put,
                    watcher.no_delete,
                    watcher.prev_kv,
                    watcher.fragment,
                );
                let events: Vec<_> = events
                    .into_iter()
                    .filter(|e| match e.kind {
                        mvcc::EventKind::Put => !no_put,
                        mvcc::EventKind::Delete => !no_delete,
                    })
                    .map(|e| convert::event(e, prev_kv))
                    .collect();
                if !events.is_empty() {
                    watcher.sent_since_tick = true;
                    self.send_events(id, header_revision, events, fragment)
                        .await?;
                }
                if complete {
                    break;
                }
            }
        }
        Ok(())
    }

    async fn send_events(
        &mut self,
        id: i64,
        revision: i64,
        events: Vec<keel_proto::mvccpb::Event>,
        fragment: bool,
    ) -> Result<(), Gone> {
        let response = pb::WatchResponse {
            header: self.header(revision),
            watch_id: id,
            events,
            ..Default::default()
        };
        // etcd fragments only above its send limit, `--max-request-bytes` plus its gRPC
        // overhead allowance, and packs each fragment with events while the response stays
        // below that limit (a single larger event travels alone).
        let limit = self.shared.limits.request_bytes_max + GRPC_OVERHEAD_BYTES;
        if !fragment || response.encoded_len() <= limit {
            return self.send(response).await;
        }
        let base = pb::WatchResponse {
            header: response.header,
            watch_id: id,
            fragment: true,
            ..Default::default()
        }
        .encoded_len();
        let mut parts: Vec<Vec<keel_proto::mvccpb::Event>> = vec![Vec::new()];
        let mut size = base;
        for event in response.events {
            let len = event.encoded_len();
            let event_size = 1 + prost::encoding::encoded_len_varint(len as u64) + len;
            let last = parts.last_mut().expect("one part");
            if !last.is_empty() && size + event_size >= limit {
                parts.push(Vec::new());
                size = base;
            }
            size += event_size;
            parts.last_mut().expect("one part").push(event);
        }
        let count = parts.len();
        for (i, events) in parts.into_iter().enumerate() {
            let part = pb::WatchResponse {
                header: self.header(revision),
                watch_id: id,
                events,
                fragment: i + 1 < count,
                ..Default::default()
            };
            self.send(part).await?;
        }
        Ok(())
    }

    async fn progress_tick(&mut self) -> Result<(), Gone> {
        let current = self.shared.current_revision();
        let due: Vec<i64> = self
            .watchers
            .iter_mut()
            .filter_map(|(id, w)| {
                let due = w.progress_notify && !w.sent_since_tick && w.next_revision > current;
                w.sent_since_tick = false;
                due.then_some(*id)
            })
            .collect();
        for id in due {
            let response = pb::WatchResponse {
                header: self.header(current),
                watch_id: id,
                ..Default::default()
            };
            self.send(response).await?;
        }
        Ok(())
    }
}
