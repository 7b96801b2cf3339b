//! TODO(owner): mvcc module.
