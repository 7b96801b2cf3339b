//! The raft node: raft-rs' `RawNode` driven by one Ready loop, over Keel's WAL and MVCC store.
//!
//! The node never waits for the disk (the WAL writer runs beside it; only a cluster's only
//! member writes inline, see `RaftCore::set_inline_writes`). [`RaftNode::process_ready`] does
//! what the raft thesis (10.2.1) and raft-rs' asynchronous Ready prescribe, in this order:
//!
//! 1. messages that need nothing durable (the leader's appends and heartbeats) go to the
//!    [`Outbox`] *first*, so followers write in parallel with the leader's own write;
//! 2. a snapshot received from the leader is installed (its checkpoint file is already on
//!    disk, stored by the transport);
//! 3. committed entries already durable here are applied, and their clients answered;
//! 4. new entries and the hard state join the write queue, and raft's log takes them in
//!    memory; the messages that must wait for them (a follower's append acknowledgements,
//!    votes) wait with them.
//!
//! The [`DiskWriter`] owns the WAL and runs apart (a task of its own in the server): it takes
//! every queued write as **one** batch with one sync ([`RaftNode::take_write`]), so every
//! proposal and message that arrived while the previous sync ran rides the next one, and
//! reports back ([`RaftNode::write_done`]): raft then counts those entries as durable here and
//! the waiting messages leave. Meanwhile ticks, heartbeats, incoming messages and applies go
//! on, so a slow disk does not cost the leader its leadership or make a follower campaign.
//!
//! Checkpoints are encoded away from the node as well ([`CheckpointWork`]): the store is
//! multi-versioned, so the encoder reads the state as of the applied revision a slice at a
//! time under the store's read lock while writes go on.
//!
//! Apply is deterministic and by index. A client waits for its entry by request id (the wait
//! map), on whichever member it proposed: followers forward proposals to the leader inside
//! raft and answer their own clients when they apply the entry.
//!
//! The node does no I/O of its own besides reading a snapshot's checkpoint file, and keeps
//! time in ticks: the same code runs in the server (driven by `server::log`) and in the seeded
//! simulation (`tests/raft_sim.rs`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use futures::channel::oneshot;
use keel_engine::checkpoint::{self, CheckpointWriter};
use keel_engine::io::Disk;
use keel_engine::mvcc::Store;
use keel_engine::wal::{RecordType, Wal, WalOptions};
use keel_proto::etcdserverpb as pb;
use protobuf::Message as _;
use raft::eraftpb::{ConfChangeV2, ConfState, Entry, EntryType, HardState, Message, MessageType};
use raft::{ProgressState, RawNode, StateRole};

use crate::raft::log_store::{CheckpointInfo, LogStore};
use crate::raft::records::{self, SnapshotMarker, StateMeta};
use crate::server::apply::{apply, ApplyContext};
use crate::server::command::{self, Command};
use crate::server::error::ServerError;
use crate::server::membership;
use crate::server::state::{
    no_leader_status, request_timeout_status, wal_failed_status, ApplyResult, LeaderTransfer,
    Proposal, ReadReply, Shared,
};

/// Work units of physical compaction done per call of [`RaftNode::compaction_step`] (a few
/// milliseconds), so a compaction never stalls writes for long.
pub const COMPACTION_STEP_UNITS: usize = 10_000;

/// Chunks of dropped log entries freed per [`RaftNode::compaction_step`] (4 × 4,096 entries,
/// about a millisecond).
pub const LOG_CHUNKS_FREED_PER_STEP: usize = 4;

/// How many ticks a linearizable read waits before its ReadIndex is asked again: raft-rs drops
/// a ReadIndex silently when there is no leader or the leader has not committed in its term
/// (etcd retries every 500 ms).
pub const READ_RETRY_TICKS: u64 = 5;

/// How many ticks after a failed checkpoint one that raft wants (to catch a member up) is
/// tried again when no entry applied since (5 s at the default heartbeat): an idle cluster
/// must not leave a member behind until the next write, nor hammer a failing disk.
pub const CHECKPOINT_RETRY_TICKS: u64 = 50;

/// A batch whose apply takes longer than this counts as a slow apply.
pub const SLOW_APPLY: std::time::Duration = std::time::Duration::from_millis(100);

/// A learner may be promoted once its log holds this fraction of the leader's (etcd's
/// `readyPercent`).
pub const LEARNER_READY_FRACTION: f64 = 0.9;

/// Where a node's raft messages go: the peer transport, or the simulated network.
pub trait Outbox {
    /// Sends `messages` (to any members) without waiting; a message that cannot be sent is
    /// dropped (raft retries).
    fn send(&mut self, messages: Vec<Message>);

    /// The members changed (a configuration change or a MemberUpdate applied, a snapshot
    /// installed, or the node started): messages to each go to its peer URLs from now on.
    fn set_peers(&mut self, _members: &[pb::Member]) {}
}

/// The settings of a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This member's id.
    pub id: u64,
    /// Ticks without a leader's message before a follower campaigns.
    pub election_ticks: usize,
    /// Ticks between the leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// Ticks a client waits for its entry or its read before `request timed out`.
    pub request_timeout_ticks: u64,
    /// `--snapshot-count`: entries between checkpoints.
    pub snapshot_count: u64,
    /// Entries kept behind a checkpoint for followers to catch up from
    /// (`--experimental-snapshot-catchup-entries`).
    pub catch_up_entries: u64,
    /// Applied entries beyond the catch-up window the log in memory may gather between
    /// checkpoints before they are dropped
    /// ([`crate::raft::log_store::TRIM_MIN_ENTRIES`] in the server).
    pub trim_min_entries: u64,
    /// The range an election timeout is drawn from, `[min, max)` ticks; `None` keeps raft's
    /// `[election_ticks, 2 * election_ticks)`. raft-rs draws from the thread's random
    /// generator, so a simulation that must replay exactly passes a range of one value.
    pub election_ticks_range: Option<(usize, usize)>,
    /// `--experimental-max-learners`: learners the cluster may hold at once.
    pub max_learners: usize,
}

/// The bootstrap facts of a new member (used only when its data dir is empty), and what replay
/// needs to know.
#[derive(Clone, Debug)]
pub struct Bootstrap {
    /// This member's id.
    pub member_id: u64,
    /// A new cluster: the initial voters and their attributes. A member joining a running
    /// cluster: the members its peers listed (where to reach them until the leader's snapshot
    /// brings the real membership).
    pub members: Vec<pb::Member>,
    /// True for a member joining a running cluster (`--initial-cluster-state existing`): it
    /// starts with no raft configuration and waits for the leader's snapshot.
    pub joining: bool,
}

/// Index of the checkpoint a new cluster's members bootstrap with: the initial membership is
/// committed at index 1 in term 1 on every initial member (etcd commits its bootstrap
/// configuration entries in term 1 too). A member that joins later holds no entry at all, so
/// the leader can never send it entries from index 1, which no log holds: it is sent a
/// snapshot, which carries the membership.
pub const BOOTSTRAP_INDEX: u64 = 1;

/// A node's durable state as recovery found it.
pub struct Recovered<D: Disk> {
    /// The WAL, open for appends.
    pub wal: Wal<D>,
    /// The checkpoint directory.
    pub snap: D,
    /// The store with every committed entry applied.
    pub store: Store,
    /// Metadata of the state (members, alarms, ConfState).
    pub meta: StateMeta,
    /// The raft log.
    pub log: LogStore,
    /// Index of the last applied entry.
    pub applied_index: u64,
    /// Term of that entry.
    pub applied_term: u64,
    /// Index of the checkpoint loaded.
    pub checkpoint_index: u64,
    /// Entries applied from the WAL during recovery.
    pub replayed: u64,
    /// The data dir was bootstrapped at index 0 and its log still starts at index 1 (see
    /// [`BOOTSTRAP_INDEX`]): a checkpoint is due at once.
    pub legacy_bootstrap: bool,
}

/// Errors that stop a member: its state can no longer be trusted or made durable.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The WAL failed a write or sync (it refuses every write from then on).
    #[error("the WAL failed: {0}")]
    Wal(String),
    /// A record on disk does not decode, or the log is not contiguous.
    #[error("the data dir is damaged: {0}")]
    Corrupt(String),
    /// raft-rs refused the recovered state.
    #[error("raft: {0}")]
    Raft(String),
    /// A checkpoint could not be read or decoded.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

fn corrupt(e: impl std::fmt::Display) -> NodeError {
    NodeError::Corrupt(e.to_string())
}

/// The membership command a `ConfChangeV2` entry carries (its context) and its request id.
fn conf_change_command(entry: &Entry) -> Result<(u64, Command), String> {
    let change = ConfChangeV2::parse_from_bytes(&entry.data)
        .map_err(|e| format!("entry {}: configuration change: {e}", entry.index))?;
    let (request_id, command) = command::decode_data(&change.context)
        .map_err(|e| format!("entry {}: configuration change context: {e}", entry.index))?;
    if !command.is_conf_change() {
        return Err(format!(
            "entry {}: a configuration change carrying {command:?}",
            entry.index
        ));
    }
    Ok((request_id, command))
}

/// Loads the newest checkpoint from `snap`, if any: its index, metadata and store.
async fn load_checkpoint<D: Disk>(
    snap: &D,
    member_id: u64,
) -> Result<Option<(u64, StateMeta, Store)>, NodeError> {
    let Some((index, payload)) = checkpoint::load_latest(snap)
        .await
        .map_err(|e| NodeError::Checkpoint(e.to_string()))?
    else {
        return Ok(None);
    };
    let (meta, offset) = records::decode_state(&payload).map_err(corrupt)?;
    let store = Store::decode_checkpoint(&payload[offset..])
        .map_err(|e| NodeError::Checkpoint(format!("decoding checkpoint {index}: {e}")))?;
    // A format-1 checkpoint (single-member Keel before raft) implies one voter, this member,
    // and the term every entry of that format carries.
    let meta = meta.unwrap_or_else(|| StateMeta {
        term: crate::server::SINGLE_MEMBER_TERM,
        conf_state: ConfState::from((vec![member_id], vec![])),
        ..Default::default()
    });
    Ok(Some((index, meta, store)))
}

/// Opens the WAL and the checkpoints, and rebuilds the store and the raft log; on an empty
/// data dir, bootstraps it from `bootstrap`.
///
/// Replay follows engine/FORMAT.md: load the newest checkpoint (index C), then read the WAL in
/// order. An entry at an index the log already holds replaces the log's tail from there (a new
/// leader overwrote a follower's uncommitted entries); the last hard state wins; a snapshot
/// marker restarts the log. Only entries up to the hard state's commit index are applied; the
/// rest stay in the log for raft to commit. Format-1 entries (before raft) were all committed.
pub async fn recover<D: Disk>(
    wal_disk: D,
    snap: D,
    wal_options: WalOptions,
    bootstrap: &Bootstrap,
) -> Result<Recovered<D>, NodeError> {
    let member_id = bootstrap.member_id;
    let (wal, records) = Wal::open(wal_disk, wal_options)
        .await
        .map_err(|e| NodeError::Wal(e.to_string()))?;
    let loaded = load_checkpoint(&snap, member_id).await?;
    let (checkpoint_index, meta, mut store) = match loaded {
        Some(found) => found,
        None if records.is_empty() => {
            // A new member: its first checkpoint records the initial membership, at
            // [`BOOTSTRAP_INDEX`] for a new cluster; a joining member's, at index 0, has no
            // configuration (the leader's snapshot brings it).
            let (index, term, conf_state) = if bootstrap.joining {
                (0, 0, ConfState::default())
            } else {
                let voters: Vec<u64> = bootstrap.members.iter().map(|m| m.id).collect();
                (BOOTSTRAP_INDEX, 1, ConfState::from((voters, vec![])))
            };
            let meta = StateMeta {
                term,
                conf_state,
                members: bootstrap.members.clone(),
                ..Default::default()
            };
            let store = Store::new();
            let mvcc = store
                .encode_checkpoint()
                .map_err(|e| NodeError::Checkpoint(e.to_string()))?;
            checkpoint::save(&snap, index, &records::encode_state(&meta, &mvcc))
                .await
                .map_err(|e| NodeError::Checkpoint(format!("writing the first checkpoint: {e}")))?;
            (index, meta, store)
        }
        // A format-1 data dir that never took a checkpoint.
        None => (
            0,
            StateMeta {
                term: 0,
                conf_state: ConfState::from((vec![member_id], vec![])),
                members: bootstrap.members.clone(),
                ..Default::default()
            },
            Store::new(),
        ),
    };
    let mut meta = meta;
    if meta.members.is_empty() {
        meta.members = bootstrap.members.clone();
    }

    let mut entries: Vec<Entry> = Vec::new();
    let mut hard_state = HardState::default();
    let mut format1_last = 0;
    for record in &records {
        match record.record_type {
            RecordType::Entry => {
                let entry = records::decode_entry(&record.payload)
                    .map_err(|e| corrupt(format!("WAL record {}: {e}", record.lsn)))?;
                if records::is_format1_entry(&record.payload) {
                    format1_last = format1_last.max(entry.index);
                }
                if entry.index <= checkpoint_index {
                    // An entry is written at an index the log holds only when the log was
                    // replaced from there (a new leader overwrote this member's tail): every
                    // entry after the checkpoint that an earlier record holds is gone too.
                    // (Found by the simulation, seed 2933: entries of an old term written
                    // before the replacement came back after a restart.)
                    entries.clear();
                    continue;
                }
                let last = checkpoint_index + entries.len() as u64;
                if entry.index <= last {
                    entries.truncate((entry.index - checkpoint_index - 1) as usize);
                } else if entry.index != last + 1 {
                    return Err(corrupt(format!(
                        "WAL is missing entries {}..{} (found entry {} after {}); the data dir \
                         is damaged",
                        last + 1,
                        entry.index - 1,
                        entry.index,
                        last
                    )));
                }
                entries.push(entry);
            }
            RecordType::HardState => {
                hard_state = records::decode_hard_state(&record.payload)
                    .map_err(|e| corrupt(format!("WAL record {}: {e}", record.lsn)))?;
            }
            RecordType::Snapshot => {
                let marker = records::decode_snapshot_marker(&record.payload)
                    .map_err(|e| corrupt(format!("WAL record {}: {e}", record.lsn)))?;
                if marker.index > checkpoint_index {
                    return Err(corrupt(format!(
                        "the WAL restarts the log after index {} but the newest checkpoint is \
                         at {checkpoint_index}",
                        marker.index
                    )));
                }
                entries.clear();
            }
            RecordType::Checkpoint => {}
        }
    }
    let last_index = checkpoint_index + entries.len() as u64;
    if format1_last > 0 {
        // A data dir of single-member Keel before raft: every entry was committed, in term 2,
        // with this member as the only voter.
        hard_state.term = hard_state.term.max(crate::server::SINGLE_MEMBER_TERM);
        if hard_state.vote == 0 {
            hard_state.vote = member_id;
        }
        hard_state.commit = hard_state.commit.max(format1_last);
    }
    hard_state.commit = hard_state.commit.clamp(checkpoint_index, last_index);
    if hard_state.term < meta.term {
        hard_state.term = meta.term;
    }
    if hard_state.term == 0 {
        // etcd bootstraps a new cluster with its configuration entries in term 1, so its
        // first leader is elected in term 2; Keel starts in term 1 to report the same terms.
        hard_state.term = 1;
    }

    let mut alarms = meta.alarms.clone();
    let mut downgrade = meta.downgrade.clone();
    let mut members = meta.members.clone();
    let mut auth = std::sync::Arc::new(meta.auth.clone());
    let mut replayed_conf = meta.conf_state.clone();
    let mut removed = meta.removed.clone();
    let mut applied_index = checkpoint_index;
    let mut applied_term = meta.term;
    let mut replayed = 0;
    for entry in &entries {
        if entry.index > hard_state.commit {
            // The only voter: whatever it made durable is committed (a quorum of one), up to
            // a configuration change that gave it company (later entries needed the new
            // quorum; raft commits them again if they were).
            if replayed_conf.voters != [member_id] {
                break;
            }
            hard_state.commit = entry.index;
        }
        match entry.get_entry_type() {
            EntryType::EntryNormal => {
                if let Some((request_id, command)) =
                    records::entry_command(entry).map_err(corrupt)?
                {
                    let mut context = ApplyContext {
                        alarms: &mut alarms,
                        members: &mut members,
                        lease_clocks: None,
                        auth: &mut auth,
                        downgrade: &mut downgrade,
                        tokens: None,
                        index: entry.index,
                        from_client: request_id != 0,
                    };
                    // Results were delivered before the restart (or never); only the state
                    // matters now.
                    let _ = apply(&mut store, &mut context, command);
                }
            }
            EntryType::EntryConfChangeV2 => {
                let (_, change) = conf_change_command(entry).map_err(corrupt)?;
                // The same check as when it first applied: a change refused then is refused
                // now.
                if membership::apply(&mut members, &mut removed, &change, usize::MAX).is_ok() {
                    if let Some(single) = membership::raft_change(&change) {
                        replayed_conf = membership::conf_state_after(&replayed_conf, single);
                    }
                }
            }
            EntryType::EntryConfChange => {
                return Err(corrupt(format!(
                    "entry {} is a version-1 configuration change, which Keel never writes",
                    entry.index
                )));
            }
        }
        applied_index = entry.index;
        applied_term = entry.term;
        replayed += 1;
    }
    let (compacted_term, conf_state) = (meta.term, meta.conf_state.clone());
    hard_state.commit = hard_state.commit.max(applied_index);
    let legacy_bootstrap =
        checkpoint_index == 0 && !conf_state.voters.is_empty() && !entries.is_empty();
    let log = LogStore::new(
        checkpoint_index,
        compacted_term,
        replayed_conf.clone(),
        HardState::default(),
    );
    log.append(&entries);
    log.set_hard_state(hard_state);
    if checkpoint_index > 0 {
        // Entries before the checkpoint are not replayed into the log (they were applied
        // before the restart), so nothing is compacted here.
        log.set_checkpoint(
            CheckpointInfo {
                index: checkpoint_index,
                term: meta.term,
                conf_state,
            },
            0,
        );
    }
    meta.alarms = alarms;
    meta.downgrade = downgrade;
    meta.members = members;
    meta.auth = std::sync::Arc::unwrap_or_clone(auth);
    meta.conf_state = replayed_conf;
    meta.removed = removed;
    Ok(Recovered {
        wal,
        snap,
        store,
        meta,
        log,
        applied_index,
        applied_term,
        checkpoint_index,
        replayed,
        legacy_bootstrap,
    })
}

/// Builds raft-rs' configuration from ours (etcd's defaults where raft-rs has a choice).
fn raft_config(config: &NodeConfig, applied: u64) -> raft::Config {
    let (min_election_tick, max_election_tick) = config.election_ticks_range.unwrap_or((0, 0));
    raft::Config {
        id: config.id,
        election_tick: config.election_ticks,
        min_election_tick,
        max_election_tick,
        heartbeat_tick: config.heartbeat_ticks,
        applied,
        // etcd: 1 MiB per append message, 512 appends in flight.
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 512,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    }
}

/// A linearizable read batch waiting for its ReadIndex.
struct PendingRead {
    ctx: u64,
    asked_at_tick: u64,
    first_asked_at_tick: u64,
    replies: Vec<ReadReply>,
}

/// A batch of WAL records for the [`DiskWriter`]: what one or more Readies need made durable.
#[derive(Debug, Default)]
pub struct WriteJob {
    records: Vec<(RecordType, Vec<u8>)>,
    /// After the records are durable, release the WAL segments through this position (a
    /// checkpoint made them unnecessary).
    release_through: Option<u64>,
}

/// What the [`DiskWriter`] reports back for a [`WriteJob`].
#[derive(Debug)]
pub struct WriteDone {
    /// The WAL position after the job and the bytes the WAL has written in all, or why the
    /// write failed.
    pub result: Result<(u64, u64), String>,
}

/// The WAL's writer: owned apart from the [`RaftNode`] so that a sync in progress never holds
/// the node (ticks, heartbeats, incoming messages and applies go on meanwhile). The server runs
/// it as a task of its own; the simulation completes its jobs when its simulated disk is done.
pub struct DiskWriter<D: Disk> {
    wal: Wal<D>,
    shared: Arc<Shared>,
}

impl<D: Disk> DiskWriter<D> {
    /// Writes `job`'s records as one batch with one sync, then releases segments if asked.
    /// A failed write leaves the WAL refusing further writes (what reached the disk is
    /// unknown); the node stops.
    pub async fn write(&mut self, job: WriteJob) -> WriteDone {
        if !job.records.is_empty() {
            let records: Vec<(RecordType, &[u8])> = job
                .records
                .iter()
                .map(|(t, p)| (*t, p.as_slice()))
                .collect();
            let bytes_before = self.wal.bytes_written();
            let started = Instant::now();
            if let Err(error) = self.wal.append(&records).await {
                tracing::error!(%error, "WAL append failed; this member stops until restarted");
                return WriteDone {
                    result: Err(error.to_string()),
                };
            }
            let metrics = &self.shared.metrics;
            metrics.wal_fsync.observe(started.elapsed());
            metrics
                .wal_write_bytes
                .add(self.wal.bytes_written() - bytes_before);
        }
        if let Some(lsn) = job.release_through {
            if let Err(error) = self.wal.release_through(lsn).await {
                tracing::warn!(%error, "releasing WAL segments failed");
            }
        }
        WriteDone {
            result: Ok((self.wal.last_lsn(), self.wal.bytes_written())),
        }
    }
}

/// What a queued write is for.
#[derive(Debug)]
enum WriteKind {
    /// A Ready's entries, hard state or snapshot marker.
    Ready {
        /// The highest entry index the write holds (0: none).
        last_entry: u64,
    },
    /// The hard state written after a checkpoint was saved (the write also releases the WAL
    /// through the previous checkpoint's position): the checkpoint and its own position.
    Checkpoint(CheckpointInfo, u64),
}

/// A write waiting for the disk, with the messages that may leave only once it is durable.
#[derive(Debug)]
struct PendingWrite {
    kind: WriteKind,
    /// The newest Ready whose durability this write completes (raft hears of it by number):
    /// its own, or a later one with nothing to write that came while it waited.
    ready_number: Option<u64>,
    records: Vec<(RecordType, Vec<u8>)>,
    release_through: Option<u64>,
    /// Messages to send once this write and every one before it are durable (a follower's
    /// append acknowledgements, votes).
    messages: Vec<Message>,
    /// The commit index of the hard state this write holds (0: none).
    commit: u64,
}

/// A checkpoint being taken: encoded off the raft core ([`CheckpointWork`]), saved, then
/// logged.
#[derive(Debug)]
enum CheckpointState {
    Idle,
    /// The encoder pins the store (a snapshot that replaces the store ends the encoding at
    /// its next slice: the encoder refuses any store but its own).
    Encoding {
        info: CheckpointInfo,
        lsn: u64,
        /// The store the encoder pinned.
        instance: u64,
    },
    /// The file is being written.
    Saving {
        info: CheckpointInfo,
        lsn: u64,
    },
    /// Its hard state is on the way to the WAL.
    Logging,
}

/// One checkpoint's encoding, done a slice at a time under the store's read lock, away from
/// the raft core (see `Store::begin_checkpoint`). The file's payload is the state metadata
/// ([`CheckpointWork::prefix`]), then the MVCC payload, which can be written to the file as
/// it is encoded ([`CheckpointWork::take_output`], [`EncodedCheckpoint::complete`]) or
/// whole at the end ([`EncodedCheckpoint::save`]).
pub struct CheckpointWork {
    /// The applied index the checkpoint captures.
    pub index: u64,
    /// The state metadata (engine/FORMAT.md, "State-machine checkpoint payload").
    prefix: Vec<u8>,
    encoder: keel_engine::mvcc::CheckpointEncoder,
}

impl CheckpointWork {
    /// Encodes up to `keys` more keys, holding the store's read lock only for that slice.
    /// Returns true when every key is encoded; an error when the encoding failed or a
    /// snapshot replaced the store meanwhile.
    pub fn step(&mut self, shared: &Shared, keys: usize) -> Result<bool, String> {
        shared.let_store_writers_in();
        let store = shared.read_store();
        self.encoder.step(&store, keys).map_err(|e| e.to_string())
    }

    /// The payload's first bytes: the state metadata.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The payload's first bytes whose final value is known only once it is encoded (the
    /// prefix and the MVCC payload's header): a [`CheckpointWriter`]'s `held` bytes.
    pub fn held_len(&self) -> usize {
        self.prefix.len() + keel_engine::mvcc::CheckpointEncoder::HEADER_LEN
    }

    /// Moves the MVCC payload bytes encoded since the last call into `spare` (see
    /// `CheckpointEncoder::take_output`): after the prefix, they are the file's payload.
    pub fn take_output(&mut self, spare: &mut Vec<u8>) {
        self.encoder.take_output(spare);
    }

    /// The end of the payload, once [`CheckpointWork::step`] returned true.
    pub fn finish(self) -> Result<EncodedCheckpoint, String> {
        let end = self.encoder.finish().map_err(|e| e.to_string())?;
        Ok(EncodedCheckpoint {
            index: self.index,
            prefix: self.prefix,
            end,
        })
    }
}

/// An encoded checkpoint: the state metadata and the end of the MVCC payload (all of it
/// when none was taken as it was encoded).
pub struct EncodedCheckpoint {
    /// The applied index it captures.
    pub index: u64,
    prefix: Vec<u8>,
    end: keel_engine::mvcc::PayloadEnd,
}

impl EncodedCheckpoint {
    /// Saves it as checkpoint file `index` on `disk`, `taken` being all the output taken
    /// before it was finished ([`CheckpointWork::take_output`], in order; empty if none);
    /// returns the payload's size.
    pub async fn save<D: Disk>(&self, disk: &D, taken: &[u8]) -> Result<u64, String> {
        assert_eq!(
            self.end.from_start,
            taken.is_empty(),
            "the output taken from a checkpoint"
        );
        let held = self.prefix.len() + self.end.header.len();
        let mut writer = CheckpointWriter::create(disk, self.index, held)
            .await
            .map_err(|e| e.to_string())?;
        for part in [&self.prefix[..], taken] {
            if let Err(error) = writer.append(part).await {
                writer.abandon().await;
                return Err(error.to_string());
            }
        }
        self.complete(writer).await
    }

    /// Completes the file `writer` that the prefix and all output taken went to; returns
    /// the payload's size.
    pub async fn complete<D: Disk>(
        &self,
        mut writer: CheckpointWriter<'_, D>,
    ) -> Result<u64, String> {
        for part in [&self.end.rest[..], &self.end.index[..]] {
            if let Err(error) = writer.append(part).await {
                writer.abandon().await;
                return Err(error.to_string());
            }
        }
        let mut held = Vec::with_capacity(self.prefix.len() + self.end.header.len());
        held.extend_from_slice(&self.prefix);
        held.extend_from_slice(&self.end.header);
        writer.finish(&held).await.map_err(|e| e.to_string())
    }
}

/// Where a leadership transfer is answered.
type TransferReply = oneshot::Sender<Result<(), ServerError>>;

/// The raft node of one member.
pub struct RaftNode<D: Disk> {
    raw: RawNode<LogStore>,
    log: LogStore,
    snap: D,
    shared: Arc<Shared>,
    config: NodeConfig,
    /// Clients waiting for their entry, by request id.
    waiters: HashMap<u64, (u64, oneshot::Sender<ApplyResult>)>,
    /// Clients of `Compact` with `physical` set, answered when the physical work is done.
    physical_compaction_waiters: Vec<(oneshot::Sender<ApplyResult>, ApplyResult)>,
    pending_reads: Vec<PendingRead>,
    ticks: u64,
    applied_index: u64,
    applied_term: u64,
    /// The commit index last handed to the WAL.
    durable_commit: u64,
    /// Writes not yet durable, oldest first; the first `in_flight` of them are with the
    /// [`DiskWriter`].
    writes: VecDeque<PendingWrite>,
    in_flight: usize,
    /// Completed writes since the last WAL release: (WAL position after it, highest entry
    /// index in it), to find how much of the WAL a checkpoint makes unnecessary.
    wal_marks: VecDeque<(u64, u64)>,
    /// The WAL's bytes written, as of the last completed write.
    wal_bytes: u64,
    /// The index of the newest checkpoint that is durable (saved and logged) or installed.
    checkpoint_index: u64,
    /// The index of the last checkpoint that failed to encode or save (0: none). The next
    /// try waits for as many applied entries past it as past a checkpoint (one that raft
    /// wants: for one more entry, or [`CHECKPOINT_RETRY_TICKS`]), so a failing disk is not
    /// hammered; `checkpoint_index` keeps naming the newest checkpoint that exists.
    checkpoint_failed_at: u64,
    /// The tick from which a wanted checkpoint is tried again at the index that failed.
    checkpoint_retry_tick: u64,
    checkpoint_state: CheckpointState,
    /// WAL position of the previous checkpoint: segments are released only through it, so a
    /// damaged newest checkpoint can fall back to the older one with its entries still in the
    /// WAL.
    previous_checkpoint_lsn: Option<u64>,
    wal_bytes_at_checkpoint: u64,
    last_checkpoint_bytes: u64,
    leader_id: u64,
    /// Leadership transfers waiting for their transferee to lead: (transferee, tick asked,
    /// reply).
    transfers: Vec<(u64, u64, TransferReply)>,
    /// Chunks of log entries a checkpoint dropped, freed a few at a time
    /// ([`RaftNode::compaction_step`]).
    log_garbage: Vec<Vec<Entry>>,
    failed: Option<String>,
    /// Set when the members changed since the outbox last heard of them.
    members_changed: bool,
    /// Set once this member applied its own removal: it must stop.
    removed: bool,
    /// Configuration changes proposed while the leader had one pending (raft-rs would turn
    /// them into empty entries): proposed again once it applied.
    held_conf_changes: Vec<Proposal>,
    /// Committed entries from a configuration change on, waiting until the commit index that
    /// covers the change is durable here (see [`RaftNode::apply_committed`]).
    apply_backlog: VecDeque<Entry>,
    /// The highest commit index a completed WAL write holds.
    synced_commit: u64,
    /// A data dir bootstrapped at index 0 with its log from index 1 (Keel before membership
    /// changes): a checkpoint is due at once, dropping the whole log before it, so that no
    /// leader ever sends a joining member entries from index 1, which carry no membership.
    legacy_checkpoint_due: bool,
}

impl<D: Disk> RaftNode<D> {
    /// A node continuing from `recovered`, and the writer of its WAL. `shared` must already
    /// hold the recovered store.
    pub fn new(
        config: NodeConfig,
        recovered: Recovered<D>,
        shared: Arc<Shared>,
        logger: &slog::Logger,
    ) -> Result<(RaftNode<D>, DiskWriter<D>), NodeError> {
        let raw = RawNode::new(
            &raft_config(&config, recovered.applied_index),
            recovered.log.clone(),
            logger,
        )
        .map_err(|e| NodeError::Raft(e.to_string()))?;
        let durable_commit = recovered.log.hard_state().commit;
        let last_index = recovered.log.last_index();
        let writer = DiskWriter {
            wal: recovered.wal,
            shared: shared.clone(),
        };
        let mut node = RaftNode {
            raw,
            log: recovered.log,
            snap: recovered.snap,
            shared,
            config,
            waiters: HashMap::new(),
            physical_compaction_waiters: Vec::new(),
            pending_reads: Vec::new(),
            ticks: 0,
            applied_index: recovered.applied_index,
            applied_term: recovered.applied_term,
            durable_commit,
            writes: VecDeque::new(),
            in_flight: 0,
            // What the WAL held at the restart counts as one write up to the last entry, so
            // a checkpoint's release position never passes entries replay may still need.
            wal_marks: VecDeque::from([(writer.wal.last_lsn(), last_index)]),
            wal_bytes: writer.wal.bytes_written(),
            checkpoint_index: recovered.checkpoint_index,
            checkpoint_failed_at: 0,
            checkpoint_retry_tick: 0,
            checkpoint_state: CheckpointState::Idle,
            previous_checkpoint_lsn: None,
            wal_bytes_at_checkpoint: writer.wal.bytes_written(),
            last_checkpoint_bytes: 0,
            leader_id: 0,
            transfers: Vec::new(),
            log_garbage: Vec::new(),
            failed: None,
            members_changed: true,
            removed: false,
            held_conf_changes: Vec::new(),
            apply_backlog: VecDeque::new(),
            synced_commit: durable_commit,
            legacy_checkpoint_due: recovered.legacy_bootstrap,
        };
        if node
            .shared
            .removed_members
            .lock()
            .expect("members lock")
            .contains(&node.config.id)
        {
            // It applied its own removal before this restart: it stays stopped (etcd refuses
            // to start a removed member too).
            node.removed = true;
        }
        node.shared
            .applied_index
            .store(node.applied_index, Ordering::Release);
        node.shared
            .raft_term
            .store(node.raw.raft.term, Ordering::Release);
        let conf = node.log.conf_state();
        node.shared.set_conf_state(&conf);
        if conf.voters == [node.config.id] {
            // The only voter need not wait an election timeout to lead.
            let _ = node.raw.campaign();
        }
        Ok((node, writer))
    }

    /// This member's id.
    pub fn id(&self) -> u64 {
        self.config.id
    }

    /// The leader this node knows of (0: none).
    pub fn leader_id(&self) -> u64 {
        self.raw.raft.leader_id
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// True while this node leads.
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// raft's configuration as this node applied it.
    pub fn conf_state(&self) -> ConfState {
        self.log.conf_state()
    }

    /// True while this member is its cluster's only member, as applied: the only voter, with
    /// no learner and no configuration change under way, so no peer waits on it.
    pub fn sole_member(&self) -> bool {
        self.log.is_only_member(self.config.id)
    }

    /// Index of the last applied entry.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The commit index.
    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// Entries in `low..=high` still held in the log (for checks in tests).
    pub fn log_entries(&self, low: u64, high: u64) -> Vec<Entry> {
        self.log.entries_between(low, high)
    }

    /// Why the node stopped, once it has (a failed WAL).
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Counts one tick (a heartbeat interval).
    pub fn tick(&mut self) {
        if self.removed {
            return;
        }
        self.ticks += 1;
        // While an installed snapshot's marker is not durable the election clock runs on
        // (so the check-quorum lease of the leader that sent it expires as usual), but not
        // into the tick that would campaign (see `snapshot_awaits_marker`).
        let raft = &self.raw.raft;
        if !self.snapshot_awaits_marker()
            || raft.election_elapsed + 1 < raft.randomized_election_timeout()
        {
            self.raw.tick();
        }
        if self.ticks % READ_RETRY_TICKS == 0 {
            self.retry_reads();
        }
        if self.ticks % 10 == 0 {
            // Clients that gave up (disconnected) no longer wait; clients whose entry did not
            // apply within the request timeout get etcd's "request timed out".
            let now = self.ticks;
            let timeout = self.config.request_timeout_ticks;
            self.waiters.retain(|_, (_, reply)| !reply.is_canceled());
            let expired: Vec<u64> = self
                .waiters
                .iter()
                .filter(|(_, (since, _))| now - *since >= timeout)
                .map(|(id, _)| *id)
                .collect();
            for id in expired {
                if let Some((_, reply)) = self.waiters.remove(&id) {
                    let _ = reply.send(Err(request_timeout_status()));
                }
            }
            let (expired, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.transfers)
                .into_iter()
                .partition(|(_, since, _)| now - *since >= timeout);
            for (_, _, reply) in expired {
                let _ = reply.send(Err(ServerError::LeaderTransferTimedOut));
            }
            self.transfers = waiting;
        }
    }

    /// Starts handing leadership to `transfer.target` (0: the follower with the most of the
    /// log); the reply comes when the transferee leads, or after the request timeout.
    pub fn transfer_leader(&mut self, transfer: LeaderTransfer) {
        let LeaderTransfer { target, reply } = transfer;
        let me = self.config.id;
        let voters = self.log.conf_state().voters;
        if !self.is_leader() {
            if target == me && voters.contains(&me) && self.leader_id() != 0 {
                // A follower asking to take over: raft forwards the request to the leader.
                self.raw.transfer_leader(me);
                self.transfers.push((me, self.ticks, reply));
            } else {
                let _ = reply.send(Err(ServerError::NotLeader));
            }
            return;
        }
        let target = if target == 0 {
            let progress = self.raw.raft.prs();
            voters
                .iter()
                .copied()
                .filter(|id| *id != me)
                .max_by_key(|id| {
                    // A follower heard from lately first (a voter that is down cannot take
                    // over), then the one with the most of the log.
                    progress
                        .get(*id)
                        .map_or((false, 0), |p| (p.recent_active, p.matched))
                })
                .unwrap_or(0)
        } else {
            target
        };
        if target == me {
            let _ = reply.send(Ok(()));
            return;
        }
        if !voters.contains(&target) {
            let _ = reply.send(Err(ServerError::BadLeaderTransferee));
            return;
        }
        tracing::info!(
            from = %format!("{me:x}"),
            to = %format!("{target:x}"),
            term = self.raw.raft.term,
            "leadership transfer starting"
        );
        self.raw.transfer_leader(target);
        self.transfers.push((target, self.ticks, reply));
    }

    /// Hands a peer's message to raft.
    pub fn step(&mut self, message: Message) {
        if self.removed {
            return;
        }
        if message.get_msg_type() == MessageType::MsgAppend && message.index == 0 {
            let conf = self.log.conf_state();
            if conf.voters.is_empty() && conf.learners.is_empty() {
                // A member that joined and has no configuration yet takes the log only from a
                // snapshot (which carries the membership): entries from index 1 never do.
                // Refusing them keeps it from ever running with an empty configuration; the
                // leader sends a snapshot once its log no longer starts at 1.
                return;
            }
        }
        if message.get_msg_type() == MessageType::MsgTimeoutNow && self.snapshot_awaits_marker() {
            // It cannot campaign yet (see `snapshot_awaits_marker`); the leader's transfer
            // times out and the leader stays.
            return;
        }
        if let Err(error) = self.raw.step(message) {
            tracing::debug!(%error, "raft refused a message");
        }
    }

    /// Whether a snapshot installed here waits for its marker to be durable: the in-memory
    /// log already starts after it, while raft's applied index moves to it only with the
    /// marker. raft-rs cannot campaign in that window (to look for pending configuration
    /// changes it reads the entries after its applied index, and a compacted read there is
    /// fatal), so the election clock stops short of the campaign and a leader's
    /// `MsgTimeoutNow` is dropped until the write completes. A disk stalled past an election
    /// timeout while the leader is gone delays this member's campaign by the stall, no more.
    fn snapshot_awaits_marker(&self) -> bool {
        let log = &self.raw.raft.raft_log;
        log.unstable.snapshot.is_none() && log.applied + 1 < log.first_index()
    }

    /// Tells raft that a peer could not be reached.
    pub fn report_unreachable(&mut self, id: u64) {
        self.raw.report_unreachable(id);
    }

    /// Tells raft whether the snapshot sent to `id` arrived.
    pub fn report_snapshot(&mut self, id: u64, ok: bool) {
        let status = if ok {
            raft::SnapshotStatus::Finish
        } else {
            raft::SnapshotStatus::Failure
        };
        self.raw.report_snapshot(id, status);
    }

    /// Proposes a client's write; its reply goes out when the entry applies here.
    pub fn propose(&mut self, proposal: Proposal) {
        let Proposal { command, reply } = proposal;
        if self.removed {
            if let Some(reply) = reply {
                let _ = reply.send(Err(ServerError::Stopped));
            }
            return;
        }
        if let Some(error) = &self.failed {
            if let Some(reply) = reply {
                let _ = reply.send(Err(ServerError::WalError(error.clone())));
            }
            return;
        }
        let request_id = if reply.is_some() {
            self.shared.ids.next_request_id()
        } else {
            0
        };
        if command.is_conf_change() {
            // Checked here against the members as this member applied them, with its
            // learner limit (apply checks again, without the limit, on every member alike).
            let checked = membership::validate(
                &self.shared.member_list(),
                &self.shared.removed_list(),
                &command,
                self.config.max_learners,
            );
            if let Err(error) = checked {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(error));
                }
                return;
            }
            if self.is_leader() && self.raw.raft.has_pending_conf() {
                // raft-rs would turn it into an empty entry: it waits until the change
                // before it applied.
                self.held_conf_changes.push(Proposal { command, reply });
                return;
            }
        }
        if let Command::MemberPromote(request) = &command {
            // etcd's check on the leader: the learner's log must hold at least 90% of the
            // leader's. A member that does not lead answers `not leader`; the caller asks the
            // leader.
            if let Err(error) = self.learner_ready(request.id) {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(error));
                }
                return;
            }
        }
        let data = command::encode_data(request_id, &command);
        let proposed = match membership::conf_change(&command, data.clone()) {
            Some(change) => self.raw.propose_conf_change(Vec::new(), change),
            None => self.raw.propose(Vec::new(), data),
        };
        match proposed {
            Ok(()) => {
                if let Some(reply) = reply {
                    self.waiters.insert(request_id, (self.ticks, reply));
                }
            }
            Err(_) => {
                self.shared.metrics.proposals_failed.inc();
                if let Some(reply) = reply {
                    let _ = reply.send(Err(no_leader_status()));
                }
            }
        }
    }

    /// The index of the checkpoint being encoded, saved or logged, if one is.
    fn checkpoint_in_progress(&self) -> Option<u64> {
        match &self.checkpoint_state {
            CheckpointState::Idle => None,
            CheckpointState::Encoding { info, .. } | CheckpointState::Saving { info, .. } => {
                Some(info.index)
            }
            CheckpointState::Logging => self.writes.iter().find_map(|write| match &write.kind {
                WriteKind::Checkpoint(info, _) => Some(info.index),
                WriteKind::Ready { .. } => None,
            }),
        }
    }

    /// etcd's `isLearnerReady`: on the leader, the learner's match index is at least 90% of
    /// the leader's own.
    fn learner_ready(&self, id: u64) -> Result<(), ServerError> {
        if !self.is_leader() {
            return Err(ServerError::NotLeader);
        }
        let progress = self.raw.raft.prs();
        let learner = progress.get(id).ok_or(ServerError::MemberNotFound)?.matched;
        let leader = progress.get(self.config.id).map_or(0, |p| p.matched);
        if (learner as f64) < (leader as f64) * LEARNER_READY_FRACTION {
            return Err(ServerError::LearnerNotReady);
        }
        Ok(())
    }

    /// Voters this leader heard from within the last `ticks` ticks (itself included), for
    /// the strict reconfiguration check; `None` on a member that does not lead.
    pub fn recently_active_voters(&self) -> Option<Vec<u64>> {
        if !self.is_leader() {
            return None;
        }
        let conf = self.log.conf_state();
        let progress = self.raw.raft.prs();
        Some(
            conf.voters
                .iter()
                .copied()
                .filter(|id| {
                    *id == self.config.id || progress.get(*id).is_some_and(|p| p.recent_active)
                })
                .collect(),
        )
    }

    /// Proposes again the configuration changes held while one was pending, once none is
    /// (or this member no longer leads: the leader decides then).
    fn release_held_conf_changes(&mut self) {
        if self.held_conf_changes.is_empty()
            || (self.is_leader() && self.raw.raft.has_pending_conf())
        {
            return;
        }
        for proposal in std::mem::take(&mut self.held_conf_changes) {
            if proposal.reply.as_ref().is_some_and(|r| r.is_canceled()) {
                continue;
            }
            self.propose(proposal);
        }
    }

    /// Hands the members to the outbox if they changed since it last heard.
    fn tell_peers(&mut self, outbox: &mut dyn Outbox) {
        if self.members_changed {
            self.members_changed = false;
            let members = self.shared.members.lock().expect("members lock").clone();
            outbox.set_peers(&members);
        }
    }

    /// Learners whose log holds 90% of this leader's, when no configuration change is
    /// pending (Keel's automatic promotion).
    pub fn promotable_learners(&self) -> Vec<u64> {
        if !self.is_leader() || self.raw.raft.has_pending_conf() {
            return Vec::new();
        }
        self.log
            .conf_state()
            .learners
            .iter()
            .copied()
            .filter(|id| self.learner_ready(*id).is_ok())
            .collect()
    }

    /// A peer said this member was removed from the cluster (it missed the entry, or was down
    /// when it applied).
    pub fn mark_removed(&mut self) {
        self.removed = true;
    }

    /// True once this member applied its own removal from the cluster.
    pub fn removed(&self) -> bool {
        self.removed
    }

    /// Starts one ReadIndex round for every read in `replies`: they share it.
    pub fn read_index(&mut self, replies: Vec<ReadReply>) {
        if replies.is_empty() {
            return;
        }
        if self.removed {
            for reply in replies {
                let _ = reply.send(Err(ServerError::Stopped));
            }
            return;
        }
        if self.raw.raft.leader_id == 0 {
            for reply in replies {
                let _ = reply.send(Err(no_leader_status()));
            }
            return;
        }
        // The round's tag comes from the request-id generator, which never repeats across
        // restarts (etcd does the same): a counter restarting at 1 let a leader's late answer
        // to the previous process's read complete a new read with an index older than the
        // read (found by the simulation, tests/raft_sim.rs, seed 56).
        let ctx = self.shared.ids.next_request_id();
        self.raw.read_index(ctx.to_le_bytes().to_vec());
        self.pending_reads.push(PendingRead {
            ctx,
            asked_at_tick: self.ticks,
            first_asked_at_tick: self.ticks,
            replies,
        });
    }

    fn retry_reads(&mut self) {
        let now = self.ticks;
        let timeout = self.config.request_timeout_ticks;
        let mut kept = Vec::new();
        for mut read in std::mem::take(&mut self.pending_reads) {
            if now - read.first_asked_at_tick >= timeout {
                self.shared.metrics.slow_read_indexes.inc();
                for reply in read.replies {
                    let _ = reply.send(Err(request_timeout_status()));
                }
                continue;
            }
            if now - read.asked_at_tick >= READ_RETRY_TICKS {
                self.shared.metrics.slow_read_indexes.inc();
                read.asked_at_tick = now;
                self.raw.read_index(read.ctx.to_le_bytes().to_vec());
            }
            kept.push(read);
        }
        self.pending_reads = kept;
    }

    /// True when raft has work for [`RaftNode::handle_ready`].
    pub fn has_ready(&self) -> bool {
        !self.removed && self.raw.has_ready()
    }

    /// Processes one Ready without waiting for the disk (see the module docs for the order):
    /// its writes join the queue for the [`DiskWriter`] ([`RaftNode::take_write`]), and the
    /// messages that must wait for them leave when they are durable
    /// ([`RaftNode::write_done`]). Awaits only to read a snapshot's checkpoint file. A WAL
    /// failure stops the node: it answers every waiting client with an error and refuses
    /// further work.
    pub async fn process_ready(&mut self, outbox: &mut dyn Outbox) -> Result<(), NodeError> {
        if let Some(error) = &self.failed {
            return Err(NodeError::Wal(error.clone()));
        }
        self.tell_peers(outbox);
        if self.removed || !self.raw.has_ready() {
            return Ok(());
        }
        let mut ready = self.raw.ready();
        if !ready.messages().is_empty() {
            outbox.send(ready.take_messages());
        }
        let mut records: Vec<(RecordType, Vec<u8>)> = Vec::new();
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            if let Some(marker) = self.install_snapshot(&snapshot).await? {
                records.push((
                    RecordType::Snapshot,
                    records::encode_snapshot_marker(&marker),
                ));
            }
        }
        let committed = ready.take_committed_entries();
        self.apply_committed(committed);

        // One WAL batch: the new entries, then the hard state (with the newest commit index).
        // raft reads its log from the storage as soon as the Ready is advanced, so the
        // entries go into the in-memory log now; raft counts them as durable only when the
        // write reports back.
        let entries = ready.take_entries();
        let mut hard_state = ready.hs().cloned();
        let commit_now = self.raw.raft.raft_log.committed;
        if hard_state.is_none() && commit_now > self.durable_commit && !entries.is_empty() {
            // The commit index rides along with entries that are written anyway.
            hard_state = Some(self.raw.raft.hard_state());
        }
        let conf_change_waits = self
            .apply_backlog
            .front()
            .is_some_and(|e| e.index > self.durable_commit);
        if conf_change_waits {
            // A committed configuration change applies only once a commit index covering it
            // is durable here: a member it removed may stop for good, and a restart that did
            // not know the change committed would wait for that member's vote forever.
            hard_state = Some(self.raw.raft.hard_state());
        } else if entries.is_empty() && records.is_empty() && !ready.must_sync() {
            // Only the commit index moved: it needs no sync of its own (a restart learns it
            // again from the leader, or from the next write it rides along with).
            if let Some(state) = hard_state.take() {
                self.log.set_hard_state(state);
            }
        }
        let written_commit = hard_state.as_ref().map_or(0, |h| h.commit);
        let last_entry = entries.last().map_or(0, |e| e.index);
        records.extend(
            entries
                .iter()
                .map(|e| (RecordType::Entry, records::encode_entry(e))),
        );
        if let Some(state) = &hard_state {
            records.push((RecordType::HardState, records::encode_hard_state(state)));
        }
        self.log.append(&entries);
        if let Some(state) = hard_state {
            self.durable_commit = state.commit;
            self.log.set_hard_state(state);
        }
        self.deliver_reads(ready.take_read_states());
        let persisted = ready.take_persisted_messages();
        if let Some(soft) = ready.ss() {
            self.on_soft_state(soft.leader_id, soft.raft_state);
        }
        let number = ready.number();
        let mut durable_now = false;
        if records.is_empty() {
            // Nothing to write, but this Ready and its messages must not overtake the writes
            // before it: they complete with the last one.
            match self.writes.back_mut() {
                Some(last) => {
                    last.messages.extend(persisted);
                    last.ready_number = Some(number);
                }
                None => {
                    if !persisted.is_empty() {
                        outbox.send(persisted);
                    }
                    durable_now = true;
                }
            }
        } else {
            self.writes.push_back(PendingWrite {
                kind: WriteKind::Ready { last_entry },
                ready_number: Some(number),
                records,
                release_through: None,
                messages: persisted,
                commit: written_commit,
            });
        }
        self.raw.advance_append_async(ready);
        if durable_now {
            // raft keeps a record of every Ready until told it is durable.
            self.raw.on_persist_ready(number);
        }
        self.advance_applied();
        self.release_held_conf_changes();
        self.tell_peers(outbox);
        self.publish_progress();
        Ok(())
    }

    /// Tells raft what is applied, up to what is durable here: a snapshot installed in the
    /// state machine counts as applied for raft once its marker is written.
    fn advance_applied(&mut self) {
        let log = &self.raw.raft.raft_log;
        let applied = self.applied_index.min(log.persisted);
        if applied > log.applied() {
            self.raw.advance_apply_to(applied);
        }
    }

    fn publish_progress(&self) {
        let committed = self.raw.raft.raft_log.committed;
        self.shared.commit_index.store(committed, Ordering::Release);
        self.shared.metrics.proposals_committed.set(committed);
        self.shared
            .raft_term
            .store(self.raw.raft.term, Ordering::Release);
    }

    /// The next batch for the [`DiskWriter`]: every queued write not yet handed out, as one
    /// batch with one sync. `None` while a batch is with the writer: batches complete in
    /// order, one at a time, so each sync carries everything that arrived during the last.
    pub fn take_write(&mut self) -> Option<WriteJob> {
        if self.in_flight > 0 || self.writes.is_empty() || self.failed.is_some() {
            return None;
        }
        let mut job = WriteJob::default();
        for write in self.writes.iter_mut() {
            job.records.append(&mut write.records);
            if write.release_through.is_some() {
                job.release_through = write.release_through;
            }
        }
        self.in_flight = self.writes.len();
        Some(job)
    }

    /// True while a batch is with the [`DiskWriter`].
    pub fn writing(&self) -> bool {
        self.in_flight > 0
    }

    /// Takes the [`DiskWriter`]'s report on the batch from [`RaftNode::take_write`]: raft
    /// learns which Readies are durable, and the messages that waited for them leave.
    pub fn write_done(
        &mut self,
        done: WriteDone,
        outbox: &mut dyn Outbox,
    ) -> Result<(), NodeError> {
        let written = std::mem::take(&mut self.in_flight);
        let (lsn, bytes) = match done.result {
            Ok(position) => position,
            Err(error) => {
                self.fail(error.clone());
                return Err(NodeError::Wal(error));
            }
        };
        self.wal_bytes = bytes;
        let mut persisted_number = None;
        let mut last_entry = 0;
        let mut messages = Vec::new();
        let mut checkpoints = Vec::new();
        for write in self.writes.drain(..written) {
            self.synced_commit = self.synced_commit.max(write.commit);
            messages.extend(write.messages);
            if write.ready_number.is_some() {
                persisted_number = write.ready_number;
            }
            match write.kind {
                WriteKind::Ready { last_entry: last } => {
                    last_entry = last_entry.max(last);
                }
                WriteKind::Checkpoint(info, checkpoint_lsn) => {
                    checkpoints.push((info, checkpoint_lsn))
                }
            }
        }
        self.wal_marks.push_back((lsn, last_entry));
        for (info, checkpoint_lsn) in checkpoints {
            self.checkpoint_logged(info, checkpoint_lsn);
        }
        if self.removed {
            // A member that applied its own removal no longer drives raft: raft-rs has dropped
            // its own progress, and a leader that removed itself would panic on it
            // (`on_persist_ready` looks its progress up; found by the simulation).
            return Ok(());
        }
        if let Some(number) = persisted_number {
            self.raw.on_persist_ready(number);
        }
        if !self.apply_backlog.is_empty() {
            self.apply_committed(Vec::new());
        }
        self.advance_applied();
        if !messages.is_empty() {
            outbox.send(messages);
        }
        Ok(())
    }

    /// Drops applied, durable entries older than the catch-up window from the log in memory
    /// once enough have gathered (`NodeConfig::trim_min_entries`): checkpoints can be hundreds of
    /// thousands of entries apart (the next waits until the WAL grew by the last one's size),
    /// and a follower further behind than the window is sent a checkpoint anyway. The server's
    /// loop calls it every turn; it is cheap when there is nothing to drop.
    ///
    /// What is still needed stays: a checkpoint being taken must be usable when it is done (a
    /// checkpoint older than the log's start is not offered), and on the leader each follower
    /// that answers keeps the entries after its position (the next index it is probed at, the
    /// checkpoint it is being sent, or what it matched), or, when it is behind the newest
    /// checkpoint, keeps that checkpoint usable. Otherwise a follower caught up by snapshot
    /// under a steady write load would find the entries after its checkpoint gone and want
    /// another, again and again. A follower that does not answer holds nothing back.
    pub fn trim_log(&mut self) {
        if self.legacy_checkpoint_due || self.removed {
            // The first checkpoint of a legacy data dir decides what the log keeps.
            return;
        }
        let durable_applied = self.applied_index.min(self.raw.raft.raft_log.persisted);
        let mut through = durable_applied.saturating_sub(self.config.catch_up_entries);
        let threshold = self.log.first_index() + self.config.trim_min_entries.max(1);
        if through < threshold {
            return;
        }
        if let Some(index) = self.checkpoint_in_progress() {
            through = through.min(index);
        }
        if self.is_leader() {
            let own = self.id();
            for (id, progress) in self.raw.raft.prs().iter() {
                if *id == own || !progress.recent_active {
                    continue;
                }
                let position = match progress.state {
                    ProgressState::Snapshot => progress.pending_snapshot,
                    ProgressState::Probe => progress.next_idx.saturating_sub(1),
                    ProgressState::Replicate => progress.matched,
                };
                through = through.min(position.max(self.checkpoint_index));
            }
        }
        if through >= threshold {
            let freed = self.log.trim_through(through);
            self.log_garbage.extend(freed);
        }
    }

    /// Applies committed `entries` (after any still waiting) in order, up to a configuration
    /// change whose commit is not yet durable here: it and everything after it wait for the
    /// write that makes it so ([`RaftNode::write_done`]).
    fn apply_committed(&mut self, mut entries: Vec<Entry>) {
        let waits = |e: &Entry, synced: u64| {
            e.get_entry_type() != EntryType::EntryNormal && e.index > synced
        };
        if self.apply_backlog.is_empty() {
            // The usual case: nothing waits, and the batch applies as it came.
            if let Some(at) = entries.iter().position(|e| waits(e, self.synced_commit)) {
                self.apply_backlog.extend(entries.drain(at..));
            }
            self.apply_entries(entries);
            return;
        }
        self.apply_backlog.extend(entries);
        let mut now = Vec::new();
        while let Some(entry) = self.apply_backlog.front() {
            if waits(entry, self.synced_commit) {
                break;
            }
            now.extend(self.apply_backlog.pop_front());
        }
        self.apply_entries(now);
    }

    /// Processes Readies and writes them with `writer` until raft has nothing more: for
    /// startup and shutdown, and for tests, where nothing else needs to run meanwhile.
    pub async fn handle_ready(
        &mut self,
        writer: &mut DiskWriter<D>,
        outbox: &mut dyn Outbox,
    ) -> Result<(), NodeError> {
        for _ in 0..16 {
            self.process_ready(outbox).await?;
            match self.take_write() {
                Some(job) => {
                    let done = writer.write(job).await;
                    self.write_done(done, outbox)?;
                }
                None if !self.raw.has_ready() => break,
                None => {}
            }
        }
        Ok(())
    }

    fn fail(&mut self, error: String) {
        self.shared.wal_failed.store(true, Ordering::Release);
        for (_, (_, reply)) in self.waiters.drain() {
            let _ = reply.send(Err(wal_failed_status()));
        }
        for read in self.pending_reads.drain(..) {
            for reply in read.replies {
                let _ = reply.send(Err(wal_failed_status()));
            }
        }
        self.failed = Some(error);
    }

    fn on_soft_state(&mut self, leader_id: u64, role: StateRole) {
        let shared = &self.shared;
        if leader_id != self.leader_id {
            if leader_id != 0 {
                shared.metrics.leader_changes_seen.inc();
            }
            tracing::info!(
                member = %format!("{:x}", self.config.id),
                leader = %format!("{leader_id:x}"),
                term = self.raw.raft.term,
                "leader changed"
            );
            self.leader_id = leader_id;
            let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.transfers)
                .into_iter()
                .partition(|(target, _, _)| *target == leader_id);
            for (_, _, reply) in done {
                let _ = reply.send(Ok(()));
            }
            self.transfers = waiting;
        }
        shared.leader_id.store(leader_id, Ordering::Release);
        let was_leader = shared
            .is_leader
            .swap(role == StateRole::Leader, Ordering::AcqRel);
        if role == StateRole::Leader && !was_leader {
            // A new leader restarts every lease's clock with its full TTL (etcd's lessor
            // promotion), so leases do not expire in bulk because the old leader died.
            shared.restart_lease_clocks();
        }
        if leader_id == 0 || (was_leader && role != StateRole::Leader) {
            // Reads waiting for a ReadIndex from a leader that is gone are asked again at the
            // next retry; nothing to do here but make sure the retry comes soon.
            for read in &mut self.pending_reads {
                read.asked_at_tick = read.asked_at_tick.saturating_sub(READ_RETRY_TICKS);
            }
        }
    }

    fn deliver_reads(&mut self, states: Vec<raft::ReadState>) {
        for state in states {
            let Ok(ctx) = <[u8; 8]>::try_from(state.request_ctx.as_slice()) else {
                continue;
            };
            let ctx = u64::from_le_bytes(ctx);
            if let Some(at) = self.pending_reads.iter().position(|r| r.ctx == ctx) {
                let read = self.pending_reads.swap_remove(at);
                for reply in read.replies {
                    let _ = reply.send(Ok(state.index));
                }
            }
        }
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        let applying = Instant::now();
        let mut results = Vec::new();
        let mut conf_changes = Vec::new();
        {
            let mut store = shared.write_store();
            let mut alarms = shared.alarms.lock().expect("alarm lock");
            let mut downgrade = shared.downgrade.lock().expect("downgrade lock");
            let mut members = shared.members.lock().expect("members lock");
            let mut clocks = shared.lease_clocks.lock().expect("lease clock lock");
            let mut auth = shared.auth();
            let auth_before = auth.clone();
            for entry in entries {
                debug_assert!(
                    entry.index == self.applied_index + 1,
                    "apply out of order: {} after {}",
                    entry.index,
                    self.applied_index
                );
                if entry.index <= self.applied_index {
                    continue;
                }
                match entry.get_entry_type() {
                    EntryType::EntryNormal => match records::entry_command(&entry) {
                        Ok(Some((request_id, command))) => {
                            let physical = matches!(&command, Command::Compact(r) if r.physical);
                            let expiry =
                                request_id == 0 && matches!(&command, Command::LeaseRevoke(_));
                            let mut context = ApplyContext {
                                alarms: &mut alarms,
                                members: &mut members,
                                lease_clocks: Some(&mut clocks),
                                auth: &mut auth,
                                downgrade: &mut downgrade,
                                tokens: Some(&shared.tokens),
                                index: entry.index,
                                from_client: request_id != 0,
                            };
                            let result = apply(&mut store, &mut context, command);
                            if result.is_err() {
                                shared.metrics.proposals_failed.inc();
                            } else if expiry {
                                shared.metrics.lease_revoked.inc();
                            }
                            results.push((request_id, physical, result));
                        }
                        Ok(None) => {}
                        Err(error) => {
                            // Every member holds the same bytes; applying nothing keeps them
                            // equal, and the error says where to look.
                            tracing::error!(%error, "a committed entry does not decode");
                        }
                    },
                    EntryType::EntryConfChangeV2 => match conf_change_command(&entry) {
                        Ok((request_id, change)) => {
                            // Checked against the members as of this entry, on every member
                            // alike; a refused change leaves raft's configuration as it was.
                            let mut removed = shared.removed_members.lock().expect("members lock");
                            let result =
                                membership::apply(&mut members, &mut removed, &change, usize::MAX);
                            if let Err(error) = &result {
                                tracing::warn!(%error, index = entry.index, ?change,
                                    "configuration change refused");
                            } else {
                                conf_changes.push((entry.clone(), change));
                            }
                            self.members_changed = true;
                            results.push((request_id, false, result));
                        }
                        Err(error) => {
                            tracing::error!(%error, "a committed configuration change does not decode")
                        }
                    },
                    EntryType::EntryConfChange => {
                        tracing::error!(
                            index = entry.index,
                            "a version-1 configuration change (Keel never writes them) is ignored"
                        );
                    }
                }
                self.applied_index = entry.index;
                self.applied_term = entry.term;
            }
            // Published before the applied index moves, so that a client answered after an
            // auth change is checked against it.
            if !std::sync::Arc::ptr_eq(&auth, &auth_before) {
                shared.set_auth(auth);
            }
            shared
                .applied_index
                .store(self.applied_index, Ordering::Release);
        }
        for (entry, change) in conf_changes {
            self.apply_conf_change(&entry, &change);
        }
        let apply_time = applying.elapsed();
        shared.metrics.backend_commit.observe(apply_time);
        if apply_time > SLOW_APPLY {
            shared.metrics.slow_apply.inc();
        }
        shared.metrics.proposals_applied.set(self.applied_index);
        shared.revision_changed.notify(usize::MAX);
        for (request_id, physical, result) in results {
            if request_id == 0 {
                continue;
            }
            let Some((_, reply)) = self.waiters.remove(&request_id) else {
                continue;
            };
            if physical && result.is_ok() {
                self.physical_compaction_waiters.push((reply, result));
            } else {
                let _ = reply.send(result);
            }
        }
    }

    /// Hands an applied (and accepted) membership change to raft.
    fn apply_conf_change(&mut self, entry: &Entry, change: &Command) {
        let applied = ConfChangeV2::parse_from_bytes(&entry.data)
            .map_err(|e| e.to_string())
            .and_then(|cc| self.raw.apply_conf_change(&cc).map_err(|e| e.to_string()));
        match applied {
            Ok(conf_state) => {
                let conf_state = membership::sorted(&conf_state);
                if let Some(single) = membership::raft_change(change) {
                    // Replay computes the configuration without raft: both must agree.
                    debug_assert_eq!(
                        conf_state,
                        membership::conf_state_after(&self.log.conf_state(), single),
                        "raft-rs and replay disagree on entry {}",
                        entry.index
                    );
                }
                tracing::info!(index = entry.index, ?change, voters = ?conf_state.voters,
                    learners = ?conf_state.learners, "membership changed");
                self.shared.set_conf_state(&conf_state);
                self.log.set_conf_state(conf_state);
                if let Command::MemberRemove(request) = change {
                    if request.id == self.config.id {
                        self.removed = true;
                    }
                }
            }
            Err(error) => {
                // Every member checked the change the same way before handing it to raft, so
                // raft refusing it is a bug; the member list already moved, so stop rather than
                // diverge.
                self.fail(format!(
                    "raft refused configuration change {}: {error}",
                    entry.index
                ));
            }
        }
    }

    /// Installs the leader's snapshot into the state machine and the in-memory log, and
    /// returns the WAL marker to write (`None` when the snapshot is not newer than what is
    /// applied).
    async fn install_snapshot(
        &mut self,
        snapshot: &raft::eraftpb::Snapshot,
    ) -> Result<Option<SnapshotMarker>, NodeError> {
        let meta = snapshot.get_metadata();
        let index = meta.index;
        if index <= self.applied_index {
            return Ok(None);
        }
        // The transport stored the leader's checkpoint file under this index before stepping
        // the snapshot message.
        let payload = checkpoint::load(&self.snap, index)
            .await
            .map_err(|e| NodeError::Checkpoint(format!("snapshot {index}: {e}")))?;
        let (state_meta, offset) = records::decode_state(&payload).map_err(corrupt)?;
        let state_meta = state_meta.ok_or_else(|| corrupt("snapshot without state metadata"))?;
        let store = Store::decode_checkpoint(&payload[offset..])
            .map_err(|e| NodeError::Checkpoint(format!("snapshot {index}: {e}")))?;
        let marker = SnapshotMarker {
            index,
            term: meta.term,
            conf_state: meta.get_conf_state().clone(),
        };
        {
            let shared = &self.shared;
            {
                // The store and the auth state change together: no request may check the old
                // permissions against the new data.
                let mut current = shared.write_store();
                *current = store;
                shared.set_auth(std::sync::Arc::new(state_meta.auth.clone()));
                // A snapshot replaces the auth state wholesale: the tokens handed out before
                // it may belong to users it no longer has.
                shared.tokens.invalidate_all();
            }
            *shared.alarms.lock().expect("alarm lock") = state_meta.alarms.clone();
            *shared.downgrade.lock().expect("downgrade lock") = state_meta.downgrade.clone();
            *shared.members.lock().expect("members lock") = state_meta.members.clone();
            *shared.removed_members.lock().expect("members lock") = state_meta.removed.clone();
            shared.restart_lease_clocks();
            shared.set_conf_state(&marker.conf_state);
            shared.applied_index.store(index, Ordering::Release);
        }
        self.log.restart_after(CheckpointInfo {
            index,
            term: meta.term,
            conf_state: marker.conf_state.clone(),
        });
        self.applied_index = index;
        self.applied_term = meta.term;
        self.checkpoint_index = index;
        self.members_changed = true;
        self.apply_backlog.retain(|e| e.index > index);
        if !marker.conf_state.voters.contains(&self.config.id)
            && !marker.conf_state.learners.contains(&self.config.id)
            && state_meta.members.iter().all(|m| m.id != self.config.id)
        {
            // The snapshot's cluster no longer holds this member.
            self.removed = true;
        }
        self.shared.revision_changed.notify(usize::MAX);
        tracing::info!(
            index,
            term = meta.term,
            "installed a snapshot from the leader"
        );
        Ok(Some(marker))
    }

    /// Takes the chunks of log entries a checkpoint dropped, for another thread to free (a
    /// million entries take a quarter of a second to free; [`RaftNode::compaction_step`]
    /// frees those nobody took, a few chunks at a time).
    pub fn take_log_garbage(&mut self) -> Vec<Vec<Entry>> {
        std::mem::take(&mut self.log_garbage)
    }

    /// Does one slice of pending physical compaction; true when none is left or none can be
    /// done now (a checkpoint is being encoded from the store). Clients waiting for a physical
    /// compaction are answered when none is left.
    pub fn compaction_step(&mut self) -> bool {
        // Log entries a checkpoint dropped are freed here too, a few chunks at a time.
        let garbage = self.log_garbage.len();
        self.log_garbage
            .truncate(garbage.saturating_sub(LOG_CHUNKS_FREED_PER_STEP));
        if !self.log_garbage.is_empty() {
            return false;
        }
        let shared = &self.shared;
        let (pending, pinned) = {
            let store = shared.read_store();
            (store.compaction_pending(), store.checkpoint_pinned())
        };
        if pinned {
            return true;
        }
        let done = !pending || shared.write_store().compact_step(COMPACTION_STEP_UNITS);
        if done {
            for (reply, result) in self.physical_compaction_waiters.drain(..) {
                let _ = reply.send(result);
            }
        }
        done
    }

    /// A checkpoint is due after `--snapshot-count` applied entries *and* once the WAL
    /// written since the last checkpoint is at least as large as that checkpoint (encoding
    /// costs time in proportion to the store; this keeps its amortized cost at most that of
    /// the writes), when no other checkpoint is under way; and at once when raft wants a
    /// snapshot the newest checkpoint cannot give (for a member added after it).
    pub fn checkpoint_due(&self) -> bool {
        // After a failed try, the next waits for entries past the failed one; a wanted one
        // also comes again after a back-off without them.
        let since = self.checkpoint_index.max(self.checkpoint_failed_at);
        let retry = self.checkpoint_failed_at > self.checkpoint_index
            && self.ticks >= self.checkpoint_retry_tick;
        let wanted = (self.log.snapshot_wanted() || self.legacy_checkpoint_due)
            && (self.applied_index > since || retry);
        matches!(self.checkpoint_state, CheckpointState::Idle)
            && self.failed.is_none()
            && (wanted
                || (self.applied_index >= since + self.config.snapshot_count.max(1)
                    && self.wal_bytes - self.wal_bytes_at_checkpoint >= self.last_checkpoint_bytes))
    }

    /// Starts a checkpoint of the state at the applied index, if one is due: the returned
    /// work encodes it away from the raft core ([`CheckpointWork::step`], under the store's
    /// read lock a slice at a time), then the caller saves the file and reports with
    /// [`RaftNode::checkpoint_encoded`] and [`RaftNode::checkpoint_saved`].
    pub fn start_checkpoint(&mut self) -> Option<CheckpointWork> {
        if !self.checkpoint_due() {
            return None;
        }
        let index = self.applied_index;
        let shared = self.shared.clone();
        let meta = &StateMeta {
            term: self.applied_term,
            conf_state: self.log.conf_state(),
            members: shared.members.lock().expect("members lock").clone(),
            alarms: shared.alarms.lock().expect("alarm lock").clone(),
            removed: shared.removed_members.lock().expect("members lock").clone(),
            auth: shared.auth().as_ref().clone(),
            downgrade: shared.downgrade.lock().expect("downgrade lock").clone(),
        };
        let encoder = shared.write_store().begin_checkpoint();
        let instance = encoder.instance();
        // Where the WAL may later be released through for this checkpoint: the end of the
        // last completed write before the first one holding an entry above its index (entries
        // after the checkpoint must stay in the WAL).
        let mut lsn = self.previous_checkpoint_lsn.unwrap_or(0);
        for (end, last_entry) in &self.wal_marks {
            if *last_entry > index {
                break;
            }
            lsn = *end;
        }
        self.checkpoint_state = CheckpointState::Encoding {
            info: CheckpointInfo {
                index,
                term: meta.term,
                conf_state: meta.conf_state.clone(),
            },
            lsn,
            instance,
        };
        Some(CheckpointWork {
            index,
            prefix: records::encode_state_prefix(meta, 0),
            encoder,
        })
    }

    /// The encoding of the checkpoint begun by [`RaftNode::start_checkpoint`] ended (`ok`:
    /// the payload is ready to be saved). Physical compaction may go on again.
    /// An outcome for any other checkpoint (one a snapshot made moot) is ignored.
    pub fn checkpoint_encoded(&mut self, index: u64, ok: bool) {
        if !matches!(&self.checkpoint_state,
            CheckpointState::Encoding { info, .. } if info.index == index)
        {
            return;
        }
        let CheckpointState::Encoding {
            info,
            lsn,
            instance,
        } = std::mem::replace(&mut self.checkpoint_state, CheckpointState::Idle)
        else {
            return;
        };
        // Nothing to unpin when a snapshot replaced the store (the pin went with it).
        self.shared.write_store().end_checkpoint(instance);
        if info.index <= self.checkpoint_index {
            // A snapshot from the leader installed a newer state meanwhile.
            return;
        }
        if ok {
            self.checkpoint_state = CheckpointState::Saving { info, lsn };
        } else {
            tracing::error!(index = info.index, "encoding or writing checkpoint failed");
            self.checkpoint_failed(info.index);
        }
    }

    /// Records that the checkpoint at `index` failed to encode or save.
    fn checkpoint_failed(&mut self, index: u64) {
        self.checkpoint_failed_at = index;
        self.checkpoint_retry_tick = self.ticks + CHECKPOINT_RETRY_TICKS;
    }

    /// The checkpoint file was saved (its size) or not. On success its hard state goes to
    /// the WAL, and once that is durable the in-memory log is compacted behind it and the
    /// WAL released through the previous checkpoint. A failure is logged and retried at the
    /// next threshold: the WAL still holds everything.
    /// An outcome for any other checkpoint (one a snapshot made moot after it was encoded)
    /// is ignored.
    pub fn checkpoint_saved(&mut self, index: u64, result: Result<u64, String>) {
        if !matches!(&self.checkpoint_state,
            CheckpointState::Saving { info, .. } if info.index == index)
        {
            return;
        }
        let CheckpointState::Saving { info, lsn } =
            std::mem::replace(&mut self.checkpoint_state, CheckpointState::Idle)
        else {
            return;
        };
        let bytes = match result {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::error!(%error, index = info.index, "writing checkpoint failed");
                self.checkpoint_failed(info.index);
                return;
            }
        };
        if info.index <= self.checkpoint_index {
            // A snapshot from the leader installed a newer state meanwhile.
            return;
        }
        tracing::info!(index = info.index, bytes, "checkpoint written");
        self.last_checkpoint_bytes = bytes;
        // The hard state is written again after the checkpoint, so the newest one always lies
        // after every position the WAL may release.
        // The hard state as last handed to the log, whose commit index covers only entries
        // already queued before this write (raft's own may cover entries not queued yet).
        let hard_state = self.log.hard_state();
        self.durable_commit = self.durable_commit.max(hard_state.commit);
        self.checkpoint_state = CheckpointState::Logging;
        self.writes.push_back(PendingWrite {
            kind: WriteKind::Checkpoint(info, lsn),
            ready_number: None,
            records: vec![(
                RecordType::HardState,
                records::encode_hard_state(&hard_state),
            )],
            release_through: self.previous_checkpoint_lsn,
            messages: Vec::new(),
            commit: hard_state.commit,
        });
    }

    fn checkpoint_logged(&mut self, info: CheckpointInfo, lsn: u64) {
        self.checkpoint_state = CheckpointState::Idle;
        if let Some(released) = self.previous_checkpoint_lsn {
            while self
                .wal_marks
                .front()
                .is_some_and(|(end, _)| *end <= released)
            {
                self.wal_marks.pop_front();
            }
        }
        self.previous_checkpoint_lsn = Some(lsn);
        if info.index <= self.checkpoint_index {
            return;
        }
        self.checkpoint_index = info.index;
        self.wal_bytes_at_checkpoint = self.wal_bytes;
        // The first checkpoint of a data dir bootstrapped at index 0 keeps no entries behind
        // it: a follower that needs them is sent this checkpoint instead.
        let catch_up = if std::mem::take(&mut self.legacy_checkpoint_due) {
            0
        } else {
            self.config.catch_up_entries
        };
        let freed = self.log.set_checkpoint(info, catch_up);
        self.log_garbage.extend(freed);
    }

    /// Answers every waiting client with "server stopped" (at shutdown).
    pub fn stop(&mut self) {
        for (_, _, reply) in self.transfers.drain(..) {
            let _ = reply.send(Err(ServerError::Stopped));
        }
        for (_, (_, reply)) in self.waiters.drain() {
            let _ = reply.send(Err(crate::server::state::stopped_status()));
        }
        for read in self.pending_reads.drain(..) {
            for reply in read.replies {
                let _ = reply.send(Err(crate::server::state::stopped_status()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_lite::future::block_on;
    use keel_engine::io::SimDisk;

    use super::*;

    const ME: u64 = 0x8e9e05c52164694d;

    fn bootstrap() -> Bootstrap {
        Bootstrap {
            member_id: ME,
            members: vec![pb::Member {
                id: ME,
                name: "default".into(),
                peer_ur_ls: vec!["http://localhost:2380".into()],
                ..Default::default()
            }],
            joining: false,
        }
    }

    fn options() -> WalOptions {
        WalOptions {
            segment_bytes: 1 << 20,
            dsync: false,
        }
    }

    fn put(key: &str, value: &str) -> Command {
        Command::Put(pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            ..Default::default()
        })
    }

    fn value_of(store: &Store, key: &str) -> Option<Vec<u8>> {
        let request = keel_engine::mvcc::RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        };
        store
            .range(&request)
            .unwrap()
            .kvs
            .first()
            .map(|kv| kv.value.clone())
    }

    #[test]
    fn a_format1_data_dir_opens_with_every_entry_committed() {
        block_on(async {
            let (wal_disk, snap) = (SimDisk::new(1), SimDisk::new(2));
            // Single-member Keel before raft: a checkpoint holding only the MVCC payload at
            // index 1, then format-1 entries 2 and 3 (term 2), no hard state.
            let mut store = Store::new();
            let mut context_alarms = Vec::new();
            let mut members = Vec::new();
            let mut auth = Default::default();
            let mut downgrade = None;
            let mut context = ApplyContext {
                alarms: &mut context_alarms,
                members: &mut members,
                lease_clocks: None,
                auth: &mut auth,
                downgrade: &mut downgrade,
                tokens: None,
                index: 1,
                from_client: false,
            };
            apply(&mut store, &mut context, put("a", "1")).unwrap();
            checkpoint::save(&snap, 1, &store.encode_checkpoint().unwrap())
                .await
                .unwrap();
            let (mut wal, _) = Wal::open(wal_disk.clone(), options()).await.unwrap();
            let mut payloads = Vec::new();
            for (index, command) in [(1, put("a", "1")), (2, put("b", "2")), (3, put("a", "3"))] {
                let mut payload = Vec::new();
                command.encode_entry(index, 2, &mut payload);
                payloads.push(payload);
            }
            let records: Vec<(RecordType, &[u8])> = payloads
                .iter()
                .map(|p| (RecordType::Entry, p.as_slice()))
                .collect();
            wal.append(&records).await.unwrap();
            drop(wal);

            let recovered = recover(wal_disk, snap, options(), &bootstrap())
                .await
                .unwrap();
            assert_eq!(recovered.checkpoint_index, 1);
            assert_eq!(recovered.applied_index, 3);
            assert_eq!(recovered.replayed, 2);
            assert_eq!(value_of(&recovered.store, "a"), Some(b"3".to_vec()));
            assert_eq!(value_of(&recovered.store, "b"), Some(b"2".to_vec()));
            let state = recovered.log.hard_state();
            assert_eq!((state.term, state.vote, state.commit), (2, ME, 3));
            assert_eq!(recovered.meta.conf_state.voters, vec![ME]);
        });
    }

    fn entry(index: u64, term: u64, request_id: u64, command: &Command) -> Entry {
        Entry {
            index,
            term,
            data: command::encode_data(request_id, command).into(),
            ..Default::default()
        }
    }

    /// A bootstrapped member of three voters (this one, 7 and 9) on `wal_disk` and `snap`, so
    /// that the commit index recorded is what counts.
    async fn three_voters(wal_disk: &SimDisk, snap: &SimDisk) -> Bootstrap {
        let mut boot = bootstrap();
        for id in [7, 9] {
            boot.members.push(pb::Member {
                id,
                ..Default::default()
            });
        }
        // Bootstrap writes the first checkpoint.
        drop(
            recover(wal_disk.clone(), snap.clone(), options(), &boot)
                .await
                .unwrap(),
        );
        boot
    }

    /// Appends `entries`, then `state`, to the WAL on `wal_disk` as one batch.
    async fn write_wal<'a>(
        wal_disk: &SimDisk,
        entries: impl Iterator<Item = &'a Entry>,
        state: &HardState,
    ) {
        let (mut wal, _) = Wal::open(wal_disk.clone(), options()).await.unwrap();
        let mut payloads: Vec<(RecordType, Vec<u8>)> = entries
            .map(|e| (RecordType::Entry, records::encode_entry(e)))
            .collect();
        payloads.push((RecordType::HardState, records::encode_hard_state(state)));
        let records: Vec<(RecordType, &[u8])> =
            payloads.iter().map(|(t, p)| (*t, p.as_slice())).collect();
        wal.append(&records).await.unwrap();
    }

    #[test]
    fn replay_replaces_an_overwritten_tail_and_applies_only_what_was_committed() {
        block_on(async {
            let (wal_disk, snap) = (SimDisk::new(3), SimDisk::new(4));
            let boot = three_voters(&wal_disk, &snap).await;
            // The log starts after the bootstrap checkpoint.
            let base = BOOTSTRAP_INDEX;
            let old: Vec<Entry> = (1..=3)
                .map(|i| entry(base + i, 1, i, &put("k", &format!("old{i}"))))
                .collect();
            // A new leader of term 2 overwrote entries 2 and 3; only 2 is committed.
            let new: Vec<Entry> = (2..=3)
                .map(|i| entry(base + i, 2, 10 + i, &put("k", &format!("new{i}"))))
                .collect();
            let state = HardState {
                term: 2,
                commit: base + 2,
                ..Default::default()
            };
            write_wal(&wal_disk, old.iter().chain(&new), &state).await;

            let recovered = recover(wal_disk, snap, options(), &boot).await.unwrap();
            assert_eq!(recovered.applied_index, base + 2);
            assert_eq!(value_of(&recovered.store, "k"), Some(b"new2".to_vec()));
            assert_eq!(recovered.log.last_index(), base + 3);
            let held = recovered.log.entries_between(base + 1, base + 3);
            assert_eq!(held[0], old[0]);
            assert_eq!(&held[1..], &new[..]);
            assert_eq!(recovered.log.hard_state().commit, base + 2);
        });
    }

    /// A data dir bootstrapped at index 0 (Keel before membership changes) whose log still
    /// starts at 1 asks for a checkpoint at once; one bootstrapped at index 1 does not.
    #[test]
    fn a_log_that_starts_at_index_one_is_flagged_for_a_checkpoint() {
        block_on(async {
            let (wal_disk, snap) = (SimDisk::new(5), SimDisk::new(6));
            let meta = StateMeta {
                term: 0,
                conf_state: ConfState::from((vec![ME, 7, 9], vec![])),
                members: bootstrap().members,
                ..Default::default()
            };
            let mvcc = Store::new().encode_checkpoint().unwrap();
            checkpoint::save(&snap, 0, &records::encode_state(&meta, &mvcc))
                .await
                .unwrap();
            let old: Vec<Entry> = (1..=2)
                .map(|i| entry(i, 2, i, &put("k", &format!("v{i}"))))
                .collect();
            let state = HardState {
                term: 2,
                commit: 2,
                ..Default::default()
            };
            write_wal(&wal_disk, old.iter(), &state).await;
            let recovered = recover(wal_disk, snap, options(), &bootstrap())
                .await
                .unwrap();
            assert_eq!(recovered.log.first_index(), 1);
            assert!(recovered.legacy_bootstrap);

            let (wal_disk, snap) = (SimDisk::new(7), SimDisk::new(8));
            let fresh = recover(wal_disk, snap, options(), &bootstrap())
                .await
                .unwrap();
            assert_eq!(fresh.checkpoint_index, BOOTSTRAP_INDEX);
            assert!(!fresh.legacy_bootstrap);
        });
    }

    /// Regression (simulation seed 2933): a follower wrote entries 2..4 of term 1, then a new
    /// leader replaced its log from index 2 with term 2, and it took a checkpoint at 2. Replay
    /// skips records at or below the checkpoint, but the stale 3..4 written before the
    /// replacement must not come back.
    #[test]
    fn a_replacement_at_or_below_the_checkpoint_drops_the_older_tail() {
        block_on(async {
            let (wal_disk, snap) = (SimDisk::new(5), SimDisk::new(6));
            let boot = three_voters(&wal_disk, &snap).await;
            let old: Vec<Entry> = (1..=4)
                .map(|i| entry(i, 1, i, &put("k", &format!("old{i}"))))
                .collect();
            let new = entry(2, 2, 20, &put("k", "new2"));
            let state = HardState {
                term: 2,
                commit: 2,
                ..Default::default()
            };
            write_wal(&wal_disk, old.iter().chain(std::iter::once(&new)), &state).await;
            // The checkpoint at 2 (its state is what applying 1 and the new 2 gives).
            let mut store = Store::new();
            let (mut alarms, mut members) = (Vec::new(), boot.members.clone());
            let mut auth = Default::default();
            let mut downgrade = None;
            let mut context = ApplyContext {
                alarms: &mut alarms,
                members: &mut members,
                lease_clocks: None,
                auth: &mut auth,
                downgrade: &mut downgrade,
                tokens: None,
                index: 1,
                from_client: false,
            };
            apply(&mut store, &mut context, put("k", "old1")).unwrap();
            apply(&mut store, &mut context, put("k", "new2")).unwrap();
            let meta = StateMeta {
                term: 2,
                conf_state: ConfState::from((vec![ME, 7, 9], vec![])),
                members: boot.members.clone(),
                ..Default::default()
            };
            let mvcc = store.encode_checkpoint().unwrap();
            checkpoint::save(&snap, 2, &records::encode_state(&meta, &mvcc))
                .await
                .unwrap();

            let recovered = recover(wal_disk, snap, options(), &boot).await.unwrap();
            assert_eq!(recovered.checkpoint_index, 2);
            assert_eq!(recovered.log.last_index(), 2, "the stale tail came back");
            assert_eq!(value_of(&recovered.store, "k"), Some(b"new2".to_vec()));
        });
    }
}
