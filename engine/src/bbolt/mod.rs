//! A reader and a writer of bbolt files, the B+tree file format of `go.etcd.io/bbolt` that
//! etcd's backend keeps its data in (`member/snap/db`) and that `etcdctl snapshot save`
//! produces (the bbolt file plus a 32-byte SHA-256 trailer).
//!
//! Keel does not store its own data in bbolt; this module exists so that backups can cross
//! between Keel and etcd in etcd's own format. The pieces:
//!
//! * [`format`](mod@format): the byte layout (page header, meta page, branch and leaf
//!   elements, bucket headers, inline buckets) and its checks, shared by both directions.
//! * [`Writer`]: writes a fresh file bucket by bucket, keys in ascending order, streaming:
//!   leaf pages go to the file as they fill and each branch level keeps one page in memory,
//!   so memory stays at a few pages per tree level plus the largest value.
//! * [`Reader`]: opens a file (or bytes), picks the valid meta page with the higher
//!   transaction id as bbolt does, lists the buckets and iterates a bucket's pairs in key
//!   order, reading one page (or one multi-page node) at a time. Every offset, page id, page
//!   type, depth and key order is checked, so a damaged file yields a [`BboltError`], never a
//!   panic, a loop or an allocation larger than the file.
//! * [`snapshot`]: etcd's SHA-256 trailer on snapshot files: detect, verify, append.
//!
//! The layout written and the files accepted are specified in `engine/FORMAT.md`, section
//! "bbolt files (etcd's backend and snapshots)".

mod error;
pub mod format;
mod reader;
pub mod snapshot;
mod writer;

pub use error::BboltError;
pub use format::Meta;
pub use reader::{Bucket, Buckets, Entries, Entry, ReadAt, Reader, DEPTH_MAX};
pub use writer::Writer;

/// `bytes` for an error message: printable ASCII as is, other bytes escaped, cut after
/// [`SHOWN_BYTES_MAX`] bytes (keys may be 32 KiB long).
fn show(bytes: &[u8]) -> String {
    let mut text = String::new();
    for &byte in bytes.iter().take(SHOWN_BYTES_MAX) {
        text.extend(std::ascii::escape_default(byte).map(char::from));
    }
    if bytes.len() > SHOWN_BYTES_MAX {
        text.push_str(&format!("... ({} bytes)", bytes.len()));
    }
    format!("\"{text}\"")
}

/// How many bytes of a key [`show`] prints.
const SHOWN_BYTES_MAX: usize = 64;

#[cfg(test)]
mod tests {
    use super::show;

    #[test]
    fn show_escapes_and_cuts() {
        assert_eq!(show(b"key"), "\"key\"");
        assert_eq!(show(&[0, b'a', 0xff]), "\"\\x00a\\xff\"");
        let long = vec![b'x'; 100];
        assert!(show(&long).ends_with("... (100 bytes)\""));
    }
}
