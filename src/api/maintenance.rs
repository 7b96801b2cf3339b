//! The Maintenance and Cluster services.

use std::pin::Pin;

use futures::Stream;
use keel_proto::etcdserverpb as pb;
use keel_proto::etcdserverpb::cluster_server::Cluster;
use keel_proto::etcdserverpb::maintenance_server::Maintenance;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::api::auth::{raw_auth_status, Credentials};
use crate::api::error::mvcc_status;
use crate::server::command::{Command, DowngradeInfoSetBody};
use crate::server::membership;
use crate::server::state::{Applied, SharedRef, ETCD_API_VERSION, ETCD_CLUSTER_VERSION};

/// Size of one Snapshot response chunk (etcd sends 32 KiB chunks).
pub const SNAPSHOT_CHUNK_BYTES: usize = 32 * 1024;
/// Keys encoded per slice of a Snapshot, each slice under the store's read lock (as a
/// checkpoint's: writes wait for at most one slice).
pub const SNAPSHOT_SLICE_KEYS: usize = crate::server::log::CHECKPOINT_SLICE_KEYS;

/// The Maintenance service.
pub struct MaintenanceService {
    shared: SharedRef,
}

impl MaintenanceService {
    /// A service over `shared`.
    pub fn new(shared: SharedRef) -> MaintenanceService {
        MaintenanceService { shared }
    }
}

type SnapshotStream =
    Pin<Box<dyn Stream<Item = Result<pb::SnapshotResponse, Status>> + Send + 'static>>;

/// How etcd prints an alarm in Status.errors: `memberID:<id> alarm:<NAME> `.
fn alarm_text(alarm: &pb::AlarmMember) -> String {
    let name = pb::AlarmType::try_from(alarm.alarm)
        .map(|a| a.as_str_name())
        .unwrap_or("UNKNOWN");
    format!("memberID:{} alarm:{} ", alarm.member_id, name)
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        self.shared.refuse_if_learner()?;
        let credentials = Credentials::of(&request);
        let request = request.into_inner();
        // Reading alarms needs a user; raising or clearing them an admin (etcd 3.5.29+).
        if request.action == pb::alarm_request::AlarmAction::Get as i32 {
            credentials.require_user(&self.shared).await?;
        } else {
            credentials.require_admin(&self.shared).await?;
        }
        let alarms = if request.action == pb::alarm_request::AlarmAction::Get as i32 {
            let alarms = self.shared.alarms.lock().expect("alarm lock").clone();
            alarms
                .into_iter()
                .filter(|a| request.alarm == pb::AlarmType::None as i32 || a.alarm == request.alarm)
                .collect()
        } else {
            match self.shared.propose(Command::Alarm(request)).await? {
                Applied::Alarm(alarms) => alarms,
                other => return Err(Status::internal(format!("unexpected result {other:?}"))),
            }
        };
        Ok(Response::new(pb::AlarmResponse {
            header: self.shared.header().at(self.shared.current_revision()),
            alarms,
        }))
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        // Any user (etcd 3.5.32+; 3.4 asked for none).
        Credentials::of(&request).require_user(&self.shared).await?;
        let gauges = self.shared.store_gauges();
        let applied = self
            .shared
            .applied_index
            .load(std::sync::atomic::Ordering::Acquire);
        let mut errors: Vec<String> = self
            .shared
            .alarms
            .lock()
            .expect("alarm lock")
            .iter()
            .map(alarm_text)
            .collect();
        let leader = self
            .shared
            .leader_id
            .load(std::sync::atomic::Ordering::Acquire);
        if leader == 0 {
            // etcd 3.5 reports a member without a leader in the status errors.
            errors.push("etcdserver: no leader".to_string());
        }
        Ok(Response::new(pb::StatusResponse {
            header: self.shared.header().at(gauges.current_revision),
            version: ETCD_API_VERSION.to_string(),
            db_size: gauges.db_total_size_bytes as i64,
            leader,
            raft_index: self
                .shared
                .commit_index
                .load(std::sync::atomic::Ordering::Acquire)
                .max(applied),
            raft_term: self.shared.header().raft_term,
            raft_applied_index: applied,
            errors,
            db_size_in_use: gauges.db_total_size_bytes as i64,
            is_learner: self
                .shared
                .is_learner
                .load(std::sync::atomic::Ordering::Acquire),
            storage_version: String::new(),
            // storage_version, db_size_quota and downgrade_info are etcd 3.6's fields; 3.5
            // leaves them unset (v3rpc/maintenance.go `Status`). Keel sets downgrade_info as
            // 3.6 does while a downgrade is in progress (so every member shows it), and
            // leaves it unset otherwise, as 3.5 answers.
            db_size_quota: 0,
            downgrade_info: self.downgrade_in_progress(),
        }))
    }

    async fn defragment(
        &self,
        request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        self.shared.refuse_if_learner()?;
        self.admin_only(&request).await?;
        // Keel's store keeps no free pages: compaction already returned the memory and the
        // WAL is trimmed at checkpoints. Defragment has nothing left to do and returns at once
        // (etcd's defragment blocks the member while it rewrites the whole file). etcd 3.5
        // answers with an empty message, no header (v3rpc/maintenance.go `Defragment`).
        Ok(Response::new(pb::DefragmentResponse { header: None }))
    }

    async fn hash(
        &self,
        request: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        self.shared.refuse_if_learner()?;
        self.admin_only(&request).await?;
        let store = self.shared.read_store();
        let hash = store.hash_kv(0).map_err(mvcc_status)?;
        Ok(Response::new(pb::HashResponse {
            header: self.shared.header().at(store.current_revision()),
            hash: hash.hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        self.shared.refuse_if_learner()?;
        self.admin_only(&request).await?;
        let store = self.shared.read_store();
        let hash = store
            .hash_kv(request.get_ref().revision)
            .map_err(mvcc_status)?;
        Ok(Response::new(pb::HashKvResponse {
            header: self.shared.header().at(store.current_revision()),
            hash: hash.hash,
            compact_revision: hash.compact_revision,
            // etcd 3.6's field: 3.5 leaves it 0 (v3rpc/maintenance.go `HashKV`).
            hash_revision: 0,
        }))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.admin_only(&request).await?;
        // The stream is etcd's backend file (a bbolt database with etcd's buckets; see
        // `crate::backup`) followed by the SHA-256 of the file, as etcd streams it, so that
        // `etcdctl snapshot status` and `restore` (and etcd itself) read it. The store is
        // exported from a consistent view a slice of keys at a time, under the read lock for
        // each slice only, so writes go on; the file is written by a thread of its own to the
        // data dir and streamed from there, then removed.
        let shared = self.shared.clone();
        let (pin, mut export, meta) = shared.begin_export();
        let collected = loop {
            shared.let_store_writers_in();
            let step = export.step(&shared.read_store(), SNAPSHOT_SLICE_KEYS);
            match step {
                Ok(true) => break Ok(()),
                Ok(false) => futures_lite::future::yield_now().await,
                Err(error) => break Err(error),
            }
        };
        let exported = collected
            .and_then(|()| export.finish())
            .map_err(|e| Status::internal(format!("etcdserver: snapshot failed: {e}")))?;
        // The export shares keys and values with the store: compaction may go on now.
        drop(pin);
        let path = shared.scratch_dir.join(format!(
            "backend-export-{:016x}.db.tmp",
            shared.ids.next_request_id()
        ));
        let file = BackendFile::write(path, exported, meta).await?;
        // etcd 3.5 sends neither a header nor a version in the stream's messages
        // (v3rpc/maintenance.go `Snapshot`; both are 3.6's).
        let chunks = futures::stream::unfold(
            (file, Sha256::new(), false),
            move |(mut file, mut digest, finished)| async move {
                if finished {
                    return None;
                }
                let chunk = match file.next_chunk() {
                    Ok(chunk) => chunk,
                    Err(error) => {
                        let status = Status::internal(format!(
                            "etcdserver: reading the snapshot file failed: {error}"
                        ));
                        return Some((Err(status), (file, digest, true)));
                    }
                };
                if chunk.is_empty() {
                    // The trailer etcdctl checks: the SHA-256 of everything sent before.
                    let response = pb::SnapshotResponse {
                        header: None,
                        remaining_bytes: 0,
                        blob: digest.finalize_reset().to_vec(),
                        version: String::new(),
                    };
                    return Some((Ok(response), (file, digest, true)));
                }
                digest.update(&chunk);
                let response = pb::SnapshotResponse {
                    header: None,
                    remaining_bytes: file.remaining(),
                    blob: chunk,
                    version: String::new(),
                };
                Some((Ok(response), (file, digest, false)))
            },
        );
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn move_leader(
        &self,
        request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        self.shared.refuse_if_learner()?;
        Credentials::of(&request)
            .require_admin(&self.shared)
            .await?;
        // etcd: only the leader moves leadership, to a voter; the answer comes once the
        // transferee leads.
        self.shared.move_leader(request.get_ref().target_id).await?;
        // etcd 3.5 answers with an empty message, no header (v3rpc/maintenance.go
        // `MoveLeader`).
        Ok(Response::new(pb::MoveLeaderResponse { header: None }))
    }

    async fn downgrade(
        &self,
        request: Request<pb::DowngradeRequest>,
    ) -> Result<Response<pb::DowngradeResponse>, Status> {
        // etcd 3.5 (server/etcdserver/v3_server.go `Downgrade`): an admin's; VALIDATE checks
        // that the target is the one minor version below the cluster's and that no downgrade
        // is in progress, ENABLE validates the same way and then records the target through
        // the log (`DowngradeInfoSetRequest`), CANCEL ends the one in progress the same way.
        self.shared.refuse_if_learner()?;
        Credentials::of(&request)
            .require_admin(&self.shared)
            .await?;
        let request = request.into_inner();
        use pb::downgrade_request::DowngradeAction;
        let cluster_version = ETCD_CLUSTER_VERSION;
        let change = match DowngradeAction::try_from(request.action) {
            Ok(DowngradeAction::Validate) => {
                self.downgrade_validate(&request.version, cluster_version)
                    .await?;
                None
            }
            Ok(DowngradeAction::Enable) => {
                let (major, minor) = self
                    .downgrade_validate(&request.version, cluster_version)
                    .await?;
                // The target as etcd writes it: go-semver's String of X.Y.0.
                Some(DowngradeInfoSetBody {
                    enabled: true,
                    ver: format!("{major}.{minor}.0"),
                })
            }
            Ok(DowngradeAction::Cancel) => {
                self.shared.linearizable_barrier().await?;
                if self.downgrade_in_progress().is_none() {
                    return Err(Status::failed_precondition(
                        "etcdserver: no inflight downgrade job",
                    ));
                }
                Some(DowngradeInfoSetBody::default())
            }
            // etcd's ErrUnknownMethod, which togRPCError passes on with code Unknown.
            Err(_) => return Err(Status::unknown("etcdserver: unknown method")),
        };
        if let Some(change) = change {
            self.shared
                .propose(Command::DowngradeInfoSet(change))
                .await?;
        }
        Ok(Response::new(pb::DowngradeResponse {
            header: self.shared.header().at(self.shared.current_revision()),
            version: cluster_version.to_string(),
        }))
    }
}

/// A semantic version as etcd's `semver.NewVersion` (coreos/go-semver) reads it: three
/// dot-separated decimal integers, then an optional `-pre.release` and `+metadata` of
/// `[0-9A-Za-z-]` identifiers. Returns (major, minor, patch).
fn semver(text: &str) -> Option<(i64, i64, i64)> {
    fn identifiers(text: &str) -> bool {
        text.split('.').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
    }
    let (text, metadata) = text.split_once('+').unwrap_or((text, ""));
    let (text, pre_release) = text.split_once('-').unwrap_or((text, ""));
    if (!metadata.is_empty() && !identifiers(metadata))
        || (!pre_release.is_empty() && !identifiers(pre_release))
    {
        return None;
    }
    let mut parts = text.splitn(3, '.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next()?.parse().ok()?;
    Some((major, minor, patch))
}

/// etcd's `convertToClusterVersion`: the major and minor of a downgrade target written as
/// `X.Y.Z` or `X.Y`.
fn downgrade_target(version: &str) -> Result<(i64, i64), Status> {
    semver(version)
        .or_else(|| semver(&format!("{version}.0")))
        .map(|(major, minor, _)| (major, minor))
        .ok_or_else(|| {
            Status::invalid_argument("etcdserver: wrong downgrade target version format")
        })
}

/// etcd's `AllowedDowngradeVersion`: one minor version below the cluster's.
fn allowed_downgrade(cluster_version: &str) -> Option<(i64, i64)> {
    semver(cluster_version).map(|(major, minor, _)| (major, minor - 1))
}

impl MaintenanceService {
    /// etcd's `downgradeValidate`: `version` is a well-formed target (checked before the
    /// linearizable barrier, as etcd does), the one below `cluster_version`, and no downgrade
    /// is in progress. Returns the target's major and minor.
    async fn downgrade_validate(
        &self,
        version: &str,
        cluster_version: &str,
    ) -> Result<(i64, i64), Status> {
        let target = downgrade_target(version)?;
        self.shared.linearizable_barrier().await?;
        if Some(target) != allowed_downgrade(cluster_version) {
            return Err(Status::invalid_argument(
                "etcdserver: invalid downgrade target version",
            ));
        }
        if self.downgrade_in_progress().is_some() {
            return Err(Status::failed_precondition(
                "etcdserver: cluster has a downgrade job in progress",
            ));
        }
        Ok(target)
    }

    /// The downgrade in progress as this member last applied it.
    fn downgrade_in_progress(&self) -> Option<pb::DowngradeInfo> {
        self.shared
            .downgrade
            .lock()
            .expect("downgrade lock")
            .clone()
    }

    /// etcd's check for Defragment, Snapshot, Hash and HashKV: an admin, refused with the
    /// auth store's own error (code `Unknown`, `auth: ...`).
    async fn admin_only<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let credentials = Credentials::of(request);
        credentials
            .require_admin(&self.shared)
            .await
            .map(|_| ())
            .map_err(raw_auth_status)
    }
}

/// The backend file of a Snapshot being streamed; removed when dropped (sent, or the client
/// went away).
struct BackendFile {
    path: std::path::PathBuf,
    file: std::fs::File,
    size: u64,
    sent: u64,
}

impl BackendFile {
    /// Writes the file on a thread of its own (it can take seconds for a large store).
    async fn write(
        path: std::path::PathBuf,
        exported: keel_engine::mvcc::Exported,
        meta: crate::backup::BackendMeta,
    ) -> Result<BackendFile, Status> {
        let target = path.clone();
        let written = crate::executor::on_own_thread("keel-snapshot", move || {
            crate::backup::write_backend(&target, &exported, &meta)
                .map_err(|e| e.to_string())
                .and_then(|size| {
                    std::fs::File::open(&target)
                        .map(|file| (file, size))
                        .map_err(|e| e.to_string())
                })
        })
        .await
        .unwrap_or_else(|_| Err("the snapshot thread did not start or panicked".to_string()));
        match written {
            Ok((file, size)) => Ok(BackendFile {
                path,
                file,
                size,
                sent: 0,
            }),
            Err(error) => {
                let _ = std::fs::remove_file(&path);
                Err(Status::internal(format!(
                    "etcdserver: snapshot failed: {error}"
                )))
            }
        }
    }

    /// The next chunk (empty at the end). Reads of at most 32 KiB from a file just written,
    /// so from the page cache.
    fn next_chunk(&mut self) -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        let want = (self.size - self.sent).min(SNAPSHOT_CHUNK_BYTES as u64) as usize;
        let mut chunk = vec![0; want];
        self.file.read_exact(&mut chunk)?;
        self.sent += want as u64;
        Ok(chunk)
    }

    /// Bytes of the file not sent yet.
    fn remaining(&self) -> u64 {
        self.size - self.sent
    }
}

impl Drop for BackendFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The Cluster service: the members, as the log last set them, and etcd's membership
/// changes (`server::membership`).
pub struct ClusterService {
    shared: SharedRef,
}

impl ClusterService {
    /// A service over `shared`.
    pub fn new(shared: SharedRef) -> ClusterService {
        ClusterService { shared }
    }

    /// etcd's `checkMembershipOperationPermission`: membership changes are an admin's.
    async fn admin_only<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let credentials = Credentials::of(request);
        credentials.require_admin(&self.shared).await?;
        Ok(())
    }

    /// etcd's cluster service header: no revision.
    fn header(&self) -> Option<pb::ResponseHeader> {
        self.shared.header().at(0)
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        self.admin_only(&request).await?;
        let request = request.into_inner();
        let (member, members) =
            membership::add(&self.shared, &request.peer_ur_ls, request.is_learner).await?;
        Ok(Response::new(pb::MemberAddResponse {
            header: self.header(),
            member: Some(member),
            members,
        }))
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        self.admin_only(&request).await?;
        let members = membership::remove(&self.shared, request.get_ref().id).await?;
        Ok(Response::new(pb::MemberRemoveResponse {
            header: self.header(),
            members,
        }))
    }

    async fn member_update(
        &self,
        request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        self.admin_only(&request).await?;
        let request = request.into_inner();
        let members = membership::update(&self.shared, request.id, &request.peer_ur_ls).await?;
        Ok(Response::new(pb::MemberUpdateResponse {
            header: self.header(),
            members,
        }))
    }

    async fn member_list(
        &self,
        request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        // etcd's learners serve no MemberList.
        self.shared.refuse_if_learner()?;
        let credentials = Credentials::of(&request);
        if request.get_ref().linearizable {
            self.shared.linearizable_barrier().await?;
        }
        // Any user (etcd 3.5.29+).
        credentials.require_user(&self.shared).await?;
        Ok(Response::new(pb::MemberListResponse {
            header: self.header(),
            members: self.shared.member_list(),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        self.admin_only(&request).await?;
        let members = membership::promote(&self.shared, request.get_ref().id).await?;
        Ok(Response::new(pb::MemberPromoteResponse {
            header: self.header(),
            members,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downgrade_targets_as_etcd_reads_them() {
        assert_eq!(downgrade_target("3.4").unwrap(), (3, 4));
        assert_eq!(downgrade_target("3.4.0").unwrap(), (3, 4));
        assert_eq!(downgrade_target("3.4.23-rc.1+build-7").unwrap(), (3, 4));
        for bad in [
            "",
            "3",
            "x.y",
            "3.4.5.6",
            "3.4-rc",
            "3.4.0+a..b",
            "3.4.x",
            "v3.4",
        ] {
            let status = downgrade_target(bad).unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bad}");
            assert_eq!(
                status.message(),
                "etcdserver: wrong downgrade target version format"
            );
        }
        assert_eq!(allowed_downgrade(ETCD_CLUSTER_VERSION), Some((3, 4)));
    }
}
