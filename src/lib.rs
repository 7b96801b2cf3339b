//! Keel: an etcd-compatible key-value store.
//!
//! * [`config`]: etcd's flags and `ETCD_*` environment variables.
//! * [`datadir`]: the locked, versioned data directory.
//! * [`executor`]: starts every glommio executor thread (with a guard against a glommio bug).
//! * [`member`]: threads, startup and shutdown of a member; wires the layers below together.
//! * [`server`]: the server core: shared state, the raft core's loop ([`server::log`]) that
//!   batches, logs and applies every write, and its typed errors. No gRPC.
//! * [`raft`]: the raft node (raft-rs over Keel's WAL and store), its log format and the peer
//!   transport.
//! * [`cluster`]: etcd's member and cluster ids, `--initial-cluster`.
//! * [`backup`]: Keel's state as etcd's backend file (the Snapshot RPC's stream).
//! * [`api`]: the etcd v3 gRPC services (KV, Watch, Lease, Maintenance, Cluster); turns the
//!   server core's typed results and errors into etcd's replies.
//! * [`http`]: `/metrics`, `/health`, `/readyz`, `/livez`, `/version`.
//! * [`net`]: serving tonic and plain HTTP with hyper on glommio executors.
//! * [`metrics`]: etcd's metric names in the Prometheus text format.
//!
//! Arrows inside the crate run one way: [`member`] uses everything; [`api`] uses [`server`];
//! [`server`] and [`raft`] never use [`api`] and name no gRPC type (the peer transport,
//! [`raft::transport`], is a gRPC service of its own and speaks gRPC at its edge).
//! `tests/layering.rs` checks this by reading the sources.
#![deny(missing_docs)]

pub mod api;
pub mod backup;
pub mod cluster;
pub mod config;
pub mod datadir;
pub mod executor;
pub mod http;
pub mod join;
pub mod member;
pub mod metrics;
pub mod net;
pub mod raft;
pub mod server;
