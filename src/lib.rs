//! Keel: an etcd-compatible key-value store.
#![deny(missing_docs)]

pub mod config;
pub mod datadir;
pub mod net;
