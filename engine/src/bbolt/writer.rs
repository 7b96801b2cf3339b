//! [`Writer`]: a fresh bbolt file, written in one pass.
//!
//! Pages are allocated in the order they are written, from page 2 on: each bucket's leaf
//! pages as they fill, its branch pages as they fill (one pending page per level), the root
//! bucket's pages (the tree of bucket names) as buckets complete, then at
//! [`Writer::finish`] the pending branch pages, the root bucket's last pages and an empty
//! freelist page. Pages 0 and 1 are written as zeros first and become the two meta pages last,
//! so an interrupted write leaves a file that no reader takes for a bbolt file.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use super::error::BboltError;
use super::format::{
    BucketHeader, Meta, PageHeader, BRANCH_PAGE, BUCKET_LEAF_FLAG, ELEMENT_BYTES, FREELIST_PAGE,
    INLINE_DIVISOR, KEY_BYTES_MAX, LEAF_PAGE, META_PAGE, PAGE_HEADER_BYTES, PAGE_SIZE,
    VALUE_BYTES_MAX,
};
use super::show;

/// Bytes buffered between the writer and the file.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// Writes a new bbolt file that etcd's bbolt opens read-only and read-write.
///
/// Buckets come one after another in strictly ascending name order, and the keys of each in
/// strictly ascending byte order:
///
/// ```
/// # fn main() -> Result<(), keel_engine::bbolt::BboltError> {
/// use keel_engine::bbolt::Writer;
/// let mut writer = Writer::new(std::io::Cursor::new(Vec::new()))?;
/// writer.bucket(b"key")?;
/// writer.put(b"a", b"1")?;
/// writer.put(b"b", b"2")?;
/// writer.bucket(b"members_removed")?; // empty buckets are fine
/// let file = writer.finish()?.into_inner();
/// assert_eq!(file.len() % 4096, 0);
/// # Ok(())
/// # }
/// ```
///
/// Pages are 4096 bytes and filled up to the full page (bbolt accepts any fill; its own
/// splits leave pages about half full). A bucket whose whole content fits in a quarter page
/// is stored inline in the root bucket, as bbolt stores it; nested buckets are not written.
/// Memory holds one pending page per tree level plus the pending value, never the tree.
pub struct Writer<W: Write + Seek> {
    sink: PageSink<W>,
    /// The tree of bucket names: its entries arrive as buckets complete, in name order.
    root: TreeBuilder,
    /// The bucket being written, with its name.
    current: Option<(Vec<u8>, TreeBuilder)>,
    poisoned: bool,
}

impl Writer<File> {
    /// Creates (or truncates) the file at `path` and starts writing it. The file is opened
    /// for reading too, so that [`crate::bbolt::snapshot::append_snapshot_hash`] can hash it
    /// after [`Writer::finish`]. The caller syncs the file if it needs it durable.
    pub fn create(path: impl AsRef<Path>) -> Result<Writer<File>, BboltError> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Writer::new(file)
    }
}

impl<W: Write + Seek> Writer<W> {
    /// Starts writing a bbolt file into `out`, which must be positioned at its start (an empty
    /// file or buffer). Pages 0 and 1 are written as zeros until [`Writer::finish`].
    pub fn new(out: W) -> Result<Writer<W>, BboltError> {
        let mut sink = PageSink {
            out: BufWriter::with_capacity(WRITE_BUFFER_BYTES, out),
            next_page: 0,
            page: Vec::new(),
        };
        sink.write_zero_pages(2)?;
        Ok(Writer {
            sink,
            root: TreeBuilder::new(),
            current: None,
            poisoned: false,
        })
    }

    /// Ends the current bucket (if any) and starts bucket `name`, which must sort after every
    /// bucket before it.
    pub fn bucket(&mut self, name: &[u8]) -> Result<(), BboltError> {
        self.check_usable()?;
        if name.is_empty() {
            return Err(BboltError::Empty {
                what: "bucket name".to_string(),
            });
        }
        check_key_len(name)?;
        let previous = self.current.as_ref().map(|(n, _)| n.as_slice());
        let previous = previous.or(self.root.last_key());
        if let Some(previous) = previous {
            if name <= previous {
                return Err(BboltError::BucketNotAscending {
                    name: show(name),
                    previous: show(previous),
                });
            }
        }
        let result = self.end_bucket();
        self.poison_on_error(result)?;
        self.current = Some((name.to_vec(), TreeBuilder::new()));
        Ok(())
    }

    /// Adds `key` with `value` to the current bucket; `key` must sort after the bucket's
    /// previous key. Values longer than a page go to overflow pages, as bbolt stores them.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), BboltError> {
        self.check_usable()?;
        let Some((name, tree)) = self.current.as_mut() else {
            return Err(BboltError::NoBucket);
        };
        if key.is_empty() {
            return Err(BboltError::Empty {
                what: format!("key in bucket {}", show(name)),
            });
        }
        check_key_len(key)?;
        if value.len() > VALUE_BYTES_MAX {
            return Err(BboltError::ValueTooLarge { len: value.len() });
        }
        if let Some(previous) = tree.last_key() {
            if key <= previous {
                return Err(BboltError::KeyNotAscending {
                    bucket: show(name),
                    key: show(key),
                    previous: show(previous),
                });
            }
        }
        let result = tree.add_leaf(&mut self.sink, key, value, 0);
        self.poison_on_error(result)
    }

    /// Ends the last bucket, writes the remaining pages and both meta pages, flushes, and
    /// returns the output, positioned at the end of the file: its `stream_position()` is the
    /// file's length (a multiple of 4096), and a snapshot trailer can follow. Not synced.
    pub fn finish(mut self) -> Result<W, BboltError> {
        self.check_usable()?;
        self.end_bucket()?;
        let root = std::mem::replace(&mut self.root, TreeBuilder::new());
        let root_page = match root.finish(&mut self.sink)? {
            TreeRoot::Page(page) => page,
            // The root bucket is never inline: its one leaf gets a page of its own.
            TreeRoot::Leaf(node) => self.sink.write_node(&node)?,
        };
        let freelist_page = self.sink.next_page;
        self.sink.write_page_header(PageHeader {
            id: freelist_page,
            flags: FREELIST_PAGE,
            count: 0,
            overflow: 0,
        })?;
        let high_water_page = self.sink.next_page;
        let mut out = self.sink.out;
        out.seek(SeekFrom::Start(0))?;
        // Meta page n carries a txid with n's parity, as bbolt's own meta writes do; both
        // describe the same tree, so either is a valid starting point for bbolt's next write.
        for txid in 0..2 {
            let meta = Meta {
                page_size: PAGE_SIZE as u32,
                flags: 0,
                root_page,
                root_sequence: 0,
                freelist_page: Some(freelist_page),
                high_water_page,
                txid,
            };
            let header = PageHeader {
                id: txid,
                flags: META_PAGE,
                count: 0,
                overflow: 0,
            };
            let mut page = vec![0u8; PAGE_SIZE];
            page[..PAGE_HEADER_BYTES].copy_from_slice(&header.encode());
            page[PAGE_HEADER_BYTES..PAGE_HEADER_BYTES + super::format::META_BYTES]
                .copy_from_slice(&meta.encode());
            out.write_all(&page)?;
        }
        out.seek(SeekFrom::Start(high_water_page * PAGE_SIZE as u64))?;
        out.into_inner().map_err(|e| BboltError::Io(e.into_error()))
    }

    fn check_usable(&self) -> Result<(), BboltError> {
        if self.poisoned {
            return Err(BboltError::Poisoned);
        }
        Ok(())
    }

    fn poison_on_error(&mut self, result: io::Result<()>) -> Result<(), BboltError> {
        result.map_err(|e| {
            self.poisoned = true;
            BboltError::Io(e)
        })
    }

    /// Completes the current bucket's tree and adds its entry to the root bucket.
    fn end_bucket(&mut self) -> io::Result<()> {
        let Some((name, tree)) = self.current.take() else {
            return Ok(());
        };
        let value = match tree.finish(&mut self.sink)? {
            TreeRoot::Page(root) => BucketHeader { root, sequence: 0 }.encode().to_vec(),
            TreeRoot::Leaf(node) if node.size() <= PAGE_SIZE / INLINE_DIVISOR => {
                // Inline: the header with root 0, then the leaf as a page (id 0) of its exact
                // size, as bbolt's `Bucket.write` lays it out.
                let mut value = BucketHeader {
                    root: 0,
                    sequence: 0,
                }
                .encode()
                .to_vec();
                node.encode(0, &mut value);
                value
            }
            TreeRoot::Leaf(node) => {
                let root = self.sink.write_node(&node)?;
                BucketHeader { root, sequence: 0 }.encode().to_vec()
            }
        };
        self.root
            .add_leaf(&mut self.sink, &name, &value, BUCKET_LEAF_FLAG)
    }
}

fn check_key_len(key: &[u8]) -> Result<(), BboltError> {
    if key.len() > KEY_BYTES_MAX {
        return Err(BboltError::KeyTooLarge { len: key.len() });
    }
    Ok(())
}

/// Where pages go: the output, positioned at the start of page `next_page`.
struct PageSink<W: Write> {
    out: BufWriter<W>,
    next_page: u64,
    /// A reused buffer for one node's pages.
    page: Vec<u8>,
}

impl<W: Write> PageSink<W> {
    fn write_zero_pages(&mut self, count: u64) -> io::Result<()> {
        let zeros = [0u8; PAGE_SIZE];
        for _ in 0..count {
            self.out.write_all(&zeros)?;
        }
        self.next_page += count;
        Ok(())
    }

    fn write_page_header(&mut self, header: PageHeader) -> io::Result<()> {
        debug_assert_eq!(header.id, self.next_page);
        let mut page = vec![0u8; PAGE_SIZE];
        page[..PAGE_HEADER_BYTES].copy_from_slice(&header.encode());
        self.out.write_all(&page)?;
        self.next_page += 1;
        Ok(())
    }

    /// Writes `node` as the next page(s), padded with zeros to whole pages; returns its id.
    fn write_node(&mut self, node: &NodeBuf) -> io::Result<u64> {
        let id = self.next_page;
        self.page.clear();
        node.encode(id, &mut self.page);
        let pages = self.page.len().div_ceil(PAGE_SIZE);
        self.page.resize(pages * PAGE_SIZE, 0);
        self.out.write_all(&self.page)?;
        if self.page.capacity() > 4 * PAGE_SIZE {
            // A huge value passed through: give its memory back.
            self.page = Vec::new();
        }
        self.next_page += pages as u64;
        Ok(id)
    }
}

/// One pending node: its elements and their key (and value) bytes.
struct NodeBuf {
    is_leaf: bool,
    /// Per element: (leaf flags, key length, value length) for a leaf; (0, key length,
    /// child page) for a branch.
    elements: Vec<(u32, u32, u64)>,
    /// Keys and values, concatenated in element order.
    data: Vec<u8>,
}

impl NodeBuf {
    fn new(is_leaf: bool) -> NodeBuf {
        NodeBuf {
            is_leaf,
            elements: Vec::new(),
            data: Vec::new(),
        }
    }

    /// Bytes of the node as a page: header, elements, keys and values.
    fn size(&self) -> usize {
        PAGE_HEADER_BYTES + self.elements.len() * ELEMENT_BYTES + self.data.len()
    }

    fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }

    fn first_key(&self) -> &[u8] {
        let key_len = self.elements.first().map_or(0, |e| e.1 as usize);
        &self.data[..key_len]
    }

    fn push_leaf(&mut self, key: &[u8], value: &[u8], flags: u32) {
        debug_assert!(self.is_leaf);
        self.elements
            .push((flags, key.len() as u32, value.len() as u64));
        self.data.extend_from_slice(key);
        self.data.extend_from_slice(value);
    }

    fn push_branch(&mut self, key: &[u8], child: u64) {
        debug_assert!(!self.is_leaf);
        self.elements.push((0, key.len() as u32, child));
        self.data.extend_from_slice(key);
    }

    fn clear(&mut self) {
        self.elements.clear();
        self.data.clear();
        if self.data.capacity() > 4 * PAGE_SIZE {
            self.data = Vec::new();
        }
    }

    /// Appends the node's page image (unpadded) with page id `id` to `out`. The element
    /// array comes first; each element's `pos` is the distance from the element itself to its
    /// key, which is followed directly by its value (bbolt's `node.write`).
    fn encode(&self, id: u64, out: &mut Vec<u8>) {
        let start = out.len();
        let size = self.size();
        let pages = size.div_ceil(PAGE_SIZE);
        // A node at most one element over a page: its overflow always fits in u32 since
        // values are at most 2^31 bytes. An inline node's overflow stays 0.
        let overflow = if id == 0 { 0 } else { (pages - 1) as u32 };
        debug_assert!(
            self.elements.len() < 0xFFFF,
            "element count fits the page header"
        );
        let header = PageHeader {
            id,
            flags: if self.is_leaf { LEAF_PAGE } else { BRANCH_PAGE },
            count: self.elements.len() as u16,
            overflow,
        };
        out.extend_from_slice(&header.encode());
        let mut data_offset = PAGE_HEADER_BYTES + self.elements.len() * ELEMENT_BYTES;
        for (index, &(flags, key_len, extra)) in self.elements.iter().enumerate() {
            let element_offset = PAGE_HEADER_BYTES + index * ELEMENT_BYTES;
            let pos = (data_offset - element_offset) as u32;
            if self.is_leaf {
                out.extend_from_slice(&flags.to_le_bytes());
                out.extend_from_slice(&pos.to_le_bytes());
                out.extend_from_slice(&key_len.to_le_bytes());
                out.extend_from_slice(&(extra as u32).to_le_bytes());
                data_offset += key_len as usize + extra as usize;
            } else {
                out.extend_from_slice(&pos.to_le_bytes());
                out.extend_from_slice(&key_len.to_le_bytes());
                out.extend_from_slice(&extra.to_le_bytes());
                data_offset += key_len as usize;
            }
        }
        out.extend_from_slice(&self.data);
        debug_assert_eq!(out.len() - start, size);
    }
}

/// How a finished tree is rooted.
enum TreeRoot {
    /// The tree spans pages; its root is this page.
    Page(u64),
    /// The tree is one leaf, not yet written: the caller inlines it or writes it.
    Leaf(NodeBuf),
}

/// Builds one B+tree bottom-up from entries in ascending key order: a pending leaf, and one
/// pending branch node per level above it, each written out when the next element would not
/// fit in a page.
struct TreeBuilder {
    leaf: NodeBuf,
    /// `branches[0]` holds the separators (first key, page) of written leaves,
    /// `branches[1]` those of written `branches[0]` nodes, and so on.
    branches: Vec<NodeBuf>,
    /// The last key added (the pending leaf may have been written since).
    last_key: Vec<u8>,
    has_entries: bool,
}

impl TreeBuilder {
    fn new() -> TreeBuilder {
        TreeBuilder {
            leaf: NodeBuf::new(true),
            branches: Vec::new(),
            last_key: Vec::new(),
            has_entries: false,
        }
    }

    fn last_key(&self) -> Option<&[u8]> {
        self.has_entries.then_some(self.last_key.as_slice())
    }

    fn add_leaf<W: Write>(
        &mut self,
        sink: &mut PageSink<W>,
        key: &[u8],
        value: &[u8],
        flags: u32,
    ) -> io::Result<()> {
        debug_assert!(self.last_key().is_none_or(|last| key > last));
        let element_size = ELEMENT_BYTES + key.len() + value.len();
        if !self.leaf.is_empty() && self.leaf.size() + element_size > PAGE_SIZE {
            self.flush_leaf(sink)?;
        }
        self.leaf.push_leaf(key, value, flags);
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        self.has_entries = true;
        Ok(())
    }

    fn flush_leaf<W: Write>(&mut self, sink: &mut PageSink<W>) -> io::Result<()> {
        let page = sink.write_node(&self.leaf)?;
        let first_key = self.leaf.first_key().to_vec();
        self.leaf.clear();
        self.add_branch(sink, 0, &first_key, page)
    }

    /// Adds the separator of a written child to branch level `level`.
    fn add_branch<W: Write>(
        &mut self,
        sink: &mut PageSink<W>,
        level: usize,
        key: &[u8],
        child: u64,
    ) -> io::Result<()> {
        if level == self.branches.len() {
            self.branches.push(NodeBuf::new(false));
        }
        let node = &mut self.branches[level];
        if !node.is_empty() && node.size() + ELEMENT_BYTES + key.len() > PAGE_SIZE {
            let page = sink.write_node(node)?;
            let first_key = node.first_key().to_vec();
            node.clear();
            self.add_branch(sink, level + 1, &first_key, page)?;
        }
        self.branches[level].push_branch(key, child);
        Ok(())
    }

    /// Writes the pending nodes bottom-up and returns the root.
    fn finish<W: Write>(mut self, sink: &mut PageSink<W>) -> io::Result<TreeRoot> {
        if self.branches.is_empty() {
            return Ok(TreeRoot::Leaf(self.leaf));
        }
        // The pending leaf holds at least the entry whose arrival wrote the previous leaf.
        debug_assert!(!self.leaf.is_empty());
        self.flush_leaf(sink)?;
        let mut level = 0;
        loop {
            let is_top = level + 1 == self.branches.len();
            let node = &mut self.branches[level];
            debug_assert!(!node.is_empty());
            let page = sink.write_node(node)?;
            if is_top {
                return Ok(TreeRoot::Page(page));
            }
            let first_key = node.first_key().to_vec();
            node.clear();
            // A level's last node goes into the level above, which may write a full node
            // (and so grow a new level) before taking it.
            self.add_branch(sink, level + 1, &first_key, page)?;
            level += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    /// A bucket's name and its pairs.
    type TestBucket<'a> = (&'a [u8], &'a [(&'a [u8], &'a [u8])]);

    fn write(buckets: &[TestBucket<'_>]) -> Vec<u8> {
        let mut writer = Writer::new(Cursor::new(Vec::new())).expect("writer");
        for (name, entries) in buckets {
            writer.bucket(name).expect("bucket");
            for (key, value) in *entries {
                writer.put(key, value).expect("put");
            }
        }
        writer.finish().expect("finish").into_inner()
    }

    #[test]
    fn empty_file_has_metas_a_root_leaf_and_a_freelist() {
        let file = write(&[]);
        assert_eq!(file.len(), 4 * PAGE_SIZE);
        let meta_bytes = file[PAGE_HEADER_BYTES..PAGE_HEADER_BYTES + 64]
            .try_into()
            .expect("64 bytes");
        let meta = Meta::decode(meta_bytes).expect("valid meta");
        assert_eq!(meta.root_page, 2);
        assert_eq!(meta.freelist_page, Some(3));
        assert_eq!(meta.high_water_page, 4);
        assert_eq!(meta.txid, 0);
        let root = PageHeader::decode(&file[2 * PAGE_SIZE..]).expect("header");
        assert_eq!((root.id, root.flags, root.count), (2, LEAF_PAGE, 0));
        let freelist = PageHeader::decode(&file[3 * PAGE_SIZE..]).expect("header");
        assert_eq!((freelist.id, freelist.flags), (3, FREELIST_PAGE));
        let meta1 = PageHeader::decode(&file[PAGE_SIZE..]).expect("header");
        assert_eq!((meta1.id, meta1.flags), (1, META_PAGE));
    }

    #[test]
    fn empty_bucket_is_inline_like_bbolts_create_bucket() {
        let file = write(&[(b"members_removed", &[])]);
        let root = &file[2 * PAGE_SIZE..3 * PAGE_SIZE];
        let header = PageHeader::decode(root).expect("header");
        assert_eq!((header.flags, header.count), (LEAF_PAGE, 1));
        // flags, pos, ksize, vsize of the one element.
        let element = &root[16..32];
        assert_eq!(&element[0..4], &1u32.to_le_bytes());
        assert_eq!(&element[4..8], &16u32.to_le_bytes());
        assert_eq!(&element[8..12], &15u32.to_le_bytes());
        assert_eq!(&element[12..16], &32u32.to_le_bytes());
        assert_eq!(&root[32..47], b"members_removed");
        // Bucket header (root 0, sequence 0), then an empty leaf page header.
        let mut value = [0u8; 32];
        value[24..26].copy_from_slice(&LEAF_PAGE.to_le_bytes());
        assert_eq!(&root[47..79], &value);
    }

    #[test]
    fn misuse_is_refused() {
        let mut writer = Writer::new(Cursor::new(Vec::new())).expect("writer");
        assert!(matches!(writer.put(b"k", b"v"), Err(BboltError::NoBucket)));
        assert!(matches!(writer.bucket(b""), Err(BboltError::Empty { .. })));
        writer.bucket(b"b").expect("bucket");
        assert!(matches!(
            writer.put(b"", b"v"),
            Err(BboltError::Empty { .. })
        ));
        writer.put(b"k2", b"v").expect("put");
        let refused = writer.put(b"k1", b"v");
        assert!(
            matches!(refused, Err(BboltError::KeyNotAscending { .. })),
            "{refused:?}"
        );
        assert!(matches!(
            writer.put(b"k2", b"v"),
            Err(BboltError::KeyNotAscending { .. })
        ));
        let long = vec![b'k'; KEY_BYTES_MAX + 1];
        assert!(matches!(
            writer.put(&long, b"v"),
            Err(BboltError::KeyTooLarge { .. })
        ));
        assert!(matches!(
            writer.bucket(b"a"),
            Err(BboltError::BucketNotAscending { .. })
        ));
        assert!(matches!(
            writer.bucket(b"b"),
            Err(BboltError::BucketNotAscending { .. })
        ));
        writer.bucket(b"c").expect("a later bucket");
        assert!(matches!(
            writer.bucket(b"b"),
            Err(BboltError::BucketNotAscending { .. })
        ));
        writer
            .put(b"a", b"v")
            .expect("keys restart in a new bucket");
        writer.finish().expect("finish");
    }

    /// An output that fails after `budget` bytes.
    struct FailingOutput {
        budget: usize,
    }

    impl Write for FailingOutput {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if buf.len() > self.budget {
                return Err(io::Error::other("disk full"));
            }
            self.budget -= buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Seek for FailingOutput {
        fn seek(&mut self, _: SeekFrom) -> io::Result<u64> {
            Ok(0)
        }
    }

    #[test]
    fn an_io_error_poisons_the_writer() {
        let mut writer = Writer::new(FailingOutput {
            budget: 3 * WRITE_BUFFER_BYTES,
        })
        .expect("writer");
        writer.bucket(b"key").expect("bucket");
        let value = vec![7u8; 10_000];
        let mut failed = false;
        for i in 0u32..1000 {
            match writer.put(&i.to_be_bytes(), &value) {
                Ok(()) => {}
                Err(BboltError::Io(_)) => {
                    failed = true;
                    break;
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(failed, "the output's budget runs out");
        assert!(matches!(
            writer.put(b"\xff", b""),
            Err(BboltError::Poisoned)
        ));
        assert!(matches!(writer.bucket(b"z"), Err(BboltError::Poisoned)));
        assert!(matches!(writer.finish(), Err(BboltError::Poisoned)));
    }
}
