//! Replication: raft-rs driven by one Ready loop over Keel's WAL and MVCC store.
//!
//! * [`node`]: the [`node::RaftNode`] (RawNode, WAL, apply, wait map, ReadIndex, checkpoints)
//!   and recovery. It keeps time in ticks and does no network I/O, so the server and the
//!   seeded simulation run the same code.
//! * [`log_store`]: raft-rs' `Storage`, a read-only view over the durable log in memory.
//! * [`records`]: the bytes of WAL records and checkpoint payloads (engine/FORMAT.md).
//! * [`transport`]: the peer transport, gRPC streams between members on the peer port.

pub mod log_store;
pub mod node;
pub mod records;
pub mod transport;

/// A logger for raft-rs that forwards its records to `tracing` (raft-rs logs through slog).
pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!())
}

/// A slog drain writing through `tracing`, at debug level for raft-rs' chatter and at warn
/// level for its warnings and errors.
struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        record: &slog::Record<'_>,
        _values: &slog::OwnedKVList,
    ) -> Result<(), slog::Never> {
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", "{}", record.msg())
            }
            slog::Level::Warning => tracing::warn!(target: "raft", "{}", record.msg()),
            slog::Level::Info => tracing::info!(target: "raft", "{}", record.msg()),
            _ => tracing::debug!(target: "raft", "{}", record.msg()),
        }
        Ok(())
    }
}
