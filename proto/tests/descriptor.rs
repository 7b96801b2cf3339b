//! Checks that the embedded descriptor set describes etcd's services exactly: every method's
//! full gRPC path (what a client puts in the HTTP/2 `:path` header) and its streaming shape.

use std::collections::BTreeMap;

use keel_proto::FILE_DESCRIPTOR_SET;
use prost::Message;
use prost_types::FileDescriptorSet;

/// The streaming shape of a method: (client streams, server streams).
type Shape = (bool, bool);

const UNARY: Shape = (false, false);
const SERVER_STREAM: Shape = (false, true);
const CLIENT_STREAM: Shape = (true, false);
const BIDI: Shape = (true, true);

/// Every method Keel must serve, as etcd 3.5 and etcdctl address them, with its shape.
const EXPECTED_METHODS: &[(&str, Shape)] = &[
    ("/etcdserverpb.KV/Range", UNARY),
    ("/grpc.health.v1.Health/Check", UNARY),
    ("/grpc.health.v1.Health/Watch", SERVER_STREAM),
    ("/etcdserverpb.KV/Put", UNARY),
    ("/etcdserverpb.KV/DeleteRange", UNARY),
    ("/etcdserverpb.KV/Txn", UNARY),
    ("/etcdserverpb.KV/Compact", UNARY),
    ("/etcdserverpb.Watch/Watch", BIDI),
    ("/etcdserverpb.Lease/LeaseGrant", UNARY),
    ("/etcdserverpb.Lease/LeaseRevoke", UNARY),
    ("/etcdserverpb.Lease/LeaseKeepAlive", BIDI),
    ("/etcdserverpb.Lease/LeaseTimeToLive", UNARY),
    ("/etcdserverpb.Lease/LeaseLeases", UNARY),
    ("/etcdserverpb.Cluster/MemberAdd", UNARY),
    ("/etcdserverpb.Cluster/MemberRemove", UNARY),
    ("/etcdserverpb.Cluster/MemberUpdate", UNARY),
    ("/etcdserverpb.Cluster/MemberList", UNARY),
    ("/etcdserverpb.Cluster/MemberPromote", UNARY),
    ("/etcdserverpb.Maintenance/Alarm", UNARY),
    ("/etcdserverpb.Maintenance/Status", UNARY),
    ("/etcdserverpb.Maintenance/Defragment", UNARY),
    ("/etcdserverpb.Maintenance/Hash", UNARY),
    ("/etcdserverpb.Maintenance/HashKV", UNARY),
    ("/etcdserverpb.Maintenance/Snapshot", SERVER_STREAM),
    ("/etcdserverpb.Maintenance/MoveLeader", UNARY),
    ("/etcdserverpb.Maintenance/Downgrade", UNARY),
    ("/etcdserverpb.Auth/AuthEnable", UNARY),
    ("/etcdserverpb.Auth/AuthDisable", UNARY),
    ("/etcdserverpb.Auth/AuthStatus", UNARY),
    ("/etcdserverpb.Auth/Authenticate", UNARY),
    ("/etcdserverpb.Auth/UserAdd", UNARY),
    ("/etcdserverpb.Auth/UserGet", UNARY),
    ("/etcdserverpb.Auth/UserList", UNARY),
    ("/etcdserverpb.Auth/UserDelete", UNARY),
    ("/etcdserverpb.Auth/UserChangePassword", UNARY),
    ("/etcdserverpb.Auth/UserGrantRole", UNARY),
    ("/etcdserverpb.Auth/UserRevokeRole", UNARY),
    ("/etcdserverpb.Auth/RoleAdd", UNARY),
    ("/etcdserverpb.Auth/RoleGet", UNARY),
    ("/etcdserverpb.Auth/RoleList", UNARY),
    ("/etcdserverpb.Auth/RoleDelete", UNARY),
    ("/etcdserverpb.Auth/RoleGrantPermission", UNARY),
    ("/etcdserverpb.Auth/RoleRevokePermission", UNARY),
    ("/v3lockpb.Lock/Lock", UNARY),
    ("/v3lockpb.Lock/Unlock", UNARY),
    ("/v3electionpb.Election/Campaign", UNARY),
    ("/v3electionpb.Election/Proclaim", UNARY),
    ("/v3electionpb.Election/Leader", UNARY),
    ("/v3electionpb.Election/Observe", SERVER_STREAM),
    ("/v3electionpb.Election/Resign", UNARY),
    ("/keelpeerpb.Peer/Raft", CLIENT_STREAM),
    ("/keelpeerpb.Peer/Snapshot", CLIENT_STREAM),
    ("/keelpeerpb.Peer/Hello", UNARY),
    ("/keelpeerpb.Peer/Lease", UNARY),
    ("/keelpeerpb.Peer/Promote", UNARY),
    ("/keelpeerpb.Peer/Members", UNARY),
];

fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("FILE_DESCRIPTOR_SET must decode")
}

/// Every method in the descriptor set, keyed by full path.
fn methods_by_path() -> BTreeMap<String, (Shape, String, String)> {
    let mut methods = BTreeMap::new();
    for file in descriptor_set().file {
        let package = file.package();
        for service in &file.service {
            for method in &service.method {
                let path = format!("/{package}.{}/{}", service.name(), method.name());
                let shape = (method.client_streaming(), method.server_streaming());
                let types = (
                    method.input_type().to_owned(),
                    method.output_type().to_owned(),
                );
                let previous = methods.insert(path.clone(), (shape, types.0, types.1));
                assert!(previous.is_none(), "method {path} is defined twice");
            }
        }
    }
    methods
}

#[test]
fn every_expected_method_exists_with_its_streaming_shape() {
    let methods = methods_by_path();
    for (path, shape) in EXPECTED_METHODS {
        let Some((actual_shape, _, _)) = methods.get(*path) else {
            panic!("method {path} is missing from the descriptor set");
        };
        assert_eq!(actual_shape, shape, "streaming shape of {path}");
    }
}

#[test]
fn no_unexpected_methods() {
    // A method present here but not in the list would be served by Keel yet unknown to etcd
    // clients, most likely a misspelling.
    let expected: Vec<&str> = EXPECTED_METHODS.iter().map(|(path, _)| *path).collect();
    for path in methods_by_path().keys() {
        assert!(
            expected.contains(&path.as_str()),
            "unexpected method {path}"
        );
    }
}

#[test]
fn request_and_response_types_of_selected_methods() {
    let methods = methods_by_path();
    let cases = [
        (
            "/etcdserverpb.KV/Compact",
            ".etcdserverpb.CompactionRequest",
            ".etcdserverpb.CompactionResponse",
        ),
        (
            "/etcdserverpb.Auth/UserAdd",
            ".etcdserverpb.AuthUserAddRequest",
            ".etcdserverpb.AuthUserAddResponse",
        ),
        (
            "/v3electionpb.Election/Observe",
            ".v3electionpb.LeaderRequest",
            ".v3electionpb.LeaderResponse",
        ),
    ];
    for (path, input, output) in cases {
        let (_, actual_input, actual_output) = &methods[path];
        assert_eq!(actual_input, input, "request type of {path}");
        assert_eq!(actual_output, output, "response type of {path}");
    }
}

#[test]
fn descriptor_set_has_every_package_and_no_source_info() {
    let set = descriptor_set();
    let mut packages: Vec<&str> = set.file.iter().map(|f| f.package()).collect();
    packages.sort_unstable();
    assert_eq!(
        packages,
        [
            "authpb",
            "etcdserverpb",
            "grpc.health.v1",
            "keelpeerpb",
            "mvccpb",
            "v3electionpb",
            "v3lockpb"
        ]
    );
    assert!(
        set.file.iter().all(|f| f.source_code_info.is_none()),
        "source info should be stripped from the embedded set"
    );
}

#[test]
fn generated_service_names_match_etcd() {
    use keel_proto::{etcdserverpb, keelpeerpb, v3electionpb, v3lockpb};
    assert_eq!(etcdserverpb::kv_server::SERVICE_NAME, "etcdserverpb.KV");
    assert_eq!(
        etcdserverpb::watch_server::SERVICE_NAME,
        "etcdserverpb.Watch"
    );
    assert_eq!(
        etcdserverpb::lease_server::SERVICE_NAME,
        "etcdserverpb.Lease"
    );
    assert_eq!(
        etcdserverpb::cluster_server::SERVICE_NAME,
        "etcdserverpb.Cluster"
    );
    assert_eq!(
        etcdserverpb::maintenance_server::SERVICE_NAME,
        "etcdserverpb.Maintenance"
    );
    assert_eq!(etcdserverpb::auth_server::SERVICE_NAME, "etcdserverpb.Auth");
    assert_eq!(v3lockpb::lock_server::SERVICE_NAME, "v3lockpb.Lock");
    assert_eq!(
        v3electionpb::election_server::SERVICE_NAME,
        "v3electionpb.Election"
    );
    assert_eq!(keelpeerpb::peer_server::SERVICE_NAME, "keelpeerpb.Peer");
}
