//! [`BboltError`]: everything that goes wrong reading or writing a bbolt file.

use std::io;

use super::format::{KEY_BYTES_MAX, VALUE_BYTES_MAX};
use super::reader::DEPTH_MAX;

/// Errors of the bbolt layer. Three kinds stay distinct: [`BboltError::Io`] (the disk);
/// misuse of the [`super::Writer`] (order, sizes), refused before anything is written; and
/// a damaged or foreign file met by the [`super::Reader`] (every other variant), whose
/// message names the page and what was wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum BboltError {
    /// Reading or writing the file failed. After a failed write the file is incomplete (its
    /// meta pages are zeros) and the writer refuses further calls.
    #[error("bbolt file I/O error: {0}")]
    Io(#[from] io::Error),

    /// Writing: an earlier call failed with an I/O error.
    #[error(
        "an earlier I/O error left the bbolt file incomplete; discard it and start a new writer"
    )]
    Poisoned,
    /// [`super::Writer::put`] before any [`super::Writer::bucket`].
    #[error("no bucket to put into: call bucket() before put()")]
    NoBucket,
    /// Bucket names must be given in strictly ascending byte order.
    #[error(
        "bucket {name} is not after bucket {previous}: buckets must come in strictly \
         ascending byte order"
    )]
    BucketNotAscending {
        /// The refused name.
        name: String,
        /// The previous bucket's name.
        previous: String,
    },
    /// Keys must be given in strictly ascending byte order within a bucket.
    #[error(
        "key {key} in bucket {bucket} is not after the previous key {previous}: keys must \
         come in strictly ascending byte order"
    )]
    KeyNotAscending {
        /// The bucket.
        bucket: String,
        /// The refused key.
        key: String,
        /// The previous key.
        previous: String,
    },
    /// bbolt has no empty keys or bucket names.
    #[error("empty {what}: bbolt requires at least one byte")]
    Empty {
        /// "key in bucket ..." or "bucket name".
        what: String,
    },
    /// A key or bucket name longer than bbolt's `MaxKeySize`.
    #[error("key of {len} bytes is longer than bbolt's limit of {KEY_BYTES_MAX} bytes")]
    KeyTooLarge {
        /// The key's length.
        len: usize,
    },
    /// A value longer than bbolt's `MaxValueSize`.
    #[error("value of {len} bytes is longer than bbolt's limit of {VALUE_BYTES_MAX} bytes")]
    ValueTooLarge {
        /// The value's length.
        len: usize,
    },

    /// The file does not start like a bbolt file.
    #[error("not a bbolt file: {reason}")]
    NotBbolt {
        /// What was found instead.
        reason: String,
    },
    /// Both meta pages are damaged (wrong version, checksum or layout).
    #[error("no valid meta page: page 0: {page0}; page 1: {page1}")]
    NoValidMeta {
        /// What is wrong with meta page 0.
        page0: String,
        /// What is wrong with meta page 1.
        page1: String,
    },
    /// The file is shorter than its meta page says.
    #[error(
        "the bbolt file is truncated: its {pages} pages of {page_size} bytes need {needed} \
         bytes, the file has {file_len}"
    )]
    Truncated {
        /// Pages in use (the high-water mark).
        pages: u64,
        /// Bytes per page.
        page_size: u64,
        /// `pages * page_size`.
        needed: u64,
        /// The file's length.
        file_len: u64,
    },
    /// A reference to a page that is not in use.
    #[error("page {page} out of range: the file's tree pages are 2..{high_water}")]
    PageOutOfRange {
        /// The page referred to (or the last page of a multi-page node).
        page: u64,
        /// The high-water mark.
        high_water: u64,
    },
    /// A page whose header carries another page's id.
    #[error("page {page} is damaged: its header says it is page {found}")]
    PageId {
        /// The page read.
        page: u64,
        /// The id in its header.
        found: u64,
    },
    /// A page that is neither a branch nor a leaf page where the tree needs one.
    #[error(
        "page {page} has flags {flags:#06x} where a branch (0x01) or leaf (0x02) page belongs"
    )]
    PageType {
        /// The page read.
        page: u64,
        /// Its flags.
        flags: u16,
    },
    /// A node whose elements do not fit it.
    #[error("{node} is damaged: {reason}")]
    Damaged {
        /// "page 17" or "the inline page of bucket ...".
        node: String,
        /// What is wrong.
        reason: String,
    },
    /// Keys out of order (or repeated) in a bucket.
    #[error("{node} element {index}: key {key} is not after the previous key {previous}")]
    KeysOutOfOrder {
        /// "page 17" or "the inline page of bucket ...".
        node: String,
        /// The element's index in its node.
        index: usize,
        /// The key.
        key: String,
        /// The key before it.
        previous: String,
    },
    /// A branch page that refers to one of its own ancestors.
    #[error("page {page} refers back to a page on its own path from the root (a cycle)")]
    Cycle {
        /// The page referred to.
        page: u64,
    },
    /// A tree deeper than [`DEPTH_MAX`].
    #[error("the tree is deeper than {DEPTH_MAX} levels at page {page}")]
    TooDeep {
        /// The page that would be one level too deep.
        page: u64,
    },
    /// A tree that refers to more pages than the file has: pages referenced twice.
    #[error(
        "the tree refers to more than the file's {high_water} pages: some page is referenced \
         more than once"
    )]
    TooManyPages {
        /// The high-water mark.
        high_water: u64,
    },
    /// A root-level entry that is not a valid bucket.
    #[error("bucket {name}: {reason}")]
    Bucket {
        /// The bucket's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// An etcd snapshot whose SHA-256 trailer does not match its content.
    #[error(
        "the snapshot's SHA-256 trailer {expected} does not match its content, which hashes \
         to {computed}: the file is damaged"
    )]
    SnapshotHash {
        /// The trailer, in hex.
        expected: String,
        /// The content's hash, in hex.
        computed: String,
    },
}
