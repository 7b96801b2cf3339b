//! Exact responses: the same sequence of gRPC calls against upstream etcd 3.4.23 and a Keel
//! member, every RPC of KV, Watch, Lease, Cluster, Maintenance and Auth with their error paths,
//! and the whole response compared: prost's Debug text of the message, unset fields (a `None`
//! header) included, or the error's gRPC code and message. The normalization masks only what
//! differs between any two etcd members too (cluster and member ids, raft terms, ports, the
//! tokens and lease TTL countdowns) or what is a different file layout (the db size, the
//! backend hash, the raft index). Where etcd 3.5 answers differently from the 3.4.23 that runs
//! here, the step says so, names the 3.5 source, and compares against 3.5's answer.
//! (Lock and Election are compared the same way in tests/lock_election.rs.)
//!
//! Every difference is collected, and the test fails at the end listing all of them.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::ops::{block_on, within};
use common::{http_get, Kind, Server};
use futures::channel::mpsc;
use futures::StreamExt;
use keel_proto::authpb::permission::Type as PermissionType;
use keel_proto::authpb::{Permission, UserAddOptions};
use keel_proto::etcdserverpb as pb;
use keel_proto::etcdserverpb::auth_client::AuthClient;
use keel_proto::etcdserverpb::cluster_client::ClusterClient;
use keel_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::lease_client::LeaseClient;
use keel_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use keel_proto::etcdserverpb::request_op::Request as Op;
use keel_proto::etcdserverpb::watch_client::WatchClient;
use keel_proto::etcdserverpb::watch_request::RequestUnion;
use regex::Regex;
use tonic::transport::Channel;
use tonic::Streaming;

/// One server under comparison, with what its answers carry that no other member shares.
#[derive(Clone)]
struct Side {
    kind: Kind,
    channel: Channel,
    /// Decimal ids to mask, with their placeholder (the member's own id, the cluster id,
    /// members added during the test).
    aliases: Vec<(String, &'static str)>,
    /// The auth token requests carry once the test has authenticated.
    token: Option<String>,
    /// The member's own id.
    member_id: u64,
}

impl Side {
    /// `message` as a request, with the token when there is one.
    fn req<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("token", token.parse().expect("an ASCII token"));
        }
        request
    }

    fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.channel.clone())
    }

    fn lease(&self) -> LeaseClient<Channel> {
        LeaseClient::new(self.channel.clone())
    }

    fn cluster(&self) -> ClusterClient<Channel> {
        ClusterClient::new(self.channel.clone())
    }

    fn maintenance(&self) -> MaintenanceClient<Channel> {
        MaintenanceClient::new(self.channel.clone())
    }

    fn auth(&self) -> AuthClient<Channel> {
        AuthClient::new(self.channel.clone())
    }
}

/// The two servers and the differences found so far.
struct Comparison {
    /// etcd first, then Keel.
    sides: Vec<Side>,
    differences: Vec<String>,
    steps: usize,
    /// Literal rewrites of etcd 3.4.23's text into etcd 3.5's answer for the next step only.
    etcd_as_35: Vec<(String, String)>,
    _servers: Vec<Server>,
}

/// Masks applied to every step: what differs between two etcd members of the same version.
const COMMON_MASKS: &[(&str, &str)] = &[
    (r"raft_term: \d+", "raft_term: N"),
    (r"127\.0\.0\.1:\d+", "127.0.0.1:PORT"),
];

/// The Debug text of an outcome with the masks applied.
fn shown<T: std::fmt::Debug>(
    outcome: &Result<T, tonic::Status>,
    side: &Side,
    masks: &[(&str, &str)],
) -> String {
    let mut text = match outcome {
        Ok(message) => format!("Ok({message:?})"),
        Err(status) => format!("Err({:?}, {:?})", status.code(), status.message()),
    };
    for (id, alias) in &side.aliases {
        let re = Regex::new(&format!(r"\b{id}\b")).expect("valid regex");
        text = re.replace_all(&text, *alias).into_owned();
    }
    for (pattern, to) in COMMON_MASKS.iter().chain(masks) {
        let re = Regex::new(pattern).expect("valid regex");
        text = re.replace_all(&text, *to).into_owned();
    }
    text
}

/// Runs `$call` (an expression over `$s`, a clone of each side) against etcd, then Keel,
/// compares the outcomes under `$masks` and evaluates to both outcomes.
macro_rules! both {
    ($cmp:expr, $step:expr, |$s:ident| $call:expr) => {
        both!($cmp, $step, &[], |$s| $call)
    };
    ($cmp:expr, $step:expr, $masks:expr, |$s:ident| $call:expr) => {{
        let mut outcomes = Vec::new();
        for side in $cmp.sides.clone() {
            let what = format!("{} on {:?}", $step, side.kind);
            let $s = side;
            outcomes.push(within(&what, async move { $call.await.map(|r| r.into_inner()) }).await);
        }
        $cmp.check($step, $masks, &outcomes);
        outcomes
    }};
}

/// Runs `$call` against Keel alone, for what etcd 3.4.23 cannot answer (an RPC or a field
/// added in 3.5, or a request 3.4.23 fails on), and compares the outcome with etcd 3.5's
/// `$expected` as the step's comment derives it from the 3.5 source, in the masked form.
macro_rules! keel_only {
    ($cmp:expr, $step:expr, $expected:expr, |$s:ident| $call:expr) => {{
        let $s = $cmp.sides[1].clone();
        let side = $s.clone();
        let outcome = within($step, async move { $call.await.map(|r| r.into_inner()) }).await;
        let text = shown(&outcome, &side, &[]);
        $cmp.steps += 1;
        $cmp.compare_texts($step, $expected, &text);
    }};
}

impl Comparison {
    /// Starts etcd and Keel with `extra` flags and learns their ids.
    async fn start(extra: &[&str]) -> Comparison {
        let servers = vec![
            Server::start(Kind::Etcd, extra),
            Server::start(Kind::Keel, extra),
        ];
        let mut sides = Vec::new();
        for server in &servers {
            let channel = within(
                "connect",
                Channel::from_shared(server.url())
                    .expect("valid url")
                    .connect(),
            )
            .await
            .expect("connect");
            let status = MaintenanceClient::new(channel.clone())
                .status(pb::StatusRequest {})
                .await
                .expect("status")
                .into_inner();
            let header = status.header.expect("a status header");
            sides.push(Side {
                kind: server.kind,
                channel,
                aliases: vec![
                    (header.member_id.to_string(), "MEMBER"),
                    (header.cluster_id.to_string(), "CLUSTER"),
                ],
                token: None,
                member_id: header.member_id,
            });
        }
        Comparison {
            sides,
            differences: Vec::new(),
            steps: 0,
            etcd_as_35: Vec::new(),
            _servers: servers,
        }
    }

    /// Records a difference between the two outcomes of `step`.
    fn check<T: std::fmt::Debug>(
        &mut self,
        step: &str,
        masks: &[(&str, &str)],
        outcomes: &[Result<T, tonic::Status>],
    ) {
        self.steps += 1;
        let mut texts: Vec<String> = outcomes
            .iter()
            .zip(&self.sides)
            .map(|(outcome, side)| shown(outcome, side, masks))
            .collect();
        for (from, to) in std::mem::take(&mut self.etcd_as_35) {
            assert!(
                texts[0].contains(&from),
                "{step}: no {from:?} in etcd's {}",
                texts[0]
            );
            texts[0] = texts[0].replace(&from, &to);
        }
        self.compare_texts(step, &texts[0], &texts[1]);
    }

    /// For the next step: etcd 3.4.23 answers an Alarm without a header; 3.5 fills one with
    /// the store's `revision` (server/etcdserver/api/v3rpc/maintenance.go `Alarm`:
    /// `ms.hdr.fill(resp.Header)`).
    fn alarm_header_as_35(&mut self, revision: i64) {
        self.etcd_as_35.push((
            "AlarmResponse { header: None".to_string(),
            format!(
                "AlarmResponse {{ header: Some(ResponseHeader {{ cluster_id: CLUSTER, \
                 member_id: MEMBER, revision: {revision}, raft_term: N }})"
            ),
        ));
    }

    /// Records a difference between etcd's `expected` text and Keel's `actual`.
    fn compare_texts(&mut self, step: &str, expected: &str, actual: &str) {
        if expected != actual {
            self.differences
                .push(format!("{step}:\n  etcd: {expected}\n  keel: {actual}"));
        }
    }

    /// The value of each side's outcome; fails with the side's log and the differences so far
    /// when one is an error.
    fn values<T>(&self, what: &str, outcomes: Vec<Result<T, tonic::Status>>) -> Vec<T> {
        outcomes
            .into_iter()
            .zip(&self._servers)
            .map(|(outcome, server)| {
                outcome.unwrap_or_else(|status| {
                    panic!(
                        "{what} on {:?}: {status:?}\ndifferences so far:\n{}\nlog:\n{}",
                        server.kind,
                        self.differences.join("\n"),
                        server.log()
                    )
                })
            })
            .collect()
    }

    /// Fails with every difference found.
    fn finish(self) {
        assert!(self.steps > 0);
        assert!(
            self.differences.is_empty(),
            "{} of {} steps differ:\n{}",
            self.differences.len(),
            self.steps,
            self.differences.join("\n")
        );
    }
}

fn put(key: &str, value: &str) -> pb::PutRequest {
    pb::PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

fn range(key: &str, range_end: &str) -> pb::RangeRequest {
    pb::RangeRequest {
        key: key.into(),
        range_end: range_end.into(),
        ..Default::default()
    }
}

fn compare(
    key: &str,
    target: CompareTarget,
    result: CompareResult,
    value: TargetUnion,
) -> pb::Compare {
    pb::Compare {
        key: key.into(),
        target: target as i32,
        result: result as i32,
        target_union: Some(value),
        ..Default::default()
    }
}

fn op_put(key: &str, value: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(Op::RequestPut(put(key, value))),
    }
}

fn op_range(key: &str, range_end: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(Op::RequestRange(range(key, range_end))),
    }
}

fn op_delete(key: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(Op::RequestDeleteRange(pb::DeleteRangeRequest {
            key: key.into(),
            prev_kv: true,
            ..Default::default()
        })),
    }
}

#[test]
fn kv_responses_match_etcds() {
    block_on(async {
        let mut cmp = Comparison::start(&[]).await;
        both!(cmp, "put", |s| s.kv().put(put("a", "1")));
        both!(cmp, "put prev_kv", |s| s.kv().put(pb::PutRequest {
            prev_kv: true,
            ..put("a", "2")
        }));
        both!(cmp, "put prev_kv of a new key", |s| s.kv().put(
            pb::PutRequest {
                prev_kv: true,
                ..put("k/1", "one")
            }
        ));
        for (key, value) in [
            ("k/2", "two"),
            ("k/3", "three"),
            ("k/4", "four"),
            ("l", "ell"),
        ] {
            both!(cmp, "put more", |s| s.kv().put(put(key, value)));
        }
        both!(cmp, "put ignore_value of a missing key", |s| s.kv().put(
            pb::PutRequest {
                ignore_value: true,
                ..put("missing", "")
            }
        ));
        both!(cmp, "put ignore_value with a value", |s| s.kv().put(
            pb::PutRequest {
                ignore_value: true,
                ..put("a", "x")
            }
        ));
        both!(cmp, "put ignore_value", |s| s.kv().put(pb::PutRequest {
            ignore_value: true,
            prev_kv: true,
            ..put("a", "")
        }));
        both!(cmp, "put ignore_lease with a lease", |s| s.kv().put(
            pb::PutRequest {
                ignore_lease: true,
                lease: 5,
                ..put("a", "3")
            }
        ));
        both!(cmp, "put ignore_lease", |s| s.kv().put(pb::PutRequest {
            ignore_lease: true,
            prev_kv: true,
            ..put("a", "3")
        }));
        both!(cmp, "put ignore_lease of a missing key", |s| s.kv().put(
            pb::PutRequest {
                ignore_lease: true,
                ..put("missing", "v")
            }
        ));
        both!(cmp, "put with an unknown lease", |s| s.kv().put(
            pb::PutRequest {
                lease: 77,
                ..put("a", "4")
            }
        ));
        both!(cmp, "put an empty key", |s| s.kv().put(put("", "v")));

        // Ranges.
        both!(cmp, "range one key", |s| s.kv().range(range("a", "")));
        both!(cmp, "range a missing key", |s| s
            .kv()
            .range(range("zz", "")));
        both!(cmp, "range a prefix", |s| s.kv().range(range("k/", "k0")));
        both!(cmp, "range everything", |s| s.kv().range(range("\0", "\0")));
        both!(cmp, "range from a key on", |s| s
            .kv()
            .range(range("k/3", "\0")));
        both!(cmp, "range an empty key", |s| s.kv().range(range("", "")));
        both!(cmp, "range count_only", |s| s.kv().range(
            pb::RangeRequest {
                count_only: true,
                ..range("k/", "k0")
            }
        ));
        both!(cmp, "range keys_only", |s| s.kv().range(pb::RangeRequest {
            keys_only: true,
            ..range("k/", "k0")
        }));
        both!(cmp, "range limit", |s| s.kv().range(pb::RangeRequest {
            limit: 2,
            ..range("k/", "k0")
        }));
        both!(cmp, "range limit over the count", |s| s.kv().range(
            pb::RangeRequest {
                limit: 10,
                ..range("k/", "k0")
            }
        ));
        both!(cmp, "range negative limit", |s| s.kv().range(
            pb::RangeRequest {
                limit: -1,
                ..range("k/", "k0")
            }
        ));
        both!(cmp, "range limit count_only", |s| s.kv().range(
            pb::RangeRequest {
                limit: 1,
                count_only: true,
                ..range("k/", "k0")
            }
        ));
        for (order, target) in [
            (SortOrder::Descend, SortTarget::Key),
            (SortOrder::Ascend, SortTarget::Value),
            (SortOrder::Descend, SortTarget::Value),
            (SortOrder::Descend, SortTarget::Create),
            (SortOrder::Ascend, SortTarget::Mod),
            (SortOrder::Descend, SortTarget::Version),
            (SortOrder::None, SortTarget::Value),
        ] {
            let step = format!("range sorted {order:?} by {target:?}");
            both!(cmp, &step, |s| s.kv().range(pb::RangeRequest {
                sort_order: order as i32,
                sort_target: target as i32,
                limit: 3,
                ..range("\0", "\0")
            }));
        }
        both!(cmp, "range min/max mod revision", |s| s.kv().range(
            pb::RangeRequest {
                min_mod_revision: 4,
                max_mod_revision: 6,
                ..range("\0", "\0")
            }
        ));
        both!(cmp, "range min/max create revision", |s| s.kv().range(
            pb::RangeRequest {
                min_create_revision: 3,
                max_create_revision: 5,
                count_only: false,
                ..range("\0", "\0")
            }
        ));
        both!(cmp, "range at an old revision", |s| s.kv().range(
            pb::RangeRequest {
                revision: 3,
                ..range("\0", "\0")
            }
        ));
        both!(cmp, "range at a future revision", |s| s.kv().range(
            pb::RangeRequest {
                revision: 1000,
                ..range("a", "")
            }
        ));
        both!(cmp, "range serializable", |s| s.kv().range(
            pb::RangeRequest {
                serializable: true,
                ..range("a", "")
            }
        ));

        // Deletes.
        both!(cmp, "delete prev_kv", |s| s.kv().delete_range(
            pb::DeleteRangeRequest {
                key: "k/1".into(),
                prev_kv: true,
                ..Default::default()
            }
        ));
        both!(cmp, "delete a missing key", |s| s.kv().delete_range(
            pb::DeleteRangeRequest {
                key: "k/1".into(),
                prev_kv: true,
                ..Default::default()
            }
        ));
        both!(cmp, "delete a range", |s| s.kv().delete_range(
            pb::DeleteRangeRequest {
                key: "k/3".into(),
                range_end: "k0".into(),
                ..Default::default()
            }
        ));
        both!(cmp, "delete an empty key", |s| s
            .kv()
            .delete_range(pb::DeleteRangeRequest::default()));

        // Transactions.
        both!(cmp, "txn succeeds with a nested txn", |s| s.kv().txn(
            pb::TxnRequest {
                compare: vec![
                    compare(
                        "a",
                        CompareTarget::Value,
                        CompareResult::Equal,
                        TargetUnion::Value("3".into())
                    ),
                    compare(
                        "a",
                        CompareTarget::Version,
                        CompareResult::Greater,
                        TargetUnion::Version(1)
                    ),
                ],
                success: vec![
                    op_put("t/1", "x"),
                    op_range("a", ""),
                    pb::RequestOp {
                        request: Some(Op::RequestTxn(pb::TxnRequest {
                            compare: vec![compare(
                                "t/1",
                                CompareTarget::Create,
                                CompareResult::Equal,
                                TargetUnion::CreateRevision(0),
                            )],
                            success: vec![op_put("t/never", "x")],
                            failure: vec![op_put("t/2", "y"), op_range("t/", "t0")],
                        })),
                    },
                    op_delete("l"),
                ],
                failure: vec![op_put("t/failed", "x")],
            }
        ));
        both!(cmp, "txn fails its compares", |s| s.kv().txn(
            pb::TxnRequest {
                compare: vec![
                    compare(
                        "a",
                        CompareTarget::Mod,
                        CompareResult::Less,
                        TargetUnion::ModRevision(2)
                    ),
                    compare(
                        "a",
                        CompareTarget::Lease,
                        CompareResult::NotEqual,
                        TargetUnion::Lease(0)
                    ),
                ],
                success: vec![op_put("t/ok", "x")],
                failure: vec![op_range("t/", "t0"), op_delete("t/1")],
            }
        ));
        both!(cmp, "txn compares a range", |s| s.kv().txn(
            pb::TxnRequest {
                compare: vec![pb::Compare {
                    range_end: "t0".into(),
                    ..compare(
                        "t/",
                        CompareTarget::Version,
                        CompareResult::Greater,
                        TargetUnion::Version(0)
                    )
                }],
                success: vec![op_range("t/", "t0")],
                failure: vec![],
            }
        ));
        both!(cmp, "txn compares a missing key", |s| s.kv().txn(
            pb::TxnRequest {
                compare: vec![compare(
                    "nope",
                    CompareTarget::Value,
                    CompareResult::Equal,
                    TargetUnion::Value("".into())
                )],
                success: vec![op_put("t/3", "z")],
                failure: vec![op_put("t/4", "z")],
            }
        ));
        both!(cmp, "empty txn", |s| s.kv().txn(pb::TxnRequest::default()));
        both!(cmp, "txn with a duplicate key", |s| s.kv().txn(
            pb::TxnRequest {
                success: vec![op_put("d", "1"), op_put("d", "2")],
                ..Default::default()
            }
        ));
        both!(cmp, "txn with too many operations", |s| s.kv().txn(
            pb::TxnRequest {
                success: (0..129).map(|i| op_put(&format!("m/{i}"), "v")).collect(),
                ..Default::default()
            }
        ));
        both!(cmp, "txn with an empty key", |s| s.kv().txn(
            pb::TxnRequest {
                success: vec![op_put("", "1")],
                ..Default::default()
            }
        ));

        // Compaction.
        both!(cmp, "compact a future revision", |s| s.kv().compact(
            pb::CompactionRequest {
                revision: 1000,
                physical: false,
            }
        ));
        both!(cmp, "compact", |s| s.kv().compact(pb::CompactionRequest {
            revision: 5,
            physical: false,
        }));
        both!(cmp, "compact again", |s| s.kv().compact(
            pb::CompactionRequest {
                revision: 5,
                physical: false,
            }
        ));
        both!(cmp, "compact an older revision", |s| s.kv().compact(
            pb::CompactionRequest {
                revision: 3,
                physical: true,
            }
        ));
        both!(cmp, "compact physical", |s| s.kv().compact(
            pb::CompactionRequest {
                revision: 8,
                physical: true,
            }
        ));
        both!(cmp, "range at a compacted revision", |s| s.kv().range(
            pb::RangeRequest {
                revision: 6,
                ..range("a", "")
            }
        ));
        both!(cmp, "range at the compaction revision", |s| s.kv().range(
            pb::RangeRequest {
                revision: 8,
                ..range("\0", "\0")
            }
        ));
        both!(cmp, "txn range at a compacted revision", |s| s.kv().txn(
            pb::TxnRequest {
                success: vec![pb::RequestOp {
                    request: Some(Op::RequestRange(pb::RangeRequest {
                        revision: 2,
                        ..range("a", "")
                    })),
                }],
                ..Default::default()
            }
        ));
        cmp.finish();
    });
}

/// A watch stream on one side.
struct WatchStream {
    tx: mpsc::UnboundedSender<pb::WatchRequest>,
    rx: Streaming<pb::WatchResponse>,
}

impl WatchStream {
    /// Opens a stream with `first` as its first request (sent before the response headers
    /// are awaited: grpc-go sends none before its first response).
    async fn open(side: &Side, first: RequestUnion) -> WatchStream {
        let (tx, requests) = mpsc::unbounded();
        tx.unbounded_send(pb::WatchRequest {
            request_union: Some(first),
        })
        .expect("queue the first watch request");
        let rx = within(
            "watch",
            WatchClient::new(side.channel.clone()).watch(requests),
        )
        .await
        .expect("open the watch stream")
        .into_inner();
        WatchStream { tx, rx }
    }

    fn send(&self, request: RequestUnion) {
        self.tx
            .unbounded_send(pb::WatchRequest {
                request_union: Some(request),
            })
            .expect("send a watch request");
    }

    async fn next(&mut self) -> Result<pb::WatchResponse, tonic::Status> {
        within("watch response", self.rx.next())
            .await
            .unwrap_or_else(|| Err(tonic::Status::aborted("the watch stream ended")))
    }
}

/// The watch streams of both sides, compared response by response.
struct Watches {
    streams: Vec<WatchStream>,
}

impl Watches {
    async fn open(cmp: &mut Comparison, step: &str, first: RequestUnion) -> Watches {
        let mut streams = Vec::new();
        for side in &cmp.sides {
            streams.push(WatchStream::open(side, first.clone()).await);
        }
        let mut watches = Watches { streams };
        watches.expect(cmp, step).await;
        watches
    }

    fn send(&self, request: RequestUnion) {
        for stream in &self.streams {
            stream.send(request.clone());
        }
    }

    /// The next response of each side, compared.
    async fn expect(&mut self, cmp: &mut Comparison, step: &str) {
        let mut outcomes = Vec::new();
        for stream in &mut self.streams {
            outcomes.push(stream.next().await);
        }
        cmp.check(step, &[], &outcomes);
    }
}

fn watch_create(key: &str, range_end: &str) -> pb::WatchCreateRequest {
    pb::WatchCreateRequest {
        key: key.into(),
        range_end: range_end.into(),
        ..Default::default()
    }
}

#[test]
fn watch_responses_match_etcds() {
    block_on(async {
        let mut cmp = Comparison::start(&[]).await;
        for (key, value) in [("w/a", "1"), ("w/b", "2"), ("w/a", "3"), ("x", "4")] {
            both!(cmp, "put", |s| s.kv().put(put(key, value)));
        }
        let mut watches = Watches::open(
            &mut cmp,
            "create a watch with prev_kv",
            RequestUnion::CreateRequest(pb::WatchCreateRequest {
                prev_kv: true,
                ..watch_create("w/a", "")
            }),
        )
        .await;
        both!(cmp, "put a watched key", |s| s.kv().put(put("w/a", "5")));
        watches.expect(&mut cmp, "event with prev_kv").await;

        watches.send(RequestUnion::CreateRequest(pb::WatchCreateRequest {
            filters: vec![pb::watch_create_request::FilterType::Noput as i32],
            start_revision: 2,
            ..watch_create("w/", "w0")
        }));
        watches
            .expect(&mut cmp, "create a NOPUT prefix watch from revision 2")
            .await;
        watches.send(RequestUnion::CreateRequest(pb::WatchCreateRequest {
            filters: vec![pb::watch_create_request::FilterType::Nodelete as i32],
            start_revision: 3,
            fragment: true,
            progress_notify: true,
            ..watch_create("w/", "w0")
        }));
        watches
            .expect(&mut cmp, "create a NODELETE fragment watch")
            .await;
        watches.expect(&mut cmp, "its history").await;
        both!(cmp, "delete a watched key", |s| s.kv().delete_range(
            pb::DeleteRangeRequest {
                key: "w/b".into(),
                ..Default::default()
            }
        ));
        watches
            .expect(&mut cmp, "the delete to the NOPUT watch")
            .await;
        watches.send(RequestUnion::ProgressRequest(pb::WatchProgressRequest {}));
        watches.expect(&mut cmp, "progress").await;
        watches.send(RequestUnion::CancelRequest(pb::WatchCancelRequest {
            watch_id: 1,
        }));
        watches.expect(&mut cmp, "cancel").await;
        watches.send(RequestUnion::CancelRequest(pb::WatchCancelRequest {
            watch_id: 42,
        }));
        watches.send(RequestUnion::CreateRequest(watch_create("x", "")));
        watches
            .expect(&mut cmp, "cancel of an unknown watch, then a create")
            .await;
        watches.send(RequestUnion::CreateRequest(pb::WatchCreateRequest {
            watch_id: 7,
            ..watch_create("y", "")
        }));
        watches.expect(&mut cmp, "create with a chosen id").await;
        watches.send(RequestUnion::CreateRequest(pb::WatchCreateRequest {
            watch_id: 7,
            ..watch_create("z", "")
        }));
        watches.expect(&mut cmp, "create with a taken id").await;

        both!(cmp, "compact", |s| s.kv().compact(pb::CompactionRequest {
            revision: 5,
            physical: true,
        }));
        watches.send(RequestUnion::CreateRequest(pb::WatchCreateRequest {
            start_revision: 2,
            ..watch_create("w/a", "")
        }));
        watches
            .expect(&mut cmp, "create at a compacted revision")
            .await;
        // etcd sends the cancel of a compacted watch from its sync loop, a moment after.
        watches
            .expect(&mut cmp, "the compacted watch is canceled")
            .await;
        watches.send(RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: Vec::new(),
            ..Default::default()
        }));
        watches.expect(&mut cmp, "create with an empty key").await;
        cmp.finish();
    });
}

#[test]
fn lease_responses_match_etcds() {
    block_on(async {
        let mut cmp = Comparison::start(&[]).await;
        // A remaining TTL counts down by the second: it may read one less on either side.
        let ttl_mask: &[(&str, &str)] = &[(r"\bttl: \d+", "ttl: T")];
        both!(cmp, "grant", |s| s
            .lease()
            .lease_grant(pb::LeaseGrantRequest { ttl: 60, id: 1000 }));
        both!(cmp, "grant a taken id", |s| s
            .lease()
            .lease_grant(pb::LeaseGrantRequest { ttl: 60, id: 1000 }));
        both!(cmp, "grant a too large TTL", |s| s.lease().lease_grant(
            pb::LeaseGrantRequest {
                ttl: 9_000_000_001,
                id: 1001,
            }
        ));
        both!(cmp, "grant a negative TTL", |s| s
            .lease()
            .lease_grant(pb::LeaseGrantRequest { ttl: -5, id: 1002 }));
        both!(cmp, "grant a TTL under the minimum", |s| s
            .lease()
            .lease_grant(pb::LeaseGrantRequest { ttl: 1, id: 1003 }));
        both!(cmp, "grant a chosen id", &[(r"id: \d+", "id: ID")], |s| s
            .lease()
            .lease_grant(pb::LeaseGrantRequest { ttl: 30, id: 0 }));
        both!(cmp, "put with the lease", |s| s.kv().put(pb::PutRequest {
            lease: 1000,
            ..put("l/1", "v")
        }));
        both!(cmp, "put with the lease again", |s| s.kv().put(
            pb::PutRequest {
                lease: 1000,
                ..put("l/2", "v")
            }
        ));
        // etcd lists a lease's keys in Go map order, which varies: sorted on both sides.
        both!(cmp, "time to live with keys", ttl_mask, |s| async move {
            let mut answer = s
                .lease()
                .lease_time_to_live(pb::LeaseTimeToLiveRequest {
                    id: 1000,
                    keys: true,
                })
                .await?;
            answer.get_mut().keys.sort();
            Ok::<_, tonic::Status>(answer)
        });
        both!(cmp, "time to live without keys", ttl_mask, |s| s
            .lease()
            .lease_time_to_live(pb::LeaseTimeToLiveRequest {
                id: 1000,
                keys: false,
            }));
        both!(cmp, "time to live of an unknown lease", |s| s
            .lease()
            .lease_time_to_live(pb::LeaseTimeToLiveRequest {
                id: 5,
                keys: true
            }));
        both!(cmp, "revoke an unknown lease", |s| s
            .lease()
            .lease_revoke(pb::LeaseRevokeRequest { id: 5 }));
        both!(cmp, "range a leased key", |s| s
            .kv()
            .range(range("l/1", "")));

        // The keep-alive stream: one answer per request, unknown leases answered with TTL 0.
        let mut outcomes = Vec::new();
        for side in cmp.sides.clone() {
            let (tx, requests) = mpsc::unbounded();
            tx.unbounded_send(pb::LeaseKeepAliveRequest { id: 1000 })
                .expect("queue");
            let mut responses = within("keep alive", side.lease().lease_keep_alive(requests))
                .await
                .expect("keep-alive stream")
                .into_inner();
            let first = within("keep alive", responses.next())
                .await
                .expect("answer");
            tx.unbounded_send(pb::LeaseKeepAliveRequest { id: 9 })
                .expect("queue");
            let second = within("keep alive", responses.next())
                .await
                .expect("answer");
            outcomes.push(first.and_then(|a| second.map(|b| (a, b))));
        }
        cmp.check("keep alive a lease, then an unknown one", &[], &outcomes);

        // Leases lists ids in map order too: sorted.
        let granted = both!(
            cmp,
            "leases",
            &[(r"id: \d{5,}", "id: ID")],
            |s| async move {
                let mut answer = s.lease().lease_leases(pb::LeaseLeasesRequest {}).await?;
                answer.get_mut().leases.sort_by_key(|lease| lease.id);
                Ok::<_, tonic::Status>(answer)
            }
        );
        for (side, listed) in cmp.sides.clone().iter().zip(cmp.values("leases", granted)) {
            for lease in listed.leases {
                if lease.id != 1000 {
                    side.lease()
                        .lease_revoke(pb::LeaseRevokeRequest { id: lease.id })
                        .await
                        .expect("revoke the automatic lease");
                }
            }
        }
        both!(cmp, "leases after a revoke", |s| s
            .lease()
            .lease_leases(pb::LeaseLeasesRequest {}));
        both!(cmp, "revoke", |s| s
            .lease()
            .lease_revoke(pb::LeaseRevokeRequest { id: 1000 }));
        both!(cmp, "the lease's keys are gone", |s| s
            .kv()
            .range(range("l/", "l0")));
        both!(cmp, "revoke again", |s| s
            .lease()
            .lease_revoke(pb::LeaseRevokeRequest { id: 1000 }));
        both!(cmp, "time to live of a revoked lease", |s| s
            .lease()
            .lease_time_to_live(pb::LeaseTimeToLiveRequest {
                id: 1000,
                keys: true,
            }));
        cmp.finish();
    });
}

#[test]
fn cluster_and_maintenance_responses_match_etcds() {
    block_on(async {
        let mut cmp = Comparison::start(&[]).await;
        // Status: the version is the server's (3.5.0 for Keel, which follows 3.5); the db
        // sizes and the raft index are the storage's and the log's layout.
        let status_mask: &[(&str, &str)] = &[
            (r#"version: "3\.4\.23""#, r#"version: "3.5.0""#),
            (r"db_size: \d+", "db_size: N"),
            (r"db_size_in_use: \d+", "db_size_in_use: N"),
            (r"raft_index: \d+", "raft_index: N"),
            (r"raft_applied_index: \d+", "raft_applied_index: N"),
        ];
        both!(cmp, "put", |s| s.kv().put(put("a", "1")));
        both!(cmp, "member list", |s| s.cluster().member_list(
            pb::MemberListRequest {
                linearizable: false
            }
        ));
        both!(cmp, "linearizable member list", |s| s
            .cluster()
            .member_list(pb::MemberListRequest { linearizable: true }));
        both!(cmp, "member add of a known peer url", |s| {
            let mut cluster = s.cluster();
            async move {
                let members = cluster
                    .member_list(pb::MemberListRequest::default())
                    .await?
                    .into_inner();
                cluster
                    .member_add(pb::MemberAddRequest {
                        peer_ur_ls: members.members[0].peer_ur_ls.clone(),
                        is_learner: false,
                    })
                    .await
            }
        });
        both!(cmp, "member add of a bad url", |s| s.cluster().member_add(
            pb::MemberAddRequest {
                peer_ur_ls: vec!["not a url".into()],
                is_learner: false,
            }
        ));
        both!(cmp, "member remove of an unknown id", |s| s
            .cluster()
            .member_remove(pb::MemberRemoveRequest { id: 12345 }));
        both!(cmp, "member update of an unknown id", |s| s
            .cluster()
            .member_update(pb::MemberUpdateRequest {
                id: 12345,
                peer_ur_ls: vec!["http://127.0.0.1:1".into()],
            }));
        both!(cmp, "member promote of an unknown id", |s| s
            .cluster()
            .member_promote(pb::MemberPromoteRequest { id: 12345 }));
        both!(cmp, "member promote of a voter", |s| s
            .cluster()
            .member_promote(pb::MemberPromoteRequest { id: s.member_id }));
        both!(cmp, "member update to the same urls", |s| {
            let mut cluster = s.cluster();
            async move {
                let members = cluster
                    .member_list(pb::MemberListRequest::default())
                    .await?
                    .into_inner();
                cluster
                    .member_update(pb::MemberUpdateRequest {
                        id: members.members[0].id,
                        peer_ur_ls: members.members[0].peer_ur_ls.clone(),
                    })
                    .await
            }
        });
        // A learner (no quorum change on a single member), promoted too early, then removed.
        let added = both!(
            cmp,
            "member add of a learner",
            &[(r"\bid: \d{6,}", "id: NEW")],
            |s| async move {
                let mut answer = s
                    .cluster()
                    .member_add(pb::MemberAddRequest {
                        peer_ur_ls: vec!["http://127.0.0.2:2380".into()],
                        is_learner: true,
                    })
                    .await?;
                by_role(&mut answer.get_mut().members);
                Ok::<_, tonic::Status>(answer)
            }
        );
        let added = cmp.values("a learner added", added);
        for (side, added) in cmp.sides.iter_mut().zip(added) {
            let id = added.member.expect("the member").id;
            side.aliases.push((id.to_string(), "LEARNER"));
        }
        both!(cmp, "member list with a learner", |s| async move {
            let mut answer = s
                .cluster()
                .member_list(pb::MemberListRequest::default())
                .await?;
            by_role(&mut answer.get_mut().members);
            Ok::<_, tonic::Status>(answer)
        });
        both!(cmp, "member promote of a learner not in sync", |s| {
            let id = learner_of(&s);
            s.cluster().member_promote(pb::MemberPromoteRequest { id })
        });
        both!(cmp, "member remove of the learner", |s| {
            let id = learner_of(&s);
            s.cluster().member_remove(pb::MemberRemoveRequest { id })
        });
        both!(cmp, "member remove of a removed member", |s| {
            let id = learner_of(&s);
            s.cluster().member_remove(pb::MemberRemoveRequest { id })
        });

        // Maintenance.
        both!(cmp, "status", status_mask, |s| s
            .maintenance()
            .status(pb::StatusRequest {}));
        cmp.alarm_header_as_35(2);
        both!(cmp, "alarm get", |s| s.maintenance().alarm(
            pb::AlarmRequest {
                action: pb::alarm_request::AlarmAction::Get as i32,
                member_id: 0,
                alarm: pb::AlarmType::None as i32,
            }
        ));
        cmp.alarm_header_as_35(2);
        both!(cmp, "alarm activate", |s| s.maintenance().alarm(
            pb::AlarmRequest {
                action: pb::alarm_request::AlarmAction::Activate as i32,
                member_id: s.member_id,
                alarm: pb::AlarmType::Nospace as i32,
            }
        ));
        cmp.alarm_header_as_35(2);
        both!(cmp, "alarm activate again", |s| s.maintenance().alarm(
            pb::AlarmRequest {
                action: pb::alarm_request::AlarmAction::Activate as i32,
                member_id: s.member_id,
                alarm: pb::AlarmType::Nospace as i32,
            }
        ));
        cmp.alarm_header_as_35(2);
        both!(cmp, "alarm get NOSPACE", |s| s.maintenance().alarm(
            pb::AlarmRequest {
                action: pb::alarm_request::AlarmAction::Get as i32,
                member_id: 0,
                alarm: pb::AlarmType::Nospace as i32,
            }
        ));
        cmp.alarm_header_as_35(2);
        both!(cmp, "alarm get CORRUPT", |s| s.maintenance().alarm(
            pb::AlarmRequest {
                action: pb::alarm_request::AlarmAction::Get as i32,
                member_id: 0,
                alarm: pb::AlarmType::Corrupt as i32,
            }
        ));
        both!(cmp, "status with an alarm", status_mask, |s| s
            .maintenance()
            .status(pb::StatusRequest {}));
        both!(cmp, "put under NOSPACE", |s| s.kv().put(put("b", "2")));
        both!(cmp, "delete under NOSPACE", |s| s.kv().delete_range(
            pb::DeleteRangeRequest {
                key: "a".into(),
                ..Default::default()
            }
        ));
        cmp.alarm_header_as_35(3);
        both!(cmp, "alarm deactivate", |s| s.maintenance().alarm(
            pb::AlarmRequest {
                action: pb::alarm_request::AlarmAction::Deactivate as i32,
                member_id: s.member_id,
                alarm: pb::AlarmType::Nospace as i32,
            }
        ));
        cmp.alarm_header_as_35(3);
        both!(cmp, "alarm deactivate again", |s| s.maintenance().alarm(
            pb::AlarmRequest {
                action: pb::alarm_request::AlarmAction::Deactivate as i32,
                member_id: s.member_id,
                alarm: pb::AlarmType::Nospace as i32,
            }
        ));
        both!(cmp, "put after the alarm", |s| s.kv().put(put("b", "2")));
        // etcd 3.5 answers Defragment with an empty message, no header (server/etcdserver/
        // api/v3rpc/maintenance.go, `Defragment` returns `&pb.DefragmentResponse{}`).
        both!(cmp, "defragment", |s| s
            .maintenance()
            .defragment(pb::DefragmentRequest {}));
        // Hash is the CRC of the bbolt file, a layout; HashKV's is Keel's own CRC over the
        // key history (README: known differences): both masked, the revisions stay.
        let hash_mask: &[(&str, &str)] = &[(r"\bhash: \d+", "hash: H")];
        both!(cmp, "hash", hash_mask, |s| s
            .maintenance()
            .hash(pb::HashRequest {}));
        both!(cmp, "hash kv", hash_mask, |s| s
            .maintenance()
            .hash_kv(pb::HashKvRequest { revision: 0 }));
        both!(cmp, "hash kv at a revision", hash_mask, |s| s
            .maintenance()
            .hash_kv(pb::HashKvRequest { revision: 2 }));
        both!(cmp, "hash kv at a future revision", |s| s
            .maintenance()
            .hash_kv(pb::HashKvRequest { revision: 100 }));
        both!(cmp, "compact", |s| s.kv().compact(pb::CompactionRequest {
            revision: 2,
            physical: true,
        }));
        both!(cmp, "hash kv at a compacted revision", |s| s
            .maintenance()
            .hash_kv(pb::HashKvRequest { revision: 1 }));
        both!(cmp, "hash kv after a compaction", hash_mask, |s| s
            .maintenance()
            .hash_kv(pb::HashKvRequest { revision: 0 }));
        // etcd 3.5's MoveLeader: the leader transfer returns at once when the target already
        // leads, and the answer has no header (server/etcdserver/api/v3rpc/maintenance.go
        // `MoveLeader` returns `&pb.MoveLeaderResponse{}`; server/etcdserver/server.go).
        both!(cmp, "move leader to itself", |s| s
            .maintenance()
            .move_leader(pb::MoveLeaderRequest {
                target_id: s.member_id,
            }));
        both!(cmp, "move leader to an unknown member", |s| s
            .maintenance()
            .move_leader(pb::MoveLeaderRequest { target_id: 4242 }));

        // Snapshot: the file is each server's bbolt layout; compare the stream's shape: every
        // message's header, the last one's remaining bytes and the length of its SHA-256.
        let mut shapes = Vec::new();
        for side in cmp.sides.clone() {
            let mut stream = within(
                "snapshot",
                side.maintenance().snapshot(pb::SnapshotRequest {}),
            )
            .await
            .expect("snapshot")
            .into_inner();
            let mut messages = Vec::new();
            while let Some(message) = within("snapshot chunk", stream.next()).await {
                messages.push(message.expect("a snapshot chunk"));
            }
            let last = messages.last().cloned().expect("a snapshot message");
            let headers: Vec<_> = messages.iter().map(|m| m.header).collect();
            headers
                .windows(2)
                .for_each(|w| assert_eq!(w[0], w[1], "one header for all"));
            // etcd 3.5 sends neither header nor version (v3rpc/maintenance.go `Snapshot`).
            shapes.push(Ok::<_, tonic::Status>(format!(
                "header {:?}, last remaining {}, digest {} bytes, version {:?}",
                headers[0],
                last.remaining_bytes,
                last.blob.len(),
                last.version
            )));
        }
        cmp.check("snapshot", &[], &shapes);

        // Downgrade is new in 3.5 (3.4.23 answers Unimplemented). etcd 3.5's answers, from
        // server/etcdserver/v3_server.go `downgradeValidate`, `downgradeEnable` and
        // `downgradeCancel` and
        // api/v3rpc/rpctypes/error.go, for a cluster at version 3.5 (Keel's): the only target
        // is 3.4 (membership/downgrade.go `AllowedDowngradeVersion`), written X.Y or X.Y.Z;
        // the answer carries the cluster version and a header (v3rpc/maintenance.go).
        let downgrade =
            |action: pb::downgrade_request::DowngradeAction, version: &str| pb::DowngradeRequest {
                action: action as i32,
                version: version.into(),
            };
        use pb::downgrade_request::DowngradeAction::{Cancel, Validate};
        let valid = "Ok(DowngradeResponse { header: Some(ResponseHeader { cluster_id: CLUSTER, \
                     member_id: MEMBER, revision: 4, raft_term: N }), version: \"3.5.0\" })";
        for target in ["3.4", "3.4.0", "3.4.23-rc.1+build"] {
            keel_only!(cmp, &format!("downgrade validate {target}"), valid, |s| s
                .maintenance()
                .downgrade(downgrade(Validate, target)));
        }
        for target in ["3.5", "3.5.0", "3.3.9", "2.4"] {
            keel_only!(
                cmp,
                &format!("downgrade validate {target}"),
                r#"Err(InvalidArgument, "etcdserver: invalid downgrade target version")"#,
                |s| s.maintenance().downgrade(downgrade(Validate, target))
            );
        }
        for target in ["", "3", "three.four", "3.4.0.1"] {
            keel_only!(
                cmp,
                &format!("downgrade validate {target:?}"),
                r#"Err(InvalidArgument, "etcdserver: wrong downgrade target version format")"#,
                |s| s.maintenance().downgrade(downgrade(Validate, target))
            );
        }
        keel_only!(
            cmp,
            "downgrade cancel without a downgrade",
            r#"Err(FailedPrecondition, "etcdserver: no inflight downgrade job")"#,
            |s| s.maintenance().downgrade(downgrade(Cancel, ""))
        );
        // ENABLE validates as VALIDATE does, then records the target cluster-wide
        // (`downgradeEnable`): the answer is VALIDATE's; while it is in progress, VALIDATE and
        // ENABLE answer ErrDowngradeInProcess, and CANCEL ends it with the same answer.
        use pb::downgrade_request::DowngradeAction::Enable;
        keel_only!(
            cmp,
            "downgrade enable 3.5",
            r#"Err(InvalidArgument, "etcdserver: invalid downgrade target version")"#,
            |s| s.maintenance().downgrade(downgrade(Enable, "3.5"))
        );
        keel_only!(cmp, "downgrade enable 3.4", valid, |s| s
            .maintenance()
            .downgrade(downgrade(Enable, "3.4")));
        for action in [Enable, Validate] {
            keel_only!(
                cmp,
                &format!("downgrade {action:?} during a downgrade"),
                r#"Err(FailedPrecondition, "etcdserver: cluster has a downgrade job in progress")"#,
                |s| s.maintenance().downgrade(downgrade(action, "3.4.0"))
            );
        }
        keel_only!(cmp, "downgrade cancel", valid, |s| s
            .maintenance()
            .downgrade(downgrade(Cancel, "")));
        keel_only!(
            cmp,
            "downgrade cancel after the cancel",
            r#"Err(FailedPrecondition, "etcdserver: no inflight downgrade job")"#,
            |s| s.maintenance().downgrade(downgrade(Cancel, ""))
        );
        keel_only!(
            cmp,
            "downgrade with an unknown action",
            r#"Err(Unknown, "etcdserver: unknown method")"#,
            |s| s.maintenance().downgrade(pb::DowngradeRequest {
                action: 9,
                version: "3.4".into(),
            })
        );
        cmp.finish();
    });
}

/// etcd lists members sorted by id (server/etcdserver/api/membership/cluster.go `Members`);
/// ids are random, so the order differs between servers: checks the order, then puts the
/// voter first.
fn by_role(members: &mut [pb::Member]) {
    assert!(
        members.windows(2).all(|pair| pair[0].id < pair[1].id),
        "members not sorted by id: {members:?}"
    );
    members.sort_by_key(|member| member.is_learner);
}

/// The id of the learner the test added, from the side's aliases.
fn learner_of(side: &Side) -> u64 {
    side.aliases
        .iter()
        .find(|(_, alias)| *alias == "LEARNER")
        .map(|(id, _)| id.parse().expect("a decimal id"))
        .expect("a learner was added")
}

#[test]
fn auth_responses_match_etcds() {
    block_on(async {
        let mut cmp = Comparison::start(&[]).await;
        let token_mask: &[(&str, &str)] = &[(r#"token: "[^"]*""#, r#"token: "T""#)];
        let user = |name: &str, password: &str| pb::AuthUserAddRequest {
            name: name.into(),
            password: password.into(),
            options: None,
            hashed_password: String::new(),
        };
        // AuthStatus is new in 3.5 (3.4.23 answers Unimplemented): server/etcdserver/
        // apply.go `AuthStatus` answers with a header, whether auth is on and the auth
        // store's revision, 1 in a new store (server/auth/store.go `NewAuthStore` commits
        // revision 1).
        keel_only!(
            cmp,
            "auth status",
            "Ok(AuthStatusResponse { header: Some(ResponseHeader { cluster_id: CLUSTER, \
             member_id: MEMBER, revision: 1, raft_term: N }), enabled: false, auth_revision: 1 })",
            |s| s.auth().auth_status(pb::AuthStatusRequest {})
        );
        both!(cmp, "auth enable without root", |s| s
            .auth()
            .auth_enable(pb::AuthEnableRequest {}));
        both!(cmp, "user add", |s| s
            .auth()
            .user_add(user("root", "rootpw")));
        both!(cmp, "user add again", |s| s
            .auth()
            .user_add(user("root", "x")));
        both!(cmp, "user add without a name", |s| s
            .auth()
            .user_add(user("", "x")));
        both!(cmp, "user add without a password", |s| s
            .auth()
            .user_add(user("nopw", "")));
        both!(cmp, "user add with no_password", |s| s.auth().user_add(
            pb::AuthUserAddRequest {
                options: Some(UserAddOptions { no_password: true }),
                ..user("alice", "")
            }
        ));
        both!(cmp, "user add bob", |s| s
            .auth()
            .user_add(user("bob", "bobpw")));
        both!(cmp, "auth enable without the root role", |s| s
            .auth()
            .auth_enable(pb::AuthEnableRequest {}));
        both!(cmp, "user get", |s| s.auth().user_get(
            pb::AuthUserGetRequest {
                name: "root".into()
            }
        ));
        both!(cmp, "user get unknown", |s| s.auth().user_get(
            pb::AuthUserGetRequest {
                name: "nobody".into()
            }
        ));
        both!(cmp, "user list", |s| s
            .auth()
            .user_list(pb::AuthUserListRequest {}));
        both!(cmp, "role add", |s| s.auth().role_add(
            pb::AuthRoleAddRequest {
                name: "reader".into()
            }
        ));
        both!(cmp, "role add again", |s| s.auth().role_add(
            pb::AuthRoleAddRequest {
                name: "reader".into()
            }
        ));
        both!(cmp, "role add without a name", |s| s
            .auth()
            .role_add(pb::AuthRoleAddRequest { name: "".into() }));
        both!(cmp, "role add root", |s| s.auth().role_add(
            pb::AuthRoleAddRequest {
                name: "root".into()
            }
        ));
        let grant =
            |key: &str, end: &str, kind: PermissionType| pb::AuthRoleGrantPermissionRequest {
                name: "reader".into(),
                perm: Some(Permission {
                    perm_type: kind as i32,
                    key: key.into(),
                    range_end: end.into(),
                }),
            };
        both!(cmp, "role grant permission", |s| s
            .auth()
            .role_grant_permission(grant(
                "r/",
                "r0",
                PermissionType::Read
            )));
        both!(cmp, "role grant a key permission", |s| s
            .auth()
            .role_grant_permission(grant(
                "w",
                "",
                PermissionType::Readwrite
            )));
        both!(cmp, "role grant an open-ended permission", |s| s
            .auth()
            .role_grant_permission(grant(
                "z",
                "\0",
                PermissionType::Write
            )));
        both!(cmp, "role grant to an unknown role", |s| s
            .auth()
            .role_grant_permission(pb::AuthRoleGrantPermissionRequest {
                name: "nope".into(),
                ..grant("a", "", PermissionType::Read)
            }));
        // etcd 3.4.23 crashes on a grant without a permission (a nil dereference); 3.5
        // refuses it (server/auth/store.go `RoleGrantPermission`: ErrPermissionNotGiven,
        // api/v3rpc/rpctypes/error.go: InvalidArgument "etcdserver: permission not given").
        keel_only!(
            cmp,
            "role grant without a permission",
            r#"Err(InvalidArgument, "etcdserver: permission not given")"#,
            |s| s
                .auth()
                .role_grant_permission(pb::AuthRoleGrantPermissionRequest {
                    name: "reader".into(),
                    perm: None,
                })
        );
        both!(cmp, "role get", |s| s.auth().role_get(
            pb::AuthRoleGetRequest {
                role: "reader".into()
            }
        ));
        both!(cmp, "role get root", |s| s.auth().role_get(
            pb::AuthRoleGetRequest {
                role: "root".into()
            }
        ));
        both!(cmp, "role get unknown", |s| s.auth().role_get(
            pb::AuthRoleGetRequest {
                role: "nope".into()
            }
        ));
        both!(cmp, "role list", |s| s
            .auth()
            .role_list(pb::AuthRoleListRequest {}));
        both!(cmp, "role revoke permission", |s| s
            .auth()
            .role_revoke_permission(pb::AuthRoleRevokePermissionRequest {
                role: "reader".into(),
                key: "z".into(),
                range_end: "\0".into(),
            }));
        both!(cmp, "role revoke a permission not granted", |s| s
            .auth()
            .role_revoke_permission(pb::AuthRoleRevokePermissionRequest {
                role: "reader".into(),
                key: "q".into(),
                range_end: "".into(),
            }));
        both!(cmp, "role revoke from an unknown role", |s| s
            .auth()
            .role_revoke_permission(pb::AuthRoleRevokePermissionRequest {
                role: "nope".into(),
                key: "q".into(),
                range_end: "".into(),
            }));
        let grant_role = |user: &str, role: &str| pb::AuthUserGrantRoleRequest {
            user: user.into(),
            role: role.into(),
        };
        both!(cmp, "user grant role", |s| s
            .auth()
            .user_grant_role(grant_role("bob", "reader")));
        both!(cmp, "user grant role again", |s| s
            .auth()
            .user_grant_role(grant_role("bob", "reader")));
        both!(cmp, "user grant an unknown role", |s| s
            .auth()
            .user_grant_role(grant_role("bob", "nope")));
        both!(cmp, "user grant role to an unknown user", |s| s
            .auth()
            .user_grant_role(grant_role("nobody", "reader")));
        both!(cmp, "user get with a role", |s| s
            .auth()
            .user_get(pb::AuthUserGetRequest { name: "bob".into() }));
        both!(cmp, "user revoke a role not granted", |s| s
            .auth()
            .user_revoke_role(pb::AuthUserRevokeRoleRequest {
                name: "alice".into(),
                role: "reader".into(),
            }));
        both!(cmp, "user revoke from an unknown user", |s| s
            .auth()
            .user_revoke_role(pb::AuthUserRevokeRoleRequest {
                name: "nobody".into(),
                role: "reader".into(),
            }));
        both!(cmp, "user change password", |s| s
            .auth()
            .user_change_password(pb::AuthUserChangePasswordRequest {
                name: "bob".into(),
                password: "bobpw2".into(),
                hashed_password: String::new(),
            }));
        both!(cmp, "user change password of an unknown user", |s| s
            .auth()
            .user_change_password(pb::AuthUserChangePasswordRequest {
                name: "nobody".into(),
                password: "x".into(),
                hashed_password: String::new(),
            }));
        both!(cmp, "authenticate while auth is off", token_mask, |s| s
            .auth()
            .authenticate(pb::AuthenticateRequest {
                name: "bob".into(),
                password: "bobpw2".into(),
            }));
        both!(cmp, "user grant root role", |s| s
            .auth()
            .user_grant_role(grant_role("root", "root")));
        both!(cmp, "auth enable", |s| s
            .auth()
            .auth_enable(pb::AuthEnableRequest {}));
        both!(cmp, "auth enable again", |s| s
            .auth()
            .auth_enable(pb::AuthEnableRequest {}));
        // 3.5's AuthStatus needs an admin (server/etcdserver/apply_auth.go
        // `needAdminPermission`), so a request without a token is refused as AuthEnable is.
        keel_only!(
            cmp,
            "auth status while enabled",
            r#"Err(InvalidArgument, "etcdserver: user name is empty")"#,
            |s| s.auth().auth_status(pb::AuthStatusRequest {})
        );
        both!(cmp, "put without a token", |s| s.kv().put(put("w", "1")));
        both!(cmp, "authenticate with a wrong password", token_mask, |s| s
            .auth()
            .authenticate(pb::AuthenticateRequest {
                name: "bob".into(),
                password: "bobpw".into(),
            }));
        both!(cmp, "authenticate an unknown user", token_mask, |s| s
            .auth()
            .authenticate(pb::AuthenticateRequest {
                name: "nobody".into(),
                password: "x".into(),
            }));
        both!(
            cmp,
            "authenticate a user without a password",
            token_mask,
            |s| s.auth().authenticate(pb::AuthenticateRequest {
                name: "alice".into(),
                password: "".into(),
            })
        );
        let bob = both!(cmp, "authenticate bob", token_mask, |s| s
            .auth()
            .authenticate(pb::AuthenticateRequest {
                name: "bob".into(),
                password: "bobpw2".into(),
            }));
        let mut bob_sides = cmp.sides.clone();
        for (side, answer) in bob_sides.iter_mut().zip(cmp.values("bob's token", bob)) {
            side.token = Some(answer.token);
        }
        let root = both!(cmp, "authenticate root", token_mask, |s| s
            .auth()
            .authenticate(pb::AuthenticateRequest {
                name: "root".into(),
                password: "rootpw".into(),
            }));
        let root = cmp.values("root's token", root);
        for (side, answer) in cmp.sides.iter_mut().zip(root) {
            side.token = Some(answer.token);
        }
        let root_sides = std::mem::replace(&mut cmp.sides, bob_sides);
        both!(cmp, "bob puts a key he may write", |s| s
            .kv()
            .put(s.req(put("w", "1"))));
        both!(cmp, "bob puts a key he may not write", |s| s
            .kv()
            .put(s.req(put("r/1", "1"))));
        both!(cmp, "bob reads a prefix he may read", |s| s
            .kv()
            .range(s.req(range("r/", "r0"))));
        both!(cmp, "bob reads past his prefix", |s| s
            .kv()
            .range(s.req(range("r/", "s"))));
        both!(cmp, "bob lists users", |s| s
            .auth()
            .user_list(s.req(pb::AuthUserListRequest {})));
        both!(cmp, "bob gets himself", |s| s.auth().user_get(
            s.req(pb::AuthUserGetRequest { name: "bob".into() })
        ));
        both!(cmp, "bob gets his role", |s| s.auth().role_get(s.req(
            pb::AuthRoleGetRequest {
                role: "reader".into()
            }
        )));
        both!(
            cmp,
            "bob asks for the status",
            &[
                (r#"version: "3\.4\.23""#, r#"version: "3.5.0""#),
                (r"db_size(_in_use)?: \d+", "db_size: N"),
                (r"raft_(applied_)?index: \d+", "raft_index: N")
            ],
            |s| s.maintenance().status(s.req(pb::StatusRequest {}))
        );
        both!(cmp, "bob defragments", |s| s
            .maintenance()
            .defragment(s.req(pb::DefragmentRequest {})));
        both!(cmp, "bob disables auth", |s| s
            .auth()
            .auth_disable(s.req(pb::AuthDisableRequest {})));
        both!(cmp, "a bad token", |s| {
            let mut side = s.clone();
            side.token = Some("not-a-token".into());
            s.kv().range(side.req(range("w", "")))
        });
        cmp.sides = root_sides;
        both!(cmp, "root revokes bob's role", |s| s
            .auth()
            .user_revoke_role(s.req(pb::AuthUserRevokeRoleRequest {
                name: "bob".into(),
                role: "reader".into(),
            })));
        both!(cmp, "root revokes its root role", |s| s
            .auth()
            .user_revoke_role(s.req(pb::AuthUserRevokeRoleRequest {
                name: "root".into(),
                role: "root".into(),
            })));
        both!(cmp, "root deletes the root role", |s| s.auth().role_delete(
            s.req(pb::AuthRoleDeleteRequest {
                role: "root".into()
            })
        ));
        both!(cmp, "root deletes the root user", |s| s.auth().user_delete(
            s.req(pb::AuthUserDeleteRequest {
                name: "root".into()
            })
        ));
        both!(cmp, "root deletes a role", |s| s.auth().role_delete(s.req(
            pb::AuthRoleDeleteRequest {
                role: "reader".into()
            }
        )));
        both!(cmp, "root deletes an unknown role", |s| s
            .auth()
            .role_delete(s.req(pb::AuthRoleDeleteRequest {
                role: "reader".into()
            })));
        both!(cmp, "root deletes a user", |s| s.auth().user_delete(
            s.req(pb::AuthUserDeleteRequest { name: "bob".into() })
        ));
        both!(cmp, "root deletes an unknown user", |s| s
            .auth()
            .user_delete(
                s.req(pb::AuthUserDeleteRequest { name: "bob".into() })
            ));
        both!(cmp, "root disables auth", |s| s
            .auth()
            .auth_disable(s.req(pb::AuthDisableRequest {})));
        both!(cmp, "auth disable again", |s| s
            .auth()
            .auth_disable(pb::AuthDisableRequest {}));
        // 3.5's auth revision went up once for each change that took effect
        // (server/auth/store.go `commitRevision`): 1, then four user adds, two role adds,
        // three grants, a revoke, one role grant (the repeated one is ignored), a password
        // change, root's root role (AuthEnable commits none), bob's role revoked, a role and a
        // user deleted and AuthDisable: 18. The KV revision is 2 (bob's put).
        keel_only!(
            cmp,
            "auth status at the end",
            "Ok(AuthStatusResponse { header: Some(ResponseHeader { cluster_id: CLUSTER, \
             member_id: MEMBER, revision: 2, raft_term: N }), enabled: false, auth_revision: 18 })",
            |s| s.auth().auth_status(pb::AuthStatusRequest {})
        );
        cmp.finish();
    });
}

/// etcd exports Prometheus' process collector; `etcdctl check datascale` reads
/// `process_resident_memory_bytes` from it.
#[test]
fn process_metrics_as_etcds() {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs_f64();
    let etcd = Server::start(Kind::Etcd, &[]);
    let keel = Server::start(Kind::Keel, &[]);
    let names = [
        "process_cpu_seconds_total",
        "process_max_fds",
        "process_open_fds",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "process_virtual_memory_bytes",
        "process_virtual_memory_max_bytes",
    ];
    let scrape = |server: &Server| {
        let (code, body) = http_get(&server.endpoint, "/metrics").expect("GET /metrics");
        assert_eq!(code, 200, "{body}");
        body
    };
    let etcd_text = scrape(&etcd);
    let keel_text = scrape(&keel);
    let value = |text: &str, name: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.split(' ').next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"));
        line[name.len() + 1..]
            .parse()
            .unwrap_or_else(|e| panic!("{line}: {e}"))
    };
    for name in names {
        // The same HELP and TYPE lines as etcd's.
        let described = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.starts_with('#') && l.split(' ').nth(2) == Some(name))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(described(&keel_text), described(&etcd_text), "{name}");
        assert!(value(&etcd_text, name) >= 0.0);
    }
    let rss = value(&keel_text, "process_resident_memory_bytes");
    let virtual_bytes = value(&keel_text, "process_virtual_memory_bytes");
    assert!(
        rss > 1e6 && rss <= virtual_bytes,
        "rss {rss}, virtual {virtual_bytes}"
    );
    let start = value(&keel_text, "process_start_time_seconds");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs_f64();
    // /proc counts the start in clock ticks from a boot time in whole seconds.
    assert!(
        start >= started - 1.0 && start <= now + 1.0,
        "start {start} not in [{started}, {now}]"
    );
    let open = value(&keel_text, "process_open_fds");
    let max = value(&keel_text, "process_max_fds");
    assert!(open >= 3.0 && open < max, "open {open}, max {max}");
    assert!(value(&keel_text, "process_cpu_seconds_total") >= 0.0);
    assert!(value(&keel_text, "process_virtual_memory_max_bytes") >= virtual_bytes);
    // The value etcdctl reads moves with the process: the counter never goes back.
    let cpu_before = value(&keel_text, "process_cpu_seconds_total");
    let again = scrape(&keel);
    assert!(value(&again, "process_cpu_seconds_total") >= cpu_before);

    // etcdctl's data scale check: 10000 puts of 1 KiB, then the memory it read from
    // process_resident_memory_bytes before and after.
    let output = keel.etcdctl(&["check", "datascale", "--load=s"], None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("PASS: Approximate system memory used"),
        "etcdctl check datascale failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    drop(etcd);
}
