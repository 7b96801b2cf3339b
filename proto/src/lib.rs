//! etcd v3 API protobuf definitions.
