//! The bytes the raft core writes: WAL record payloads (raft entries, hard states, snapshot
//! markers) and the state-machine checkpoint payload. `engine/FORMAT.md` ("Server log
//! entries" and "State-machine checkpoint payload") specifies every byte; this module is
//! the only code that reads or writes them.
//!
//! Raft entries are written in format 2. Format 1 (single-member Keel before raft: every entry
//! a client write, all of them committed) is still read, so an old data dir opens and is
//! carried forward: its entries keep their index and term, and the first hard state written
//! commits them.

use keel_proto::etcdserverpb as pb;
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState};

use crate::server::command::{self, Command};

/// Version byte of a format-2 entry payload.
pub const ENTRY_FORMAT_V2: u8 = 2;
/// Bytes of a format-2 entry payload before the entry data: version, index, term, kind.
pub const ENTRY_V2_HEADER_BYTES: usize = 18;
/// Version byte of a hard-state payload.
pub const HARD_STATE_FORMAT: u8 = 1;
/// Version byte of a snapshot-marker payload.
pub const SNAPSHOT_MARKER_FORMAT: u8 = 1;
/// Magic at the start of a state-machine checkpoint payload.
pub const STATE_MAGIC: &[u8; 8] = b"KEELSTAT";
/// Magic at the start of the MVCC payload (a format-1 checkpoint holds only that).
pub const MVCC_MAGIC: &[u8; 8] = b"KEELMVCC";
/// Version of the state-machine checkpoint payload written (2: with the auth section; 1,
/// without it, is still read).
pub const STATE_FORMAT_VERSION: u32 = 2;

/// What kind of raft entry a format-2 payload holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EntryKind {
    /// A client write or a write the server decided on (data: [`command::encode_data`]).
    Normal = 0,
    /// The empty entry a new leader appends (no data).
    Empty = 1,
    /// A raft-rs `ConfChange` (data: its protobuf encoding).
    ConfChange = 2,
    /// A raft-rs `ConfChangeV2` (data: its protobuf encoding).
    ConfChangeV2 = 3,
}

/// A WAL payload that cannot be decoded. The WAL's CRC matched, so this is a bug or a format
/// from another version, never a torn write.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RecordDecodeError(pub String);

fn bad(text: impl Into<String>) -> RecordDecodeError {
    RecordDecodeError(text.into())
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// The format-2 WAL payload of a raft entry.
pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    let kind = match entry.get_entry_type() {
        EntryType::EntryNormal if entry.data.is_empty() => EntryKind::Empty,
        EntryType::EntryNormal => EntryKind::Normal,
        EntryType::EntryConfChange => EntryKind::ConfChange,
        EntryType::EntryConfChangeV2 => EntryKind::ConfChangeV2,
    };
    let mut out = Vec::with_capacity(ENTRY_V2_HEADER_BYTES + entry.data.len());
    out.push(ENTRY_FORMAT_V2);
    out.extend_from_slice(&entry.index.to_le_bytes());
    out.extend_from_slice(&entry.term.to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(&entry.data);
    out
}

/// Decodes an entry payload of format 2, or of format 1 (converted to a normal raft entry with
/// request id 0).
pub fn decode_entry(payload: &[u8]) -> Result<Entry, RecordDecodeError> {
    match payload.first() {
        Some(&ENTRY_FORMAT_V2) => {
            if payload.len() < ENTRY_V2_HEADER_BYTES {
                return Err(bad(format!(
                    "entry payload of {} bytes, shorter than its header",
                    payload.len()
                )));
            }
            let mut entry = Entry {
                index: u64_at(payload, 1),
                term: u64_at(payload, 9),
                ..Default::default()
            };
            let data = &payload[ENTRY_V2_HEADER_BYTES..];
            let entry_type = match payload[17] {
                0 if !data.is_empty() => EntryType::EntryNormal,
                1 if data.is_empty() => EntryType::EntryNormal,
                2 => EntryType::EntryConfChange,
                3 => EntryType::EntryConfChangeV2,
                kind => {
                    return Err(bad(format!(
                        "entry {}: kind {kind} with {} bytes of data",
                        entry.index,
                        data.len()
                    )))
                }
            };
            entry.set_entry_type(entry_type);
            entry.data = data.to_vec().into();
            Ok(entry)
        }
        Some(&command::ENTRY_FORMAT_VERSION) => {
            let old = command::decode_entry(payload).map_err(|e| bad(e.to_string()))?;
            let mut entry = Entry {
                index: old.index,
                term: old.term,
                data: command::encode_data(0, &old.command).into(),
                ..Default::default()
            };
            entry.set_entry_type(EntryType::EntryNormal);
            Ok(entry)
        }
        Some(version) => Err(bad(format!(
            "entry format version {version} (this build reads 1 and 2)"
        ))),
        None => Err(bad("empty entry payload")),
    }
}

/// True for a format-1 entry payload (written before raft).
pub fn is_format1_entry(payload: &[u8]) -> bool {
    payload.first() == Some(&command::ENTRY_FORMAT_VERSION)
}

/// The WAL payload of a hard state: version, term, vote, commit.
pub fn encode_hard_state(state: &HardState) -> Vec<u8> {
    let mut out = Vec::with_capacity(25);
    out.push(HARD_STATE_FORMAT);
    out.extend_from_slice(&state.term.to_le_bytes());
    out.extend_from_slice(&state.vote.to_le_bytes());
    out.extend_from_slice(&state.commit.to_le_bytes());
    out
}

/// Decodes a hard-state payload.
pub fn decode_hard_state(payload: &[u8]) -> Result<HardState, RecordDecodeError> {
    if payload.len() != 25 || payload[0] != HARD_STATE_FORMAT {
        return Err(bad(format!(
            "hard state payload of {} bytes, version {:?}",
            payload.len(),
            payload.first()
        )));
    }
    Ok(HardState {
        term: u64_at(payload, 1),
        vote: u64_at(payload, 9),
        commit: u64_at(payload, 17),
        ..Default::default()
    })
}

/// A snapshot marker: the raft log restarts after `index` (a snapshot from the leader was
/// installed; its state is the checkpoint file of that index).
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotMarker {
    /// Index of the last entry the snapshot covers.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// The configuration at that index.
    pub conf_state: ConfState,
}

/// The WAL payload of a snapshot marker: version, index, term, ConfState (raft-rs protobuf).
pub fn encode_snapshot_marker(marker: &SnapshotMarker) -> Vec<u8> {
    let conf = marker
        .conf_state
        .write_to_bytes()
        .expect("encoding a ConfState cannot fail");
    let mut out = Vec::with_capacity(17 + conf.len());
    out.push(SNAPSHOT_MARKER_FORMAT);
    out.extend_from_slice(&marker.index.to_le_bytes());
    out.extend_from_slice(&marker.term.to_le_bytes());
    out.extend_from_slice(&conf);
    out
}

/// Decodes a snapshot-marker payload.
pub fn decode_snapshot_marker(payload: &[u8]) -> Result<SnapshotMarker, RecordDecodeError> {
    if payload.len() < 17 || payload[0] != SNAPSHOT_MARKER_FORMAT {
        return Err(bad(format!(
            "snapshot marker payload of {} bytes, version {:?}",
            payload.len(),
            payload.first()
        )));
    }
    let conf_state = ConfState::parse_from_bytes(&payload[17..])
        .map_err(|e| bad(format!("snapshot marker ConfState: {e}")))?;
    Ok(SnapshotMarker {
        index: u64_at(payload, 1),
        term: u64_at(payload, 9),
        conf_state,
    })
}

/// Everything a checkpoint holds besides the MVCC store: what a member needs to continue the
/// raft log from the checkpoint's index.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateMeta {
    /// Term of the entry at the checkpoint's index.
    pub term: u64,
    /// The raft configuration at that index.
    pub conf_state: ConfState,
    /// The members, with the attributes they published.
    pub members: Vec<pb::Member>,
    /// Active alarms.
    pub alarms: Vec<pb::AlarmMember>,
    /// Ids of the members removed from the cluster (their messages are refused).
    pub removed: Vec<u64>,
    /// Users, roles, permissions, whether auth is enabled, and the auth revision.
    pub auth: crate::server::auth::AuthStore,
    /// The downgrade in progress, if any.
    pub downgrade: Option<pb::DowngradeInfo>,
}

/// The removed member ids, carried in the members section as field 15 of the
/// `MemberListResponse` message (a field etcd's message does not define, so the section still
/// decodes as etcd's message; checkpoints written before it decode with none).
#[derive(Clone, PartialEq, prost::Message)]
struct RemovedMembers {
    #[prost(uint64, repeated, tag = "15")]
    removed: Vec<u64>,
}

/// The downgrade in progress, carried in the members section as field 16 of the
/// `MemberListResponse` message (a `DowngradeInfo`: etcd keeps it with the cluster's
/// membership too; checkpoints written before it decode with none, and it is absent while no
/// downgrade is in progress).
#[derive(Clone, PartialEq, prost::Message)]
struct ClusterDowngrade {
    #[prost(message, optional, tag = "16")]
    downgrade: Option<pb::DowngradeInfo>,
}

/// Bytes of the state-machine checkpoint header before its sections (format 2).
const STATE_HEADER_BYTES: usize = 48;
/// The same for format 1, which had no auth section.
const STATE_V1_HEADER_BYTES: usize = 40;

/// The state-machine checkpoint payload: a header, the sections of `meta`, zero padding to a
/// multiple of 16, then the MVCC payload (kept 16-aligned so it decodes without a copy).
pub fn encode_state(meta: &StateMeta, mvcc: &[u8]) -> Vec<u8> {
    let mut out = encode_state_prefix(meta, mvcc.len());
    out.extend_from_slice(mvcc);
    out
}

/// What [`encode_state`] puts before the MVCC payload (of `mvcc_len` bytes), so that a large
/// checkpoint can be written from its two parts without copying the MVCC payload.
pub fn encode_state_prefix(meta: &StateMeta, mvcc_len: usize) -> Vec<u8> {
    let conf = meta
        .conf_state
        .write_to_bytes()
        .expect("encoding a ConfState cannot fail");
    let mut members = pb::MemberListResponse {
        members: meta.members.clone(),
        ..Default::default()
    }
    .encode_to_vec();
    RemovedMembers {
        removed: meta.removed.clone(),
    }
    .encode(&mut members)
    .expect("encoding into a Vec cannot fail");
    ClusterDowngrade {
        downgrade: meta.downgrade.clone(),
    }
    .encode(&mut members)
    .expect("encoding into a Vec cannot fail");
    let alarms = pb::AlarmResponse {
        alarms: meta.alarms.clone(),
        ..Default::default()
    }
    .encode_to_vec();
    let auth = meta.auth.encode();
    let sections = conf.len() + members.len() + alarms.len() + auth.len();
    let mvcc_offset = (STATE_HEADER_BYTES + sections).div_ceil(16) * 16;
    let mut out = Vec::with_capacity(mvcc_offset + mvcc_len);
    out.extend_from_slice(STATE_MAGIC);
    out.extend_from_slice(&STATE_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(conf.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta.term.to_le_bytes());
    out.extend_from_slice(&(members.len() as u32).to_le_bytes());
    out.extend_from_slice(&(alarms.len() as u32).to_le_bytes());
    out.extend_from_slice(&(mvcc_offset as u64).to_le_bytes());
    out.extend_from_slice(&(auth.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    debug_assert_eq!(out.len(), STATE_HEADER_BYTES);
    out.extend_from_slice(&conf);
    out.extend_from_slice(&members);
    out.extend_from_slice(&alarms);
    out.extend_from_slice(&auth);
    out.resize(mvcc_offset, 0);
    out
}

/// Splits a checkpoint payload into its metadata and the offset of its MVCC payload. A
/// format-1 payload (the MVCC payload alone) has no metadata: `None` is returned for it, and
/// the caller supplies what a single member before raft implied.
pub fn decode_state(payload: &[u8]) -> Result<(Option<StateMeta>, usize), RecordDecodeError> {
    if payload.starts_with(MVCC_MAGIC) {
        return Ok((None, 0));
    }
    if payload.len() < STATE_V1_HEADER_BYTES || !payload.starts_with(STATE_MAGIC) {
        return Err(bad(
            "checkpoint payload has neither the KEELSTAT nor the KEELMVCC magic",
        ));
    }
    let version = u32_at(payload, 8);
    let (header_len, auth_len) = match version {
        1 => (STATE_V1_HEADER_BYTES, 0),
        STATE_FORMAT_VERSION if payload.len() >= STATE_HEADER_BYTES => {
            (STATE_HEADER_BYTES, u32_at(payload, 40) as usize)
        }
        _ => {
            return Err(bad(format!(
                "checkpoint state format {version} in {} bytes (this build reads 1 and \
                 {STATE_FORMAT_VERSION})",
                payload.len()
            )))
        }
    };
    let conf_len = u32_at(payload, 12) as usize;
    let term = u64_at(payload, 16);
    let members_len = u32_at(payload, 24) as usize;
    let alarms_len = u32_at(payload, 28) as usize;
    let mvcc_offset = u64_at(payload, 32);
    let sections_end = header_len + conf_len + members_len + alarms_len + auth_len;
    if mvcc_offset > payload.len() as u64
        || (mvcc_offset as usize) < sections_end
        || mvcc_offset % 16 != 0
    {
        return Err(bad(format!(
            "checkpoint state sections ({sections_end} bytes) and MVCC offset {mvcc_offset} \
             do not fit a payload of {} bytes",
            payload.len()
        )));
    }
    let mut at = header_len;
    let conf_state = ConfState::parse_from_bytes(&payload[at..at + conf_len])
        .map_err(|e| bad(format!("checkpoint ConfState: {e}")))?;
    at += conf_len;
    let members_bytes = &payload[at..at + members_len];
    let members = pb::MemberListResponse::decode(members_bytes)
        .map_err(|e| bad(format!("checkpoint members: {e}")))?
        .members;
    let removed = RemovedMembers::decode(members_bytes)
        .map_err(|e| bad(format!("checkpoint removed members: {e}")))?
        .removed;
    let downgrade = ClusterDowngrade::decode(members_bytes)
        .map_err(|e| bad(format!("checkpoint downgrade: {e}")))?
        .downgrade;
    at += members_len;
    let alarms = pb::AlarmResponse::decode(&payload[at..at + alarms_len])
        .map_err(|e| bad(format!("checkpoint alarms: {e}")))?
        .alarms;
    at += alarms_len;
    let auth = if version == 1 {
        // Written before auth: a new cluster's auth state.
        crate::server::auth::AuthStore::default()
    } else {
        crate::server::auth::AuthStore::decode(&payload[at..at + auth_len])
            .map_err(|e| bad(format!("checkpoint auth: {e}")))?
    };
    Ok((
        Some(StateMeta {
            term,
            conf_state,
            members,
            alarms,
            removed,
            auth,
            downgrade,
        }),
        mvcc_offset as usize,
    ))
}

/// Decodes the command of a normal entry; `None` for the empty entry a new leader appends.
pub fn entry_command(entry: &Entry) -> Result<Option<(u64, Command)>, RecordDecodeError> {
    if entry.data.is_empty() {
        return Ok(None);
    }
    command::decode_data(&entry.data)
        .map(Some)
        .map_err(|e| bad(format!("entry {}: {e}", entry.index)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_in_every_kind() {
        for (entry_type, data) in [
            (EntryType::EntryNormal, vec![]),
            (
                EntryType::EntryNormal,
                command::encode_data(5, &Command::Compact(Default::default())),
            ),
            (EntryType::EntryConfChange, vec![1, 2, 3]),
            (EntryType::EntryConfChangeV2, vec![]),
        ] {
            let mut entry = Entry {
                index: 42,
                term: 7,
                data: data.into(),
                ..Default::default()
            };
            entry.set_entry_type(entry_type);
            let decoded = decode_entry(&encode_entry(&entry)).unwrap();
            assert_eq!(decoded, entry);
        }
    }

    #[test]
    fn format1_entries_still_decode() {
        let mut payload = Vec::new();
        Command::Put(pb::PutRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .encode_entry(3, 2, &mut payload);
        assert!(is_format1_entry(&payload));
        let entry = decode_entry(&payload).unwrap();
        assert_eq!((entry.index, entry.term), (3, 2));
        let (request_id, command) = entry_command(&entry).unwrap().unwrap();
        assert_eq!(request_id, 0);
        assert!(matches!(command, Command::Put(p) if p.key == b"k"));
    }

    #[test]
    fn hard_state_and_marker_round_trip() {
        let state = HardState {
            term: 3,
            vote: 9,
            commit: 100,
            ..Default::default()
        };
        assert_eq!(
            decode_hard_state(&encode_hard_state(&state)).unwrap(),
            state
        );
        let marker = SnapshotMarker {
            index: 10,
            term: 2,
            conf_state: ConfState::from((vec![1, 2, 3], vec![4])),
        };
        assert_eq!(
            decode_snapshot_marker(&encode_snapshot_marker(&marker)).unwrap(),
            marker
        );
        assert!(decode_hard_state(&[1, 2]).is_err());
        assert!(decode_snapshot_marker(&[9; 30]).is_err());
    }

    #[test]
    fn state_payload_keeps_the_mvcc_payload_aligned() {
        let meta = StateMeta {
            term: 4,
            conf_state: ConfState::from((vec![1, 2], vec![])),
            members: vec![pb::Member {
                id: 1,
                name: "a".into(),
                ..Default::default()
            }],
            alarms: vec![pb::AlarmMember {
                member_id: 1,
                alarm: 1,
            }],
            removed: vec![7, 9],
            auth: {
                let mut auth = crate::server::auth::AuthStore::default();
                auth.apply(&crate::server::auth::AuthChange::RoleAdd(
                    pb::AuthRoleAddRequest {
                        name: "reader".into(),
                    },
                ))
                .unwrap();
                auth
            },
            downgrade: Some(pb::DowngradeInfo {
                enabled: true,
                target_version: "3.4.0".into(),
            }),
        };
        // The members section still reads as etcd's MemberListResponse.
        let prefix = encode_state_prefix(&meta, 0);
        let members_len = u32_at(&prefix, 24) as usize;
        let conf_len = u32_at(&prefix, 12) as usize;
        let at = STATE_HEADER_BYTES + conf_len;
        let section = pb::MemberListResponse::decode(&prefix[at..at + members_len]).unwrap();
        assert_eq!(section.members, meta.members);
        let mvcc = b"KEELMVCC and the rest".to_vec();
        let payload = encode_state(&meta, &mvcc);
        let (decoded, offset) = decode_state(&payload).unwrap();
        assert_eq!(decoded.unwrap(), meta);
        assert_eq!(offset % 16, 0);
        assert_eq!(&payload[offset..], &mvcc[..]);
        assert_eq!(decode_state(&mvcc).unwrap(), (None, 0));
        assert!(decode_state(b"garbage garbage garbage garbage garbage garbage").is_err());
        let mut truncated = payload.clone();
        truncated.truncate(45);
        assert!(decode_state(&truncated).is_err());
    }

    /// A format-1 state payload (before auth: a 40-byte header, no auth section) still reads,
    /// as auth disabled with no users.
    #[test]
    fn format1_state_payloads_still_decode() {
        let conf = ConfState::from((vec![1], vec![])).write_to_bytes().unwrap();
        let members = pb::MemberListResponse {
            members: vec![pb::Member {
                id: 1,
                ..Default::default()
            }],
            ..Default::default()
        }
        .encode_to_vec();
        let mvcc = b"KEELMVCC payload".to_vec();
        let sections = conf.len() + members.len();
        let offset = (STATE_V1_HEADER_BYTES + sections).div_ceil(16) * 16;
        let mut payload = Vec::new();
        payload.extend_from_slice(STATE_MAGIC);
        payload.extend_from_slice(&1u32.to_le_bytes());
        payload.extend_from_slice(&(conf.len() as u32).to_le_bytes());
        payload.extend_from_slice(&3u64.to_le_bytes());
        payload.extend_from_slice(&(members.len() as u32).to_le_bytes());
        payload.extend_from_slice(&0u32.to_le_bytes());
        payload.extend_from_slice(&(offset as u64).to_le_bytes());
        payload.extend_from_slice(&conf);
        payload.extend_from_slice(&members);
        payload.resize(offset, 0);
        payload.extend_from_slice(&mvcc);
        let (meta, at) = decode_state(&payload).unwrap();
        let meta = meta.unwrap();
        assert_eq!((meta.term, meta.members.len(), at), (3, 1, offset));
        assert_eq!(meta.auth, crate::server::auth::AuthStore::default());
        assert!(!meta.auth.enabled());
        // Written before downgrades: none in progress.
        assert_eq!(meta.downgrade, None);
        // Version 3 is refused, not guessed at.
        payload[8] = 3;
        assert!(decode_state(&payload).is_err());
    }

    #[test]
    fn garbage_entries_are_errors() {
        assert!(decode_entry(&[]).is_err());
        assert!(decode_entry(&[2, 0, 0]).is_err());
        assert!(decode_entry(&[7; 30]).is_err());
        let mut empty_with_data = vec![2];
        empty_with_data.extend_from_slice(&[0; 16]);
        empty_with_data.push(1);
        empty_with_data.push(9);
        assert!(decode_entry(&empty_with_data).is_err());
    }
}
