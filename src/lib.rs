//! Keel: an etcd-compatible key-value store.
//!
//! * [`config`]: etcd's flags and `ETCD_*` environment variables.
//! * [`datadir`]: the locked, versioned data directory.
//! * [`server`]: threads, startup and shutdown; the raft core's loop ([`server::log`]) that
//!   batches, logs and applies every write.
//! * [`raft`]: the raft node (raft-rs over Keel's WAL and store), its log format and the peer
//!   transport.
//! * [`cluster`]: etcd's member and cluster ids, `--initial-cluster`.
//! * [`api`]: the etcd v3 gRPC services (KV, Watch, Lease, Maintenance, Cluster).
//! * [`http`]: `/metrics`, `/health`, `/readyz`, `/livez`, `/version`.
//! * [`net`]: serving tonic and plain HTTP with hyper on glommio executors.
//! * [`metrics`]: etcd's metric names in the Prometheus text format.
#![deny(missing_docs)]

pub mod api;
pub mod cluster;
pub mod config;
pub mod datadir;
pub mod http;
pub mod metrics;
pub mod net;
pub mod raft;
pub mod server;
