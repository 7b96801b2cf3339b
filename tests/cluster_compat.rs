//! A 3-member Keel cluster and a 3-member upstream etcd cluster, started with the same flags,
//! side by side under the real etcdctl: `member list`, `endpoint status`, `endpoint health`
//! and a scripted session must give the same normalized output.
//!
//! Endpoints are given as `host:port` (every member listed); URL endpoints, which etcdctl
//! sends as the HTTP/2 `:authority`, are covered by tests/authority.rs and
//! tests/etcdctl_compat.rs (`endpoints_given_as_urls`).

mod common;

use std::process::Output;

use common::{error_lines, etcdctl, normalize, Cluster, Kind};
use serde_json::Value;

fn run(cluster: &Cluster, args: &[&str], stdin: Option<&str>) -> Output {
    etcdctl(&cluster.endpoints(), args, stdin)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "etcdctl printed no JSON ({e}): {}{}",
            stdout(output),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Member list as comparable text: members sorted by name (etcd lists them by id, and ids
/// depend on the ports), ids and ports masked.
fn member_list(cluster: &Cluster) -> String {
    let output = run(cluster, &["member", "list", "-w", "json"], None);
    assert!(output.status.success(), "{}", error_lines(&output));
    let mut value = json(&output);
    let members = value["members"].as_array_mut().expect("members");
    members.sort_by_key(|m| m["name"].as_str().unwrap_or_default().to_string());
    let names: Vec<String> = members
        .iter()
        .map(|m| m["name"].as_str().unwrap_or_default().to_string())
        .collect();
    format!("{names:?} {}", normalize(&value.to_string()))
}

/// `endpoint status -w json` for every member: sorted by endpoint order, with the figures
/// that legitimately differ masked; checks that every member names the same leader, which is
/// one of them.
fn endpoint_status(cluster: &Cluster) -> String {
    let output = run(cluster, &["endpoint", "status", "-w", "json"], None);
    assert!(output.status.success(), "{}", error_lines(&output));
    let value = json(&output);
    let statuses = value.as_array().expect("a list of statuses");
    assert_eq!(statuses.len(), 3);
    let leaders: Vec<u64> = statuses
        .iter()
        .map(|s| s["Status"]["leader"].as_u64().expect("leader"))
        .collect();
    let ids: Vec<u64> = statuses
        .iter()
        .map(|s| {
            s["Status"]["header"]["member_id"]
                .as_u64()
                .expect("member id")
        })
        .collect();
    assert!(
        leaders.iter().all(|l| *l == leaders[0]) && ids.contains(&leaders[0]),
        "leaders {leaders:?}, members {ids:?}"
    );
    let terms: Vec<u64> = statuses
        .iter()
        .map(|s| s["Status"]["raftTerm"].as_u64().unwrap_or(0))
        .collect();
    assert!(terms.iter().all(|t| *t >= 2), "raft terms {terms:?}");
    normalize(&value.to_string())
}

/// `endpoint health`: one line per member (etcdctl prints them to stderr, in the order the
/// answers came), sorted and with timings masked.
fn endpoint_health(cluster: &Cluster) -> String {
    let output = run(cluster, &["endpoint", "health"], None);
    assert!(output.status.success(), "{}", error_lines(&output));
    let text = format!(
        "{}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.contains("is healthy"))
        .map(normalize)
        .collect();
    lines.sort();
    assert_eq!(lines.len(), 3, "{text}");
    lines.join("\n")
}

/// A scripted session: the same commands, the same normalized output, revisions included.
fn session(cluster: &Cluster) -> Vec<String> {
    let script: &[&[&str]] = &[
        &["put", "a", "1"],
        &["put", "b", "2", "-w", "json"],
        &["get", "a", "-w", "json"],
        &["get", "", "--prefix", "--consistency=s", "-w", "json"],
        &["del", "a", "-w", "json"],
        &["get", "", "--prefix", "--keys-only"],
        &["compaction", "2"],
        &["get", "b", "--rev=1"],
    ];
    script
        .iter()
        .map(|args| {
            let output = run(cluster, args, None);
            format!(
                "$ {}\n{}{}exit {:?}",
                args.join(" "),
                normalize(&stdout(&output)),
                error_lines(&output),
                output.status.code()
            )
        })
        .chain(std::iter::once({
            let txn = "value(\"b\") = \"2\"\n\nput c 3\n\nput d 4\n\n";
            let output = run(cluster, &["txn", "-w", "json"], Some(txn));
            format!(
                "$ txn\n{}exit {:?}",
                normalize(&stdout(&output)),
                output.status.code()
            )
        }))
        .collect()
}

#[test]
fn a_keel_cluster_looks_like_an_etcd_cluster_to_etcdctl() {
    let etcd = Cluster::start(Kind::Etcd, 3, &[]);
    let keel = Cluster::start(Kind::Keel, 3, &[]);
    assert_eq!(member_list(&keel), member_list(&etcd), "member list");
    let (keel_session, etcd_session) = (session(&keel), session(&etcd));
    for (k, e) in keel_session.iter().zip(&etcd_session) {
        assert_eq!(k, e, "scripted session");
    }
    // After the session, so that both stores hold data: etcd's bbolt file is never empty,
    // while Keel reports the bytes its store holds, 0 for an empty one (which etcdctl's JSON
    // then leaves out).
    assert_eq!(
        endpoint_status(&keel),
        endpoint_status(&etcd),
        "endpoint status"
    );
    assert_eq!(
        endpoint_health(&keel),
        endpoint_health(&etcd),
        "endpoint health"
    );
}
