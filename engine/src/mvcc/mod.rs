//! etcd's multi-version key-value model, held in memory: the state machine the server applies
//! committed raft entries to.
//!
//! # Model
//!
//! Every write creates a *revision* `(main, sub)`: `main` counts write requests (a put, a
//! delete that deleted something, a txn with at least one write, a lease revoke that deleted
//! keys), `sub` counts the changes inside one request. An empty store is at revision 1, so the
//! first put gets revision 2, as in etcd. A key's history is a list of revisions in order;
//! a *tombstone* (deletion) ends a *generation*, and the next put starts a new one with a new
//! `create_revision` and `version` 1. Reads at an older revision see the history as it was.
//! Compaction at `C` forgets every revision that no read at `C` or later can see: per key, it
//! keeps the newest revision at or below `C` if that is a put, and everything above `C`.
//! [`Store::compact`] is the logical step (O(1)); the memory is released incrementally by
//! [`Store::compact_step`], and every answer skips what is logically gone in the meantime.
//!
//! # Layout
//!
//! * an ordered map key → history (`Vec` of revision entries, oldest first); each entry
//!   carries the key-value fields of that revision, so a read at any revision is one map
//!   lookup and one binary search (usually none: the newest entry is checked first);
//! * a revision-ordered change log `(main, sub, key)` for the watch event feed, so a
//!   catching-up watcher reads only the changes since its revision, and compaction visits only
//!   the keys changed since the previous compaction;
//! * the lease table ([`LeaseInfo`]);
//! * counters for [`Stats`].
//!
//! Keys and values are `Arc<[u8]>`: the map, the change log and the lease table share one
//! allocation per key, and `ignore_value` puts share the previous value.
//!
//! The store is deterministic: the same sequence of calls gives the same state, revisions and
//! answers on every member. Durability is the caller's: it logs commands to the WAL and saves
//! [`Store::encode_checkpoint`] from time to time.
//!
//! # Error texts
//!
//! [`MvccError`]'s `Display` is etcd's internal text; [`MvccError::grpc_message`] and
//! [`MvccError::grpc_code`] are what etcd sends to clients.

mod codec;
mod error;
mod export;
mod lease;
mod types;
mod validate;

use std::collections::{BTreeSet, VecDeque};
use std::hash::BuildHasher;
use std::ops::Bound;
use std::sync::Arc;

pub use codec::{CheckpointEncoder, PayloadEnd};
pub use error::{grpc_code, MvccError};
pub use export::{Export, Exported, ExportedLease, ExportedRevision};
pub use lease::{LeaseInfo, LEASE_TTL_MAX_SECONDS};
pub use types::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, Event,
    EventKind, HashKv, KeyValue, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseOp, SortOrder, SortTarget, Stats, TxnRequest, TxnResponse,
};
pub use validate::{
    check_delete_request, check_put_request, check_range_request, check_txn_request,
    TXN_OPS_MAX_DEFAULT,
};

use lease::{LeaseEntry, LeaseTable};

/// Shared immutable bytes (keys and values).
type Bytes = Arc<[u8]>;

/// Hasher of the key index. Seeded per process: the index is never iterated in hash order,
/// so the seed cannot make members diverge.
type KeyHasher = foldhash::fast::RandomState;

/// Bytes counted per held revision on top of its key and value in [`Stats::approximate_bytes`]:
/// the index entry, the change-log entry and allocator headers, rounded.
pub const REVISION_OVERHEAD_BYTES: u64 = 96;

/// The revision of an empty store (etcd starts at 1; the first write gets 2).
pub const INITIAL_REVISION: i64 = 1;

/// One revision of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RevisionEntry {
    pub(crate) main: i64,
    pub(crate) sub: u32,
    /// 0 for a tombstone.
    pub(crate) create_revision: i64,
    /// 0 for a tombstone.
    pub(crate) version: i64,
    /// 0 for a tombstone or no lease.
    pub(crate) lease: i64,
    /// `None` marks a tombstone.
    pub(crate) value: Option<Bytes>,
}

impl RevisionEntry {
    fn is_put(&self) -> bool {
        self.value.is_some()
    }

    fn value_len(&self) -> usize {
        self.value.as_ref().map_or(0, |v| v.len())
    }

    fn to_key_value(&self, key: &[u8], with_value: bool) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            create_revision: self.create_revision,
            mod_revision: self.main,
            version: self.version,
            value: match (&self.value, with_value) {
                (Some(v), true) => v.to_vec(),
                _ => Vec::new(),
            },
            lease: self.lease,
        }
    }
}

/// The key's live entry as of `revision`, if the key existed then.
fn live_at(history: &[RevisionEntry], revision: i64) -> Option<&RevisionEntry> {
    let last = history.last()?;
    let entry = if last.main <= revision {
        last
    } else {
        let after = history.partition_point(|e| e.main <= revision);
        history.get(after.checked_sub(1)?)?
    };
    entry.is_put().then_some(entry)
}

/// Key → history hash table. A `HashTable` rather than a `HashMap` so that one lookup yields
/// the stored `Arc` key together with a mutable history, and so that a checkpoint load can
/// insert with the hash it computed while the key bytes were hot in cache.
#[derive(Clone, Debug)]
pub(crate) struct KeyIndex {
    table: hashbrown::HashTable<(Bytes, Vec<RevisionEntry>)>,
    hasher: KeyHasher,
}

impl KeyIndex {
    pub(crate) fn with_capacity(capacity: usize) -> KeyIndex {
        KeyIndex {
            table: hashbrown::HashTable::with_capacity(capacity),
            hasher: KeyHasher::default(),
        }
    }

    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn get(&self, key: &[u8]) -> Option<&(Bytes, Vec<RevisionEntry>)> {
        self.table.find(self.hash(key), |(k, _)| **k == *key)
    }

    fn get_mut(&mut self, key: &[u8]) -> Option<&mut (Bytes, Vec<RevisionEntry>)> {
        let hash = self.hash(key);
        self.table.find_mut(hash, |(k, _)| **k == *key)
    }

    /// Inserts a key that is not in the table yet, with `hash == self.hash(&key)`.
    pub(crate) fn insert_new(&mut self, hash: u64, key: Bytes, history: Vec<RevisionEntry>) {
        debug_assert_eq!(hash, self.hash(&key));
        let hasher = &self.hasher;
        self.table
            .insert_unique(hash, (key, history), |(k, _)| hasher.hash_one(&**k));
    }

    fn remove(&mut self, key: &[u8]) {
        let hash = self.hash(key);
        if let Ok(entry) = self.table.find_entry(hash, |(k, _)| **k == *key) {
            entry.remove();
        }
    }
}

/// One change in the revision-ordered log.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    pub(crate) main: i64,
    pub(crate) sub: u32,
    pub(crate) key: Bytes,
}

/// A key selection (`key` + `range_end`, see [`RangeRequest`]).
#[derive(Clone, Copy, Debug)]
enum KeyRange<'a> {
    Single(&'a [u8]),
    From(&'a [u8]),
    Between(&'a [u8], &'a [u8]),
}

impl<'a> KeyRange<'a> {
    fn new(key: &'a [u8], range_end: &'a [u8]) -> KeyRange<'a> {
        match range_end {
            [] => KeyRange::Single(key),
            [0] => KeyRange::From(key),
            end => KeyRange::Between(key, end),
        }
    }

    fn contains(&self, candidate: &[u8]) -> bool {
        match *self {
            KeyRange::Single(key) => candidate == key,
            KeyRange::From(key) => candidate >= key,
            KeyRange::Between(key, end) => candidate >= key && candidate < end,
        }
    }
}

/// The revision a write request or txn is building.
struct WriteTxn {
    /// The main revision all of this txn's changes get.
    main: i64,
    /// Changes made so far (the next change's sub-revision).
    sub: u32,
}

impl WriteTxn {
    /// The revision reads inside the txn see: the txn's own writes once it has any (etcd's
    /// read-your-writes inside a txn), else the store before the txn.
    fn read_revision(&self) -> i64 {
        if self.sub > 0 {
            self.main
        } else {
            self.main - 1
        }
    }
}

/// What a lease revoke did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRevoke {
    /// One delete event per key the lease held, in key order, all in one revision.
    pub events: Vec<Event>,
    /// The store revision after the revoke (unchanged when the lease held no keys).
    pub revision: i64,
}

/// The MVCC store. See the [module docs](self).
#[derive(Debug)]
pub struct Store {
    /// Key → history, for point access without ordered-key comparisons.
    index: KeyIndex,
    /// Every key of `index`, in order, for ranges (the same `Arc`s).
    order: BTreeSet<Bytes>,
    changes: VecDeque<Change>,
    current_revision: i64,
    /// -1 until the first compaction, as in etcd. The logical compact revision: physical
    /// work towards it may be pending (see [`Store::compact_step`]).
    compact_revision: i64,
    /// How many entries at the front of `changes` compaction has visited without releasing
    /// them (they were at the compact revision when visited).
    compacted_front: usize,
    /// Obsolete revisions already cut out of their histories, waiting to be freed by
    /// [`Store::compact_step`] (with their key's length, for the stats).
    released: Vec<(usize, Vec<RevisionEntry>)>,
    leases: LeaseTable,
    stats: Stats,
    /// Checkpoint encoders working from this store ([`Store::begin_checkpoint`]): physical
    /// compaction waits while there are any.
    checkpoint_pins: u32,
    /// Tells this store from one that replaced it (a new store, a decoded checkpoint), so an
    /// encoder is never stepped on a store it did not begin on.
    instance: u64,
}

/// Source of [`Store`] instance numbers.
static STORE_INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub(crate) fn next_store_instance() -> u64 {
    STORE_INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Clone for Store {
    /// A copy of the state: a store of its own, which no checkpoint encoder has begun on.
    fn clone(&self) -> Store {
        Store {
            index: self.index.clone(),
            order: self.order.clone(),
            changes: self.changes.clone(),
            current_revision: self.current_revision,
            compact_revision: self.compact_revision,
            compacted_front: self.compacted_front,
            released: self.released.clone(),
            leases: self.leases.clone(),
            stats: self.stats,
            checkpoint_pins: 0,
            instance: next_store_instance(),
        }
    }
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

/// The branch of `request` that `path` (from `compare_path`) says was taken, as position
/// `*position` of the depth-first walk, which this advances: whether the compares succeeded,
/// and the ops of that branch.
fn taken_branch<'a>(
    request: &'a TxnRequest,
    path: &[bool],
    position: &mut usize,
) -> (bool, &'a [RequestOp]) {
    let succeeded = path.get(*position).copied().unwrap_or(false);
    *position += 1;
    let ops = if succeeded {
        &request.success
    } else {
        &request.failure
    };
    (succeeded, ops)
}

impl Store {
    /// An empty store at revision [`INITIAL_REVISION`], never compacted.
    pub fn new() -> Store {
        Store {
            index: KeyIndex::with_capacity(0),
            order: BTreeSet::new(),
            changes: VecDeque::new(),
            current_revision: INITIAL_REVISION,
            compact_revision: -1,
            compacted_front: 0,
            released: Vec::new(),
            leases: LeaseTable::default(),
            stats: Stats::default(),
            checkpoint_pins: 0,
            instance: next_store_instance(),
        }
    }

    /// The revision of the last write (etcd's header revision for reads).
    pub fn current_revision(&self) -> i64 {
        self.current_revision
    }

    /// The revision of the last compaction, -1 if none. Reads below it fail with
    /// [`MvccError::Compacted`]; a watch may start at it but not below.
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    /// Sizes of the store, kept up to date on every write (O(1)). `live_keys` is always
    /// exact; `total_revisions` and `approximate_bytes` lag behind a compaction until
    /// [`Store::compact_step`] has finished its physical work (they count what is still held
    /// in memory, which is what a quota should see).
    pub fn stats(&self) -> Stats {
        self.stats
    }

    // ----- reads -------------------------------------------------------------------------

    /// A top-level Range. Errors: [`MvccError::EmptyKey`], [`MvccError::FutureRevision`] (the
    /// revision is above the current one), [`MvccError::Compacted`] (below the compact
    /// revision; reading *at* it works).
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, MvccError> {
        check_range_request(request)?;
        self.execute_range(request, self.current_revision)
    }

    /// Calls `visit` for every key in the selection that is live at `revision`, in key order,
    /// until it returns false.
    fn visit_live<'s>(
        &'s self,
        range: KeyRange<'_>,
        revision: i64,
        mut visit: impl FnMut(&'s Bytes, &'s RevisionEntry) -> bool,
    ) {
        let mut each = |(key, history): (&'s Bytes, &'s Vec<RevisionEntry>)| match live_at(
            history, revision,
        ) {
            Some(entry) => visit(key, entry),
            None => true,
        };
        match range {
            KeyRange::Single(key) => {
                if let Some((found, history)) = self.index.get(key) {
                    each((found, history));
                }
            }
            KeyRange::From(key) => {
                for found in self
                    .order
                    .range::<[u8], _>((Bound::Included(key), Bound::Unbounded))
                {
                    if let Some((_, history)) = self.index.get(found) {
                        if !each((found, history)) {
                            break;
                        }
                    }
                }
            }
            KeyRange::Between(key, end) => {
                // BTreeMap::range panics on an inverted interval; etcd treats it as empty.
                if end <= key {
                    return;
                }
                for found in self
                    .order
                    .range::<[u8], _>((Bound::Included(key), Bound::Excluded(end)))
                {
                    if let Some((_, history)) = self.index.get(found) {
                        if !each((found, history)) {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// etcd's `executeRange` over a view whose current revision is `view_revision`.
    fn execute_range(
        &self,
        request: &RangeRequest,
        view_revision: i64,
    ) -> Result<RangeResponse, MvccError> {
        if request.revision > view_revision {
            return Err(MvccError::FutureRevision);
        }
        let revision = if request.revision <= 0 {
            view_revision
        } else {
            request.revision
        };
        if revision < self.compact_revision {
            return Err(MvccError::Compacted);
        }
        let range = KeyRange::new(&request.key, &request.range_end);
        let mut count: i64 = 0;
        if request.count_only {
            self.visit_live(range, revision, |_, _| {
                count += 1;
                true
            });
            return Ok(RangeResponse {
                kvs: Vec::new(),
                more: false,
                count,
                revision: view_revision,
            });
        }
        let filtered = request.min_mod_revision != 0
            || request.max_mod_revision != 0
            || request.min_create_revision != 0
            || request.max_create_revision != 0;
        // Like etcd: sorting or filtering needs every key; otherwise one more than the limit
        // tells whether there is more.
        let fetch_limit = if request.sort_order != SortOrder::None || filtered || request.limit <= 0
        {
            usize::MAX
        } else {
            usize::try_from(request.limit)
                .unwrap_or(usize::MAX)
                .saturating_add(1)
        };
        // etcd's effective order: results come in ascending key order, so KEY+ASCEND needs
        // no sort, and any other target with order NONE sorts ascending.
        let order = match (request.sort_target, request.sort_order) {
            (SortTarget::Key, SortOrder::Ascend) => SortOrder::None,
            (SortTarget::Key, order) => order,
            (_, SortOrder::None) => SortOrder::Ascend,
            (_, order) => order,
        };
        // etcd strips values for `keys_only` after sorting, so a value sort still sees them.
        let sort_by_value = order != SortOrder::None && request.sort_target == SortTarget::Value;
        let with_value = !request.keys_only || sort_by_value;
        let mut kvs: Vec<KeyValue> = Vec::new();
        self.visit_live(range, revision, |key, entry| {
            count += 1;
            if kvs.len() < fetch_limit {
                kvs.push(entry.to_key_value(key, with_value));
            }
            true
        });
        if filtered {
            kvs.retain(|kv| {
                !(request.max_mod_revision != 0 && kv.mod_revision > request.max_mod_revision
                    || request.min_mod_revision != 0 && kv.mod_revision < request.min_mod_revision
                    || request.max_create_revision != 0
                        && kv.create_revision > request.max_create_revision
                    || request.min_create_revision != 0
                        && kv.create_revision < request.min_create_revision)
            });
        }
        if order != SortOrder::None {
            sort_kvs(&mut kvs, request.sort_target, order);
        }
        if request.keys_only && with_value {
            for kv in &mut kvs {
                kv.value = Vec::new();
            }
        }
        let mut more = false;
        if request.limit > 0 {
            let limit = usize::try_from(request.limit).unwrap_or(usize::MAX);
            if kvs.len() > limit {
                kvs.truncate(limit);
                more = true;
            }
        }
        Ok(RangeResponse {
            kvs,
            more,
            count,
            revision: view_revision,
        })
    }

    /// Whether `compare` holds at `revision` (etcd's `applyCompare`).
    fn compare_holds(&self, compare: &Compare, revision: i64) -> bool {
        let range = KeyRange::new(&compare.key, &compare.range_end);
        let mut any = false;
        let mut all = true;
        self.visit_live(range, revision, |_, entry| {
            any = true;
            all = compare_entry(compare, Some(entry));
            all
        });
        if !any {
            // A value compare on missing keys always fails (etcd: there is no way to tell a
            // missing value from an empty one); the others compare against zeros.
            return !matches!(compare.target, CompareTarget::Value(_))
                && compare_entry(compare, None);
        }
        all
    }

    // ----- writes ------------------------------------------------------------------------

    fn begin_write(&self) -> WriteTxn {
        WriteTxn {
            main: self.current_revision + 1,
            sub: 0,
        }
    }

    fn end_write(&mut self, write: &WriteTxn) -> i64 {
        if write.sub > 0 {
            debug_assert!(write.main > self.current_revision);
            self.current_revision = write.main;
        }
        self.current_revision
    }

    /// Appends a put of `key` to the current write txn (etcd's `storeTxnWrite.put`).
    fn write_put(&mut self, write: &mut WriteTxn, key: &[u8], value: Bytes, lease: i64) {
        let main = write.main;
        let sub = write.sub;
        let value_len = value.len() as u64;
        let (key, old_lease, was_live) = match self.index.get_mut(key) {
            Some((stored_key, history)) => {
                let stored_key = Arc::clone(stored_key);
                let previous = history.last().filter(|e| e.is_put());
                let (create_revision, version, old_lease) = match previous {
                    Some(p) => (p.create_revision, p.version + 1, p.lease),
                    None => (main, 1, 0),
                };
                let was_live = previous.is_some();
                history.push(RevisionEntry {
                    main,
                    sub,
                    create_revision,
                    version,
                    lease,
                    value: Some(value),
                });
                (stored_key, old_lease, was_live)
            }
            None => {
                let stored_key: Bytes = Arc::from(key);
                self.order.insert(Arc::clone(&stored_key));
                self.index.insert_new(
                    self.index.hash(key),
                    Arc::clone(&stored_key),
                    vec![RevisionEntry {
                        main,
                        sub,
                        create_revision: main,
                        version: 1,
                        lease,
                        value: Some(value),
                    }],
                );
                (stored_key, 0, false)
            }
        };
        if !was_live {
            self.stats.live_keys += 1;
        }
        self.stats.total_revisions += 1;
        self.stats.approximate_bytes += key.len() as u64 + value_len + REVISION_OVERHEAD_BYTES;
        if old_lease != lease {
            if old_lease != 0 {
                self.leases.detach(old_lease, &key);
            }
            if lease != 0 {
                self.leases.attach(lease, &key);
            }
        }
        self.changes.push_back(Change { main, sub, key });
        write.sub += 1;
    }

    /// Appends a tombstone for the live key `key` to the current write txn.
    fn write_delete(&mut self, write: &mut WriteTxn, key: &Bytes) {
        let Some((_, history)) = self.index.get_mut(key) else {
            debug_assert!(false, "delete of a key that is not in the index");
            return;
        };
        let old_lease = history.last().map_or(0, |e| e.lease);
        history.push(RevisionEntry {
            main: write.main,
            sub: write.sub,
            create_revision: 0,
            version: 0,
            lease: 0,
            value: None,
        });
        self.stats.live_keys = self.stats.live_keys.saturating_sub(1);
        self.stats.total_revisions += 1;
        self.stats.approximate_bytes += key.len() as u64 + REVISION_OVERHEAD_BYTES;
        if old_lease != 0 {
            self.leases.detach(old_lease, key);
        }
        self.changes.push_back(Change {
            main: write.main,
            sub: write.sub,
            key: Arc::clone(key),
        });
        write.sub += 1;
    }

    /// A top-level Put. Errors, checked in etcd's order before any change:
    /// [`MvccError::EmptyKey`], [`MvccError::ValueProvided`], [`MvccError::LeaseProvided`],
    /// [`MvccError::LeaseNotFound`] (the lease does not exist), [`MvccError::KeyNotFound`]
    /// (`ignore_value`/`ignore_lease` on a missing key). A put always creates a revision.
    pub fn put(&mut self, request: &PutRequest) -> Result<PutResponse, MvccError> {
        check_put_request(request)?;
        self.check_put_preconditions(request, self.current_revision)?;
        let mut write = self.begin_write();
        let response = self.execute_put(request, &mut write);
        self.end_write(&write);
        Ok(response)
    }

    /// The checks etcd makes against the store before running a put (`checkRequestPut`).
    fn check_put_preconditions(
        &self,
        request: &PutRequest,
        revision: i64,
    ) -> Result<(), MvccError> {
        if request.lease != 0 && !self.leases.contains(request.lease) {
            return Err(MvccError::LeaseNotFound);
        }
        if (request.ignore_value || request.ignore_lease)
            && self.live(&request.key, revision).is_none()
        {
            return Err(MvccError::KeyNotFound);
        }
        Ok(())
    }

    fn live(&self, key: &[u8], revision: i64) -> Option<&RevisionEntry> {
        self.index.get(key).and_then(|(_, h)| live_at(h, revision))
    }

    /// Runs a checked put inside `write` (etcd's `put` in `txn.go`).
    fn execute_put(&mut self, request: &PutRequest, write: &mut WriteTxn) -> PutResponse {
        let previous = self.live(&request.key, write.read_revision());
        let prev_kv = if request.prev_kv {
            previous.map(|e| e.to_key_value(&request.key, true))
        } else {
            None
        };
        let (value, lease) = match previous {
            Some(p) => (
                match (&p.value, request.ignore_value) {
                    (Some(v), true) => Arc::clone(v),
                    _ => Bytes::from(request.value.as_slice()),
                },
                if request.ignore_lease {
                    p.lease
                } else {
                    request.lease
                },
            ),
            // The pre-checks ensure a missing key never carries `ignore_*` here (a txn that
            // deletes the key first is refused as a duplicate key); without them this would
            // store the request's own (empty) value and lease, deterministically.
            None => (Bytes::from(request.value.as_slice()), request.lease),
        };
        self.write_put(write, &request.key, value, lease);
        PutResponse {
            prev_kv,
            revision: write.main,
        }
    }

    /// A top-level DeleteRange. Deleting nothing does not create a revision (the response
    /// then carries the unchanged current revision). Errors: [`MvccError::EmptyKey`].
    pub fn delete_range(
        &mut self,
        request: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, MvccError> {
        check_delete_request(request)?;
        let mut write = self.begin_write();
        let response = self.execute_delete(request, &mut write);
        self.end_write(&write);
        Ok(response)
    }

    fn execute_delete(
        &mut self,
        request: &DeleteRangeRequest,
        write: &mut WriteTxn,
    ) -> DeleteRangeResponse {
        let range = KeyRange::new(&request.key, &request.range_end);
        let mut keys: Vec<Bytes> = Vec::new();
        let mut prev_kvs = Vec::new();
        self.visit_live(range, write.read_revision(), |key, entry| {
            keys.push(Arc::clone(key));
            if request.prev_kv {
                prev_kvs.push(entry.to_key_value(key, true));
            }
            true
        });
        for key in &keys {
            self.write_delete(write, key);
        }
        DeleteRangeResponse {
            deleted: keys.len() as i64,
            prev_kvs,
            revision: if write.sub > 0 {
                write.main
            } else {
                write.main - 1
            },
        }
    }

    /// A top-level Txn.
    ///
    /// Runs etcd's sequence: the request checks of [`check_txn_request`] (without the
    /// op-count limit); every compare of the txn and of the nested txns on the chosen path,
    /// against the store before the txn; then, along the chosen path, the put checks
    /// ([`MvccError::LeaseNotFound`], [`MvccError::KeyNotFound`]) and after them the range
    /// revision checks ([`MvccError::FutureRevision`], [`MvccError::Compacted`]), each pass
    /// visiting the ops in the order they run, so the first bad op's error is the answer, as in
    /// etcd's `checkRequests`. Any error leaves the store untouched. Then the operations run
    /// in order; all writes share one new main revision with sub-revisions in execution
    /// order, and reads see the txn's earlier writes. A txn without changes creates no
    /// revision.
    pub fn txn(&mut self, request: &TxnRequest) -> Result<TxnResponse, MvccError> {
        check_txn_request(request, usize::MAX)?;
        let before = self.current_revision;
        let mut path = Vec::new();
        self.compare_path(request, before, &mut path);
        self.check_path(request, &path, &mut 0, &mut |store, op| match op {
            RequestOp::Put(put) => store.check_put_preconditions(put, before),
            _ => Ok(()),
        })?;
        self.check_path(request, &path, &mut 0, &mut |store, op| match op {
            RequestOp::Range(range) => store.check_range_revision(range, before),
            _ => Ok(()),
        })?;
        let mut write = self.begin_write();
        let mut response = self.execute_txn(request, &path, &mut 0, &mut write);
        response.revision = self.end_write(&write);
        Ok(response)
    }

    /// A txn answered without changing the store, from `&self`, so that a server can serve
    /// it under a read lock: the same checks and the same answer as [`Store::txn`] gives it.
    /// `Ok(None)` when the branch its compares choose holds a put or a delete: such a txn must
    /// go through [`Store::txn`] (and, in a server, through the log).
    pub fn txn_read_only(&self, request: &TxnRequest) -> Result<Option<TxnResponse>, MvccError> {
        check_txn_request(request, usize::MAX)?;
        let revision = self.current_revision;
        let mut path = Vec::new();
        self.compare_path(request, revision, &mut path);
        let mut writes = false;
        self.check_path(request, &path, &mut 0, &mut |_, op| {
            writes |= matches!(op, RequestOp::Put(_) | RequestOp::DeleteRange(_));
            Ok(())
        })?;
        if writes {
            return Ok(None);
        }
        self.check_path(request, &path, &mut 0, &mut |store, op| match op {
            RequestOp::Range(range) => store.check_range_revision(range, revision),
            _ => Ok(()),
        })?;
        let mut response = self.read_txn(request, &path, &mut 0, revision);
        response.revision = revision;
        Ok(Some(response))
    }

    /// [`Store::execute_txn`] for a path that only reads.
    fn read_txn(
        &self,
        request: &TxnRequest,
        path: &[bool],
        position: &mut usize,
        revision: i64,
    ) -> TxnResponse {
        let (succeeded, ops) = taken_branch(request, path, position);
        let responses = ops
            .iter()
            .map(|op| match op {
                RequestOp::Range(range) => {
                    let answer = self.execute_range(range, revision);
                    debug_assert!(answer.is_ok(), "checked range failed inside a txn");
                    ResponseOp::Range(answer.unwrap_or_default())
                }
                RequestOp::Txn(nested) => {
                    ResponseOp::Txn(self.read_txn(nested, path, position, revision))
                }
                RequestOp::Put(_) | RequestOp::DeleteRange(_) => {
                    unreachable!("txn_read_only checked that the path only reads")
                }
            })
            .collect();
        TxnResponse {
            succeeded,
            responses,
            revision: 0,
        }
    }

    /// etcd's `checkRequestRange`.
    fn check_range_revision(&self, request: &RangeRequest, revision: i64) -> Result<(), MvccError> {
        if request.revision == 0 {
            Ok(())
        } else if request.revision > revision {
            Err(MvccError::FutureRevision)
        } else if request.revision < self.compact_revision {
            Err(MvccError::Compacted)
        } else {
            Ok(())
        }
    }

    /// etcd's `compareToPath`: the branch taken by this txn and, depth first in op order, by
    /// every nested txn on the taken branches.
    fn compare_path(&self, request: &TxnRequest, revision: i64, path: &mut Vec<bool>) {
        let succeeded = request
            .compare
            .iter()
            .all(|c| self.compare_holds(c, revision));
        path.push(succeeded);
        let ops = if succeeded {
            &request.success
        } else {
            &request.failure
        };
        for op in ops {
            if let RequestOp::Txn(nested) = op {
                self.compare_path(nested, revision, path);
            }
        }
    }

    /// Calls `check` on every non-txn op along `path`, in the order the ops run: a nested
    /// txn's ops are checked where the nested txn stands among its parent's ops, before the
    /// parent's later ops. The first error wins. This is etcd's `checkRequests`
    /// (server/etcdserver/apply.go in etcd 3.5), and it decides which error a txn with
    /// several bad ops gets, e.g. `FutureRevision` from a nested txn's Range before
    /// `Compacted` from a later Range of the outer txn.
    fn check_path(
        &self,
        request: &TxnRequest,
        path: &[bool],
        position: &mut usize,
        check: &mut dyn FnMut(&Store, &RequestOp) -> Result<(), MvccError>,
    ) -> Result<(), MvccError> {
        let (_, ops) = taken_branch(request, path, position);
        for op in ops {
            match op {
                RequestOp::Txn(nested) => self.check_path(nested, path, position, check)?,
                other => check(self, other)?,
            }
        }
        Ok(())
    }

    fn execute_txn(
        &mut self,
        request: &TxnRequest,
        path: &[bool],
        position: &mut usize,
        write: &mut WriteTxn,
    ) -> TxnResponse {
        let (succeeded, ops) = taken_branch(request, path, position);
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match op {
                RequestOp::Range(range) => {
                    // The revision checks ran before the txn against an older or equal view,
                    // so this cannot fail; an empty answer keeps the state machine total.
                    let answer = self.execute_range(range, write.read_revision());
                    debug_assert!(answer.is_ok(), "checked range failed inside a txn");
                    ResponseOp::Range(answer.unwrap_or_default())
                }
                RequestOp::Put(put) => ResponseOp::Put(self.execute_put(put, write)),
                RequestOp::DeleteRange(delete) => {
                    ResponseOp::DeleteRange(self.execute_delete(delete, write))
                }
                RequestOp::Txn(nested) => {
                    ResponseOp::Txn(self.execute_txn(nested, path, position, write))
                }
            };
            responses.push(response);
        }
        TxnResponse {
            succeeded,
            responses,
            revision: 0,
        }
    }

    // ----- compaction ----------------------------------------------------------------------

    /// Compacts the history at `revision`: afterwards reads below `revision` fail with
    /// [`MvccError::Compacted`], reads at or above it answer as before. Per key, the newest
    /// revision at or below `revision` is kept if it is a put and dropped if it is a
    /// tombstone; older revisions are dropped.
    ///
    /// This is the logical step only, and costs O(1): it moves the compact revision and leaves
    /// the physical dropping to [`Store::compact_step`], so that a server applying writes on
    /// one core never stalls for a whole compaction. Every answer of the store (reads, events,
    /// txns, [`Store::hash_kv`], [`Store::encode_checkpoint`]) is already the compacted one
    /// when this returns; only [`Store::stats`] and memory lag until the work is done.
    /// Compacting again while work is pending is fine: the work then targets the newest
    /// compact revision.
    ///
    /// Errors: [`MvccError::Compacted`] if `revision` is not above the compact revision,
    /// [`MvccError::FutureRevision`] if it is above the current revision.
    pub fn compact(&mut self, revision: i64) -> Result<(), MvccError> {
        if revision <= self.compact_revision {
            return Err(MvccError::Compacted);
        }
        if revision > self.current_revision {
            return Err(MvccError::FutureRevision);
        }
        // The pending work is implied: the change log entries from `compacted_front` on with
        // a main revision at or below the new compact revision, plus the visited entries at
        // the front that are now below it.
        self.compact_revision = revision;
        Ok(())
    }

    /// Does up to about `keys_budget` units of pending physical compaction, and returns true
    /// when no work is pending afterwards ([`Store::compaction_pending`] is false). A unit is
    /// one logged change visited (its key's history trimmed, the change released from the
    /// log) or one revision's memory released. A budget of 0 only reports. The server calls
    /// this between write batches with a budget that bounds the pause (10,000 units take a few
    /// milliseconds).
    ///
    /// Every revision compaction can remove is reachable from the change log: the log holds
    /// every revision that has not been visited at a compact revision at or above it, and a
    /// visited key keeps at most its one put at or below that revision, which only a newer
    /// (logged) revision can make obsolete. So the work walks the log from the front: each
    /// change at or below the compact revision trims its key's history (idempotent, so a key
    /// changed many times is simply trimmed again cheaply) and is released from the log if it
    /// is below the compact revision. Changes *at* the compact revision stay, because a
    /// watcher may start there; `compacted_front` counts them. A key with more obsolete
    /// revisions than the budget left (a hot key written a million times between two
    /// compactions) has them cut off at once into `released`, which later calls free a slice
    /// at a time, so no single call frees more than its budget.
    ///
    /// While a checkpoint encoder is pinned ([`Store::begin_checkpoint`]) this does nothing
    /// (the encoder still reads what compaction would remove) and reports the work pending.
    pub fn compact_step(&mut self, keys_budget: usize) -> bool {
        if self.checkpoint_pins > 0 {
            return !self.compaction_pending();
        }
        let target = self.compact_revision;
        let mut budget = keys_budget;
        while budget > 0 {
            if let Some((key_len, batch)) = self.released.last_mut() {
                // Dropped from the end, so nothing shifts.
                while budget > 0 {
                    let Some(dropped) = batch.pop() else {
                        break;
                    };
                    budget -= 1;
                    release_stats(&mut self.stats, *key_len, &dropped);
                }
                if batch.is_empty() {
                    self.released.pop();
                }
                continue;
            }
            if self.compacted_front > 0 {
                // Visited at an older compact revision and now below the newest one.
                if self.changes.front().is_some_and(|c| c.main < target) {
                    budget -= 1;
                    self.changes.pop_front();
                    self.compacted_front -= 1;
                    continue;
                }
            }
            let Some(change) = self.changes.get(self.compacted_front) else {
                break;
            };
            if change.main > target {
                break;
            }
            let dropped = trim_history(
                &mut self.index,
                &mut self.order,
                &mut self.stats,
                &mut self.released,
                &change.key,
                target,
                budget,
            );
            budget = budget.saturating_sub(dropped.max(1));
            if change.main < target {
                // Everything before it was released already (the log is in revision order
                // and visited entries below the target go first), so it is the front.
                debug_assert_eq!(self.compacted_front, 0);
                self.changes.pop_front();
            } else {
                self.compacted_front += 1;
            }
        }
        !self.compaction_pending()
    }

    /// Whether physical compaction work is pending (O(1)); see [`Store::compact_step`].
    pub fn compaction_pending(&self) -> bool {
        let target = self.compact_revision;
        !self.released.is_empty()
            || (self.compacted_front > 0 && self.changes.front().is_some_and(|c| c.main < target))
            || self
                .changes
                .get(self.compacted_front)
                .is_some_and(|c| c.main <= target)
    }

    // ----- watch feed ------------------------------------------------------------------------

    /// Every change to keys in the selection (`key`, `range_end` as in [`RangeRequest`]) with
    /// a revision at or above `start_revision`, in revision order (sub-revision order within a
    /// revision), each with its `prev_kv` (see [`Event::prev_kv`]).
    ///
    /// `limit` (0 = none) is soft: the feed stops at the first revision boundary once it has
    /// `limit` events, so a revision's events are never split. A caller that got at least
    /// `limit` events resumes at the last event's `mod_revision + 1`; one that got fewer has
    /// seen everything up to [`Store::current_revision`].
    ///
    /// Errors: [`MvccError::Compacted`] if `start_revision` is below the compact revision
    /// (etcd's rule: a watcher may start *at* the compact revision; it then sees the puts at
    /// that revision that compaction kept). The server reports [`Store::compact_revision`] as
    /// the watch response's `compact_revision`.
    pub fn events(
        &self,
        start_revision: i64,
        key: &[u8],
        range_end: &[u8],
        limit: usize,
    ) -> Result<Vec<Event>, MvccError> {
        if start_revision < self.compact_revision {
            return Err(MvccError::Compacted);
        }
        let range = KeyRange::new(key, range_end);
        let begin = self.changes.partition_point(|c| c.main < start_revision);
        let mut events = Vec::new();
        let mut last_main = None;
        for change in self.changes.range(begin..) {
            if limit > 0 && events.len() >= limit && last_main != Some(change.main) {
                break;
            }
            if !range.contains(&change.key) {
                continue;
            }
            if let Some(event) = self.event_of(change) {
                last_main = Some(change.main);
                events.push(event);
            }
        }
        Ok(events)
    }

    /// The event for one logged change, `None` if compaction removed that revision.
    fn event_of(&self, change: &Change) -> Option<Event> {
        let (_, history) = self.index.get(&change.key)?;
        let position = history
            .binary_search_by(|e| (e.main, e.sub).cmp(&(change.main, change.sub)))
            .ok()?;
        if position < retained_from(history, self.compact_revision) {
            // Logically compacted; physical compaction has not reached it yet.
            return None;
        }
        let entry = history.get(position)?;
        let key: &[u8] = &change.key;
        let (kind, kv) = if entry.is_put() {
            (EventKind::Put, entry.to_key_value(key, true))
        } else {
            (
                EventKind::Delete,
                KeyValue {
                    key: key.to_vec(),
                    mod_revision: entry.main,
                    ..KeyValue::default()
                },
            )
        };
        // etcd's watch server: no prev_kv for a creation; otherwise the key as of the
        // revision before, if that revision is still readable.
        let is_create = kind == EventKind::Put && entry.create_revision == entry.main;
        let prev_kv = if is_create || entry.main - 1 < self.compact_revision {
            None
        } else {
            live_at(history, entry.main - 1).map(|p| p.to_key_value(key, true))
        };
        Some(Event { kind, kv, prev_kv })
    }

    // ----- hash --------------------------------------------------------------------------------

    /// A CRC-32 over every held key revision (key, revision, create revision, version, lease,
    /// tombstone flag, value) with a main revision at or below `revision` (0 = current), in
    /// key order then revision order. Members with the same applied history give the same
    /// hash; it is not numerically equal to etcd's.
    ///
    /// Revisions that compaction removed logically are skipped even while the physical work
    /// is pending, so the hash does not depend on how far [`Store::compact_step`] got.
    ///
    /// Errors as etcd's `HashKV`: [`MvccError::Compacted`] if `0 < revision < compact
    /// revision`, [`MvccError::FutureRevision`] if `revision > current revision`.
    pub fn hash_kv(&self, revision: i64) -> Result<HashKv, MvccError> {
        if revision > 0 && revision < self.compact_revision {
            return Err(MvccError::Compacted);
        }
        if revision > self.current_revision {
            return Err(MvccError::FutureRevision);
        }
        let revision = if revision <= 0 {
            self.current_revision
        } else {
            revision
        };
        let mut hasher = crc32fast::Hasher::new();
        for (key, history) in self.histories() {
            for entry in history.iter().take_while(|e| e.main <= revision) {
                hasher.update(&(key.len() as u64).to_le_bytes());
                hasher.update(key);
                hasher.update(&entry.main.to_le_bytes());
                hasher.update(&entry.sub.to_le_bytes());
                hasher.update(&entry.create_revision.to_le_bytes());
                hasher.update(&entry.version.to_le_bytes());
                hasher.update(&entry.lease.to_le_bytes());
                match &entry.value {
                    Some(value) => {
                        hasher.update(&[1]);
                        hasher.update(&(value.len() as u64).to_le_bytes());
                        hasher.update(value);
                    }
                    None => hasher.update(&[0]),
                }
            }
        }
        Ok(HashKv {
            hash: hasher.finalize(),
            compact_revision: self.compact_revision,
            hash_revision: revision,
        })
    }

    /// Every key with its history as compaction left it logically (entries that pending
    /// physical compaction still holds are skipped, and keys left with none), in key order.
    pub(crate) fn histories(&self) -> impl Iterator<Item = (&Bytes, &[RevisionEntry])> {
        let compact_revision = self.compact_revision;
        self.order.iter().filter_map(move |key| {
            let (_, history) = self.index.get(key)?;
            let retained = &history[retained_from(history, compact_revision)..];
            (!retained.is_empty()).then_some((key, retained))
        })
    }

    // ----- leases ------------------------------------------------------------------------------

    /// Grants lease `id` with `ttl_seconds` (the server picks the id and applies its minimum
    /// TTL before proposing). Does not create a revision. Errors: [`MvccError::LeaseNotFound`]
    /// for id 0 (etcd's lessor refuses "no lease"), [`MvccError::LeaseTtlTooLarge`],
    /// [`MvccError::LeaseExists`].
    pub fn lease_grant(&mut self, id: i64, ttl_seconds: i64) -> Result<(), MvccError> {
        if id == 0 {
            return Err(MvccError::LeaseNotFound);
        }
        if ttl_seconds > LEASE_TTL_MAX_SECONDS {
            return Err(MvccError::LeaseTtlTooLarge);
        }
        if self.leases.contains(id) {
            return Err(MvccError::LeaseExists);
        }
        self.leases.leases.insert(
            id,
            LeaseEntry {
                granted_ttl_seconds: ttl_seconds,
                ..LeaseEntry::default()
            },
        );
        Ok(())
    }

    /// Revokes lease `id`: removes it and deletes every key attached to it, in key order, all
    /// in one new revision (none if it held no keys). Errors: [`MvccError::LeaseNotFound`].
    pub fn lease_revoke(&mut self, id: i64) -> Result<LeaseRevoke, MvccError> {
        let entry = self
            .leases
            .leases
            .remove(&id)
            .ok_or(MvccError::LeaseNotFound)?;
        let mut write = self.begin_write();
        let mut events = Vec::with_capacity(entry.keys.len());
        for key in &entry.keys {
            let Some(previous) = self.live(key, write.read_revision()) else {
                debug_assert!(false, "lease holds a key that is not live");
                continue;
            };
            let prev_kv = previous.to_key_value(key, true);
            self.write_delete(&mut write, key);
            events.push(Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: key.to_vec(),
                    mod_revision: write.main,
                    ..KeyValue::default()
                },
                prev_kv: Some(prev_kv),
            });
        }
        let revision = self.end_write(&write);
        Ok(LeaseRevoke { events, revision })
    }

    /// Records a lease checkpoint: the lease's remaining TTL as the leader saw it (etcd's
    /// `LeaseCheckpoint`). Errors: [`MvccError::LeaseNotFound`].
    pub fn lease_checkpoint(
        &mut self,
        id: i64,
        remaining_ttl_seconds: i64,
    ) -> Result<(), MvccError> {
        let entry = self
            .leases
            .leases
            .get_mut(&id)
            .ok_or(MvccError::LeaseNotFound)?;
        entry.remaining_ttl_seconds = remaining_ttl_seconds;
        Ok(())
    }

    /// Lease `id` with its attached keys if `with_keys` (for LeaseTimeToLive; the server adds
    /// the clock-based remaining TTL). Errors: [`MvccError::LeaseNotFound`].
    pub fn lease_time_to_live(&self, id: i64, with_keys: bool) -> Result<LeaseInfo, MvccError> {
        let entry = self
            .leases
            .leases
            .get(&id)
            .ok_or(MvccError::LeaseNotFound)?;
        Ok(self.leases.info(id, entry, with_keys))
    }

    /// Every lease in id order, without their keys (`keys` is empty).
    pub fn leases(&self) -> Vec<LeaseInfo> {
        self.leases
            .leases
            .iter()
            .map(|(id, entry)| self.leases.info(*id, entry, false))
            .collect()
    }

    // ----- checkpoint ----------------------------------------------------------------------------

    /// Serializes the complete state (every held revision with its value, the current and
    /// compact revisions, the leases) as the payload described in `engine/FORMAT.md`,
    /// section "MVCC checkpoint payload". Errors: [`MvccError::CheckpointTooLarge`].
    pub fn encode_checkpoint(&self) -> Result<Vec<u8>, MvccError> {
        codec::encode(self)
    }

    /// Starts a checkpoint of the store as it is now, to be encoded a slice at a time with
    /// [`CheckpointEncoder::step`] while the store keeps taking writes (under a lock the
    /// caller holds for each slice, not for the whole encoding). Physical compaction holds off
    /// until [`Store::end_checkpoint`] is called once for every encoder begun.
    pub fn begin_checkpoint(&mut self) -> CheckpointEncoder {
        self.checkpoint_pins += 1;
        CheckpointEncoder::new(self)
    }

    /// Starts an export of every retained revision as the store is now, collected a slice at
    /// a time with [`Export::step`] while the store keeps taking writes; it pins physical
    /// compaction like a checkpoint: end it with [`Store::end_checkpoint`] and
    /// [`Export::instance`].
    pub fn begin_export(&mut self) -> Export {
        self.checkpoint_pins += 1;
        Export::new(self)
    }

    /// Ends one checkpoint begun with [`Store::begin_checkpoint`] (finished or abandoned) by
    /// the encoder of store `instance` ([`CheckpointEncoder::instance`]); nothing when this
    /// store replaced that one (the pin went with it).
    pub fn end_checkpoint(&mut self, instance: u64) {
        if instance != self.instance {
            return;
        }
        debug_assert!(self.checkpoint_pins > 0, "end_checkpoint without begin");
        self.checkpoint_pins = self.checkpoint_pins.saturating_sub(1);
    }

    /// True while a checkpoint encoder holds physical compaction off.
    pub fn checkpoint_pinned(&self) -> bool {
        self.checkpoint_pins > 0
    }

    /// Rebuilds a store from [`Store::encode_checkpoint`]'s output. Validates everything
    /// (header, checksums, rkyv structure, and the store's invariants) and never panics on
    /// bad input. Errors: [`MvccError::CorruptCheckpoint`].
    pub fn decode_checkpoint(bytes: &[u8]) -> Result<Store, MvccError> {
        codec::decode(bytes)
    }
}

/// Visits up to `keys_budget` keys of `store` after `last_key` (from the first when `None`),
/// handing `visit` each key's history as it was at `revision` with what compaction at
/// `compact_revision` keeps (keys with nothing left are skipped): one slice of a checkpoint
/// or an export. Moves `last_key` to the last key visited; returns true once every key was.
pub(crate) fn visit_retained(
    store: &Store,
    last_key: &mut Option<Bytes>,
    revision: i64,
    compact_revision: i64,
    keys_budget: usize,
    mut visit: impl FnMut(&Bytes, &[RevisionEntry]) -> Result<(), MvccError>,
) -> Result<bool, MvccError> {
    let from = match last_key.as_ref() {
        Some(key) => Bound::Excluded(key.clone()),
        None => Bound::Unbounded,
    };
    let mut visited = 0usize;
    let mut last = None;
    let mut keys = store.order.range((from, Bound::Unbounded));
    let finished = loop {
        if visited == keys_budget {
            break false;
        }
        let Some(key) = keys.next() else {
            break true;
        };
        visited += 1;
        last = Some(key);
        let Some((_, history)) = store.index.get(key) else {
            continue;
        };
        let seen = &history[..history.partition_point(|e| e.main <= revision)];
        let retained = &seen[retained_from(seen, compact_revision)..];
        if !retained.is_empty() {
            visit(key, retained)?;
        }
    };
    if let Some(key) = last {
        *last_key = Some(key.clone());
    }
    Ok(finished)
}

/// Index of the first entry of `history` that compaction at `compact_revision` keeps: the
/// entries before it are logically gone (physically they may linger until
/// [`Store::compact_step`] reaches the key). Per key, the newest entry at or below the compact
/// revision is kept if it is a put; older ones, and that one if it is a tombstone, are not.
fn retained_from(history: &[RevisionEntry], compact_revision: i64) -> usize {
    match history.first() {
        Some(first) if first.main <= compact_revision => {}
        // Nothing at or below the compact revision (the common case for a fresh key).
        _ => return 0,
    }
    let at_or_below = history.partition_point(|e| e.main <= compact_revision);
    match history.get(at_or_below - 1) {
        Some(newest) if newest.is_put() => at_or_below - 1,
        _ => at_or_below,
    }
}

/// Takes a released revision out of the stats.
fn release_stats(stats: &mut Stats, key_len: usize, dropped: &RevisionEntry) {
    stats.total_revisions = stats.total_revisions.saturating_sub(1);
    stats.approximate_bytes = stats
        .approximate_bytes
        .saturating_sub(key_len as u64 + dropped.value_len() as u64 + REVISION_OVERHEAD_BYTES);
}

/// Physically drops what compaction at `compact_revision` removed from `key`'s history, and
/// the key itself when nothing is left. Idempotent. Frees at most `budget` revisions here and
/// returns how many; more than that are moved, unfreed, to `released` (the history keeps
/// only its retained tail, so it is already physically trimmed).
fn trim_history(
    index: &mut KeyIndex,
    order: &mut BTreeSet<Bytes>,
    stats: &mut Stats,
    released: &mut Vec<(usize, Vec<RevisionEntry>)>,
    key: &[u8],
    compact_revision: i64,
    budget: usize,
) -> usize {
    let Some((_, history)) = index.get_mut(key) else {
        return 0;
    };
    let keep_from = retained_from(history, compact_revision);
    if keep_from == 0 {
        return 0;
    }
    let freed = if keep_from <= budget {
        for dropped in history.drain(..keep_from) {
            release_stats(stats, key.len(), &dropped);
        }
        keep_from
    } else {
        // Copies only the retained tail; the obsolete head is freed by later steps.
        let retained = history.split_off(keep_from);
        let obsolete = std::mem::replace(history, retained);
        released.push((key.len(), obsolete));
        0
    };
    if history.is_empty() {
        index.remove(key);
        order.remove(key);
    }
    freed
}

/// etcd's `compareKV`, with `None` standing for a missing key (all fields zero).
fn compare_entry(compare: &Compare, entry: Option<&RevisionEntry>) -> bool {
    use std::cmp::Ordering;
    let ordering: Ordering = match &compare.target {
        CompareTarget::Value(expected) => {
            let actual: &[u8] = entry.and_then(|e| e.value.as_deref()).unwrap_or(&[]);
            actual.cmp(expected.as_slice())
        }
        CompareTarget::CreateRevision(expected) => {
            entry.map_or(0, |e| e.create_revision).cmp(expected)
        }
        CompareTarget::ModRevision(expected) => entry.map_or(0, |e| e.main).cmp(expected),
        CompareTarget::Version(expected) => entry.map_or(0, |e| e.version).cmp(expected),
        CompareTarget::Lease(expected) => entry.map_or(0, |e| e.lease).cmp(expected),
    };
    match compare.result {
        CompareResult::Equal => ordering == Ordering::Equal,
        CompareResult::NotEqual => ordering != Ordering::Equal,
        CompareResult::Greater => ordering == Ordering::Greater,
        CompareResult::Less => ordering == Ordering::Less,
    }
}

/// Sorts by `target` in `order` (never `None` here). The sort is stable, so equal targets keep
/// ascending key order in both directions, which is what etcd's sort gives for small results.
fn sort_kvs(kvs: &mut [KeyValue], target: SortTarget, order: SortOrder) {
    let compare = |a: &KeyValue, b: &KeyValue| match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    };
    if order == SortOrder::Descend {
        kvs.sort_by(|a, b| compare(b, a));
    } else {
        kvs.sort_by(compare);
    }
}
