//! State shared by the raft core and the front cores.
//!
//! The MVCC store sits behind one `RwLock`: the raft core takes the write lock once per batch
//! to apply it, front cores take the read lock per read. This is a deliberate simplification
//! of ARCHITECTURE.md's per-core read views (see docs/architecture.md): a batch applies in
//! microseconds, so readers wait at most that long, and no copy of the index is needed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use keel_engine::mvcc::{self, Store};
use keel_proto::etcdserverpb as pb;

use crate::metrics::{Metrics, StoreGauges};
use crate::server::auth::{AuthInfo, AuthRef};
use crate::server::command::Command;
use crate::server::error::ServerError;
use crate::server::tokens::Tokens;

/// The response header every reply carries.
#[derive(Clone, Copy, Debug)]
pub struct HeaderFields {
    /// The cluster's id.
    pub cluster_id: u64,
    /// This member's id.
    pub member_id: u64,
    /// The raft term when the response was made.
    pub raft_term: u64,
}

impl HeaderFields {
    /// A header at `revision`.
    pub fn at(&self, revision: i64) -> Option<pb::ResponseHeader> {
        Some(pb::ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.raft_term,
        })
    }
}

/// How far beyond the commit index this member knows a simple token's index may be for the
/// member to wait until it applies it (a token issued on the leader reaches a follower before
/// the follower hears of the commit); a token further out is refused as invalid.
pub const SIMPLE_TOKEN_INDEX_SLACK: u64 = 10_000;

/// The etcd API version Keel speaks, reported by Status and `/version`.
pub const ETCD_API_VERSION: &str = "3.5.0";

/// The cluster version reported by `/version`.
pub const ETCD_CLUSTER_VERSION: &str = "3.5.0";

/// gRPC overhead etcd allows on top of `--max-request-bytes` when decoding a message.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Bytes etcd adds around a request when it measures it against `--max-request-bytes` (the
/// internal raft request header); keeps Keel's "request is too large" at the same sizes.
pub const REQUEST_ENVELOPE_BYTES: usize = 16;

/// What a command did, handed back to the client that proposed it.
#[derive(Debug)]
pub enum Applied {
    /// Result of a put.
    Put(mvcc::PutResponse),
    /// Result of a delete.
    DeleteRange(mvcc::DeleteRangeResponse),
    /// Result of a txn.
    Txn(mvcc::TxnResponse),
    /// A compaction; the store revision at the time.
    Compact {
        /// The store's current revision after the compaction.
        revision: i64,
    },
    /// A lease grant.
    LeaseGrant {
        /// The lease id.
        id: i64,
        /// The granted TTL in seconds.
        ttl: i64,
    },
    /// A lease revocation; the store revision after it.
    LeaseRevoke {
        /// The store's current revision after the revocation.
        revision: i64,
    },
    /// An alarm request; the alarms it reports.
    Alarm(Vec<pb::AlarmMember>),
    /// A member's published attributes were recorded.
    MemberAttributes,
    /// A downgrade was started or ended.
    DowngradeInfoSet,
    /// A membership change applied; the members after it, sorted by id.
    Members(Vec<pb::Member>),
    /// An auth change applied; the store revision at the time.
    Auth {
        /// The store's current revision.
        revision: i64,
    },
    /// A user authenticated.
    Authenticated {
        /// The user.
        username: String,
        /// The auth revision the token is issued at.
        auth_revision: u64,
        /// The simple token assigned (`None` with JWT tokens: the proposing member signs one).
        token: Option<String>,
        /// The store's current revision.
        revision: i64,
    },
}

/// The result of applying a command.
pub type ApplyResult = Result<Applied, ServerError>;

/// Where a linearizable read learns the index it must wait for (its ReadIndex).
pub type ReadReply = oneshot::Sender<Result<u64, ServerError>>;

/// A lease's clock as the leader reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseClock {
    /// The granted TTL in seconds.
    pub granted_ttl: i64,
    /// Whole seconds left.
    pub remaining_seconds: i64,
}

/// A lease question for the leader, from a member that does not lead (see
/// `raft::transport`).
pub struct LeaseForward {
    /// The lease.
    pub id: i64,
    /// True to renew it.
    pub renew: bool,
    /// The leader's answer: `None` when it has no clock for the lease.
    pub reply: oneshot::Sender<Result<Option<LeaseClock>, ServerError>>,
}

/// A request to hand leadership to another voter (Maintenance MoveLeader, or the leader's
/// shutdown).
pub struct LeaderTransfer {
    /// The voter to hand over to; 0 for the most caught-up follower.
    pub target: u64,
    /// Answered once the transferee leads, or with etcd's error.
    pub reply: oneshot::Sender<Result<(), ServerError>>,
}

/// A MemberPromote for the leader, from a member that does not lead (see `raft::transport`).
pub struct PromoteForward {
    /// The learner.
    pub id: u64,
    /// The leader's answer: the members after the promotion.
    pub reply: oneshot::Sender<Result<Vec<pb::Member>, ServerError>>,
}

/// A command waiting for the raft core, with the channel its result goes back on.
pub struct Proposal {
    /// The command.
    pub command: Command,
    /// Where the result goes; `None` for commands the raft core made itself (lease expiry).
    pub reply: Option<oneshot::Sender<ApplyResult>>,
}

/// This member, as MemberList reports it.
#[derive(Clone, Debug)]
pub struct MemberInfo {
    /// `--name`.
    pub name: String,
    /// `--initial-advertise-peer-urls`.
    pub peer_urls: Vec<String>,
    /// `--advertise-client-urls`.
    pub client_urls: Vec<String>,
}

/// Request limits from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// `--max-request-bytes`.
    pub request_bytes_max: usize,
    /// `--max-txn-ops`.
    pub txn_ops_max: usize,
    /// `--quota-backend-bytes` (the default applied).
    pub quota_bytes: u64,
    /// Smallest lease TTL granted, in seconds (etcd: 1.5 election timeouts, rounded up).
    pub lease_ttl_min_seconds: i64,
    /// `--strict-reconfig-check`: refuse membership changes that would leave too few started
    /// or connected voters.
    pub strict_reconfig_check: bool,
    /// `--experimental-max-learners`.
    pub max_learners: usize,
}

/// When each lease expires. Kept beside the store because expiry is clock-based and local
/// to the member that counts it; the store holds only what every member agrees on.
#[derive(Debug, Default)]
pub struct LeaseClocks {
    deadlines: HashMap<i64, (Instant, i64)>,
}

impl LeaseClocks {
    /// Starts (or restarts) lease `id`'s clock with `ttl_seconds` from now.
    pub fn start(&mut self, id: i64, ttl_seconds: i64) {
        let deadline = Instant::now() + Duration::from_secs(ttl_seconds.max(0) as u64);
        self.deadlines.insert(id, (deadline, ttl_seconds));
    }

    /// Renews lease `id` with its granted TTL; returns that TTL, or `None` if unknown.
    pub fn renew(&mut self, id: i64) -> Option<i64> {
        let (deadline, ttl) = self.deadlines.get_mut(&id)?;
        *deadline = Instant::now() + Duration::from_secs((*ttl).max(0) as u64);
        Some(*ttl)
    }

    /// The granted TTL of lease `id`, `None` if unknown.
    pub fn granted_seconds(&self, id: i64) -> Option<i64> {
        self.deadlines.get(&id).map(|(_, ttl)| *ttl)
    }

    /// Seconds left on lease `id` (truncated, as etcd reports it), `None` if unknown.
    pub fn remaining_seconds(&self, id: i64) -> Option<i64> {
        let (deadline, _) = self.deadlines.get(&id)?;
        Some(deadline.saturating_duration_since(Instant::now()).as_secs() as i64)
    }

    /// Forgets lease `id`.
    pub fn remove(&mut self, id: i64) {
        self.deadlines.remove(&id);
    }

    /// Leases whose deadline has passed, at most `limit`, in id order (deterministic).
    pub fn expired(&self, now: Instant, limit: usize) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .deadlines
            .iter()
            .filter(|(_, (deadline, _))| *deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids.truncate(limit);
        ids
    }
}

/// etcd's request-id generator, used for server-chosen lease ids: the member id's low 16 bits,
/// then a millisecond timestamp and a counter, so ids from different members and restarts do
/// not collide.
#[derive(Debug)]
pub struct IdGenerator {
    prefix: u64,
    suffix: AtomicU64,
}

impl IdGenerator {
    /// A generator for `member_id`, seeded with the current time.
    pub fn new(member_id: u64) -> IdGenerator {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        IdGenerator::with_seed(member_id, millis)
    }

    /// A generator for `member_id` whose counter starts from `millis` (a simulation passes a
    /// fixed value so that a run replays exactly).
    pub fn with_seed(member_id: u64, millis: u64) -> IdGenerator {
        IdGenerator {
            prefix: member_id << 48,
            suffix: AtomicU64::new((millis & ((1 << 40) - 1)) << 8),
        }
    }

    /// The next request id (never 0): finds the client waiting for an entry.
    pub fn next_request_id(&self) -> u64 {
        loop {
            let suffix = self.suffix.fetch_add(1, Ordering::Relaxed) + 1;
            let id = self.prefix | (suffix & ((1 << 48) - 1));
            if id != 0 {
                return id;
            }
        }
    }

    /// The next id: positive and never 0.
    pub fn next_lease_id(&self) -> i64 {
        loop {
            let suffix = self.suffix.fetch_add(1, Ordering::Relaxed) + 1;
            let id = (self.prefix | (suffix & ((1 << 48) - 1))) & (i64::MAX as u64);
            if id != 0 {
                return id as i64;
            }
        }
    }
}

/// Everything the services and the raft core share.
pub struct Shared {
    /// The MVCC store.
    pub store: RwLock<Store>,
    /// The cluster id.
    pub cluster_id: u64,
    /// This member's id.
    pub member_id: u64,
    /// The current raft term.
    pub raft_term: AtomicU64,
    /// The leader this member knows of (0: none).
    pub leader_id: AtomicU64,
    /// True while this member leads.
    pub is_leader: AtomicBool,
    /// Number of voting members.
    pub voters: AtomicUsize,
    /// Ids of the members removed from the cluster: their peer messages are refused, which
    /// tells a removed member that missed its own removal to stop.
    pub removed_members: Mutex<Vec<u64>>,
    /// True while this member is a learner.
    pub is_learner: AtomicBool,
    /// When the peer transport's stream to each member came up (etcd's `ActiveSince`); a
    /// member with no entry is not connected.
    pub peers_active_since: Mutex<HashMap<u64, Instant>>,
    /// MemberPromotes for the leader, sent by the peer transport.
    pub promote_forwards: async_channel::Sender<PromoteForward>,
    /// Every member, as the log last set them (attributes published by each member).
    pub members: Mutex<Vec<pb::Member>>,
    /// This member.
    pub member: MemberInfo,
    /// Linearizable reads waiting for a ReadIndex round on the raft core.
    pub reads: async_channel::Sender<ReadReply>,
    /// Lease questions for the leader, sent by the peer transport.
    pub lease_forwards: async_channel::Sender<LeaseForward>,
    /// Leadership transfers for the raft core.
    pub transfers: async_channel::Sender<LeaderTransfer>,
    /// Request limits.
    pub limits: Limits,
    /// The raft core's inbox for proposals.
    pub proposals: async_channel::Sender<Proposal>,
    /// Notified after every applied batch that changed the store revision.
    pub revision_changed: event_listener::Event,
    /// Index of the last applied log entry.
    pub applied_index: AtomicU64,
    /// The raft commit index this member knows.
    pub commit_index: AtomicU64,
    /// Lease expiry clocks.
    pub lease_clocks: Mutex<LeaseClocks>,
    /// Active alarms.
    pub alarms: Mutex<Vec<pb::AlarmMember>>,
    /// The downgrade in progress, if any (Downgrade ENABLE until CANCEL).
    pub downgrade: Mutex<Option<pb::DowngradeInfo>>,
    /// The auth state as last applied (copy-on-write: the raft core replaces it after a
    /// change; requests check against the snapshot they took).
    auth: RwLock<AuthRef>,
    /// Whether `auth` is enabled: lets a request skip the auth state while auth is off.
    auth_enabled: AtomicBool,
    /// Auth tokens: simple tokens handed out, or the JWT keys.
    pub tokens: Tokens,
    /// `--bcrypt-cost`.
    pub bcrypt_cost: u32,
    /// Where a Snapshot's backend file is written while it is streamed.
    pub scratch_dir: std::path::PathBuf,
    /// Metrics.
    pub metrics: Metrics,
    /// Server-chosen lease ids.
    pub ids: IdGenerator,
    /// Set when the WAL failed: the member refuses writes until restarted.
    pub wal_failed: AtomicBool,
    /// Set once this member's attributes (name, client URLs) are applied through the log;
    /// until then it is not ready (etcd serves no client before it has published them).
    pub published: AtomicBool,
    /// Set when shutdown begins; watch and keep-alive streams end.
    pub stopping: AtomicBool,
    /// Threads waiting in [`Shared::write_store`].
    store_writers_waiting: AtomicUsize,
    /// Notified when shutdown begins.
    pub stop_event: event_listener::Event,
    /// How often idle watchers with `progress_notify` get a progress response.
    pub watch_progress_interval: Duration,
}

/// What [`Shared::new`] needs besides the recovered state.
pub struct SharedConfig {
    /// The cluster id.
    pub cluster_id: u64,
    /// This member's id.
    pub member_id: u64,
    /// This member's name and URLs.
    pub member: MemberInfo,
    /// Request limits.
    pub limits: Limits,
    /// How often idle watchers with `progress_notify` get a progress response.
    pub watch_progress_interval: Duration,
    /// Seeds request and lease ids (`None`: the current time, as etcd does).
    pub id_seed: Option<u64>,
    /// The token provider (`--auth-token`).
    pub tokens: Tokens,
    /// `--bcrypt-cost`.
    pub bcrypt_cost: u32,
    /// Where a Snapshot's backend file is written while it is streamed (the data dir's
    /// checkpoint directory).
    pub scratch_dir: std::path::PathBuf,
}

/// The raft core's ends of the channels [`Shared`] sends on.
pub struct CoreInputs {
    /// Proposals from clients.
    pub proposals: async_channel::Receiver<Proposal>,
    /// Linearizable reads waiting for a ReadIndex round.
    pub reads: async_channel::Receiver<ReadReply>,
    /// Lease questions to forward to the leader (served by the peer transport).
    pub lease_forwards: async_channel::Receiver<LeaseForward>,
    /// Leadership transfers.
    pub transfers: async_channel::Receiver<LeaderTransfer>,
    /// MemberPromotes to forward to the leader (served by the peer transport).
    pub promote_forwards: async_channel::Receiver<PromoteForward>,
}

impl Shared {
    /// The shared state of a member that recovered `store` with `meta`, applied through
    /// `applied_index`; returns it with the raft core's ends of its channels.
    pub fn new(
        config: SharedConfig,
        store: Store,
        meta: &crate::raft::records::StateMeta,
        applied_index: u64,
    ) -> (Arc<Shared>, CoreInputs) {
        let (proposals, proposal_inbox) =
            async_channel::bounded(crate::server::PROPOSALS_QUEUED_MAX);
        let (reads, read_inbox) = async_channel::bounded(crate::server::PROPOSALS_QUEUED_MAX);
        let (lease_forwards, lease_forward_inbox) =
            async_channel::bounded(crate::server::PROPOSALS_QUEUED_MAX);
        let (transfers, transfer_inbox) = async_channel::bounded(16);
        let (promote_forwards, promote_forward_inbox) = async_channel::bounded(16);
        let ids = match config.id_seed {
            Some(seed) => IdGenerator::with_seed(config.member_id, seed),
            None => IdGenerator::new(config.member_id),
        };
        let shared = Arc::new(Shared {
            store: RwLock::new(store),
            cluster_id: config.cluster_id,
            member_id: config.member_id,
            raft_term: AtomicU64::new(meta.term),
            leader_id: AtomicU64::new(0),
            is_leader: AtomicBool::new(false),
            voters: AtomicUsize::new(meta.conf_state.voters.len()),
            is_learner: AtomicBool::new(meta.conf_state.learners.contains(&config.member_id)),
            peers_active_since: Mutex::new(HashMap::new()),
            removed_members: Mutex::new(meta.removed.clone()),
            promote_forwards,
            members: Mutex::new(meta.members.clone()),
            member: config.member,
            reads,
            lease_forwards,
            transfers,
            limits: config.limits,
            proposals,
            revision_changed: event_listener::Event::new(),
            applied_index: AtomicU64::new(applied_index),
            commit_index: AtomicU64::new(applied_index),
            lease_clocks: Mutex::new(LeaseClocks::default()),
            alarms: Mutex::new(meta.alarms.clone()),
            downgrade: Mutex::new(meta.downgrade.clone()),
            auth: RwLock::new(Arc::new(meta.auth.clone())),
            auth_enabled: AtomicBool::new(meta.auth.enabled()),
            tokens: config.tokens,
            bcrypt_cost: config.bcrypt_cost,
            scratch_dir: config.scratch_dir,
            metrics: Metrics::default(),
            ids,
            wal_failed: AtomicBool::new(false),
            published: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            store_writers_waiting: AtomicUsize::new(0),
            stop_event: event_listener::Event::new(),
            watch_progress_interval: config.watch_progress_interval,
        });
        shared.metrics.server_id.set(config.member_id);
        shared.metrics.auth_revision.set(meta.auth.revision());
        shared
            .metrics
            .is_learner
            .set(u64::from(shared.is_learner.load(Ordering::Acquire)));
        (
            shared,
            CoreInputs {
                proposals: proposal_inbox,
                reads: read_inbox,
                lease_forwards: lease_forward_inbox,
                transfers: transfer_inbox,
                promote_forwards: promote_forward_inbox,
            },
        )
    }

    /// Publishes raft's configuration: the number of voters and whether this member is a
    /// learner (`etcd_server_is_learner`).
    pub fn set_conf_state(&self, conf: &raft::eraftpb::ConfState) {
        self.voters.store(conf.voters.len(), Ordering::Release);
        let learner = conf.learners.contains(&self.member_id);
        self.is_learner.store(learner, Ordering::Release);
        self.metrics.is_learner.set(u64::from(learner));
    }

    /// etcd's learner filter: a learner serves only serializable Range, Status and Snapshot.
    pub fn refuse_if_learner(&self) -> Result<(), ServerError> {
        if self.is_learner.load(Ordering::Acquire) {
            return Err(ServerError::NotSupportedForLearner);
        }
        Ok(())
    }

    /// The members, sorted by id as etcd lists them.
    pub fn member_list(&self) -> Vec<pb::Member> {
        let mut members = self.members.lock().expect("members lock").clone();
        members.sort_by_key(|m| m.id);
        members
    }

    /// Ids of the members removed from the cluster.
    pub fn removed_list(&self) -> Vec<u64> {
        self.removed_members.lock().expect("members lock").clone()
    }

    /// Records that the peer stream to `id` came up (`Some(now)`) or broke (`None`).
    pub fn set_peer_active(&self, id: u64, since: Option<Instant>) {
        let mut active = self.peers_active_since.lock().expect("peer activity lock");
        let mut gauge = self.metrics.active_peers.lock().expect("peer metrics lock");
        match since {
            Some(at) => {
                active.entry(id).or_insert(at);
                gauge.insert(id);
            }
            None => {
                active.remove(&id);
                gauge.remove(&id);
            }
        }
    }

    /// Hands leadership to voter `target` (MoveLeader) and waits until it leads. Errors
    /// as etcd's: `not leader` on a member that does not lead, `bad leader transferee` for
    /// a member that is not a voter, `leader transfer took too long` after the request
    /// timeout. Moving leadership to the leader itself succeeds at once.
    pub async fn move_leader(&self, target: u64) -> Result<(), ServerError> {
        if !self.is_leader() {
            return Err(ServerError::NotLeader);
        }
        self.transfer_leadership(target).await
    }

    /// Hands leadership to `target` and waits until it leads: on the leader, to any voter
    /// (0: the most caught-up follower); on a follower, only to itself (raft forwards the
    /// request to the leader).
    pub async fn transfer_leadership(&self, target: u64) -> Result<(), ServerError> {
        let (reply, answer) = oneshot::channel();
        self.transfers
            .send(LeaderTransfer { target, reply })
            .await
            .map_err(|_| ServerError::Stopped)?;
        answer.await.unwrap_or(Err(ServerError::Stopped))
    }

    /// At shutdown, from a plain thread: if this member leads other voters, hands leadership
    /// to the most caught-up follower and waits until it leads (at most the request timeout),
    /// so the cluster need not wait an election timeout (etcd does the same). True when
    /// leadership moved.
    pub fn hand_over_leadership(&self) -> bool {
        if !self.is_leader() || self.voters.load(Ordering::Acquire) < 2 {
            return false;
        }
        let (reply, answer) = oneshot::channel();
        if self
            .transfers
            .try_send(LeaderTransfer { target: 0, reply })
            .is_err()
        {
            return false;
        }
        matches!(futures::executor::block_on(answer), Ok(Ok(())))
    }

    /// The auth state as last applied.
    pub fn auth(&self) -> AuthRef {
        self.auth.read().expect("auth lock").clone()
    }

    /// Publishes the auth state after apply changed it (raft core only).
    pub fn set_auth(&self, auth: AuthRef) {
        self.metrics.auth_revision.set(auth.revision());
        let enabled = auth.enabled();
        *self.auth.write().expect("auth lock") = auth;
        self.auth_enabled.store(enabled, Ordering::Release);
    }

    /// Who sends a request, from its token or (with `--client-cert-auth`) the common name of
    /// its verified client certificate, as etcd's `AuthInfoFromCtx`: `None` while auth is
    /// disabled; no user (auth revision 0) when neither is given. A token that is unknown,
    /// expired or badly signed is refused, with no fall-back to the certificate. A simple
    /// token is looked up once this member has applied the entry that assigned it.
    pub async fn caller(
        &self,
        token: Option<&str>,
        common_name: Option<&str>,
    ) -> Result<Option<AuthInfo>, ServerError> {
        if !self.auth_enabled.load(Ordering::Acquire) {
            return Ok(None);
        }
        let auth = self.auth();
        if !auth.enabled() {
            return Ok(None);
        }
        if let Some(token) = token {
            if let Some(index) = self.tokens.simple_token_index(token) {
                if index > self.applied_index.load(Ordering::Acquire) {
                    // Not applied here yet (a token from the leader, used at once on a
                    // follower): wait for it, as etcd does, unless the index is beyond
                    // anything this member could soon apply (a made-up token).
                    let known = self.commit_index.load(Ordering::Acquire);
                    if index > known.saturating_add(SIMPLE_TOKEN_INDEX_SLACK) {
                        return Err(ServerError::InvalidAuthToken);
                    }
                    self.wait_applied(index).await?;
                }
            }
            return self.tokens.info(token, self.auth().revision()).map(Some);
        }
        Ok(Some(match common_name {
            Some(name) => AuthInfo {
                username: name.to_string(),
                revision: auth.revision(),
            },
            None => AuthInfo::default(),
        }))
    }

    /// [`Shared::propose`] on behalf of `user` (when auth was enabled): apply checks the
    /// user's permissions first.
    pub async fn propose_as(&self, user: Option<AuthInfo>, command: Command) -> ApplyResult {
        match user {
            Some(user) => {
                self.propose(Command::Authorized {
                    user,
                    command: Box::new(command),
                })
                .await
            }
            None => self.propose(command).await,
        }
    }

    /// Sends `command` through the log and waits for its result. Refuses requests larger
    /// than `--max-request-bytes` as etcd does.
    pub async fn propose(&self, command: Command) -> ApplyResult {
        if command.body_len() + REQUEST_ENVELOPE_BYTES > self.limits.request_bytes_max {
            return Err(ServerError::RequestTooLarge);
        }
        if self.wal_failed.load(Ordering::Acquire) {
            return Err(ServerError::WalFailed);
        }
        let (reply, result) = oneshot::channel();
        self.metrics.proposals_pending.inc();
        let sent = self
            .proposals
            .send(Proposal {
                command,
                reply: Some(reply),
            })
            .await;
        let outcome = match sent {
            // The raft core answers "request timed out" when the entry does not apply within
            // the request timeout (handler futures must be Send, so no local timer here).
            Ok(()) => result.await.unwrap_or(Err(ServerError::Stopped)),
            Err(_) => Err(ServerError::Stopped),
        };
        self.metrics.proposals_pending.dec();
        outcome
    }

    /// The header every response carries, at `revision`.
    pub fn header(&self) -> HeaderFields {
        HeaderFields {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            raft_term: self.raft_term.load(Ordering::Acquire),
        }
    }

    /// True while this member knows a leader.
    pub fn has_leader(&self) -> bool {
        self.leader_id.load(Ordering::Acquire) != 0
    }

    /// True while this member leads.
    pub fn is_leader(&self) -> bool {
        self.is_leader.load(Ordering::Acquire)
    }

    /// Waits until this member has applied everything committed when the call began (a
    /// ReadIndex round), so that a read that follows is linearizable. Reads that arrive
    /// together share one round. The only voter, leading, needs no round: it answers a write
    /// only after applying it, so its store already holds every acknowledged write.
    pub async fn linearizable_barrier(&self) -> Result<(), ServerError> {
        if self.is_leader() && self.voters.load(Ordering::Acquire) == 1 {
            return Ok(());
        }
        if !self.has_leader() {
            return Err(ServerError::NoLeader);
        }
        let (reply, index) = oneshot::channel();
        if self.reads.send(reply).await.is_err() {
            return Err(ServerError::Stopped);
        }
        // The raft core answers "request timed out" when no ReadIndex comes back in time.
        let index = index.await.unwrap_or(Err(ServerError::Stopped))?;
        self.wait_applied(index).await
    }

    /// Starts every lease's clock afresh with its full granted TTL, forgetting the old ones
    /// (a member that becomes leader, or installs a snapshot, as etcd's lessor promotion).
    pub fn restart_lease_clocks(&self) {
        let store = self.read_store();
        let mut clocks = self.lease_clocks.lock().expect("lease clock lock");
        *clocks = LeaseClocks::default();
        for lease in store.leases() {
            clocks.start(lease.id, lease.granted_ttl_seconds);
        }
    }

    /// This member's own clock for lease `id` (renewed first when `renew`).
    pub fn local_lease_clock(&self, id: i64, renew: bool) -> Option<LeaseClock> {
        let mut clocks = self.lease_clocks.lock().expect("lease clock lock");
        let granted_ttl = if renew {
            clocks.renew(id)?
        } else {
            clocks.granted_seconds(id)?
        };
        let remaining_seconds = clocks.remaining_seconds(id)?;
        Some(LeaseClock {
            granted_ttl,
            remaining_seconds,
        })
    }

    /// Lease `id`'s clock as the leader counts it, renewed first when `renew`: answered here
    /// when this member leads, else asked of the leader over the peer connection (only the
    /// leader expires leases, so only its clock counts).
    pub async fn lease_clock(
        &self,
        id: i64,
        renew: bool,
    ) -> Result<Option<LeaseClock>, ServerError> {
        if self.is_leader() {
            return Ok(self.local_lease_clock(id, renew));
        }
        if !self.has_leader() {
            return Err(ServerError::NoLeader);
        }
        let (reply, answer) = oneshot::channel();
        if self
            .lease_forwards
            .send(LeaseForward { id, renew, reply })
            .await
            .is_err()
        {
            return Err(ServerError::Stopped);
        }
        answer.await.unwrap_or(Err(ServerError::Stopped))
    }

    /// Waits until the entry at `index` is applied here.
    pub async fn wait_applied(&self, index: u64) -> Result<(), ServerError> {
        loop {
            let listener = self.revision_changed.listen();
            if self.applied_index.load(Ordering::Acquire) >= index {
                return Ok(());
            }
            if self.stopping.load(Ordering::Acquire) {
                return Err(ServerError::Stopped);
            }
            listener.await;
        }
    }

    /// The store's current revision.
    pub fn current_revision(&self) -> i64 {
        self.read_store().current_revision()
    }

    /// The store for reading. A poisoned lock means a panic while applying; the store may
    /// be half-applied, so every reader fails loudly rather than serve it.
    pub fn read_store(&self) -> std::sync::RwLockReadGuard<'_, Store> {
        self.store
            .read()
            .expect("store lock poisoned by a panic during apply")
    }

    /// The store for applying (raft core only). Readers that hold the read lock a slice at a
    /// time let it in between slices ([`Shared::let_store_writers_in`]).
    pub fn write_store(&self) -> std::sync::RwLockWriteGuard<'_, Store> {
        self.store_writers_waiting.fetch_add(1, Ordering::AcqRel);
        let guard = self
            .store
            .write()
            .expect("store lock poisoned by a panic during apply");
        self.store_writers_waiting.fetch_sub(1, Ordering::AcqRel);
        guard
    }

    /// Waits until no writer is waiting for the store. A reader that takes the read lock
    /// slice after slice (a checkpoint or a Snapshot being encoded) calls this between slices:
    /// the lock itself does not hand over to a waiting writer, and a reader that takes it
    /// again at once kept the raft core's apply waiting for 130 ms.
    pub fn let_store_writers_in(&self) {
        while self.store_writers_waiting.load(Ordering::Acquire) > 0 {
            std::thread::yield_now();
        }
    }

    /// Gauges for `/metrics` and Status.
    pub fn store_gauges(&self) -> StoreGauges {
        let store = self.read_store();
        let stats = store.stats();
        StoreGauges {
            db_total_size_bytes: stats.approximate_bytes,
            keys_total: stats.live_keys,
            current_revision: store.current_revision(),
            compact_revision: store.compact_revision(),
            leases: store.leases().len() as u64,
        }
    }

    /// True while a NOSPACE alarm is raised.
    pub fn nospace(&self) -> bool {
        self.alarms
            .lock()
            .expect("alarm lock")
            .iter()
            .any(|a| a.alarm == pb::AlarmType::Nospace as i32)
    }

    /// Checks the backend quota before a write that adds data, raising NOSPACE (through
    /// the log, as etcd does) when the store is over `--quota-backend-bytes`.
    pub async fn check_quota(&self, added_bytes: usize) -> Result<(), ServerError> {
        if self.nospace() {
            return Err(ServerError::NoSpace);
        }
        let used = self.read_store().stats().approximate_bytes;
        if used + added_bytes as u64 <= self.limits.quota_bytes {
            return Ok(());
        }
        let raise = Command::Alarm(pb::AlarmRequest {
            action: pb::alarm_request::AlarmAction::Activate as i32,
            member_id: self.member_id,
            alarm: pb::AlarmType::Nospace as i32,
        });
        self.propose(raise).await?;
        Err(ServerError::NoSpace)
    }

    /// Resolves once shutdown has begun (for servers to stop accepting).
    pub async fn stopped(&self) {
        loop {
            let listener = self.stop_event.listen();
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            listener.await;
        }
    }

    /// Begins shutdown.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.stop_event.notify(usize::MAX);
        self.proposals.close();
        self.reads.close();
        self.lease_forwards.close();
        self.transfers.close();
        self.promote_forwards.close();
        self.revision_changed.notify(usize::MAX);
    }
}

/// Shared handle type.
pub type SharedRef = Arc<Shared>;

/// Holds the store's physical compaction off while a checkpoint encoder works from it
/// ([`Shared::begin_checkpoint`]); released when dropped, also when the encoding is abandoned
/// half way (a Snapshot client that went away).
pub struct CheckpointPin {
    shared: SharedRef,
    instance: u64,
}

impl Drop for CheckpointPin {
    fn drop(&mut self) {
        self.shared.write_store().end_checkpoint(self.instance);
    }
}

impl Shared {
    /// Starts exporting the store as it is now (see `Store::begin_export`), with what etcd's
    /// backend file holds besides it, all taken under the store's write lock so that they
    /// agree (apply changes them only while holding it): the pin, the export, the rest.
    pub fn begin_export(
        self: &Arc<Self>,
    ) -> (
        CheckpointPin,
        keel_engine::mvcc::Export,
        crate::backup::BackendMeta,
    ) {
        let mut store = self.write_store();
        let export = store.begin_export();
        let pin = CheckpointPin {
            shared: self.clone(),
            instance: export.instance(),
        };
        let meta = crate::backup::BackendMeta {
            consistent_index: self.applied_index.load(Ordering::Acquire),
            term: self.raft_term.load(Ordering::Acquire),
            members: self.member_list(),
            removed: self.removed_list(),
            alarms: self.alarms.lock().expect("alarm lock").clone(),
            auth: self.auth().as_ref().clone(),
        };
        drop(store);
        (pin, export, meta)
    }

    /// Starts encoding the store as it is now (see `Store::begin_checkpoint`): the pin, the
    /// encoder, and the revision it captures.
    pub fn begin_checkpoint(
        self: &Arc<Self>,
    ) -> (CheckpointPin, keel_engine::mvcc::CheckpointEncoder, i64) {
        let mut store = self.write_store();
        let encoder = store.begin_checkpoint();
        let pin = CheckpointPin {
            shared: self.clone(),
            instance: encoder.instance(),
        };
        (pin, encoder, store.current_revision())
    }
}

// The raft core (`raft::node`, `server::log`) and the peer transport name these errors through
// the functions below. They keep their names from when they built gRPC statuses so that the
// raft core's call sites stay as they are while it is being rewritten; new code names the
// `ServerError` variant directly.

/// [`ServerError::Stopped`]: the request arrived while the server stops.
pub fn stopped_status() -> ServerError {
    ServerError::Stopped
}

/// [`ServerError::NoLeader`]: no leader is known.
pub fn no_leader_status() -> ServerError {
    ServerError::NoLeader
}

/// [`ServerError::RequestTimedOut`]: the request waited longer than the request timeout.
pub fn request_timeout_status() -> ServerError {
    ServerError::RequestTimedOut
}

/// [`ServerError::WalFailed`]: the WAL failed; the member refuses writes until restarted.
pub fn wal_failed_status() -> ServerError {
    ServerError::WalFailed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_ids_are_positive_and_distinct() {
        let ids = IdGenerator::new(u64::MAX);
        let a = ids.next_lease_id();
        let b = ids.next_lease_id();
        assert!(a > 0 && b > 0 && a != b);
    }

    #[test]
    fn lease_clocks_expire_in_id_order() {
        let mut clocks = LeaseClocks::default();
        clocks.start(9, 0);
        clocks.start(3, 0);
        clocks.start(5, 1000);
        let later = Instant::now() + Duration::from_millis(1);
        assert_eq!(clocks.expired(later, 10), vec![3, 9]);
        assert_eq!(clocks.expired(later, 1), vec![3]);
        assert_eq!(clocks.renew(5), Some(1000));
        assert_eq!(clocks.renew(4), None);
        assert!(clocks.remaining_seconds(5).unwrap() >= 999);
    }
}
