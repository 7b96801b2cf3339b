//! Leases as state-machine data: which leases exist, their TTLs, and which keys each holds.
//!
//! Expiry is not decided here: the server owns the clocks, and proposes a revoke through the
//! log when a lease runs out. The table only has to give every member the same answer to
//! "which keys does lease L hold", so that a revoke deletes the same keys everywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Largest TTL a lease may be granted, in seconds (etcd's `MaxLeaseTTL`, 9,000,000,000).
pub const LEASE_TTL_MAX_SECONDS: i64 = 9_000_000_000;

/// What the store knows about one lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The lease id (never 0).
    pub id: i64,
    /// The TTL the lease was granted with, in seconds.
    pub granted_ttl_seconds: i64,
    /// The remaining TTL recorded by the last lease checkpoint (etcd's lease checkpointing),
    /// in seconds; 0 when none was recorded. The server uses it to restore expiry after a
    /// restart or a leader change instead of granting the full TTL again.
    pub remaining_ttl_seconds: i64,
    /// Keys attached to the lease, in key order. Only filled where the doc of the call says so.
    pub keys: Vec<Vec<u8>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LeaseEntry {
    pub(crate) granted_ttl_seconds: i64,
    pub(crate) remaining_ttl_seconds: i64,
    pub(crate) keys: BTreeSet<Arc<[u8]>>,
}

/// The lease table: id → TTLs and attached keys, ordered by id so that iteration (and the
/// checkpoint) is the same on every member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LeaseTable {
    pub(crate) leases: BTreeMap<i64, LeaseEntry>,
}

impl LeaseTable {
    pub(crate) fn contains(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    pub(crate) fn attach(&mut self, id: i64, key: &Arc<[u8]>) {
        // The caller checked that the lease exists before any write (a put with an unknown
        // lease is refused up front), so a miss here can only be a bug; ignoring it keeps the
        // state machine deterministic rather than panicking on a member.
        debug_assert!(
            self.leases.contains_key(&id),
            "attach to unknown lease {id}"
        );
        if let Some(entry) = self.leases.get_mut(&id) {
            entry.keys.insert(Arc::clone(key));
        }
    }

    pub(crate) fn detach(&mut self, id: i64, key: &[u8]) {
        if let Some(entry) = self.leases.get_mut(&id) {
            entry.keys.remove(key);
        }
    }

    pub(crate) fn info(&self, id: i64, entry: &LeaseEntry, with_keys: bool) -> LeaseInfo {
        LeaseInfo {
            id,
            granted_ttl_seconds: entry.granted_ttl_seconds,
            remaining_ttl_seconds: entry.remaining_ttl_seconds,
            keys: if with_keys {
                entry.keys.iter().map(|k| k.to_vec()).collect()
            } else {
                Vec::new()
            },
        }
    }
}
