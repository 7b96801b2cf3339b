//! The standard gRPC health service (`grpc.health.v1.Health`), which etcd registers too:
//! load balancers and some clients probe it. The server as a whole (service name "") and
//! every etcd service report SERVING while the member can take writes.

use std::pin::Pin;
use std::sync::atomic::Ordering;

use futures::Stream;
use keel_proto::grpc_health_v1::health_check_response::ServingStatus;
use keel_proto::grpc_health_v1::health_server::Health;
use keel_proto::grpc_health_v1::{HealthCheckRequest, HealthCheckResponse};
use tonic::{Request, Response, Status};

use crate::server::state::SharedRef;

/// Service names the health service knows.
pub const KNOWN_SERVICES: &[&str] = &[
    "",
    "etcdserverpb.KV",
    "etcdserverpb.Watch",
    "etcdserverpb.Lease",
    "etcdserverpb.Maintenance",
    "etcdserverpb.Cluster",
];

/// The health service.
pub struct HealthService {
    shared: SharedRef,
}

impl HealthService {
    /// A service over `shared`.
    pub fn new(shared: SharedRef) -> HealthService {
        HealthService { shared }
    }

    fn status(&self) -> ServingStatus {
        let failed = self.shared.wal_failed.load(Ordering::Acquire)
            || self.shared.stopping.load(Ordering::Acquire);
        if failed {
            ServingStatus::NotServing
        } else {
            ServingStatus::Serving
        }
    }
}

type HealthStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        if !KNOWN_SERVICES.contains(&request.get_ref().service.as_str()) {
            return Err(Status::not_found("unknown service"));
        }
        Ok(Response::new(HealthCheckResponse {
            status: self.status() as i32,
        }))
    }

    type WatchStream = HealthStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        // The current state only; the stream then stays open until the client leaves or the
        // server stops (state changes today mean the member is going away).
        let status = if KNOWN_SERVICES.contains(&request.get_ref().service.as_str()) {
            self.status()
        } else {
            ServingStatus::ServiceUnknown
        };
        let first = futures::stream::once(async move {
            Ok(HealthCheckResponse {
                status: status as i32,
            })
        });
        let shared = self.shared.clone();
        let until_stop = futures::stream::once(async move {
            loop {
                let listener = shared.stop_event.listen();
                if shared.stopping.load(Ordering::Acquire) {
                    break;
                }
                listener.await;
            }
            Ok(HealthCheckResponse {
                status: ServingStatus::NotServing as i32,
            })
        });
        Ok(Response::new(Box::pin(futures::StreamExt::chain(
            first, until_stop,
        ))))
    }
}
