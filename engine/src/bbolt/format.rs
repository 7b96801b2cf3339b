//! bbolt's on-disk layout, as `go.etcd.io/bbolt` (v1.3 and v1.4, format version 2) lays it
//! out on little-endian machines (amd64, arm64), which is every file etcd writes in practice.
//!
//! A file is a sequence of pages of `page_size` bytes (etcd: the OS page size, 4096). Page
//! `n` starts at byte `n * page_size`. Pages 0 and 1 are meta pages; every other page in use
//! is a branch, leaf or freelist page, possibly followed by `overflow` continuation pages that
//! carry no header of their own (a node larger than one page). All integers are little-endian.
//! `engine/FORMAT.md` describes the same layout in prose, byte by byte.

/// The magic number at the start of a meta page's body.
pub const MAGIC: u32 = 0xED0C_DAED;
/// The only format version bbolt has written since 2014.
pub const VERSION: u32 = 2;
/// The page size [`crate::bbolt::Writer`] uses: etcd's (the OS page size on amd64).
pub const PAGE_SIZE: usize = 4096;
/// The smallest page size the reader accepts (bbolt probes for the second meta page from
/// 1 KiB on).
pub const PAGE_SIZE_MIN: u32 = 1024;
/// The largest page size the reader accepts: 64 KiB pages exist (ppc64, some arm64 kernels);
/// larger ones would only come from a damaged meta page.
pub const PAGE_SIZE_MAX: u32 = 64 * 1024;

/// Bytes of a page header: `id: u64, flags: u16, count: u16, overflow: u32`.
pub const PAGE_HEADER_BYTES: usize = 16;
/// Bytes of one branch element (`pos: u32, ksize: u32, pgid: u64`) and of one leaf element
/// (`flags: u32, pos: u32, ksize: u32, vsize: u32`): both are 16.
pub const ELEMENT_BYTES: usize = 16;
/// Bytes of the meta body that follows a meta page's header.
pub const META_BYTES: usize = 64;
/// Offset of the checksum in the meta body; the checksum covers the bytes before it.
pub const META_CHECKSUM_OFFSET: usize = 56;
/// Bytes of a bucket header (`root: u64, sequence: u64`), the start of a bucket's value.
pub const BUCKET_HEADER_BYTES: usize = 16;

/// Page flag of a branch page.
pub const BRANCH_PAGE: u16 = 0x01;
/// Page flag of a leaf page.
pub const LEAF_PAGE: u16 = 0x02;
/// Page flag of a meta page.
pub const META_PAGE: u16 = 0x04;
/// Page flag of a freelist page.
pub const FREELIST_PAGE: u16 = 0x10;
/// Leaf element flag: the value is a bucket header (a bucket nested here), not a value.
pub const BUCKET_LEAF_FLAG: u32 = 0x01;
/// The freelist page id of a meta page whose freelist is not stored (bbolt's
/// `NoFreelistSync`): readers rebuild the freelist by walking the trees.
pub const NO_FREELIST: u64 = u64::MAX;

/// bbolt's longest key (`MaxKeySize`).
pub const KEY_BYTES_MAX: usize = 32768;
/// bbolt's longest value (`MaxValueSize`, 2^31 - 2).
pub const VALUE_BYTES_MAX: usize = (1 << 31) - 2;
/// A bucket whose tree is one leaf of at most this share of a page (header and elements
/// included) is stored inline in its parent: bbolt's `maxInlineBucketSize`, page size / 4.
pub const INLINE_DIVISOR: usize = 4;

/// A page header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageHeader {
    /// The page's own id (0 in an inline bucket's page).
    pub id: u64,
    /// One of [`BRANCH_PAGE`], [`LEAF_PAGE`], [`META_PAGE`], [`FREELIST_PAGE`].
    pub flags: u16,
    /// Elements on a branch or leaf page; page ids on a freelist page (0xFFFF: the count is
    /// the first u64 of the body).
    pub count: u16,
    /// How many continuation pages follow this one.
    pub overflow: u32,
}

impl PageHeader {
    /// Decodes the first [`PAGE_HEADER_BYTES`] of `bytes`; `None` when `bytes` is shorter.
    pub fn decode(bytes: &[u8]) -> Option<PageHeader> {
        Some(PageHeader {
            id: u64_at(bytes, 0)?,
            flags: u16_at(bytes, 8)?,
            count: u16_at(bytes, 10)?,
            overflow: u32_at(bytes, 12)?,
        })
    }

    /// The header's bytes.
    pub fn encode(&self) -> [u8; PAGE_HEADER_BYTES] {
        let mut bytes = [0u8; PAGE_HEADER_BYTES];
        bytes[0..8].copy_from_slice(&self.id.to_le_bytes());
        bytes[8..10].copy_from_slice(&self.flags.to_le_bytes());
        bytes[10..12].copy_from_slice(&self.count.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.overflow.to_le_bytes());
        bytes
    }
}

/// The body of a meta page: where the current tree starts and how big the file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Bytes per page.
    pub page_size: u32,
    /// Unused by bbolt; 0.
    pub flags: u32,
    /// The root bucket's root page (the tree whose keys are the top-level bucket names).
    pub root_page: u64,
    /// The root bucket's sequence (unused by etcd; 0).
    pub root_sequence: u64,
    /// The freelist page, or `None` when the freelist is not stored ([`NO_FREELIST`]).
    pub freelist_page: Option<u64>,
    /// The high-water mark: pages `0..high_water_page` are in use or free, none beyond.
    pub high_water_page: u64,
    /// The id of the transaction that wrote this meta page.
    pub txid: u64,
}

/// Why a meta page is not valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaProblem {
    /// The page is beyond the end of the file.
    Missing,
    /// The magic number is not bbolt's.
    Magic(u32),
    /// The format version is not 2.
    Version(u32),
    /// The checksum does not match the body.
    Checksum,
    /// The body is consistent but describes an impossible file.
    Layout(String),
}

impl std::fmt::Display for MetaProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetaProblem::Missing => write!(f, "beyond the end of the file"),
            MetaProblem::Magic(magic) => {
                write!(f, "magic {magic:#010x} is not bbolt's {MAGIC:#010x}")
            }
            MetaProblem::Version(version) => {
                write!(f, "format version {version}, Keel reads version {VERSION}")
            }
            MetaProblem::Checksum => write!(f, "checksum mismatch"),
            MetaProblem::Layout(reason) => write!(f, "{reason}"),
        }
    }
}

impl Meta {
    /// The meta body's bytes, checksum included.
    pub fn encode(&self) -> [u8; META_BYTES] {
        let mut bytes = [0u8; META_BYTES];
        bytes[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        bytes[4..8].copy_from_slice(&VERSION.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.page_size.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.flags.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.root_page.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.root_sequence.to_le_bytes());
        let freelist = self.freelist_page.unwrap_or(NO_FREELIST);
        bytes[32..40].copy_from_slice(&freelist.to_le_bytes());
        bytes[40..48].copy_from_slice(&self.high_water_page.to_le_bytes());
        bytes[48..56].copy_from_slice(&self.txid.to_le_bytes());
        let checksum = fnv64a(&bytes[..META_CHECKSUM_OFFSET]);
        bytes[META_CHECKSUM_OFFSET..].copy_from_slice(&checksum.to_le_bytes());
        bytes
    }

    /// Decodes a meta body and checks what bbolt's `meta.validate` checks: magic, version
    /// and checksum (bbolt 1.3 also accepted a zero checksum, written by no bbolt since
    /// 2017; Keel does not).
    pub fn decode(bytes: &[u8; META_BYTES]) -> Result<Meta, MetaProblem> {
        let field = |offset: usize| u64_at(bytes, offset).unwrap_or_default();
        let magic = u32_at(bytes, 0).unwrap_or_default();
        if magic != MAGIC {
            return Err(MetaProblem::Magic(magic));
        }
        let version = u32_at(bytes, 4).unwrap_or_default();
        if version != VERSION {
            return Err(MetaProblem::Version(version));
        }
        if field(META_CHECKSUM_OFFSET) != fnv64a(&bytes[..META_CHECKSUM_OFFSET]) {
            return Err(MetaProblem::Checksum);
        }
        let freelist = field(32);
        Ok(Meta {
            page_size: u32_at(bytes, 8).unwrap_or_default(),
            flags: u32_at(bytes, 12).unwrap_or_default(),
            root_page: field(16),
            root_sequence: field(24),
            freelist_page: (freelist != NO_FREELIST).then_some(freelist),
            high_water_page: field(40),
            txid: field(48),
        })
    }

    /// Checks that a valid meta body describes a possible file with pages of `page_size`
    /// bytes: the page size matches and is in range, the root and freelist pages lie between
    /// the meta pages and the high-water mark (bbolt asserts the same before writing one).
    pub fn check_layout(&self, page_size: u32) -> Result<(), MetaProblem> {
        if self.page_size != page_size {
            return Err(MetaProblem::Layout(format!(
                "page size {} where the file's pages are {page_size} bytes",
                self.page_size
            )));
        }
        if !(PAGE_SIZE_MIN..=PAGE_SIZE_MAX).contains(&self.page_size) {
            return Err(MetaProblem::Layout(format!(
                "page size {} outside {PAGE_SIZE_MIN}..={PAGE_SIZE_MAX}",
                self.page_size
            )));
        }
        let in_use = |page: u64| (2..self.high_water_page).contains(&page);
        if !in_use(self.root_page) {
            return Err(MetaProblem::Layout(format!(
                "root page {} outside pages 2..{}",
                self.root_page, self.high_water_page
            )));
        }
        if let Some(freelist) = self.freelist_page {
            if !in_use(freelist) {
                return Err(MetaProblem::Layout(format!(
                    "freelist page {freelist} outside pages 2..{}",
                    self.high_water_page
                )));
            }
        }
        Ok(())
    }
}

/// FNV-1a, 64 bits: the meta page checksum (Go's `hash/fnv` `New64a`).
pub fn fnv64a(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// A bucket header: the first [`BUCKET_HEADER_BYTES`] of a bucket's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketHeader {
    /// The bucket's root page; 0 when the bucket is inline (its one leaf page follows the
    /// header inside the value).
    pub root: u64,
    /// The bucket's sequence (`NextSequence`; unused by etcd).
    pub sequence: u64,
}

impl BucketHeader {
    /// Decodes the header at the start of `value`; `None` when `value` is shorter.
    pub fn decode(value: &[u8]) -> Option<BucketHeader> {
        Some(BucketHeader {
            root: u64_at(value, 0)?,
            sequence: u64_at(value, 8)?,
        })
    }

    /// The header's bytes.
    pub fn encode(&self) -> [u8; BUCKET_HEADER_BYTES] {
        let mut bytes = [0u8; BUCKET_HEADER_BYTES];
        bytes[0..8].copy_from_slice(&self.root.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.sequence.to_le_bytes());
        bytes
    }
}

/// The little-endian u16 at `offset`, if `bytes` holds it.
pub fn u16_at(bytes: &[u8], offset: usize) -> Option<u16> {
    let end = offset.checked_add(2)?;
    Some(u16::from_le_bytes(bytes.get(offset..end)?.try_into().ok()?))
}

/// The little-endian u32 at `offset`, if `bytes` holds it.
pub fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    let end = offset.checked_add(4)?;
    Some(u32::from_le_bytes(bytes.get(offset..end)?.try_into().ok()?))
}

/// The little-endian u64 at `offset`, if `bytes` holds it.
pub fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    let end = offset.checked_add(8)?;
    Some(u64::from_le_bytes(bytes.get(offset..end)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv64a_matches_go() {
        // Go: fnv.New64a() of "" and of "a".
        assert_eq!(fnv64a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv64a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn meta_round_trips_and_detects_damage() {
        let meta = Meta {
            page_size: 4096,
            flags: 0,
            root_page: 3,
            root_sequence: 0,
            freelist_page: Some(2),
            high_water_page: 4,
            txid: 1,
        };
        let bytes = meta.encode();
        assert_eq!(Meta::decode(&bytes), Ok(meta));
        assert_eq!(meta.check_layout(4096), Ok(()));
        assert!(meta.check_layout(8192).is_err());
        for bit in 0..META_BYTES * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(Meta::decode(&damaged).is_err(), "bit {bit} flip undetected");
        }
        let no_freelist = Meta {
            freelist_page: None,
            ..meta
        };
        let bytes = no_freelist.encode();
        assert_eq!(&bytes[32..40], &[0xff; 8]);
        assert_eq!(Meta::decode(&bytes), Ok(no_freelist));
    }

    #[test]
    fn meta_layout_checks() {
        let meta = Meta {
            page_size: 4096,
            flags: 0,
            root_page: 4,
            root_sequence: 0,
            freelist_page: Some(3),
            high_water_page: 4,
            txid: 1,
        };
        assert!(
            meta.check_layout(4096).is_err(),
            "root at the high-water mark"
        );
        let meta = Meta {
            root_page: 1,
            high_water_page: 5,
            ..meta
        };
        assert!(meta.check_layout(4096).is_err(), "root on a meta page");
    }

    #[test]
    fn page_header_round_trips() {
        let header = PageHeader {
            id: 0x0102_0304_0506_0708,
            flags: LEAF_PAGE,
            count: 0xabcd,
            overflow: 7,
        };
        assert_eq!(PageHeader::decode(&header.encode()), Some(header));
        assert_eq!(PageHeader::decode(&[0; 15]), None);
    }
}
