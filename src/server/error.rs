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
    /// MemberAdd for an id already in the cluster (etcd's `ErrIDExists`). Code:
    /// `FailedPrecondition`.
    #[error("etcdserver: member ID already exist")]
    MemberExists,
    /// A peer URL another member already uses (etcd's `ErrPeerURLexists`). Code:
    /// `FailedPrecondition`.
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    /// The member id is not in the cluster (or was removed). Code: `NotFound`.
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// MemberPromote of a member that is already a voter. Code: `FailedPrecondition`.
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    /// A learner beyond `--experimental-max-learners`. Code: `FailedPrecondition`.
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    /// MemberPromote of a learner whose log is behind 90% of the leader's. Code:
    /// `FailedPrecondition`.
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// The strict reconfiguration check: after the change too few voters would be connected
    /// to this member. Code: `Unavailable`.
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    /// The strict reconfiguration check: after the change too few voters would have started
    /// (published their name). etcd sends this text with code `Unknown` (its error table
    /// maps it to a client-side error, not a status); Keel does the same.
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    /// MemberAdd or MemberUpdate with peer URLs etcd cannot parse. Code: `InvalidArgument`.
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    /// A learner asked for anything but a serializable Range, Status or Snapshot. Code:
    /// `Unavailable`.
    #[error("etcdserver: rpc not supported for learner")]
    NotSupportedForLearner,
    /// AuthEnable without a user named root. Code: `FailedPrecondition`.
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    /// AuthEnable while the root user lacks the root role. Code: `FailedPrecondition`.
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    /// UserAdd of a name in use. Code: `FailedPrecondition`.
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    /// A request with no user while auth is enabled, or UserAdd with an empty name. Code:
    /// `InvalidArgument`.
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    /// The user does not exist. Code: `FailedPrecondition`.
    #[error("etcdserver: user name not found")]
    UserNotFound,
    /// RoleAdd of a name in use. Code: `FailedPrecondition`.
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    /// The role does not exist. Code: `FailedPrecondition`.
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    /// RoleAdd with an empty name. Code: `InvalidArgument`.
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    /// Authenticate with an unknown user or a wrong password. Code: `InvalidArgument`.
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// Authenticate as a user created with `--no-password`. etcd sends its auth store's
    /// text with code `Unknown` (its error table does not map it).
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    /// Authenticate on a member whose JWT provider has only a public key. Code: `Unknown`.
    #[error("auth: token signing attempted with verify-only key")]
    TokenVerifyOnly,
    /// RoleGrantPermission without a permission. Code: `InvalidArgument`.
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    /// The user's roles do not allow the request. Code: `PermissionDenied`.
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    /// UserRevokeRole of a role the user does not have. Code: `FailedPrecondition`.
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    /// RoleRevokePermission of a permission the role does not have. Code:
    /// `FailedPrecondition`.
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    /// Authenticate while auth is disabled. Code: `FailedPrecondition`.
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    /// A token that is unknown, expired or badly signed. Code: `Unauthenticated`.
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    /// Deleting root, its root role, or the root role itself while auth is enabled. Code:
    /// `InvalidArgument`.
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    /// The request's credentials were checked at an auth revision older than the store's.
    /// Code: `InvalidArgument`.
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// More password checks are waiting than the member takes on. Code:
    /// `ResourceExhausted`.
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    /// The MVCC store refused the request (a compacted or future revision, an unknown lease,
    /// a duplicate key in a txn...). Text and code are the engine's
    /// ([`MvccError::grpc_message`], [`MvccError::grpc_code`]).
    #[error("{}", .0.grpc_message())]
    Mvcc(#[from] MvccError),
}

impl ServerError {
    /// The error whose text is `text`, for errors that crossed the peer transport as text
    /// (a forwarded MemberPromote); `None` for a text no variant without fields has.
    pub fn from_text(text: &str) -> Option<ServerError> {
        [
            ServerError::NoLeader,
            ServerError::RequestTimedOut,
            ServerError::Stopped,
            ServerError::LeaderChanged,
            ServerError::NotLeader,
            ServerError::MemberExists,
            ServerError::PeerUrlExists,
            ServerError::MemberNotFound,
            ServerError::MemberNotLearner,
            ServerError::TooManyLearners,
            ServerError::LearnerNotReady,
            ServerError::Unhealthy,
            ServerError::NotEnoughStartedMembers,
            ServerError::NotSupportedForLearner,
            ServerError::PermissionDenied,
            ServerError::UserEmpty,
            ServerError::UserNotFound,
            ServerError::AuthOldRevision,
            ServerError::InvalidAuthToken,
        ]
        .into_iter()
        .find(|e| e.to_string() == text)
    }
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
    fn membership_errors_come_back_from_their_text() {
        for error in [ServerError::LearnerNotReady, ServerError::MemberNotFound] {
            assert_eq!(ServerError::from_text(&error.to_string()), Some(error));
        }
        assert_eq!(ServerError::from_text("something else"), None);
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
