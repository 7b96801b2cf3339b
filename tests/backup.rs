//! Backups in etcd's own format, both ways.
//!
//! * Keel to etcd: a history written on Keel (puts, overwrites, a deletion, a compaction, a
//!   lease with a key, a user and a role) is saved with the real `etcdctl snapshot save`,
//!   read by `etcdctl snapshot status`, restored by `etcdctl snapshot restore`, and upstream
//!   etcd started on the restored data dir serves the same keys, values, revisions, versions,
//!   leases and auth as Keel did.
//! * etcd to Keel: the same history on etcd, its snapshot (and its member's `member/snap/db`)
//!   restored into a new Keel data dir with `keel::backup::restore`: Keel started on it
//!   serves the same again.
//! * Damaged input (truncated, a bad checksum, not bbolt, bbolt without etcd's buckets) is
//!   refused with a clear error and no data dir.

mod common;

use common::{etcdctl, free_port, start_restored, Kind, Server};

/// etcdctl, which must succeed; its stdout.
fn ok(endpoint: &str, args: &[&str]) -> String {
    let output = etcdctl(endpoint, args, None);
    assert!(output.status.success(), "etcdctl {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Writes the history on `server`; returns the lease id it granted (hex, as etcdctl prints).
fn write_history(server: &Server) -> String {
    let e = &server.endpoint;
    ok(e, &["put", "a", "1"]);
    ok(e, &["put", "b", "1"]);
    ok(e, &["put", "a", "2"]);
    ok(e, &["del", "b"]);
    ok(e, &["put", "c", "1"]);
    ok(e, &["compaction", "3"]);
    let granted = ok(e, &["lease", "grant", "600"]);
    let lease = granted
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_string();
    ok(e, &["put", "leased", "v", &format!("--lease={lease}")]);
    ok(e, &["put", "a", "3"]);
    ok(e, &["user", "add", "alice", "--new-user-password=pw"]);
    ok(e, &["role", "add", "reader"]);
    ok(e, &["role", "grant-permission", "reader", "read", "a"]);
    ok(e, &["user", "grant-role", "alice", "reader"]);
    lease
}

/// What a client sees of the data: every key with its revisions, the history at revision 5,
/// a compacted revision, the lease and its key, the user and the role.
fn observe(endpoint: &str, lease: &str) -> Vec<String> {
    let get = |args: &[&str]| {
        let output = etcdctl(endpoint, args, None);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            common::error_lines(&output)
        );
        // Header ids and raft terms differ between the two servers.
        common::normalize(&text)
    };
    vec![
        get(&["get", "", "--from-key", "-w", "json"]),
        get(&["get", "a", "--rev=5", "-w", "json"]),
        get(&["get", "a", "--rev=2"]),
        get(&["lease", "timetolive", lease, "--keys"]),
        get(&["user", "get", "alice"]),
        get(&["role", "get", "reader"]),
    ]
}

#[test]
fn a_keel_snapshot_restores_into_etcd_with_every_revision() {
    let keel = Server::start(Kind::Keel, &[]);
    let lease = write_history(&keel);
    let before = observe(&keel.endpoint, &lease);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("backup.db");
    let file_arg = file.display().to_string();
    // Saved through a URL endpoint, as backup scripts write it.
    let saved = etcdctl(&keel.url(), &["snapshot", "save", &file_arg], None);
    assert!(saved.status.success(), "snapshot save: {saved:?}");

    // `snapshot status` reads it: the revision is Keel's.
    let status = ok(
        &keel.endpoint,
        &["snapshot", "status", &file_arg, "-w", "json"],
    );
    let revision = ok(&keel.endpoint, &["get", "a", "-w", "json"]);
    let revision_of = |json: &str, field: &str| -> i64 {
        let value: serde_json::Value = serde_json::from_str(json.trim()).expect("json");
        value[field]
            .as_i64()
            .or_else(|| value["header"][field].as_i64())
            .unwrap_or_else(|| panic!("{field} in {json}"))
    };
    assert_eq!(
        revision_of(&status, "revision"),
        revision_of(&revision, "revision"),
        "{status}"
    );
    assert!(revision_of(&status, "totalKey") > 0, "{status}");

    // `snapshot restore` makes an etcd data dir; etcd serves the same data from it.
    let peer = free_port();
    let restored_dir = dir.path().join("restored");
    common::etcdctl_restore(&file, &restored_dir, peer);
    let restored = start_restored(
        Kind::Etcd,
        &restored_dir,
        peer,
        &dir.path().join("etcd.log"),
    );
    let after = observe(&restored.endpoint, &lease);
    // The lease's remaining TTL counts down between the two reads; granted TTL and keys must
    // agree (normalize masks the remaining seconds).
    assert_eq!(after, before);
}

/// keelctl, which must succeed; its stdout.
fn keelctl(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_keelctl"))
        .args(args)
        .output()
        .expect("run keelctl");
    assert!(output.status.success(), "keelctl {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn restore_into_keel(file: &std::path::Path, data_dir: &std::path::Path, peer: u16) {
    let peer_url = format!("http://127.0.0.1:{peer}");
    keel::backup::restore(
        file,
        &keel::backup::RestoreTarget {
            data_dir,
            name: "restored",
            initial_cluster: &format!("restored={peer_url}"),
            initial_cluster_token: "etcd-cluster",
            initial_advertise_peer_urls: &peer_url,
        },
    )
    .unwrap_or_else(|e| panic!("restore {}: {e}", file.display()));
}

#[test]
fn an_etcd_snapshot_and_data_dir_restore_into_keel() {
    let etcd = Server::start(Kind::Etcd, &[]);
    let lease = write_history(&etcd);
    let before = observe(&etcd.endpoint, &lease);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("etcd.db");
    ok(
        &etcd.endpoint,
        &["snapshot", "save", &file.display().to_string()],
    );

    // `keelctl snapshot status` prints what `etcdctl snapshot status` prints.
    assert_eq!(
        keelctl(&["snapshot", "status", &file.display().to_string()]),
        {
            let output = etcdctl(
                "127.0.0.1:1",
                &["snapshot", "status", &file.display().to_string()],
                None,
            );
            String::from_utf8_lossy(&output.stdout).into_owned()
        }
    );
    // `keelctl snapshot restore`, with etcdctl's flags.
    let peer = free_port();
    let peer_url = format!("http://127.0.0.1:{peer}");
    let restored_dir = dir.path().join("keel-from-snapshot");
    keelctl(&[
        "snapshot",
        "restore",
        &file.display().to_string(),
        &format!("--data-dir={}", restored_dir.display()),
        "--name=restored",
        &format!("--initial-cluster=restored={peer_url}"),
        &format!("--initial-advertise-peer-urls={peer_url}"),
    ]);
    let keel = start_restored(
        Kind::Keel,
        &restored_dir,
        peer,
        &dir.path().join("keel1.log"),
    );
    assert_eq!(observe(&keel.endpoint, &lease), before);
    drop(keel);

    // The member's own backend file (no SHA-256 trailer), copied while etcd is idle (the
    // snapshot made it commit everything to the file).
    let db = dir.path().join("member-db");
    std::fs::copy(etcd.dir.path().join("data/member/snap/db"), &db).expect("copy member/snap/db");
    drop(etcd);
    let peer = free_port();
    let restored_dir = dir.path().join("keel-from-db");
    restore_into_keel(&db, &restored_dir, peer);
    let keel = start_restored(
        Kind::Keel,
        &restored_dir,
        peer,
        &dir.path().join("keel2.log"),
    );
    assert_eq!(observe(&keel.endpoint, &lease), before);
}

/// Damaged or foreign files are refused before anything is written.
#[test]
fn damaged_backups_are_refused_and_write_nothing() {
    let keel = Server::start(Kind::Keel, &[]);
    ok(&keel.endpoint, &["put", "k", "v"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let good = dir.path().join("good.db");
    ok(
        &keel.endpoint,
        &["snapshot", "save", &good.display().to_string()],
    );
    let bytes = std::fs::read(&good).expect("read");
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("not bbolt", vec![7u8; 8192 + 32]),
        ("empty", Vec::new()),
    ];
    let mut flipped = bytes.clone();
    flipped[5000] ^= 0x40;
    cases.push(("bad checksum", flipped));
    // A valid bbolt file without etcd's buckets.
    let foreign = dir.path().join("foreign.bolt");
    let mut writer = keel_engine::bbolt::Writer::create(&foreign).expect("writer");
    writer.bucket(b"other").expect("bucket");
    writer.put(b"a", b"b").expect("put");
    writer.finish().expect("finish");
    cases.push(("no etcd buckets", std::fs::read(&foreign).expect("read")));
    for (what, content) in cases {
        let file = dir.path().join(format!("{what}.db"));
        std::fs::write(&file, &content).expect("write");
        let target = dir.path().join(format!("{what}-restored"));
        let peer_url = "http://127.0.0.1:2380";
        let result = keel::backup::restore(
            &file,
            &keel::backup::RestoreTarget {
                data_dir: &target,
                name: "m",
                initial_cluster: &format!("m={peer_url}"),
                initial_cluster_token: "etcd-cluster",
                initial_advertise_peer_urls: peer_url,
            },
        );
        let error = result.expect_err(what).to_string();
        assert!(
            error.contains(&file.display().to_string()),
            "{what}: {error}"
        );
        assert!(!target.exists(), "{what}: a data dir was created");
        // keelctl says the same and exits 1.
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_keelctl"))
            .args(["snapshot", "restore", &file.display().to_string()])
            .arg(format!("--data-dir={}", target.display()))
            .output()
            .expect("run keelctl");
        assert_eq!(output.status.code(), Some(1), "{what}: {output:?}");
        assert_eq!(
            String::from_utf8_lossy(&output.stderr).trim(),
            format!("Error: {error}"),
            "{what}"
        );
        assert!(!target.exists(), "{what}: keelctl created a data dir");
    }
}

/// Offline defragmentation of a stopped etcd member's backend (`etcdutl defrag --data-dir`):
/// refused while etcd runs; once it is stopped the file shrinks, and etcd restarted on it
/// serves the same keys, revisions, history, lease and auth.
#[test]
fn an_etcd_member_backend_defragments_offline() {
    let etcd = Server::start(Kind::Etcd, &[]);
    let lease = write_history(&etcd);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("etcd.db");
    ok(
        &etcd.endpoint,
        &["snapshot", "save", &file.display().to_string()],
    );
    drop(etcd);
    let peer = free_port();
    let data_dir = dir.path().join("member-dir");
    common::etcdctl_restore(&file, &data_dir, peer);
    let log = dir.path().join("etcd.log");
    let db = data_dir.join("member/snap/db");

    let member = start_restored(Kind::Etcd, &data_dir, peer, &log);
    // Fragment the file: many large values written, deleted and compacted away.
    let big = "x".repeat(8192);
    for i in 0..300 {
        ok(&member.endpoint, &["put", &format!("bulk/{i:04}"), &big]);
    }
    ok(&member.endpoint, &["del", "bulk/", "--prefix"]);
    let status = ok(&member.endpoint, &["endpoint", "status", "-w", "json"]);
    let revision: i64 = regex::Regex::new(r#""revision":(\d+)"#)
        .expect("regex")
        .captures(&status)
        .and_then(|c| c[1].parse().ok())
        .expect("revision in endpoint status");
    ok(
        &member.endpoint,
        &["compaction", &revision.to_string(), "--physical"],
    );
    let before = observe(&member.endpoint, &lease);
    let refused = keel::backup::defrag_backend(&db).expect_err("the running member's file");
    assert!(refused.to_string().contains("in use"), "{refused}");
    drop(member);

    let before_bytes = std::fs::metadata(&db).expect("db").len();
    let out = keelctl(&["defrag", &format!("--data-dir={}", data_dir.display())]);
    assert_eq!(
        out,
        format!("Finished defragmenting etcd data[{}]\n", data_dir.display())
    );
    let after_bytes = std::fs::metadata(&db).expect("db").len();
    assert!(
        after_bytes * 2 < before_bytes,
        "the file did not shrink: {before_bytes} -> {after_bytes}"
    );
    let member = start_restored(Kind::Etcd, &data_dir, peer, &log);
    assert_eq!(observe(&member.endpoint, &lease), before);
}
