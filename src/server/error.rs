//! What the server core answers when a request fails.
//!
//! Every error the server layer (the raft core, apply, the shared state) hands back to a
//! client is one [`ServerError`]. Its `Display` is the exact text etcd sends for the same
//! condition; the gRPC code it travels with is chosen by the API layer, which converts a
//! `ServerError` into a gRPC status at its edge (`impl From<ServerError> for Status` in
//! `src/api/error.rs`). The server itself knows nothing of gRPC.

use keel_engine::mvcc::MvccError;

/// A request the server core could not carry out. Each variant names its etcd text and the
/// gRPC code the API layer sends with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerError {
    /// No leader is known, so nothing can be proposed or read linearizably. Retry once a
    /// leader is elected. Code: `Unavailable`.
    #[error("etcdserver: no leader")]
    NoLeader,
    /// The entry or the ReadIndex round did not come back within the request timeout (5 s plus
    /// two election timeouts). A write may still apply later. Code: `Unavailable`.
    #[error("etcdserver: request timed out")]
    RequestTimedOut,
    /// The member is shutting down; retry on another member. Code: `Unavailable`.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// The leader a lease question was sent to no longer leads, or could not be reached;
    /// etcd's clients retry. Code: `Unavailable`.
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    /// The WAL failed a write or sync while the request waited: the member refuses writes
    /// until it is restarted (a failed fsync is never retried). Code: `Internal`.
    #[error(
        "etcdserver: the write-ahead log failed to sync; this member refuses writes until it \
         is restarted"
    )]
    WalFailed,
    /// A proposal reached the raft core after its WAL had failed; carries the WAL's own error
    /// text. Code: `Internal`.
    #[error("{0}")]
    WalError(String),
    /// The NOSPACE alarm is raised (the store outgrew `--quota-backend-bytes`): nothing that
    /// adds data is accepted until the alarm is disarmed. Code: `ResourceExhausted`.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// The request is larger than `--max-request-bytes`. Code: `InvalidArgument`.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// A request field holds an enum value etcd does not define (a sort order, compare
    /// target or alarm action from a newer client). Code: `InvalidArgument`.
    #[error("etcdserver: invalid {field} {value}")]
    InvalidEnum {
        /// The field, as the text names it ("sort order", "alarm action").
        field: &'static str,
        /// The value received.
        value: i32,
    },
    /// A txn holds an operation with no request in it. Code: `InvalidArgument`.
    #[error("etcdserver: key is not provided")]
    EmptyTxnOp,
    /// The request needs the leader and this member does not lead. Code:
    /// `FailedPrecondition`.
    #[error("etcdserver: not leader")]
    NotLeader,
    /// MoveLeader named a member that is not a voter (unknown, or a learner). Code:
    /// `FailedPrecondition`.
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    /// The transferee did not take over within the request timeout. Code: `Unavailable`.
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimedOut,
    /// The MVCC store refused the request (a compacted or future revision, an unknown lease,
    /// a duplicate key in a txn...). Text and code are the engine's
    /// ([`MvccError::grpc_message`], [`MvccError::grpc_code`]).
    #[error("{}", .0.grpc_message())]
    Mvcc(#[from] MvccError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mvcc_errors_read_as_clients_see_them() {
        let error = ServerError::from(MvccError::LeaseNotFound);
        assert_eq!(error.to_string(), "etcdserver: requested lease not found");
    }

    #[test]
    fn invalid_enum_names_field_and_value() {
        let error = ServerError::InvalidEnum {
            field: "alarm action",
            value: 9,
        };
        assert_eq!(error.to_string(), "etcdserver: invalid alarm action 9");
    }
}
