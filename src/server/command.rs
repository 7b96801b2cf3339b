//! Commands: the state-machine operations that go through the raft log.
//!
//! Every write a client asks for becomes one [`Command`], carried as the data of one raft
//! entry ([`encode_data`]: the request id that finds the waiting client, a tag, and the etcd
//! protobuf message of the request), and is applied to the MVCC store in log order on every
//! member. The body of each command is the etcd protobuf message of the request it carries, so
//! the log stays readable with etcd's .proto files. `engine/FORMAT.md` ("Server log entries")
//! specifies every byte.
//!
//! [`decode_entry`] still reads the entries of format 1 (single-member Keel before raft), so
//! that an old data dir opens.

use keel_proto::etcdserverpb as pb;
use prost::Message;

use crate::server::auth::{AuthChange, AuthInfo};

/// Version byte at the start of a format-1 entry payload (before raft; still read).
pub const ENTRY_FORMAT_VERSION: u8 = 1;

/// Bytes before the command body: version (1), index (8), term (8), tag (1).
pub const ENTRY_HEADER_BYTES: usize = 18;

/// One state-machine operation.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// A put.
    Put(pb::PutRequest),
    /// A delete of a key or range.
    DeleteRange(pb::DeleteRangeRequest),
    /// A txn that may write.
    Txn(pb::TxnRequest),
    /// A compaction.
    Compact(pb::CompactionRequest),
    /// A lease grant with its id and TTL already chosen.
    LeaseGrant(pb::LeaseGrantRequest),
    /// A lease revocation (asked by a client, or decided by expiry).
    LeaseRevoke(pb::LeaseRevokeRequest),
    /// Raising or clearing an alarm.
    Alarm(pb::AlarmRequest),
    /// A member publishing its name and client URLs (etcd's `ClusterMemberAttrSetRequest`):
    /// `id`, `name` and `client_ur_ls` are set.
    MemberAttributes(pb::Member),
    /// A member added (MemberAdd): `id`, `peer_ur_ls` and `is_learner` are set. Travels as a
    /// raft configuration change (see [`Command::is_conf_change`]).
    MemberAdd(pb::Member),
    /// A member removed (MemberRemove); a configuration change.
    MemberRemove(pb::MemberRemoveRequest),
    /// A learner made a voter (MemberPromote); a configuration change.
    MemberPromote(pb::MemberPromoteRequest),
    /// A member's peer URLs changed (MemberUpdate). raft's configuration does not change, so
    /// this is a normal entry.
    MemberUpdate(pb::MemberUpdateRequest),
    /// An auth change (AuthEnable, UserAdd, RoleGrantPermission...), passwords already
    /// hashed; one tag per kind, the body the etcd request.
    Auth(AuthChange),
    /// Authenticate: hands a token to a user whose password the proposing member checked.
    Authenticate(AuthenticateBody),
    /// Starting (Downgrade ENABLE) or ending (CANCEL) a cluster downgrade, etcd's
    /// `DowngradeInfoSetRequest`.
    DowngradeInfoSet(DowngradeInfoSetBody),
    /// A client's command with the user that sent it, proposed while auth was enabled: apply
    /// checks the user's permissions before the command.
    Authorized {
        /// Who sent it, and the auth revision their credentials were checked at.
        user: AuthInfo,
        /// The command.
        command: Box<Command>,
    },
}

/// The body of an Authenticate entry, etcd's `InternalAuthenticateRequest` (field numbers
/// as etcd's). The password is never written to the log.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AuthenticateBody {
    /// The user.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The random prefix of the simple token (the entry's index is appended at apply).
    #[prost(string, tag = "3")]
    pub simple_token: String,
    /// Keel's: the auth revision the password was checked at; apply hands out no token if
    /// the auth state changed since (0: not checked, as an etcd entry).
    #[prost(uint64, tag = "15")]
    pub checked_revision: u64,
}

/// The body of a [`Command::DowngradeInfoSet`] entry, etcd's `membershippb.DowngradeInfoSetRequest`
/// (field numbers as etcd's).
#[derive(Clone, PartialEq, prost::Message)]
pub struct DowngradeInfoSetBody {
    /// True to start a downgrade, false to end it.
    #[prost(bool, tag = "1")]
    pub enabled: bool,
    /// The target version, `X.Y.0` (empty when ending).
    #[prost(string, tag = "2")]
    pub ver: String,
}

/// The body of an [`Command::Authorized`] entry: the user (as etcd's `RequestHeader` carries
/// it), then the tag and body of the command.
#[derive(Clone, PartialEq, prost::Message)]
struct AuthorizedBody {
    #[prost(string, tag = "2")]
    username: String,
    #[prost(uint64, tag = "3")]
    auth_revision: u64,
    #[prost(uint32, tag = "4")]
    tag: u32,
    #[prost(bytes = "vec", tag = "5")]
    body: Vec<u8>,
}

impl Command {
    fn tag(&self) -> u8 {
        match self {
            Command::Put(_) => 1,
            Command::DeleteRange(_) => 2,
            Command::Txn(_) => 3,
            Command::Compact(_) => 4,
            Command::LeaseGrant(_) => 5,
            Command::LeaseRevoke(_) => 6,
            Command::Alarm(_) => 7,
            Command::MemberAttributes(_) => 8,
            Command::MemberAdd(_) => 9,
            Command::MemberRemove(_) => 10,
            Command::MemberPromote(_) => 11,
            Command::MemberUpdate(_) => 12,
            Command::Auth(change) => match change {
                AuthChange::Enable => 13,
                AuthChange::Disable => 14,
                AuthChange::UserAdd(_) => 15,
                AuthChange::UserDelete(_) => 16,
                AuthChange::UserChangePassword(_) => 17,
                AuthChange::UserGrantRole(_) => 18,
                AuthChange::UserRevokeRole(_) => 19,
                AuthChange::RoleAdd(_) => 20,
                AuthChange::RoleDelete(_) => 21,
                AuthChange::RoleGrantPermission(_) => 22,
                AuthChange::RoleRevokePermission(_) => 23,
            },
            Command::Authenticate(_) => 24,
            Command::Authorized { .. } => 25,
            Command::DowngradeInfoSet(_) => 26,
        }
    }

    /// The command without its user, and the user when it has one.
    pub fn without_user(self) -> (Option<AuthInfo>, Command) {
        match self {
            Command::Authorized { user, command } => (Some(user), *command),
            command => (None, command),
        }
    }

    /// Encodes an [`AuthorizedBody`] for `user` and `command` straight into `out`, without
    /// first encoding the command into a buffer of its own (the same bytes the message's
    /// derived encoding gives; tested).
    fn encode_authorized(user: &AuthInfo, command: &Command, out: &mut Vec<u8>) {
        use prost::encoding::{encode_key, encode_varint, string, uint32, uint64, WireType};
        if !user.username.is_empty() {
            string::encode(2, &user.username, out);
        }
        if user.revision != 0 {
            uint64::encode(3, &user.revision, out);
        }
        uint32::encode(4, &u32::from(command.tag()), out);
        let body_len = command.body_len();
        if body_len != 0 {
            encode_key(5, WireType::LengthDelimited, out);
            encode_varint(body_len as u64, out);
            command.encode_body(out);
        }
    }

    fn authorized_len(user: &AuthInfo, command: &Command) -> usize {
        use prost::encoding::{encoded_len_varint, key_len, string, uint32, uint64};
        let mut len = uint32::encoded_len(4, &u32::from(command.tag()));
        if !user.username.is_empty() {
            len += string::encoded_len(2, &user.username);
        }
        if user.revision != 0 {
            len += uint64::encoded_len(3, &user.revision);
        }
        let body_len = command.body_len();
        if body_len != 0 {
            len += key_len(5) + encoded_len_varint(body_len as u64) + body_len;
        }
        len
    }

    /// True for the commands that change raft's configuration: they travel as the context of
    /// a `ConfChangeV2` entry (one change each), not as a normal entry.
    pub fn is_conf_change(&self) -> bool {
        matches!(
            self,
            Command::MemberAdd(_) | Command::MemberRemove(_) | Command::MemberPromote(_)
        )
    }

    /// Size of the request body as etcd measures it for `--max-request-bytes`.
    pub fn body_len(&self) -> usize {
        match self {
            Command::Put(r) => r.encoded_len(),
            Command::DeleteRange(r) => r.encoded_len(),
            Command::Txn(r) => r.encoded_len(),
            Command::Compact(r) => r.encoded_len(),
            Command::LeaseGrant(r) => r.encoded_len(),
            Command::LeaseRevoke(r) => r.encoded_len(),
            Command::Alarm(r) => r.encoded_len(),
            Command::MemberAttributes(r) => r.encoded_len(),
            Command::MemberAdd(r) => r.encoded_len(),
            Command::MemberRemove(r) => r.encoded_len(),
            Command::MemberPromote(r) => r.encoded_len(),
            Command::MemberUpdate(r) => r.encoded_len(),
            Command::Auth(change) => match change {
                AuthChange::Enable => pb::AuthEnableRequest {}.encoded_len(),
                AuthChange::Disable => pb::AuthDisableRequest {}.encoded_len(),
                AuthChange::UserAdd(r) => r.encoded_len(),
                AuthChange::UserDelete(r) => r.encoded_len(),
                AuthChange::UserChangePassword(r) => r.encoded_len(),
                AuthChange::UserGrantRole(r) => r.encoded_len(),
                AuthChange::UserRevokeRole(r) => r.encoded_len(),
                AuthChange::RoleAdd(r) => r.encoded_len(),
                AuthChange::RoleDelete(r) => r.encoded_len(),
                AuthChange::RoleGrantPermission(r) => r.encoded_len(),
                AuthChange::RoleRevokePermission(r) => r.encoded_len(),
            },
            Command::Authenticate(r) => r.encoded_len(),
            Command::Authorized { user, command } => Command::authorized_len(user, command),
            Command::DowngradeInfoSet(r) => r.encoded_len(),
        }
    }

    /// Appends the format-1 entry payload for this command at log position (`index`,
    /// `term`). Only tests write format 1 now (to check that old data dirs still open).
    pub fn encode_entry(&self, index: u64, term: u64, out: &mut Vec<u8>) {
        out.reserve(ENTRY_HEADER_BYTES + self.body_len());
        out.push(ENTRY_FORMAT_VERSION);
        out.extend_from_slice(&index.to_le_bytes());
        out.extend_from_slice(&term.to_le_bytes());
        out.push(self.tag());
        self.encode_body(out);
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        // Encoding into a Vec cannot run out of space.
        let _ = match self {
            Command::Put(r) => r.encode(out),
            Command::DeleteRange(r) => r.encode(out),
            Command::Txn(r) => r.encode(out),
            Command::Compact(r) => r.encode(out),
            Command::LeaseGrant(r) => r.encode(out),
            Command::LeaseRevoke(r) => r.encode(out),
            Command::Alarm(r) => r.encode(out),
            Command::MemberAttributes(r) => r.encode(out),
            Command::MemberAdd(r) => r.encode(out),
            Command::MemberRemove(r) => r.encode(out),
            Command::MemberPromote(r) => r.encode(out),
            Command::MemberUpdate(r) => r.encode(out),
            Command::Auth(change) => match change {
                AuthChange::Enable => pb::AuthEnableRequest {}.encode(out),
                AuthChange::Disable => pb::AuthDisableRequest {}.encode(out),
                AuthChange::UserAdd(r) => r.encode(out),
                AuthChange::UserDelete(r) => r.encode(out),
                AuthChange::UserChangePassword(r) => r.encode(out),
                AuthChange::UserGrantRole(r) => r.encode(out),
                AuthChange::UserRevokeRole(r) => r.encode(out),
                AuthChange::RoleAdd(r) => r.encode(out),
                AuthChange::RoleDelete(r) => r.encode(out),
                AuthChange::RoleGrantPermission(r) => r.encode(out),
                AuthChange::RoleRevokePermission(r) => r.encode(out),
            },
            Command::Authenticate(r) => r.encode(out),
            Command::Authorized { user, command } => {
                Command::encode_authorized(user, command, out);
                Ok(())
            }
            Command::DowngradeInfoSet(r) => r.encode(out),
        };
    }
}

/// Bytes of raft entry data before the command body: request id (8), tag (1).
pub const DATA_HEADER_BYTES: usize = 9;

/// The data of the raft entry that carries `command`, proposed by the client request
/// `request_id` (0 for commands no client waits for).
pub fn encode_data(request_id: u64, command: &Command) -> Vec<u8> {
    let mut out = Vec::with_capacity(DATA_HEADER_BYTES + command.body_len());
    out.extend_from_slice(&request_id.to_le_bytes());
    out.push(command.tag());
    command.encode_body(&mut out);
    out
}

/// Decodes raft entry data written by [`encode_data`]: the request id and the command.
pub fn decode_data(data: &[u8]) -> Result<(u64, Command), EntryDecodeError> {
    if data.len() < DATA_HEADER_BYTES {
        return Err(EntryDecodeError(format!(
            "entry data of {} bytes, shorter than its {DATA_HEADER_BYTES}-byte header",
            data.len()
        )));
    }
    let request_id = u64::from_le_bytes(data[0..8].try_into().expect("8 bytes"));
    let command = decode_command(data[8], &data[DATA_HEADER_BYTES..])?;
    Ok((request_id, command))
}

fn decode_command(tag: u8, body: &[u8]) -> Result<Command, EntryDecodeError> {
    let bad = |e: prost::DecodeError| EntryDecodeError(format!("tag {tag}: {e}"));
    Ok(match tag {
        1 => Command::Put(pb::PutRequest::decode(body).map_err(bad)?),
        2 => Command::DeleteRange(pb::DeleteRangeRequest::decode(body).map_err(bad)?),
        3 => Command::Txn(pb::TxnRequest::decode(body).map_err(bad)?),
        4 => Command::Compact(pb::CompactionRequest::decode(body).map_err(bad)?),
        5 => Command::LeaseGrant(pb::LeaseGrantRequest::decode(body).map_err(bad)?),
        6 => Command::LeaseRevoke(pb::LeaseRevokeRequest::decode(body).map_err(bad)?),
        7 => Command::Alarm(pb::AlarmRequest::decode(body).map_err(bad)?),
        8 => Command::MemberAttributes(pb::Member::decode(body).map_err(bad)?),
        9 => Command::MemberAdd(pb::Member::decode(body).map_err(bad)?),
        10 => Command::MemberRemove(pb::MemberRemoveRequest::decode(body).map_err(bad)?),
        11 => Command::MemberPromote(pb::MemberPromoteRequest::decode(body).map_err(bad)?),
        12 => Command::MemberUpdate(pb::MemberUpdateRequest::decode(body).map_err(bad)?),
        13 => {
            pb::AuthEnableRequest::decode(body).map_err(bad)?;
            Command::Auth(AuthChange::Enable)
        }
        14 => {
            pb::AuthDisableRequest::decode(body).map_err(bad)?;
            Command::Auth(AuthChange::Disable)
        }
        15 => Command::Auth(AuthChange::UserAdd(
            pb::AuthUserAddRequest::decode(body).map_err(bad)?,
        )),
        16 => Command::Auth(AuthChange::UserDelete(
            pb::AuthUserDeleteRequest::decode(body).map_err(bad)?,
        )),
        17 => Command::Auth(AuthChange::UserChangePassword(
            pb::AuthUserChangePasswordRequest::decode(body).map_err(bad)?,
        )),
        18 => Command::Auth(AuthChange::UserGrantRole(
            pb::AuthUserGrantRoleRequest::decode(body).map_err(bad)?,
        )),
        19 => Command::Auth(AuthChange::UserRevokeRole(
            pb::AuthUserRevokeRoleRequest::decode(body).map_err(bad)?,
        )),
        20 => Command::Auth(AuthChange::RoleAdd(
            pb::AuthRoleAddRequest::decode(body).map_err(bad)?,
        )),
        21 => Command::Auth(AuthChange::RoleDelete(
            pb::AuthRoleDeleteRequest::decode(body).map_err(bad)?,
        )),
        22 => Command::Auth(AuthChange::RoleGrantPermission(
            pb::AuthRoleGrantPermissionRequest::decode(body).map_err(bad)?,
        )),
        23 => Command::Auth(AuthChange::RoleRevokePermission(
            pb::AuthRoleRevokePermissionRequest::decode(body).map_err(bad)?,
        )),
        24 => Command::Authenticate(AuthenticateBody::decode(body).map_err(bad)?),
        25 => {
            let wrapped = AuthorizedBody::decode(body).map_err(bad)?;
            let inner_tag = u8::try_from(wrapped.tag)
                .ok()
                .filter(|t| *t != 25)
                .ok_or_else(|| EntryDecodeError(format!("tag 25 wraps tag {}", wrapped.tag)))?;
            Command::Authorized {
                user: AuthInfo {
                    username: wrapped.username,
                    revision: wrapped.auth_revision,
                },
                command: Box::new(decode_command(inner_tag, &wrapped.body)?),
            }
        }
        26 => Command::DowngradeInfoSet(DowngradeInfoSetBody::decode(body).map_err(bad)?),
        tag => return Err(EntryDecodeError(format!("unknown tag {tag}"))),
    })
}

/// A decoded entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Position in the log, from 1, without gaps.
    pub index: u64,
    /// Raft term of the entry.
    pub term: u64,
    /// The operation.
    pub command: Command,
}

/// An entry payload that cannot be decoded: the WAL's CRC matched, so this is a bug or a
/// format from another version, never a torn write.
#[derive(Debug, thiserror::Error)]
#[error("log entry cannot be decoded: {0}")]
pub struct EntryDecodeError(String);

/// Decodes an entry payload written by [`Command::encode_entry`].
pub fn decode_entry(payload: &[u8]) -> Result<Entry, EntryDecodeError> {
    if payload.len() < ENTRY_HEADER_BYTES {
        return Err(EntryDecodeError(format!(
            "{} bytes, shorter than the {ENTRY_HEADER_BYTES}-byte header",
            payload.len()
        )));
    }
    if payload[0] != ENTRY_FORMAT_VERSION {
        return Err(EntryDecodeError(format!(
            "format version {} (this build reads {ENTRY_FORMAT_VERSION})",
            payload[0]
        )));
    }
    let index = u64::from_le_bytes(payload[1..9].try_into().expect("8 bytes"));
    let term = u64::from_le_bytes(payload[9..17].try_into().expect("8 bytes"));
    let body = &payload[ENTRY_HEADER_BYTES..];
    let command = decode_command(payload[17], body)
        .map_err(|e| EntryDecodeError(format!("entry {index}: {}", e.0)))?;
    Ok(Entry {
        index,
        term,
        command,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let commands = [
            Command::Put(pb::PutRequest {
                key: b"k".to_vec(),
                value: vec![7; 300],
                lease: 5,
                ..Default::default()
            }),
            Command::Txn(pb::TxnRequest::default()),
            Command::LeaseRevoke(pb::LeaseRevokeRequest { id: 9 }),
            Command::Alarm(pb::AlarmRequest {
                action: 1,
                member_id: 3,
                alarm: 1,
            }),
        ];
        for (i, command) in commands.iter().enumerate() {
            let mut payload = Vec::new();
            command.encode_entry(i as u64 + 1, 2, &mut payload);
            let entry = decode_entry(&payload).unwrap();
            assert_eq!(entry.index, i as u64 + 1);
            assert_eq!(entry.term, 2);
            assert_eq!(&entry.command, command);
        }
    }

    #[test]
    fn data_round_trips_with_its_request_id() {
        let command = Command::MemberAttributes(pb::Member {
            id: 7,
            name: "m1".into(),
            client_ur_ls: vec!["http://127.0.0.1:2379".into()],
            ..Default::default()
        });
        let data = encode_data(0xfeed, &command);
        assert_eq!(decode_data(&data).unwrap(), (0xfeed, command));
        assert!(decode_data(&data[..5]).is_err());
        let mut bad = data.clone();
        bad[8] = 200;
        assert!(decode_data(&bad).is_err());
    }

    #[test]
    fn auth_commands_round_trip_with_their_user() {
        let commands = [
            Command::Auth(AuthChange::Enable),
            Command::Auth(AuthChange::UserAdd(pb::AuthUserAddRequest {
                name: "alice".into(),
                hashed_password: "$2b$10$hash".into(),
                ..Default::default()
            })),
            Command::Authenticate(AuthenticateBody {
                name: "alice".into(),
                simple_token: "abc".into(),
                checked_revision: 3,
            }),
            Command::DowngradeInfoSet(DowngradeInfoSetBody {
                enabled: true,
                ver: "3.4.0".into(),
            }),
            Command::Authorized {
                user: AuthInfo {
                    username: "alice".into(),
                    revision: 4,
                },
                command: Box::new(Command::Put(pb::PutRequest {
                    key: b"k".to_vec(),
                    ..Default::default()
                })),
            },
        ];
        for command in commands {
            let data = encode_data(3, &command);
            assert_eq!(data.len(), DATA_HEADER_BYTES + command.body_len());
            assert_eq!(decode_data(&data).unwrap(), (3, command));
        }
        // The hand-written encoding is the message's own.
        let user = AuthInfo {
            username: "bob".into(),
            revision: 300,
        };
        let put = Command::Put(pb::PutRequest {
            key: b"k".to_vec(),
            value: vec![1; 200],
            ..Default::default()
        });
        for (user, command) in [
            (user.clone(), put.clone()),
            (AuthInfo::default(), put),
            (user, Command::Auth(AuthChange::Enable)),
        ] {
            let mut body = Vec::new();
            command.encode_body(&mut body);
            let expected = AuthorizedBody {
                username: user.username.clone(),
                auth_revision: user.revision,
                tag: u32::from(command.tag()),
                body,
            }
            .encode_to_vec();
            let authorized = Command::Authorized {
                user,
                command: Box::new(command),
            };
            let mut encoded = Vec::new();
            authorized.encode_body(&mut encoded);
            assert_eq!(encoded, expected);
            assert_eq!(authorized.body_len(), expected.len());
        }
        // An authorized command wrapping another is refused, not recursed into.
        let inner = Command::Authorized {
            user: AuthInfo::default(),
            command: Box::new(Command::Auth(AuthChange::Disable)),
        };
        let outer = Command::Authorized {
            user: AuthInfo::default(),
            command: Box::new(inner),
        };
        assert!(decode_data(&encode_data(1, &outer)).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_entry(&[]).is_err());
        assert!(decode_entry(&[2; 40]).is_err());
        let mut payload = Vec::new();
        Command::Put(pb::PutRequest::default()).encode_entry(1, 1, &mut payload);
        payload[17] = 99;
        assert!(decode_entry(&payload).is_err());
    }
}
