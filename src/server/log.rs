//! The log core: owns the WAL, orders every write, applies it, answers the client.
//!
//! One turn of the loop takes every proposal that arrived since the last turn (group
//! commit), frames each as one WAL entry, writes the whole batch with one aligned write and
//! one sync, applies the batch to the store under one write lock, wakes the watchers, and
//! only then answers the clients: an acknowledged write is durable and visible. Every
//! `--snapshot-count` entries the store is checkpointed and the WAL segments the checkpoint
//! covers are released, so a restart loads the checkpoint and replays only the tail.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::FutureExt;
use keel_engine::checkpoint;
use keel_engine::io::GlommioDisk;
use keel_engine::mvcc::Store;
use keel_engine::wal::{RecordType, Wal, WalOptions};
use keel_proto::etcdserverpb as pb;

use crate::config::AutoCompaction;
use crate::server::apply::{apply, ApplyContext};
use crate::server::command::{decode_entry, Command};
use crate::server::state::{wal_failed_status, ApplyResult, LeaseClocks, Proposal, Shared};

/// Most proposals in one batch (one WAL write).
pub const BATCH_ENTRIES_MAX: usize = 4096;
/// Most payload bytes in one batch.
pub const BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;
/// How often the log core looks for expired leases.
pub const LEASE_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// Most leases revoked in one turn (the rest wait for the next turn).
pub const LEASE_REVOKES_PER_TURN_MAX: usize = 1000;
/// Work units of physical compaction done per turn of the loop (a few milliseconds), so a
/// compaction never stalls writes for long (etcd's compaction pauses its writes in 10 ms
/// slices for the same reason).
pub const COMPACTION_STEP_UNITS: usize = 10_000;
/// A batch whose apply takes longer than this counts as a slow apply.
pub const SLOW_APPLY: Duration = Duration::from_millis(100);

/// Where a proposal's result goes.
type Reply = futures::channel::oneshot::Sender<ApplyResult>;

/// What recovery found on disk.
pub struct Recovered {
    /// The store with every logged entry applied.
    pub store: Store,
    /// Alarms raised by logged entries.
    pub alarms: Vec<pb::AlarmMember>,
    /// Index of the last entry.
    pub last_index: u64,
    /// Index covered by the checkpoint loaded (0 if none).
    pub checkpoint_index: u64,
    /// Entries replayed from the WAL.
    pub replayed: u64,
}

/// The durable side of the log core: the WAL and the checkpoint directory.
pub struct Storage {
    wal: Wal<GlommioDisk>,
    snap: GlommioDisk,
}

/// Opens the WAL and the checkpoints, and rebuilds the store. Runs on the log core's
/// executor (glommio files belong to the executor that opened them).
pub async fn recover(
    wal_dir: &std::path::Path,
    snap_dir: &std::path::Path,
) -> anyhow::Result<(Storage, Recovered)> {
    let snap = GlommioDisk::open(snap_dir)
        .await
        .with_context(|| format!("opening checkpoint directory {}", snap_dir.display()))?;
    let (checkpoint_index, mut store) = match checkpoint::load_latest(&snap)
        .await
        .context("loading the latest checkpoint")?
    {
        Some((index, payload)) => {
            let store = Store::decode_checkpoint(&payload)
                .with_context(|| format!("decoding checkpoint at index {index}"))?;
            (index, store)
        }
        None => (0, Store::new()),
    };
    // The log core does nothing but write and apply the log, so it may block in fdatasync
    // rather than pay io_uring's hand-off of every fsync to a kernel worker thread.
    let disk = GlommioDisk::open(wal_dir)
        .await
        .with_context(|| format!("opening WAL directory {}", wal_dir.display()))?
        .with_blocking_sync(true);
    let (wal, records) = Wal::open(disk, WalOptions::default())
        .await
        .context("opening the WAL")?;
    let mut alarms = Vec::new();
    let mut last_index = checkpoint_index;
    let mut replayed = 0;
    for record in records {
        if record.record_type != RecordType::Entry {
            continue;
        }
        let entry =
            decode_entry(&record.payload).with_context(|| format!("WAL record {}", record.lsn))?;
        if entry.index <= checkpoint_index {
            continue;
        }
        anyhow::ensure!(
            entry.index == last_index + 1,
            "WAL is missing entries {}..{} (found entry {} after {}); the data dir is damaged",
            last_index + 1,
            entry.index - 1,
            entry.index,
            last_index
        );
        let mut context = ApplyContext {
            alarms: &mut alarms,
            lease_clocks: None,
        };
        // Results were delivered before the crash (or never); only the state matters now.
        let _ = apply(&mut store, &mut context, entry.command);
        last_index = entry.index;
        replayed += 1;
    }
    Ok((
        Storage { wal, snap },
        Recovered {
            store,
            alarms,
            last_index,
            checkpoint_index,
            replayed,
        },
    ))
}

/// Starts every lease's clock after recovery: with the remaining TTL a lease checkpoint
/// recorded, else the full granted TTL (etcd's behaviour when a member becomes leader).
pub fn start_lease_clocks(store: &Store) -> LeaseClocks {
    let mut clocks = LeaseClocks::default();
    for lease in store.leases() {
        let ttl = if lease.remaining_ttl_seconds > 0 {
            lease.remaining_ttl_seconds
        } else {
            lease.granted_ttl_seconds
        };
        clocks.start(lease.id, ttl);
    }
    clocks
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

/// The log core's loop state.
pub struct LogCore {
    shared: std::sync::Arc<Shared>,
    storage: Storage,
    inbox: async_channel::Receiver<Proposal>,
    next_index: u64,
    term: u64,
    checkpoint_index: u64,
    snapshot_count: u64,
    compactor: AutoCompactor,
    /// WAL position of the previous checkpoint: segments are released only through it, so a
    /// damaged newest checkpoint can fall back to the older one with its entries still in the
    /// WAL (engine/FORMAT.md, "Server log entries").
    previous_checkpoint_lsn: Option<u64>,
    /// `Wal::bytes_written` when the last checkpoint was taken.
    wal_bytes_at_checkpoint: u64,
    /// Size of the last checkpoint payload (0 before the first).
    last_checkpoint_bytes: u64,
    /// Clients of `Compact` with `physical` set, answered when the physical work is done (as
    /// etcd answers them).
    physical_compaction_waiters: Vec<(Reply, ApplyResult)>,
}

impl LogCore {
    /// A log core continuing after `last_index`.
    pub fn new(
        shared: std::sync::Arc<Shared>,
        storage: Storage,
        inbox: async_channel::Receiver<Proposal>,
        last_index: u64,
        checkpoint_index: u64,
        snapshot_count: u64,
        auto_compaction: AutoCompaction,
    ) -> LogCore {
        LogCore {
            term: shared.header.raft_term,
            shared,
            storage,
            inbox,
            next_index: last_index + 1,
            checkpoint_index,
            snapshot_count: snapshot_count.max(1),
            compactor: AutoCompactor::new(auto_compaction),
            previous_checkpoint_lsn: None,
            wal_bytes_at_checkpoint: 0,
            last_checkpoint_bytes: 0,
            physical_compaction_waiters: Vec::new(),
        }
    }

    /// Runs until the inbox closes (shutdown), then writes a final checkpoint if entries
    /// were applied since the last one.
    pub async fn run(mut self) {
        let mut batch: Vec<Proposal> = Vec::new();
        // One timer for the periodic work, kept across turns: arming a fresh io_uring timeout
        // on every turn showed up in profiles of sequential writes.
        let mut tick = glommio::timer::Timer::new(LEASE_CHECK_INTERVAL).fuse();
        let mut next_periodic = Instant::now() + LEASE_CHECK_INTERVAL;
        loop {
            // With compaction work pending, only peek for proposals before the next slice.
            let first = if self.compaction_step() {
                futures::select! {
                    proposal = self.inbox.recv().fuse() => match proposal {
                        Ok(proposal) => Some(proposal),
                        Err(_) => break,
                    },
                    _ = tick => {
                        tick = glommio::timer::Timer::new(LEASE_CHECK_INTERVAL).fuse();
                        None
                    }
                }
            } else {
                match self.inbox.try_recv() {
                    Ok(proposal) => Some(proposal),
                    Err(async_channel::TryRecvError::Empty) => None,
                    Err(async_channel::TryRecvError::Closed) => break,
                }
            };
            let mut bytes = 0;
            if let Some(proposal) = first {
                bytes += proposal.command.body_len();
                batch.push(proposal);
            }
            while batch.len() < BATCH_ENTRIES_MAX && bytes < BATCH_BYTES_MAX {
                match self.inbox.try_recv() {
                    Ok(proposal) => {
                        bytes += proposal.command.body_len();
                        batch.push(proposal);
                    }
                    Err(_) => break,
                }
            }
            let now = Instant::now();
            if now >= next_periodic {
                next_periodic = now + LEASE_CHECK_INTERVAL;
                self.expire_leases(&mut batch);
                self.auto_compact(&mut batch);
            }
            if !batch.is_empty() {
                self.commit(std::mem::take(&mut batch)).await;
            }
            if self.checkpoint_due() {
                self.checkpoint().await;
            }
        }
        // Drain what was queued before the inbox closed: those clients are still waiting.
        while let Ok(proposal) = self.inbox.try_recv() {
            batch.push(proposal);
        }
        if !batch.is_empty() {
            self.commit(batch).await;
        }
        while !self.compaction_step() {}
    }

    /// Does one slice of pending physical compaction; true when none is left (and then the
    /// clients waiting for a physical compaction are answered).
    fn compaction_step(&mut self) -> bool {
        let shared = &self.shared;
        let done = {
            let store = shared.read_store();
            !store.compaction_pending()
        } || shared.write_store().compact_step(COMPACTION_STEP_UNITS);
        if done {
            for (reply, result) in self.physical_compaction_waiters.drain(..) {
                let _ = reply.send(result);
            }
        }
        done
    }

    fn expire_leases(&self, batch: &mut Vec<Proposal>) {
        let shared = &self.shared;
        let expired = shared
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

    async fn commit(&mut self, batch: Vec<Proposal>) {
        let shared = self.shared.clone();
        if shared.wal_failed.load(Ordering::Acquire) {
            for proposal in batch {
                if let Some(reply) = proposal.reply {
                    let _ = reply.send(Err(wal_failed_status()));
                }
            }
            return;
        }
        let first_index = self.next_index;
        let mut payloads: Vec<Vec<u8>> = Vec::with_capacity(batch.len());
        for (offset, proposal) in batch.iter().enumerate() {
            let mut payload = Vec::new();
            proposal
                .command
                .encode_entry(first_index + offset as u64, self.term, &mut payload);
            payloads.push(payload);
        }
        let records: Vec<(RecordType, &[u8])> = payloads
            .iter()
            .map(|p| (RecordType::Entry, p.as_slice()))
            .collect();
        let bytes_before = self.storage.wal.bytes_written();
        let started = Instant::now();
        if let Err(error) = self.storage.wal.append(&records).await {
            // Never retry a failed sync: what reached the disk is unknown. Refuse every
            // write from now on; a restart recovers from what the WAL holds.
            tracing::error!(%error, "WAL append failed; refusing writes until restart");
            shared.wal_failed.store(true, Ordering::Release);
            shared.metrics.proposals_failed.add(batch.len() as u64);
            for proposal in batch {
                if let Some(reply) = proposal.reply {
                    let _ = reply.send(Err(wal_failed_status()));
                }
            }
            return;
        }
        shared.metrics.wal_fsync.observe(started.elapsed());
        shared
            .metrics
            .wal_write_bytes
            .add(self.storage.wal.bytes_written() - bytes_before);
        self.next_index += batch.len() as u64;
        shared.metrics.proposals_committed.add(batch.len() as u64);

        let applying = Instant::now();
        let count = batch.len();
        // (reply, waits for physical compaction, is a lease expiry, result)
        let mut results: Vec<(Option<Reply>, bool, bool, ApplyResult)> = Vec::with_capacity(count);
        {
            let mut store = shared.write_store();
            let mut alarms = shared.alarms.lock().expect("alarm lock");
            let mut clocks = shared.lease_clocks.lock().expect("lease clock lock");
            for Proposal { command, reply } in batch {
                let mut context = ApplyContext {
                    alarms: &mut alarms,
                    lease_clocks: Some(&mut clocks),
                };
                let physical = matches!(&command, Command::Compact(r) if r.physical);
                let expiry = reply.is_none() && matches!(&command, Command::LeaseRevoke(_));
                // Apply takes the command by value so keys and values move into the store.
                let result = apply(&mut store, &mut context, command);
                results.push((reply, physical, expiry, result));
            }
            shared
                .applied_index
                .store(self.next_index - 1, Ordering::Release);
        }
        let apply_time = applying.elapsed();
        shared.metrics.backend_commit.observe(apply_time);
        if apply_time > SLOW_APPLY {
            shared.metrics.slow_apply.inc();
        }
        shared.metrics.proposals_applied.add(count as u64);
        shared.revision_changed.notify(usize::MAX);
        for (reply, physical, expiry, result) in results {
            if result.is_err() {
                shared.metrics.proposals_failed.inc();
            }
            match reply {
                Some(reply) if physical && result.is_ok() => {
                    self.physical_compaction_waiters.push((reply, result));
                }
                Some(reply) => {
                    let _ = reply.send(result);
                }
                None => {
                    if expiry && result.is_ok() {
                        shared.metrics.lease_revoked.inc();
                    }
                }
            }
        }
    }

    /// A checkpoint is due after `--snapshot-count` entries *and* once the WAL written since
    /// the last checkpoint is at least as large as that checkpoint. Encoding a checkpoint costs
    /// time in proportion to the store, and it runs on the log core, so the second condition
    /// keeps its amortized cost at most that of the writes themselves: a large store with
    /// small writes is not re-serialized every 10,000 entries (etcd's snapshots are cheap
    /// there because its B-tree file is already on disk). Restart replays at most about one
    /// store's worth of WAL.
    fn checkpoint_due(&self) -> bool {
        self.next_index > self.checkpoint_index + self.snapshot_count
            && self.storage.wal.bytes_written() - self.wal_bytes_at_checkpoint
                >= self.last_checkpoint_bytes
    }

    /// Writes a checkpoint of the store at the last applied index and releases the WAL
    /// segments it covers. A failure is logged and retried at the next threshold: the WAL
    /// still holds everything, so no data is at risk, only restart time and disk space.
    async fn checkpoint(&mut self) {
        let shared = self.shared.clone();
        let index = self.next_index - 1;
        let payload = match shared.read_store().encode_checkpoint() {
            Ok(payload) => payload,
            Err(error) => {
                tracing::error!(%error, "encoding checkpoint failed");
                self.checkpoint_index = index;
                return;
            }
        };
        let lsn = self.storage.wal.last_lsn();
        if let Err(error) = checkpoint::save(&self.storage.snap, index, &payload).await {
            tracing::error!(%error, index, "writing checkpoint failed");
            self.checkpoint_index = index;
            return;
        }
        self.checkpoint_index = index;
        self.wal_bytes_at_checkpoint = self.storage.wal.bytes_written();
        self.last_checkpoint_bytes = payload.len() as u64;
        let release = self.previous_checkpoint_lsn.replace(lsn);
        tracing::info!(index, bytes = payload.len(), "checkpoint written");
        if let Some(release) = release {
            if let Err(error) = self.storage.wal.release_through(release).await {
                tracing::warn!(%error, "releasing WAL segments failed");
            }
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
