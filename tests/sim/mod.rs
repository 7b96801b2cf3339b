//! A deterministic simulation of Keel raft clusters (see `tests/raft_sim.rs`).
//!
//! * [`cluster`]: members running the real `RaftNode` over the real WAL and checkpoints on
//!   `SimDisk`s, a lossy simulated network, clients, faults, and the invariant checks made
//!   after every step.
//! * [`history`]: the clients' history and its linearizability checker.

pub mod cluster;
pub mod history;
