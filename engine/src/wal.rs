//! TODO(owner): wal module.
