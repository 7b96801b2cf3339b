//! Keel's member and cluster ids against upstream etcd 3.4's: the same `--initial-cluster` and
//! `--initial-cluster-token` must give the same ids (`keel::cluster`).
//!
//! One etcd process starts as member `m0` of a three-member cluster whose other members never
//! start. Without a quorum etcd 3.4 never serves its client port (it waits until it has
//! published itself through raft), so `etcdctl member list` cannot answer; its peer port
//! serves the bootstrap member list at `/members` (with the cluster id in the
//! `X-Etcd-Cluster-ID` header) right away, and its log names every member it added. Both are
//! compared with what `keel::cluster` derives from the same flags.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, ETCD_BIN, READY_TIMEOUT};
use keel::cluster::{
    bootstrap_members, cluster_id, member_id, parse_initial_cluster, validate_bootstrap,
};
use tempfile::TempDir;

/// The custom token; etcd's default is `etcd-cluster`.
const TOKEN: &str = "keel-cluster-ids-test";

/// An etcd process killed (SIGKILL) and reaped on drop, even when the test panics.
struct Etcd {
    child: Child,
    /// Holds the data dir and the log; removed on drop, after the process is gone.
    _dir: TempDir,
    log_path: PathBuf,
}

impl Etcd {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `count` distinct ports that were free a moment ago.
fn distinct_free_ports(count: usize) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::with_capacity(count);
    while ports.len() < count {
        let port = free_port();
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

/// An HTTP response: the status, the headers (names lower-cased) and the body.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

/// A GET over plain HTTP/1.1. The body is read up to its `Content-Length`: etcd's peer
/// listener closes a finished connection only after its read timeout (5 s), so reading to the
/// end of the stream would wait for that.
fn http_get(address: &str, path: &str) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP status in {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other(
                "connection closed within the headers",
            ));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let content_length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse::<usize>().ok());
    let mut body = Vec::new();
    match content_length {
        Some(length) => {
            body.resize(length, 0);
            reader.read_exact(&mut body)?;
        }
        None => {
            reader.read_to_end(&mut body)?;
        }
    }
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A member as etcd's peer `/members` endpoint lists it.
#[derive(Debug, PartialEq, Eq)]
struct EtcdMember {
    id: u64,
    name: String,
    peer_urls: Vec<String>,
}

/// Polls etcd's peer `/members` until it answers 200; returns the cluster id and the members.
fn wait_for_members(etcd: &mut Etcd, peer_address: &str) -> (u64, Vec<EtcdMember>) {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last;
    loop {
        if let Some(status) = etcd.exited() {
            panic!(
                "etcd exited with {status} before serving /members; log:\n{}",
                etcd.log()
            );
        }
        match http_get(peer_address, "/members") {
            Ok(Response {
                status: 200,
                headers,
                body,
            }) => {
                let cluster_header = headers
                    .iter()
                    .find(|(name, _)| name == "x-etcd-cluster-id")
                    .map(|(_, value)| value.clone())
                    .unwrap_or_else(|| panic!("no X-Etcd-Cluster-ID header in {headers:?}"));
                let cluster = u64::from_str_radix(&cluster_header, 16)
                    .unwrap_or_else(|e| panic!("cluster id {cluster_header:?}: {e}"));
                let json: serde_json::Value = serde_json::from_str(&body)
                    .unwrap_or_else(|e| panic!("/members body {body:?}: {e}"));
                let members = json
                    .as_array()
                    .unwrap_or_else(|| panic!("/members is not a list: {body}"))
                    .iter()
                    .map(|m| EtcdMember {
                        id: m["id"]
                            .as_u64()
                            .unwrap_or_else(|| panic!("no numeric id in {m}")),
                        name: m["name"].as_str().unwrap_or_default().to_string(),
                        peer_urls: m["peerURLs"]
                            .as_array()
                            .unwrap_or_else(|| panic!("no peerURLs in {m}"))
                            .iter()
                            .map(|u| u.as_str().expect("peer URL string").to_string())
                            .collect(),
                    })
                    .collect();
                return (cluster, members);
            }
            Ok(Response { status, body, .. }) => last = format!("status {status}: {body}"),
            Err(e) => last = e.to_string(),
        }
        if Instant::now() > deadline {
            panic!(
                "etcd did not serve /members within {READY_TIMEOUT:?} (last: {last}); log:\n{}",
                etcd.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `(cluster-id, local-member-id, added-peer-id)` of each "added member" line of etcd's
/// zap log, in hex as etcd prints them.
fn added_member_lines(log: &str) -> Vec<(String, String, String)> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| entry["msg"] == "added member")
        .map(|entry| {
            let field = |name: &str| entry[name].as_str().unwrap_or_default().to_string();
            (
                field("cluster-id"),
                field("local-member-id"),
                field("added-peer-id"),
            )
        })
        .collect()
}

#[test]
fn ids_match_upstream_etcd() {
    assert!(
        PathBuf::from(ETCD_BIN).exists(),
        "{ETCD_BIN} is missing: run scripts/install-test-deps.sh to install upstream etcd"
    );
    let ports = distinct_free_ports(6);
    let (client_port, peer_port) = (ports[0], ports[1]);
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    // Members m1 and m2 never start. m1 has two URLs, given unsorted, one with an upper-case
    // scheme and a leading space; m2 uses a host name: the ids depend on etcd's normalization
    // and sorting of these strings.
    let initial_cluster = format!(
        "m0={peer_url},m1=http://127.0.0.1:{},m2=http://localhost:{},m1= HTTP://127.0.0.1:{}",
        ports[2], ports[3], ports[4]
    );

    let dir = tempfile::Builder::new()
        .prefix("etcd-cluster-ids-")
        .tempdir()
        .expect("create a temp dir");
    let log_path = dir.path().join("etcd.log");
    let log = File::create(&log_path).expect("create the etcd log");
    let log_err = log.try_clone().expect("clone the log handle");
    let client_url = format!("http://127.0.0.1:{client_port}");
    let mut command = Command::new(ETCD_BIN);
    command
        .arg("--name=m0")
        .arg(format!("--data-dir={}", dir.path().join("data").display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster={initial_cluster}"))
        .arg(format!("--initial-cluster-token={TOKEN}"))
        .arg("--initial-cluster-state=new")
        .arg("--logger=zap")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    for (key, _) in std::env::vars() {
        if key.starts_with("ETCD_") {
            command.env_remove(key);
        }
    }
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {ETCD_BIN}: {e}"));
    let mut etcd = Etcd {
        child,
        _dir: dir,
        log_path,
    };

    let (etcd_cluster_id, mut etcd_members) =
        wait_for_members(&mut etcd, &format!("127.0.0.1:{peer_port}"));
    etcd_members.sort_by_key(|m| m.id);

    // What Keel derives from the same flags.
    let parsed = parse_initial_cluster(&initial_cluster).expect("parse --initial-cluster");
    validate_bootstrap("m0", std::slice::from_ref(&peer_url), &parsed)
        .expect("etcd accepted these flags, so must Keel");
    let (keel_cluster_id, keel_members) = bootstrap_members(&parsed, TOKEN).expect("bootstrap");
    let keel_view: Vec<EtcdMember> = keel_members
        .iter()
        .map(|m| EtcdMember {
            id: m.id,
            name: m.name.clone(),
            peer_urls: m.peer_urls.clone(),
        })
        .collect();
    assert_eq!(
        keel_view, etcd_members,
        "members (sorted by id) differ from etcd's"
    );
    assert_eq!(
        format!("{keel_cluster_id:x}"),
        format!("{etcd_cluster_id:x}"),
        "cluster id differs from etcd's"
    );
    for member in &etcd_members {
        assert_eq!(
            member_id(&member.peer_urls, TOKEN, None),
            member.id,
            "member_id of etcd's member {member:?}"
        );
    }
    let etcd_ids: Vec<u64> = etcd_members.iter().map(|m| m.id).collect();
    assert_eq!(cluster_id(&etcd_ids), etcd_cluster_id);
    assert_eq!(etcd_members.len(), 3);
    assert_eq!(
        etcd_members
            .iter()
            .find(|m| m.name == "m1")
            .map(|m| m.peer_urls.len()),
        Some(2)
    );

    // etcd's log names the same ids: "added member" once per member, with the cluster id and
    // the local member id. etcd logs them as it applies the bootstrap configuration, which may
    // be just after the peer port serves: poll for them.
    let local_id = keel_members
        .iter()
        .find(|m| m.name == "m0")
        .expect("m0 is a member")
        .id;
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut logged = loop {
        let logged = added_member_lines(&etcd.log());
        if logged.len() >= keel_members.len() {
            break logged;
        }
        if let Some(status) = etcd.exited() {
            panic!("etcd exited with {status}; log:\n{}", etcd.log());
        }
        assert!(
            Instant::now() < deadline,
            "etcd logged {} of {} \"added member\" lines within {READY_TIMEOUT:?}; log:\n{}",
            logged.len(),
            keel_members.len(),
            etcd.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    logged.sort();
    let mut expected: Vec<(String, String, String)> = keel_members
        .iter()
        .map(|m| {
            (
                format!("{keel_cluster_id:x}"),
                format!("{local_id:x}"),
                format!("{:x}", m.id),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(logged, expected, "etcd log:\n{}", etcd.log());

    assert!(etcd.exited().is_none(), "etcd exited; log:\n{}", etcd.log());
}
