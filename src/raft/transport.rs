//! The peer transport: raft messages between members as gRPC streams on the peer port.
//!
//! The transport runs as tasks on the raft core's own executor (a message between the network
//! and the raft core crosses no thread: on a sequential put that saved about 30 % of the
//! latency against a peer thread of its own): it serves Keel's `Peer` service on
//! `--listen-peer-urls` and keeps one long-lived client stream open to every other member.
//! The raft core never waits for the network: its [`PeerSenders`] outbox puts each message in
//! the destination's bounded queue and drops it when the queue is full (raft retries), and
//! each peer's sender task batches whatever is queued into one `RaftBatch` per send. A broken
//! or refused connection is reported to raft (`report_unreachable`) and retried with backoff.
//! Incoming batches are checked (cluster id, destination) and decoded, then handed to the raft
//! core's bounded inbox. Snapshot files are read and written on other threads (glommio's
//! blocking pool, or a thread per chunk under a gRPC handler), so ticks and heartbeats never
//! wait for them.
//!
//! Raft messages travel as opaque bytes in raft-rs' own protobuf encoding, so raft-rs'
//! protobuf never meets tonic's prost.
//!
//! Peer TLS follows each URL's scheme, as in etcd ([`PeerEndpoint`]): an `https` URL speaks
//! TLS (the listener serves it, connections to it make it), an `http` URL plaintext, even
//! when a peer certificate is configured (etcd ignores it there, with a warning at startup).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use futures::StreamExt;
use keel_proto::etcdserverpb as pb;
use keel_proto::keelpeerpb as peerpb;
use keel_proto::keelpeerpb::peer_client::PeerClient;
use keel_proto::keelpeerpb::peer_server::{Peer, PeerServer};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tonic::service::Routes;
use tonic::{Request, Response, Status, Streaming};

use crate::net::{self, ClientOptions, GrpcChannel, HttpHandler, ServeOptions};
use crate::raft::node::Outbox;
use crate::server::error::ServerError;
use crate::server::log::PeerInput;
use crate::server::membership;
use crate::server::state::{LeaseClock, LeaseForward, PromoteForward, SharedRef};

/// Messages queued for one peer before new ones are dropped.
pub const PEER_QUEUE_MESSAGES_MAX: usize = 4096;
/// Messages sent in one `RaftBatch` at most.
pub const BATCH_MESSAGES_MAX: usize = 256;
/// Raft inputs queued for the raft core before new ones are dropped.
pub const CORE_INBOX_MAX: usize = 16 * 1024;
/// The first wait before reconnecting to a peer; it doubles up to [`RECONNECT_BACKOFF_MAX`].
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest wait before reconnecting to a peer.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Snapshots queued for sending before raft's requests are dropped (raft asks again).
pub const SNAPSHOTS_QUEUED_MAX: usize = 16;
/// Bytes of checkpoint file per snapshot chunk.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// What a member answers a removed member's raft stream with (etcd answers 410 Gone,
/// "removed member"); the removed member stops when it reads it.
pub const REMOVED_MEMBER_TEXT: &str = "removed member";

/// Largest raft message accepted from a peer (raft caps appends at 1 MiB per message; a
/// batch is at most a few of them). Bounds what protobuf 2 is asked to decode.
pub const PEER_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// The raft core's outbox: one bounded queue per peer, and one for snapshots (which travel
/// on connections of their own, so heartbeats never queue behind a checkpoint file).
pub struct PeerSenders {
    member_id: u64,
    queues: HashMap<u64, async_channel::Sender<Message>>,
    addrs: HashMap<u64, PeerEndpoint>,
    snapshots: async_channel::Sender<Message>,
    control: async_channel::Sender<PeerControl>,
}

/// What the raft core tells the peer transport when the members change.
enum PeerControl {
    /// Send `queue` to member `id` at `addr` (a new member, or new URLs).
    Connect {
        id: u64,
        addr: PeerEndpoint,
        queue: async_channel::Receiver<Message>,
    },
    /// Member `id` left.
    Forget(u64),
}

/// A peer URL as the transport uses it: the address, and whether TLS is spoken there. The
/// scheme alone decides (etcd's rule, from its listeners and Go's HTTP client): `https` is
/// TLS with the peer certificate, `http` is plaintext even when a peer certificate is
/// configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerEndpoint {
    /// Where to connect or listen.
    pub addr: SocketAddr,
    /// Whether the URL is `https`.
    pub https: bool,
}

impl PeerEndpoint {
    /// The endpoint of `url` (`flag` names where it came from in errors).
    pub fn parse(
        flag: &'static str,
        url: &str,
    ) -> Result<PeerEndpoint, crate::config::ConfigError> {
        PeerEndpoint::of(&crate::config::Url::parse(flag, url)?)
    }

    /// The endpoint of a parsed URL.
    pub fn of(url: &crate::config::Url) -> Result<PeerEndpoint, crate::config::ConfigError> {
        Ok(PeerEndpoint {
            addr: url.socket_addr()?,
            https: url.scheme == "https",
        })
    }

    /// The options for connecting here: `options` for an `https` URL, the same without TLS
    /// for an `http` one.
    pub fn client_options(&self, options: &ClientOptions) -> ClientOptions {
        if self.https {
            options.clone()
        } else {
            ClientOptions {
                tls: None,
                ..options.clone()
            }
        }
    }

    /// What the listener for this URL serves TLS with: `tls` for `https`, nothing for `http`.
    pub fn serve_tls(
        &self,
        tls: &Option<std::sync::Arc<rustls::ServerConfig>>,
    ) -> Option<std::sync::Arc<rustls::ServerConfig>> {
        if self.https {
            tls.clone()
        } else {
            None
        }
    }

    /// Opens a connection for gRPC calls to this endpoint ([`PeerEndpoint::client_options`]).
    pub async fn connect(&self, options: &ClientOptions) -> Result<GrpcChannel, net::ConnectError> {
        net::connect(self.addr, &self.client_options(options)).await
    }
}

impl std::fmt::Display for PeerEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.addr)
    }
}

/// Where a member listens for peers: its first peer URL that parses.
fn peer_addr(member: &pb::Member) -> Option<PeerEndpoint> {
    member
        .peer_ur_ls
        .iter()
        .find_map(|url| PeerEndpoint::parse("initial-cluster", url).ok())
}

impl Outbox for PeerSenders {
    fn set_peers(&mut self, members: &[pb::Member]) {
        let wanted: HashMap<u64, PeerEndpoint> = members
            .iter()
            .filter(|m| m.id != self.member_id)
            .filter_map(|m| peer_addr(m).map(|addr| (m.id, addr)))
            .collect();
        let gone: Vec<u64> = self
            .addrs
            .keys()
            .filter(|id| !wanted.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            // Dropping the queue's sender ends the peer's sender task.
            self.queues.remove(&id);
            self.addrs.remove(&id);
            let _ = self.control.try_send(PeerControl::Forget(id));
        }
        for (id, addr) in wanted {
            if self.addrs.get(&id) == Some(&addr) {
                continue;
            }
            let (tx, rx) = async_channel::bounded(PEER_QUEUE_MESSAGES_MAX);
            self.queues.insert(id, tx);
            self.addrs.insert(id, addr);
            tracing::info!(peer = %format!("{id:x}"), %addr, "peer added");
            let _ = self.control.try_send(PeerControl::Connect {
                id,
                addr,
                queue: rx,
            });
        }
    }

    fn send(&mut self, messages: Vec<Message>) {
        for message in messages {
            if message.get_msg_type() == MessageType::MsgSnapshot {
                let to = message.to;
                if self.snapshots.try_send(message).is_err() {
                    tracing::warn!(to = %format!("{to:x}"), "snapshot queue full; raft retries");
                }
                continue;
            }
            match self.queues.get(&message.to) {
                // A full queue means the peer is slow or gone: dropping is what raft expects
                // of a lossy network, and it never blocks the raft core.
                Some(queue) => {
                    let _ = queue.try_send(message);
                }
                None => tracing::debug!(to = message.to, "raft message for an unknown member"),
            }
        }
    }
}

/// Who this member is, for the peer protocol.
#[derive(Clone, Debug)]
pub struct PeerIdentity {
    /// The cluster id.
    pub cluster_id: u64,
    /// This member's id.
    pub member_id: u64,
    /// `--initial-cluster-token`.
    pub cluster_token: String,
    /// `--name`.
    pub name: String,
    /// This member's peer URLs.
    pub peer_urls: Vec<String>,
    /// This member's client URLs.
    pub client_urls: Vec<String>,
    /// How to connect to peers: TLS is used for peers with https URLs only
    /// ([`PeerEndpoint::client_options`]).
    pub client: ClientOptions,
    /// What the peer listeners with https URLs serve TLS with (`None`: no peer certificate).
    pub serve_tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Whether the listeners refuse a peer whose certificate does not name the address it
    /// connects from (etcd's check, off with
    /// `--experimental-peer-skip-client-san-verification`).
    pub check_peer_address: bool,
}

/// The peer transport, once started on the raft core's executor.
pub struct PeerTasks {
    /// The raft core's outbox.
    pub senders: PeerSenders,
    /// The raft core's inbox for peer input.
    pub inbox: async_channel::Receiver<PeerInput>,
    /// The bound peer listen addresses.
    pub listen_addrs: Vec<SocketAddr>,
    /// Resolves once the listeners have stopped (after `shared` stops) and the outbox and
    /// forwarding channels have closed.
    pub done: glommio::task::JoinHandle<()>,
}

/// Starts the peer transport as tasks of the calling glommio executor (the raft core's, so
/// that a raft message between the network and the core crosses no thread): binds `listen`
/// (resolving port 0), serving TLS on the https ones, and connects to the members the raft
/// core names through its outbox ([`Outbox::set_peers`]).
pub fn start(
    identity: PeerIdentity,
    listen: Vec<PeerEndpoint>,
    shared: SharedRef,
    lease_forwards: async_channel::Receiver<LeaseForward>,
    promote_forwards: async_channel::Receiver<PromoteForward>,
    snap_dir: PathBuf,
) -> anyhow::Result<PeerTasks> {
    let (snapshots, snapshot_queue) = async_channel::bounded(SNAPSHOTS_QUEUED_MAX);
    let (inbox_tx, inbox) = async_channel::bounded(CORE_INBOX_MAX);
    let (control, control_rx) = async_channel::unbounded();
    let member_id = identity.member_id;
    let mut listeners = Vec::new();
    let mut listen_addrs = Vec::new();
    for endpoint in &listen {
        let addr = endpoint.addr;
        let listener = net::bind_reuseport(addr)
            .map_err(|error| anyhow::anyhow!("listening for peers on {addr}: {error}"))?;
        listen_addrs.push(listener.local_addr().unwrap_or(addr));
        listeners.push((listener, *endpoint));
    }
    let peer_addrs: PeerAddrs = Rc::default();
    let mut tasks = vec![
        glommio::spawn_local(follow_members(
            control_rx,
            identity.clone(),
            peer_addrs.clone(),
            inbox_tx.clone(),
            shared.clone(),
        )),
        glommio::spawn_local(forward_leases(
            lease_forwards,
            identity.clone(),
            peer_addrs.clone(),
            shared.clone(),
        )),
        glommio::spawn_local(forward_promotes(
            promote_forwards,
            identity.clone(),
            peer_addrs.clone(),
            shared.clone(),
        )),
        glommio::spawn_local(send_snapshots(
            snapshot_queue,
            identity.clone(),
            peer_addrs,
            snap_dir.clone(),
            inbox_tx.clone(),
            shared.clone(),
        )),
    ];
    let http: Rc<dyn HttpHandler> = Rc::new(NotFound);
    for (listener, endpoint) in listeners {
        let service = PeerService {
            identity: identity.clone(),
            inbox: inbox_tx.clone(),
            shared: shared.clone(),
            snap_dir: snap_dir.clone(),
        };
        let routes =
            Routes::new(PeerServer::new(service).max_decoding_message_size(PEER_MESSAGE_BYTES_MAX));
        let shared = shared.clone();
        let shutdown = async move { shared.stopped().await };
        let options = ServeOptions {
            shutdown_timeout: Duration::from_millis(200),
            tls: endpoint.serve_tls(&identity.serve_tls),
            tls_check_client_address: identity.check_peer_address,
            ..ServeOptions::default()
        };
        let serving = net::serve(listener, routes, http.clone(), options, shutdown);
        tasks.push(glommio::spawn_local(async move {
            if let Err(error) = serving.await {
                tracing::error!(%error, "peer listener failed");
            }
        }));
    }
    let done = glommio::spawn_local(async move {
        for task in tasks {
            task.await;
        }
    })
    .detach();
    Ok(PeerTasks {
        senders: PeerSenders {
            member_id,
            queues: HashMap::new(),
            addrs: HashMap::new(),
            snapshots,
            control,
        },
        inbox,
        listen_addrs,
        done,
    })
}

/// Where each other member listens for peers, as the raft core last named them.
type PeerAddrs = Rc<RefCell<HashMap<u64, PeerEndpoint>>>;

/// Starts and ends the sender of each member as the raft core's outbox names them.
async fn follow_members(
    control: async_channel::Receiver<PeerControl>,
    identity: PeerIdentity,
    addrs: PeerAddrs,
    inbox: async_channel::Sender<PeerInput>,
    shared: SharedRef,
) {
    while let Ok(change) = control.recv().await {
        match change {
            PeerControl::Connect { id, addr, queue } => {
                addrs.borrow_mut().insert(id, addr);
                let sender = Sender {
                    identity: identity.clone(),
                    peer_id: id,
                    addr,
                    queue,
                    inbox: inbox.clone(),
                    shared: shared.clone(),
                };
                glommio::spawn_local(sender.run()).detach();
            }
            PeerControl::Forget(id) => {
                addrs.borrow_mut().remove(&id);
                shared.set_peer_active(id, None);
            }
        }
    }
}

/// Plain HTTP on the peer port: nothing is served there.
struct NotFound;

impl HttpHandler for NotFound {
    fn handle(
        &self,
        _request: http::Request<Bytes>,
    ) -> LocalBoxFuture<'static, http::Response<String>> {
        Box::pin(async {
            let mut response = http::Response::new("404 page not found\n".to_string());
            *response.status_mut() = http::StatusCode::NOT_FOUND;
            response
        })
    }
}

/// Sends one peer's queue over a long-lived Raft stream, reconnecting as needed.
struct Sender {
    identity: PeerIdentity,
    peer_id: u64,
    addr: PeerEndpoint,
    queue: async_channel::Receiver<Message>,
    inbox: async_channel::Sender<PeerInput>,
    shared: SharedRef,
}

impl Sender {
    async fn run(self) {
        let mut backoff = RECONNECT_BACKOFF_MIN;
        let options = self.identity.client.clone();
        let mut reported = false;
        loop {
            if self.shared.stopping.load(Ordering::Acquire) || self.queue.is_closed() {
                return;
            }
            let channel = match self.addr.connect(&options).await {
                Ok(channel) => channel,
                Err(error) => {
                    if !reported {
                        tracing::warn!(peer = %format!("{:x}", self.peer_id), addr = %self.addr,
                            %error, "cannot reach peer; retrying");
                        reported = true;
                    }
                    self.unreachable();
                    // What was queued for a peer that cannot be reached is stale by the time
                    // it can: raft sends again.
                    while self.queue.try_recv().is_ok() {}
                    glommio::timer::sleep(backoff).await;
                    backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
                    continue;
                }
            };
            if reported {
                tracing::info!(peer = %format!("{:x}", self.peer_id), "peer reachable again");
                reported = false;
            }
            backoff = RECONNECT_BACKOFF_MIN;
            self.shared
                .set_peer_active(self.peer_id, Some(std::time::Instant::now()));
            let (mut stream_tx, stream_rx) =
                futures::channel::mpsc::channel::<peerpb::RaftBatch>(64);
            let mut client = PeerClient::new(channel.clone());
            // The stream fails as soon as the connection does: the peer stops counting as
            // connected then, not when the next message finds it gone.
            let (shared, peer_id) = (self.shared.clone(), self.peer_id);
            let call = glommio::spawn_local(async move {
                let ended = client.raft(stream_rx).await;
                shared.set_peer_active(peer_id, None);
                ended
            });
            glommio::spawn_local(probe_round_trips(
                channel.clone(),
                self.identity.clone(),
                self.peer_id,
                self.shared.clone(),
            ))
            .detach();
            loop {
                let first = match self.queue.recv().await {
                    Ok(message) => message,
                    Err(_) => {
                        // The member left the cluster.
                        self.shared.set_peer_active(self.peer_id, None);
                        return;
                    }
                };
                if channel.is_closed() {
                    break;
                }
                let mut messages = vec![first];
                while messages.len() < BATCH_MESSAGES_MAX {
                    match self.queue.try_recv() {
                        Ok(message) => messages.push(message),
                        Err(_) => break,
                    }
                }
                let batch = peerpb::RaftBatch {
                    cluster_id: self.identity.cluster_id,
                    from_member_id: self.identity.member_id,
                    to_member_id: self.peer_id,
                    messages: messages
                        .iter()
                        .map(|m| peerpb::RaftMessage {
                            message: m.write_to_bytes().unwrap_or_default(),
                        })
                        .collect(),
                };
                let bytes = prost::Message::encoded_len(&batch) as u64;
                match stream_tx.try_send(batch) {
                    Ok(()) => self
                        .shared
                        .metrics
                        .peer(self.peer_id, |p| p.sent_bytes += bytes),
                    Err(error) if error.is_full() => {
                        // The peer does not keep up: drop, and let raft slow down.
                        self.shared
                            .metrics
                            .peer(self.peer_id, |p| p.sent_failures += 1);
                        self.unreachable();
                    }
                    Err(_) => break,
                }
            }
            drop(stream_tx);
            if let Err(status) = call.await {
                tracing::debug!(peer = %format!("{:x}", self.peer_id), %status, "raft stream ended");
                if status.code() == tonic::Code::PermissionDenied
                    && status.message() == REMOVED_MEMBER_TEXT
                {
                    let _ = self.inbox.send(PeerInput::Removed).await;
                }
            }
            self.shared.set_peer_active(self.peer_id, None);
            self.unreachable();
        }
    }

    fn unreachable(&self) {
        let _ = self.inbox.try_send(PeerInput::Unreachable(self.peer_id));
    }
}

/// How often the round trip to each peer is measured (etcd probes every few seconds too).
pub const ROUND_TRIP_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Measures the round trip to peer `peer_id` over `channel` (a Hello call) every
/// [`ROUND_TRIP_PROBE_INTERVAL`], first right away, into
/// `etcd_network_peer_round_trip_time_seconds`; ends with the connection.
async fn probe_round_trips(
    channel: GrpcChannel,
    identity: PeerIdentity,
    peer_id: u64,
    shared: SharedRef,
) {
    let mut client = PeerClient::new(channel.clone());
    while !channel.is_closed() && !shared.stopping.load(Ordering::Acquire) {
        let request = peerpb::HelloRequest {
            cluster_token: identity.cluster_token.clone(),
            cluster_id: identity.cluster_id,
            sender: None,
            expected_member_id: peer_id,
            protocol_version: keel_proto::PEER_PROTOCOL_VERSION,
            server_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let started = std::time::Instant::now();
        if client.hello(request).await.is_ok() {
            let round_trip = started.elapsed();
            shared
                .metrics
                .peer(peer_id, |p| p.observe_round_trip(round_trip));
        }
        glommio::timer::sleep(ROUND_TRIP_PROBE_INTERVAL).await;
    }
}

/// Asks the leader about leases for clients of this member (keep-alives and TimeToLive that
/// reached a follower), one task per question so a slow answer holds up no other.
async fn forward_leases(
    requests: async_channel::Receiver<LeaseForward>,
    identity: PeerIdentity,
    peers: PeerAddrs,
    shared: SharedRef,
) {
    let channels: Rc<RefCell<HashMap<u64, GrpcChannel>>> = Rc::default();
    let cluster_id = identity.cluster_id;
    while let Ok(request) = requests.recv().await {
        let options = identity.client.clone();
        let channels = channels.clone();
        let leader = shared.leader_id.load(Ordering::Acquire);
        let addr = peers.borrow().get(&leader).copied();
        glommio::spawn_local(async move {
            let LeaseForward { id, renew, reply } = request;
            let Some(addr) = addr else {
                let _ = reply.send(Err(ServerError::NoLeader));
                return;
            };
            let cached = channels
                .borrow()
                .get(&leader)
                .filter(|c| !c.is_closed())
                .cloned();
            let channel = match cached {
                Some(channel) => channel,
                None => match addr.connect(&options).await {
                    Ok(channel) => {
                        channels.borrow_mut().insert(leader, channel.clone());
                        channel
                    }
                    Err(_) => {
                        let _ = reply.send(Err(ServerError::NoLeader));
                        return;
                    }
                },
            };
            let answer = PeerClient::new(channel)
                .lease(peerpb::LeaseRequest {
                    cluster_id,
                    id,
                    renew,
                })
                .await;
            let _ = reply.send(match answer {
                Ok(response) => {
                    let response = response.into_inner();
                    Ok(response.found.then_some(LeaseClock {
                        granted_ttl: response.granted_ttl,
                        remaining_seconds: response.remaining_seconds,
                    }))
                }
                // The member asked no longer leads (or cannot be reached): etcd's client
                // retries on this error.
                Err(_) => Err(ServerError::LeaderChanged),
            });
        })
        .detach();
    }
}

/// Asks the leader to promote learners for clients of this member (MemberPromote reached a
/// follower), one task per request.
async fn forward_promotes(
    requests: async_channel::Receiver<PromoteForward>,
    identity: PeerIdentity,
    peers: PeerAddrs,
    shared: SharedRef,
) {
    let cluster_id = identity.cluster_id;
    while let Ok(request) = requests.recv().await {
        let options = identity.client.clone();
        let leader = shared.leader_id.load(Ordering::Acquire);
        let addr = peers.borrow().get(&leader).copied();
        glommio::spawn_local(async move {
            let PromoteForward { id, reply } = request;
            let Some(addr) = addr else {
                let _ = reply.send(Err(ServerError::NoLeader));
                return;
            };
            let answer = match addr.connect(&options).await {
                Ok(channel) => {
                    PeerClient::new(channel)
                        .promote(peerpb::PromoteRequest {
                            cluster_id,
                            member_id: id,
                        })
                        .await
                }
                Err(_) => {
                    let _ = reply.send(Err(ServerError::NoLeader));
                    return;
                }
            };
            let _ = reply.send(match answer {
                Ok(response) => {
                    let response = response.into_inner();
                    if response.error.is_empty() {
                        Ok(response.members.into_iter().map(member_of).collect())
                    } else {
                        Err(ServerError::from_text(&response.error)
                            .unwrap_or(ServerError::LeaderChanged))
                    }
                }
                Err(_) => Err(ServerError::LeaderChanged),
            });
        })
        .detach();
    }
}

/// A member as the peer protocol carries it.
pub fn member_info(member: &pb::Member) -> peerpb::MemberInfo {
    peerpb::MemberInfo {
        member_id: member.id,
        name: member.name.clone(),
        peer_urls: member.peer_ur_ls.clone(),
        client_urls: member.client_ur_ls.clone(),
        is_learner: member.is_learner,
    }
}

/// A member from the peer protocol.
pub fn member_of(info: peerpb::MemberInfo) -> pb::Member {
    pb::Member {
        id: info.member_id,
        name: info.name,
        peer_ur_ls: info.peer_urls,
        client_ur_ls: info.client_urls,
        is_learner: info.is_learner,
    }
}

impl PeerService {
    /// Stores the chunks of one incoming snapshot; once the last is durable, hands the
    /// snapshot message to raft. `from` is set from the first chunk on (for the metrics).
    async fn receive_snapshot(
        &self,
        stream: &mut Streaming<peerpb::SnapshotChunk>,
        state: &mut Option<IncomingSnapshot>,
        from: &mut Option<u64>,
    ) -> Result<Response<peerpb::SnapshotReceived>, Status> {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if from.is_none() {
                *from = Some(chunk.from_member_id);
                self.shared
                    .metrics
                    .peer(chunk.from_member_id, |p| p.snapshot_receive_inflights += 1);
            }
            // Writes and syncs block: they run on a thread of their own, not on the raft
            // core's thread, which must go on ticking meanwhile.
            let (snap_dir, identity, mut incoming) =
                (self.snap_dir.clone(), self.identity.clone(), state.take());
            let (incoming, stored) =
                crate::executor::on_own_thread("keel-snapshot-io", move || {
                    let stored = store_snapshot_chunk(&snap_dir, &identity, chunk, &mut incoming);
                    (incoming, stored)
                })
                .await
                .map_err(|_| Status::internal("the snapshot writer thread panicked"))?;
            *state = incoming;
            if let Some((message, bytes)) = stored? {
                let message = Message::parse_from_bytes(&message).map_err(|e| {
                    Status::invalid_argument(format!("undecodable snapshot message: {e}"))
                })?;
                // The checkpoint file is durable: raft may now install it.
                self.inbox
                    .send(PeerInput::Messages(vec![message]))
                    .await
                    .map_err(|_| Status::unavailable("etcdserver: server stopped"))?;
                return Ok(Response::new(peerpb::SnapshotReceived {
                    bytes_received: bytes,
                }));
            }
        }
        Err(Status::invalid_argument(
            "snapshot stream ended before its last chunk",
        ))
    }
}

/// Sends the snapshots raft asks for, one at a time, each on a connection of its own, and
/// tells raft how each went.
async fn send_snapshots(
    queue: async_channel::Receiver<Message>,
    identity: PeerIdentity,
    peers: PeerAddrs,
    snap_dir: PathBuf,
    inbox: async_channel::Sender<PeerInput>,
    shared: SharedRef,
) {
    while let Ok(message) = queue.recv().await {
        let to = message.to;
        let index = message.get_snapshot().get_metadata().index;
        let started = std::time::Instant::now();
        shared.metrics.peer(to, |p| p.snapshot_send_inflights += 1);
        let addr = peers.borrow().get(&to).copied();
        let sent = match addr {
            Some(addr) => send_snapshot(&identity, addr, &snap_dir, message).await,
            None => Err(anyhow::anyhow!("no address for member {to:x}")),
        };
        let ok = match sent {
            Ok(bytes) => {
                tracing::info!(to = %format!("{to:x}"), index, bytes,
                    seconds = started.elapsed().as_secs_f64(), "sent a snapshot");
                true
            }
            Err(error) => {
                tracing::warn!(to = %format!("{to:x}"), index, %error, "sending a snapshot failed");
                false
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        shared.metrics.peer(to, |p| {
            p.snapshot_send_inflights = p.snapshot_send_inflights.saturating_sub(1);
            if ok {
                p.snapshot_send_success += 1;
                p.snapshot_send_seconds += seconds;
            } else {
                p.snapshot_send_failures += 1;
            }
        });
        let _ = inbox.send(PeerInput::SnapshotStatus { to, ok }).await;
    }
}

/// Streams the checkpoint file of `message`'s snapshot to `addr` in chunks; returns the bytes
/// sent once the receiver has stored them durably.
async fn send_snapshot(
    identity: &PeerIdentity,
    addr: PeerEndpoint,
    snap_dir: &Path,
    message: Message,
) -> anyhow::Result<u64> {
    use futures::SinkExt;
    use std::io::Read;

    let meta = message.get_snapshot().get_metadata();
    let (index, term) = (meta.index, meta.term);
    let path = snap_dir.join(keel_engine::checkpoint::file_name(index));
    // An open file stays readable even if a newer checkpoint deletes its name meanwhile.
    // File reads block: they run on glommio's blocking pool, not on the raft core's thread.
    let opened = path.clone();
    let (mut file, total_size) = glommio::executor()
        .spawn_blocking(move || {
            let file = std::fs::File::open(&opened)?;
            let size = file.metadata()?.len();
            Ok::<_, std::io::Error>((file, size))
        })
        .await
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
    let channel = addr.connect(&identity.client).await?;
    let (mut chunks, stream) = futures::channel::mpsc::channel::<peerpb::SnapshotChunk>(4);
    let call = glommio::spawn_local(async move { PeerClient::new(channel).snapshot(stream).await });
    let mut raft_message = Some(message.write_to_bytes()?);
    let mut offset = 0u64;
    loop {
        let len = SNAPSHOT_CHUNK_BYTES.min((total_size - offset) as usize);
        let (returned, data) = glommio::executor()
            .spawn_blocking(move || {
                let mut data = vec![0u8; len];
                let read = file.read_exact(&mut data);
                (file, read.map(|_| data))
            })
            .await;
        file = returned;
        let data = data?;
        let last = offset + data.len() as u64 == total_size;
        let chunk = peerpb::SnapshotChunk {
            cluster_id: identity.cluster_id,
            from_member_id: identity.member_id,
            to_member_id: message.to,
            term,
            index,
            total_size,
            offset,
            crc32: crc32fast::hash(&data),
            last,
            raft_message: raft_message.take().unwrap_or_default(),
            data,
        };
        offset += chunk.data.len() as u64;
        if chunks.send(chunk).await.is_err() {
            break;
        }
        if last {
            break;
        }
        glommio::yield_if_needed().await;
    }
    drop(chunks);
    let received = call.await?.into_inner();
    anyhow::ensure!(
        received.bytes_received == total_size,
        "the receiver stored {} of {total_size} bytes",
        received.bytes_received
    );
    Ok(total_size)
}

/// A snapshot being received: the temporary file and what its first chunk announced.
struct IncomingSnapshot {
    file: std::fs::File,
    temp: PathBuf,
    index: u64,
    total_size: u64,
    written: u64,
    raft_message: Vec<u8>,
}

/// Stores one chunk of a snapshot stream into the checkpoint file of its index, checking it;
/// on the last chunk makes the file durable under its final name and returns the raft message
/// to step and the bytes stored.
fn store_snapshot_chunk(
    snap_dir: &Path,
    identity: &PeerIdentity,
    chunk: peerpb::SnapshotChunk,
    state: &mut Option<IncomingSnapshot>,
) -> Result<Option<(Vec<u8>, u64)>, Status> {
    use std::io::Write;
    if chunk.cluster_id != identity.cluster_id || chunk.to_member_id != identity.member_id {
        return Err(Status::failed_precondition(
            "snapshot for another cluster or member",
        ));
    }
    if crc32fast::hash(&chunk.data) != chunk.crc32 {
        return Err(Status::data_loss(format!(
            "snapshot chunk at offset {} fails its CRC",
            chunk.offset
        )));
    }
    if state.is_none() {
        if chunk.offset != 0 || chunk.raft_message.is_empty() {
            return Err(Status::invalid_argument(
                "snapshot does not start at offset 0",
            ));
        }
        let temp = snap_dir.join(format!(
            "{}.tmp",
            keel_engine::checkpoint::file_name(chunk.index)
        ));
        let file = std::fs::File::create(&temp)
            .map_err(|e| Status::internal(format!("creating {}: {e}", temp.display())))?;
        *state = Some(IncomingSnapshot {
            file,
            temp,
            index: chunk.index,
            total_size: chunk.total_size,
            written: 0,
            raft_message: chunk.raft_message.clone(),
        });
    }
    let incoming = state.as_mut().expect("set above");
    if chunk.index != incoming.index
        || chunk.total_size != incoming.total_size
        || chunk.offset != incoming.written
    {
        return Err(Status::invalid_argument(format!(
            "snapshot chunk at offset {} does not follow {} bytes of snapshot {}",
            chunk.offset, incoming.written, incoming.index
        )));
    }
    incoming
        .file
        .write_all(&chunk.data)
        .map_err(|e| Status::internal(format!("writing {}: {e}", incoming.temp.display())))?;
    incoming.written += chunk.data.len() as u64;
    if !chunk.last {
        return Ok(None);
    }
    if incoming.written != incoming.total_size {
        return Err(Status::invalid_argument(format!(
            "snapshot ended at {} of {} bytes",
            incoming.written, incoming.total_size
        )));
    }
    incoming
        .file
        .sync_all()
        .map_err(|e| Status::internal(format!("syncing {}: {e}", incoming.temp.display())))?;
    let name = snap_dir.join(keel_engine::checkpoint::file_name(incoming.index));
    std::fs::rename(&incoming.temp, &name)
        .and_then(|_| std::fs::File::open(snap_dir)?.sync_all())
        .map_err(|e| Status::internal(format!("storing {}: {e}", name.display())))?;
    let done = state.take().expect("set above");
    Ok(Some((done.raft_message, done.total_size)))
}

/// The `Peer` service: receives raft streams, snapshots and lease questions.
struct PeerService {
    identity: PeerIdentity,
    inbox: async_channel::Sender<PeerInput>,
    shared: SharedRef,
    snap_dir: PathBuf,
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn raft(
        &self,
        request: Request<Streaming<peerpb::RaftBatch>>,
    ) -> Result<Response<peerpb::RaftStreamSummary>, Status> {
        let mut stream = request.into_inner();
        let mut received = 0u64;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            if batch.cluster_id != self.identity.cluster_id {
                return Err(Status::failed_precondition(format!(
                    "cluster ID mismatch: this member belongs to cluster {:x}, the sender to {:x}",
                    self.identity.cluster_id, batch.cluster_id
                )));
            }
            if self
                .shared
                .removed_members
                .lock()
                .expect("members lock")
                .contains(&batch.from_member_id)
            {
                tracing::warn!(remote = %format!("{:x}", batch.from_member_id),
                    "rejected stream from remote peer because it was removed");
                return Err(Status::permission_denied(REMOVED_MEMBER_TEXT));
            }
            if batch.to_member_id != self.identity.member_id {
                return Err(Status::failed_precondition(format!(
                    "member ID mismatch: this member is {:x}, the batch is for {:x}",
                    self.identity.member_id, batch.to_member_id
                )));
            }
            let mut messages = Vec::with_capacity(batch.messages.len());
            for encoded in &batch.messages {
                match Message::parse_from_bytes(&encoded.message) {
                    Ok(message) if message.from == batch.from_member_id => messages.push(message),
                    Ok(message) => {
                        return Err(Status::invalid_argument(format!(
                            "raft message from {:x} in a batch from {:x}",
                            message.from, batch.from_member_id
                        )))
                    }
                    Err(error) => {
                        return Err(Status::invalid_argument(format!(
                            "undecodable raft message: {error}"
                        )))
                    }
                }
            }
            received += messages.len() as u64;
            let bytes = prost::Message::encoded_len(&batch) as u64;
            self.shared
                .metrics
                .peer(batch.from_member_id, |p| p.received_bytes += bytes);
            // A full inbox drops the batch: the raft core is behind, and raft retries.
            let _ = self.inbox.try_send(PeerInput::Messages(messages));
        }
        Ok(Response::new(peerpb::RaftStreamSummary {
            messages_received: received,
        }))
    }

    async fn snapshot(
        &self,
        request: Request<Streaming<peerpb::SnapshotChunk>>,
    ) -> Result<Response<peerpb::SnapshotReceived>, Status> {
        let mut stream = request.into_inner();
        let mut state = None;
        let started = std::time::Instant::now();
        let mut from = None;
        let result = self
            .receive_snapshot(&mut stream, &mut state, &mut from)
            .await;
        if let Some(from) = from {
            let seconds = started.elapsed().as_secs_f64();
            self.shared.metrics.peer(from, |p| {
                p.snapshot_receive_inflights = p.snapshot_receive_inflights.saturating_sub(1);
                match &result {
                    Ok(_) => {
                        p.snapshot_receive_success += 1;
                        p.snapshot_receive_seconds += seconds;
                    }
                    Err(_) => p.snapshot_receive_failures += 1,
                }
            });
        }
        if result.is_err() {
            if let Some(incoming) = state {
                let _ = std::fs::remove_file(incoming.temp);
            }
        }
        result
    }

    async fn lease(
        &self,
        request: Request<peerpb::LeaseRequest>,
    ) -> Result<Response<peerpb::LeaseResponse>, Status> {
        let request = request.into_inner();
        if request.cluster_id != self.identity.cluster_id {
            return Err(Status::failed_precondition("cluster ID mismatch"));
        }
        if !self.shared.is_leader() {
            return Err(Status::failed_precondition("etcdserver: not leader"));
        }
        let clock = self.shared.local_lease_clock(request.id, request.renew);
        if request.renew && clock.is_some() {
            self.shared.metrics.lease_renewed.inc();
        }
        Ok(Response::new(peerpb::LeaseResponse {
            found: clock.is_some(),
            granted_ttl: clock.map_or(0, |c| c.granted_ttl),
            remaining_seconds: clock.map_or(-1, |c| c.remaining_seconds),
        }))
    }

    async fn promote(
        &self,
        request: Request<peerpb::PromoteRequest>,
    ) -> Result<Response<peerpb::PromoteResponse>, Status> {
        let request = request.into_inner();
        if request.cluster_id != self.identity.cluster_id {
            return Err(Status::failed_precondition("cluster ID mismatch"));
        }
        let response = match membership::promote_here(&self.shared, request.member_id).await {
            Ok(members) => peerpb::PromoteResponse {
                error: String::new(),
                members: members.iter().map(member_info).collect(),
            },
            Err(error) => peerpb::PromoteResponse {
                error: error.to_string(),
                members: Vec::new(),
            },
        };
        Ok(Response::new(response))
    }

    async fn members(
        &self,
        request: Request<peerpb::MembersRequest>,
    ) -> Result<Response<peerpb::MembersResponse>, Status> {
        if request.get_ref().cluster_token != self.identity.cluster_token {
            return Err(Status::failed_precondition(format!(
                "cluster token mismatch: this cluster's --initial-cluster-token is {:?}, the \
                 joining member's {:?}",
                self.identity.cluster_token,
                request.get_ref().cluster_token
            )));
        }
        Ok(Response::new(peerpb::MembersResponse {
            cluster_id: self.identity.cluster_id,
            members: self.shared.member_list().iter().map(member_info).collect(),
        }))
    }

    async fn hello(
        &self,
        request: Request<peerpb::HelloRequest>,
    ) -> Result<Response<peerpb::HelloResponse>, Status> {
        let request = request.into_inner();
        if request.cluster_token != self.identity.cluster_token
            || (request.cluster_id != 0 && request.cluster_id != self.identity.cluster_id)
        {
            return Err(Status::failed_precondition(format!(
                "cluster mismatch: this member is in cluster {:x} (token {:?})",
                self.identity.cluster_id, self.identity.cluster_token
            )));
        }
        Ok(Response::new(peerpb::HelloResponse {
            cluster_id: self.identity.cluster_id,
            member: Some(peerpb::MemberInfo {
                member_id: self.identity.member_id,
                name: self.identity.name.clone(),
                peer_urls: self.identity.peer_urls.clone(),
                client_urls: self.identity.client_urls.clone(),
                is_learner: false,
            }),
            protocol_version: keel_proto::PEER_PROTOCOL_VERSION,
            server_version: env!("CARGO_PKG_VERSION").to_string(),
        }))
    }
}
