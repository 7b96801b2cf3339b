//! Keel's storage engine.
//!
//! The engine knows nothing of gRPC, raft or the network. It has three layers:
//!
//! * [`io`]: a small file trait with two implementations, the real one on glommio's
//!   `DmaFile` (io_uring, O_DIRECT, aligned buffers) and a seeded in-memory simulator that
//!   loses unsynced data on a simulated crash, tears writes and injects EIO / ENOSPC.
//! * [`wal`]: the append-only write-ahead log. One batch is one aligned write and one sync.
//! * [`mvcc`]: etcd's multi-version key-value model (revisions, generations, tombstones,
//!   compaction, txns, an event feed for watch), held in memory and made durable by the WAL
//!   plus periodic [`checkpoint`]s.
//!
//! Beside them, [`bbolt`] reads and writes etcd's backend file format (bbolt), so that backups
//! cross between Keel and etcd in etcd's own format.
//!
//! Every byte the engine writes is specified in `engine/FORMAT.md`.
#![deny(missing_docs)]

pub mod bbolt;
pub mod checkpoint;
pub mod io;
pub mod mvcc;
pub mod wal;
