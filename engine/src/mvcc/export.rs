//! Every retained revision of the store in revision order, taken from a consistent view a
//! slice of keys at a time (as [`super::CheckpointEncoder`] does), for writing the store in
//! another format (etcd's backend file, whose `key` bucket is ordered by revision).
//!
//! The export shares keys and values with the store (`Arc`s): it holds one small record per
//! retained revision, never a second copy of the data.

use std::sync::Arc;

use super::{retained_from, MvccError, Store};

/// One retained revision of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportedRevision {
    /// Main revision.
    pub main: i64,
    /// Sub revision (the change's place in its request).
    pub sub: u32,
    /// The key.
    pub key: Arc<[u8]>,
    /// 0 for a tombstone.
    pub create_revision: i64,
    /// 0 for a tombstone.
    pub version: i64,
    /// 0 for a tombstone or no lease.
    pub lease: i64,
    /// `None` for a tombstone (a deletion).
    pub value: Option<Arc<[u8]>>,
}

/// A lease as exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportedLease {
    /// The lease id.
    pub id: i64,
    /// The granted TTL in seconds.
    pub granted_ttl_seconds: i64,
    /// The remaining TTL of the last lease checkpoint, 0 if none.
    pub remaining_ttl_seconds: i64,
}

/// What an export holds once done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exported {
    /// The store revision the export captures.
    pub revision: i64,
    /// The compact revision at that moment.
    pub compact_revision: i64,
    /// Every retained revision at or below `revision`, ordered by (main, sub).
    pub revisions: Vec<ExportedRevision>,
    /// The leases, by id.
    pub leases: Vec<ExportedLease>,
}

/// An export in progress: begun with [`Store::begin_export`] (which pins physical compaction
/// like a checkpoint does), stepped under the caller's read lock, finished with
/// [`Export::finish`]; [`Store::end_checkpoint`] with [`Export::instance`] releases the pin.
#[derive(Debug)]
pub struct Export {
    instance: u64,
    revision: i64,
    compact_revision: i64,
    revisions: Vec<ExportedRevision>,
    leases: Vec<ExportedLease>,
    last_key: Option<Arc<[u8]>>,
    done: bool,
}

impl Export {
    pub(crate) fn new(store: &Store) -> Export {
        Export {
            instance: store.instance,
            revision: store.current_revision,
            compact_revision: store.compact_revision,
            revisions: Vec::new(),
            leases: store.exported_leases(),
            last_key: None,
            done: false,
        }
    }

    /// The store this export began on (for [`Store::end_checkpoint`]).
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// The store revision this export captures.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Collects up to `keys_budget` more keys of `store` (the store it began on). Returns true
    /// once every key is collected. Errors: [`MvccError::StoreReplaced`] for another store.
    pub fn step(&mut self, store: &Store, keys_budget: usize) -> Result<bool, MvccError> {
        if store.instance != self.instance {
            return Err(MvccError::StoreReplaced);
        }
        if self.done {
            return Ok(true);
        }
        let (revision, compact_revision) = (self.revision, self.compact_revision);
        let mut last_key = self.last_key.take();
        let revisions = &mut self.revisions;
        let finished = super::visit_retained(
            store,
            &mut last_key,
            revision,
            compact_revision,
            keys_budget,
            |key, retained| {
                revisions.extend(retained.iter().map(|entry| ExportedRevision {
                    main: entry.main,
                    sub: entry.sub,
                    key: key.clone(),
                    create_revision: entry.create_revision,
                    version: entry.version,
                    lease: entry.lease,
                    value: entry.value.clone(),
                }));
                Ok(())
            },
        );
        self.last_key = last_key;
        self.done = finished?;
        Ok(self.done)
    }

    /// The export, revisions in (main, sub) order, once [`Export::step`] returned true.
    /// Errors: [`MvccError::StoreReplaced`] for an export not done (it cannot be trusted).
    pub fn finish(mut self) -> Result<Exported, MvccError> {
        if !self.done {
            return Err(MvccError::StoreReplaced);
        }
        self.revisions.sort_unstable_by_key(|r| (r.main, r.sub));
        Ok(Exported {
            revision: self.revision,
            compact_revision: self.compact_revision,
            revisions: self.revisions,
            leases: self.leases,
        })
    }
}

impl Store {
    /// The lease table by id: ids and TTLs (leases change without revisions, so a checkpoint
    /// or an export takes them when it begins).
    pub(crate) fn exported_leases(&self) -> Vec<ExportedLease> {
        self.leases
            .leases
            .iter()
            .map(|(id, lease)| ExportedLease {
                id: *id,
                granted_ttl_seconds: lease.granted_ttl_seconds,
                remaining_ttl_seconds: lease.remaining_ttl_seconds,
            })
            .collect()
    }

    /// A store holding exactly `exported`'s revisions and leases, at its revision and compact
    /// revision (for a store read from another format, such as etcd's backend file). Keys'
    /// histories are rebuilt from the revisions; per key, only what compaction at the compact
    /// revision keeps is kept (etcd's file may still hold older revisions when its last
    /// compaction did not finish). The result is checked as a decoded checkpoint is (ordered,
    /// consistent histories, leases that exist, revisions within the store's), so bad input
    /// is an error, never a panic. Errors: [`MvccError::CorruptCheckpoint`].
    pub fn import(exported: &Exported) -> Result<Store, MvccError> {
        Store::decode_checkpoint(&Store::import_checkpoint(exported.clone())?)
    }

    /// What [`Store::import`] makes, as the checkpoint payload of that store (what
    /// [`Store::encode_checkpoint`] of it would give) rather than the store itself: for a
    /// restore that only writes the checkpoint. The export is taken by value and its
    /// revisions move into the keys' histories, so at most the histories and the payload, or
    /// the payload and the store its check decodes, are in memory at once. Checked as
    /// [`Store::import`] checks; the same errors.
    pub fn import_checkpoint(exported: Exported) -> Result<Vec<u8>, MvccError> {
        let Exported {
            revision,
            compact_revision,
            mut revisions,
            leases,
        } = exported;
        revisions.sort_by_key(|r| (r.main, r.sub));
        let mut keys: std::collections::BTreeMap<Arc<[u8]>, Vec<super::RevisionEntry>> =
            std::collections::BTreeMap::new();
        for revision in revisions {
            keys.entry(revision.key)
                .or_default()
                .push(super::RevisionEntry {
                    main: revision.main,
                    sub: revision.sub,
                    create_revision: revision.create_revision,
                    version: revision.version,
                    lease: revision.lease,
                    value: revision.value,
                });
        }
        let retained = keys.into_iter().filter_map(|(key, mut history)| {
            let from = retained_from(&history, compact_revision);
            history.drain(..from);
            (!history.is_empty()).then_some((key, history))
        });
        let payload = super::codec::CheckpointEncoder::encode_parts(
            revision,
            compact_revision,
            retained,
            &leases,
        )?;
        // The check is the decoding a checkpoint gets when it is loaded.
        drop(Store::decode_checkpoint(&payload)?);
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{DeleteRangeRequest, PutRequest};
    use super::*;

    fn put(store: &mut Store, key: &str, value: &str) {
        store
            .put(&PutRequest {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
                ..Default::default()
            })
            .unwrap();
    }

    /// What compaction keeps, in revision order, at the revision the export began, whatever
    /// is written meanwhile and however small the slices.
    #[test]
    fn exports_what_compaction_keeps_in_revision_order() {
        let mut store = Store::new();
        put(&mut store, "a", "1"); // 2
        put(&mut store, "b", "1"); // 3
        put(&mut store, "a", "2"); // 4
        store
            .delete_range(&DeleteRangeRequest {
                key: b"b".to_vec(),
                ..Default::default()
            })
            .unwrap(); // 5
        store.compact(4).unwrap();
        let mut export = store.begin_export();
        assert!(!export.step(&store, 1).unwrap());
        put(&mut store, "c", "1"); // 6: after the export began
        put(&mut store, "a", "3"); // 7
        while !export.step(&store, 1).unwrap() {}
        let exported = export.finish().unwrap();
        store.end_checkpoint(store.instance);
        type Seen<'a> = (i64, &'a [u8], Option<&'a [u8]>);
        let got: Vec<Seen<'_>> = exported
            .revisions
            .iter()
            .map(|r| (r.main, &*r.key, r.value.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (3, &b"b"[..], Some(&b"1"[..])),
                (4, &b"a"[..], Some(&b"2"[..])),
                (5, &b"b"[..], None),
            ]
        );
        assert_eq!((exported.revision, exported.compact_revision), (5, 4));
        // Importing the export gives the store as it was at the export's revision.
        let imported = Store::import(&exported).unwrap();
        assert_eq!(imported.current_revision(), 5);
        assert_eq!(imported.compact_revision(), 4);
        let again = {
            let mut copy = imported.clone();
            let mut export = copy.begin_export();
            while !export.step(&copy, 2).unwrap() {}
            export.finish().unwrap()
        };
        assert_eq!(again.revisions, exported.revisions);
        // An impossible history (a revision above the store's) is an error, not a panic.
        let mut bad = exported.clone();
        bad.revisions[0].main = 99;
        assert!(Store::import(&bad).is_err());
        // Another store is refused.
        let other = Store::new();
        let mut export = store.begin_export();
        assert_eq!(export.step(&other, 10), Err(MvccError::StoreReplaced));
    }
}
