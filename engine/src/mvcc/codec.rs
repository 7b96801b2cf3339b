//! The MVCC checkpoint payload: a fixed header, a blob of key and value bytes, and an rkyv
//! archive of fixed-size records that say how to cut the blob. `engine/FORMAT.md`, section
//! "MVCC checkpoint payload", specifies it byte by byte; keep the two in step.
//!
//! Keys and values live outside the rkyv archive so that encoding writes them once, straight
//! into the output, and so that rkyv's 32-bit relative pointers (2 GiB reach) only have to span
//! the records, not the data.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use rkyv::rancor::Error as RkyvError;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Serialize};

use super::lease::{LeaseEntry, LeaseTable};
use super::{
    Bytes, Change, KeyIndex, MvccError, RevisionEntry, Stats, Store, REVISION_OVERHEAD_BYTES,
};

/// First 8 bytes of every payload.
pub(crate) const MAGIC: [u8; 8] = *b"KEELMVCC";
/// The format version this code writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Header size; the blob starts here.
pub(crate) const HEADER_LEN: usize = 48;
/// The index starts at a multiple of this (from the payload start).
const INDEX_ALIGN: usize = 16;
/// Keys decoded before they are inserted into the hash table together (see `build`).
const INSERT_BATCH: usize = 256;
/// Upper bound on revisions, so `revision + 1` and the like can never overflow.
const REVISION_MAX: i64 = i64::MAX / 4;

#[derive(Archive, Serialize)]
pub(crate) struct IndexV1 {
    current_revision: i64,
    compact_revision: i64,
    keys: Vec<KeyRecord>,
    revisions: Vec<RevisionRecord>,
    leases: Vec<LeaseRecord>,
}

#[derive(Archive, Serialize)]
struct KeyRecord {
    key_len: u32,
    revision_count: u32,
}

#[derive(Archive, Serialize)]
struct RevisionRecord {
    main: i64,
    create_revision: i64,
    version: i64,
    lease: i64,
    sub: u32,
    value_len: u32,
    /// 1 = put (a value of `value_len` bytes follows in the blob), 0 = tombstone.
    kind: u8,
}

#[derive(Archive, Serialize)]
struct LeaseRecord {
    id: i64,
    granted_ttl_seconds: i64,
    remaining_ttl_seconds: i64,
}

impl From<&super::ExportedLease> for LeaseRecord {
    fn from(lease: &super::ExportedLease) -> LeaseRecord {
        LeaseRecord {
            id: lease.id,
            granted_ttl_seconds: lease.granted_ttl_seconds,
            remaining_ttl_seconds: lease.remaining_ttl_seconds,
        }
    }
}

fn too_large(what: &str) -> MvccError {
    MvccError::CheckpointTooLarge(what.to_string())
}

fn corrupt(what: impl Into<String>) -> MvccError {
    MvccError::CorruptCheckpoint(what.into())
}

/// Encodes the store as compaction left it logically: pending physical compaction is skipped,
/// so the payload is the same whether or not that work has finished.
pub(crate) fn encode(store: &Store) -> Result<Vec<u8>, MvccError> {
    let mut encoder = CheckpointEncoder::new(store);
    encoder.reserve_blob(store);
    encoder.step(store, usize::MAX)?;
    encoder.finish().map(PayloadEnd::into_payload)
}

/// Encodes the store *as it was* when the encoder was made, a slice of keys at a time, while
/// the store goes on taking writes between slices (see [`Store::begin_checkpoint`]).
///
/// No copy of the store is needed because the store is multi-versioned: the view at revision
/// `R` is, per key, the history entries with a main revision at or below `R`, cut at the
/// compact revision of that moment. Writes after `R` only append entries above `R`, and only
/// physical compaction ([`Store::compact_step`]) removes entries, which the store holds off
/// while an encoder is pinned. Leases change without revisions, so their records are taken
/// when the encoder is made. The payload is byte for byte what [`Store::encode_checkpoint`]
/// gave at that moment.
///
/// The payload comes out as a stream: [`CheckpointEncoder::take_output`] hands over the bytes
/// encoded since the last call, so a caller writing a file never holds the whole blob in
/// memory (hundreds of megabytes of fresh pages for a large store, whose faulting stalled the
/// CPU that completes the WAL's writes); [`CheckpointEncoder::finish`] gives the rest and the
/// header, which belongs at the start of the stream.
pub struct CheckpointEncoder {
    /// The store it began on (see `Store::instance`).
    instance: u64,
    revision: i64,
    compact_revision: i64,
    /// Payload bytes not taken yet. The stream starts with `HEADER_LEN` zero bytes where the
    /// header goes (it is known only at the end).
    out: Vec<u8>,
    /// Payload bytes taken so far (placeholder included).
    taken: usize,
    /// CRC of the taken bytes after the header (the header's `body_crc` so far).
    body_crc: crc32fast::Hasher,
    keys: Vec<KeyRecord>,
    revisions: Vec<RevisionRecord>,
    leases: Vec<LeaseRecord>,
    /// The last key encoded; the next slice starts after it.
    last_key: Option<Bytes>,
    done: bool,
}

impl std::fmt::Debug for CheckpointEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointEncoder")
            .field("revision", &self.revision)
            .field("compact_revision", &self.compact_revision)
            .field("keys", &self.keys.len())
            .field("bytes", &self.encoded_bytes())
            .field("done", &self.done)
            .finish()
    }
}

impl CheckpointEncoder {
    /// Bytes of the payload's header, which [`CheckpointEncoder::finish`] gives and whose
    /// place the output starts with.
    pub const HEADER_LEN: usize = HEADER_LEN;

    pub(crate) fn new(store: &Store) -> CheckpointEncoder {
        CheckpointEncoder {
            instance: store.instance,
            revision: store.current_revision,
            compact_revision: store.compact_revision,
            out: vec![0; HEADER_LEN],
            taken: 0,
            body_crc: crc32fast::Hasher::new(),
            keys: Vec::with_capacity(store.order.len()),
            revisions: Vec::with_capacity(
                usize::try_from(store.stats.total_revisions).unwrap_or(0),
            ),
            leases: store
                .exported_leases()
                .iter()
                .map(LeaseRecord::from)
                .collect(),
            last_key: None,
            done: false,
        }
    }

    /// The store this encoder began on (for [`Store::end_checkpoint`]).
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// The store revision this encoder captures.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Bytes of key and value data encoded so far.
    pub fn encoded_bytes(&self) -> usize {
        self.taken + self.out.len() - HEADER_LEN
    }

    /// Makes room for the whole blob at once, for a caller that takes no output before
    /// [`CheckpointEncoder::finish`].
    fn reserve_blob(&mut self, store: &Store) {
        self.out
            .reserve(usize::try_from(store.stats.approximate_bytes).unwrap_or(0));
    }

    /// Moves the payload bytes encoded since the last call (the first call: from the start of
    /// the payload, where `HEADER_LEN` zero bytes hold the header's place) into `spare`,
    /// whose old contents are dropped and whose allocation the encoder reuses.
    pub fn take_output(&mut self, spare: &mut Vec<u8>) {
        spare.clear();
        std::mem::swap(spare, &mut self.out);
        self.count_taken(spare);
    }

    /// Counts `bytes`, the next ones of the stream, as taken.
    fn count_taken(&mut self, bytes: &[u8]) {
        let skip = HEADER_LEN.saturating_sub(self.taken).min(bytes.len());
        self.body_crc.update(&bytes[skip..]);
        self.taken += bytes.len();
    }

    /// Encodes up to `keys_budget` more keys of `store`, which must be the store this encoder
    /// was made from (changed only by writes and logical compaction since). Returns true once
    /// every key is encoded. Errors: [`MvccError::CheckpointTooLarge`],
    /// [`MvccError::StoreReplaced`] for any other store.
    pub fn step(&mut self, store: &Store, keys_budget: usize) -> Result<bool, MvccError> {
        if store.instance != self.instance {
            return Err(MvccError::StoreReplaced);
        }
        if self.done {
            return Ok(true);
        }
        let (revision, compact_revision) = (self.revision, self.compact_revision);
        let mut last_key = self.last_key.take();
        let finished = super::visit_retained(
            store,
            &mut last_key,
            revision,
            compact_revision,
            keys_budget,
            |key, retained| self.push_key(key, retained),
        );
        self.last_key = last_key;
        self.done = finished?;
        Ok(self.done)
    }

    fn push_key(&mut self, key: &Bytes, history: &[RevisionEntry]) -> Result<(), MvccError> {
        self.keys.push(KeyRecord {
            key_len: u32::try_from(key.len()).map_err(|_| too_large("a key is above 4 GiB"))?,
            revision_count: u32::try_from(history.len())
                .map_err(|_| too_large("a key has more than 2^32 revisions"))?,
        });
        self.out.extend_from_slice(key);
        for entry in history {
            let value_len = match &entry.value {
                Some(value) => {
                    self.out.extend_from_slice(value);
                    u32::try_from(value.len()).map_err(|_| too_large("a value is above 4 GiB"))?
                }
                None => 0,
            };
            self.revisions.push(RevisionRecord {
                main: entry.main,
                create_revision: entry.create_revision,
                version: entry.version,
                lease: entry.lease,
                sub: entry.sub,
                value_len,
                kind: u8::from(entry.is_put()),
            });
        }
        Ok(())
    }

    /// The payload of a store given as its parts (see [`super::Store::import`]): `keys` in
    /// ascending order, each with its retained history oldest first; leases by id.
    pub(crate) fn encode_parts(
        current_revision: i64,
        compact_revision: i64,
        keys: impl IntoIterator<Item = (Bytes, Vec<RevisionEntry>)>,
        leases: &[super::ExportedLease],
    ) -> Result<Vec<u8>, MvccError> {
        let mut encoder = CheckpointEncoder {
            instance: 0,
            revision: current_revision,
            compact_revision,
            out: vec![0; HEADER_LEN],
            taken: 0,
            body_crc: crc32fast::Hasher::new(),
            keys: Vec::new(),
            revisions: Vec::new(),
            leases: leases.iter().map(LeaseRecord::from).collect(),
            last_key: None,
            done: true,
        };
        for (key, history) in keys {
            encoder.push_key(&key, &history)?;
        }
        encoder.finish().map(PayloadEnd::into_payload)
    }

    /// The end of the payload, once [`CheckpointEncoder::step`] returned true. Errors:
    /// [`MvccError::CheckpointTooLarge`], and the same for an encoder not done.
    pub fn finish(mut self) -> Result<PayloadEnd, MvccError> {
        if !self.done {
            return Err(too_large(
                "the checkpoint encoder was finished before its last key",
            ));
        }
        let blob_len = self.encoded_bytes();
        let index = IndexV1 {
            current_revision: self.revision,
            compact_revision: self.compact_revision,
            keys: std::mem::take(&mut self.keys),
            revisions: std::mem::take(&mut self.revisions),
            leases: std::mem::take(&mut self.leases),
        };
        // Sized up front: growing by doubling would copy the records and fault in about twice
        // their size.
        let capacity = 256
            + index.keys.len() * std::mem::size_of::<ArchivedKeyRecord>()
            + index.revisions.len() * std::mem::size_of::<ArchivedRevisionRecord>()
            + index.leases.len() * std::mem::size_of::<ArchivedLeaseRecord>();
        let archived = rkyv::api::high::to_bytes_in::<_, RkyvError>(
            &index,
            AlignedVec::<INDEX_ALIGN>::with_capacity(capacity),
        )
        .map_err(|e| too_large(&format!("the record index cannot be archived: {e}")))?;
        drop(index);
        let index_offset = (HEADER_LEN + blob_len).next_multiple_of(INDEX_ALIGN);
        let from_start = self.taken == 0;
        let mut rest = std::mem::take(&mut self.out);
        rest.resize(rest.len() + index_offset - HEADER_LEN - blob_len, 0);
        self.count_taken(&rest);
        self.count_taken(&archived);
        let mut header = [0u8; HEADER_LEN];
        header[0..8].copy_from_slice(&MAGIC);
        header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        header[12..16].copy_from_slice(&0u32.to_le_bytes());
        header[16..24].copy_from_slice(&(blob_len as u64).to_le_bytes());
        header[24..32].copy_from_slice(&(index_offset as u64).to_le_bytes());
        header[32..40].copy_from_slice(&(archived.len() as u64).to_le_bytes());
        header[40..44].copy_from_slice(&self.body_crc.clone().finalize().to_le_bytes());
        let header_crc = crc32fast::hash(&header[..44]);
        header[44..48].copy_from_slice(&header_crc.to_le_bytes());
        Ok(PayloadEnd {
            header,
            rest,
            index: archived,
            from_start,
        })
    }
}

/// The end of a checkpoint payload ([`CheckpointEncoder::finish`]): the payload goes on from
/// the bytes taken before with `rest`, then `index`; `header` takes the place of the
/// `HEADER_LEN` zero bytes it began with.
pub struct PayloadEnd {
    /// The payload's header.
    pub header: [u8; HEADER_LEN],
    /// The bytes not taken before (the end of the blob and the padding).
    pub rest: Vec<u8>,
    /// The record index, the payload's last bytes.
    pub index: AlignedVec<INDEX_ALIGN>,
    /// Whether nothing was taken before: `rest` then starts with the header's place.
    pub from_start: bool,
}

impl PayloadEnd {
    /// The whole payload, for an encoder whose output was never taken.
    pub(crate) fn into_payload(self) -> Vec<u8> {
        assert!(self.from_start, "part of the payload was taken");
        let mut payload = self.rest;
        payload[..HEADER_LEN].copy_from_slice(&self.header);
        payload.extend_from_slice(&self.index);
        payload
    }
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Store, MvccError> {
    if bytes.len() < HEADER_LEN {
        return Err(corrupt(format!(
            "{} bytes is shorter than the {HEADER_LEN}-byte header",
            bytes.len()
        )));
    }
    if bytes[0..8] != MAGIC {
        return Err(corrupt("the magic is not KEELMVCC"));
    }
    if crc32fast::hash(&bytes[..44]) != read_u32(bytes, 44) {
        return Err(corrupt("the header checksum does not match"));
    }
    let version = read_u32(bytes, 8);
    if version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "format version {version} is not supported (this build reads {FORMAT_VERSION})"
        )));
    }
    let blob_len = usize::try_from(read_u64(bytes, 16)).map_err(|_| corrupt("blob length"))?;
    let index_offset = usize::try_from(read_u64(bytes, 24)).map_err(|_| corrupt("index offset"))?;
    let index_len = usize::try_from(read_u64(bytes, 32)).map_err(|_| corrupt("index length"))?;
    let blob_end = HEADER_LEN
        .checked_add(blob_len)
        .ok_or_else(|| corrupt("blob length overflows"))?;
    if index_offset != blob_end.next_multiple_of(INDEX_ALIGN)
        || index_offset.checked_add(index_len) != Some(bytes.len())
    {
        return Err(corrupt(format!(
            "lengths do not add up: blob {blob_len}, index at {index_offset} of {index_len}, \
             payload {}",
            bytes.len()
        )));
    }
    if crc32fast::hash(&bytes[HEADER_LEN..]) != read_u32(bytes, 40) {
        return Err(corrupt("the body checksum does not match"));
    }
    let blob = &bytes[HEADER_LEN..blob_end];
    let index_bytes = &bytes[index_offset..];
    // rkyv reads aligned records in place; a caller's buffer may sit at any address, so copy
    // the (small) index when it is not aligned.
    let copy: AlignedVec<INDEX_ALIGN>;
    let index_bytes = if (index_bytes.as_ptr() as usize) % INDEX_ALIGN == 0 {
        index_bytes
    } else {
        let mut aligned = AlignedVec::<INDEX_ALIGN>::with_capacity(index_bytes.len());
        aligned.extend_from_slice(index_bytes);
        copy = aligned;
        copy.as_slice()
    };
    let index = rkyv::access::<ArchivedIndexV1, RkyvError>(index_bytes)
        .map_err(|e| corrupt(format!("the record index fails validation: {e}")))?;
    build(index, blob)
}

/// Rebuilds the store from validated records, checking every invariant the store relies on.
fn build(index: &ArchivedIndexV1, blob: &[u8]) -> Result<Store, MvccError> {
    let current_revision = index.current_revision.to_native();
    let compact_revision = index.compact_revision.to_native();
    if !(1..=REVISION_MAX).contains(&current_revision) {
        return Err(corrupt(format!("current revision {current_revision}")));
    }
    if compact_revision < -1 || compact_revision > current_revision {
        return Err(corrupt(format!(
            "compact revision {compact_revision} with current revision {current_revision}"
        )));
    }
    let mut leases = LeaseTable::default();
    let mut previous_id = None;
    for record in index.leases.iter() {
        let id = record.id.to_native();
        if id == 0 || previous_id.is_some_and(|p| p >= id) {
            return Err(corrupt(format!("lease id {id} is zero or out of order")));
        }
        previous_id = Some(id);
        leases.leases.insert(
            id,
            LeaseEntry {
                granted_ttl_seconds: record.granted_ttl_seconds.to_native(),
                remaining_ttl_seconds: record.remaining_ttl_seconds.to_native(),
                keys: Default::default(),
            },
        );
    }
    let mut cursor = 0usize;
    let mut take = |len: usize| -> Result<&[u8], MvccError> {
        let end = cursor
            .checked_add(len)
            .filter(|end| *end <= blob.len())
            .ok_or_else(|| corrupt("a record points past the end of the blob"))?;
        let slice = &blob[cursor..end];
        cursor = end;
        Ok(slice)
    };
    let mut stats = Stats::default();
    let mut key_index = KeyIndex::with_capacity(index.keys.len());
    let mut ordered_keys: Vec<Bytes> = Vec::with_capacity(index.keys.len());
    // Keys with their hashes and histories wait here and go into the hash table a batch at a
    // time: each insert is a cache miss at a random slot, and only a loop with nothing else in
    // it lets the processor overlap those misses (about 20 % of a restart). A small batch
    // stays in cache, unlike one temporary vector of every key.
    let mut batch: Vec<(u64, Bytes, Vec<RevisionEntry>)> = Vec::with_capacity(INSERT_BATCH);
    let mut changes: Vec<Change> = Vec::with_capacity(index.revisions.len());
    let mut records = index.revisions.iter();
    for key_record in index.keys.iter() {
        let key_bytes = take(key_record.key_len.to_native() as usize)?;
        if key_bytes.is_empty() {
            return Err(corrupt("an empty key"));
        }
        if let Some(previous) = ordered_keys.last() {
            if **previous >= *key_bytes {
                return Err(corrupt("keys are not in strictly ascending order"));
            }
        }
        let key: Bytes = Arc::from(key_bytes);
        let hash = key_index.hash(key_bytes);
        let count = key_record.revision_count.to_native() as usize;
        if count == 0 {
            return Err(corrupt("a key without revisions"));
        }
        // Checked before allocating, so a damaged count cannot ask for a huge allocation.
        if count > records.len() {
            return Err(corrupt("fewer revision records than the keys claim"));
        }
        let mut history: Vec<RevisionEntry> = Vec::with_capacity(count);
        for _ in 0..count {
            let record = records
                .next()
                .ok_or_else(|| corrupt("fewer revision records than the keys claim"))?;
            let value = match record.kind {
                1 => Some(Bytes::from(take(record.value_len.to_native() as usize)?)),
                0 if record.value_len == 0 => None,
                _ => return Err(corrupt("a revision record of unknown kind")),
            };
            let entry = RevisionEntry {
                main: record.main.to_native(),
                sub: record.sub.to_native(),
                create_revision: record.create_revision.to_native(),
                version: record.version.to_native(),
                lease: record.lease.to_native(),
                value,
            };
            check_entry(
                &key,
                history.last(),
                &entry,
                current_revision,
                compact_revision,
            )?;
            stats.total_revisions += 1;
            stats.approximate_bytes +=
                (key.len() + entry.value_len()) as u64 + REVISION_OVERHEAD_BYTES;
            if entry.main >= compact_revision {
                changes.push(Change {
                    main: entry.main,
                    sub: entry.sub,
                    key: Arc::clone(&key),
                });
            }
            history.push(entry);
        }
        if let Some(last) = history.last().filter(|e| e.is_put()) {
            stats.live_keys += 1;
            if last.lease != 0 {
                let lease = leases.leases.get_mut(&last.lease).ok_or_else(|| {
                    corrupt(format!(
                        "a live key holds lease {} that does not exist",
                        last.lease
                    ))
                })?;
                lease.keys.insert(Arc::clone(&key));
            }
        }
        ordered_keys.push(Arc::clone(&key));
        batch.push((hash, key, history));
        if batch.len() == INSERT_BATCH {
            for (hash, key, history) in batch.drain(..) {
                key_index.insert_new(hash, key, history);
            }
        }
    }
    for (hash, key, history) in batch {
        key_index.insert_new(hash, key, history);
    }
    if records.next().is_some() {
        return Err(corrupt("more revision records than the keys claim"));
    }
    if cursor != blob.len() {
        return Err(corrupt("bytes left over at the end of the blob"));
    }
    changes.sort_unstable_by_key(|c| (c.main, c.sub));
    if changes
        .windows(2)
        .any(|pair| (pair[0].main, pair[0].sub) == (pair[1].main, pair[1].sub))
    {
        return Err(corrupt("two changes share one revision"));
    }
    let order: BTreeSet<Bytes> = ordered_keys.into_iter().collect();
    // A payload holds no logically compacted revision (the encoder skips them and the checks
    // above refuse them), so the loaded store has no compaction work pending: the changes at
    // the compact revision count as visited.
    let compacted_front = changes.partition_point(|c| c.main <= compact_revision);
    Ok(Store {
        index: key_index,
        order,
        changes: VecDeque::from(changes),
        current_revision,
        compact_revision,
        compacted_front,
        released: Vec::new(),
        leases,
        stats,
        checkpoint_pins: 0,
        instance: super::next_store_instance(),
    })
}

/// Checks one history entry against the one before it (the rules writes and compaction keep).
fn check_entry(
    key: &[u8],
    previous: Option<&RevisionEntry>,
    entry: &RevisionEntry,
    current_revision: i64,
    compact_revision: i64,
) -> Result<(), MvccError> {
    let fail = |rule: &str| {
        Err(corrupt(format!(
            "key {:?} revision ({}, {}): {rule}",
            String::from_utf8_lossy(key),
            entry.main,
            entry.sub
        )))
    };
    if entry.main < 2 || entry.main > current_revision {
        return fail("revision outside 2..=current revision");
    }
    if entry.sub == u32::MAX {
        return fail("sub-revision out of range");
    }
    match previous {
        None => {
            if !entry.is_put() {
                return fail("a history starts with a tombstone");
            }
            if entry.create_revision < 1
                || entry.create_revision > entry.main
                || entry.version < 1
                || entry.version > REVISION_MAX
            {
                return fail("create revision or version out of range");
            }
        }
        Some(previous) => {
            if (previous.main, previous.sub) >= (entry.main, entry.sub) {
                return fail("revisions are not in ascending order");
            }
            if previous.main <= compact_revision && entry.main <= compact_revision {
                return fail("more than one revision at or below the compact revision");
            }
            match (previous.is_put(), entry.is_put()) {
                (false, false) => return fail("two tombstones in a row"),
                (true, true) => {
                    if entry.create_revision != previous.create_revision
                        || entry.version != previous.version + 1
                    {
                        return fail("create revision or version does not follow");
                    }
                }
                (false, true) => {
                    if entry.create_revision != entry.main || entry.version != 1 {
                        return fail("a new generation must start at version 1");
                    }
                }
                (true, false) => {}
            }
        }
    }
    if !entry.is_put() && (entry.create_revision != 0 || entry.version != 0 || entry.lease != 0) {
        return fail("a tombstone with fields set");
    }
    if previous.is_none() && entry.main <= compact_revision && !entry.is_put() {
        return fail("a tombstone at or below the compact revision");
    }
    Ok(())
}
