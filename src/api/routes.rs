//! The gRPC router a front core serves on every client URL: etcd's services over one
//! member's shared state, with etcd's limits and its leader check.

use keel_proto::etcdserverpb::auth_server::AuthServer;
use keel_proto::etcdserverpb::cluster_server::ClusterServer;
use keel_proto::etcdserverpb::kv_server::KvServer;
use keel_proto::etcdserverpb::lease_server::LeaseServer;
use keel_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use keel_proto::etcdserverpb::watch_server::WatchServer;
use keel_proto::grpc_health_v1::health_server::HealthServer;
use keel_proto::v3electionpb::election_server::ElectionServer;
use keel_proto::v3lockpb::lock_server::LockServer;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Routes;

use crate::api::auth::AuthService;
use crate::api::health::HealthService;
use crate::api::kv::KvService;
use crate::api::lease::LeaseService;
use crate::api::lock::{ElectionService, LockService};
use crate::api::maintenance::{ClusterService, MaintenanceService};
use crate::api::watch::WatchService;
use crate::server::error::ServerError;
use crate::server::state::{SharedRef, GRPC_OVERHEAD_BYTES};

/// etcd's leader check: a request whose metadata carries `hasleader: true` (clientv3's
/// `WithRequireLeader`, which etcdctl's watch uses) fails with `etcdserver: no leader` while
/// the member knows no leader.
#[derive(Clone)]
struct RequireLeader(SharedRef);

impl tonic::service::Interceptor for RequireLeader {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let requires = request
            .metadata()
            .get("hasleader")
            .is_some_and(|v| v.as_bytes() == b"true");
        if requires && !self.0.has_leader() {
            return Err(ServerError::NoLeader.into());
        }
        Ok(request)
    }
}

/// Every client-facing service over `shared`: KV, Watch, Lease, Maintenance, Cluster, Auth,
/// Lock and Election behind the leader check, decoding messages up to `--max-request-bytes` plus etcd's gRPC
/// allowance, and gRPC health.
pub fn routes(shared: &SharedRef) -> Routes {
    let decode_max = shared.limits.request_bytes_max + GRPC_OVERHEAD_BYTES;
    let leader = RequireLeader(shared.clone());
    Routes::new(InterceptedService::new(
        KvServer::new(KvService::new(shared.clone())).max_decoding_message_size(decode_max),
        leader.clone(),
    ))
    .add_service(InterceptedService::new(
        WatchServer::new(WatchService::new(shared.clone())).max_decoding_message_size(decode_max),
        leader.clone(),
    ))
    .add_service(InterceptedService::new(
        LeaseServer::new(LeaseService::new(shared.clone())).max_decoding_message_size(decode_max),
        leader.clone(),
    ))
    .add_service(InterceptedService::new(
        MaintenanceServer::new(MaintenanceService::new(shared.clone()))
            .max_decoding_message_size(decode_max),
        leader.clone(),
    ))
    .add_service(InterceptedService::new(
        ClusterServer::new(ClusterService::new(shared.clone())),
        leader.clone(),
    ))
    .add_service(InterceptedService::new(
        AuthServer::new(AuthService::new(shared.clone())),
        leader.clone(),
    ))
    .add_service(InterceptedService::new(
        LockServer::new(LockService::new(shared.clone())).max_decoding_message_size(decode_max),
        leader.clone(),
    ))
    .add_service(InterceptedService::new(
        ElectionServer::new(ElectionService::new(shared.clone()))
            .max_decoding_message_size(decode_max),
        leader,
    ))
    .add_service(HealthServer::new(HealthService::new(shared.clone())))
}
