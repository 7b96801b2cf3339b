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
//! * keelctl alone: written, saved, wiped, restored (its WAL in a separate `--wal-dir`) and
//!   started again, every key and revision back.

mod common;

use common::ctl::{run_tool, Tool};
use common::{etcdctl, free_port, start_restored, start_restored_with, Kind, Server};

/// etcdctl, which must succeed; its stdout.
fn ok(endpoint: &str, args: &[&str]) -> String {
    tool_ok(Tool::Etcdctl, endpoint, args)
}

/// `tool`, which must succeed; its stdout.
fn tool_ok(tool: Tool, endpoint: &str, args: &[&str]) -> String {
    let output = run_tool(tool, endpoint, args, None);
    assert!(output.status.success(), "{tool:?} {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Writes the history on `server` with etcdctl; returns the lease id it granted (hex, as
/// etcdctl prints).
fn write_history(server: &Server) -> String {
    write_history_with(Tool::Etcdctl, &server.endpoint)
}

/// Writes the history on `e` with `tool`; returns the lease id.
fn write_history_with(tool: Tool, e: &str) -> String {
    let ok = |e: &str, args: &[&str]| tool_ok(tool, e, args);
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

/// What a client sees of the data, through etcdctl: every key with its revisions, the
/// history at revision 5, a compacted revision, the lease and its key, the user and the role.
fn observe(endpoint: &str, lease: &str) -> Vec<String> {
    observe_with(Tool::Etcdctl, endpoint, lease)
}

/// [`observe`] through `tool`.
fn observe_with(tool: Tool, endpoint: &str, lease: &str) -> Vec<String> {
    let get = |args: &[&str]| {
        let output = run_tool(tool, endpoint, args, None);
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

fn restore_into_keel(
    file: &std::path::Path,
    data_dir: &std::path::Path,
    peer: u16,
    hash: keel::backup::HashCheck,
) {
    let peer_url = format!("http://127.0.0.1:{peer}");
    keel::backup::restore(
        file,
        &keel::backup::RestoreTarget {
            data_dir,
            name: "restored",
            initial_cluster: &format!("restored={peer_url}"),
            initial_cluster_token: "etcd-cluster",
            initial_advertise_peer_urls: &peer_url,
            wal_dir: None,
            hash,
        },
        &|_, _, _| {},
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
    // Without --skip-hash-check it is refused, as etcdutl refuses it, and nothing is written.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_keelctl"))
        .args(["snapshot", "restore", &db.display().to_string()])
        .arg(format!("--data-dir={}", restored_dir.display()))
        .output()
        .expect("run keelctl");
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr).trim(),
        "Error: snapshot missing hash but --skip-hash-check=false"
    );
    assert!(!restored_dir.exists(), "a refused restore made a data dir");
    restore_into_keel(&db, &restored_dir, peer, keel::backup::HashCheck::Skipped);
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
    // Each case fails with the hash checked, and (but for the changed byte, which bbolt's
    // pages carry no checksum to find) with it skipped, when the damage is found by reading
    // the records; a file without a trailer fails the check itself.
    let skips = [
        (keel::backup::HashCheck::Required, None),
        (keel::backup::HashCheck::Skipped, Some("--skip-hash-check")),
    ];
    for (what, content) in cases {
        let file = dir.path().join(format!("{what}.db"));
        std::fs::write(&file, &content).expect("write");
        for (hash, flag) in skips {
            if what == "bad checksum" && flag.is_some() {
                continue;
            }
            let target = dir.path().join(format!("{what}-restored"));
            let wal_dir = dir.path().join(format!("{what}-wal"));
            let peer_url = "http://127.0.0.1:2380";
            let result = keel::backup::restore(
                &file,
                &keel::backup::RestoreTarget {
                    data_dir: &target,
                    name: "m",
                    initial_cluster: &format!("m={peer_url}"),
                    initial_cluster_token: "etcd-cluster",
                    initial_advertise_peer_urls: peer_url,
                    wal_dir: Some(&wal_dir),
                    hash,
                },
                &|_, _, _| {},
            );
            let error = result.expect_err(what).to_string();
            let trailer = content.len() % 512 == 32;
            if hash == keel::backup::HashCheck::Required && !trailer {
                assert_eq!(
                    error, "snapshot missing hash but --skip-hash-check=false",
                    "{what}"
                );
            } else {
                assert!(
                    error.contains(&file.display().to_string()),
                    "{what} {hash:?}: {error}"
                );
            }
            assert!(!target.exists(), "{what}: a data dir was created");
            assert!(!wal_dir.exists(), "{what}: a WAL dir was created");
            // keelctl says the same and exits 1.
            let output = std::process::Command::new(env!("CARGO_BIN_EXE_keelctl"))
                .args(["snapshot", "restore", &file.display().to_string()])
                .arg(format!("--data-dir={}", target.display()))
                .arg(format!("--wal-dir={}", wal_dir.display()))
                .args(flag)
                .output()
                .expect("run keelctl");
            assert_eq!(output.status.code(), Some(1), "{what}: {output:?}");
            assert_eq!(
                String::from_utf8_lossy(&output.stderr).trim(),
                format!("Error: {error}"),
                "{what}"
            );
            assert!(!target.exists(), "{what}: keelctl created a data dir");
            assert!(!wal_dir.exists(), "{what}: keelctl created a WAL dir");
        }
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

/// Backup end to end with keelctl alone: a history written with keelctl (with transactions of
/// many keys, so that revisions have sub-revisions and the file spans many pages), `keelctl
/// snapshot save`, the member wiped, a corrupted copy refused (exit 1, a clear error, nothing
/// written), `keelctl snapshot restore` with the WAL in its own `--wal-dir`, Keel started on
/// it: every key, value, revision, version, the history, the lease and auth are back, and new
/// writes go on from the saved revision with the WAL in that directory.
#[test]
fn keelctl_alone_saves_wipes_and_restores_a_member() {
    let keelctl = |e: &str, args: &[&str]| tool_ok(Tool::Keelctl, e, args);
    let keel = Server::start(Kind::Keel, &[]);
    let lease = write_history_with(Tool::Keelctl, &keel.endpoint);
    for round in 0..4 {
        let script: String = (0..120)
            .map(|i| format!("put bulk/{i:03} round-{round}-{}\n", "v".repeat(i)))
            .collect();
        let output = run_tool(
            Tool::Keelctl,
            &keel.endpoint,
            &["txn"],
            Some(&format!("\n{script}\n\n")),
        );
        assert!(output.status.success(), "txn: {output:?}");
    }
    let mut before = observe_with(Tool::Keelctl, &keel.endpoint, &lease);
    let bulk =
        |e: &str| common::normalize(&keelctl(e, &["get", "bulk/", "--prefix", "-w", "json"]));
    let head = |e: &str| -> i64 {
        let json = keelctl(e, &["get", "a", "-w", "json"]);
        let value: serde_json::Value = serde_json::from_str(json.trim()).expect("json");
        value["header"]["revision"].as_i64().expect("revision")
    };
    before.push(bulk(&keel.endpoint));
    let revision = head(&keel.endpoint);
    // The history in the middle of the transactions.
    let middle = (revision - 2).to_string();
    let at_middle = |e: &str| {
        common::normalize(&keelctl(
            e,
            &["get", "bulk/1", "--prefix", "--rev", &middle, "-w", "json"],
        ))
    };
    before.push(at_middle(&keel.endpoint));

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("backup.db");
    let file_arg = file.display().to_string();
    let saved = keelctl(&keel.endpoint, &["snapshot", "save", &file_arg]);
    assert_eq!(saved.trim(), format!("Snapshot saved at {file_arg}"));
    // Wiped: the member and its data dir are gone.
    let old_dir = keel.dir.path().to_path_buf();
    drop(keel);
    assert!(!old_dir.exists());

    let data_dir = dir.path().join("member");
    let wal_dir = dir.path().join("wal");
    let peer = free_port();
    let peer_url = format!("http://127.0.0.1:{peer}");
    let restore_args = |from: &str| -> Vec<String> {
        vec![
            "snapshot".into(),
            "restore".into(),
            from.into(),
            format!("--data-dir={}", data_dir.display()),
            format!("--wal-dir={}", wal_dir.display()),
            "--name=restored".into(),
            format!("--initial-cluster=restored={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
        ]
    };

    // A corrupted copy: one byte of a page changed, so the trailer no longer matches.
    let mut bytes = std::fs::read(&file).expect("read the backup");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    let corrupted = dir.path().join("corrupted.db");
    std::fs::write(&corrupted, &bytes).expect("write the corrupted copy");
    let args = restore_args(&corrupted.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let refused = run_tool(Tool::Keelctl, "", &args, None);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.starts_with("Error: ")
            && stderr.contains(&corrupted.display().to_string())
            && stderr.contains("SHA-256 trailer"),
        "{stderr}"
    );
    assert!(
        !data_dir.exists() && !wal_dir.exists(),
        "a refused restore wrote"
    );

    let args = restore_args(&file_arg);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let restored_out = run_tool(Tool::Keelctl, "", &args, None);
    assert!(restored_out.status.success(), "restore: {restored_out:?}");
    // A second restore into the same places is refused, as etcdutl refuses it.
    let again = run_tool(Tool::Keelctl, "", &args, None);
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert_eq!(
        String::from_utf8_lossy(&again.stderr).trim(),
        format!(
            "Error: data-dir {:?} not empty or could not be read",
            data_dir.display().to_string()
        )
    );

    let wal_flag = format!("--wal-dir={}", wal_dir.display());
    let restored = start_restored_with(
        Kind::Keel,
        &data_dir,
        peer,
        &dir.path().join("keel.log"),
        &[&wal_flag],
    );
    let mut after = observe_with(Tool::Keelctl, &restored.endpoint, &lease);
    after.push(bulk(&restored.endpoint));
    after.push(at_middle(&restored.endpoint));
    assert_eq!(after, before);
    assert_eq!(head(&restored.endpoint), revision);
    keelctl(&restored.endpoint, &["put", "after", "restore"]);
    assert_eq!(head(&restored.endpoint), revision + 1);
    let wal_files = std::fs::read_dir(&wal_dir).expect("the WAL dir").count();
    assert!(wal_files > 0, "the member wrote no WAL in --wal-dir");
    // The data dir's own WAL directory (made with the data dir) stays empty.
    let in_data_dir = std::fs::read_dir(data_dir.join("member/wal"))
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(in_data_dir, 0, "a WAL in the data dir too");
}
