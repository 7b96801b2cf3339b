//! TODO(owner): checkpoint module.
