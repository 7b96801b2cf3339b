//! keelctl's lease, member, endpoint, alarm, defrag, move-leader, snapshot save and version
//! commands against etcdctl's (tests/common/ctl.rs): single-member cases on the four servers
//! of a [`Quad`], cluster cases on a 3-member etcd cluster and a 3-member Keel cluster, where
//! both tools run against the same cluster in turn. Normalized stdout, the `Error:` lines and
//! the exit codes must agree; where etcdctl 3.5 prints differently from Debian's 3.4.23, the
//! step says how.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::ctl::{run_tool, Quad, Seen, Tool, COMBINATIONS};
use common::{free_port, normalize, Cluster, DeadPort, Kind, Server};
use prost::Message;
use regex::Regex;

const FORMATS: [&str; 4] = ["simple", "json", "fields", "table"];

/// How long a cluster step may be refused for a passing reason (the strict reconfiguration
/// check wants every peer connection up for 5 s; a leader transfer needs a moment).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `tool` with a short command timeout of our own (for endpoints nobody answers).
fn run_short(tool: Tool, endpoints: &str, args: &[&str]) -> Output {
    let mut command = Command::new(tool.binary());
    for (key, _) in std::env::vars() {
        if key.starts_with("ETCDCTL_") {
            command.env_remove(key);
        }
    }
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--command-timeout=3s")
        .arg("--dial-timeout=2s")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the tool")
}

/// `seen` with `extra` (pattern, replacement) rules applied to stdout after normalization.
fn masked(mut seen: Seen, extra: &[(&str, &str)]) -> Seen {
    for (pattern, to) in extra {
        let re = Regex::new(pattern).expect("valid regex");
        seen.stdout = re.replace_all(&seen.stdout, *to).into_owned();
        seen.errors = re.replace_all(&seen.errors, *to).into_owned();
    }
    seen
}

/// Runs etcdctl, then keelctl, against the same endpoints and requires the same result;
/// returns etcdctl's.
fn both(endpoints: &str, args: &[&str], extra: &[(&str, &str)]) -> Seen {
    let etcdctl = run_tool(Tool::Etcdctl, endpoints, args, None);
    let keelctl = run_tool(Tool::Keelctl, endpoints, args, None);
    let (e, k) = (
        masked(Seen::of(&etcdctl), extra),
        masked(Seen::of(&keelctl), extra),
    );
    assert_eq!(
        e,
        k,
        "keelctl differs from etcdctl for {args:?}\netcdctl stderr: {}\nkeelctl stderr: {}",
        String::from_utf8_lossy(&etcdctl.stderr),
        String::from_utf8_lossy(&keelctl.stderr)
    );
    e
}

/// Durations (etcd's `took`) and the table widths they change, masked.
const DURATIONS: &[(&str, &str)] = &[
    (r"\b\d+(\.\d+)?(ns|µs|ms|s)\b", "DURATION"),
    (r"-+", "-"),
    (r" +", " "),
];

/// `http://` before the endpoints of `--cluster` (the member list's client URLs) dropped,
/// and the table widths it changes masked.
const NO_SCHEME: &[(&str, &str)] = &[("http://127", "127"), (r"-+", "-"), (r" +", " ")];

/// Runs the command in every combination of the quad and requires keelctl's result to equal
/// etcdctl's against the same server (for answers etcd 3.4 and Keel give differently).
fn check_pairs(quad: &Quad, args: &[&str]) {
    let outputs = quad.run(args, None);
    let protobuf = args.contains(&"protobuf");
    // The pairs run against two servers of a kind: their leader ids differ.
    // Their ids may differ in length too, and with them the table widths.
    let leader = &[
        (r#""Leader" : \d+"#, "\"Leader\" : N"),
        (r"-+", "-"),
        (r" +", " "),
    ];
    for (etcdctl, keelctl) in [(0, 1), (2, 3)] {
        assert_eq!(
            masked(Seen::with(&outputs[etcdctl], protobuf), leader),
            masked(Seen::with(&outputs[keelctl], protobuf), leader),
            "{args:?} against {:?}\n{:?}",
            COMBINATIONS[keelctl].1,
            outputs[keelctl]
        );
    }
}

/// `seen` without what depends on member IDs: `%16x` pads IDs shorter than 16 digits with
/// spaces, and etcd lists members in ID order (so in `ETCD_INITIAL_CLUSTER` and in JSON).
fn id_order_free(seen: Seen) -> Seen {
    let mut seen = masked(seen, &[(r" +", " ")]);
    let cluster = Regex::new(r#"ETCD_INITIAL_CLUSTER="([^"]*)""#).expect("regex");
    seen.stdout = cluster
        .replace_all(&seen.stdout, |caps: &regex::Captures| {
            let mut items: Vec<&str> = caps[1].split(',').collect();
            items.sort_unstable();
            format!("ETCD_INITIAL_CLUSTER=\"{}\"", items.join(","))
        })
        .into_owned();
    const MEMBERS: &str = "\"members\":[{";
    if let (Some(start), Some(end)) = (seen.stdout.find(MEMBERS), seen.stdout.rfind("}]}")) {
        let inner = &seen.stdout[start + MEMBERS.len()..end];
        let mut items: Vec<&str> = inner.split("},{").collect();
        items.sort_unstable();
        seen.stdout = format!(
            "{}{}{}",
            &seen.stdout[..start + MEMBERS.len()],
            items.join("},{"),
            &seen.stdout[end..]
        );
    }
    seen
}

/// The lines of `text`, sorted (for output whose order etcdctl leaves to chance).
fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .replace("},{", "},\n{")
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// Runs `tool` until its error is not one of `passing`, at most [`SETTLE_TIMEOUT`].
fn settled(tool: Tool, endpoints: &str, args: &[&str], passing: &[&str]) -> Output {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let output = run_tool(tool, endpoints, args, None);
        let seen = Seen::of(&output);
        if output.status.success() || !passing.iter().any(|p| seen.errors.contains(p)) {
            return output;
        }
        assert!(
            Instant::now() < deadline,
            "{tool:?} {args:?} still refused after {SETTLE_TIMEOUT:?}: {}",
            seen.errors
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The ResponseHeader that is the whole `-w protobuf` output of the lease commands.
fn header_revision(output: &Output) -> i64 {
    assert!(output.status.success(), "{output:?}");
    keel_proto::etcdserverpb::ResponseHeader::decode(output.stdout.as_slice())
        .expect("a ResponseHeader")
        .revision
}

/// Grants a lease with keelctl on `server`; its hex ID.
fn grant(server: &Server, ttl: &str) -> String {
    let out = run_tool(
        Tool::Keelctl,
        &server.endpoint,
        &["lease", "grant", ttl],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    text.split_whitespace()
        .nth(1)
        .expect("lease <id>")
        .to_string()
}

/// Runs the command built by `args_for(server)` in every combination of the quad and requires
/// keelctl's results to equal etcdctl's (after `extra` masking, lines in any order).
fn check_each(quad: &Quad, args_for: impl Fn(usize) -> Vec<String>, extra: &[(&str, &str)]) {
    let seen: Vec<(Seen, Output)> = COMBINATIONS
        .iter()
        .enumerate()
        .map(|(i, (tool, _))| {
            let args = args_for(i);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = run_tool(*tool, &quad.servers[i].endpoint, &args, None);
            let mut seen = masked(Seen::of(&out), extra);
            // etcd lists a lease's keys in Go map order: one `"Key"` line each in -w fields.
            seen.stdout = sorted_lines(&seen.stdout).join("\n");
            (seen, out)
        })
        .collect();
    for (etcdctl, keelctl) in [(0, 1), (2, 3), (0, 3)] {
        assert_eq!(
            seen[etcdctl].0,
            seen[keelctl].0,
            "{:?}\n{:?}\n{:?}",
            args_for(keelctl),
            seen[etcdctl].1,
            seen[keelctl].1
        );
    }
}

#[test]
fn lease_commands_in_every_format() {
    let quad = Quad::start(&[]);
    for format in ["simple", "json", "fields", "table"] {
        let seen = quad.check(&["-w", format, "lease", "grant", "100"], None);
        assert_eq!(seen.code == 0, format != "table", "{seen:?}");
    }
    // -w protobuf: the header alone (the client's struct embeds it).
    for (i, (tool, _)) in COMBINATIONS.iter().enumerate() {
        let out = run_tool(
            *tool,
            &quad.servers[i].endpoint,
            &["-w", "protobuf", "lease", "grant", "100"],
            None,
        );
        assert_eq!(header_revision(&out), 1, "{tool:?}");
    }
    // Keys attached to a lease of each server, the same revisions everywhere.
    let ids: Vec<String> = quad.servers.iter().map(|s| grant(s, "300")).collect();
    for (i, server) in quad.servers.iter().enumerate() {
        for key in ["k1", "k2"] {
            let lease = format!("--lease={}", ids[i]);
            let out = run_tool(
                Tool::Keelctl,
                &server.endpoint,
                &["put", key, "v", &lease],
                None,
            );
            assert!(out.status.success(), "{out:?}");
        }
    }
    // The remaining TTL counts down between runs: masked in every format.
    let remaining: &[(&str, &str)] = &[(r#""TTL" : \d+"#, "\"TTL\" : N")];
    for format in FORMATS {
        for keys in [false, true] {
            check_each(
                &quad,
                |i| {
                    let mut args = vec!["-w", format, "lease", "timetolive", &ids[i]];
                    if keys {
                        args.push("--keys");
                    }
                    args.into_iter().map(String::from).collect()
                },
                remaining,
            );
        }
        quad.check(&["-w", format, "lease", "list"], None);
        check_each(
            &quad,
            |i| {
                ["-w", format, "lease", "keep-alive", "--once", &ids[i]]
                    .map(String::from)
                    .to_vec()
            },
            &[],
        );
    }
    for (i, (tool, _)) in COMBINATIONS.iter().enumerate() {
        for args in [
            &["-w", "protobuf", "lease", "timetolive", &ids[i]][..],
            &["-w", "protobuf", "lease", "list"],
            &["-w", "protobuf", "lease", "keep-alive", "--once", &ids[i]],
        ] {
            let out = run_tool(*tool, &quad.servers[i].endpoint, args, None);
            assert_eq!(header_revision(&out), 3, "{tool:?} {args:?}");
        }
    }
    // Revoking: every format; protobuf fails as etcdctl's does (the response type has no
    // Marshal), after the lease is gone.
    for format in ["json", "fields", "simple", "table", "protobuf"] {
        let ids: Vec<String> = quad.servers.iter().map(|s| grant(s, "300")).collect();
        check_each(
            &quad,
            |i| {
                ["-w", format, "lease", "revoke", &ids[i]]
                    .map(String::from)
                    .to_vec()
            },
            &[(r"(cluster_id|member_id|raft_term):\d+", "$1:N")],
        );
    }
    // An expired (unknown) lease.
    for format in FORMATS {
        quad.check(&["-w", format, "lease", "timetolive", "1234"], None);
    }
    quad.check(&["lease", "list"], None);
}

/// The ids in Go's text form of a header are decimal; a cluster id of 16 digits or fewer once
/// looked like a hex lease id to the normalizer and made the two runs differ.
#[test]
fn decimal_ids_in_a_text_header_are_masked_whatever_their_length() {
    let short =
        "({cluster_id:8849698620464495 member_id:17736280554105908887 revision:3 raft_term:2 })";
    let long =
        "({cluster_id:9462713713982830416 member_id:12519198566245724965 revision:3 raft_term:7 })";
    assert_eq!(normalize(short), normalize(long));
    assert_eq!(
        normalize(short),
        "({cluster_id:N member_id:N revision:3 raft_term:N })"
    );
}

#[test]
fn lease_errors_as_etcdctl_reports_them() {
    let quad = Quad::start(&[]);
    for args in [
        &["lease", "grant"][..],
        &["lease", "grant", "x"],
        &["lease", "grant", "1", "2"],
        &["lease", "grant", "99999999999"],
        &["lease", "grant", "99999999999999999999"],
        &["lease", "revoke"],
        &["lease", "revoke", "zz"],
        &["lease", "revoke", "1234"],
        &["lease", "timetolive"],
        &["lease", "timetolive", "-"],
        &["lease", "keep-alive"],
        &["lease", "keep-alive", "--once", "1234"],
        &["lease", "keep-alive", "--once", "ffffffffffffffffff"],
    ] {
        let seen = quad.check(args, None);
        assert_ne!(seen.code, 0, "{args:?} should fail");
    }
    // A keep-alive of a lease the server does not have ends at once.
    quad.check(&["lease", "keep-alive", "1234"], None);
}

/// `lease keep-alive` runs until the lease is gone: the first renewal is printed, the lease
/// is revoked from elsewhere, and the command says so and ends with status 0.
#[test]
fn keep_alive_runs_until_the_lease_is_revoked() {
    let quad = Quad::start(&[]);
    let mut results = Vec::new();
    for (i, (tool, _)) in COMBINATIONS.iter().enumerate() {
        let server = &quad.servers[i];
        // A third of the TTL after the first renewal the next one learns the lease is gone.
        let id = grant(server, "9");
        let mut child = Command::new(tool.binary())
            .env("ETCDCTL_API", "3")
            .env_remove("ETCDCTL_ENDPOINTS")
            .arg(format!("--endpoints={}", server.endpoint))
            .args(["lease", "keep-alive", &id])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the keep-alive");
        let stdout = child.stdout.take().expect("stdout");
        let (lines_tx, lines_rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines_rx.recv_timeout(Duration::from_secs(20));
        let revoke = run_tool(
            Tool::Keelctl,
            &server.endpoint,
            &["lease", "revoke", &id],
            None,
        );
        assert!(revoke.status.success(), "{revoke:?}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let _ = reader.join();
        let mut lines = vec![first.unwrap_or_else(|e| panic!("{tool:?}: no renewal: {e}"))];
        lines.extend(lines_rx.try_iter());
        let status = status.unwrap_or_else(|| panic!("{tool:?} did not end: {lines:?}"));
        results.push((status.code(), normalize(&lines.join("\n"))));
    }
    assert_eq!(results[0].0, Some(0));
    assert!(
        results[0].1.ends_with("lease HEXID expired or revoked."),
        "{results:?}"
    );
    for i in 1..4 {
        assert_eq!(results[i], results[0], "{:?}", COMBINATIONS[i]);
    }
}

#[test]
fn single_member_maintenance_commands() {
    let quad = Quad::start(&[]);
    // No alarms: every format (disarm's answer has no header: the client builds it).
    // etcd 3.4 answers an alarm request without a header, Keel with one (as etcd 3.5).
    // With no header etcdctl's fields printer dereferences nil and panics (exit 2); keelctl
    // prints zeros, so fields is compared against Keel only.
    for format in ["simple", "json", "table", "protobuf"] {
        check_pairs(&quad, &["-w", format, "alarm", "list"]);
    }
    let outputs = quad.run(&["-w", "fields", "alarm", "list"], None);
    assert_eq!(Seen::of(&outputs[2]), Seen::of(&outputs[3]), "{outputs:?}");
    for format in ["simple", "json", "table", "protobuf"] {
        quad.check(&["-w", format, "alarm", "disarm"], None);
    }
    quad.check(&["alarm", "list", "extra"], None);
    quad.check(&["alarm", "disarm", "extra"], None);
    quad.check(&["defrag"], None);
    quad.check(&["member", "list"], None);
    // Raft indexes, database sizes and hashes are the servers' own: each tool is compared
    // against the same server.
    for format in FORMATS {
        check_pairs(&quad, &["-w", format, "endpoint", "status"]);
        check_pairs(&quad, &["-w", format, "endpoint", "hashkv"]);
        check_pairs(&quad, &["-w", format, "endpoint", "hashkv", "--rev=1"]);
    }
    quad.check(&["-w", "protobuf", "endpoint", "status"], None);
    quad.check(&["-w", "protobuf", "endpoint", "hashkv"], None);
    // etcdctl 3.5 prints the healthy line on stdout (3.4.23 on stderr).
    quad.check_35(&["endpoint", "health"], None, |mut seen| {
        seen.stdout =
            "127.0.0.1:PORT is healthy: successfully committed proposal: took = DURATION\n"
                .to_string();
        seen
    });
    for format in ["json", "fields", "table"] {
        let outputs = quad.run(&["-w", format, "endpoint", "health"], None);
        let seen: Vec<Seen> = outputs
            .iter()
            .map(|o| masked(Seen::of(o), DURATIONS))
            .collect();
        for i in 1..4 {
            assert_eq!(seen[i], seen[0], "{format} {:?}", outputs[i]);
        }
    }
    // etcdctl 3.5 reports its own release; keelctl the one it follows (3.5.0).
    let seen = quad.check(&["version"], None);
    assert_eq!(
        seen.stdout,
        "etcdctl version: VERSION\nAPI version: VERSION\n"
    );
    let out = run_tool(Tool::Keelctl, "", &["version"], None);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "etcdctl version: 3.5.0\nAPI version: 3.5\n"
    );
}

/// Endpoints that do not answer: per-endpoint failures on stderr, the others printed, exit 1.
#[test]
fn endpoints_that_do_not_answer() {
    let server = Server::start(Kind::Keel, &[]);
    let held = DeadPort::new();
    let dead = format!("127.0.0.1:{}", held.port);
    let endpoints = format!("{},{dead}", server.endpoint);
    for args in [
        &["endpoint", "status"][..],
        &["-w", "json", "endpoint", "status"],
        &["endpoint", "hashkv"],
        &["defrag"],
    ] {
        let etcdctl = run_short(Tool::Etcdctl, &endpoints, args);
        let keelctl = run_short(Tool::Keelctl, &endpoints, args);
        assert_eq!(
            Seen::of(&etcdctl),
            Seen::of(&keelctl),
            "{args:?}\n{keelctl:?}"
        );
        assert_eq!(Seen::of(&keelctl).code, 1);
        let stderr = String::from_utf8_lossy(&keelctl.stderr);
        assert!(stderr.contains(&dead), "{stderr}");
    }
    // Health: the dead endpoint is unhealthy on stderr, and the cluster with it.
    let keelctl = run_short(Tool::Keelctl, &endpoints, &["endpoint", "health"]);
    let etcdctl = run_short(Tool::Etcdctl, &endpoints, &["endpoint", "health"]);
    let seen = Seen::of(&keelctl);
    assert_eq!(
        (seen.code, seen.errors.as_str()),
        (1, "Error: unhealthy cluster")
    );
    assert_eq!(Seen::of(&etcdctl).errors, seen.errors);
    let stderr = String::from_utf8_lossy(&keelctl.stderr);
    assert!(
        stderr.contains(&format!("{dead} is unhealthy: failed to commit proposal: ")),
        "{stderr}"
    );
    assert!(seen.stdout.contains("is healthy"), "{seen:?}");
}

#[test]
fn snapshot_save_and_status_formats() {
    let quad = Quad::start(&[]);
    quad.check(&["put", "a", "1"], None);
    quad.check(&["put", "b", "2"], None);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("snap-{endpoint}.db");
    let file = file.to_str().expect("utf-8 path");
    let seen = quad.check(&["snapshot", "save", file], None);
    assert_eq!(seen.code, 0, "{seen:?}");
    for (i, server) in quad.servers.iter().enumerate() {
        let path = file.replace("{endpoint}", &server.endpoint);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(bytes.len() % 512, 32, "{:?}", COMBINATIONS[i]);
        assert!(!std::path::Path::new(&format!("{path}.part")).exists());
        // etcdutl 3.5 (and etcdctl 3.4.23) status formats of the saved file.
        for format in FORMATS {
            let args = ["-w", format, "snapshot", "status", &path];
            let etcdctl = run_tool(Tool::Etcdctl, "", &args, None);
            let keelctl = run_tool(Tool::Keelctl, "", &args, None);
            assert_eq!(
                Seen::of(&etcdctl),
                Seen::of(&keelctl),
                "{args:?}\n{keelctl:?}"
            );
        }
    }
    quad.check(&["snapshot", "save"], None);
    // Two endpoints: refused before anything is written.
    let two = format!("{},{}", quad.servers[0].endpoint, quad.servers[2].endpoint);
    let target = dir.path().join("two.db");
    let target = target.to_str().expect("utf-8 path");
    let etcdctl = run_tool(Tool::Etcdctl, &two, &["snapshot", "save", target], None);
    let keelctl = run_tool(Tool::Keelctl, &two, &["snapshot", "save", target], None);
    assert_eq!(Seen::of(&etcdctl), Seen::of(&keelctl));
    assert_eq!(Seen::of(&keelctl).code, 5);
    assert!(!std::path::Path::new(target).exists());
}

/// The member id and leader id each endpoint reports (from etcdctl's JSON status).
fn statuses(endpoints: &str) -> Vec<(String, u64, u64)> {
    let out = run_tool(
        Tool::Etcdctl,
        endpoints,
        &["-w", "json", "endpoint", "status"],
        None,
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    list.as_array()
        .expect("a list")
        .iter()
        .map(|s| {
            (
                s["Endpoint"].as_str().unwrap_or_default().to_string(),
                s["Status"]["header"]["member_id"].as_u64().unwrap_or(0),
                s["Status"]["leader"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// A leader every member agrees on, with the endpoints of the followers.
fn leader(endpoints: &str) -> (u64, Vec<(String, u64)>) {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let all = statuses(endpoints);
        let leaders: BTreeSet<u64> = all.iter().map(|s| s.2).collect();
        if all.len() == 3 && leaders.len() == 1 && !leaders.contains(&0) {
            let leader = all[0].2;
            let followers = all
                .iter()
                .filter(|s| s.1 != leader)
                .map(|s| (s.0.clone(), s.1))
                .collect();
            return (leader, followers);
        }
        assert!(Instant::now() < deadline, "no agreed leader: {all:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn cluster_commands(kind: Kind) {
    let cluster = Cluster::start(kind, 3, &[]);
    let endpoints = cluster.endpoints();
    let first = cluster.members[0].endpoint.clone();

    for format in ["simple", "json", "fields", "table", "protobuf"] {
        both(&first, &["-w", format, "member", "list"], &[]);
    }
    // etcdctl 3.5's `--hex` JSON: ids as hex strings (3.4.23 ignores --hex here).
    let plain = run_tool(
        Tool::Etcdctl,
        &first,
        &["-w", "json", "member", "list"],
        None,
    );
    let hex = run_tool(
        Tool::Keelctl,
        &first,
        &["-w", "json", "--hex", "member", "list"],
        None,
    );
    let ids = |text: &str, re: &str, radix: u32| -> BTreeSet<u64> {
        Regex::new(re)
            .expect("regex")
            .captures_iter(text)
            .map(|c| u64::from_str_radix(&c[1], radix).expect("id"))
            .collect()
    };
    let hex_text = String::from_utf8_lossy(&hex.stdout);
    assert_eq!(
        ids(&String::from_utf8_lossy(&plain.stdout), r#""ID":(\d+)"#, 10),
        ids(&hex_text, r#""ID":"([0-9a-f]+)""#, 16),
        "{hex_text}"
    );
    assert!(
        hex_text.contains("\"clientURLS\":[\"http://127.0.0.1:"),
        "{hex_text}"
    );

    // Endpoint commands over --endpoints, then over the member list (--cluster). Status
    // before health: nothing moves the raft index between the two tools' runs. etcdctl 3.4
    // dials a member-list URL in a way Keel's server refuses, so keelctl's --cluster output
    // is compared with etcdctl's for the same endpoints given by address, in any order.
    for format in ["simple", "json", "fields", "table"] {
        both(&endpoints, &["-w", format, "endpoint", "status"], &[]);
        both(&endpoints, &["-w", format, "endpoint", "hashkv"], &[]);
        for command in ["status", "hashkv"] {
            let etcdctl = run_tool(
                Tool::Etcdctl,
                &endpoints,
                &["-w", format, "endpoint", command],
                None,
            );
            let keelctl = run_tool(
                Tool::Keelctl,
                &first,
                &["-w", format, "endpoint", command, "--cluster"],
                None,
            );
            let (e, k) = (
                masked(Seen::of(&etcdctl), NO_SCHEME),
                masked(Seen::of(&keelctl), NO_SCHEME),
            );
            assert_eq!(
                sorted_lines(&e.stdout),
                sorted_lines(&k.stdout),
                "{format} {command}"
            );
            assert_eq!((e.code, e.errors), (k.code, k.errors));
        }
    }
    if kind == Kind::Etcd {
        for format in ["simple", "json", "fields", "table"] {
            both(
                &first,
                &["-w", format, "endpoint", "status", "--cluster"],
                &[],
            );
            both(
                &first,
                &["-w", format, "endpoint", "hashkv", "--cluster"],
                &[],
            );
        }
        both(&first, &["defrag", "--cluster"], &[]);
    }
    // Health runs concurrently; etcdctl prints the endpoints as they finish.
    for format in ["json", "fields", "table"] {
        let args = ["-w", format, "endpoint", "health"];
        let etcdctl = masked(
            Seen::of(&run_tool(Tool::Etcdctl, &endpoints, &args, None)),
            DURATIONS,
        );
        let keelctl = masked(
            Seen::of(&run_tool(Tool::Keelctl, &endpoints, &args, None)),
            DURATIONS,
        );
        assert_eq!(
            sorted_lines(&etcdctl.stdout),
            sorted_lines(&keelctl.stdout),
            "{format}"
        );
        assert_eq!((keelctl.code, keelctl.errors), (0, String::new()));
        let keelctl = run_tool(
            Tool::Keelctl,
            &first,
            &["-w", format, "endpoint", "health", "--cluster"],
            None,
        );
        let keelctl = masked(masked(Seen::of(&keelctl), DURATIONS), NO_SCHEME);
        assert_eq!(sorted_lines(&etcdctl.stdout), sorted_lines(&keelctl.stdout));
    }
    // Simple: etcdctl 3.5 prints the healthy lines on stdout, 3.4.23 on stderr.
    let etcdctl = run_tool(Tool::Etcdctl, &endpoints, &["endpoint", "health"], None);
    let keelctl = run_tool(
        Tool::Keelctl,
        &first,
        &["endpoint", "health", "--cluster"],
        None,
    );
    assert_eq!(
        sorted_lines(&normalize(&String::from_utf8_lossy(&etcdctl.stderr)))
            .into_iter()
            .filter(|l| l.contains("is healthy"))
            .collect::<Vec<_>>(),
        sorted_lines(&masked(Seen::of(&keelctl), NO_SCHEME).stdout)
    );
    let defragged = run_tool(Tool::Keelctl, &first, &["defrag", "--cluster"], None);
    let defragged = masked(Seen::of(&defragged), NO_SCHEME);
    assert_eq!(
        defragged.stdout,
        "Finished defragmenting etcd member[127.0.0.1:PORT]\n".repeat(3)
    );
    both(&endpoints, &["defrag"], &[]);

    // Leadership moves twice (once by each tool) to a follower; then from a follower alone.
    let (_, followers) = leader(&endpoints);
    let by_etcdctl = settled(
        Tool::Etcdctl,
        &endpoints,
        &["move-leader", &format!("{:x}", followers[0].1)],
        &[],
    );
    let (_, followers) = leader(&endpoints);
    let by_keelctl = settled(
        Tool::Keelctl,
        &endpoints,
        &["move-leader", &format!("{:x}", followers[0].1)],
        &[],
    );
    assert_eq!(
        Seen::of(&by_etcdctl),
        Seen::of(&by_keelctl),
        "{by_keelctl:?}"
    );
    assert_eq!(Seen::of(&by_keelctl).code, 0);
    let (leader_id, followers) = leader(&endpoints);
    let seen = both(
        &followers[0].0,
        &["move-leader", &format!("{leader_id:x}")],
        &[],
    );
    assert_eq!(seen.code, 128, "{seen:?}");
    for args in [
        &["move-leader"][..],
        &["move-leader", "zz"],
        &["move-leader", "1", "2"],
    ] {
        both(&first, args, &[]);
    }
    // A member's id that is not in the cluster.
    let (_, followers) = leader(&endpoints);
    let _ = followers;
    both(&endpoints, &["-w", "json", "move-leader", "1234"], &[]);

    // Membership: a learner that is never started, added by each tool in turn.
    let unhealthy = ["etcdserver: unhealthy cluster"];
    let peer = format!("--peer-urls=http://127.0.0.1:{}", free_port());
    let add = ["member", "add", "extra", &peer, "--learner"];
    let added_by_etcdctl = settled(Tool::Etcdctl, &first, &add, &unhealthy);
    assert!(added_by_etcdctl.status.success(), "{added_by_etcdctl:?}");
    for format in ["simple", "json", "fields", "table", "protobuf"] {
        both(&first, &["-w", format, "member", "list"], &[]);
    }
    let learner_id = |output: &Output| -> String {
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.split_whitespace()
            .nth(1)
            .expect("Member <id>")
            .to_string()
    };
    let id = learner_id(&added_by_etcdctl);
    both(&first, &["member", "promote", &id], &[]);
    let other_peer = format!("--peer-urls=http://127.0.0.1:{}", free_port());
    let updated_by_etcdctl = settled(
        Tool::Etcdctl,
        &first,
        &["member", "update", &id, &other_peer],
        &unhealthy,
    );
    let updated_by_keelctl = settled(
        Tool::Keelctl,
        &first,
        &["member", "update", &id, &peer],
        &unhealthy,
    );
    assert_eq!(
        id_order_free(Seen::of(&updated_by_etcdctl)),
        id_order_free(Seen::of(&updated_by_keelctl))
    );
    let removed_by_keelctl = settled(
        Tool::Keelctl,
        &first,
        &["member", "remove", &id],
        &unhealthy,
    );
    // etcd derives a new member's ID from its peer URLs and the time in seconds: re-adding
    // the URL just removed could make the removed member's ID ("member not found"), so each
    // add has a peer URL of its own.
    let peer_again = format!("--peer-urls=http://127.0.0.1:{}", free_port());
    let add_again = ["member", "add", "extra", &peer_again, "--learner"];
    let added_by_keelctl = settled(Tool::Keelctl, &first, &add_again, &unhealthy);
    assert_eq!(
        id_order_free(Seen::of(&added_by_etcdctl)),
        id_order_free(Seen::of(&added_by_keelctl)),
        "{added_by_keelctl:?}"
    );
    let id = learner_id(&added_by_keelctl);
    let removed_by_etcdctl = settled(
        Tool::Etcdctl,
        &first,
        &["member", "remove", &id],
        &unhealthy,
    );
    assert_eq!(
        id_order_free(Seen::of(&removed_by_etcdctl)),
        id_order_free(Seen::of(&removed_by_keelctl))
    );
    assert_eq!(Seen::of(&removed_by_keelctl).code, 0);
    // The JSON answers of add and remove (each tool adds and removes a learner).
    let mut answers = Vec::new();
    for tool in [Tool::Etcdctl, Tool::Keelctl] {
        let peer = format!("--peer-urls=http://127.0.0.1:{}", free_port());
        let json_add = ["-w", "json", "member", "add", "extra", &peer, "--learner"];
        let added = settled(tool, &first, &json_add, &unhealthy);
        let value: serde_json::Value = serde_json::from_slice(&added.stdout).expect("JSON");
        let id = format!("{:x}", value["member"]["ID"].as_u64().expect("an id"));
        let removed = settled(
            tool,
            &first,
            &["-w", "json", "member", "remove", &id],
            &unhealthy,
        );
        answers.push((
            id_order_free(Seen::of(&added)),
            id_order_free(Seen::of(&removed)),
        ));
    }
    assert_eq!(answers[0], answers[1]);
    // Refusals.
    for args in [
        &["member", "add"][..],
        &["member", "add", "x"],
        &["member", "add", "x", "http://127.0.0.1:1", "y"],
        &["-w", "fields", "member", "remove", "zz"],
        &["member", "remove"],
        &["member", "remove", "1234"],
        &["member", "update", "1234"],
        &["member", "update", "1234", "--peer-urls=http://127.0.0.1:9"],
        &["member", "promote", "1234"],
    ] {
        let seen = both(&first, args, &[]);
        assert_ne!(seen.code, 0, "{args:?}");
    }
}

#[test]
fn cluster_commands_against_etcd() {
    cluster_commands(Kind::Etcd);
}

#[test]
fn cluster_commands_against_keel() {
    cluster_commands(Kind::Keel);
}
