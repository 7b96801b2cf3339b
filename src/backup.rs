//! Backups in etcd's own format: Keel's state as the bbolt file etcd's backend keeps (what
//! etcd's Snapshot RPC streams and `etcdctl snapshot save` writes, `status` reads and
//! `restore` restores).
//!
//! The buckets and their records, as etcd 3.5 writes them (engine/FORMAT.md, "bbolt files"):
//!
//! * `key`: every retained revision, keyed by the revision (8-byte big-endian main revision,
//!   `_`, 8-byte big-endian sub revision, and a `t` after a deletion), valued by the
//!   `mvccpb.KeyValue` of that revision (only the key for a deletion);
//! * `meta`: `consistent_index` and `term` (8-byte big-endian: the raft index and term the
//!   state is at), `scheduledCompactRev` and `finishedCompactRev` (a revision, 17 bytes) once
//!   compacted, `confState` (JSON);
//! * `lease`: 8-byte big-endian lease id -> `leasepb.Lease` (id, TTL, remaining TTL);
//! * `members` (hex id -> JSON), `members_removed` (hex id -> `removed`), `cluster`
//!   (`clusterVersion`), `alarm` (an `AlarmMember` message -> nothing);
//! * `auth` (`authEnabled`, one byte; `authRevision`, 8-byte big-endian), `authUsers` (name ->
//!   `authpb.User`), `authRoles` (name -> `authpb.Role`).
//!
//! The other way, [`read_backend`] reads such a file (an etcd snapshot, with its SHA-256
//! checked, or an etcd member's `member/snap/db`, which has none) into Keel's state, and
//! [`restore`] makes a new Keel data dir from it.

use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;

use keel_engine::bbolt;
use keel_engine::mvcc::{Exported, ExportedLease, ExportedRevision, Store};
use keel_proto::authpb;
use keel_proto::etcdserverpb as pb;
use keel_proto::mvccpb;
use prost::Message;

use crate::server::auth::AuthStore;
use crate::server::state::ETCD_CLUSTER_VERSION;

/// etcd's lease record (`leasepb.Lease`), field numbers as etcd's.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseRecord {
    /// The lease id.
    #[prost(int64, tag = "1")]
    pub id: i64,
    /// The granted TTL in seconds.
    #[prost(int64, tag = "2")]
    pub ttl: i64,
    /// The remaining TTL of the last lease checkpoint (0: none).
    #[prost(int64, tag = "3")]
    pub remaining_ttl: i64,
}

/// What goes into the backend file besides the store's revisions and leases.
#[derive(Clone, Debug)]
pub struct BackendMeta {
    /// The raft index the state is at (etcd's consistent index).
    pub consistent_index: u64,
    /// The raft term of that index.
    pub term: u64,
    /// The members.
    pub members: Vec<pb::Member>,
    /// Ids of removed members.
    pub removed: Vec<u64>,
    /// Active alarms.
    pub alarms: Vec<pb::AlarmMember>,
    /// The auth state.
    pub auth: AuthStore,
}

/// Why the backend file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The bbolt writer failed (disk full, I/O error).
    #[error("writing the backend file: {0}")]
    Bbolt(#[from] bbolt::BboltError),
    /// The written file could not be synced or measured.
    #[error("writing the backend file: {0}")]
    Io(#[from] std::io::Error),
}

/// etcd's revision key: 8-byte big-endian main, `_`, 8-byte big-endian sub, `t` for a
/// deletion.
pub fn revision_key(main: i64, sub: i64, tombstone: bool) -> Vec<u8> {
    let mut key = Vec::with_capacity(18);
    key.extend_from_slice(&main.to_be_bytes());
    key.push(b'_');
    key.extend_from_slice(&sub.to_be_bytes());
    if tombstone {
        key.push(b't');
    }
    key
}

/// The `mvccpb.KeyValue` etcd stores for `revision` (only the key for a deletion).
fn key_value(revision: &ExportedRevision) -> Vec<u8> {
    let kv = match &revision.value {
        Some(value) => mvccpb::KeyValue {
            key: revision.key.to_vec(),
            create_revision: revision.create_revision,
            mod_revision: revision.main,
            version: revision.version,
            value: value.to_vec(),
            lease: revision.lease,
        },
        None => mvccpb::KeyValue {
            key: revision.key.to_vec(),
            ..Default::default()
        },
    };
    kv.encode_to_vec()
}

/// A member as etcd's membership store writes it (JSON, etcd's field names).
fn member_json(member: &pb::Member) -> Vec<u8> {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let list = |urls: &[String]| {
        let items: Vec<String> = urls.iter().map(|u| quote(u)).collect();
        format!("[{}]", items.join(","))
    };
    let mut json = format!(
        "{{\"id\":{},\"peerURLs\":{}",
        member.id,
        list(&member.peer_ur_ls)
    );
    if member.is_learner {
        json.push_str(",\"isLearner\":true");
    }
    if !member.name.is_empty() {
        json.push_str(&format!(",\"name\":{}", quote(&member.name)));
    }
    if !member.client_ur_ls.is_empty() {
        json.push_str(&format!(",\"clientURLs\":{}", list(&member.client_ur_ls)));
    }
    json.push('}');
    json.into_bytes()
}

/// Writes `exported` and `meta` as etcd's backend file at `path` (a bbolt file, without the
/// sha256 trailer a snapshot adds). Returns the file's size.
pub fn write_backend(
    path: &Path,
    exported: &Exported,
    meta: &BackendMeta,
) -> Result<u64, BackupError> {
    let mut writer = bbolt::Writer::create(path)?;

    // Buckets in byte order of their names, records in byte order of their keys.
    writer.bucket(b"alarm")?;
    let mut alarms: Vec<Vec<u8>> = meta.alarms.iter().map(|a| a.encode_to_vec()).collect();
    alarms.sort();
    alarms.dedup();
    for alarm in &alarms {
        writer.put(alarm, b"")?;
    }

    writer.bucket(b"auth")?;
    writer.put(b"authEnabled", &[u8::from(meta.auth.enabled())])?;
    writer.put(b"authRevision", &meta.auth.revision().to_be_bytes())?;
    writer.bucket(b"authRoles")?;
    for name in meta.auth.role_names() {
        if let Some(role) = meta.auth.role(&name) {
            writer.put(name.as_bytes(), &role.encode_to_vec())?;
        }
    }
    writer.bucket(b"authUsers")?;
    for name in meta.auth.user_names() {
        if let Some(user) = meta.auth.user(&name) {
            writer.put(name.as_bytes(), &user.encode_to_vec())?;
        }
    }

    writer.bucket(b"cluster")?;
    writer.put(b"clusterVersion", ETCD_CLUSTER_VERSION.as_bytes())?;

    writer.bucket(b"key")?;
    for revision in &exported.revisions {
        let key = revision_key(
            revision.main,
            i64::from(revision.sub),
            revision.value.is_none(),
        );
        writer.put(&key, &key_value(revision))?;
    }

    writer.bucket(b"lease")?;
    for lease in &exported.leases {
        let record = LeaseRecord {
            id: lease.id,
            ttl: lease.granted_ttl_seconds,
            remaining_ttl: lease.remaining_ttl_seconds,
        };
        writer.put(&lease.id.to_be_bytes(), &record.encode_to_vec())?;
    }

    writer.bucket(b"members")?;
    let mut members: Vec<(Vec<u8>, Vec<u8>)> = meta
        .members
        .iter()
        .map(|m| (format!("{:x}", m.id).into_bytes(), member_json(m)))
        .collect();
    members.sort();
    for (key, value) in &members {
        writer.put(key, value)?;
    }
    writer.bucket(b"members_removed")?;
    let mut removed: Vec<Vec<u8>> = meta
        .removed
        .iter()
        .map(|id| format!("{id:x}").into_bytes())
        .collect();
    removed.sort();
    removed.dedup();
    for key in &removed {
        writer.put(key, b"removed")?;
    }

    writer.bucket(b"meta")?;
    let voters: Vec<String> = meta
        .members
        .iter()
        .filter(|m| !m.is_learner)
        .map(|m| m.id.to_string())
        .collect();
    let learners: Vec<String> = meta
        .members
        .iter()
        .filter(|m| m.is_learner)
        .map(|m| m.id.to_string())
        .collect();
    let mut conf_state = format!("{{\"voters\":[{}]", voters.join(","));
    if !learners.is_empty() {
        conf_state.push_str(&format!(",\"learners\":[{}]", learners.join(",")));
    }
    conf_state.push_str(",\"auto_leave\":false}");
    writer.put(b"confState", conf_state.as_bytes())?;
    writer.put(b"consistent_index", &meta.consistent_index.to_be_bytes())?;
    if exported.compact_revision > 0 {
        let compacted = revision_key(exported.compact_revision, 0, false);
        writer.put(b"finishedCompactRev", &compacted)?;
        writer.put(b"scheduledCompactRev", &compacted)?;
    }
    writer.put(b"term", &meta.term.to_be_bytes())?;

    let file = writer.finish()?;
    Ok(file.metadata()?.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_keys_are_etcds() {
        let key = revision_key(0x0102, 3, false);
        assert_eq!(key, [0, 0, 0, 0, 0, 0, 1, 2, b'_', 0, 0, 0, 0, 0, 0, 0, 3]);
        assert_eq!(revision_key(5, 0, true).len(), 18);
        assert!(revision_key(2, 0, false) < revision_key(2, 1, false));
        assert!(revision_key(2, 9, true) < revision_key(3, 0, false));
    }

    #[test]
    fn members_are_etcds_json() {
        let member = pb::Member {
            id: 10,
            name: "m\"1".into(),
            peer_ur_ls: vec!["http://a:2380".into()],
            client_ur_ls: vec![],
            is_learner: true,
        };
        assert_eq!(
            String::from_utf8(member_json(&member)).unwrap(),
            r#"{"id":10,"peerURLs":["http://a:2380"],"isLearner":true,"name":"m\"1"}"#
        );
    }
}

/// Why an etcd backend file could not be restored. Nothing is written when any of these is
/// returned.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The file is not a bbolt file, is damaged, or its SHA-256 trailer does not match.
    #[error("{path}: {source}")]
    Bbolt {
        /// The file.
        path: String,
        /// What is wrong.
        source: bbolt::BboltError,
    },
    /// A bbolt file, but not etcd's backend (a bucket is missing or holds records etcd
    /// never writes).
    #[error("{path}: not an etcd backend file: {reason}")]
    NotEtcd {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The data dir already holds something.
    #[error("data-dir {0:?} not empty or could not be read")]
    DataDirExists(String),
    /// `--wal-dir` names a path that exists.
    #[error("wal-dir {0:?} exists")]
    WalDirExists(String),
    /// The file has no SHA-256 trailer (a member's `member/snap/db`, or a truncated snapshot)
    /// and the caller did not ask to skip the check.
    #[error("snapshot missing hash but --skip-hash-check=false")]
    MissingHash,
    /// Bad flags (`--initial-cluster` and friends).
    #[error("{0}")]
    Config(String),
    /// Writing the data dir failed.
    #[error("{0}")]
    Write(String),
}

/// An etcd backend file read into Keel's state.
#[derive(Debug)]
pub struct ImportedBackend {
    /// The store, as the checkpoint payload that holds it (see [`Store::import_checkpoint`]).
    pub checkpoint: Vec<u8>,
    /// The auth state.
    pub auth: AuthStore,
    /// etcd's consistent index (its raft index when the file was made).
    pub consistent_index: u64,
}

fn be_u64(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.try_into().ok()?))
}

/// The stages of a restore, as [`restore`] reports its progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreStage {
    /// Checking the file's SHA-256 trailer: bytes hashed of the file's size.
    Verifying,
    /// Reading every record: bytes read of the file's size.
    Reading,
    /// Writing the new data dir's checkpoint: bytes written of its size.
    Writing,
}

/// A progress report: the stage, the bytes done and the bytes it has in all.
pub type Progress<'a> = &'a dyn Fn(RestoreStage, u64, u64);

/// A [`bbolt::ReadAt`] that reports the bytes read through it (at most its length: pages read
/// twice are counted twice, and the count is capped).
struct Counted<'a, S: bbolt::ReadAt> {
    source: &'a S,
    len: u64,
    read: Cell<u64>,
    report: &'a dyn Fn(u64, u64),
}

impl<'a, S: bbolt::ReadAt> Counted<'a, S> {
    fn new(source: &'a S, report: &'a dyn Fn(u64, u64)) -> std::io::Result<Counted<'a, S>> {
        Ok(Counted {
            len: source.len_bytes()?,
            source,
            read: Cell::new(0),
            report,
        })
    }
}

impl<S: bbolt::ReadAt> bbolt::ReadAt for Counted<'_, S> {
    fn len_bytes(&self) -> std::io::Result<u64> {
        Ok(self.len)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.source.read_exact_at(buf, offset)?;
        let read = (self.read.get() + buf.len() as u64).min(self.len);
        self.read.set(read);
        (self.report)(read, self.len);
        Ok(())
    }
}

/// How [`read_backend`] treats a file's SHA-256 trailer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashCheck {
    /// The trailer must be there and match (an etcd snapshot); a file without one is refused
    /// with [`RestoreError::MissingHash`], as etcdutl refuses it.
    Required,
    /// The trailer is not checked, and need not be there (etcdutl's `--skip-hash-check`, for
    /// a member's `member/snap/db`).
    Skipped,
}

/// Reads the etcd backend file at `path`: an etcd snapshot (its SHA-256 trailer checked
/// unless `hash` says to skip it) or a member's `member/snap/db` (with [`HashCheck::Skipped`]).
/// Every record is checked; a damaged file or one that is not etcd's is an error naming what
/// is wrong. `progress` hears of the [`RestoreStage::Verifying`] and [`RestoreStage::Reading`]
/// stages.
pub fn read_backend(
    path: &Path,
    hash: HashCheck,
    progress: Progress<'_>,
) -> Result<ImportedBackend, RestoreError> {
    let shown = path.display().to_string();
    let bbolt_error = |source| RestoreError::Bbolt {
        path: shown.clone(),
        source,
    };
    let not_etcd = |reason: String| RestoreError::NotEtcd {
        path: shown.clone(),
        reason,
    };
    let io_error = |e: std::io::Error| bbolt_error(bbolt::BboltError::from(e));
    let file = std::fs::File::open(path).map_err(io_error)?;
    if hash == HashCheck::Required {
        let verifying = |done, total| progress(RestoreStage::Verifying, done, total);
        let counted = Counted::new(&file, &verifying).map_err(io_error)?;
        let verified = bbolt::snapshot::verify_snapshot_hash(&counted).map_err(bbolt_error)?;
        if verified == bbolt::snapshot::SnapshotHash::Absent {
            return Err(RestoreError::MissingHash);
        }
    }
    let reading = |done, total| progress(RestoreStage::Reading, done, total);
    let counted = Counted::new(&file, &reading).map_err(io_error)?;
    let reader = bbolt::Reader::new(counted).map_err(bbolt_error)?;
    let entries = |name: &[u8]| -> Result<Vec<bbolt::Entry>, RestoreError> {
        let Some(bucket) = reader.bucket(name).map_err(bbolt_error)? else {
            return Ok(Vec::new());
        };
        reader
            .entries(&bucket)
            .collect::<Result<Vec<_>, _>>()
            .map_err(bbolt_error)
    };
    let required = |name: &str| {
        reader
            .bucket(name.as_bytes())
            .map_err(bbolt_error)?
            .ok_or_else(|| not_etcd(format!("no `{name}` bucket")))
    };
    let key_bucket = required("key")?;
    required("meta")?;

    let mut meta = std::collections::HashMap::new();
    for entry in entries(b"meta")? {
        meta.insert(entry.key, entry.value);
    }
    let consistent_index = meta
        .get(&b"consistent_index"[..])
        .and_then(|v| be_u64(v))
        .unwrap_or(0);
    // etcd finishes a scheduled compaction when it starts: so does the import.
    let compacted = |name: &[u8]| -> Result<i64, RestoreError> {
        match meta.get(name) {
            None => Ok(-1),
            Some(value) if value.len() == 17 && value[8] == b'_' => {
                Ok(i64::from_be_bytes(value[..8].try_into().expect("8 bytes")))
            }
            Some(_) => Err(not_etcd(format!(
                "meta {} is not a revision",
                String::from_utf8_lossy(name)
            ))),
        }
    };
    let compact_revision =
        compacted(b"scheduledCompactRev")?.max(compacted(b"finishedCompactRev")?);

    let mut revisions = Vec::new();
    let mut current = 1i64.max(compact_revision);
    for entry in reader.entries(&key_bucket) {
        let entry = entry.map_err(bbolt_error)?;
        let tombstone = match entry.key.len() {
            17 => false,
            18 if entry.key[17] == b't' => true,
            _ => {
                return Err(not_etcd(format!(
                    "key bucket record of {} bytes is not a revision",
                    entry.key.len()
                )))
            }
        };
        if entry.key[8] != b'_' {
            return Err(not_etcd("key bucket record is not a revision".into()));
        }
        let main = i64::from_be_bytes(entry.key[..8].try_into().expect("8 bytes"));
        let sub = i64::from_be_bytes(entry.key[9..17].try_into().expect("8 bytes"));
        let sub =
            u32::try_from(sub).map_err(|_| not_etcd(format!("sub revision {sub} out of range")))?;
        let kv = mvccpb::KeyValue::decode(entry.value.as_slice())
            .map_err(|e| not_etcd(format!("revision {main}: {e}")))?;
        current = current.max(main);
        let key: Arc<[u8]> = kv.key.into();
        revisions.push(if tombstone {
            ExportedRevision {
                main,
                sub,
                key,
                create_revision: 0,
                version: 0,
                lease: 0,
                value: None,
            }
        } else {
            ExportedRevision {
                main,
                sub,
                key,
                create_revision: kv.create_revision,
                version: kv.version,
                lease: kv.lease,
                value: Some(kv.value.into()),
            }
        });
    }

    let mut leases = Vec::new();
    for entry in entries(b"lease")? {
        let lease = LeaseRecord::decode(entry.value.as_slice())
            .map_err(|e| not_etcd(format!("lease record: {e}")))?;
        leases.push(ExportedLease {
            id: lease.id,
            granted_ttl_seconds: lease.ttl,
            remaining_ttl_seconds: lease.remaining_ttl,
        });
    }
    leases.sort_by_key(|l| l.id);

    let checkpoint = Store::import_checkpoint(Exported {
        revision: current,
        compact_revision,
        revisions,
        leases,
    })
    .map_err(|e| {
        not_etcd(format!(
            "the key and lease buckets do not form a store: {e}"
        ))
    })?;

    let mut auth_meta = std::collections::HashMap::new();
    for entry in entries(b"auth")? {
        auth_meta.insert(entry.key, entry.value);
    }
    let enabled = auth_meta
        .get(&b"authEnabled"[..])
        .is_some_and(|v| v.as_slice() == [1]);
    let auth_revision = auth_meta
        .get(&b"authRevision"[..])
        .and_then(|v| be_u64(v))
        .unwrap_or(1)
        .max(1);
    let mut users = Vec::new();
    for entry in entries(b"authUsers")? {
        users.push(
            authpb::User::decode(entry.value.as_slice())
                .map_err(|e| not_etcd(format!("user record: {e}")))?,
        );
    }
    let mut roles = Vec::new();
    for entry in entries(b"authRoles")? {
        roles.push(
            authpb::Role::decode(entry.value.as_slice())
                .map_err(|e| not_etcd(format!("role record: {e}")))?,
        );
    }
    let auth = AuthStore::from_parts(enabled, auth_revision, users, roles)
        .map_err(|e| not_etcd(format!("auth buckets: {e}")))?;
    Ok(ImportedBackend {
        checkpoint,
        auth,
        consistent_index,
    })
}

/// What [`restore`] needs to know of the new cluster: etcd's restore flags.
#[derive(Clone, Debug)]
pub struct RestoreTarget<'a> {
    /// `--data-dir` of the new member (must not exist, or be empty).
    pub data_dir: &'a Path,
    /// `--name`.
    pub name: &'a str,
    /// `--initial-cluster`.
    pub initial_cluster: &'a str,
    /// `--initial-cluster-token`.
    pub initial_cluster_token: &'a str,
    /// `--initial-advertise-peer-urls`.
    pub initial_advertise_peer_urls: &'a str,
    /// `--wal-dir`: a WAL directory outside the data dir (it must not exist), which the
    /// member is then started with; `None` keeps the WAL in the data dir.
    pub wal_dir: Option<&'a Path>,
    /// `--skip-hash-check`: how the file's SHA-256 trailer is treated.
    pub hash: HashCheck,
}

/// Makes a new Keel data dir from the etcd backend file at `file`, for the member `target`
/// names of the new cluster `target` describes: the store with every revision and lease, the
/// auth state, and a fresh membership. Every member of the new cluster is restored from the
/// same file with its own `name` and peer URLs, as with `etcdctl snapshot restore`. The flags
/// are checked and the file is read and checked completely before anything is written;
/// `progress` hears of each [`RestoreStage`].
pub fn restore(
    file: &Path,
    target: &RestoreTarget<'_>,
    progress: Progress<'_>,
) -> Result<(), RestoreError> {
    let config = |e: String| RestoreError::Config(e);
    let peer_urls: Vec<String> = crate::config::parse_urls(
        "initial-advertise-peer-urls",
        target.initial_advertise_peer_urls,
    )
    .map_err(|e| config(e.to_string()))?
    .iter()
    .map(|u| u.to_string())
    .collect();
    let initial_cluster =
        crate::cluster::parse_initial_cluster(target.initial_cluster).map_err(|e| {
            config(format!(
                "{}: {e}",
                crate::cluster::INITIAL_CLUSTER_ERROR_CONTEXT
            ))
        })?;
    crate::cluster::validate_bootstrap(target.name, &peer_urls, &initial_cluster)
        .map_err(|e| config(e.to_string()))?;
    let (_, members) =
        crate::cluster::bootstrap_members(&initial_cluster, target.initial_cluster_token)
            .map_err(|e| config(e.to_string()))?;
    let occupied = std::fs::read_dir(target.data_dir)
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    if occupied {
        return Err(RestoreError::DataDirExists(
            target.data_dir.display().to_string(),
        ));
    }
    if let Some(wal_dir) = target.wal_dir {
        if wal_dir.symlink_metadata().is_ok() {
            return Err(RestoreError::WalDirExists(wal_dir.display().to_string()));
        }
    }
    let imported = read_backend(file, target.hash, progress)?;
    let write = |e: String| RestoreError::Write(e);
    let data_dir =
        crate::datadir::DataDir::open(target.data_dir).map_err(|e| write(e.to_string()))?;
    if let Some(wal_dir) = target.wal_dir {
        std::fs::create_dir_all(wal_dir)
            .map_err(|e| write(format!("creating wal-dir {}: {e}", wal_dir.display())))?;
    }
    // The members as a new cluster's first checkpoint holds them; each publishes its client
    // URLs when it starts.
    let members: Vec<pb::Member> = members
        .iter()
        .map(|m| pb::Member {
            id: m.id,
            name: m.name.clone(),
            peer_ur_ls: m.peer_urls.clone(),
            client_ur_ls: Vec::new(),
            is_learner: m.is_learner,
        })
        .collect();
    let voters: Vec<u64> = members.iter().map(|m| m.id).collect();
    let meta = crate::raft::records::StateMeta {
        term: 1,
        conf_state: raft::eraftpb::ConfState::from((voters, vec![])),
        members,
        alarms: Vec::new(),
        removed: Vec::new(),
        auth: imported.auth,
        downgrade: None,
    };
    let mvcc = imported.checkpoint;
    let prefix = crate::raft::records::encode_state_prefix(&meta, mvcc.len());
    let size = (prefix.len() + mvcc.len()) as u64;
    progress(RestoreStage::Writing, 0, size);
    let snap_dir = data_dir.snap_dir();
    // The checkpoint a new cluster's members write at its first index, holding the restored
    // state instead of an empty store; written through the engine's checkpoint files on a
    // short-lived glommio executor (the engine's disks are glommio's).
    let options = crate::executor::Options::default();
    let saved = crate::executor::spawn("keel-restore", options, move || async move {
        let disk = keel_engine::io::GlommioDisk::open(&snap_dir)
            .await
            .map_err(|e| e.to_string())?;
        keel_engine::checkpoint::save_parts(
            &disk,
            crate::raft::node::BOOTSTRAP_INDEX,
            &[&prefix, &mvcc],
        )
        .await
        .map_err(|e| e.to_string())
    })
    .map_err(|e| write(format!("starting the restore thread: {e}")))?
    .join()
    .map_err(|e| write(format!("the restore thread failed: {e}")))?;
    saved.map_err(|e| write(format!("writing the restored checkpoint: {e}")))?;
    progress(RestoreStage::Writing, size, size);
    drop(data_dir);
    Ok(())
}

/// What `etcdctl snapshot status` reports of a backend file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotStatus {
    /// CRC-32C (Castagnoli) of every bucket name, key and value, in order.
    pub hash: u32,
    /// The main revision of the last record of the `key` bucket.
    pub revision: i64,
    /// Records in all buckets.
    pub total_keys: u64,
    /// The database's size: its pages (without a snapshot's SHA-256 trailer), as etcdctl
    /// prints it ([`human_bytes`]).
    pub total_size: String,
    /// The same size in bytes (etcdutl's `-w json` and `-w fields`).
    pub total_size_bytes: u64,
}

/// The sizes of a backend file before and after [`defrag_backend`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Defragmented {
    /// The file's size before, in bytes.
    pub before: u64,
    /// Its size after.
    pub after: u64,
}

/// Offline defragmentation of a stopped etcd member's backend (`member/snap/db`), as
/// `etcdutl defrag --data-dir` does it: every bucket and record is copied, in order, into a
/// new file with full pages and no free pages, which is synced and then renamed over the
/// old one. The file is first checked to be etcd's backend and not in use (bbolt's lock, an
/// exclusive flock(2) etcd holds while running). A failure leaves the old file as it was.
pub fn defrag_backend(db: &Path) -> Result<Defragmented, RestoreError> {
    use std::os::fd::AsRawFd;
    let shown = db.display().to_string();
    let bbolt_error = |source| RestoreError::Bbolt {
        path: shown.clone(),
        source,
    };
    let write = |e: std::io::Error| RestoreError::Write(format!("{shown}: {e}"));
    let file = std::fs::File::open(db).map_err(|e| bbolt_error(bbolt::BboltError::from(e)))?;
    // SAFETY: flock on a descriptor `file` owns, alive for the call.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(RestoreError::Write(format!(
            "{shown} is in use by a running member (its lock is held); stop the member first"
        )));
    }
    let before = file.metadata().map_err(write)?.len();
    let reader = bbolt::Reader::new(file).map_err(bbolt_error)?;
    for name in ["key", "meta"] {
        if reader
            .bucket(name.as_bytes())
            .map_err(bbolt_error)?
            .is_none()
        {
            return Err(RestoreError::NotEtcd {
                path: shown.clone(),
                reason: format!("no `{name}` bucket"),
            });
        }
    }
    let temp = db.with_extension("db.keel-defrag.tmp");
    let result = (|| {
        let mut writer = bbolt::Writer::create(&temp).map_err(bbolt_error)?;
        for bucket in reader.buckets() {
            let bucket = bucket.map_err(bbolt_error)?;
            writer.bucket(bucket.name()).map_err(bbolt_error)?;
            for entry in reader.entries(&bucket) {
                let entry = entry.map_err(bbolt_error)?;
                writer.put(&entry.key, &entry.value).map_err(bbolt_error)?;
            }
        }
        let out = writer.finish().map_err(bbolt_error)?;
        out.sync_all().map_err(write)?;
        let after = out.metadata().map_err(write)?.len();
        std::fs::rename(&temp, db).map_err(write)?;
        if let Some(dir) = db.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(write)?;
        }
        Ok(Defragmented { before, after })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// `etcdctl snapshot status` of the file at `path`: its SHA-256 trailer (if any) checked,
/// every record read.
pub fn status(path: &Path) -> Result<SnapshotStatus, RestoreError> {
    let shown = path.display().to_string();
    let bbolt_error = |source| RestoreError::Bbolt {
        path: shown.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(|e| bbolt_error(bbolt::BboltError::from(e)))?;
    bbolt::snapshot::verify_snapshot_hash(&file).map_err(bbolt_error)?;
    let reader = bbolt::Reader::new(file).map_err(bbolt_error)?;
    let (mut hash, mut revision, mut total_keys) = (0u32, 0i64, 0u64);
    for bucket in reader.buckets() {
        let bucket = bucket.map_err(bbolt_error)?;
        hash = crc32c::crc32c_append(hash, bucket.name());
        for entry in reader.entries(&bucket) {
            let entry = entry.map_err(bbolt_error)?;
            hash = crc32c::crc32c_append(hash, &entry.key);
            hash = crc32c::crc32c_append(hash, &entry.value);
            if bucket.name() == b"key" && entry.key.len() >= 8 {
                revision = i64::from_be_bytes(entry.key[..8].try_into().expect("8 bytes"));
            }
            total_keys += 1;
        }
    }
    let meta = reader.meta();
    let size = meta.high_water_page * u64::from(meta.page_size);
    Ok(SnapshotStatus {
        hash,
        revision,
        total_keys,
        total_size: human_bytes(size),
        total_size_bytes: size,
    })
}

/// A size as etcdctl prints it (go-humanize's `Bytes`: powers of 1000, one decimal below 10).
pub fn human_bytes(size: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if size < 10 {
        return format!("{size} B");
    }
    let exponent = ((size as f64).ln() / 1000f64.ln()).floor() as usize;
    let exponent = exponent.min(UNITS.len() - 1);
    let value = ((size as f64) / 1000f64.powi(exponent as i32) * 10.0 + 0.5).floor() / 10.0;
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[exponent])
    } else {
        format!("{value:.0} {}", UNITS[exponent])
    }
}

#[cfg(test)]
mod status_tests {
    use super::human_bytes;

    #[test]
    fn sizes_print_as_etcdctl_prints_them() {
        assert_eq!(human_bytes(5), "5 B");
        assert_eq!(human_bytes(16384), "16 kB");
        assert_eq!(human_bytes(2048), "2.0 kB");
        assert_eq!(human_bytes(375_390_208), "375 MB");
    }
}
