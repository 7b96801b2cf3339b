//! bbolt files: what [`Writer`] writes, [`Reader`] reads back identically (random buckets and
//! pairs against a `BTreeMap` model, trees of several levels, values over several pages), and
//! the reader survives damaged files: truncations and bit flips end in an error or in data,
//! never in a panic, a hang or a runaway allocation. Hand-made damage (a cycle, a page out of
//! range, keys out of order, a lying header) gets the error that names it.
//!
//! That real bbolt (inside etcd 3.4) reads the writer's files and that the reader reads real
//! bbolt's files is checked by `tests/bbolt_compat.rs` at the workspace root.

use std::collections::BTreeMap;
use std::io::Cursor;

use keel_engine::bbolt::format::{
    PageHeader, BRANCH_PAGE, ELEMENT_BYTES, LEAF_PAGE, PAGE_HEADER_BYTES, PAGE_SIZE,
};
use keel_engine::bbolt::snapshot::{append_snapshot_hash, verify_snapshot_hash, SnapshotHash};
use keel_engine::bbolt::{BboltError, Reader, Writer};
use proptest::prelude::*;

/// Buckets by name, each a map of its pairs: the model the files are checked against.
type Model = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

fn write(model: &Model) -> Vec<u8> {
    let mut writer = Writer::new(Cursor::new(Vec::new())).expect("writer");
    for (name, pairs) in model {
        writer.bucket(name).expect("bucket");
        for (key, value) in pairs {
            writer.put(key, value).expect("put");
        }
    }
    let file = writer.finish().expect("finish").into_inner();
    assert_eq!(file.len() % PAGE_SIZE, 0);
    file
}

/// Everything the reader finds, as a model (a nested bucket, which the writer never writes,
/// shows as a value prefixed with `NESTED:`); the first error otherwise.
fn read_all(file: &[u8]) -> Result<Model, BboltError> {
    let reader = Reader::new(file)?;
    let mut model = Model::new();
    for bucket in reader.buckets() {
        let bucket = bucket?;
        let mut pairs = BTreeMap::new();
        for entry in reader.entries(&bucket) {
            let mut entry = entry?;
            if entry.nested_bucket {
                entry.value.splice(0..0, b"NESTED:".iter().copied());
            }
            pairs.insert(entry.key, entry.value);
        }
        model.insert(bucket.name().to_vec(), pairs);
    }
    Ok(model)
}

/// A deterministic generator (splitmix64) for the damage loops.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// The page ids on the leftmost path of the bucket's tree, root first.
fn leftmost_path(file: &[u8], root: u64) -> Vec<u64> {
    let mut path = vec![root];
    loop {
        let page = *path.last().expect("non-empty");
        let offset = page as usize * PAGE_SIZE;
        let header = PageHeader::decode(&file[offset..]).expect("header");
        if header.flags == LEAF_PAGE {
            return path;
        }
        assert_eq!(header.flags, BRANCH_PAGE);
        let child_at = offset + PAGE_HEADER_BYTES + 8;
        let child = u64::from_le_bytes(file[child_at..child_at + 8].try_into().expect("8"));
        path.push(child);
    }
}

/// A file with a bucket of `keys` pairs of 200-byte keys: four levels (leaves of ~18 pairs,
/// branches of ~18 children), plus an inline bucket and a bucket with big values.
fn deep_model(keys: u32) -> Model {
    let mut model = Model::new();
    let mut rng = Rng(7);
    let deep: BTreeMap<_, _> = (0..keys)
        .map(|i| {
            let mut key = i.to_be_bytes().to_vec();
            key.extend(rng.bytes(196));
            (key, rng.bytes(i as usize % 7))
        })
        .collect();
    model.insert(b"deep".to_vec(), deep);
    model.insert(b"empty".to_vec(), BTreeMap::new());
    let big: BTreeMap<_, _> = (0u8..5)
        .map(|i| (vec![i], vec![i; i as usize * 5000 + 1]))
        .collect();
    model.insert(b"large".to_vec(), big);
    let small = BTreeMap::from([(b"k".to_vec(), b"v".to_vec())]);
    model.insert(b"small".to_vec(), small);
    model
}

#[test]
fn deep_trees_round_trip() {
    let model = deep_model(20_000);
    let file = write(&model);
    assert_eq!(read_all(&file).expect("valid file"), model);
    let reader = Reader::new(file.as_slice()).expect("reader");
    let deep = reader.bucket(b"deep").expect("read").expect("exists");
    let depth = leftmost_path(&file, deep.root_page().expect("a paged bucket")).len();
    assert!(
        depth >= 4,
        "20000 pairs of 200-byte keys make at least 4 levels, got {depth}"
    );
    let small = reader.bucket(b"small").expect("read").expect("exists");
    assert_eq!(
        small.root_page(),
        None,
        "a bucket under a quarter page is inline"
    );
    let empty = reader.bucket(b"empty").expect("read").expect("exists");
    assert_eq!(
        empty.root_page(),
        None,
        "an empty bucket is inline, as bbolt creates it"
    );
    assert!(reader.bucket(b"missing").expect("read").is_none());
    let large = reader.bucket(b"large").expect("read").expect("exists");
    let root = large.root_page().expect("paged");
    let header = PageHeader::decode(&file[root as usize * PAGE_SIZE..]).expect("header");
    assert_eq!(
        header.flags, BRANCH_PAGE,
        "values over a page get a leaf each"
    );
}

#[test]
fn big_values_use_overflow_pages() {
    let value = vec![0xabu8; 3 * PAGE_SIZE + 123];
    let model = Model::from([(
        b"key".to_vec(),
        BTreeMap::from([(b"a".to_vec(), value.clone()), (b"b".to_vec(), Vec::new())]),
    )]);
    let file = write(&model);
    assert_eq!(read_all(&file).expect("valid"), model);
    // Page 2 is the first leaf: the big value alone, on 4 pages (3 of them overflow).
    let header = PageHeader::decode(&file[2 * PAGE_SIZE..]).expect("header");
    assert_eq!((header.id, header.flags, header.count), (2, LEAF_PAGE, 1));
    assert_eq!(header.overflow, 3);
}

#[test]
fn snapshot_trailer_round_trip() {
    let model = deep_model(500);
    let mut file = Cursor::new(write(&model));
    append_snapshot_hash(&mut file).expect("append");
    let file = file.into_inner();
    assert_eq!(file.len() % 512, 32);
    let body_len = match verify_snapshot_hash(&file).expect("verified") {
        SnapshotHash::Verified { body_len } => body_len,
        SnapshotHash::Absent => panic!("the trailer is there"),
    };
    assert_eq!(body_len as usize, file.len() - 32);
    // The trailer after the last page does not bother the reader.
    assert_eq!(read_all(&file).expect("valid"), model);
}

#[test]
fn reader_on_a_file_on_disk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("db");
    let model = deep_model(300);
    let mut writer = Writer::create(&path).expect("create");
    for (name, pairs) in &model {
        writer.bucket(name).expect("bucket");
        for (key, value) in pairs {
            writer.put(key, value).expect("put");
        }
    }
    writer.finish().expect("finish").sync_all().expect("sync");
    let reader = Reader::open(&path).expect("open");
    assert_eq!(reader.meta().page_size as usize, PAGE_SIZE);
    let deep = reader.bucket(b"deep").expect("read").expect("exists");
    let keys: Vec<Vec<u8>> = reader
        .entries(&deep)
        .map(|e| e.expect("entry").key)
        .collect();
    let expected: Vec<Vec<u8>> = model[&b"deep".to_vec()].keys().cloned().collect();
    assert_eq!(keys, expected);
}

#[test]
fn not_bbolt_files_are_named_so() {
    for file in [
        Vec::new(),
        vec![0u8; 100],
        vec![0u8; 5 * PAGE_SIZE],
        b"hello".repeat(2000),
    ] {
        let error = Reader::new(file).err().expect("refused");
        assert!(
            matches!(error, BboltError::NotBbolt { .. }),
            "unexpected: {error}"
        );
        assert!(error.to_string().starts_with("not a bbolt file"), "{error}");
    }
}

#[test]
fn the_newer_valid_meta_wins_and_a_damaged_one_falls_back() {
    let file = write(&deep_model(50));
    let reader = Reader::new(file.as_slice()).expect("reader");
    assert_eq!(reader.meta().txid, 1, "meta page 1 has the higher txid");
    // Damage meta 1's body: meta 0 (txid 0, same tree) takes over.
    let mut damaged = file.clone();
    damaged[PAGE_SIZE + PAGE_HEADER_BYTES + 20] ^= 0x40;
    let reader = Reader::new(damaged.as_slice()).expect("falls back");
    assert_eq!(reader.meta().txid, 0);
    assert_eq!(read_all(&damaged).expect("valid"), deep_model(50));
    // Damage meta 0 instead: the page size is found by probing for meta 1, as bbolt does.
    let mut damaged = file.clone();
    damaged[PAGE_HEADER_BYTES] ^= 0x01;
    let reader = Reader::new(damaged.as_slice()).expect("probes for meta 1");
    assert_eq!(reader.meta().txid, 1);
    // Both damaged (checksums): no valid meta.
    let mut both = file.clone();
    both[PAGE_HEADER_BYTES + 20] ^= 0x40;
    both[PAGE_SIZE + PAGE_HEADER_BYTES + 20] ^= 0x40;
    let error = Reader::new(both).err().expect("refused");
    assert!(matches!(error, BboltError::NoValidMeta { .. }), "{error}");
    assert!(error.to_string().contains("checksum mismatch"), "{error}");
}

#[test]
fn truncated_files_are_refused_at_open() {
    let file = write(&deep_model(300));
    let error = Reader::new(&file[..file.len() - PAGE_SIZE])
        .err()
        .expect("refused");
    assert!(matches!(error, BboltError::Truncated { .. }), "{error}");
    assert!(error.to_string().contains("truncated"), "{error}");
}

/// Writes `u64` at `offset`.
fn patch_u64(file: &mut [u8], offset: usize, value: u64) {
    file[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn hand_made_damage_gets_its_own_error() {
    let model = deep_model(3000);
    let file = write(&model);
    let reader = Reader::new(file.as_slice()).expect("reader");
    let root = reader
        .bucket(b"deep")
        .expect("read")
        .expect("exists")
        .root_page()
        .expect("paged");
    let path = leftmost_path(&file, root);
    assert!(path.len() >= 3);
    let first_child_at = |page: u64| page as usize * PAGE_SIZE + PAGE_HEADER_BYTES + 8;
    let deep_entries = |file: &[u8]| -> Result<usize, BboltError> {
        let reader = Reader::new(file)?;
        let bucket = reader.bucket(b"deep")?.expect("exists");
        let mut count = 0;
        for entry in reader.entries(&bucket) {
            entry?;
            count += 1;
        }
        Ok(count)
    };
    assert_eq!(deep_entries(&file).expect("valid"), 3000);

    // A branch whose first child is the root: a cycle.
    let mut damaged = file.clone();
    patch_u64(&mut damaged, first_child_at(path[1]), root);
    let error = deep_entries(&damaged).expect_err("cycle");
    assert!(
        matches!(error, BboltError::Cycle { page } if page == root),
        "{error}"
    );

    // A child beyond the high-water mark.
    let mut damaged = file.clone();
    patch_u64(&mut damaged, first_child_at(root), 1_000_000);
    let error = deep_entries(&damaged).expect_err("out of range");
    assert!(
        matches!(
            error,
            BboltError::PageOutOfRange {
                page: 1_000_000,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error.to_string().starts_with("page 1000000 out of range"),
        "{error}"
    );

    // A child that is a meta page.
    let mut damaged = file.clone();
    patch_u64(&mut damaged, first_child_at(root), 1);
    let error = deep_entries(&damaged).expect_err("meta page");
    assert!(
        matches!(error, BboltError::PageOutOfRange { page: 1, .. }),
        "{error}"
    );

    // A child that is the freelist page: wrong type.
    let freelist = reader.meta().freelist_page.expect("stored");
    let mut damaged = file.clone();
    patch_u64(&mut damaged, first_child_at(root), freelist);
    let error = deep_entries(&damaged).expect_err("wrong type");
    assert!(
        matches!(error, BboltError::PageType { flags: 0x10, .. }),
        "{error}"
    );

    // Two children pointing at the same leaf: keys repeat.
    let leaf = *path.last().expect("leaf");
    let parent = path[path.len() - 2];
    let mut damaged = file.clone();
    let second_child_at = first_child_at(parent) + ELEMENT_BYTES;
    patch_u64(&mut damaged, second_child_at, leaf);
    let error = deep_entries(&damaged).expect_err("repeated keys");
    assert!(
        matches!(error, BboltError::KeysOutOfOrder { .. }),
        "{error}"
    );

    // A page whose header names another page.
    let mut damaged = file.clone();
    patch_u64(&mut damaged, leaf as usize * PAGE_SIZE, leaf + 1);
    let error = deep_entries(&damaged).expect_err("wrong id");
    assert!(
        matches!(error, BboltError::PageId { page, .. } if page == leaf),
        "{error}"
    );

    // A leaf claiming overflow pages past the high-water mark.
    let mut damaged = file.clone();
    let overflow_at = leaf as usize * PAGE_SIZE + 12;
    damaged[overflow_at..overflow_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let error = deep_entries(&damaged).expect_err("overflow");
    assert!(
        matches!(error, BboltError::PageOutOfRange { .. }),
        "{error}"
    );

    // A leaf element pointing past its page.
    let mut damaged = file.clone();
    let pos_at = leaf as usize * PAGE_SIZE + PAGE_HEADER_BYTES + 4;
    damaged[pos_at..pos_at + 4].copy_from_slice(&5000u32.to_le_bytes());
    let error = deep_entries(&damaged).expect_err("element offset");
    assert!(matches!(error, BboltError::Damaged { .. }), "{error}");
    assert!(
        error.to_string().contains(&format!("page {leaf}")),
        "{error}"
    );

    // A leaf whose element count does not fit its page.
    let mut damaged = file.clone();
    let count_at = leaf as usize * PAGE_SIZE + 10;
    damaged[count_at..count_at + 2].copy_from_slice(&0xfff0u16.to_le_bytes());
    let error = deep_entries(&damaged).expect_err("count");
    assert!(matches!(error, BboltError::Damaged { .. }), "{error}");
}

#[test]
fn pages_referenced_twice_are_bounded() {
    // Every branch on the leftmost path points all its children at the next page of the
    // path, and the leaf is emptied so that no key repeats: a four-level tree then visits
    // that leaf (4 x 18 x 18 times) more often than the file has pages. The reader reads at
    // most as many pages as the file has, then stops with an error.
    let model = deep_model(20_000);
    let file = write(&model);
    let reader = Reader::new(file.as_slice()).expect("reader");
    let root = reader
        .bucket(b"deep")
        .expect("read")
        .expect("exists")
        .root_page()
        .expect("paged");
    let path = leftmost_path(&file, root);
    let leaf = *path.last().expect("leaf");
    assert!(path.len() >= 4);
    let mut damaged = file.clone();
    damaged[leaf as usize * PAGE_SIZE + 10..leaf as usize * PAGE_SIZE + 12]
        .copy_from_slice(&0u16.to_le_bytes());
    for pair in path.windows(2) {
        let (branch, child) = (pair[0] as usize, pair[1]);
        let header = PageHeader::decode(&damaged[branch * PAGE_SIZE..]).expect("header");
        for index in 0..header.count as usize {
            let at = branch * PAGE_SIZE + PAGE_HEADER_BYTES + index * ELEMENT_BYTES + 8;
            patch_u64(&mut damaged, at, child);
        }
    }
    let reader = Reader::new(damaged.as_slice()).expect("reader");
    let bucket = reader.bucket(b"deep").expect("read").expect("exists");
    let error = reader
        .entries(&bucket)
        .find_map(Result::err)
        .expect("refused");
    assert!(matches!(error, BboltError::TooManyPages { .. }), "{error}");
}

/// Reads everything in `file`, whatever it holds, and reports whether that worked: the point
/// is that it returns.
fn survives(file: &[u8]) -> bool {
    read_all(file).is_ok()
}

#[test]
fn truncations_never_panic() {
    let file = write(&deep_model(400));
    let mut rng = Rng(11);
    let mut lengths: Vec<usize> = (0..file.len() / PAGE_SIZE).map(|p| p * PAGE_SIZE).collect();
    lengths.extend((0..300).map(|_| rng.below(file.len())));
    lengths.extend([1, 15, 16, 79, 80, 81, 1023, 1024, 4095, 4097, 8191]);
    for len in lengths {
        assert!(
            !survives(&file[..len]),
            "a truncated file ({len} bytes) is refused"
        );
    }
}

#[test]
fn bit_flips_never_panic() {
    let model = deep_model(600);
    let file = write(&model);
    let mut rng = Rng(42);
    let mut detected = 0;
    let rounds = 10_000;
    for _ in 0..rounds {
        let mut damaged = file.clone();
        let flips = 1 + rng.below(4);
        for _ in 0..flips {
            // Half the flips land in page headers and element arrays, where they matter most.
            let offset = if rng.below(2) == 0 {
                let page = rng.below(file.len() / PAGE_SIZE);
                page * PAGE_SIZE + rng.below(PAGE_HEADER_BYTES + 8 * ELEMENT_BYTES)
            } else {
                rng.below(file.len())
            };
            damaged[offset] ^= 1 << rng.below(8);
        }
        if let Ok(read) = read_all(&damaged) {
            // Undetected damage changed data (or nothing that matters), never the shape.
            assert!(read.len() <= model.len() + 1);
        } else {
            detected += 1;
        }
    }
    assert!(
        detected > rounds / 10,
        "only {detected} of {rounds} damaged files refused"
    );
}

/// Bucket names and keys: short byte strings, some sharing prefixes.
fn key_strategy(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..8),
        proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b')], 1..12),
        proptest::collection::vec(any::<u8>(), 1..max_len),
    ]
}

/// Values from empty to over three pages.
fn value_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..64),
        2 => proptest::collection::vec(any::<u8>(), 0..2000),
        1 => (0..4 * PAGE_SIZE, any::<u8>()).prop_map(|(len, byte)| vec![byte; len]),
    ]
}

fn model_strategy() -> impl Strategy<Value = Model> {
    let bucket = prop_oneof![
        1 => Just(BTreeMap::new()),
        3 => proptest::collection::btree_map(key_strategy(400), value_strategy(), 0..300),
    ];
    proptest::collection::btree_map(key_strategy(40), bucket, 0..6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Whatever is written is read back identically.
    #[test]
    fn written_files_read_back(model in model_strategy()) {
        let file = write(&model);
        prop_assert_eq!(read_all(&file).expect("valid file"), model);
    }

    /// Random damage to a random file ends in data or an error.
    #[test]
    fn damaged_random_files_never_panic(
        model in model_strategy(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..6),
    ) {
        let mut file = write(&model);
        for (index, bit) in flips {
            let at = index.index(file.len());
            file[at] ^= 1 << bit;
        }
        survives(&file);
    }
}
