//! Protobuf messages and gRPC services for Keel.
//!
//! Two protocols live here, both generated at build time from the `.proto` files under
//! `proto/proto/` (compiled by protox, so no system `protoc` is needed):
//!
//! - **etcd's v3 client API**, with etcd's exact package, service, method, message and field
//!   names and numbers, so that etcdctl, Go's clientv3 and other etcd clients talk to Keel
//!   unchanged: [`etcdserverpb`] (services KV, Watch, Lease, Cluster, Maintenance, Auth),
//!   [`mvccpb`] (`KeyValue`, `Event`), [`authpb`] (`User`, `Role`, `Permission`),
//!   [`v3lockpb`] (service Lock) and [`v3electionpb`] (service Election).
//! - **Keel's peer protocol**, [`keelpeerpb`]: raft messages as opaque bytes, chunked snapshot
//!   transfer and a `Hello` identity check between members.
//!
//! For each service `S` the generated code has a server module `s_server` with a trait `S`
//! to implement and a `SServer` wrapper to serve, and a client module `s_client` with
//! `SClient`; for example `etcdserverpb::kv_server::{Kv, KvServer}` and
//! `etcdserverpb::kv_client::KvClient`. Clients are generated without tonic's `transport`
//! feature: build them with `KvClient::new(channel)`.
//!
//! Rust field names are prost's snake_case forms of etcd's proto names, which are not always
//! pretty: `Member.peerURLs` becomes `peer_ur_ls`, `LeaseGrantRequest.TTL` becomes `ttl` and
//! `ID` becomes `id`.

#![deny(missing_docs)]

/// Generated code carries proto comments as docs but not on every item, and it is not
/// written to satisfy clippy; these allowances apply to generated modules only.
macro_rules! generated_module {
    ($(#[$meta:meta])* $name:ident, $file:literal) => {
        $(#[$meta])*
        #[allow(
            missing_docs,
            clippy::all,
            clippy::pedantic,
            rustdoc::all,
            unreachable_pub
        )]
        pub mod $name {
            include!(concat!(env!("OUT_DIR"), "/", $file));
        }
    };
}

generated_module!(
    /// etcd's key-value record and watch event (`mvccpb.KeyValue`, `mvccpb.Event`).
    mvccpb,
    "mvccpb.rs"
);
generated_module!(
    /// etcd's auth records: users, roles and permissions.
    authpb,
    "authpb.rs"
);
generated_module!(
    /// etcd's v3 client API: the KV, Watch, Lease, Cluster, Maintenance and Auth services and
    /// their messages.
    etcdserverpb,
    "etcdserverpb.rs"
);
generated_module!(
    /// etcd's distributed lock service.
    v3lockpb,
    "v3lockpb.rs"
);
generated_module!(
    /// etcd's leader election service.
    v3electionpb,
    "v3electionpb.rs"
);
generated_module!(
    /// Keel's member-to-member protocol: raft messages, snapshot transfer, identity checks.
    keelpeerpb,
    "keelpeerpb.rs"
);
generated_module!(
    /// The standard gRPC health checking service (`grpc.health.v1.Health`), as etcd serves it.
    grpc_health_v1,
    "grpc.health.v1.rs"
);

/// The encoded `google.protobuf.FileDescriptorSet` of every compiled `.proto` file (without
/// source comments), for serving gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/keel_descriptor_set.bin"));

/// Version of the peer protocol in [`keelpeerpb`] that this build speaks, exchanged in
/// `HelloRequest.protocol_version` and `HelloResponse.protocol_version`. Raise it when the
/// meaning of an existing message changes.
pub const PEER_PROTOCOL_VERSION: u32 = 1;
