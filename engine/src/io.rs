//! TODO(owner): io module.
