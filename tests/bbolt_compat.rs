//! keel-engine's bbolt reader and writer against the real bbolt inside upstream etcd 3.4.23
//! (bbolt v1.3.6):
//!
//! * a snapshot saved from etcd (`etcdctl snapshot save`: bbolt's pages at its own ~50% fill,
//!   inline buckets, no stored freelist, a 100 KiB value on overflow pages, a `key` bucket of
//!   several thousand revisions with branch pages) passes the SHA-256 check and reads back
//!   with the `Reader`: the values decode as `mvccpb.KeyValue` with the keys and values
//!   written, and the reader counts and hashes exactly what `etcdctl snapshot status` counts
//!   and hashes;
//! * a file made with the `Writer` (etcd's ten buckets, a `key` bucket deep enough for three
//!   levels, empty and inline buckets, a 100 KiB value, two more buckets of one leaf, one of
//!   them on overflow pages) plus the trailer passes `etcdctl snapshot status`
//!   (which runs bbolt's consistency check) with the right revision and key count, restores
//!   with `etcdctl snapshot restore` (which opens it read-write and commits), and etcd started
//!   on the restored data dir serves the keys and takes new writes.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use common::{etcdctl, free_port, Kind, Restored, Server};
use keel_engine::bbolt::format::{PageHeader, BRANCH_PAGE, LEAF_PAGE};
use keel_engine::bbolt::snapshot::{append_snapshot_hash, verify_snapshot_hash, SnapshotHash};
use keel_engine::bbolt::{Reader, Writer};
use keel_proto::mvccpb::KeyValue;
use prost::Message;

/// The buckets etcd 3.4's backend has after start-up.
const ETCD_BUCKETS: [&str; 10] = [
    "alarm",
    "auth",
    "authRoles",
    "authUsers",
    "cluster",
    "key",
    "lease",
    "members",
    "members_removed",
    "meta",
];
/// Bytes of the large value (over many pages).
const BIG_VALUE_BYTES: usize = 100 * 1024;

/// etcdctl, which must succeed; its stdout.
fn ok(endpoint: &str, args: &[&str], stdin: Option<&str>) -> String {
    let output = etcdctl(endpoint, args, stdin);
    assert!(output.status.success(), "etcdctl {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn big_value() -> String {
    (0..BIG_VALUE_BYTES)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect()
}

/// etcd's revision key: 8-byte big-endian main revision, `_`, 8-byte big-endian sub
/// revision, and `t` for a deletion.
fn revision_key(main: i64, sub: i64, tombstone: bool) -> Vec<u8> {
    let mut key = main.to_be_bytes().to_vec();
    key.push(b'_');
    key.extend_from_slice(&sub.to_be_bytes());
    if tombstone {
        key.push(b't');
    }
    key
}

/// (main, sub, tombstone) of a revision key.
fn parse_revision_key(key: &[u8]) -> (i64, i64, bool) {
    assert!(
        key.len() == 17 || (key.len() == 18 && key[17] == b't'),
        "{key:?}"
    );
    assert_eq!(key[8], b'_');
    let main = i64::from_be_bytes(key[..8].try_into().expect("8 bytes"));
    let sub = i64::from_be_bytes(key[9..17].try_into().expect("8 bytes"));
    (main, sub, key.len() == 18)
}

/// CRC-32C (Castagnoli), the hash `etcdctl snapshot status` prints, bit by bit (the inputs
/// are small).
fn crc32c_update(mut crc: u32, bytes: &[u8]) -> u32 {
    crc = !crc;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// What `etcdctl snapshot status` computes, from the reader: the CRC-32C of every bucket name,
/// key and value in order, the number of pairs, and the main revision of the last `key` entry.
fn status_of(path: &Path) -> (u32, u64, i64) {
    let reader = Reader::open(path).expect("open");
    let (mut hash, mut total, mut revision) = (0u32, 0u64, 0i64);
    for bucket in reader.buckets() {
        let bucket = bucket.expect("bucket");
        hash = crc32c_update(hash, bucket.name());
        for entry in reader.entries(&bucket) {
            let entry = entry.expect("entry");
            hash = crc32c_update(hash, &entry.key);
            hash = crc32c_update(hash, &entry.value);
            if bucket.name() == b"key" {
                revision = parse_revision_key(&entry.key).0;
            }
            total += 1;
        }
    }
    (hash, total, revision)
}

/// `etcdctl snapshot status -w json` of `path`: (hash, totalKey, revision).
fn etcdctl_status(path: &Path) -> (u32, u64, i64) {
    let json = ok(
        "127.0.0.1:1",
        &[
            "snapshot",
            "status",
            &path.display().to_string(),
            "-w",
            "json",
        ],
        None,
    );
    let value: serde_json::Value = serde_json::from_str(json.trim()).expect("status json");
    let field = |name: &str| {
        value[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} in {json}"))
    };
    (
        field("hash") as u32,
        field("totalKey"),
        field("revision") as i64,
    )
}

/// The flags of the page `page` of the bbolt file at `path`.
fn page_header(path: &Path, page: u64, page_size: u32) -> PageHeader {
    let mut bytes = [0u8; 16];
    let file = File::open(path).expect("open");
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut bytes, page * u64::from(page_size))
        .expect("read");
    PageHeader::decode(&bytes).expect("header")
}

#[test]
fn an_etcd_snapshot_reads_back() {
    let etcd = Server::start(Kind::Etcd, &[]);
    let e = &etcd.endpoint;
    // Expected live keys and values; the large value first.
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    let big = big_value();
    ok(e, &["put", "big"], Some(&big));
    expected.insert("big".into(), big);
    // 3000 keys in txns of 100 puts (etcd allows 128 operations per txn).
    for chunk in 0..30 {
        let mut txn = String::from("\n");
        for i in chunk * 100..(chunk + 1) * 100 {
            let (key, value) = (
                format!("key/{i:05}"),
                format!("value-{i}-{}", "x".repeat(80)),
            );
            txn.push_str(&format!("put {key} {value}\n"));
            expected.insert(key, value);
        }
        txn.push_str("\n\n");
        ok(e, &["txn"], Some(&txn));
    }
    ok(e, &["put", "key/00007", "overwritten"], None);
    expected.insert("key/00007".into(), "overwritten".into());
    ok(e, &["del", "key/00008"], None);
    expected.remove("key/00008");

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("etcd.snapshot");
    ok(e, &["snapshot", "save", &path.display().to_string()], None);

    // The SHA-256 trailer is etcd's.
    let file = File::open(&path).expect("open");
    let body_len = match verify_snapshot_hash(&file).expect("hash matches") {
        SnapshotHash::Verified { body_len } => body_len,
        SnapshotHash::Absent => panic!("etcdctl snapshot save appends a SHA-256"),
    };
    let reader = Reader::new(file).expect("a bbolt file");
    let meta = *reader.meta();
    assert_eq!(body_len, meta.high_water_page * u64::from(meta.page_size));
    assert_eq!(
        meta.freelist_page, None,
        "etcd 3.4 on Linux opens bbolt with NoFreelistSync: no freelist page"
    );

    let names: Vec<String> = reader
        .buckets()
        .map(|b| String::from_utf8(b.expect("bucket").name().to_vec()).expect("utf-8"))
        .collect();
    assert_eq!(names, ETCD_BUCKETS);
    let small = reader.bucket(b"cluster").expect("read").expect("cluster");
    assert_eq!(small.root_page(), None, "bbolt stores small buckets inline");

    // The `key` bucket: each revision's KeyValue; replaying them gives the live keys.
    let key_bucket = reader.bucket(b"key").expect("read").expect("key bucket");
    let root = key_bucket.root_page().expect("a big bucket has pages");
    assert_eq!(
        page_header(&path, root, meta.page_size).flags,
        BRANCH_PAGE,
        "3000 revisions need branch pages"
    );
    let mut live: BTreeMap<String, String> = BTreeMap::new();
    let mut revisions = 0;
    for entry in reader.entries(&key_bucket) {
        let entry = entry.expect("entry");
        let (main, _sub, tombstone) = parse_revision_key(&entry.key);
        let kv = KeyValue::decode(entry.value.as_slice()).expect("an mvccpb.KeyValue");
        let key = String::from_utf8(kv.key).expect("utf-8 key");
        if tombstone {
            live.remove(&key);
        } else {
            assert_eq!(kv.mod_revision, main, "{key}");
            live.insert(key, String::from_utf8(kv.value).expect("utf-8 value"));
        }
        revisions += 1;
    }
    assert_eq!(revisions, 1 + 3000 + 1 + 1);
    assert_eq!(live, expected);
    let meta_bucket = reader.bucket(b"meta").expect("read").expect("meta bucket");
    let consistent_index = reader
        .entries(&meta_bucket)
        .map(|e| e.expect("entry"))
        .find(|e| e.key == b"consistent_index")
        .expect("consistent_index");
    assert_eq!(consistent_index.value.len(), 8);

    // The reader sees exactly the pairs bbolt sees.
    assert_eq!(status_of(&path), etcdctl_status(&path));
}

/// A history of revisions as etcd's `key` bucket holds it, and the live keys it leaves.
#[derive(Default)]
struct History {
    revisions: Vec<(Vec<u8>, KeyValue)>,
    live: BTreeMap<String, KeyValue>,
}

impl History {
    fn put(&mut self, main: i64, sub: i64, key: String, value: Vec<u8>) {
        let previous = self.live.get(&key);
        let kv = KeyValue {
            key: key.clone().into_bytes(),
            create_revision: previous.map_or(main, |p| p.create_revision),
            mod_revision: main,
            version: previous.map_or(1, |p| p.version + 1),
            value,
            lease: 0,
        };
        self.revisions
            .push((revision_key(main, sub, false), kv.clone()));
        self.live.insert(key, kv);
    }

    /// A deletion: the tombstone holds only the key.
    fn delete(&mut self, main: i64, key: &str) {
        let tombstone = KeyValue {
            key: key.as_bytes().to_vec(),
            ..KeyValue::default()
        };
        self.revisions
            .push((revision_key(main, 0, true), tombstone));
        self.live.remove(key);
    }
}

/// etcd started on an existing (restored) data dir; killed on drop.
/// `etcdctl snapshot restore` of `snapshot` into `dir/restored`, then etcd on it.
fn restore_and_start(snapshot: &Path, dir: &Path) -> Restored {
    let peer = free_port();
    let data_dir = dir.join("restored");
    common::etcdctl_restore(snapshot, &data_dir, peer);
    common::start_restored(Kind::Etcd, &data_dir, peer, &dir.join("etcd.log"))
}

#[test]
fn a_keel_written_file_restores_into_etcd() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("keel.snapshot");

    // The `key` bucket: 5000 puts over 400 keys (200-byte values: three tree levels), one
    // revision with two changes (sub revisions 0 and 1), a deletion, a 100 KiB value.
    let mut history = History::default();
    let mut main = 1i64;
    for i in 0..5000 {
        main += 1;
        let key = format!("k{:04}", (i * 7919) % 400);
        history.put(main, 0, key, format!("{i:0200}").into_bytes());
    }
    main += 1;
    history.put(main, 0, "txn/a".into(), b"1".to_vec());
    history.put(main, 1, "txn/b".into(), b"2".to_vec());
    main += 1;
    history.put(main, 0, "big".into(), big_value().into_bytes());
    main += 1;
    history.delete(main, "k0001");
    let History { revisions, live } = history;
    let last_revision = main;

    let mut writer = Writer::create(&path).expect("create");
    let mut pairs = 0u64;
    let mut bucket = |writer: &mut Writer<File>, name: &str, entries: &[(&[u8], &[u8])]| {
        writer.bucket(name.as_bytes()).expect("bucket");
        for (key, value) in entries {
            writer.put(key, value).expect("put");
        }
        pairs += entries.len() as u64;
    };
    bucket(&mut writer, "alarm", &[]);
    let auth_revision = 1u64.to_be_bytes();
    bucket(
        &mut writer,
        "auth",
        &[(b"authEnabled", &[0]), (b"authRevision", &auth_revision)],
    );
    bucket(&mut writer, "authRoles", &[]);
    bucket(&mut writer, "authUsers", &[]);
    bucket(&mut writer, "cluster", &[(b"clusterVersion", b"3.4.0")]);
    let encoded: Vec<(Vec<u8>, Vec<u8>)> = revisions
        .iter()
        .map(|(key, kv)| (key.clone(), kv.encode_to_vec()))
        .collect();
    let entries: Vec<(&[u8], &[u8])> = encoded
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    bucket(&mut writer, "key", &entries);
    bucket(&mut writer, "lease", &[]);
    // A member of the old cluster, as etcd's membership store writes it (restore drops it).
    let member = concat!(
        r#"{"id":10276657743932975437,"peerURLs":["http://127.0.0.1:2380"],"#,
        r#""name":"old","clientURLs":["http://127.0.0.1:2379"]}"#
    );
    bucket(
        &mut writer,
        "members",
        &[(b"8e9e05c52164694d", member.as_bytes())],
    );
    bucket(&mut writer, "members_removed", &[]);
    let consistent_index = 5010u64.to_be_bytes();
    bucket(
        &mut writer,
        "meta",
        &[(b"consistent_index", &consistent_index)],
    );
    // Two buckets etcd does not have (it leaves them alone) for the tree shapes etcd's do not
    // make here: one leaf too big to be inline, and one leaf on overflow pages.
    let single_leaf: Vec<(Vec<u8>, Vec<u8>)> =
        (0u8..20).map(|i| (vec![b'k', i], vec![i; 100])).collect();
    let entries: Vec<(&[u8], &[u8])> = single_leaf
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    bucket(&mut writer, "zz_single_leaf", &entries);
    let overflow = vec![7u8; 10_000];
    bucket(&mut writer, "zz_single_overflow_leaf", &[(b"k", &overflow)]);
    let mut file = writer.finish().expect("finish");
    append_snapshot_hash(&mut file).expect("append the trailer");
    file.sync_all().expect("sync");
    drop(file);

    // Keel's own reader agrees, and the tree has three levels.
    let reader = Reader::open(&path).expect("open");
    let meta = *reader.meta();
    let key_bucket = reader.bucket(b"key").expect("read").expect("key bucket");
    let root = key_bucket.root_page().expect("paged");
    let root_header = page_header(&path, root, meta.page_size);
    assert_eq!(root_header.flags, BRANCH_PAGE);
    let first_child = {
        let mut bytes = [0u8; 8];
        let file = File::open(&path).expect("open");
        let at = root * u64::from(meta.page_size) + 16 + 8;
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut bytes, at).expect("read");
        u64::from_le_bytes(bytes)
    };
    assert_eq!(
        page_header(&path, first_child, meta.page_size).flags,
        BRANCH_PAGE,
        "the key bucket has three levels"
    );
    for (name, overflow) in [("zz_single_leaf", 0), ("zz_single_overflow_leaf", 2)] {
        let bucket = reader.bucket(name.as_bytes()).expect("read").expect(name);
        let root = bucket.root_page().expect("not inline");
        let header = page_header(&path, root, meta.page_size);
        assert_eq!(
            (header.flags, header.overflow),
            (LEAF_PAGE, overflow),
            "{name}"
        );
    }
    let read: Vec<(Vec<u8>, Vec<u8>)> = reader
        .entries(&key_bucket)
        .map(|e| e.expect("entry"))
        .map(|e| (e.key, e.value))
        .collect();
    assert_eq!(read, encoded);

    // bbolt opens it read-only, checks it (tx.Check) and counts what was written.
    let (_, total, revision) = etcdctl_status(&path);
    assert_eq!((total, revision), (pairs, last_revision));
    assert_eq!(status_of(&path), etcdctl_status(&path));

    // bbolt opens it read-write (restore commits to it), and etcd serves it.
    let restored = restore_and_start(&path, dir.path());
    let got = ok(
        &restored.endpoint,
        &["get", "", "--from-key", "-w", "json"],
        None,
    );
    let got: serde_json::Value = serde_json::from_str(got.trim()).expect("json");
    assert_eq!(got["header"]["revision"].as_i64(), Some(last_revision));
    let kvs = got["kvs"].as_array().expect("kvs");
    assert_eq!(kvs.len(), live.len());
    for (kv, (key, expected)) in kvs.iter().zip(&live) {
        let field = |name: &str| kv[name].as_i64().unwrap_or_default();
        assert_eq!(field("mod_revision"), expected.mod_revision, "{key}");
        assert_eq!(field("create_revision"), expected.create_revision, "{key}");
        assert_eq!(field("version"), expected.version, "{key}");
    }
    let big = ok(
        &restored.endpoint,
        &["get", "big", "--print-value-only"],
        None,
    );
    assert_eq!(big.trim_end(), big_value());
    // History is kept: at revision 100, 99 puts had made 99 distinct keys.
    let old = ok(
        &restored.endpoint,
        &[
            "get",
            "",
            "--from-key",
            "--rev=100",
            "--limit=1",
            "-w",
            "json",
        ],
        None,
    );
    let old: serde_json::Value = serde_json::from_str(old.trim()).expect("json");
    assert_eq!(old["count"].as_i64(), Some(99), "{old}");
    ok(&restored.endpoint, &["put", "after", "restore"], None);
    let after = ok(&restored.endpoint, &["get", "after", "-w", "json"], None);
    let after: serde_json::Value = serde_json::from_str(after.trim()).expect("json");
    assert_eq!(
        after["kvs"][0]["mod_revision"].as_i64(),
        Some(last_revision + 1)
    );
}
