//! [`Reader`]: lists the buckets of a bbolt file and iterates their pairs, one node at a time.
//!
//! Nothing read from the file is trusted: page ids are checked against the high-water mark
//! (which the file's size must cover), page headers against the id and type expected, element
//! offsets against the node's bytes, keys for strict ascending order, the path from the root
//! for cycles and depth, and one iteration may read at most as many pages as the file has, so
//! a damaged file ends an iteration with a [`BboltError`] after bounded work and memory.

use std::fs::File;
use std::io;
use std::path::Path;

use super::error::BboltError;
use super::format::{u32_at, u64_at};
use super::format::{
    BucketHeader, Meta, MetaProblem, PageHeader, BRANCH_PAGE, BUCKET_HEADER_BYTES,
    BUCKET_LEAF_FLAG, ELEMENT_BYTES, LEAF_PAGE, META_BYTES, PAGE_HEADER_BYTES, PAGE_SIZE_MIN,
};
use super::show;

/// The deepest tree the reader descends: a bbolt tree of 2^64 keys with two keys per page
/// (bbolt's minimum) is 64 levels deep, so anything deeper is a damaged file.
pub const DEPTH_MAX: usize = 64;
/// How many times bigger than the previous probe bbolt looks for the second meta page when
/// the first is damaged: page sizes 1 KiB << 0..=14.
const PAGE_SIZE_PROBES: u32 = 14;

/// Positioned reads, so that one [`Reader`] can serve several iterators: a file (read with
/// `pread`, never loaded whole) or bytes in memory.
pub trait ReadAt {
    /// The length in bytes.
    fn len_bytes(&self) -> io::Result<u64>;
    /// Fills `buf` from `offset` on; an error if the source ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for File {
    fn len_bytes(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn len_bytes(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let bytes = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

impl ReadAt for Vec<u8> {
    fn len_bytes(&self) -> io::Result<u64> {
        self.as_slice().len_bytes()
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.as_slice().read_exact_at(buf, offset)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn len_bytes(&self) -> io::Result<u64> {
        (**self).len_bytes()
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
}

/// Reads a bbolt file: the state of its newest valid meta page.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use keel_engine::bbolt::{Reader, Writer};
/// let mut writer = Writer::new(std::io::Cursor::new(Vec::new()))?;
/// writer.bucket(b"meta")?;
/// writer.put(b"consistent_index", &7u64.to_be_bytes())?;
/// let file = writer.finish()?.into_inner();
///
/// let reader = Reader::new(file)?;
/// let bucket = reader.bucket(b"meta")?.expect("the bucket exists");
/// for entry in reader.entries(&bucket) {
///     let entry = entry?;
///     assert_eq!(entry.key, b"consistent_index");
/// }
/// # Ok(())
/// # }
/// ```
///
/// The file may carry more bytes after its last page (an etcd snapshot's SHA-256 trailer);
/// see [`crate::bbolt::snapshot`] to check that trailer.
pub struct Reader<S: ReadAt> {
    source: S,
    file_len: u64,
    meta: Meta,
}

impl Reader<File> {
    /// Opens the file at `path` read-only.
    pub fn open(path: impl AsRef<Path>) -> Result<Reader<File>, BboltError> {
        Reader::new(File::open(path)?)
    }
}

impl<S: ReadAt> Reader<S> {
    /// Reads and validates the meta pages of `source`. Like bbolt, the reader takes the page
    /// size from meta page 0, or when that page is damaged from a valid meta page 1 found by
    /// probing page sizes from 1 KiB up, then uses the valid meta page with the higher
    /// transaction id (page 0 on a tie).
    pub fn new(source: S) -> Result<Reader<S>, BboltError> {
        let file_len = source.len_bytes()?;
        let meta0 = read_meta(&source, file_len, 0)?;
        let page_size = match &meta0 {
            Ok(meta) => Some(meta.page_size),
            Err(_) => probe_second_meta(&source, file_len)?,
        };
        let Some(page_size) = page_size else {
            let problem = meta0.err().unwrap_or(MetaProblem::Missing);
            return Err(match problem {
                MetaProblem::Missing => BboltError::NotBbolt {
                    reason: format!("the file is {file_len} bytes, too short for a meta page"),
                },
                MetaProblem::Magic(_) => BboltError::NotBbolt {
                    reason: format!("page 0: {problem}"),
                },
                _ => BboltError::NoValidMeta {
                    page0: problem.to_string(),
                    page1: "no valid meta page at any page size".to_string(),
                },
            });
        };
        let checked = |meta: Result<Meta, MetaProblem>| {
            meta.and_then(|m| m.check_layout(page_size).map(|()| m))
        };
        let meta0 = checked(read_meta(&source, file_len, 0)?);
        let meta1 = checked(read_meta(&source, file_len, u64::from(page_size))?);
        let meta = match (meta0, meta1) {
            (Ok(m0), Ok(m1)) => {
                if m1.txid > m0.txid {
                    m1
                } else {
                    m0
                }
            }
            (Ok(m), Err(_)) | (Err(_), Ok(m)) => m,
            (Err(p0), Err(p1)) => {
                return Err(match (&p0, &p1) {
                    (MetaProblem::Magic(_), MetaProblem::Magic(_) | MetaProblem::Missing) => {
                        BboltError::NotBbolt {
                            reason: format!("page 0: {p0}"),
                        }
                    }
                    _ => BboltError::NoValidMeta {
                        page0: p0.to_string(),
                        page1: p1.to_string(),
                    },
                })
            }
        };
        let page_size = u64::from(meta.page_size);
        let needed = meta.high_water_page.checked_mul(page_size);
        if needed.is_none_or(|needed| needed > file_len) {
            return Err(BboltError::Truncated {
                pages: meta.high_water_page,
                page_size,
                needed: needed.unwrap_or(u64::MAX),
                file_len,
            });
        }
        Ok(Reader {
            source,
            file_len,
            meta,
        })
    }

    /// The meta page in use.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The length of the source, trailer included.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// The top-level buckets, in name order.
    pub fn buckets(&self) -> Buckets<'_, S> {
        Buckets {
            entries: Entries::new(self, Start::Page(self.meta.root_page)),
        }
    }

    /// The top-level bucket `name`, if the file has it.
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket>, BboltError> {
        for bucket in self.buckets() {
            let bucket = bucket?;
            if bucket.name() == name {
                return Ok(Some(bucket));
            }
            if bucket.name() > name {
                break;
            }
        }
        Ok(None)
    }

    /// The pairs of `bucket`, in key order. Nested buckets come as entries with
    /// [`Entry::nested_bucket`] set (etcd has none).
    pub fn entries(&self, bucket: &Bucket) -> Entries<'_, S> {
        let start = match &bucket.root {
            BucketRoot::Page(page) => Start::Page(*page),
            BucketRoot::Inline(node) => Start::Inline(node.clone()),
        };
        Entries::new(self, start)
    }

    /// Reads the node at `page` (and its overflow pages), charging them to `pages_left`.
    fn read_node(&self, page: u64, pages_left: &mut u64) -> Result<Node, BboltError> {
        let high_water = self.meta.high_water_page;
        if !(2..high_water).contains(&page) {
            return Err(BboltError::PageOutOfRange { page, high_water });
        }
        let page_size = u64::from(self.meta.page_size);
        // In range: the file covers every page below the high-water mark (checked at open).
        let offset = page * page_size;
        let mut bytes = vec![0u8; self.meta.page_size as usize];
        self.source.read_exact_at(&mut bytes, offset)?;
        let header = PageHeader::decode(&bytes).ok_or_else(|| io::Error::other("short page"))?;
        if header.id != page {
            return Err(BboltError::PageId {
                page,
                found: header.id,
            });
        }
        if header.flags != BRANCH_PAGE && header.flags != LEAF_PAGE {
            return Err(BboltError::PageType {
                page,
                flags: header.flags,
            });
        }
        let pages = u64::from(header.overflow) + 1;
        if page + pages > high_water {
            return Err(BboltError::PageOutOfRange {
                page: page + pages - 1,
                high_water,
            });
        }
        if pages > *pages_left {
            return Err(BboltError::TooManyPages { high_water });
        }
        *pages_left -= pages;
        if pages > 1 {
            // Bounded by the file: the node lies below the high-water mark.
            let first_len = bytes.len();
            bytes.resize((pages * page_size) as usize, 0);
            self.source
                .read_exact_at(&mut bytes[first_len..], offset + page_size)?;
        }
        Node::new(NodeLabel::Page(page), header, bytes)
    }
}

/// Where a node came from, for error messages.
#[derive(Clone, Debug)]
enum NodeLabel {
    Page(u64),
    /// The inline page of the bucket with this (shown) name.
    Inline(String),
}

impl std::fmt::Display for NodeLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeLabel::Page(page) => write!(f, "page {page}"),
            NodeLabel::Inline(name) => write!(f, "the inline page of bucket {name}"),
        }
    }
}

/// A branch or leaf node: its page image (one or more pages, or an inline page).
#[derive(Clone, Debug)]
struct Node {
    label: NodeLabel,
    is_leaf: bool,
    count: usize,
    bytes: Vec<u8>,
}

impl Node {
    fn new(label: NodeLabel, header: PageHeader, bytes: Vec<u8>) -> Result<Node, BboltError> {
        let node = Node {
            label,
            is_leaf: header.flags == LEAF_PAGE,
            count: usize::from(header.count),
            bytes,
        };
        if !node.is_leaf && node.count == 0 {
            return Err(node.damaged("a branch page without elements".to_string()));
        }
        let elements_end = PAGE_HEADER_BYTES + node.count * ELEMENT_BYTES;
        if elements_end > node.bytes.len() {
            return Err(node.damaged(format!(
                "{} elements need {elements_end} bytes, the node has {}",
                node.count,
                node.bytes.len()
            )));
        }
        Ok(node)
    }

    fn damaged(&self, reason: String) -> BboltError {
        BboltError::Damaged {
            node: self.label.to_string(),
            reason,
        }
    }

    /// The `index`th element's fields: the u32s at its start.
    fn element_u32(&self, index: usize, field: usize) -> u32 {
        let offset = PAGE_HEADER_BYTES + index * ELEMENT_BYTES + field * 4;
        // In range: `Node::new` checked that the element array fits.
        u32_at(&self.bytes, offset).unwrap_or_default()
    }

    /// The bytes `pos` bytes after element `index`, `len` long.
    fn element_data(&self, index: usize, pos: u32, len: u64) -> Result<&[u8], BboltError> {
        let element_offset = (PAGE_HEADER_BYTES + index * ELEMENT_BYTES) as u64;
        let start = element_offset + u64::from(pos);
        let end = start + len;
        if end > self.bytes.len() as u64 {
            return Err(self.damaged(format!(
                "element {index} points at bytes {start}..{end}, beyond the node's {} bytes",
                self.bytes.len()
            )));
        }
        Ok(&self.bytes[start as usize..end as usize])
    }

    /// Leaf element `index`: (flags, key, value).
    fn leaf_element(&self, index: usize) -> Result<(u32, &[u8], &[u8]), BboltError> {
        debug_assert!(self.is_leaf && index < self.count);
        let flags = self.element_u32(index, 0);
        let pos = self.element_u32(index, 1);
        let key_len = u64::from(self.element_u32(index, 2));
        let value_len = u64::from(self.element_u32(index, 3));
        if flags & !BUCKET_LEAF_FLAG != 0 {
            return Err(self.damaged(format!("element {index} has unknown flags {flags:#x}")));
        }
        if key_len == 0 {
            return Err(self.damaged(format!("element {index} has an empty key")));
        }
        let data = self.element_data(index, pos, key_len + value_len)?;
        let (key, value) = data.split_at(key_len as usize);
        Ok((flags, key, value))
    }

    /// Branch element `index`: its child page (its key is checked to lie in the node).
    fn branch_child(&self, index: usize) -> Result<u64, BboltError> {
        debug_assert!(!self.is_leaf && index < self.count);
        let pos = self.element_u32(index, 0);
        let key_len = u64::from(self.element_u32(index, 1));
        if key_len == 0 {
            return Err(self.damaged(format!("element {index} has an empty key")));
        }
        self.element_data(index, pos, key_len)?;
        let offset = PAGE_HEADER_BYTES + index * ELEMENT_BYTES + 8;
        Ok(u64_at(&self.bytes, offset).unwrap_or_default())
    }
}

/// One pair of a bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: Vec<u8>,
    /// The value (for a nested bucket: its raw bucket header and inline page).
    pub value: Vec<u8>,
    /// Whether the entry is a nested bucket rather than a value.
    pub nested_bucket: bool,
}

/// A top-level bucket: its name and where its tree starts.
#[derive(Clone, Debug)]
pub struct Bucket {
    name: Vec<u8>,
    sequence: u64,
    root: BucketRoot,
}

#[derive(Clone, Debug)]
enum BucketRoot {
    Page(u64),
    Inline(Node),
}

impl Bucket {
    /// The bucket's name.
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// The bucket's sequence (bbolt's `NextSequence` counter; 0 in etcd's files).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The bucket's root page, or `None` for a bucket stored inline in its parent.
    pub fn root_page(&self) -> Option<u64> {
        match self.root {
            BucketRoot::Page(page) => Some(page),
            BucketRoot::Inline(_) => None,
        }
    }

    /// Parses a root-level entry as a bucket.
    fn from_entry(entry: Entry) -> Result<Bucket, BboltError> {
        let name = entry.key;
        let fail = |reason: String| BboltError::Bucket {
            name: show(&name),
            reason,
        };
        if !entry.nested_bucket {
            return Err(fail(
                "a value where the root bucket holds only buckets".to_string(),
            ));
        }
        let value = entry.value;
        let Some(header) = BucketHeader::decode(&value) else {
            return Err(fail(format!(
                "its value of {} bytes is shorter than a bucket header",
                value.len()
            )));
        };
        if header.root != 0 {
            // bbolt reads the header and ignores anything after it; so does Keel.
            return Ok(Bucket {
                name,
                sequence: header.sequence,
                root: BucketRoot::Page(header.root),
            });
        }
        let page = value[BUCKET_HEADER_BYTES..].to_vec();
        let Some(page_header) = PageHeader::decode(&page) else {
            return Err(fail(format!(
                "inline bucket value of {} bytes has no room for its page header",
                value.len()
            )));
        };
        if page_header.flags != LEAF_PAGE {
            return Err(fail(format!(
                "its inline page has flags {:#06x}, not a leaf page's",
                page_header.flags
            )));
        }
        let node = Node::new(NodeLabel::Inline(show(&name)), page_header, page)?;
        Ok(Bucket {
            name,
            sequence: header.sequence,
            root: BucketRoot::Inline(node),
        })
    }
}

/// Where an iteration starts.
enum Start {
    Page(u64),
    Inline(Node),
}

/// One node on the path from the root, and the next element to visit in it.
struct Frame {
    node: Node,
    next: usize,
}

/// The pairs of one tree in key order (see [`Reader::entries`]). Yields `Err` at most once,
/// then ends.
pub struct Entries<'r, S: ReadAt> {
    reader: &'r Reader<S>,
    start: Option<Start>,
    path: Vec<Frame>,
    previous_key: Option<Vec<u8>>,
    /// Pages this iteration may still read: a valid tree has each page once.
    pages_left: u64,
    done: bool,
}

impl<'r, S: ReadAt> Entries<'r, S> {
    fn new(reader: &'r Reader<S>, start: Start) -> Entries<'r, S> {
        Entries {
            reader,
            start: Some(start),
            path: Vec::new(),
            previous_key: None,
            pages_left: reader.meta.high_water_page,
            done: false,
        }
    }

    fn advance(&mut self) -> Result<Option<Entry>, BboltError> {
        if let Some(start) = self.start.take() {
            let node = match start {
                Start::Page(page) => self.reader.read_node(page, &mut self.pages_left)?,
                Start::Inline(node) => node,
            };
            self.path.push(Frame { node, next: 0 });
        }
        loop {
            let Some(frame) = self.path.last_mut() else {
                return Ok(None);
            };
            if frame.next >= frame.node.count {
                self.path.pop();
                continue;
            }
            let index = frame.next;
            frame.next += 1;
            if frame.node.is_leaf {
                let (flags, key, value) = frame.node.leaf_element(index)?;
                if let Some(previous) = &self.previous_key {
                    if key <= previous.as_slice() {
                        return Err(BboltError::KeysOutOfOrder {
                            node: frame.node.label.to_string(),
                            index,
                            key: show(key),
                            previous: show(previous),
                        });
                    }
                }
                let previous = self.previous_key.get_or_insert_with(Vec::new);
                previous.clear();
                previous.extend_from_slice(key);
                return Ok(Some(Entry {
                    key: key.to_vec(),
                    value: value.to_vec(),
                    nested_bucket: flags & BUCKET_LEAF_FLAG != 0,
                }));
            }
            let child = frame.node.branch_child(index)?;
            if self
                .path
                .iter()
                .any(|f| matches!(f.node.label, NodeLabel::Page(p) if p == child))
            {
                return Err(BboltError::Cycle { page: child });
            }
            if self.path.len() >= DEPTH_MAX {
                return Err(BboltError::TooDeep { page: child });
            }
            let node = self.reader.read_node(child, &mut self.pages_left)?;
            self.path.push(Frame { node, next: 0 });
        }
    }
}

impl<S: ReadAt> Iterator for Entries<'_, S> {
    type Item = Result<Entry, BboltError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.advance() {
            Ok(Some(entry)) => Some(Ok(entry)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                self.path.clear();
                Some(Err(e))
            }
        }
    }
}

/// The top-level buckets in name order (see [`Reader::buckets`]).
pub struct Buckets<'r, S: ReadAt> {
    entries: Entries<'r, S>,
}

impl<S: ReadAt> Iterator for Buckets<'_, S> {
    type Item = Result<Bucket, BboltError>;

    fn next(&mut self) -> Option<Self::Item> {
        let result = self.entries.next()?.and_then(Bucket::from_entry);
        if result.is_err() {
            self.entries.done = true;
        }
        Some(result)
    }
}

/// Reads the meta body of the page at `offset`; `Err(Missing)` if the file ends first.
fn read_meta<S: ReadAt>(
    source: &S,
    file_len: u64,
    offset: u64,
) -> io::Result<Result<Meta, MetaProblem>> {
    let body_offset = offset + PAGE_HEADER_BYTES as u64;
    if body_offset + META_BYTES as u64 > file_len {
        return Ok(Err(MetaProblem::Missing));
    }
    let mut body = [0u8; META_BYTES];
    source.read_exact_at(&mut body, body_offset)?;
    Ok(Meta::decode(&body))
}

/// bbolt's search for meta page 1 when page 0 is damaged: a valid meta page at offset
/// 1 KiB << i whose page size is that offset.
fn probe_second_meta<S: ReadAt>(source: &S, file_len: u64) -> io::Result<Option<u32>> {
    for shift in 0..=PAGE_SIZE_PROBES {
        let offset = u64::from(PAGE_SIZE_MIN) << shift;
        if offset + u64::from(PAGE_SIZE_MIN) >= file_len {
            break;
        }
        if let Ok(meta) = read_meta(source, file_len, offset)? {
            if u64::from(meta.page_size) == offset {
                return Ok(Some(meta.page_size));
            }
        }
    }
    Ok(None)
}
