//! One simulated cluster run: members, network, clients, faults and the checks.
//!
//! Every member runs the real [`RaftNode`] over the real WAL and checkpoint code, each on two
//! [`SimDisk`]s (WAL and checkpoints) that lose power together. The network is a bag of
//! in-flight messages, each with a delivery step; the driver delivers due messages in random
//! order, drops, duplicates and delays them, and partitions the members. Nothing reads a
//! clock or a thread-local random generator: one `u64` seed determines the whole run, and the
//! trace hash [`Sim::run`] returns (events, messages, member states after every step)
//! fingerprints it, so a test can prove that a seed replays exactly.
//!
//! The snapshot stream of the real transport is modelled here as the node expects of it (see
//! `RaftNode::install_snapshot`): when a `MsgSnapshot` leaves a member, the checkpoint file of
//! its index is read from the sender's checkpoint disk and travels with the message; on
//! delivery it is saved on the receiver's checkpoint disk before the message is stepped.
//!
//! Checks, after every step (raft properties from Ongaro's thesis, section 3.6 / figure 3.2):
//!
//! * election safety: at most one leader per term over the whole run;
//! * log matching and leader completeness, as seen from outside: an index, once any member
//!   applied it, holds the same (term, data) on every member that applies it, and no client
//!   request enters the log twice;
//! * state machine safety: members that applied the same index have equal stores (HashKV and
//!   revision);
//! * acknowledged puts get distinct revisions, and at the end each is found at its revision.
//!
//! At the end ([`Sim::settle`]) faults stop, partitions heal, crashed members restart, and the
//! cluster must elect a leader, complete a put per key, and bring every member to the same
//! applied index and store (liveness); then the clients' history must be linearizable.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot;
use futures::executor::block_on;
use keel::raft::node::{
    recover, Bootstrap, CheckpointWork, DiskWriter, EncodedCheckpoint, NodeConfig, Outbox,
    RaftNode, WriteJob,
};
use keel::server::command::Command;
use keel::server::error::ServerError;
use keel::server::state::{
    Applied, ApplyResult, Limits, MemberInfo, Proposal, Shared, SharedConfig,
};
use keel_engine::checkpoint;
use keel_engine::io::{SeededRng, SimDisk};
use keel_engine::mvcc::RangeRequest;
use keel_engine::wal::WalOptions;
use keel_proto::etcdserverpb as pb;
use raft::eraftpb::{EntryType, Message, MessageType};

use super::history::{self, History, Read, Write, WriteOutcome};

/// Keys the clients write and read: few, so that operations on one key overlap often.
pub const KEYS: usize = 3;
/// Messages in flight at most; a send beyond this is dropped (the transport's bounded queues).
pub const NETWORK_MESSAGES_MAX: usize = 4096;
/// Ready rounds processed per member per step at most (the real loop does one per turn).
pub const READY_ROUNDS_MAX: usize = 4;
/// Steps the settling phase may take to elect a leader and agree (a liveness bound: an
/// election takes a few dozen steps).
pub const SETTLE_STEPS_MAX: u64 = 3_000;
/// Events recorded for the failure report.
pub const RECENT_EVENTS_KEPT: usize = 80;
/// The cluster id every member uses.
const CLUSTER_ID: u64 = 0x4b45_454c;
/// `request_timeout_ticks` of every node.
const REQUEST_TIMEOUT_TICKS: u64 = 100;

thread_local! {
    /// The newest events of the run on this thread, for the failure report: a panic inside
    /// the node code unwinds past the simulation, so the events live outside it.
    pub static RECENT_EVENTS: RefCell<VecDeque<String>> = const { RefCell::new(VecDeque::new()) };
}

/// What a run did, summed over seeds by the tests to show that the faults really happened.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Steps run (the random phase and the settling phase).
    pub steps: u64,
    /// Raft messages sent.
    pub messages: u64,
    /// Messages lost: dropped, partitioned, to a member that was down, or over the limit.
    pub messages_lost: u64,
    /// Processes killed (without losing the disks' unsynced data).
    pub kills: u64,
    /// Power losses (unsynced writes lost or torn), including those at an armed sync point.
    pub power_losses: u64,
    /// Members that stopped after a failed WAL write or sync.
    pub wal_failures: u64,
    /// Restarts (recoveries from the disks).
    pub restarts: u64,
    /// Checkpoints taken.
    pub checkpoints: u64,
    /// Checkpoints whose save failed.
    pub checkpoint_failures: u64,
    /// Snapshots (checkpoint files) delivered to a follower.
    pub snapshots_delivered: u64,
    /// `MsgSnapshot`s lost on the way.
    pub snapshots_lost: u64,
    /// Terms in which a leader was seen.
    pub leader_terms: u64,
    /// Puts acknowledged / refused / ambiguous.
    pub puts_ok: u64,
    /// Puts refused before they entered the log.
    pub puts_failed: u64,
    /// Puts whose outcome is unknown.
    pub puts_ambiguous: u64,
    /// Linearizable reads that returned a value.
    pub reads_ok: u64,
    /// Linearizable reads that failed (no leader, timeout, crash).
    pub reads_failed: u64,
    /// The highest applied index at the end.
    pub final_applied_index: u64,
    /// Membership changes proposed.
    pub reconfigurations: u64,
    /// Members that stopped because they were removed.
    pub removed: u64,
    /// Spares in the cluster at the end.
    pub spares_joined: u64,
    /// Auth changes proposed.
    pub auth_changes: u64,
    /// The auth revision at the end (on the member with the highest applied index): how
    /// many auth changes applied.
    pub final_auth_revision: u64,
}

impl Stats {
    /// Adds `other` to these totals.
    pub fn add(&mut self, other: &Stats) {
        self.steps += other.steps;
        self.messages += other.messages;
        self.messages_lost += other.messages_lost;
        self.kills += other.kills;
        self.power_losses += other.power_losses;
        self.wal_failures += other.wal_failures;
        self.restarts += other.restarts;
        self.checkpoints += other.checkpoints;
        self.checkpoint_failures += other.checkpoint_failures;
        self.snapshots_delivered += other.snapshots_delivered;
        self.snapshots_lost += other.snapshots_lost;
        self.leader_terms += other.leader_terms;
        self.puts_ok += other.puts_ok;
        self.puts_failed += other.puts_failed;
        self.puts_ambiguous += other.puts_ambiguous;
        self.reads_ok += other.reads_ok;
        self.reads_failed += other.reads_failed;
        self.final_applied_index += other.final_applied_index;
        self.reconfigurations += other.reconfigurations;
        self.removed += other.removed;
        self.spares_joined += other.spares_joined;
        self.auth_changes += other.auth_changes;
        self.final_auth_revision += other.final_auth_revision;
    }
}

/// What a random step does.
#[derive(Clone, Copy, Debug)]
enum Event {
    /// Deliver a few due messages, in random order.
    Deliver,
    /// Tick one member's clock.
    Tick,
    /// A client puts a unique value through a random member.
    Put,
    /// A client reads a key linearizably through a random member.
    Read,
    /// Lose one message on the wire.
    Drop,
    /// Deliver one message twice.
    Duplicate,
    /// Hold one message back (reordering it).
    Delay,
    /// Split the members into two groups (or isolate one).
    Partition,
    /// Reconnect everyone.
    Heal,
    /// Kill a member's process, with or without a power loss.
    Crash,
    /// Start a member that is down.
    Restart,
    /// Arm a power loss at one of a member's next disk syncs.
    PowerLoss,
    /// Make a member's disk slow: its writes wait for some steps (ticks, messages and
    /// applies go on).
    SlowDisk,
    /// Make a member's next disk sync fail.
    SyncFailure,
    /// Propose a membership change: add a spare as a learner or a voter, promote a learner,
    /// or remove a voter (never below three).
    Reconfigure,
    /// Propose an auth change (a user or role added, deleted, granted or revoked), so that
    /// the auth state is replicated, checkpointed and replayed under the same faults.
    AuthChange,
}

/// What a scripted scenario does with a message being sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// On the wire as usual.
    Pass,
    /// Kept aside until [`Sim::release_held`].
    Hold,
    /// Lost.
    Drop,
}

/// A scripted scenario's rule for messages being sent.
pub type NetworkRule = dyn FnMut(&Message) -> Verdict;

/// A member's raft messages, collected during one `handle_ready`.
#[derive(Default)]
struct Collected(Vec<Message>);

impl Outbox for Collected {
    fn send(&mut self, messages: Vec<Message>) {
        self.0.extend(messages);
    }
}

/// A member process that is up.
struct Running {
    node: RaftNode<SimDisk>,
    shared: Arc<Shared>,
    writer: DiskWriter<SimDisk>,
    /// A write the member's slow disk has not finished.
    held_write: Option<WriteJob>,
    /// The checkpoint being encoded.
    checkpoint: Option<CheckpointWork>,
    /// The output taken from it so far (the server writes it to the file as it comes).
    taken: Vec<u8>,
    /// An encoded checkpoint not saved yet, with the output taken from it.
    unsaved: Option<(EncodedCheckpoint, Vec<u8>)>,
}

/// One member: its disks outlive its processes.
struct Member {
    id: u64,
    wal_disk: SimDisk,
    snap_disk: SimDisk,
    wal_options: WalOptions,
    election_ticks: usize,
    running: Option<Running>,
    /// Counts the processes started, so replies meant for an earlier one are told apart.
    incarnation: u64,
    /// Until this step the member's disk is "slow": its writes do not complete.
    stalled_until: u64,
    /// A fault (failing sync, crash point) is armed on one of its disks.
    fault_armed: bool,
    /// Highest index of this process's log compared with the committed entries.
    checked_commit: u64,
    /// Applied index at which this process's store was last compared.
    checked_applied: u64,
    /// A spare: not in the initial cluster; it starts empty and joins when added.
    spare: bool,
    /// Removed from the cluster: its process stopped for good.
    removed: bool,
}

/// A raft message on the wire.
struct InFlight {
    from: usize,
    to: usize,
    /// The sending process (see `Member::incarnation`): only it hears of a snapshot's fate.
    sender_incarnation: u64,
    sent_at: u64,
    deliver_at: u64,
    message: Message,
    /// The checkpoint payload travelling with a `MsgSnapshot`.
    checkpoint: Option<Vec<u8>>,
}

/// A put waiting for its answer.
struct PendingPut {
    write: usize,
    reply: oneshot::Receiver<ApplyResult>,
}

enum ReadState {
    /// Waiting for the ReadIndex.
    Index(oneshot::Receiver<Result<u64, ServerError>>),
    /// Waiting until the member applied this index.
    Apply(u64),
}

/// A linearizable read in progress on one member process.
struct PendingRead {
    key: usize,
    member: usize,
    incarnation: u64,
    invoked: u64,
    state: ReadState,
}

/// One simulated cluster.
pub struct Sim {
    seed: u64,
    rng: SeededRng,
    step: u64,
    steps: u64,
    snapshot_count: u64,
    /// `NodeConfig::catch_up_entries` of every member.
    catch_up_entries: u64,
    /// How often each event is drawn, per 10,000 steps.
    weights: Vec<(Event, u64)>,
    members: Vec<Member>,
    bootstrap_members: Vec<pb::Member>,
    network: Vec<InFlight>,
    /// Whether fault-free steps restart stopped members (not in scripted scenarios).
    restart_stopped: bool,
    /// What scripted scenarios do to messages as they are sent.
    rule: Option<Box<NetworkRule>>,
    /// Messages a scripted scenario holds back.
    held: Vec<InFlight>,
    /// Partition group of each member; messages cross only within a group.
    groups: Vec<u8>,
    history: History,
    puts: Vec<PendingPut>,
    reads: Vec<PendingRead>,
    next_value: u64,
    /// Term -> the leader seen in it.
    leaders: BTreeMap<u64, u64>,
    /// Index -> (term, data) of every entry seen committed.
    committed: BTreeMap<u64, (u64, bytes::Bytes)>,
    /// Request id -> index of the committed entry that carries it.
    committed_requests: HashMap<u64, u64>,
    /// The highest commit index any member reported.
    max_commit_seen: u64,
    /// Applied index -> (HashKV hash, revision) of the store at that index.
    states: BTreeMap<u64, (u32, i64)>,
    /// Revision -> (key, value) of every acknowledged put.
    acknowledged: BTreeMap<i64, (usize, u64)>,
    trace_hash: u64,
    stats: Stats,
    /// Print every event as it happens (`KEEL_SIM_VERBOSE=1`, for replays).
    verbose: bool,
}

/// The number of members a seed runs: even seeds three, odd seeds five.
pub fn members_for_seed(seed: u64) -> usize {
    if seed % 2 == 0 {
        3
    } else {
        5
    }
}

fn key_bytes(key: usize) -> Vec<u8> {
    format!("key-{key}").into_bytes()
}

fn value_bytes(value: u64) -> Vec<u8> {
    format!("value-{value}").into_bytes()
}

fn parse_value(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.strip_prefix("value-"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a store holds a value no client wrote: {bytes:?}"))
}

fn invoked_at(step: u64) -> u64 {
    2 * step
}

fn completed_at(step: u64) -> u64 {
    2 * step + 1
}

impl Sim {
    /// A cluster for `seed` (its size from [`members_for_seed`]) that will run `steps` random
    /// steps before settling.
    pub fn new(seed: u64, steps: u64) -> Sim {
        Sim::build(seed, steps, members_for_seed(seed), None)
    }

    /// A cluster of `count` members for a scripted scenario: no random phase; the test
    /// drives it with the methods under "scripted scenarios".
    pub fn scripted(seed: u64, count: usize, snapshot_count: u64) -> Sim {
        Sim::build(seed, 0, count, Some(snapshot_count))
    }

    fn build(seed: u64, steps: u64, count: usize, snapshot_count: Option<u64>) -> Sim {
        // Random runs have two spare members the membership changes can add.
        Sim::build_with_spares(
            seed,
            steps,
            count,
            if steps > 0 { 2 } else { 0 },
            snapshot_count,
        )
    }

    /// A cluster of `count` members and `spares` more that are not in it yet (they run, empty,
    /// until a membership change adds them), for a scripted scenario.
    pub fn scripted_with_spares(
        seed: u64,
        count: usize,
        spares: usize,
        snapshot_count: u64,
    ) -> Sim {
        Sim::build_with_spares(seed, 0, count, spares, Some(snapshot_count))
    }

    fn build_with_spares(
        seed: u64,
        steps: u64,
        count: usize,
        spares: usize,
        snapshot_count: Option<u64>,
    ) -> Sim {
        RECENT_EVENTS.with(|events| events.borrow_mut().clear());
        let mut rng = SeededRng::new(seed);
        let bootstrap_members: Vec<pb::Member> = (1..=count as u64)
            .map(|id| pb::Member {
                id,
                name: format!("m{id}"),
                peer_ur_ls: vec![format!("http://127.0.0.1:{}", 2380 + id)],
                ..Default::default()
            })
            .collect();
        let members = (1..=(count + spares) as u64)
            .map(|id| {
                let wal_disk = SimDisk::new(rng.next_u64());
                let snap_disk = SimDisk::new(rng.next_u64());
                Member {
                    id,
                    wal_disk,
                    snap_disk,
                    wal_options: WalOptions {
                        segment_bytes: 16 * 1024,
                        dsync: rng.chance(1, 2),
                    },
                    election_ticks: 10 + rng.below(10) as usize,
                    running: None,
                    incarnation: 0,
                    stalled_until: 0,
                    fault_armed: false,
                    checked_commit: 0,
                    checked_applied: u64::MAX,
                    spare: id > count as u64,
                    removed: false,
                }
            })
            .collect();
        let drawn_snapshot_count = 10 + rng.below(60);
        let snapshot_count = snapshot_count.unwrap_or(drawn_snapshot_count);
        // Short catch-up windows make leaders send snapshots often; scripted scenarios keep
        // the default.
        let drawn_catch_up_entries = [8, 50, 500, 5_000][rng.below(4) as usize];
        let catch_up_entries = if steps > 0 {
            drawn_catch_up_entries
        } else {
            5_000
        };
        // Some seeds are calm, some stormy: faults are scaled by a level drawn per seed.
        let fault_level = [1, 2, 4, 8][rng.below(4) as usize];
        let weights = vec![
            (Event::Deliver, 4_000),
            (Event::Tick, 4_000),
            (Event::Put, 800),
            (Event::Read, 500),
            (Event::Drop, 30 * fault_level),
            (Event::Duplicate, 30 * fault_level),
            (Event::Delay, 30 * fault_level),
            (Event::Partition, 10 * fault_level),
            (Event::Heal, 80),
            (Event::Crash, 5 * fault_level),
            (Event::Restart, 150),
            (Event::PowerLoss, 5 * fault_level),
            (Event::SlowDisk, 10 * fault_level),
            (Event::SyncFailure, 2 * fault_level),
            (Event::Reconfigure, 15),
            (Event::AuthChange, 20),
        ];
        let mut sim = Sim {
            seed,
            rng,
            step: 0,
            steps,
            snapshot_count,
            catch_up_entries,
            weights,
            members,
            bootstrap_members,
            network: Vec::new(),
            restart_stopped: steps > 0,
            rule: None,
            held: Vec::new(),
            groups: vec![0; count + spares],
            history: History::default(),
            puts: Vec::new(),
            reads: Vec::new(),
            next_value: 1,
            leaders: BTreeMap::new(),
            committed: BTreeMap::new(),
            committed_requests: HashMap::new(),
            max_commit_seen: 0,
            states: BTreeMap::new(),
            acknowledged: BTreeMap::new(),
            trace_hash: 0xcbf2_9ce4_8422_2325,
            stats: Stats::default(),
            verbose: std::env::var_os("KEEL_SIM_VERBOSE").is_some(),
        };
        sim.note(format!(
            "seed {seed}: {count} members, snapshot_count {snapshot_count}, catch-up entries \
             {catch_up_entries}, fault level {fault_level}, election ticks {:?}",
            sim.members
                .iter()
                .map(|m| m.election_ticks)
                .collect::<Vec<_>>()
        ));
        for i in 0..count + spares {
            sim.restart(i);
            assert!(
                sim.members[i].running.is_some(),
                "member {} failed to start on empty disks",
                i + 1
            );
        }
        sim
    }

    /// Runs the whole simulation: the random steps, then the settling phase and final checks.
    pub fn run(mut self) -> (u64, Stats) {
        while self.step < self.steps {
            self.random_step();
        }
        self.settle();
        self.stats.steps = self.step;
        self.stats.leader_terms = self.leaders.len() as u64;
        (self.trace_hash, self.stats)
    }

    // ----- tracing -----

    fn mix(&mut self, value: u64) {
        // FNV-1a over 64-bit words: order-sensitive and cheap.
        self.trace_hash ^= value;
        self.trace_hash = self.trace_hash.wrapping_mul(0x0000_0100_0000_01b3);
    }

    fn note(&mut self, text: String) {
        for byte in text.bytes() {
            self.mix(byte as u64);
        }
        let line = format!("step {}: {text}", self.step);
        if self.verbose {
            eprintln!("{line}");
        }
        RECENT_EVENTS.with(|events| {
            let mut events = events.borrow_mut();
            if events.len() == RECENT_EVENTS_KEPT {
                events.pop_front();
            }
            events.push_back(line);
        });
    }

    fn mix_message(&mut self, from: usize, message: &Message) {
        self.mix(from as u64);
        self.mix(message.to);
        self.mix(message.get_msg_type() as u64);
        self.mix(message.term);
        self.mix(message.index);
        self.mix(message.log_term);
        self.mix(message.commit);
        self.mix(message.entries.len() as u64);
        self.mix(message.reject as u64);
    }

    /// Fails the run with `what`, the seed and the newest events.
    fn fail(&self, what: String) -> ! {
        panic!(
            "{what}\n(seed {}, step {}, {} members)",
            self.seed,
            self.step,
            self.members.len()
        );
    }

    // ----- the random phase -----

    fn random_step(&mut self) {
        self.step += 1;
        let total: u64 = self.weights.iter().map(|(_, weight)| weight).sum();
        let mut roll = self.rng.below(total);
        let mut event = Event::Deliver;
        for &(candidate, weight) in &self.weights {
            if roll < weight {
                event = candidate;
                break;
            }
            roll -= weight;
        }
        match event {
            Event::Deliver => self.deliver_some(),
            Event::Tick => self.tick_one(),
            Event::Put => self.client_put(),
            Event::Read => self.client_read(),
            Event::Drop => self.drop_message(),
            Event::Duplicate => self.duplicate_message(),
            Event::Delay => self.delay_message(),
            Event::Partition => self.partition(),
            Event::Heal => self.heal(),
            Event::Crash => self.crash_one(),
            Event::Restart => self.restart_one(),
            Event::PowerLoss => self.arm_power_loss(),
            Event::SlowDisk => self.stall_one(),
            Event::SyncFailure => self.arm_sync_failure(),
            Event::Reconfigure => self.reconfigure(),
            Event::AuthChange => self.auth_change(),
        }
        self.after_event();
    }

    fn after_event(&mut self) {
        let count = self.members.len();
        let first = self.rng.below(count as u64) as usize;
        for offset in 0..count {
            self.process((first + offset) % count);
        }
        self.poll_clients();
        self.check_invariants();
        // Only now, so that every entry a member applied was compared before its log may drop
        // it (the server trims every turn).
        for member in self.members.iter_mut() {
            if let Some(run) = member.running.as_mut() {
                run.node.trim_log();
            }
        }
        for i in 0..count {
            let state = match &self.members[i].running {
                Some(run) => [
                    1,
                    run.node.term(),
                    run.node.commit_index(),
                    run.node.applied_index(),
                    run.node.leader_id(),
                ],
                None => [0; 5],
            };
            for value in state {
                self.mix(value);
            }
        }
        let in_flight = self.network.len() as u64;
        self.mix(in_flight);
    }

    fn live_members(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].running.is_some())
            .collect()
    }

    fn random_live(&mut self) -> Option<usize> {
        let live = self.live_members();
        if live.is_empty() {
            return None;
        }
        Some(live[self.rng.below(live.len() as u64) as usize])
    }

    fn tick_one(&mut self) {
        if let Some(i) = self.random_live() {
            self.members[i].running.as_mut().expect("live").node.tick();
        }
    }

    fn delay(&mut self) -> u64 {
        match self.rng.below(100) {
            0..=69 => self.rng.below(3),
            70..=94 => 3 + self.rng.below(8),
            _ => 11 + self.rng.below(30),
        }
    }

    fn deliver_some(&mut self) {
        let mut due: Vec<usize> = (0..self.network.len())
            .filter(|&i| self.network[i].deliver_at <= self.step)
            .collect();
        // Deliver about half of what is due (at least a few), so the wire keeps up with what
        // the members send while messages still overtake each other.
        let count = 1 + self.rng.below((due.len() as u64 / 2).max(4));
        let mut picked = Vec::new();
        for _ in 0..count {
            if due.is_empty() {
                break;
            }
            let at = self.rng.below(due.len() as u64) as usize;
            picked.push(due.swap_remove(at));
        }
        // Remove from the back so the other picked positions stay valid.
        let order = picked.clone();
        picked.sort_unstable_by(|a, b| b.cmp(a));
        let mut flights: Vec<(usize, InFlight)> = picked
            .into_iter()
            .map(|at| (at, self.network.swap_remove(at)))
            .collect();
        // Deliver in the random order they were picked.
        flights.sort_by_key(|(at, _)| order.iter().position(|o| o == at));
        for (_, flight) in flights {
            self.deliver(flight);
        }
    }

    fn deliver(&mut self, flight: InFlight) {
        let (from, to) = (flight.from, flight.to);
        let kind = flight.message.get_msg_type();
        if self.groups[from] != self.groups[to] || self.members[to].running.is_none() {
            self.lose(from, flight.sender_incarnation, to, kind);
            self.note(format!("lost {kind:?} {} -> {}", from + 1, to + 1));
            // The transport reports a peer it cannot reach.
            if let Some(run) = self.members[from].running.as_mut() {
                run.node.report_unreachable(to as u64 + 1);
            }
            return;
        }
        if let Some(payload) = &flight.checkpoint {
            let index = flight.message.get_snapshot().get_metadata().index;
            let saved = block_on(checkpoint::save(
                &self.members[to].snap_disk,
                index,
                payload,
            ));
            if let Err(error) = saved {
                self.lose(from, flight.sender_incarnation, to, kind);
                self.note(format!(
                    "member {} could not store snapshot {index}: {error}",
                    to + 1
                ));
                self.check_power(to);
                return;
            }
            self.stats.snapshots_delivered += 1;
            self.note(format!("snapshot {index} stored on member {}", to + 1));
        }
        self.mix_message(from, &flight.message);
        if self.verbose {
            let message = &flight.message;
            eprintln!(
                "step {}: deliver {kind:?} {} -> {} term {} index {} log_term {} commit {} \
                 entries {} reject {} (sent at step {})",
                self.step,
                from + 1,
                to + 1,
                message.term,
                message.index,
                message.log_term,
                message.commit,
                message
                    .entries
                    .iter()
                    .map(|e| format!(
                        "{}/{}:{:?}",
                        e.index,
                        e.term,
                        &e.data[..e.data.len().min(8)]
                    ))
                    .collect::<Vec<_>>()
                    .join(","),
                message.reject,
                flight.sent_at,
            );
        }
        let snapshot = flight.message.get_msg_type() == MessageType::MsgSnapshot;
        let sender = from as u64 + 1;
        let refused = self.members[to]
            .running
            .as_ref()
            .is_some_and(|run| run.shared.removed_members.lock().unwrap().contains(&sender));
        if refused {
            // The transport refuses a removed member's messages, and it stops on hearing so.
            self.note(format!(
                "member {} refuses removed member {}",
                to + 1,
                from + 1
            ));
            if let Some(run) = self.members[from].running.as_mut() {
                run.node.mark_removed();
            }
            return;
        }
        let run = self.members[to].running.as_mut().expect("checked above");
        run.node.step(flight.message);
        if snapshot {
            self.report_snapshot(from, flight.sender_incarnation, to, true);
        }
    }

    /// Counts a message lost on the wire. A lost snapshot is reported to the process that
    /// sent it, as the transport does when a snapshot stream fails: raft-rs keeps the
    /// follower's progress paused until it hears the snapshot's fate.
    fn lose(&mut self, from: usize, sender_incarnation: u64, to: usize, kind: MessageType) {
        self.stats.messages_lost += 1;
        if kind == MessageType::MsgSnapshot {
            self.stats.snapshots_lost += 1;
            self.report_snapshot(from, sender_incarnation, to, false);
        }
    }

    /// Tells member `from`'s process `incarnation` (if still running) whether its snapshot to
    /// `to` arrived.
    fn report_snapshot(&mut self, from: usize, incarnation: u64, to: usize, arrived: bool) {
        let sender = &mut self.members[from];
        if sender.incarnation != incarnation {
            return;
        }
        if let Some(run) = sender.running.as_mut() {
            run.node.report_snapshot(to as u64 + 1, arrived);
        }
    }

    fn random_message(&mut self) -> Option<usize> {
        if self.network.is_empty() {
            return None;
        }
        Some(self.rng.below(self.network.len() as u64) as usize)
    }

    fn drop_message(&mut self) {
        if let Some(at) = self.random_message() {
            let flight = self.network.swap_remove(at);
            self.lose(
                flight.from,
                flight.sender_incarnation,
                flight.to,
                flight.message.get_msg_type(),
            );
            self.note(format!(
                "dropped {:?} {} -> {}",
                flight.message.get_msg_type(),
                flight.from + 1,
                flight.to + 1
            ));
        }
    }

    fn duplicate_message(&mut self) {
        if let Some(at) = self.random_message() {
            // A forwarded proposal delivered twice is committed twice: raft promises no
            // exactly-once for `MsgPropose` (neither does etcd), and the peer transport is an
            // ordered stream that never delivers a message twice. Raft's own messages must
            // survive duplication.
            if self.network[at].message.get_msg_type() == MessageType::MsgPropose {
                return;
            }
            let deliver_at = self.step + self.delay();
            let flight = &self.network[at];
            let copy = InFlight {
                from: flight.from,
                to: flight.to,
                sender_incarnation: flight.sender_incarnation,
                sent_at: self.step,
                deliver_at,
                message: flight.message.clone(),
                checkpoint: flight.checkpoint.clone(),
            };
            self.note(format!(
                "duplicated {:?} {} -> {}",
                copy.message.get_msg_type(),
                copy.from + 1,
                copy.to + 1
            ));
            self.network.push(copy);
        }
    }

    fn delay_message(&mut self) {
        if let Some(at) = self.random_message() {
            let extra = 1 + self.rng.below(30);
            self.network[at].deliver_at += extra;
            self.note(format!("delayed a message by {extra} steps"));
        }
    }

    fn partition(&mut self) {
        let count = self.members.len();
        if self.rng.chance(1, 2) {
            let alone = self.rng.below(count as u64) as usize;
            self.groups = (0..count).map(|i| u8::from(i == alone)).collect();
        } else {
            self.groups = (0..count).map(|_| self.rng.below(2) as u8).collect();
        }
        self.note(format!("partition {:?}", self.groups));
    }

    fn heal(&mut self) {
        if self.groups.iter().any(|&g| g != 0) {
            self.groups.iter_mut().for_each(|g| *g = 0);
            self.note("healed".to_string());
        }
    }

    fn crash_one(&mut self) {
        if let Some(i) = self.random_live() {
            let power_loss = self.rng.chance(1, 2);
            self.kill(i, power_loss, "crash");
        }
    }

    fn restart_one(&mut self) {
        let down: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].running.is_none() && !self.members[i].removed)
            .collect();
        if !down.is_empty() {
            let i = down[self.rng.below(down.len() as u64) as usize];
            self.restart(i);
        }
    }

    fn arm_power_loss(&mut self) {
        if let Some(i) = self.random_live() {
            let on_wal = self.rng.chance(3, 4);
            let ahead = self.rng.below(4);
            let member = &mut self.members[i];
            let disk = if on_wal {
                &member.wal_disk
            } else {
                &member.snap_disk
            };
            disk.crash_at_sync_point(disk.sync_points() + ahead);
            member.fault_armed = true;
            self.note(format!(
                "armed a power loss on member {}'s {} disk, {ahead} syncs ahead",
                i + 1,
                if on_wal { "WAL" } else { "checkpoint" }
            ));
        }
    }

    fn arm_sync_failure(&mut self) {
        if let Some(i) = self.random_live() {
            let on_wal = self.rng.chance(3, 4);
            let member = &mut self.members[i];
            if on_wal {
                member.wal_disk.fail_next_sync();
            } else {
                member.snap_disk.fail_next_sync();
            }
            member.fault_armed = true;
            self.note(format!(
                "the next {} sync of member {} fails",
                if on_wal { "WAL" } else { "checkpoint" },
                i + 1
            ));
        }
    }

    fn auth_change(&mut self) {
        use keel::server::auth::AuthChange;
        use keel_proto::authpb;
        let Some(i) = self.random_live() else {
            return;
        };
        let user = format!("u{}", self.rng.below(3));
        let role = format!("r{}", self.rng.below(3));
        let key = vec![b'a' + self.rng.below(4) as u8];
        let range_end = match self.rng.below(3) {
            0 => Vec::new(),
            1 => vec![0],
            _ => vec![key[0] + 1 + self.rng.below(2) as u8],
        };
        let change = match self.rng.below(7) {
            0 => AuthChange::UserAdd(pb::AuthUserAddRequest {
                name: user,
                hashed_password: "$2b$04$hash".into(),
                ..Default::default()
            }),
            1 => AuthChange::UserDelete(pb::AuthUserDeleteRequest { name: user }),
            2 => AuthChange::RoleAdd(pb::AuthRoleAddRequest { name: role }),
            3 => AuthChange::RoleDelete(pb::AuthRoleDeleteRequest { role }),
            4 => AuthChange::UserGrantRole(pb::AuthUserGrantRoleRequest { user, role }),
            5 => AuthChange::RoleGrantPermission(pb::AuthRoleGrantPermissionRequest {
                name: role,
                perm: Some(authpb::Permission {
                    perm_type: self.rng.below(3) as i32,
                    key,
                    range_end,
                }),
            }),
            _ => AuthChange::RoleRevokePermission(pb::AuthRoleRevokePermissionRequest {
                role,
                key,
                range_end,
            }),
        };
        self.note(format!("member {} proposes {change:?}", i + 1));
        self.stats.auth_changes += 1;
        let run = self.members[i].running.as_mut().expect("live");
        run.node.propose(Proposal {
            command: Command::Auth(change),
            reply: None,
        });
    }

    fn reconfigure(&mut self) {
        let Some(i) = self.random_live() else {
            return;
        };
        let run = self.members[i].running.as_ref().expect("live");
        let members = run.shared.member_list();
        if members.is_empty() {
            return;
        }
        let removed = run.shared.removed_members.lock().unwrap().clone();
        let voters = members.iter().filter(|m| !m.is_learner).count();
        let mut choices = Vec::new();
        for spare in &self.members {
            let id = spare.id;
            if !spare.removed && !removed.contains(&id) && members.iter().all(|m| m.id != id) {
                let learner = self.rng.chance(1, 2);
                choices.push(Command::MemberAdd(pb::Member {
                    id,
                    peer_ur_ls: vec![format!("http://127.0.0.1:{}", 2380 + id)],
                    is_learner: learner,
                    ..Default::default()
                }));
            }
        }
        for member in &members {
            if member.is_learner {
                choices.push(Command::MemberPromote(pb::MemberPromoteRequest {
                    id: member.id,
                }));
            } else if voters > 3 {
                choices.push(Command::MemberRemove(pb::MemberRemoveRequest {
                    id: member.id,
                }));
            }
        }
        if choices.is_empty() {
            return;
        }
        let command = choices.swap_remove(self.rng.below(choices.len() as u64) as usize);
        self.note(format!("member {} proposes {command:?}", i + 1));
        self.stats.reconfigurations += 1;
        let run = self.members[i].running.as_mut().expect("live");
        run.node.propose(Proposal {
            command,
            reply: None,
        });
    }

    fn stall_one(&mut self) {
        if let Some(i) = self.random_live() {
            let steps = 1 + self.rng.below(30);
            self.members[i].stalled_until = self.step + steps;
            self.note(format!("member {}'s disk is slow for {steps} steps", i + 1));
        }
    }

    // ----- member processes -----

    /// Ends member `i`'s process; with `power_loss` its disks also lose what was not synced.
    fn kill(&mut self, i: usize, power_loss: bool, why: &str) {
        let member = &mut self.members[i];
        // A fault armed on a disk would otherwise fire in the next process's recovery; a
        // power cycle clears it.
        let power_loss = power_loss || member.fault_armed;
        member.running = None;
        member.stalled_until = 0;
        if power_loss {
            member.wal_disk.crash();
            member.snap_disk.crash();
            member.fault_armed = false;
            self.stats.power_losses += 1;
        } else {
            self.stats.kills += 1;
        }
        self.note(format!(
            "member {} down ({why}{})",
            i + 1,
            if power_loss { ", power loss" } else { "" }
        ));
        // Messages on the wire to it are lost; some still queued at senders arrive later.
        let mut kept = Vec::with_capacity(self.network.len());
        for flight in std::mem::take(&mut self.network) {
            if flight.to == i && self.rng.chance(1, 2) {
                self.lose(
                    flight.from,
                    flight.sender_incarnation,
                    flight.to,
                    flight.message.get_msg_type(),
                );
            } else {
                kept.push(flight);
            }
        }
        self.network = kept;
        let before = self.reads.len();
        self.reads.retain(|r| r.member != i);
        self.stats.reads_failed += (before - self.reads.len()) as u64;
    }

    /// Starts member `i` from its disks (a new process).
    fn restart(&mut self, i: usize) {
        let member = &self.members[i];
        let bootstrap = Bootstrap {
            member_id: member.id,
            members: self.bootstrap_members.clone(),
            joining: member.spare,
        };
        let recovered = block_on(recover(
            member.wal_disk.clone(),
            member.snap_disk.clone(),
            member.wal_options.clone(),
            &bootstrap,
        ));
        let mut recovered = match recovered {
            Ok(recovered) => recovered,
            Err(error) => self.fail(format!(
                "member {} cannot recover from its disks after a crash: {error}",
                i + 1
            )),
        };
        let member = &mut self.members[i];
        member.incarnation += 1;
        let store = std::mem::take(&mut recovered.store);
        let (shared, _inputs) = Shared::new(
            SharedConfig {
                cluster_id: CLUSTER_ID,
                member_id: member.id,
                member: MemberInfo {
                    name: format!("m{}", member.id),
                    peer_urls: vec![format!("http://127.0.0.1:{}", 2380 + member.id)],
                    client_urls: vec![format!("http://127.0.0.1:{}", 2379 + 10 * member.id)],
                },
                limits: Limits {
                    request_bytes_max: 1 << 20,
                    txn_ops_max: 128,
                    quota_bytes: 1 << 30,
                    lease_ttl_min_seconds: 1,
                    strict_reconfig_check: false,
                    max_learners: 1,
                },
                watch_progress_interval: Duration::from_secs(600),
                // Request ids must not repeat across a member's processes (etcd uses the
                // clock): each process gets its own range.
                id_seed: Some(member.incarnation * 1_000_000),
                tokens: keel::server::tokens::Tokens::simple(Duration::from_secs(300)),
                bcrypt_cost: 4,
                scratch_dir: std::env::temp_dir(),
            },
            store,
            &recovered.meta.clone(),
            recovered.applied_index,
        );
        let (applied, checkpoint_index) = (recovered.applied_index, recovered.checkpoint_index);
        let config = NodeConfig {
            id: member.id,
            election_ticks: 10,
            heartbeat_ticks: 1,
            request_timeout_ticks: REQUEST_TIMEOUT_TICKS,
            snapshot_count: self.snapshot_count,
            catch_up_entries: self.catch_up_entries,
            // As small as the catch-up window, so that seeds drop entries between checkpoints
            // (the server waits for 32 Ki of them).
            trim_min_entries: self.catch_up_entries,
            election_ticks_range: Some((member.election_ticks, member.election_ticks + 1)),
            max_learners: 1,
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let (node, writer) = match RaftNode::new(config, recovered, shared.clone(), &logger) {
            Ok(started) => started,
            Err(error) => self.fail(format!("member {} refused its state: {error}", i + 1)),
        };
        let member = &mut self.members[i];
        member.running = Some(Running {
            node,
            shared,
            writer,
            held_write: None,
            checkpoint: None,
            taken: Vec::new(),
            unsaved: None,
        });
        member.checked_commit = 0;
        member.checked_applied = u64::MAX;
        if member.incarnation > 1 {
            self.stats.restarts += 1;
        }
        self.note(format!(
            "member {} started (applied {applied}, checkpoint {checkpoint_index})",
            i + 1
        ));
    }

    /// A disk that reached its armed crash point means the machine lost power.
    fn check_power(&mut self, i: usize) -> bool {
        let member = &self.members[i];
        if member.running.is_some() && (member.wal_disk.is_frozen() || member.snap_disk.is_frozen())
        {
            self.kill(i, true, "power loss at a sync");
            return true;
        }
        false
    }

    /// Runs member `i`'s Ready loop and its disk writes (held while its disk is slow), then
    /// a slice of its checkpoint and compaction work.
    fn process(&mut self, i: usize) {
        for _ in 0..READY_ROUNDS_MAX {
            let step = self.step;
            let member = &mut self.members[i];
            let stalled = member.stalled_until > step;
            let Some(run) = member.running.as_mut() else {
                return;
            };
            let mut outbox = Collected::default();
            let mut wrote = false;
            let mut result = Ok(());
            if stalled {
                // The write is handed to the disk, which does not answer yet.
                if run.held_write.is_none() {
                    run.held_write = run.node.take_write();
                }
            } else if let Some(job) = run.held_write.take().or_else(|| run.node.take_write()) {
                let done = block_on(run.writer.write(job));
                result = run.node.write_done(done, &mut outbox);
                wrote = true;
            }
            let ready = result.is_ok() && run.node.has_ready();
            if ready {
                result = block_on(run.node.process_ready(&mut outbox));
            }
            self.send(i, outbox.0);
            if self.check_power(i) {
                return;
            }
            if let Err(error) = result {
                self.stats.wal_failures += 1;
                let power_loss = self.rng.chance(1, 2);
                self.kill(i, power_loss, &format!("stopped: {error}"));
                return;
            }
            if !ready && !wrote {
                break;
            }
        }
        self.checkpoint_slice(i);
        let Some(run) = self.members[i].running.as_mut() else {
            return;
        };
        if run.node.removed() {
            self.kill(i, false, "removed from the cluster");
            self.members[i].removed = true;
            self.stats.removed += 1;
            return;
        }
        if let Some(failure) = run.node.failure() {
            let failure = failure.to_string();
            self.stats.wal_failures += 1;
            let power_loss = self.rng.chance(1, 2);
            self.kill(i, power_loss, &format!("failed: {failure}"));
            return;
        }
        run.node.compaction_step();
    }

    /// Starts member `i`'s checkpoint when one is due, or encodes a few more keys of the one
    /// under way (so writes apply between the slices, as in the server), or saves one encoded
    /// earlier (so a snapshot may arrive between the encoding and the save, as in the server).
    fn checkpoint_slice(&mut self, i: usize) {
        let keys = 1 + self.rng.below(8) as usize;
        let save_now = self.rng.chance(1, 2);
        let Some(run) = self.members[i].running.as_mut() else {
            return;
        };
        if run.unsaved.is_some() {
            if !save_now {
                return;
            }
            let (encoded, taken) = run.unsaved.take().expect("checked");
            let index = encoded.index;
            let saved = block_on(encoded.save(&self.members[i].snap_disk, &taken));
            self.stats.checkpoints += u64::from(saved.is_ok());
            self.stats.checkpoint_failures += u64::from(saved.is_err());
            self.note(format!("member {} checkpoint at {index}", i + 1));
            if self.check_power(i) {
                return;
            }
            let run = self.members[i].running.as_mut().expect("still running");
            run.node.checkpoint_saved(index, saved);
            return;
        }
        if run.checkpoint.is_none() {
            run.checkpoint = run.node.start_checkpoint();
            return;
        }
        let Some(work) = run.checkpoint.as_mut() else {
            return;
        };
        let index = work.index;
        let step = work.step(&run.shared, keys);
        // Half the slices hand their output over as they are encoded (the server does so with
        // every slice), so some checkpoints are saved whole and others from their pieces.
        if keys % 2 == 1 {
            let mut output = Vec::new();
            work.take_output(&mut output);
            run.taken.extend_from_slice(&output);
        }
        let encoded = match step {
            Ok(false) => return,
            Ok(true) => run.checkpoint.take().expect("under way").finish(),
            Err(error) => {
                run.checkpoint = None;
                Err(error)
            }
        };
        let taken = std::mem::take(&mut run.taken);
        run.node.checkpoint_encoded(index, encoded.is_ok());
        if let Ok(encoded) = encoded {
            run.unsaved = Some((encoded, taken));
        }
    }

    /// Puts member `i`'s messages on the wire.
    fn send(&mut self, i: usize, messages: Vec<Message>) {
        for message in messages {
            self.stats.messages += 1;
            self.mix_message(i, &message);
            let to = message.to as usize - 1;
            assert!(
                to < self.members.len() && to != i,
                "message to {}",
                message.to
            );
            if self.network.len() >= NETWORK_MESSAGES_MAX {
                self.lose(i, self.members[i].incarnation, to, message.get_msg_type());
                continue;
            }
            let checkpoint = if message.get_msg_type() == MessageType::MsgSnapshot {
                let index = message.get_snapshot().get_metadata().index;
                match block_on(checkpoint::load(&self.members[i].snap_disk, index)) {
                    Ok(payload) => Some(payload),
                    Err(error) => {
                        self.note(format!(
                            "member {} cannot read its checkpoint {index} to send: {error}",
                            i + 1
                        ));
                        self.lose(i, self.members[i].incarnation, to, MessageType::MsgSnapshot);
                        continue;
                    }
                }
            } else {
                None
            };
            let verdict = match self.rule.as_mut() {
                Some(rule) => rule(&message),
                None => Verdict::Pass,
            };
            let deliver_at = self.step + self.delay();
            let flight = InFlight {
                from: i,
                to,
                sender_incarnation: self.members[i].incarnation,
                sent_at: self.step,
                deliver_at,
                message,
                checkpoint,
            };
            match verdict {
                Verdict::Pass => self.network.push(flight),
                Verdict::Hold => self.held.push(flight),
                Verdict::Drop => {
                    self.lose(
                        i,
                        flight.sender_incarnation,
                        to,
                        flight.message.get_msg_type(),
                    );
                    let text = format!(
                        "the scenario dropped {:?} {} -> {}",
                        flight.message.get_msg_type(),
                        i + 1,
                        to + 1
                    );
                    self.note(text);
                }
            }
        }
    }

    // ----- clients -----

    fn client_put(&mut self) {
        let Some(i) = self.random_live() else {
            return;
        };
        let key = self.rng.below(KEYS as u64) as usize;
        let value = self.next_value;
        self.next_value += 1;
        self.put(i, key, value);
    }

    fn put(&mut self, i: usize, key: usize, value: u64) {
        let (reply, answer) = oneshot::channel();
        self.history.writes.push(Write {
            key,
            value,
            invoked: invoked_at(self.step),
            completed: None,
            outcome: WriteOutcome::Ambiguous,
        });
        self.puts.push(PendingPut {
            write: self.history.writes.len() - 1,
            reply: answer,
        });
        self.note(format!("put key {key} = {value} on member {}", i + 1));
        let run = self.members[i].running.as_mut().expect("live");
        run.node.propose(Proposal {
            command: Command::Put(pb::PutRequest {
                key: key_bytes(key),
                value: value_bytes(value),
                ..Default::default()
            }),
            reply: Some(reply),
        });
    }

    fn client_read(&mut self) {
        let Some(i) = self.random_live() else {
            return;
        };
        let key = self.rng.below(KEYS as u64) as usize;
        self.read(i, key);
    }

    fn read(&mut self, i: usize, key: usize) {
        let (reply, answer) = oneshot::channel();
        self.note(format!("read key {key} on member {}", i + 1));
        let member = &mut self.members[i];
        let run = member.running.as_mut().expect("live");
        run.node.read_index(vec![reply]);
        self.reads.push(PendingRead {
            key,
            member: i,
            incarnation: member.incarnation,
            invoked: invoked_at(self.step),
            state: ReadState::Index(answer),
        });
    }

    /// Collects the answers that arrived: put results, ReadIndexes, and reads now served.
    fn poll_clients(&mut self) {
        let now = completed_at(self.step);
        let mut waiting = Vec::with_capacity(self.puts.len());
        for mut put in std::mem::take(&mut self.puts) {
            let outcome = match put.reply.try_recv() {
                Ok(None) => {
                    waiting.push(put);
                    continue;
                }
                Ok(Some(Ok(Applied::Put(response)))) => {
                    let write = &self.history.writes[put.write];
                    let (key, value) = (write.key, write.value);
                    if let Some(other) = self.acknowledged.insert(response.revision, (key, value)) {
                        self.fail(format!(
                            "two acknowledged puts got revision {}: {other:?} and {:?}",
                            response.revision,
                            (key, value)
                        ));
                    }
                    self.stats.puts_ok += 1;
                    WriteOutcome::Ok
                }
                Ok(Some(Ok(other))) => self.fail(format!("a put was answered with {other:?}")),
                Ok(Some(Err(ServerError::NoLeader))) => {
                    // Refused by raft before it entered the log.
                    self.stats.puts_failed += 1;
                    WriteOutcome::Failed
                }
                Ok(Some(Err(_))) | Err(_) => {
                    self.stats.puts_ambiguous += 1;
                    WriteOutcome::Ambiguous
                }
            };
            let write = &mut self.history.writes[put.write];
            write.completed = Some(now);
            write.outcome = outcome;
            let text = format!("put {} -> {outcome:?}", write.value);
            self.note(text);
        }
        self.puts = waiting;

        let mut waiting = Vec::with_capacity(self.reads.len());
        for mut read in std::mem::take(&mut self.reads) {
            let member = &self.members[read.member];
            let Some(run) = member
                .running
                .as_ref()
                .filter(|_| member.incarnation == read.incarnation)
            else {
                self.stats.reads_failed += 1;
                continue;
            };
            if let ReadState::Index(answer) = &mut read.state {
                match answer.try_recv() {
                    Ok(None) => {
                        waiting.push(read);
                        continue;
                    }
                    Ok(Some(Ok(index))) => read.state = ReadState::Apply(index),
                    Ok(Some(Err(_))) | Err(_) => {
                        self.stats.reads_failed += 1;
                        continue;
                    }
                }
            }
            let ReadState::Apply(index) = read.state else {
                unreachable!("set above");
            };
            if run.node.applied_index() < index {
                waiting.push(read);
                continue;
            }
            let value = {
                let store = run.shared.read_store();
                let response = store
                    .range(&RangeRequest {
                        key: key_bytes(read.key),
                        ..Default::default()
                    })
                    .unwrap_or_else(|e| panic!("range failed: {e}"));
                response.kvs.first().map(|kv| parse_value(&kv.value))
            };
            self.stats.reads_ok += 1;
            self.history.reads.push(Read {
                key: read.key,
                value,
                invoked: read.invoked,
                completed: now,
            });
            self.note(format!(
                "read key {} on member {} (index {index}) -> {value:?}",
                read.key,
                read.member + 1
            ));
        }
        self.reads = waiting;
    }

    // ----- checks -----

    fn check_invariants(&mut self) {
        for i in 0..self.members.len() {
            let member = &self.members[i];
            let Some(run) = member.running.as_ref() else {
                continue;
            };
            let id = member.id;
            let leading_term = run.node.is_leader().then(|| run.node.term());
            let commit = run.node.commit_index();
            let applied = run.node.applied_index();
            // Entries are compared once applied: raft's commit index may already cover entries
            // it holds only in memory (not yet written), while the durable log that
            // `log_entries` reads still has the conflicting entries they replace.
            let entries = if applied > member.checked_commit {
                run.node.log_entries(member.checked_commit + 1, applied)
            } else {
                Vec::new()
            };
            let state = (applied != member.checked_applied).then(|| {
                let store = run.shared.read_store();
                let hash = store
                    .hash_kv(0)
                    .unwrap_or_else(|e| panic!("hash_kv failed: {e}"));
                // The store and the auth state (users, roles, revision) together.
                let mut state = crc32fast::Hasher::new();
                state.update(&hash.hash.to_le_bytes());
                state.update(&run.shared.auth().encode());
                (state.finalize(), store.current_revision())
            });

            // Election safety (thesis figure 3.2): one leader per term.
            if let Some(term) = leading_term {
                match self.leaders.get(&term) {
                    Some(&leader) if leader != id => self.fail(format!(
                        "election safety: members {leader} and {id} both led term {term}"
                    )),
                    Some(_) => {}
                    None => {
                        self.leaders.insert(term, id);
                        self.note(format!("member {id} leads term {term}"));
                    }
                }
            }

            // Log matching and leader completeness, seen from outside: an index committed
            // once holds the same entry wherever it is committed later.
            self.max_commit_seen = self.max_commit_seen.max(commit);
            for entry in &entries {
                match self.committed.get(&entry.index) {
                    Some((term, data)) if *term != entry.term || *data != entry.data => {
                        self.fail(format!(
                            "a committed entry changed: index {} was committed with term {term} \
                             ({} bytes), member {id} now commits term {} ({} bytes)",
                            entry.index,
                            data.len(),
                            entry.term,
                            entry.data.len()
                        ))
                    }
                    Some(_) => {}
                    None => {
                        self.committed
                            .insert(entry.index, (entry.term, entry.data.clone()));
                        // Each client request enters the log once (its first 8 data bytes are
                        // its request id; 0 for entries nobody waits for).
                        let request_id = entry
                            .data
                            .get(..8)
                            .filter(|_| entry.get_entry_type() == EntryType::EntryNormal)
                            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                            .unwrap_or(0);
                        if request_id != 0 {
                            if let Some(other) =
                                self.committed_requests.insert(request_id, entry.index)
                            {
                                self.fail(format!(
                                    "request {request_id:x} was committed twice, at indexes \
                                     {other} and {}",
                                    entry.index
                                ));
                            }
                        }
                    }
                }
            }
            // Entries committed but not yet in the durable log are compared once they are.
            if let Some(last) = entries.last() {
                self.members[i].checked_commit = last.index;
            }

            // State machine safety (thesis figure 3.2): equal applied index, equal store.
            if let Some((hash, revision)) = state {
                match self.states.get(&applied) {
                    Some(&(other_hash, other_revision))
                        if (other_hash, other_revision) != (hash, revision) =>
                    {
                        self.fail(format!(
                            "state machine safety: at applied index {applied} member {id} has \
                             hash {hash:08x} at revision {revision}, another member had \
                             {other_hash:08x} at revision {other_revision}"
                        ))
                    }
                    Some(_) => {}
                    None => {
                        self.states.insert(applied, (hash, revision));
                    }
                }
                self.members[i].checked_applied = applied;
            }
        }
    }

    // ----- the end -----

    /// One fault-free step: every live member ticks, every due message is delivered.
    fn calm_step(&mut self) {
        self.calm_step_without_restarts();
        if self.restart_stopped {
            // A member that died of an armed fault comes straight back.
            for i in 0..self.members.len() {
                if self.members[i].running.is_none() && !self.members[i].removed {
                    self.restart(i);
                }
            }
        }
    }

    /// Runs calm steps until `done` holds; fails the liveness check after
    /// [`SETTLE_STEPS_MAX`] steps.
    fn calm_until(&mut self, what: &str, done: impl Fn(&Sim) -> bool) {
        let start = self.step;
        while !done(self) {
            if self.step - start >= SETTLE_STEPS_MAX {
                let states: Vec<String> = self
                    .members
                    .iter()
                    .map(|m| match &m.running {
                        Some(run) => format!(
                            "member {}: term {} leader {} commit {} applied {}",
                            m.id,
                            run.node.term(),
                            run.node.leader_id(),
                            run.node.commit_index(),
                            run.node.applied_index()
                        ),
                        None => format!("member {}: down", m.id),
                    })
                    .collect();
                self.fail(format!(
                    "liveness: after healing, {what} did not happen within {SETTLE_STEPS_MAX} \
                     steps ({} MsgSnapshots were lost in this run)\n{}",
                    self.stats.snapshots_lost,
                    states.join("\n")
                ));
            }
            self.calm_step();
        }
    }

    /// The members of the cluster as the live member that applied the most sees it (spares
    /// not added and removed members are not in it).
    fn cluster_members(&self) -> Vec<usize> {
        let reference = self
            .members
            .iter()
            .filter_map(|m| m.running.as_ref())
            .map(|run| (run.node.applied_index(), run.node.conf_state()))
            .filter(|(_, conf)| !conf.voters.is_empty())
            .max_by_key(|(applied, _)| *applied);
        let Some((_, conf)) = reference else {
            return Vec::new();
        };
        let mut ids: Vec<u64> = conf.voters.iter().chain(&conf.learners).copied().collect();
        ids.sort_unstable();
        ids.iter().map(|id| *id as usize - 1).collect()
    }

    fn agreed_leader(&self) -> Option<usize> {
        let mut leader = None;
        for index in self.cluster_members() {
            let member = &self.members[index];
            let run = member.running.as_ref()?;
            let id = run.node.leader_id();
            if id == 0 || leader.is_some_and(|l| l != id) {
                return None;
            }
            leader = Some(id);
        }
        let index = leader? as usize - 1;
        self.members[index]
            .running
            .as_ref()
            .filter(|run| run.node.is_leader())
            .map(|_| index)
    }

    /// Stops the faults, heals, restarts everyone, and checks liveness and the final state.
    fn settle(&mut self) {
        self.restart_stopped = true;
        self.note("settling: faults stop".to_string());
        self.heal();
        for i in 0..self.members.len() {
            self.members[i].stalled_until = 0;
            if self.members[i].running.is_some() && self.members[i].fault_armed {
                // Disarm by a power cycle, so that settling runs without faults.
                self.kill(i, true, "disarming faults");
            }
            if self.members[i].running.is_none() && !self.members[i].removed {
                self.restart(i);
            }
        }
        self.calm_until("a leader known to every member", |sim| {
            sim.agreed_leader().is_some()
        });

        // Liveness: one put per key completes.
        for key in 0..KEYS {
            let mut attempts = 0;
            loop {
                attempts += 1;
                if attempts > 20 {
                    self.fail(format!(
                        "liveness: the final put of key {key} never succeeded"
                    ));
                }
                let target = match self.agreed_leader() {
                    Some(leader) => leader,
                    None => match self.random_live() {
                        Some(live) => live,
                        None => self.fail("no member runs".to_string()),
                    },
                };
                let value = self.next_value;
                self.next_value += 1;
                self.put(target, key, value);
                let write = self.history.writes.len() - 1;
                self.calm_until("the final put's answer", |sim| {
                    sim.history.writes[write].completed.is_some()
                });
                if self.history.writes[write].outcome == WriteOutcome::Ok {
                    break;
                }
            }
        }

        // Every member applies everything.
        self.calm_until("every member applying the same index", |sim| {
            let cluster = sim.cluster_members();
            let applied: Vec<u64> = cluster
                .iter()
                .filter_map(|i| sim.members[*i].running.as_ref())
                .map(|r| r.node.applied_index())
                .collect();
            !cluster.is_empty()
                && applied.len() == cluster.len()
                && applied
                    .iter()
                    .all(|&a| a == applied[0] && a >= sim.max_commit_seen)
                && sim.puts.is_empty()
        });

        // Final linearizable reads of every key through every member.
        let cluster = self.cluster_members();
        for &i in &cluster {
            for key in 0..KEYS {
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    if attempts > 20 {
                        self.fail(format!(
                            "liveness: the final read of key {key} on member {} never succeeded",
                            i + 1
                        ));
                    }
                    let before = self.history.reads.len();
                    self.read(i, key);
                    self.calm_until("the final read's answer", |sim| sim.reads.is_empty());
                    if self.history.reads.len() > before {
                        break;
                    }
                }
            }
        }

        // State machine safety at the end: every store equal.
        let mut hashes = Vec::new();
        for &i in &cluster {
            let member = &self.members[i];
            let run = member.running.as_ref().expect("all running");
            let store = run.shared.read_store();
            let hash = store.hash_kv(0).expect("hash_kv");
            let auth = run.shared.auth();
            hashes.push((
                member.id,
                run.node.applied_index(),
                hash.hash,
                store.current_revision(),
                crc32fast::hash(&auth.encode()),
                auth.revision(),
            ));
        }
        let same = |h: &(u64, u64, u32, i64, u32, u64)| (h.1, h.2, h.3, h.4);
        if hashes.iter().any(|h| same(h) != same(&hashes[0])) {
            self.fail(format!(
                "members ended with different stores (id, applied, hash, revision, auth hash, \
                 auth revision): {hashes:?}"
            ));
        }
        self.stats.final_applied_index = hashes[0].1;
        self.stats.final_auth_revision = hashes[0].5;
        self.stats.spares_joined =
            cluster.iter().filter(|i| self.members[**i].spare).count() as u64;

        // Durability: every acknowledged put is in the store at the revision it was given.
        let run = self.members[cluster[0]].running.as_ref().expect("running");
        let lost: Vec<String> = {
            let store = run.shared.read_store();
            self.acknowledged
                .iter()
                .filter_map(|(&revision, &(key, value))| {
                    let found = store
                        .range(&RangeRequest {
                            key: key_bytes(key),
                            revision,
                            ..Default::default()
                        })
                        .ok()
                        .and_then(|r| r.kvs.first().cloned());
                    match found {
                        Some(kv)
                            if kv.mod_revision == revision && parse_value(&kv.value) == value =>
                        {
                            None
                        }
                        other => Some(format!(
                            "put of key {key} = {value} acknowledged at revision {revision}, \
                             store has {other:?}"
                        )),
                    }
                })
                .collect()
        };
        if !lost.is_empty() {
            self.fail(format!("acknowledged puts were lost:\n{}", lost.join("\n")));
        }

        // Linearizability of every client operation.
        if let Err(error) = history::check(&self.history) {
            self.fail(format!("the client history is not linearizable: {error}"));
        }
    }

    // ----- scripted scenarios -----

    /// Sets the rule applied to every message sent from now on (`None`: all pass).
    pub fn set_rule(&mut self, rule: Option<Box<NetworkRule>>) {
        self.rule = rule;
    }

    /// Puts the held messages on the wire, due now, oldest first.
    pub fn release_held(&mut self) -> usize {
        let held = std::mem::take(&mut self.held);
        let count = held.len();
        for mut flight in held {
            flight.deliver_at = self.step;
            self.network.push(flight);
        }
        count
    }

    /// The held messages (type, from member index, to member index), oldest first.
    pub fn held(&self) -> Vec<(MessageType, usize, usize)> {
        self.held
            .iter()
            .map(|f| (f.message.get_msg_type(), f.from, f.to))
            .collect()
    }

    /// Releases only the oldest held message, and delivers it at once.
    pub fn deliver_oldest_held(&mut self) {
        assert!(!self.held.is_empty(), "nothing is held");
        let flight = self.held.remove(0);
        self.step += 1;
        self.deliver(flight);
        self.after_event();
    }

    /// Runs fault-free steps until `done` holds (failing after [`SETTLE_STEPS_MAX`]).
    pub fn run_until(&mut self, what: &str, done: impl Fn(&Sim) -> bool) {
        self.calm_until(what, done);
    }

    /// Runs `steps` fault-free steps.
    pub fn run_steps(&mut self, steps: u64) {
        for _ in 0..steps {
            self.calm_step();
        }
    }

    /// The index of the member every member agrees leads, once there is one.
    pub fn elect(&mut self) -> usize {
        self.calm_until("a leader known to every member", |sim| {
            sim.agreed_leader().is_some()
        });
        self.agreed_leader().expect("agreed above")
    }

    /// The index of the member that leads, as far as the live members agree.
    pub fn live_leader(&self) -> Option<usize> {
        let mut leader = None;
        for member in &self.members {
            let Some(run) = member.running.as_ref() else {
                continue;
            };
            if run.node.is_leader() && leader.is_none() {
                leader = Some(member.id as usize - 1);
            }
        }
        leader
    }

    /// Puts `value` to `key` through member `i` and waits for the answer.
    pub fn put_and_wait(&mut self, i: usize, key: usize, value: u64) -> WriteOutcome {
        self.put(i, key, value);
        let write = self.history.writes.len() - 1;
        self.calm_until("a put's answer", |sim| {
            sim.history.writes[write].completed.is_some()
        });
        self.history.writes[write].outcome
    }

    /// Starts a put of `value` to `key` through member `i`; returns its number for
    /// [`Sim::put_outcome`].
    pub fn start_put(&mut self, i: usize, key: usize, value: u64) -> usize {
        self.put(i, key, value);
        self.history.writes.len() - 1
    }

    /// The answer to put number `write`, once it came.
    pub fn put_outcome(&self, write: usize) -> Option<WriteOutcome> {
        let write = &self.history.writes[write];
        write.completed.map(|_| write.outcome)
    }

    /// Makes member `i`'s disk slow for the next `steps` steps: its writes do not complete.
    pub fn stall_disk(&mut self, i: usize, steps: u64) {
        self.members[i].stalled_until = self.step + steps;
    }

    /// Makes the next write to member `i`'s checkpoint disk fail (EIO).
    pub fn fail_next_checkpoint_write(&mut self, i: usize) {
        self.members[i].snap_disk.fail_next_write();
    }

    /// Checkpoints whose save failed so far, on any member.
    pub fn checkpoint_failures(&self) -> u64 {
        self.stats.checkpoint_failures
    }

    /// Member `i`'s current term (`None` while it is down).
    pub fn term_of(&self, i: usize) -> Option<u64> {
        self.members[i].running.as_ref().map(|run| run.node.term())
    }

    /// Starts a linearizable read of `key` through member `i`.
    pub fn start_read(&mut self, i: usize, key: usize) {
        self.read(i, key);
    }

    /// The reads still in progress.
    pub fn reads_in_progress(&self) -> usize {
        self.reads.len()
    }

    /// The reads that returned, oldest first: (key, value).
    pub fn returned_reads(&self) -> Vec<(usize, Option<u64>)> {
        self.history
            .reads
            .iter()
            .map(|r| (r.key, r.value))
            .collect()
    }

    /// Member `i`'s applied index (`None` while it is down).
    pub fn applied_index(&self, i: usize) -> Option<u64> {
        self.members[i]
            .running
            .as_ref()
            .map(|run| run.node.applied_index())
    }

    /// The leader member `i` knows of (0: none; `None` while it is down).
    pub fn leader_of(&self, i: usize) -> Option<u64> {
        self.members[i]
            .running
            .as_ref()
            .map(|run| run.node.leader_id())
    }

    /// Member `i`'s commit index (`None` while it is down).
    pub fn commit_index(&self, i: usize) -> Option<u64> {
        self.members[i]
            .running
            .as_ref()
            .map(|run| run.node.commit_index())
    }

    /// Ends member `i`'s process (with `power_loss`, its disks lose unsynced data too).
    pub fn stop_member(&mut self, i: usize, power_loss: bool) {
        self.kill(i, power_loss, "stopped by the scenario");
    }

    /// Starts member `i` from its disks.
    pub fn start_member(&mut self, i: usize) {
        self.restart(i);
    }

    /// Checks the client history for linearizability.
    pub fn check_history(&self) -> Result<(), String> {
        history::check(&self.history)
    }

    /// Proposes membership `command` through member `i` and runs until it is answered: the
    /// members after it, or the error.
    pub fn change_membership(
        &mut self,
        i: usize,
        command: Command,
    ) -> Result<Vec<pb::Member>, ServerError> {
        let (reply, mut answer) = oneshot::channel();
        self.note(format!("member {} proposes {command:?}", i + 1));
        let run = self.members[i].running.as_mut().expect("live");
        run.node.propose(Proposal {
            command,
            reply: Some(reply),
        });
        let start = self.step;
        loop {
            match answer.try_recv() {
                Ok(Some(result)) => {
                    return result.map(|applied| match applied {
                        keel::server::state::Applied::Members(members) => members,
                        other => panic!("a membership change answered {other:?}"),
                    })
                }
                Ok(None) => {}
                Err(_) => return Err(ServerError::Stopped),
            }
            if self.step - start >= SETTLE_STEPS_MAX {
                self.fail("a membership change was never answered".to_string());
            }
            self.calm_step_without_restarts();
        }
    }

    /// raft's configuration as member `i` applied it (`None` while it is down).
    pub fn conf_of(&self, i: usize) -> Option<raft::eraftpb::ConfState> {
        self.members[i]
            .running
            .as_ref()
            .map(|run| run.node.conf_state())
    }

    /// Whether member `i` stopped because it was removed.
    pub fn is_removed(&self, i: usize) -> bool {
        self.members[i].removed
    }

    /// One fault-free step that leaves stopped members down.
    fn calm_step_without_restarts(&mut self) {
        self.step += 1;
        for i in self.live_members() {
            self.members[i].running.as_mut().expect("live").node.tick();
        }
        self.deliver_due();
        self.after_event();
    }

    fn deliver_due(&mut self) {
        loop {
            let due: Vec<usize> = (0..self.network.len())
                .filter(|&i| self.network[i].deliver_at <= self.step)
                .collect();
            if due.is_empty() {
                break;
            }
            let at = due[self.rng.below(due.len() as u64) as usize];
            let flight = self.network.swap_remove(at);
            self.deliver(flight);
        }
    }
}
