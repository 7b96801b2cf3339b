//! Request, response and record types of the MVCC store.
//!
//! They mirror etcd's `etcdserverpb` and `mvccpb` protobuf messages field by field, so the
//! server can convert between them and the prost types without any interpretation. Field
//! comments give the etcd semantics the store implements.

/// One version of a key, as etcd's `mvccpb.KeyValue`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// Revision of the put that created this generation of the key (0 in a delete event).
    pub create_revision: i64,
    /// Revision of the last modification (the deletion revision in a delete event).
    pub mod_revision: i64,
    /// Number of puts in this generation: 1 on creation, reset by a delete (0 in a delete
    /// event).
    pub version: i64,
    /// The value (empty when the request asked for `keys_only`, and in delete events).
    pub value: Vec<u8>,
    /// The lease attached to the key, 0 for none.
    pub lease: i64,
}

/// What an [`Event`] did to its key (etcd's `mvccpb.Event.EventType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A put (creation or update).
    Put,
    /// A deletion.
    Delete,
}

/// One change of one key, as etcd's `mvccpb.Event`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// For a put, the key-value after the put. For a delete, only `key` and
    /// `mod_revision` (the deletion revision) are set, exactly as etcd sends it.
    pub kv: KeyValue,
    /// The key-value before the change, when it still exists in the store: the key's state at
    /// `kv.mod_revision - 1`, absent for creations and when that revision was compacted (the
    /// rule etcd's watch server applies when a watcher asked for `prev_kv`).
    pub prev_kv: Option<KeyValue>,
}

/// Sort order of a range (etcd's `RangeRequest.SortOrder`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortOrder {
    /// No sort requested (but see [`RangeRequest::sort_target`]).
    #[default]
    None,
    /// Lowest target first.
    Ascend,
    /// Highest target first.
    Descend,
}

/// Field a range is sorted by (etcd's `RangeRequest.SortTarget`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortTarget {
    /// The key.
    #[default]
    Key,
    /// The version.
    Version,
    /// The create revision.
    Create,
    /// The mod revision.
    Mod,
    /// The value.
    Value,
}

/// A read of a key or key range (etcd's `RangeRequest`).
///
/// Key selection, shared by every request with `key` and `range_end`: an empty `range_end`
/// selects the single key `key`; `range_end == [0]` selects every key `>= key` (so `key ==
/// [0]` too selects every key); otherwise the half-open interval `[key, range_end)`, empty
/// when `range_end <= key`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    /// First key (or the only key).
    pub key: Vec<u8>,
    /// End of the range, see above.
    pub range_end: Vec<u8>,
    /// Maximum number of keys returned; 0 or negative means no limit.
    pub limit: i64,
    /// Read the store as of this revision; 0 or negative means the current revision.
    pub revision: i64,
    /// Sort order.
    pub sort_order: SortOrder,
    /// Sort target.
    pub sort_target: SortTarget,
    /// Return keys without values.
    pub keys_only: bool,
    /// Return only the count.
    pub count_only: bool,
    /// Drop keys with a lower mod revision (0 = no filter). Filters do not change `count`.
    pub min_mod_revision: i64,
    /// Drop keys with a higher mod revision (0 = no filter).
    pub max_mod_revision: i64,
    /// Drop keys with a lower create revision (0 = no filter).
    pub min_create_revision: i64,
    /// Drop keys with a higher create revision (0 = no filter).
    pub max_create_revision: i64,
}

/// Answer to a [`RangeRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResponse {
    /// The selected key-values, after filters, sort and limit.
    pub kvs: Vec<KeyValue>,
    /// True when the limit cut the (filtered) result short.
    pub more: bool,
    /// Number of keys in the range at the read revision, ignoring limit and filters.
    pub count: i64,
    /// The revision etcd puts in this response's header: the store's current revision (inside
    /// a txn with earlier writes, the txn's revision).
    pub revision: i64,
}

/// A write of one key (etcd's `PutRequest`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutRequest {
    /// The key; must not be empty.
    pub key: Vec<u8>,
    /// The value; must be empty when `ignore_value` is set.
    pub value: Vec<u8>,
    /// Lease to attach, 0 for none; must exist. Must be 0 when `ignore_lease` is set.
    pub lease: i64,
    /// Return the key-value before the put.
    pub prev_kv: bool,
    /// Keep the current value (the key must exist).
    pub ignore_value: bool,
    /// Keep the current lease (the key must exist).
    pub ignore_lease: bool,
}

/// Answer to a [`PutRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutResponse {
    /// The key-value before the put, if asked for and the key existed.
    pub prev_kv: Option<KeyValue>,
    /// Header revision: the revision of the put.
    pub revision: i64,
}

/// A deletion of a key or key range (etcd's `DeleteRangeRequest`); key selection as in
/// [`RangeRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeRequest {
    /// First key (or the only key).
    pub key: Vec<u8>,
    /// End of the range.
    pub range_end: Vec<u8>,
    /// Return the deleted key-values.
    pub prev_kv: bool,
}

/// Answer to a [`DeleteRangeRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeResponse {
    /// Number of keys deleted.
    pub deleted: i64,
    /// The deleted key-values, if asked for, in key order.
    pub prev_kvs: Vec<KeyValue>,
    /// Header revision: the deletion's revision, or the unchanged current revision when
    /// nothing was deleted (a delete of nothing does not create a revision).
    pub revision: i64,
}

/// How a [`Compare`] compares (etcd's `Compare.CompareResult`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CompareResult {
    /// Target equal to the given value.
    #[default]
    Equal,
    /// Target greater than the given value.
    Greater,
    /// Target less than the given value.
    Less,
    /// Target different from the given value.
    NotEqual,
}

/// What a [`Compare`] looks at, with the value to compare against (etcd's
/// `Compare.target` + `target_union`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    /// The key's version (0 if the key does not exist).
    Version(i64),
    /// The key's create revision (0 if the key does not exist).
    CreateRevision(i64),
    /// The key's mod revision (0 if the key does not exist).
    ModRevision(i64),
    /// The key's value, compared bytewise. A value compare on a missing key is always false.
    Value(Vec<u8>),
    /// The key's lease (0 if none or the key does not exist).
    Lease(i64),
}

/// One condition of a txn (etcd's `Compare`). With a `range_end` (key selection as in
/// [`RangeRequest`]) every key in the range must satisfy it; an empty range compares as one
/// missing key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    /// The comparison.
    pub result: CompareResult,
    /// The target and the value to compare against.
    pub target: CompareTarget,
    /// The key; must not be empty.
    pub key: Vec<u8>,
    /// End of the range, empty for a single key.
    pub range_end: Vec<u8>,
}

/// One operation of a txn (etcd's `RequestOp`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOp {
    /// A read.
    Range(RangeRequest),
    /// A put.
    Put(PutRequest),
    /// A delete.
    DeleteRange(DeleteRangeRequest),
    /// A nested txn.
    Txn(TxnRequest),
}

/// The answer to one [`RequestOp`] (etcd's `ResponseOp`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseOp {
    /// Answer to a read.
    Range(RangeResponse),
    /// Answer to a put.
    Put(PutResponse),
    /// Answer to a delete.
    DeleteRange(DeleteRangeResponse),
    /// Answer to a nested txn.
    Txn(TxnResponse),
}

/// A transaction (etcd's `TxnRequest`): if every compare holds, run `success`, else
/// `failure`. All writes of the txn, nested txns included, share one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnRequest {
    /// Conditions, all evaluated against the store before the txn's writes (nested txns'
    /// compares too, as etcd does).
    pub compare: Vec<Compare>,
    /// Operations run when every compare holds.
    pub success: Vec<RequestOp>,
    /// Operations run otherwise.
    pub failure: Vec<RequestOp>,
}

/// Answer to a [`TxnRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether the compares held (and `success` ran).
    pub succeeded: bool,
    /// One answer per operation of the branch that ran.
    pub responses: Vec<ResponseOp>,
    /// Header revision: the store revision after the txn for the top-level txn; 0 in nested
    /// txn responses (etcd leaves their header revision unset).
    pub revision: i64,
}

/// Result of [`Store::hash_kv`](super::Store::hash_kv).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashKv {
    /// CRC-32 (IEEE) over every retained key revision up to the requested revision.
    pub hash: u32,
    /// The store's compact revision (-1 if never compacted).
    pub compact_revision: i64,
    /// The revision the hash covers (the current revision when 0 was asked for).
    pub hash_revision: i64,
}

/// Sizes of the store, for quotas and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Keys that currently exist (not deleted).
    pub live_keys: u64,
    /// Key revisions held (puts and tombstones not yet compacted), over all keys. After a
    /// compaction this counts what is still in memory: it drops as
    /// [`Store::compact_step`](super::Store::compact_step) releases revisions, not at once.
    pub total_revisions: u64,
    /// Approximate bytes held: keys, values and a fixed overhead per revision. Use it for
    /// `--quota-backend-bytes` and `etcd_mvcc_db_total_size_in_bytes`. Lags behind a
    /// compaction like `total_revisions`.
    pub approximate_bytes: u64,
}
