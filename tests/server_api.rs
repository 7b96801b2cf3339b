//! In-process server tests for what etcdctl does not reach: the gRPC health service, HTTP
//! endpoints, metrics, MoveLeader and Status details.

use std::time::Duration;

use clap::Parser;
use keel::config::Config;
use keel::member::{start, ServerHandle};
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_proto::etcdserverpb::{MoveLeaderRequest, PutRequest, StatusRequest};
use keel_proto::grpc_health_v1::health_client::HealthClient;
use keel_proto::grpc_health_v1::HealthCheckRequest;
use tonic::transport::Channel;

fn start_member(dir: &std::path::Path) -> ServerHandle {
    let config = Config::parse_from([
        "keel",
        "--data-dir",
        dir.join("data").to_str().expect("utf-8 path"),
        "--listen-client-urls",
        "http://127.0.0.1:0",
        "--advertise-client-urls",
        "http://127.0.0.1:2379",
        "--listen-metrics-urls",
        "http://127.0.0.1:0",
        "--cores",
        "1",
    ]);
    start(&config).expect("start member")
}

async fn channel(server: &ServerHandle) -> Channel {
    Channel::from_shared(format!("http://{}", server.client_addrs[0]))
        .expect("uri")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect")
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: keel\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read");
    let status = reply[9..12].parse().expect("status code");
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn health_service_http_endpoints_and_metrics() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start_member(dir.path());
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    runtime.block_on(async {
        let channel = channel(&server).await;
        let mut health = HealthClient::new(channel.clone());
        let status = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("health check")
            .into_inner();
        assert_eq!(status.status, 1, "SERVING");
        let unknown = health
            .check(HealthCheckRequest {
                service: "no.such.Service".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);

        let mut kv = KvClient::new(channel.clone());
        for i in 0..5 {
            kv.put(PutRequest {
                key: format!("k{i}").into_bytes(),
                value: b"v".to_vec(),
                ..Default::default()
            })
            .await
            .expect("put");
        }

        let mut maintenance = MaintenanceClient::new(channel);
        let status = maintenance
            .status(StatusRequest {})
            .await
            .expect("status")
            .into_inner();
        assert_eq!(status.header.as_ref().map(|h| h.revision), Some(6));
        assert_eq!(status.leader, status.header.as_ref().unwrap().member_id);
        assert!(status.raft_applied_index >= 5);
        assert!(status.db_size > 0);
        // Moving leadership to itself is a no-op; to anyone else, etcd's error.
        maintenance
            .move_leader(MoveLeaderRequest {
                target_id: status.leader,
            })
            .await
            .expect("move to self");
        let error = maintenance
            .move_leader(MoveLeaderRequest {
                target_id: status.leader ^ 1,
            })
            .await
            .unwrap_err();
        assert_eq!(error.message(), "etcdserver: bad leader transferee");
    });

    for addr in [server.client_addrs[0], server.metrics_addrs[0]] {
        let (code, body) = http_get(addr, "/health");
        assert_eq!(
            (code, body.as_str()),
            (200, "{\"health\":\"true\",\"reason\":\"\"}")
        );
        assert_eq!(http_get(addr, "/livez").0, 200);
        assert_eq!(http_get(addr, "/readyz").0, 200);
        let (code, version) = http_get(addr, "/version");
        assert_eq!(code, 200);
        assert!(version.contains("\"etcdserver\":\"3.5."), "{version}");
        let (code, metrics) = http_get(addr, "/metrics");
        assert_eq!(code, 200);
        for line in [
            "etcd_server_has_leader 1",
            "etcd_mvcc_put_total 5",
            "etcd_debugging_mvcc_keys_total 5",
        ] {
            assert!(metrics.contains(line), "metrics lack {line:?}");
        }
        // As in etcd, the committed-proposals figure is the raft commit index: the 5 puts plus
        // the entries raft and the member itself add (the leader's empty entry, the published
        // member attributes).
        let committed: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("etcd_server_proposals_committed_total "))
            .and_then(|v| v.parse().ok())
            .expect("etcd_server_proposals_committed_total");
        assert!(committed >= 5, "{committed}");
        assert!(metrics.contains("etcd_disk_wal_fsync_duration_seconds_count"));
        assert_eq!(http_get(addr, "/nope").0, 404);
    }
    server.stop();
}
