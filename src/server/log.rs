//! The raft core's loop: drives the [`RaftNode`] on its own glommio executor.
//!
//! Each turn takes every proposal, read and peer message that arrived since the last turn and
//! hands them to raft together, counts the ticks that fell due, then processes the Ready: so
//! every write that arrived during the previous WAL sync shares the next one (group commit).
//! The same loop proposes lease expiries and auto-compactions (leader only), slices physical
//! compaction between batches, and takes checkpoints.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use keel_engine::checkpoint::CheckpointWriter;
use keel_engine::io::{GlommioDisk, InlineWrites};
use keel_proto::etcdserverpb as pb;
use raft::eraftpb::{Entry, Message};

use crate::config::AutoCompaction;
use crate::raft::node::{
    CheckpointWork, DiskWriter, EncodedCheckpoint, Outbox, RaftNode, WriteDone, WriteJob,
};
use crate::server::command::Command;
use crate::server::state::{LeaderTransfer, Proposal, ReadReply, Shared};

/// Most proposals handed to raft in one turn (one WAL write).
pub const BATCH_ENTRIES_MAX: usize = 4096;
/// Most proposal bytes handed to raft in one turn.
pub const BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;
/// How often the leader looks for expired leases.
pub const LEASE_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// Most leases revoked in one turn (the rest wait for the next turn).
pub const LEASE_REVOKES_PER_TURN_MAX: usize = 1000;

/// What the peer transport hands the raft core.
#[derive(Debug)]
pub enum PeerInput {
    /// Raft messages from a peer.
    Messages(Vec<Message>),
    /// A peer could not be reached (raft slows its appends to it).
    Unreachable(u64),
    /// A peer refused this member's messages because it was removed from the cluster.
    Removed,
    /// A snapshot sent to peer `to` was stored by it (`ok`) or failed.
    SnapshotStatus {
        /// The peer.
        to: u64,
        /// Whether it arrived.
        ok: bool,
    },
}

/// How often revision-mode auto-compaction runs (etcd: every 5 minutes).
pub const REVISION_COMPACTION_INTERVAL: Duration = Duration::from_secs(300);

/// Decides when to compact on its own (`--auto-compaction-mode/-retention`).
///
/// Revision mode, as etcd: every 5 minutes, compact to `current - retention`. Periodic mode:
/// the store revision is sampled every tenth of the retention period (at least every second),
/// and at each sample the store is compacted to the newest sample at least one period old, so
/// history older than the period is dropped in steps of a tenth of it (etcd 3.4 does the
/// same with its own sampling intervals).
pub struct AutoCompactor {
    mode: AutoCompaction,
    next_check: Instant,
    samples: std::collections::VecDeque<(Instant, i64)>,
}

impl AutoCompactor {
    /// A compactor for `mode`.
    pub fn new(mode: AutoCompaction) -> AutoCompactor {
        let now = Instant::now();
        let mut compactor = AutoCompactor {
            mode,
            next_check: now,
            samples: Default::default(),
        };
        compactor.next_check = now + compactor.interval();
        compactor
    }

    fn interval(&self) -> Duration {
        match self.mode {
            AutoCompaction::Disabled => Duration::from_secs(3600),
            AutoCompaction::Revision(_) => REVISION_COMPACTION_INTERVAL,
            AutoCompaction::Periodic(period) => (period / 10).max(Duration::from_secs(1)),
        }
    }

    /// The revision to compact to now, if one is due.
    pub fn due(&mut self, now: Instant, current: i64, compacted: i64) -> Option<i64> {
        if now < self.next_check {
            return None;
        }
        self.next_check = now + self.interval();
        let target = match self.mode {
            AutoCompaction::Disabled => return None,
            AutoCompaction::Revision(retention) => current - retention,
            AutoCompaction::Periodic(period) => {
                self.samples.push_back((now, current));
                let mut target = None;
                while let Some((at, revision)) = self.samples.front().copied() {
                    if now.duration_since(at) < period {
                        break;
                    }
                    target = Some(revision);
                    self.samples.pop_front();
                }
                target?
            }
        };
        (target > compacted && target > 0).then_some(target)
    }
}

/// Where the raft core's inputs arrive.
pub struct CoreChannels {
    /// Client proposals.
    pub proposals: async_channel::Receiver<Proposal>,
    /// Linearizable reads waiting for a ReadIndex round.
    pub reads: async_channel::Receiver<ReadReply>,
    /// Messages and reports from the peer transport.
    pub peers: async_channel::Receiver<PeerInput>,
    /// Leadership transfers (MoveLeader, shutdown).
    pub transfers: async_channel::Receiver<LeaderTransfer>,
}

/// What the checkpoint thread reports to the raft core.
#[derive(Debug)]
pub enum CheckpointOutcome {
    /// The encoding of the checkpoint at this index ended (`true`: the payload is being
    /// saved).
    Encoded(u64, bool),
    /// The file of the checkpoint at this index was saved (its size) or not.
    Saved(u64, Result<u64, String>),
}

/// The checkpoint thread: encodes checkpoints from the shared store a slice at a time (each
/// slice under the store's read lock, so writes wait at most one slice) and saves them, on a
/// glommio executor of its own, so the raft core never spends a checkpoint's time.
pub struct Checkpointer {
    work: async_channel::Sender<CheckpointWork>,
    outcomes: async_channel::Receiver<CheckpointOutcome>,
    /// Log entries a checkpoint made unnecessary, freed on the checkpoint thread.
    garbage: async_channel::Sender<Vec<Vec<Entry>>>,
}

/// How long the raft core's executor runs its tasks before it polls for finished I/O and
/// lets its other tasks (the WAL writer) in: the time slice of the raft core's task queue.
/// glommio's default, 100 ms, let a raft loop busy with background work (freeing, compaction
/// slices) hold a finished WAL write back that long.
pub const RAFT_CORE_PREEMPT: Duration = Duration::from_millis(2);

/// The longest the raft core's executor sleeps with work to do (how often `crate::executor`'s
/// kicker wakes it, the guard against a glommio bug that can put it to sleep so; its short
/// time slice makes that likelier).
pub const RAFT_CORE_WATCHDOG: Duration = Duration::from_millis(10);

/// Keys encoded per slice of a checkpoint: a write waits for at most one slice's hold of the
/// store's read lock. 4,096 keys held it 3.3 ms (1 M keys of 256 B on the 2-core VM of
/// perf/results/), and writes during the encoding took 5–11 ms; 1,024 hold it under a
/// millisecond.
pub const CHECKPOINT_SLICE_KEYS: usize = 1024;

impl Checkpointer {
    /// Starts the thread; it saves into the checkpoint directory `snap_dir`.
    pub fn start(shared: Arc<Shared>, snap_dir: PathBuf) -> anyhow::Result<Checkpointer> {
        let (work_tx, work_rx) = async_channel::bounded::<CheckpointWork>(1);
        let (outcome_tx, outcome_rx) = async_channel::unbounded();
        let (garbage_tx, garbage_rx) = async_channel::unbounded::<Vec<Vec<Entry>>>();
        let options = crate::executor::Options::default();
        crate::executor::spawn("keel-checkpoint", options, move || async move {
            lower_thread_priority();
            glommio::spawn_local(async move {
                while let Ok(chunks) = garbage_rx.recv().await {
                    let (began, count) = (Instant::now(), chunks.len());
                    for chunk in chunks {
                        drop(chunk);
                        glommio::yield_if_needed().await;
                    }
                    tracing::debug!(
                        chunks = count,
                        took_ms = began.elapsed().as_millis() as u64,
                        "freed the log entries a checkpoint dropped"
                    );
                }
            })
            .detach();
            let disk = match GlommioDisk::open(&snap_dir).await {
                Ok(disk) => disk,
                Err(error) => {
                    tracing::error!(%error, "the checkpoint thread cannot open its directory");
                    return;
                }
            };
            // The encoder's output buffer and this one trade places at each slice, so an
            // encoding reuses two buffers of about a slice each.
            let mut spare = Vec::new();
            while let Ok(work) = work_rx.recv().await {
                let index = work.index;
                let began = std::time::Instant::now();
                tracing::info!(index, "taking a checkpoint");
                let mut slices = 0u64;
                let encoded = encode_to_file(work, &shared, &disk, &mut spare, &mut slices).await;
                let (encoded, writer) = match encoded {
                    Ok(encoded) => encoded,
                    Err(error) => {
                        tracing::warn!(%error, "checkpoint encoding stopped");
                        let outcome = CheckpointOutcome::Encoded(index, false);
                        let _ = outcome_tx.send(outcome).await;
                        continue;
                    }
                };
                tracing::info!(
                    index,
                    slices,
                    streamed_bytes = writer.payload_len(),
                    took_ms = began.elapsed().as_millis() as u64,
                    "checkpoint encoded"
                );
                let _ = outcome_tx
                    .send(CheckpointOutcome::Encoded(index, true))
                    .await;
                let began = std::time::Instant::now();
                let saved = encoded.complete(writer).await;
                tracing::info!(
                    index,
                    took_ms = began.elapsed().as_millis() as u64,
                    "checkpoint file saved"
                );
                drop(encoded);
                // A slice of large values can grow the buffer far; it is not kept for the
                // next checkpoint.
                spare = Vec::new();
                let _ = outcome_tx
                    .send(CheckpointOutcome::Saved(index, saved))
                    .await;
            }
        })
        .map_err(|e| anyhow::anyhow!("starting the checkpoint thread: {e}"))?;
        Ok(Checkpointer {
            work: work_tx,
            outcomes: outcome_rx,
            garbage: garbage_tx,
        })
    }
}

/// Encodes `work` a slice at a time, writing the bytes of each slice to a new checkpoint file
/// as they come (so the payload is never whole in memory); returns the encoding's end and the
/// file to complete with it. `spare` is the output buffer, kept from one checkpoint to the
/// next; `slices` counts the slices. The file is given up on any error.
async fn encode_to_file<'d>(
    mut work: CheckpointWork,
    shared: &Shared,
    disk: &'d GlommioDisk,
    spare: &mut Vec<u8>,
    slices: &mut u64,
) -> Result<(EncodedCheckpoint, CheckpointWriter<'d, GlommioDisk>), String> {
    let mut writer = CheckpointWriter::create(disk, work.index, work.held_len())
        .await
        .map_err(|e| e.to_string())?;
    let encoded = async {
        writer
            .append(work.prefix())
            .await
            .map_err(|e| e.to_string())?;
        loop {
            *slices += 1;
            let done = work.step(shared, CHECKPOINT_SLICE_KEYS)?;
            work.take_output(spare);
            writer.append(spare).await.map_err(|e| e.to_string())?;
            if done {
                return work.finish();
            }
        }
    }
    .await;
    match encoded {
        Ok(encoded) => Ok((encoded, writer)),
        Err(error) => {
            writer.abandon().await;
            Err(error)
        }
    }
}

/// Nice value of the checkpoint thread: it yields the CPU to the threads that serve clients
/// and the raft core when they need it (on 2 busy cores a checkpoint at normal priority
/// delayed writes by tens of milliseconds), and takes what they leave.
pub const CHECKPOINT_THREAD_NICE: i32 = 10;

fn lower_thread_priority() {
    // SAFETY: gettid has no preconditions; setpriority on this thread's own id changes only
    // its scheduling weight.
    let result = unsafe {
        let tid = libc::gettid();
        libc::setpriority(
            libc::PRIO_PROCESS,
            tid as libc::id_t,
            CHECKPOINT_THREAD_NICE,
        )
    };
    if result != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "could not lower the checkpoint thread's priority"
        );
    }
}

/// The raft core's inputs and its node.
pub struct RaftCore<O: Outbox> {
    node: RaftNode<GlommioDisk>,
    writer: Option<DiskWriter<GlommioDisk>>,
    shared: Arc<Shared>,
    proposals: async_channel::Receiver<Proposal>,
    reads: async_channel::Receiver<ReadReply>,
    peers: async_channel::Receiver<PeerInput>,
    transfers: async_channel::Receiver<LeaderTransfer>,
    outbox: O,
    tick_interval: Duration,
    compactor: AutoCompactor,
    checkpointer: Checkpointer,
    auto_promote: bool,
    /// The WAL disk's inline-write switch, when the member has one: on while this member is
    /// its cluster's only one (see [`RaftCore::set_inline_writes`]).
    inline_writes: Option<InlineWrites>,
}

/// How long a member that applied its own removal goes on before it stops (etcd waits a
/// second too), so that its answer to the MemberRemove and its last messages go out.
pub const REMOVED_STOP_DELAY: Duration = Duration::from_secs(1);

impl<O: Outbox> RaftCore<O> {
    /// A core driving `node`, whose WAL `writer` runs as a task of its own once the core
    /// runs.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: RaftNode<GlommioDisk>,
        writer: DiskWriter<GlommioDisk>,
        shared: Arc<Shared>,
        channels: CoreChannels,
        outbox: O,
        tick_interval: Duration,
        auto_compaction: AutoCompaction,
        checkpointer: Checkpointer,
    ) -> RaftCore<O> {
        let CoreChannels {
            proposals,
            reads,
            peers,
            transfers,
        } = channels;
        RaftCore {
            node,
            writer: Some(writer),
            shared,
            proposals,
            reads,
            peers,
            transfers,
            outbox,
            tick_interval,
            compactor: AutoCompactor::new(auto_compaction),
            checkpointer,
            auto_promote: false,
            inline_writes: None,
        }
    }

    /// Keel's `--auto-promote-learners`: while leading, promote each learner once its log
    /// holds 90% of the leader's (the check MemberPromote makes).
    pub fn set_auto_promote(&mut self, on: bool) {
        self.auto_promote = on;
    }

    /// Gives the core the WAL disk's inline-write switch. Before each batch is handed to the
    /// WAL writer the core turns it on if this member is its cluster's only one, off
    /// otherwise. Inline, the batch's write blocks this thread, which saves the two
    /// cross-thread wake-ups of the write thread (a one-member sequential put's p50 drops by a
    /// fifth on the 2-core VM of perf/results). Nothing here needs the thread meanwhile: there
    /// is no peer to hear or heartbeat, nothing commits before the write, linearizable reads
    /// and lease keep-alives are answered off this thread, and lease expiry is judged by the
    /// lease clocks, not by ticks. With a second member (voter or learner) every write goes
    /// to the write thread again, so that ticks and heartbeats never wait for a sync.
    pub fn set_inline_writes(&mut self, switch: InlineWrites) {
        self.inline_writes = Some(switch);
    }

    /// Hands `job` to the WAL writer, inline or not as the membership says.
    async fn send_write(
        &self,
        jobs: &async_channel::Sender<WriteJob>,
        job: WriteJob,
    ) -> Result<(), async_channel::SendError<WriteJob>> {
        if let Some(switch) = &self.inline_writes {
            let sole = self.node.sole_member();
            if sole != switch.is_on() {
                switch.set(sole);
                if sole {
                    tracing::info!("WAL writes inline on the raft core: the only member");
                } else {
                    tracing::info!("WAL writes on the write thread: the cluster has peers");
                }
            }
        }
        jobs.send(job).await
    }

    /// Processes what raft has ready before the member serves clients: the only voter
    /// elects itself here, so it reports a leader from its first answer on.
    pub async fn prime(&mut self) {
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        if let Err(error) = self.node.handle_ready(writer, &mut self.outbox).await {
            tracing::error!(%error, "the raft core failed while starting");
        }
    }

    /// Runs until the proposal inbox closes (shutdown) or the node fails.
    pub async fn run(mut self) {
        let Some(mut writer) = self.writer.take() else {
            return;
        };
        // The WAL writer is a task of its own, so ticks, heartbeats, incoming messages and
        // applies go on while a batch syncs (its write runs on the WAL's write thread; inline
        // only for a cluster's only member, see `set_inline_writes`).
        let (job_tx, job_rx) = async_channel::bounded::<WriteJob>(1);
        let (done_tx, done_rx) = async_channel::bounded::<WriteDone>(1);
        let writer_task = glommio::spawn_local(async move {
            while let Ok(job) = job_rx.recv().await {
                let done = writer.write(job).await;
                if done_tx.send(done).await.is_err() {
                    break;
                }
            }
        })
        .detach();
        let outcomes = self.checkpointer.outcomes.clone();
        let mut next_tick = Instant::now() + self.tick_interval;
        let mut next_periodic = Instant::now() + LEASE_CHECK_INTERVAL;
        let mut timer = glommio::timer::Timer::new(self.tick_interval).fuse();
        let mut proposals = Vec::new();
        let mut reads = Vec::new();
        let mut removed_at: Option<Instant> = None;
        'turn: loop {
            glommio::yield_if_needed().await;
            let garbage = self.node.take_log_garbage();
            if !garbage.is_empty() {
                // Freed on the checkpoint thread; here only if that thread is gone.
                let _ = self.checkpointer.garbage.try_send(garbage);
            }
            let idle = !self.node.has_ready() && self.node.compaction_step();
            if idle {
                // Nothing to do: wait for the first input, a write's or a checkpoint's end,
                // or the next tick.
                futures::select! {
                    proposal = self.proposals.recv().fuse() => match proposal {
                        Ok(proposal) => proposals.push(proposal),
                        Err(_) => break 'turn,
                    },
                    read = self.reads.recv().fuse() => {
                        if let Ok(read) = read {
                            reads.push(read);
                        }
                    },
                    input = self.peers.recv().fuse() => {
                        if let Ok(input) = input {
                            self.peer_input(input);
                        }
                    },
                    done = done_rx.recv().fuse() => {
                        if let Ok(done) = done {
                            if self.write_done(done).is_err() {
                                break 'turn;
                            }
                        }
                    },
                    transfer = self.transfers.recv().fuse() => {
                        if let Ok(transfer) = transfer {
                            self.node.transfer_leader(transfer);
                        }
                    },
                    outcome = outcomes.recv().fuse() => {
                        if let Ok(outcome) = outcome {
                            self.checkpoint_outcome(outcome);
                        }
                    },
                    _ = timer => {
                        timer = glommio::timer::Timer::new(self.tick_interval).fuse();
                    }
                }
            } else if self.proposals.is_closed() && self.proposals.is_empty() {
                break 'turn;
            }
            // Take everything that is queued: it all rides the next Ready.
            let mut bytes = proposals
                .iter()
                .map(|p: &Proposal| p.command.body_len())
                .sum::<usize>();
            while proposals.len() < BATCH_ENTRIES_MAX && bytes < BATCH_BYTES_MAX {
                match self.proposals.try_recv() {
                    Ok(proposal) => {
                        bytes += proposal.command.body_len();
                        proposals.push(proposal);
                    }
                    Err(_) => break,
                }
            }
            while let Ok(read) = self.reads.try_recv() {
                reads.push(read);
            }
            while let Ok(input) = self.peers.try_recv() {
                self.peer_input(input);
            }
            if let Ok(done) = done_rx.try_recv() {
                if self.write_done(done).is_err() {
                    break 'turn;
                }
            }
            while let Ok(outcome) = outcomes.try_recv() {
                self.checkpoint_outcome(outcome);
            }
            while let Ok(transfer) = self.transfers.try_recv() {
                self.node.transfer_leader(transfer);
            }
            let now = Instant::now();
            while now >= next_tick {
                self.node.tick();
                next_tick += self.tick_interval;
            }
            if now >= next_periodic {
                next_periodic = now + LEASE_CHECK_INTERVAL;
                if self.node.is_leader() {
                    self.expire_leases(&mut proposals);
                    self.auto_compact(&mut proposals);
                    if self.auto_promote {
                        self.auto_promote(&mut proposals);
                    }
                }
                if self.node.removed() {
                    let at = *removed_at.get_or_insert_with(|| {
                        tracing::warn!(
                            "the member has been permanently removed from the cluster; it stops"
                        );
                        tracing::warn!("data-dir used by this member must be removed");
                        now
                    });
                    if now >= at + REMOVED_STOP_DELAY {
                        break 'turn;
                    }
                }
            }
            for proposal in proposals.drain(..) {
                self.node.propose(proposal);
            }
            self.node.read_index(std::mem::take(&mut reads));
            if let Err(error) = self.node.process_ready(&mut self.outbox).await {
                tracing::error!(%error, "the raft core stopped");
                break 'turn;
            }
            self.node.trim_log();
            if let Some(job) = self.node.take_write() {
                if self.send_write(&job_tx, job).await.is_err() {
                    tracing::error!("the WAL writer stopped");
                    break 'turn;
                }
            }
            if let Some(work) = self.node.start_checkpoint() {
                let index = work.index;
                if self.checkpointer.work.send(work).await.is_err() {
                    tracing::error!("the checkpoint thread stopped; no more checkpoints");
                    self.node.checkpoint_encoded(index, false);
                }
            }
        }
        // Shutdown: make durable what was already handed to raft, answer everyone else.
        for _ in 0..16 {
            if self.node.writing() {
                match done_rx.recv().await {
                    Ok(done) => {
                        if self.write_done(done).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
                continue;
            }
            if self.node.process_ready(&mut self.outbox).await.is_err() {
                break;
            }
            match self.node.take_write() {
                Some(job) => {
                    if self.send_write(&job_tx, job).await.is_err() {
                        break;
                    }
                }
                None => break,
            }
        }
        drop(job_tx);
        writer_task.await;
        while !self.node.compaction_step() {}
        self.node.stop();
        while let Ok(proposal) = self.proposals.try_recv() {
            if let Some(reply) = proposal.reply {
                let _ = reply.send(Err(crate::server::state::stopped_status()));
            }
        }
        self.shared.stop();
    }

    fn write_done(&mut self, done: WriteDone) -> Result<(), ()> {
        self.node
            .write_done(done, &mut self.outbox)
            .map_err(|error| tracing::error!(%error, "the raft core stopped"))
    }

    fn checkpoint_outcome(&mut self, outcome: CheckpointOutcome) {
        match outcome {
            CheckpointOutcome::Encoded(index, ok) => self.node.checkpoint_encoded(index, ok),
            CheckpointOutcome::Saved(index, result) => self.node.checkpoint_saved(index, result),
        }
    }

    fn peer_input(&mut self, input: PeerInput) {
        match input {
            PeerInput::Messages(messages) => {
                for message in messages {
                    self.node.step(message);
                }
            }
            PeerInput::Unreachable(id) => self.node.report_unreachable(id),
            PeerInput::SnapshotStatus { to, ok } => self.node.report_snapshot(to, ok),
            PeerInput::Removed => self.node.mark_removed(),
        }
    }

    fn expire_leases(&self, batch: &mut Vec<Proposal>) {
        let expired = self
            .shared
            .lease_clocks
            .lock()
            .expect("lease clock lock")
            .expired(Instant::now(), LEASE_REVOKES_PER_TURN_MAX);
        for id in expired {
            batch.push(Proposal {
                command: Command::LeaseRevoke(pb::LeaseRevokeRequest { id }),
                reply: None,
            });
        }
    }

    fn auto_promote(&mut self, batch: &mut Vec<Proposal>) {
        for id in self.node.promotable_learners() {
            if self.shared.limits.strict_reconfig_check
                && crate::server::membership::may_promote(&self.shared, id).is_err()
            {
                continue;
            }
            tracing::info!(learner = %format!("{id:x}"), "promoting a learner that caught up");
            batch.push(Proposal {
                command: Command::MemberPromote(pb::MemberPromoteRequest { id }),
                reply: None,
            });
        }
    }

    fn auto_compact(&mut self, batch: &mut Vec<Proposal>) {
        let (current, compacted) = {
            let store = self.shared.read_store();
            (store.current_revision(), store.compact_revision())
        };
        if let Some(revision) = self.compactor.due(Instant::now(), current, compacted) {
            tracing::info!(revision, "auto-compaction");
            batch.push(Proposal {
                command: Command::Compact(pb::CompactionRequest {
                    revision,
                    physical: false,
                }),
                reply: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_mode_keeps_the_retention() {
        let mut compactor = AutoCompactor::new(AutoCompaction::Revision(100));
        let later = Instant::now() + REVISION_COMPACTION_INTERVAL;
        assert_eq!(compactor.due(later, 1000, -1), Some(900));
        // Not again before the next interval.
        assert_eq!(compactor.due(later, 2000, 900), None);
        let much_later = later + REVISION_COMPACTION_INTERVAL;
        assert_eq!(compactor.due(much_later, 950, 900), None);
    }

    #[test]
    fn periodic_mode_compacts_to_a_sample_one_period_old() {
        let period = Duration::from_secs(100);
        let mut compactor = AutoCompactor::new(AutoCompaction::Periodic(period));
        let start = Instant::now();
        let step = Duration::from_secs(10);
        let mut compacted = -1;
        let mut seen = Vec::new();
        for i in 1..=25i64 {
            if let Some(target) = compactor.due(start + step * i as u32, i * 10, compacted) {
                compacted = target;
                seen.push((i, target));
            }
        }
        // The sample taken at step 1 (revision 10) is one period old at step 11.
        assert_eq!(seen.first(), Some(&(11, 10)));
        assert!(seen.iter().all(|(i, target)| *target == (i - 10) * 10));
    }

    #[test]
    fn disabled_never_compacts() {
        let mut compactor = AutoCompactor::new(AutoCompaction::Disabled);
        let later = Instant::now() + Duration::from_secs(100_000);
        assert_eq!(compactor.due(later, 1000, -1), None);
    }
}
