//! The etcd v3 gRPC services, each a thin layer between the wire types and the server core.

pub mod convert;
pub mod health;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod watch;
