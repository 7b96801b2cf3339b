//! Errors of the MVCC store, with etcd's exact texts.

/// Everything the MVCC store can refuse.
///
/// `Display` gives etcd's internal error text. [`MvccError::grpc_message`] and
/// [`MvccError::grpc_code`] give what etcd's gRPC layer sends to clients for the same
/// condition, so the server can map errors without a table of its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MvccError {
    /// A read, watch, compaction or hash asked for a revision that compaction removed.
    /// Client text: "etcdserver: mvcc: required revision has been compacted" (OutOfRange).
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    /// A read, compaction or hash asked for a revision the store has not reached.
    /// Client text: "etcdserver: mvcc: required revision is a future revision" (OutOfRange).
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    /// A put with `ignore_value` or `ignore_lease` names a key that does not exist.
    /// Client text: "etcdserver: key not found" (InvalidArgument).
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// A put names a lease that does not exist, or a lease operation names an unknown lease.
    /// Client text: "etcdserver: requested lease not found" (NotFound).
    #[error("lease not found")]
    LeaseNotFound,
    /// A lease grant reuses the id of an existing lease.
    /// Client text: "etcdserver: lease already exists" (FailedPrecondition).
    #[error("lease already exists")]
    LeaseExists,
    /// A lease grant asks for a TTL above [`LEASE_TTL_MAX_SECONDS`](super::LEASE_TTL_MAX_SECONDS).
    /// Client text: "etcdserver: too large lease TTL" (OutOfRange).
    #[error("too large lease TTL")]
    LeaseTtlTooLarge,
    /// A txn writes the same key twice (two puts, or a put inside a deleted range).
    /// Client text: "etcdserver: duplicate key given in txn request" (InvalidArgument).
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A request or compare has an empty key.
    /// Client text: "etcdserver: key is not provided" (InvalidArgument).
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// A put with `ignore_value` also carries a value.
    /// Client text: "etcdserver: value is provided" (InvalidArgument).
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// A put with `ignore_lease` also carries a lease.
    /// Client text: "etcdserver: lease is provided" (InvalidArgument).
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// A txn has more compares or operations per branch than allowed (`--max-txn-ops`).
    /// Client text: "etcdserver: too many operations in txn request" (InvalidArgument).
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// A checkpoint payload failed validation: it is not a checkpoint, was written by an
    /// unknown format version, or is damaged. The text says which check failed.
    #[error("mvcc checkpoint is invalid: {0}")]
    CorruptCheckpoint(String),
    /// The store is too large for the checkpoint format (an index above 2 GiB of archived
    /// records, or a value above 4 GiB).
    #[error("mvcc checkpoint cannot be written: {0}")]
    CheckpointTooLarge(String),
    /// A checkpoint encoder was stepped on a store other than the one it began on (the
    /// store was replaced, e.g. by a snapshot from the leader).
    #[error("mvcc checkpoint abandoned: the store was replaced while it was being encoded")]
    StoreReplaced,
}

/// gRPC status codes used by [`MvccError::grpc_code`] (numbers from the gRPC spec), so the
/// engine need not depend on a gRPC crate.
pub mod grpc_code {
    /// `INVALID_ARGUMENT`.
    pub const INVALID_ARGUMENT: i32 = 3;
    /// `NOT_FOUND`.
    pub const NOT_FOUND: i32 = 5;
    /// `FAILED_PRECONDITION`.
    pub const FAILED_PRECONDITION: i32 = 9;
    /// `OUT_OF_RANGE`.
    pub const OUT_OF_RANGE: i32 = 11;
    /// `INTERNAL`.
    pub const INTERNAL: i32 = 13;
    /// `DATA_LOSS`.
    pub const DATA_LOSS: i32 = 15;
}

impl MvccError {
    /// The message etcd's gRPC layer sends for this error.
    pub fn grpc_message(&self) -> String {
        match self {
            MvccError::Compacted => "etcdserver: mvcc: required revision has been compacted".into(),
            MvccError::FutureRevision => {
                "etcdserver: mvcc: required revision is a future revision".into()
            }
            MvccError::LeaseNotFound => "etcdserver: requested lease not found".into(),
            MvccError::LeaseExists => "etcdserver: lease already exists".into(),
            MvccError::LeaseTtlTooLarge => "etcdserver: too large lease TTL".into(),
            other => other.to_string(),
        }
    }

    /// The gRPC status code etcd uses for this error (see [`grpc_code`]).
    pub fn grpc_code(&self) -> i32 {
        match self {
            MvccError::Compacted | MvccError::FutureRevision | MvccError::LeaseTtlTooLarge => {
                grpc_code::OUT_OF_RANGE
            }
            MvccError::LeaseNotFound => grpc_code::NOT_FOUND,
            MvccError::LeaseExists => grpc_code::FAILED_PRECONDITION,
            MvccError::KeyNotFound
            | MvccError::DuplicateKey
            | MvccError::EmptyKey
            | MvccError::ValueProvided
            | MvccError::LeaseProvided
            | MvccError::TooManyOps => grpc_code::INVALID_ARGUMENT,
            MvccError::CorruptCheckpoint(_) => grpc_code::DATA_LOSS,
            MvccError::CheckpointTooLarge(_) | MvccError::StoreReplaced => grpc_code::INTERNAL,
        }
    }
}
