//! The raft log in memory: raft-rs' `Storage`, a read-only view for raft over the log the WAL
//! holds or is about to hold.
//!
//! The node appends a Ready's entries here when it queues them for the WAL (raft-rs'
//! asynchronous Ready reads them from the storage from then on, and counts them as durable only
//! once the write reports back), and raft reads them back through [`raft::Storage`]. The log starts after a
//! *compaction point* (index and term of the last entry no longer held; a follower that needs
//! an entry before it is sent a checkpoint instead); after each checkpoint the node drops
//! entries older than [`CATCH_UP_ENTRIES`] before it, and between checkpoints it drops applied
//! entries older than that many before the applied index ([`LogStore::trim_through`]), so the
//! log in memory stays small however far apart checkpoints are.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

/// Entries kept in memory behind the newest checkpoint by default, so that a follower slightly
/// behind catches up from the log rather than by snapshot (etcd 3.6 keeps 5,000;
/// `--experimental-snapshot-catchup-entries`).
pub const CATCH_UP_ENTRIES: u64 = 5_000;

/// The newest checkpoint that can be sent to a lagging follower.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CheckpointInfo {
    /// Index the checkpoint covers.
    pub index: u64,
    /// Term of the entry at that index.
    pub term: u64,
    /// The configuration at that index.
    pub conf_state: ConfState,
}

/// Entries per chunk of [`Entries`].
pub const CHUNK_ENTRIES: usize = 4096;

/// Applied entries beyond the catch-up window that the server's log gathers before it drops
/// them between checkpoints ([`LogStore::trim_through`]): eight chunks at a time.
pub const TRIM_MIN_ENTRIES: u64 = 8 * CHUNK_ENTRIES as u64;

/// A sequence of entries in chunks of [`CHUNK_ENTRIES`], so that the log never moves what it
/// holds as it grows (a double-the-capacity copy of a million entries stalled the raft core
/// for a tenth of a second), and drops whole chunks from the front. The first `front` entries
/// of the first chunk are dead (dropped from the log, freed with their chunk); every chunk but
/// the last is full.
#[derive(Debug, Default)]
struct Entries {
    chunks: VecDeque<Vec<Entry>>,
    front: usize,
    len: usize,
}

impl Entries {
    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, at: usize) -> Option<&Entry> {
        if at >= self.len {
            return None;
        }
        let position = self.front + at;
        self.chunks
            .get(position / CHUNK_ENTRIES)?
            .get(position % CHUNK_ENTRIES)
    }

    fn iter(&self) -> impl Iterator<Item = &Entry> {
        (0..self.len).filter_map(move |at| self.get(at))
    }

    fn push(&mut self, entry: Entry) {
        if self.chunks.back().is_none_or(|c| c.len() == CHUNK_ENTRIES) {
            self.chunks.push_back(Vec::with_capacity(CHUNK_ENTRIES));
        }
        self.chunks.back_mut().expect("pushed above").push(entry);
        self.len += 1;
    }

    /// Keeps the first `keep` entries.
    fn truncate(&mut self, keep: usize) {
        if keep >= self.len {
            return;
        }
        let position = self.front + keep;
        self.chunks
            .truncate(position.div_ceil(CHUNK_ENTRIES).max(1));
        let before_last = self.chunks.len().saturating_sub(1) * CHUNK_ENTRIES;
        if let Some(last) = self.chunks.back_mut() {
            last.truncate(position - before_last);
        }
        self.len = keep;
    }

    /// Drops the first `count` entries; returns the chunks that hold only dropped entries,
    /// for the caller to free when it suits it.
    fn drop_front(&mut self, count: usize) -> Vec<Vec<Entry>> {
        let count = count.min(self.len);
        self.front += count;
        self.len -= count;
        let mut freed = Vec::new();
        while self.front >= CHUNK_ENTRIES {
            match self.chunks.pop_front() {
                Some(chunk) => freed.push(chunk),
                None => break,
            }
            self.front -= CHUNK_ENTRIES;
        }
        if self.len == 0 {
            freed.extend(self.chunks.drain(..));
            self.front = 0;
        }
        freed
    }
}

#[derive(Debug, Default)]
struct Inner {
    hard_state: HardState,
    conf_state: ConfState,
    /// Index of the last entry not held (the compaction point).
    compacted_index: u64,
    /// Term of that entry.
    compacted_term: u64,
    /// Entries `compacted_index + 1 ..`, contiguous.
    entries: Entries,
    /// The checkpoint offered as a snapshot.
    checkpoint: Option<CheckpointInfo>,
    /// Set when raft asked for a snapshot the newest checkpoint cannot be (it predates the
    /// member it is for, or the index asked): a new checkpoint is due at once.
    snapshot_wanted: bool,
}

impl Inner {
    fn last_index(&self) -> u64 {
        self.compacted_index + self.entries.len() as u64
    }

    /// Drops the entries through index `through` that the log holds and moves the compaction
    /// point after the last of them; returns the chunks left holding only dropped entries.
    fn compact_through(&mut self, through: u64) -> Vec<Vec<Entry>> {
        if through <= self.compacted_index {
            return Vec::new();
        }
        let count = (through - self.compacted_index).min(self.entries.len() as u64) as usize;
        if count == 0 {
            return Vec::new();
        }
        let last_dropped = self
            .entries
            .get(count - 1)
            .map(|e| (e.index, e.term))
            .expect("within the log");
        let freed = self.entries.drop_front(count);
        (self.compacted_index, self.compacted_term) = last_dropped;
        freed
    }
}

/// The in-memory raft log. Clones share the same log: raft-rs owns one (inside `RawNode`),
/// the node keeps another to append and compact.
#[derive(Clone, Debug, Default)]
pub struct LogStore {
    inner: Rc<RefCell<Inner>>,
}

impl LogStore {
    /// A log that starts after (`compacted_index`, `compacted_term`) with `conf_state`.
    pub fn new(
        compacted_index: u64,
        compacted_term: u64,
        conf_state: ConfState,
        hard_state: HardState,
    ) -> LogStore {
        let store = LogStore::default();
        {
            let mut inner = store.inner.borrow_mut();
            inner.compacted_index = compacted_index;
            inner.compacted_term = compacted_term;
            inner.conf_state = conf_state;
            inner.hard_state = hard_state;
        }
        store
    }

    /// Appends `entries`. An entry at an index the log already holds replaces that entry and
    /// everything after it (a new leader overwriting uncommitted entries).
    ///
    /// # Panics
    ///
    /// Panics when the entries would leave a gap, or would replace committed entries: raft
    /// never asks for either, so it is a bug that must not reach the disk.
    pub fn append(&self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let mut inner = self.inner.borrow_mut();
        assert!(
            first.index > inner.hard_state.commit,
            "append at {} would replace committed entries (commit {})",
            first.index,
            inner.hard_state.commit
        );
        assert!(
            first.index <= inner.last_index() + 1 && first.index > inner.compacted_index,
            "append at {} leaves a gap after {} (compacted through {})",
            first.index,
            inner.last_index(),
            inner.compacted_index
        );
        let keep = (first.index - inner.compacted_index - 1) as usize;
        inner.entries.truncate(keep);
        for (expected, entry) in (first.index..).zip(entries) {
            debug_assert_eq!(
                entry.index, expected,
                "entries to append are not contiguous"
            );
            inner.entries.push(entry.clone());
        }
    }

    /// Sets the hard state (after it was written to the WAL, or to record a commit index).
    pub fn set_hard_state(&self, state: HardState) {
        self.inner.borrow_mut().hard_state = state;
    }

    /// The hard state.
    pub fn hard_state(&self) -> HardState {
        self.inner.borrow().hard_state.clone()
    }

    /// Sets the configuration.
    pub fn set_conf_state(&self, conf_state: ConfState) {
        self.inner.borrow_mut().conf_state = conf_state;
    }

    /// The configuration.
    pub fn conf_state(&self) -> ConfState {
        self.inner.borrow().conf_state.clone()
    }

    /// True when the configuration is `id` alone: the only voter, with no learner and no
    /// joint configuration (read in place, without copying the configuration).
    pub fn is_only_member(&self, id: u64) -> bool {
        let inner = self.inner.borrow();
        let conf = &inner.conf_state;
        conf.voters == [id]
            && conf.learners.is_empty()
            && conf.voters_outgoing.is_empty()
            && conf.learners_next.is_empty()
    }

    /// Records the newest checkpoint, offered to followers that need a snapshot, and drops
    /// entries more than `catch_up_entries` before it.
    ///
    /// Returns the dropped entries' chunks: freeing a million entries at once would stall the
    /// caller, which frees them a few chunks at a time instead.
    pub fn set_checkpoint(
        &self,
        checkpoint: CheckpointInfo,
        catch_up_entries: u64,
    ) -> Vec<Vec<Entry>> {
        let mut inner = self.inner.borrow_mut();
        let freed = inner.compact_through(checkpoint.index.saturating_sub(catch_up_entries));
        inner.checkpoint = Some(checkpoint);
        inner.snapshot_wanted = false;
        freed
    }

    /// Drops entries through index `through` (the caller's applied and durable index less the
    /// catch-up window) and moves the compaction point after them (a chunk is freed once all
    /// its entries are dropped). A follower that then needs a dropped entry is sent a
    /// checkpoint; one older than the compaction point is not offered
    /// ([`raft::Storage::snapshot`] asks for a new one). Returns the dropped chunks, for the
    /// caller to free when it suits it.
    pub fn trim_through(&self, through: u64) -> Vec<Vec<Entry>> {
        self.inner.borrow_mut().compact_through(through)
    }

    /// Restarts the log after an installed snapshot: every entry is dropped and the log
    /// continues after (`index`, `term`).
    pub fn restart_after(&self, checkpoint: CheckpointInfo) {
        let mut inner = self.inner.borrow_mut();
        inner.entries = Entries::default();
        inner.compacted_index = checkpoint.index;
        inner.compacted_term = checkpoint.term;
        inner.conf_state = checkpoint.conf_state.clone();
        if inner.hard_state.commit < checkpoint.index {
            inner.hard_state.commit = checkpoint.index;
        }
        inner.checkpoint = Some(checkpoint);
    }

    /// Index of the last entry.
    pub fn last_index(&self) -> u64 {
        self.inner.borrow().last_index()
    }

    /// Index of the first entry held.
    pub fn first_index(&self) -> u64 {
        self.inner.borrow().compacted_index + 1
    }

    /// True when raft asked for a snapshot that needs a newer checkpoint than the newest.
    pub fn snapshot_wanted(&self) -> bool {
        self.inner.borrow().snapshot_wanted
    }

    /// The entries in `low..=high` that the log holds.
    pub fn entries_between(&self, low: u64, high: u64) -> Vec<Entry> {
        let inner = self.inner.borrow();
        inner
            .entries
            .iter()
            .filter(|e| e.index >= low && e.index <= high)
            .cloned()
            .collect()
    }
}

impl raft::Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let inner = self.inner.borrow();
        Ok(RaftState {
            hard_state: inner.hard_state.clone(),
            conf_state: inner.conf_state.clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let inner = self.inner.borrow();
        if low <= inner.compacted_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > inner.last_index() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max_size = max_size.into().unwrap_or(u64::MAX);
        let mut out = Vec::new();
        let mut size = 0u64;
        for index in low..high {
            let entry = inner
                .entries
                .get((index - inner.compacted_index - 1) as usize)
                .ok_or(raft::Error::Store(StorageError::Unavailable))?;
            size += protobuf::Message::compute_size(entry) as u64;
            // At least one entry, then as many as fit.
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(entry.clone());
        }
        Ok(out)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        let inner = self.inner.borrow();
        if index == inner.compacted_index {
            return Ok(inner.compacted_term);
        }
        if index < inner.compacted_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if index > inner.last_index() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        inner
            .entries
            .get((index - inner.compacted_index - 1) as usize)
            .map(|e| e.term)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.inner.borrow().compacted_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.inner.borrow().last_index())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        // The snapshot's data stays empty: the checkpoint file of its index travels over the
        // peer Snapshot stream (see the transport), not inside the raft message.
        let mut inner = self.inner.borrow_mut();
        // A member added after the newest checkpoint is not in its configuration, and raft
        // refuses a snapshot that does not name it; a checkpoint older than the compaction
        // point (entries dropped between checkpoints) would leave the follower needing the
        // dropped entries after it: ask for a new checkpoint (raft asks again).
        let compacted_index = inner.compacted_index;
        let usable = inner.checkpoint.as_ref().is_some_and(|c| {
            c.index > 0
                && c.index >= compacted_index
                && c.index >= request_index
                && (c.conf_state.voters.contains(&to) || c.conf_state.learners.contains(&to))
        });
        if !usable {
            inner.snapshot_wanted = true;
        }
        match &inner.checkpoint {
            Some(checkpoint) if usable => {
                let mut snapshot = Snapshot::default();
                let meta = snapshot.mut_metadata();
                meta.index = checkpoint.index;
                meta.term = checkpoint.term;
                meta.set_conf_state(checkpoint.conf_state.clone());
                Ok(snapshot)
            }
            _ => Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use raft::Storage;

    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    #[test]
    fn append_replaces_a_conflicting_tail() {
        let log = LogStore::new(0, 0, ConfState::default(), HardState::default());
        log.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        log.append(&[entry(2, 2)]);
        assert_eq!(log.last_index(), 2);
        assert_eq!(log.term(2).unwrap(), 2);
        assert_eq!(log.term(1).unwrap(), 1);
        assert!(log.term(3).is_err());
    }

    #[test]
    #[should_panic(expected = "gap")]
    fn a_gap_is_a_bug() {
        let log = LogStore::new(0, 0, ConfState::default(), HardState::default());
        log.append(&[entry(2, 1)]);
    }

    #[test]
    fn checkpoints_compact_behind_the_catch_up_window() {
        let log = LogStore::new(0, 0, ConfState::default(), HardState::default());
        let entries: Vec<Entry> = (1..=CATCH_UP_ENTRIES + 100).map(|i| entry(i, 1)).collect();
        log.append(&entries);
        assert!(log.snapshot(0, 2).is_err());
        log.set_checkpoint(
            CheckpointInfo {
                index: CATCH_UP_ENTRIES + 50,
                term: 1,
                conf_state: ConfState::from((vec![1, 2], vec![])),
            },
            CATCH_UP_ENTRIES,
        );
        assert_eq!(log.first_index(), 51);
        assert_eq!(log.term(50).unwrap(), 1);
        assert!(matches!(
            log.entries(10, 60, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert_eq!(
            log.entries(51, 61, None, GetEntriesContext::empty(false))
                .unwrap()
                .len(),
            10
        );
        let snapshot = log.snapshot(0, 2).unwrap();
        assert_eq!(snapshot.get_metadata().index, CATCH_UP_ENTRIES + 50);
        assert!(!log.snapshot_wanted());
        // A member the checkpoint's configuration does not name (added after it) cannot be
        // sent it: raft is told to wait, and a new checkpoint is wanted.
        assert!(matches!(
            log.snapshot(0, 3),
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        ));
        assert!(log.snapshot_wanted());
    }

    #[test]
    fn applied_entries_are_trimmed_and_an_older_checkpoint_is_not_offered() {
        let log = LogStore::new(0, 0, ConfState::default(), HardState::default());
        let count = 3 * CHUNK_ENTRIES as u64 + 10;
        let entries: Vec<Entry> = (1..=count).map(|i| entry(i, 1 + i / 1000)).collect();
        log.append(&entries);
        log.set_checkpoint(
            CheckpointInfo {
                index: 100,
                term: 1,
                conf_state: ConfState::from((vec![1, 2], vec![])),
            },
            CATCH_UP_ENTRIES,
        );
        assert_eq!(
            log.first_index(),
            1,
            "nothing before the catch-up window yet"
        );
        // Less than a chunk: the entries go, their chunk stays allocated.
        assert!(log.trim_through(CHUNK_ENTRIES as u64 - 1).is_empty());
        assert_eq!(log.first_index(), CHUNK_ENTRIES as u64);
        // Past two chunks: the first two are freed.
        let compacted = 2 * CHUNK_ENTRIES as u64 + 7;
        let freed = log.trim_through(compacted);
        assert_eq!(freed.len(), 2);
        assert!(freed.iter().all(|c| c.len() == CHUNK_ENTRIES));
        assert_eq!(log.first_index(), compacted + 1);
        assert_eq!(log.term(compacted).unwrap(), 1 + compacted / 1000);
        assert!(log.term(compacted - 1).is_err());
        assert_eq!(log.last_index(), count);
        assert_eq!(
            log.entries(
                compacted + 1,
                compacted + 4,
                None,
                GetEntriesContext::empty(false)
            )
            .unwrap()
            .len(),
            3
        );
        // The checkpoint at 100 predates the compaction point: a follower sent it would need
        // entries the log no longer holds, so a new checkpoint is wanted instead.
        assert!(matches!(
            log.snapshot(0, 2),
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        ));
        assert!(log.snapshot_wanted());
        log.set_checkpoint(
            CheckpointInfo {
                index: count,
                term: 1 + count / 1000,
                conf_state: ConfState::from((vec![1, 2], vec![])),
            },
            CATCH_UP_ENTRIES,
        );
        assert_eq!(log.snapshot(0, 2).unwrap().get_metadata().index, count);
        // Asking again below the compaction point changes nothing; appends go on after it.
        assert!(log.trim_through(10).is_empty());
        log.append(&[entry(count + 1, 9)]);
        assert_eq!(log.last_index(), count + 1);
    }

    /// The chunked sequence behaves as a plain deque through pushes, truncations and front
    /// drops that cross chunk boundaries.
    #[test]
    fn chunked_entries_match_a_plain_deque() {
        let mut rng = keel_engine::io::SeededRng::new(7);
        let mut chunked = Entries::default();
        let mut model: VecDeque<u64> = VecDeque::new();
        let mut next = 1u64;
        for _ in 0..2_000 {
            match rng.below(3) {
                0 => {
                    for _ in 0..rng.below(3 * CHUNK_ENTRIES as u64) {
                        chunked.push(entry(next, 1));
                        model.push_back(next);
                        next += 1;
                    }
                }
                1 => {
                    let keep = rng.below(model.len() as u64 + 1) as usize;
                    chunked.truncate(keep);
                    model.truncate(keep);
                }
                _ => {
                    let count = rng.below(model.len() as u64 + 1) as usize;
                    let freed = chunked.drop_front(count);
                    assert!(freed
                        .iter()
                        .all(|c| c.len() == CHUNK_ENTRIES || chunked.len() == 0));
                    model.drain(..count);
                }
            }
            assert_eq!(chunked.len(), model.len());
            let held: Vec<u64> = chunked.iter().map(|e| e.index).collect();
            assert_eq!(held, Vec::from(model.clone()));
        }
    }
}
