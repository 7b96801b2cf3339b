//! The gRPC status a client gets for each server error: etcd's exact code and text.
//!
//! The server core answers with a typed [`ServerError`] and never builds a gRPC status; this
//! is the one place a `ServerError` becomes a [`Status`], at the edge of the API layer (the
//! services' `?` calls the `From` impl).

use keel_engine::mvcc::MvccError;
use tonic::{Code, Status};

use crate::server::error::ServerError;

impl From<ServerError> for Status {
    fn from(error: ServerError) -> Status {
        let code = match &error {
            // The engine knows etcd's code and text for each of its errors.
            ServerError::Mvcc(mvcc) => {
                return Status::new(Code::from(mvcc.grpc_code()), mvcc.grpc_message())
            }
            ServerError::NoLeader
            | ServerError::RequestTimedOut
            | ServerError::Stopped
            | ServerError::LeaderChanged
            | ServerError::LeaderTransferTimedOut => Code::Unavailable,
            ServerError::NotLeader
            | ServerError::BadLeaderTransferee
            | ServerError::MemberExists
            | ServerError::PeerUrlExists
            | ServerError::MemberNotLearner
            | ServerError::TooManyLearners
            | ServerError::LearnerNotReady => Code::FailedPrecondition,
            ServerError::MemberNotFound => Code::NotFound,
            ServerError::Unhealthy | ServerError::NotSupportedForLearner => Code::Unavailable,
            // etcd's error table maps it to a client-side error value, so it leaves the
            // server as `Unknown` (clientv3 recognizes it by its text).
            ServerError::NotEnoughStartedMembers
            | ServerError::NoPasswordUser
            | ServerError::TokenVerifyOnly => Code::Unknown,
            ServerError::MemberBadUrls => Code::InvalidArgument,
            ServerError::RootUserNotExist
            | ServerError::RootRoleNotExist
            | ServerError::UserAlreadyExist
            | ServerError::UserNotFound
            | ServerError::RoleAlreadyExist
            | ServerError::RoleNotFound
            | ServerError::RoleNotGranted
            | ServerError::PermissionNotGranted
            | ServerError::AuthNotEnabled => Code::FailedPrecondition,
            ServerError::UserEmpty
            | ServerError::RoleEmpty
            | ServerError::AuthFailed
            | ServerError::PermissionNotGiven
            | ServerError::InvalidAuthMgmt
            | ServerError::AuthOldRevision => Code::InvalidArgument,
            ServerError::PermissionDenied => Code::PermissionDenied,
            ServerError::InvalidAuthToken => Code::Unauthenticated,
            ServerError::WalFailed | ServerError::WalError(_) => Code::Internal,
            ServerError::NoSpace | ServerError::TooManyRequests => Code::ResourceExhausted,
            ServerError::RequestTooLarge
            | ServerError::InvalidEnum { .. }
            | ServerError::EmptyTxnOp => Code::InvalidArgument,
        };
        // The `Display` of every other variant is etcd's text (see `server::error`).
        Status::new(code, error.to_string())
    }
}

/// An engine error as the gRPC status etcd sends for it (for checks the API layer runs
/// before a request reaches the server core).
pub fn mvcc_status(error: MvccError) -> Status {
    Status::from(ServerError::Mvcc(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(error: ServerError) -> (Code, String) {
        let status = Status::from(error);
        (status.code(), status.message().to_string())
    }

    /// Each variant against the code and text Keel sent before errors were typed (they are
    /// etcd's: `etcdserver/api/v3rpc/rpctypes/error.go`).
    #[test]
    fn every_variant_keeps_etcds_code_and_text() {
        let cases = [
            (
                ServerError::NoLeader,
                Code::Unavailable,
                "etcdserver: no leader",
            ),
            (
                ServerError::RequestTimedOut,
                Code::Unavailable,
                "etcdserver: request timed out",
            ),
            (
                ServerError::Stopped,
                Code::Unavailable,
                "etcdserver: server stopped",
            ),
            (
                ServerError::LeaderChanged,
                Code::Unavailable,
                "etcdserver: leader changed",
            ),
            (
                ServerError::WalFailed,
                Code::Internal,
                "etcdserver: the write-ahead log failed to sync; this member refuses writes \
                 until it is restarted",
            ),
            (
                ServerError::WalError("writing segment 3: Input/output error".into()),
                Code::Internal,
                "writing segment 3: Input/output error",
            ),
            (
                ServerError::NoSpace,
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
            ),
            (
                ServerError::RequestTooLarge,
                Code::InvalidArgument,
                "etcdserver: request is too large",
            ),
            (
                ServerError::InvalidEnum {
                    field: "sort order",
                    value: 7,
                },
                Code::InvalidArgument,
                "etcdserver: invalid sort order 7",
            ),
            (
                ServerError::InvalidEnum {
                    field: "alarm action",
                    value: 5,
                },
                Code::InvalidArgument,
                "etcdserver: invalid alarm action 5",
            ),
            (
                ServerError::MemberExists,
                Code::FailedPrecondition,
                "etcdserver: member ID already exist",
            ),
            (
                ServerError::PeerUrlExists,
                Code::FailedPrecondition,
                "etcdserver: Peer URLs already exists",
            ),
            (
                ServerError::MemberNotFound,
                Code::NotFound,
                "etcdserver: member not found",
            ),
            (
                ServerError::MemberNotLearner,
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member",
            ),
            (
                ServerError::TooManyLearners,
                Code::FailedPrecondition,
                "etcdserver: too many learner members in cluster",
            ),
            (
                ServerError::LearnerNotReady,
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member which is in sync with leader",
            ),
            (
                ServerError::Unhealthy,
                Code::Unavailable,
                "etcdserver: unhealthy cluster",
            ),
            (
                ServerError::NotEnoughStartedMembers,
                Code::Unknown,
                "etcdserver: re-configuration failed due to not enough started members",
            ),
            (
                ServerError::MemberBadUrls,
                Code::InvalidArgument,
                "etcdserver: given member URLs are invalid",
            ),
            (
                ServerError::NotSupportedForLearner,
                Code::Unavailable,
                "etcdserver: rpc not supported for learner",
            ),
            (
                ServerError::EmptyTxnOp,
                Code::InvalidArgument,
                "etcdserver: key is not provided",
            ),
            (
                ServerError::TooManyRequests,
                Code::ResourceExhausted,
                "etcdserver: too many requests",
            ),
            // Auth (etcd's api/v3rpc/rpctypes/error.go).
            (
                ServerError::RootUserNotExist,
                Code::FailedPrecondition,
                "etcdserver: root user does not exist",
            ),
            (
                ServerError::RootRoleNotExist,
                Code::FailedPrecondition,
                "etcdserver: root user does not have root role",
            ),
            (
                ServerError::UserAlreadyExist,
                Code::FailedPrecondition,
                "etcdserver: user name already exists",
            ),
            (
                ServerError::UserEmpty,
                Code::InvalidArgument,
                "etcdserver: user name is empty",
            ),
            (
                ServerError::UserNotFound,
                Code::FailedPrecondition,
                "etcdserver: user name not found",
            ),
            (
                ServerError::RoleAlreadyExist,
                Code::FailedPrecondition,
                "etcdserver: role name already exists",
            ),
            (
                ServerError::RoleNotFound,
                Code::FailedPrecondition,
                "etcdserver: role name not found",
            ),
            (
                ServerError::RoleEmpty,
                Code::InvalidArgument,
                "etcdserver: role name is empty",
            ),
            (
                ServerError::AuthFailed,
                Code::InvalidArgument,
                "etcdserver: authentication failed, invalid user ID or password",
            ),
            (
                ServerError::NoPasswordUser,
                Code::Unknown,
                "auth: authentication failed, password was given for no password user",
            ),
            (
                ServerError::TokenVerifyOnly,
                Code::Unknown,
                "auth: token signing attempted with verify-only key",
            ),
            (
                ServerError::PermissionNotGiven,
                Code::InvalidArgument,
                "etcdserver: permission not given",
            ),
            (
                ServerError::PermissionDenied,
                Code::PermissionDenied,
                "etcdserver: permission denied",
            ),
            (
                ServerError::RoleNotGranted,
                Code::FailedPrecondition,
                "etcdserver: role is not granted to the user",
            ),
            (
                ServerError::PermissionNotGranted,
                Code::FailedPrecondition,
                "etcdserver: permission is not granted to the role",
            ),
            (
                ServerError::AuthNotEnabled,
                Code::FailedPrecondition,
                "etcdserver: authentication is not enabled",
            ),
            (
                ServerError::InvalidAuthToken,
                Code::Unauthenticated,
                "etcdserver: invalid auth token",
            ),
            (
                ServerError::InvalidAuthMgmt,
                Code::InvalidArgument,
                "etcdserver: invalid auth management",
            ),
            (
                ServerError::AuthOldRevision,
                Code::InvalidArgument,
                "etcdserver: revision of auth store is old",
            ),
        ];
        for (error, code, text) in cases {
            assert_eq!(status(error.clone()), (code, text.to_string()), "{error:?}");
        }
    }

    #[test]
    fn mvcc_errors_keep_the_engines_code_and_text() {
        let cases = [
            (
                MvccError::Compacted,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                MvccError::FutureRevision,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            (
                MvccError::KeyNotFound,
                Code::InvalidArgument,
                "etcdserver: key not found",
            ),
            (
                MvccError::LeaseNotFound,
                Code::NotFound,
                "etcdserver: requested lease not found",
            ),
            (
                MvccError::LeaseExists,
                Code::FailedPrecondition,
                "etcdserver: lease already exists",
            ),
            (
                MvccError::LeaseTtlTooLarge,
                Code::OutOfRange,
                "etcdserver: too large lease TTL",
            ),
            (
                MvccError::DuplicateKey,
                Code::InvalidArgument,
                "etcdserver: duplicate key given in txn request",
            ),
            (
                MvccError::EmptyKey,
                Code::InvalidArgument,
                "etcdserver: key is not provided",
            ),
            (
                MvccError::TooManyOps,
                Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
        ];
        for (error, code, text) in cases {
            assert_eq!(
                status(ServerError::Mvcc(error.clone())),
                (code, text.to_string()),
                "{error:?}"
            );
            let direct = mvcc_status(error);
            assert_eq!((direct.code(), direct.message()), (code, text));
        }
    }
}
