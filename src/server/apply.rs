//! Applying commands to the state machine: the MVCC store, the alarm list and the lease
//! clocks.
//!
//! Apply is deterministic: the same entries in the same order give the same store on every
//! member and on every replay. Errors (an unknown lease, a compacted revision) are results,
//! not failures: the entry stays in the log and applies to the same error again on replay.

use std::sync::Arc;

use keel_engine::mvcc::Store;
use keel_proto::etcdserverpb as pb;

use crate::server::auth::{AuthInfo, AuthRef, TokenEffect};
use crate::server::command::Command;
use crate::server::convert;
use crate::server::error::ServerError;
use crate::server::membership;
use crate::server::state::{Applied, ApplyResult, LeaseClocks};
use crate::server::tokens::Tokens;

/// What apply may touch besides the store.
pub struct ApplyContext<'a> {
    /// Active alarms.
    pub alarms: &'a mut Vec<pb::AlarmMember>,
    /// The members and their published attributes.
    pub members: &'a mut Vec<pb::Member>,
    /// Lease clocks; `None` during replay at startup (every lease's clock starts when the
    /// member is ready, as etcd's lessor does when it is promoted).
    pub lease_clocks: Option<&'a mut LeaseClocks>,
    /// The auth state (copy-on-write: a change replaces it).
    pub auth: &'a mut AuthRef,
    /// The downgrade in progress, if any (etcd's `RaftCluster.downgradeInfo`).
    pub downgrade: &'a mut Option<pb::DowngradeInfo>,
    /// This member's tokens; `None` during replay at startup (tokens do not outlive a
    /// restart, as etcd's simple tokens do not).
    pub tokens: Option<&'a Tokens>,
    /// The index of the entry being applied.
    pub index: u64,
    /// True when a client proposed the entry (it has a request id): its permissions are
    /// checked at apply while auth is enabled, as no user when it names none. Commands the
    /// server decided on itself (lease expiry) are not checked.
    pub from_client: bool,
}

fn has_put(ops: &[pb::RequestOp]) -> bool {
    use pb::request_op::Request;
    ops.iter().any(|op| match &op.request {
        Some(Request::RequestPut(_)) => true,
        Some(Request::RequestTxn(txn)) => has_put(&txn.success) || has_put(&txn.failure),
        _ => false,
    })
}

/// True if the txn can write (any put or delete in any branch, nested included).
pub fn txn_writes(txn: &pb::TxnRequest) -> bool {
    fn writes(ops: &[pb::RequestOp]) -> bool {
        use pb::request_op::Request;
        ops.iter().any(|op| match &op.request {
            Some(Request::RequestPut(_)) | Some(Request::RequestDeleteRange(_)) => true,
            Some(Request::RequestTxn(txn)) => writes(&txn.success) || writes(&txn.failure),
            _ => false,
        })
    }
    writes(&txn.success) || writes(&txn.failure)
}

fn nospace(context: &ApplyContext<'_>) -> bool {
    context
        .alarms
        .iter()
        .any(|a| a.alarm == pb::AlarmType::Nospace as i32)
}

/// Applies one command.
pub fn apply(store: &mut Store, context: &mut ApplyContext<'_>, command: Command) -> ApplyResult {
    let (user, command) = command.without_user();
    if let Some(user) = user.or_else(|| context.from_client.then(AuthInfo::default)) {
        context.auth.check_command(store, &user, &command)?;
    }
    match command {
        Command::Put(request) => {
            // etcd's capped applier: with NOSPACE raised, nothing that adds data applies.
            if nospace(context) {
                return Err(ServerError::NoSpace);
            }
            let response = store.put(&convert::put_request_owned(request))?;
            Ok(Applied::Put(response))
        }
        Command::DeleteRange(request) => {
            let response = store.delete_range(&convert::delete_request_owned(request))?;
            Ok(Applied::DeleteRange(response))
        }
        Command::Txn(request) => {
            if nospace(context) && (has_put(&request.success) || has_put(&request.failure)) {
                return Err(ServerError::NoSpace);
            }
            let txn = convert::txn_request(&request)?;
            let response = store.txn(&txn)?;
            Ok(Applied::Txn(response))
        }
        Command::Compact(request) => {
            store.compact(request.revision)?;
            Ok(Applied::Compact {
                revision: store.current_revision(),
            })
        }
        Command::LeaseGrant(request) => {
            if nospace(context) {
                return Err(ServerError::NoSpace);
            }
            store.lease_grant(request.id, request.ttl)?;
            if let Some(clocks) = context.lease_clocks.as_deref_mut() {
                clocks.start(request.id, request.ttl);
            }
            Ok(Applied::LeaseGrant {
                id: request.id,
                ttl: request.ttl,
            })
        }
        Command::LeaseRevoke(request) => {
            let revoked = store.lease_revoke(request.id)?;
            if let Some(clocks) = context.lease_clocks.as_deref_mut() {
                clocks.remove(request.id);
            }
            Ok(Applied::LeaseRevoke {
                revision: revoked.revision,
            })
        }
        Command::Alarm(request) => apply_alarm(context.alarms, &request),
        Command::MemberAttributes(published) => {
            // etcd applies attributes only for a member of the cluster; others are ignored.
            if let Some(member) = context.members.iter_mut().find(|m| m.id == published.id) {
                member.name = published.name;
                member.client_ur_ls = published.client_ur_ls;
            }
            Ok(Applied::MemberAttributes)
        }
        Command::MemberUpdate(_) => {
            membership::apply(context.members, &mut Vec::new(), &command, usize::MAX)
        }
        // Configuration changes apply from their own entries (`raft::node`), never from a
        // normal entry: one found here was not written by Keel and changes nothing.
        Command::MemberAdd(_) | Command::MemberRemove(_) | Command::MemberPromote(_) => {
            Err(ServerError::MemberNotFound)
        }
        Command::Auth(change) => {
            let effect = Arc::make_mut(context.auth).apply(&change)?;
            if let Some(tokens) = context.tokens {
                match effect {
                    TokenEffect::None => {}
                    TokenEffect::InvalidateUser(user) => tokens.invalidate_user(&user),
                    TokenEffect::InvalidateAll => tokens.invalidate_all(),
                }
            }
            Ok(Applied::Auth {
                revision: store.current_revision(),
            })
        }
        Command::Authenticate(body) => {
            let auth_revision = context
                .auth
                .authenticate(&body.name, body.checked_revision)?;
            // A simple token is its random prefix and this entry's index, known to every
            // member that applies the entry.
            let token = context.tokens.filter(|t| t.is_simple()).map(|tokens| {
                let token = format!("{}.{}", body.simple_token, context.index);
                tokens.assign_simple(token.clone(), &body.name);
                token
            });
            Ok(Applied::Authenticated {
                username: body.name,
                auth_revision,
                token,
                revision: store.current_revision(),
            })
        }
        Command::DowngradeInfoSet(body) => {
            // etcd's `DowngradeInfoSet`: enabled with its target, or nothing in progress.
            *context.downgrade = body.enabled.then_some(pb::DowngradeInfo {
                enabled: true,
                target_version: body.ver,
            });
            Ok(Applied::DowngradeInfoSet)
        }
        // `without_user` took the one wrapper a command may have; decoding refuses more.
        Command::Authorized { .. } => Err(ServerError::InvalidAuthMgmt),
    }
}

fn apply_alarm(alarms: &mut Vec<pb::AlarmMember>, request: &pb::AlarmRequest) -> ApplyResult {
    use pb::alarm_request::AlarmAction;
    let member = pb::AlarmMember {
        member_id: request.member_id,
        alarm: request.alarm,
    };
    match AlarmAction::try_from(request.action) {
        Ok(AlarmAction::Get) => Ok(Applied::Alarm(alarms.clone())),
        Ok(AlarmAction::Activate) => {
            if request.alarm == pb::AlarmType::None as i32 {
                return Ok(Applied::Alarm(Vec::new()));
            }
            if !alarms.contains(&member) {
                alarms.push(member);
            }
            Ok(Applied::Alarm(vec![member]))
        }
        Ok(AlarmAction::Deactivate) => {
            let before = alarms.len();
            alarms.retain(|a| *a != member);
            // etcd answers a deactivation with the alarm it cleared, nothing if none was set.
            Ok(Applied::Alarm(if alarms.len() < before {
                vec![member]
            } else {
                Vec::new()
            }))
        }
        Err(_) => Err(ServerError::InvalidEnum {
            field: "alarm action",
            value: request.action,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str) -> Command {
        Command::Put(pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        })
    }

    #[test]
    fn nospace_refuses_puts_but_not_deletes() {
        let mut store = Store::new();
        let mut alarms = vec![pb::AlarmMember {
            member_id: 1,
            alarm: pb::AlarmType::Nospace as i32,
        }];
        let mut members = Vec::new();
        let mut auth = AuthRef::default();
        let mut downgrade = None;
        let mut context = ApplyContext {
            alarms: &mut alarms,
            members: &mut members,
            lease_clocks: None,
            auth: &mut auth,
            downgrade: &mut downgrade,
            tokens: None,
            index: 1,
            from_client: true,
        };
        let error = apply(&mut store, &mut context, put("a")).unwrap_err();
        assert_eq!(error, ServerError::NoSpace);
        let delete = Command::DeleteRange(pb::DeleteRangeRequest {
            key: b"a".to_vec(),
            ..Default::default()
        });
        assert!(apply(&mut store, &mut context, delete).is_ok());
    }

    #[test]
    fn alarms_activate_and_deactivate() {
        let mut store = Store::new();
        let mut alarms = Vec::new();
        let mut members = Vec::new();
        let mut auth = AuthRef::default();
        let mut downgrade = None;
        let mut context = ApplyContext {
            alarms: &mut alarms,
            members: &mut members,
            lease_clocks: None,
            auth: &mut auth,
            downgrade: &mut downgrade,
            tokens: None,
            index: 1,
            from_client: true,
        };
        let request = |action| {
            Command::Alarm(pb::AlarmRequest {
                action,
                member_id: 7,
                alarm: 1,
            })
        };
        apply(&mut store, &mut context, request(1)).unwrap();
        apply(&mut store, &mut context, request(1)).unwrap();
        assert_eq!(context.alarms.len(), 1);
        apply(&mut store, &mut context, request(2)).unwrap();
        assert!(context.alarms.is_empty());
    }

    #[test]
    fn txn_write_detection_sees_nested_ops() {
        use pb::request_op::Request;
        let nested = pb::TxnRequest {
            failure: vec![pb::RequestOp {
                request: Some(Request::RequestDeleteRange(Default::default())),
            }],
            ..Default::default()
        };
        let txn = pb::TxnRequest {
            success: vec![pb::RequestOp {
                request: Some(Request::RequestTxn(nested)),
            }],
            ..Default::default()
        };
        assert!(txn_writes(&txn));
        assert!(!txn_writes(&pb::TxnRequest::default()));
    }
}
