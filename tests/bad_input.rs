//! Requests a server must refuse, or survive, in etcd's way: oversize requests, transactions
//! with too many operations, inverted ranges, empty keys, unknown leases, garbage on the
//! client socket, and running out of backend quota (NOSPACE alarm and recovery). Where the
//! answer is etcd's behaviour, keel and upstream etcd get the same request and must give the
//! same gRPC code and message (or the same etcdctl output).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::ops::block_on;
use common::{error_lines, normalize, Kind, Server};
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::request_op::Request as Op;
use keel_proto::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use tonic::transport::Channel;

/// Every network step gives up after this long instead of hanging.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

async fn kv_client(server: &Server) -> KvClient<Channel> {
    let endpoint = Channel::from_shared(server.url()).expect("valid url");
    let connect = endpoint.connect();
    let channel = tokio::time::timeout(STEP_TIMEOUT, connect)
        .await
        .expect("connect timed out")
        .expect("connect");
    // The client must not refuse large requests itself: the server's limit is under test.
    KvClient::new(channel)
        .max_encoding_message_size(64 << 20)
        .max_decoding_message_size(64 << 20)
}

/// The gRPC code and message of a failed call, or "ok".
fn outcome<T>(result: Result<tonic::Response<T>, tonic::Status>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(status) => format!("{:?}: {}", status.code(), status.message()),
    }
}

fn put(key: &[u8], value: &[u8], lease: i64) -> PutRequest {
    PutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        lease,
        ..Default::default()
    }
}

/// Runs `calls` against etcd and keel started with `flags` and asserts the same outcomes.
fn same_on_both<F, Fut>(flags: &[&str], calls: F) -> Vec<String>
where
    F: Fn(KvClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let mut results = Vec::new();
    for kind in [Kind::Etcd, Kind::Keel] {
        let server = Server::start(kind, flags);
        results.push(block_on(async {
            let kv = kv_client(&server).await;
            tokio::time::timeout(STEP_TIMEOUT * 4, calls(kv))
                .await
                .expect("calls timed out")
        }));
    }
    eprintln!("{:#?}", results[1]);
    assert_eq!(results[0], results[1], "etcd (left), keel (right)");
    results.pop().unwrap()
}

#[test]
fn oversize_requests() {
    let outcomes = same_on_both(&["--max-request-bytes=1024"], |mut kv| async move {
        vec![
            outcome(kv.put(put(b"small", &[b'v'; 900], 0)).await),
            outcome(kv.put(put(b"big", &[b'v'; 2000], 0)).await),
            outcome(kv.put(put(b"big", &[b'v'; 100_000], 0)).await),
            outcome(
                kv.txn(TxnRequest {
                    success: (0..3)
                        .map(|i| RequestOp {
                            request: Some(Op::RequestPut(put(&[b'k', i], &[b'v'; 400], 0))),
                        })
                        .collect(),
                    ..Default::default()
                })
                .await,
            ),
            // The server keeps serving after refusing.
            outcome(
                kv.range(RangeRequest {
                    key: b"small".to_vec(),
                    ..Default::default()
                })
                .await,
            ),
        ]
    });
    assert_eq!(outcomes[0], "ok");
    assert_eq!(
        outcomes[1],
        "InvalidArgument: etcdserver: request is too large"
    );
}

/// Beyond gRPC's own limit (max-request-bytes plus 512 KiB of overhead) a request is refused
/// before the server decodes it, with grpc-go's code and text.
#[test]
fn oversize_beyond_grpc_limit() {
    let huge = same_on_both(&["--max-request-bytes=1024"], |mut kv| async move {
        let status = kv
            .put(put(b"huge", &vec![b'v'; 600 * 1024], 0))
            .await
            .unwrap_err();
        vec![format!("{:?}", status.code()), status.message().to_string()]
    });
    assert_eq!(huge[0], "ResourceExhausted");
}

#[test]
fn oversize_put_with_etcdctl() {
    let mut results = Vec::new();
    for kind in [Kind::Etcd, Kind::Keel] {
        let server = Server::start(kind, &["--max-request-bytes=1024"]);
        let value = "x".repeat(2000);
        let output = server.etcdctl(&["put", "k"], Some(&value));
        results.push((normalize(&error_lines(&output)), output.status.code()));
    }
    assert_eq!(results[0], results[1], "etcd (left), keel (right)");
    assert_eq!(results[1].0, "Error: etcdserver: request is too large");
}

#[test]
fn too_many_operations_in_txn() {
    let outcomes = same_on_both(&["--max-txn-ops=4"], |mut kv| async move {
        let ops = |n: u8| -> Vec<RequestOp> {
            (0..n)
                .map(|i| RequestOp {
                    request: Some(Op::RequestPut(put(&[b'k', b'0' + i], b"v", 0))),
                })
                .collect()
        };
        vec![
            outcome(
                kv.txn(TxnRequest {
                    success: ops(4),
                    ..Default::default()
                })
                .await,
            ),
            outcome(
                kv.txn(TxnRequest {
                    success: ops(5),
                    ..Default::default()
                })
                .await,
            ),
            outcome(
                kv.txn(TxnRequest {
                    failure: ops(5),
                    ..Default::default()
                })
                .await,
            ),
            outcome(
                kv.txn(TxnRequest {
                    success: ops(3),
                    failure: ops(4),
                    ..Default::default()
                })
                .await,
            ),
        ]
    });
    assert_eq!(outcomes[0], "ok");
    assert_eq!(
        outcomes[1],
        "InvalidArgument: etcdserver: too many operations in txn request"
    );
}

#[test]
fn inverted_ranges_empty_keys_and_unknown_leases() {
    let outcomes = same_on_both(&[], |mut kv| async move {
        let mut out = Vec::new();
        for key in [b"a", b"b", b"c"] {
            out.push(outcome(kv.put(put(key, b"v", 0)).await));
        }
        let range = kv
            .range(RangeRequest {
                key: b"c".to_vec(),
                range_end: b"a".to_vec(),
                ..Default::default()
            })
            .await
            .map(|r| {
                let r = r.into_inner();
                format!("kvs {} count {}", r.kvs.len(), r.count)
            });
        out.push(format!("{range:?}"));
        let deleted = kv
            .delete_range(DeleteRangeRequest {
                key: b"c".to_vec(),
                range_end: b"a".to_vec(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().deleted);
        out.push(format!("{deleted:?}"));
        out.push(outcome(kv.put(put(b"", b"v", 0)).await));
        out.push(outcome(kv.range(RangeRequest::default()).await));
        out.push(outcome(
            kv.delete_range(DeleteRangeRequest::default()).await,
        ));
        out.push(outcome(kv.put(put(b"k", b"v", 0x1234)).await));
        out.push(outcome(
            kv.txn(TxnRequest {
                success: vec![RequestOp {
                    request: Some(Op::RequestPut(put(b"k", b"v", 0x1234))),
                }],
                ..Default::default()
            })
            .await,
        ));
        out.push(outcome(
            kv.txn(TxnRequest {
                success: vec![RequestOp {
                    request: Some(Op::RequestPut(put(b"", b"v", 0))),
                }],
                ..Default::default()
            })
            .await,
        ));
        // Two writes to one key in one txn are refused.
        out.push(outcome(
            kv.txn(TxnRequest {
                success: vec![
                    RequestOp {
                        request: Some(Op::RequestPut(put(b"d", b"1", 0))),
                    },
                    RequestOp {
                        request: Some(Op::RequestPut(put(b"d", b"2", 0))),
                    },
                ],
                ..Default::default()
            })
            .await,
        ));
        out.push(outcome(
            kv.range(RangeRequest {
                key: b"a".to_vec(),
                revision: 100,
                ..Default::default()
            })
            .await,
        ));
        out.push(outcome(
            kv.range(RangeRequest {
                key: b"a".to_vec(),
                revision: -1,
                ..Default::default()
            })
            .await,
        ));
        let header = kv
            .range(RangeRequest {
                key: b"a".to_vec(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().header.map(|h| h.revision));
        out.push(format!("{header:?}"));
        out
    });
    assert_eq!(outcomes[3], "Ok(\"kvs 0 count 0\")");
    assert_eq!(
        outcomes[5],
        "InvalidArgument: etcdserver: key is not provided"
    );
    assert_eq!(
        outcomes[8],
        "NotFound: etcdserver: requested lease not found"
    );
    // Nothing that failed wrote anything: still at the revision of the three puts.
    assert_eq!(outcomes.last().unwrap(), "Ok(Some(4))");
}

/// Bytes that are not HTTP/2 (or are broken HTTP/2) on the client port cost the server that
/// connection only.
#[test]
fn garbage_on_the_client_socket() {
    let mut server = Server::start(Kind::Keel, &[]);
    let junk: Vec<Vec<u8>> = vec![
        (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect(),
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: ".iter().copied().chain([b'a'; 70_000]).collect(),
        // A valid HTTP/2 preface followed by a frame header claiming 16 MiB of garbage.
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\x01\x00\x00\x00\x00\x01garbage".to_vec(),
        // The preface, then a HEADERS frame with an undecodable header block.
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x06\x01\x05\x00\x00\x00\x01\xff\xff\xff\xff\xff\xff"
            .to_vec(),
        vec![0u8; 100_000],
    ];
    for bytes in &junk {
        let mut stream = TcpStream::connect(&server.endpoint).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // The server may close the connection before taking everything: that is fine.
        let _ = stream.write_all(bytes);
        let _ = stream.flush();
        let mut sink = [0u8; 4096];
        let _ = stream.read(&mut sink);
        // A half-open connection left behind must not block others either.
        let idle = TcpStream::connect(&server.endpoint).expect("connect");
        let _ = (&idle).write_all(b"PRI * HTTP/2.0\r\n");
        let put = server.etcdctl(&["put", "still", "serving"], None);
        assert_eq!(
            String::from_utf8_lossy(&put.stdout),
            "OK\n",
            "after {} junk bytes: {}\nlog:\n{}",
            bytes.len(),
            String::from_utf8_lossy(&put.stderr),
            server.log()
        );
    }
    assert!(server.is_running(), "keel exited; log:\n{}", server.log());
    let get = server.etcdctl(&["get", "still", "--print-value-only"], None);
    assert_eq!(String::from_utf8_lossy(&get.stdout), "serving\n");
}

/// Runs the NOSPACE scenario on one server with etcdctl and returns the normalized outputs of
/// the steps after the quota was hit.
fn exhaust_quota(server: &Server, value_len: usize, max_puts: usize) -> Vec<String> {
    let value = "q".repeat(value_len);
    let mut failed = None;
    for i in 0..max_puts {
        let output = server.etcdctl(&["put", &format!("fill{i:05}")], Some(&value));
        if !output.status.success() {
            failed = Some(output);
            break;
        }
    }
    let failed = failed
        .unwrap_or_else(|| panic!("{:?}: {max_puts} puts never ran out of quota", server.kind));
    let step = |args: &[&str]| {
        let output = server.etcdctl(args, None);
        let masked = regex::Regex::new(r"memberID:\d+")
            .unwrap()
            .replace_all(&String::from_utf8_lossy(&output.stdout), "memberID:N")
            .into_owned();
        format!(
            "{args:?} -> {} {} {:?}",
            normalize(&masked).trim_end(),
            normalize(&error_lines(&output)),
            output.status.code()
        )
    };
    let mut out = vec![format!(
        "put -> {} {:?}",
        error_lines(&failed),
        failed.status.code()
    )];
    out.push(step(&["alarm", "list"]));
    out.push(step(&["put", "small", "v"]));
    // Reads and deletes still work while the alarm is raised.
    let read = server.etcdctl(&["get", "fill00000", "--print-value-only"], None);
    out.push(format!(
        "read while NOSPACE: {}",
        read.status.success() && read.stdout.len() > 1
    ));
    out.push(step(&["del", "fill", "--prefix"]).replace(|c: char| c.is_ascii_digit(), "D"));
    let revision = {
        let output = server.etcdctl(&["get", "x", "-w", "json"], None);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        regex::Regex::new(r#""revision":(\d+)"#)
            .unwrap()
            .captures(&text)
            .unwrap()[1]
            .to_string()
    };
    let compacted = server.etcdctl(&["compact", &revision, "--physical"], None);
    assert!(
        compacted.status.success(),
        "{:?}: compact: {compacted:?}",
        server.kind
    );
    let defrag = server.etcdctl(&["defrag"], None);
    assert!(
        defrag.status.success(),
        "{:?}: defrag: {defrag:?}",
        server.kind
    );
    out.push(step(&["alarm", "disarm"]));
    out.push(step(&["alarm", "list"]));
    out.push(step(&["put", "small", "v"]));
    out.push(step(&["get", "small", "--print-value-only"]));
    out
}

/// etcd's documented recovery from NOSPACE: delete, compact, defragment, disarm, and writes
/// work again.
#[test]
fn quota_exhaustion_and_recovery() {
    // etcd's bbolt file starts near 20 KiB and grows in large steps, so etcd gets a larger
    // quota than keel; the texts, codes and alarm handling must agree regardless.
    let etcd = Server::start(Kind::Etcd, &["--quota-backend-bytes=262144"]);
    let etcd_steps = exhaust_quota(&etcd, 8000, 200);
    drop(etcd);
    let keel = Server::start(Kind::Keel, &["--quota-backend-bytes=16384"]);
    let keel_steps = exhaust_quota(&keel, 1000, 200);
    eprintln!("etcd: {etcd_steps:#?}\nkeel: {keel_steps:#?}");
    assert_eq!(etcd_steps, keel_steps, "etcd (left), keel (right)");
    assert_eq!(
        keel_steps[0],
        "put -> Error: etcdserver: mvcc: database space exceeded Some(1)"
    );
    assert!(keel_steps[1].contains("alarm:NOSPACE"), "{}", keel_steps[1]);
}
