//! The etcd v3 gRPC services, each a thin layer between the wire types and the server core.
//!
//! The API layer uses the server core ([`crate::server`]), never the reverse: the server
//! answers with typed results and [`crate::server::error::ServerError`], and [`error`] turns
//! those into etcd's gRPC statuses here. [`routes`] assembles the services a front core serves
//! (wired up by [`crate::member`]), and [`gateway`] serves them as JSON over plain HTTP, as
//! etcd's gRPC gateway does.

pub mod auth;
pub mod error;
pub mod gateway;
pub mod health;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod routes;
pub mod watch;
