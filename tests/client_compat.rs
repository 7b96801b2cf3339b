//! gRPC-level compatibility: etcd's v3 API driven directly (tonic clients generated from
//! etcd's own .proto files, in keel-proto) against keel and, where the answer is defined by
//! etcd's behaviour, against upstream etcd too. These cover what etcdctl cannot express:
//! watch fragments, progress notifications and requests, nested transactions, many watchers on
//! one stream, compacted watches, lease expiry and the keep-alive stream.

mod common;

use common::ops::{block_on, within};
use common::{Kind, Server};
use futures::channel::mpsc;
use futures::StreamExt;
use keel_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::lease_client::LeaseClient;
use keel_proto::etcdserverpb::request_op::Request as Op;
use keel_proto::etcdserverpb::response_op::Response as OpResponse;
use keel_proto::etcdserverpb::watch_client::WatchClient;
use keel_proto::etcdserverpb::watch_request::RequestUnion;
use keel_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest,
    PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest, WatchProgressRequest,
    WatchRequest, WatchResponse,
};
use keel_proto::mvccpb::event::EventType;
use keel_proto::mvccpb::Event;
use regex::Regex;
use tonic::transport::Channel;
use tonic::Streaming;

async fn channel(server: &Server) -> Channel {
    within(
        "connect",
        Channel::from_shared(server.url())
            .expect("valid url")
            .connect(),
    )
    .await
    .unwrap_or_else(|e| panic!("connect to {:?} at {}: {e}", server.kind, server.endpoint))
}

/// Debug text of a response with what may differ between servers masked: cluster and member
/// ids, raft terms and lease ids. Revisions stay.
fn masked(value: &impl std::fmt::Debug) -> String {
    let text = format!("{value:?}");
    let re = Regex::new(r"\b(cluster_id|member_id|raft_term|lease|id): -?\d+").unwrap();
    re.replace_all(&text, "$1: N").into_owned()
}

fn put(key: &str, value: &[u8]) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.to_vec(),
        ..Default::default()
    }
}

/// A bidirectional watch stream: requests go in through `tx`, responses come out of `rx`.
struct WatchStream {
    tx: mpsc::UnboundedSender<WatchRequest>,
    rx: Streaming<WatchResponse>,
}

impl WatchStream {
    /// Opens a stream whose first request is `first`. The request goes out before the
    /// response headers are awaited because etcd (grpc-go) sends no headers before its first
    /// response.
    async fn open(channel: Channel, first: WatchCreateRequest) -> WatchStream {
        let (tx, requests) = mpsc::unbounded();
        tx.unbounded_send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(first)),
        })
        .expect("queue the first watch request");
        let rx = within("watch", WatchClient::new(channel).watch(requests))
            .await
            .expect("open the watch stream")
            .into_inner();
        WatchStream { tx, rx }
    }

    fn send(&self, request: RequestUnion) {
        self.tx
            .unbounded_send(WatchRequest {
                request_union: Some(request),
            })
            .expect("send a watch request");
    }

    fn create(&self, create: WatchCreateRequest) {
        self.send(RequestUnion::CreateRequest(create));
    }

    async fn next(&mut self) -> WatchResponse {
        within("watch response", self.rx.next())
            .await
            .expect("the watch stream ended")
            .expect("watch stream error")
    }
}

fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().expect("non-empty prefix") += 1;
    end
}

/// Watch responses carrying events, with fragments reassembled: (fragment flags, events).
async fn collect_events(stream: &mut WatchStream, want: usize) -> (Vec<(bool, usize)>, Vec<Event>) {
    let mut shape = Vec::new();
    let mut events = Vec::new();
    while events.len() < want {
        let response = stream.next().await;
        assert!(!response.canceled, "watch canceled: {response:?}");
        if response.events.is_empty() {
            continue;
        }
        shape.push((response.fragment, response.events.len()));
        events.extend(response.events);
    }
    (shape, events)
}

/// Watch responses larger than the server's limit, for watchers that asked for fragments.
/// etcd's limit for a watch response is `--max-request-bytes` plus 512 KiB of gRPC overhead;
/// above it a response is split into pieces flagged `fragment` on all but the last. Both a
/// catch-up response (history from revision 1) and a live one (one delete of many keys, with
/// previous values) are checked; the reassembled events and the split must match etcd's.
#[test]
fn watch_fragments_large_responses() {
    let results = fragment_runs();
    let (etcd, keel) = (&results[0], &results[1]);
    for (name, shape) in [("history", &etcd.0), ("live", &etcd.2)] {
        assert!(
            shape.len() > 1,
            "etcd did not fragment the {name} response: {shape:?}"
        );
    }
    for (name, shape) in [("history", &keel.0), ("live", &keel.2)] {
        let (last, rest) = shape.split_last().expect("some responses");
        assert!(
            shape.len() > 1 && !last.0 && rest.iter().all(|(f, _)| *f),
            "keel {name} fragments: {}",
            shape_text(shape)
        );
    }
    assert_eq!(etcd.1, keel.1, "history events: etcd (left), keel (right)");
    assert_eq!(etcd.3, keel.3, "live events: etcd (left), keel (right)");
    assert_eq!(
        keel.4,
        vec![(false, FRAGMENT_KEYS)],
        "keel without fragment"
    );
    assert_eq!(etcd.4, keel.4);
}

/// etcd splits a watch response only above `--max-request-bytes` + 512 KiB (its gRPC overhead
/// allowance), packing as many events as fit into each fragment.
#[test]
fn watch_fragment_sizes_match_etcd() {
    let results = fragment_runs();
    let (etcd, keel) = (&results[0], &results[1]);
    assert_eq!(
        (shape_text(&etcd.0), shape_text(&etcd.2)),
        (shape_text(&keel.0), shape_text(&keel.2)),
        "(history, live): etcd (left), keel (right)"
    );
}

/// Number of keys written by [`fragment_runs`].
const FRAGMENT_KEYS: usize = 700;

/// A fragment shape as text: event counts per response, `f` marking fragments, runs of equal
/// responses written `NxR`.
fn shape_text(shape: &[(bool, usize)]) -> String {
    let mut parts: Vec<(String, usize)> = Vec::new();
    for (fragment, events) in shape {
        let part = format!("{events}{}", if *fragment { "f" } else { "" });
        match parts.last_mut() {
            Some((last, run)) if *last == part => *run += 1,
            _ => parts.push((part, 1)),
        }
    }
    let parts: Vec<String> = parts
        .into_iter()
        .map(|(part, run)| {
            if run == 1 {
                part
            } else {
                format!("{run}x{part}")
            }
        })
        .collect();
    parts.join(",")
}

/// What one server did in [`fragment_runs`].
type FragmentRun = (
    Vec<(bool, usize)>,
    String,
    Vec<(bool, usize)>,
    String,
    Vec<(bool, usize)>,
);

/// Per server (etcd, keel): the fragment shape and events of a catch-up watch, the same of a
/// live watch with previous values, and the shape of the live watch without fragments.
fn fragment_runs() -> Vec<FragmentRun> {
    const KEYS: usize = FRAGMENT_KEYS;
    let flags = ["--max-request-bytes=1024"];
    let mut results = Vec::new();
    for kind in [Kind::Etcd, Kind::Keel] {
        let server = Server::start(kind, &flags);
        results.push(block_on(async {
            let channel = channel(&server).await;
            let mut kv = KvClient::new(channel.clone());
            for i in 0..KEYS {
                let value = vec![b'a' + (i % 26) as u8; 900];
                within("put", kv.put(put(&format!("big{i:04}"), &value)))
                    .await
                    .expect("put");
            }
            let watch = |start_revision, fragment, prev_kv| WatchCreateRequest {
                key: b"big".to_vec(),
                range_end: prefix_end("big"),
                start_revision,
                fragment,
                prev_kv,
                ..Default::default()
            };
            let mut history = WatchStream::open(channel.clone(), watch(1, true, false)).await;
            assert!(history.next().await.created);
            let (history_shape, history_events) = collect_events(&mut history, KEYS).await;
            let mut live = WatchStream::open(channel.clone(), watch(0, true, true)).await;
            assert!(live.next().await.created);
            let mut whole = WatchStream::open(channel, watch(0, false, true)).await;
            assert!(whole.next().await.created);
            let deleted = within(
                "delete",
                kv.delete_range(DeleteRangeRequest {
                    key: b"big".to_vec(),
                    range_end: prefix_end("big"),
                    ..Default::default()
                }),
            )
            .await
            .expect("delete")
            .into_inner();
            assert_eq!(deleted.deleted, KEYS as i64);
            let (live_shape, live_events) = collect_events(&mut live, KEYS).await;
            let (whole_shape, whole_events) = collect_events(&mut whole, KEYS).await;
            assert_eq!(masked(&live_events), masked(&whole_events), "{kind:?}");
            (
                history_shape,
                masked(&history_events),
                live_shape,
                masked(&live_events),
                whole_shape,
            )
        }));
    }
    results
}

/// With `--experimental-watch-progress-notify-interval 1s`, an idle watcher that asked for
/// progress notifications gets empty responses carrying the current revision.
#[test]
fn progress_notifications() {
    for kind in [Kind::Etcd, Kind::Keel] {
        let server = Server::start(kind, &["--experimental-watch-progress-notify-interval=1s"]);
        block_on(async {
            let channel = channel(&server).await;
            let mut kv = KvClient::new(channel.clone());
            for i in 0..3 {
                within("put", kv.put(put(&format!("p{i}"), b"v")))
                    .await
                    .expect("put");
            }
            let mut stream = WatchStream::open(
                channel,
                WatchCreateRequest {
                    key: b"p".to_vec(),
                    range_end: prefix_end("p"),
                    start_revision: 1,
                    progress_notify: true,
                    ..Default::default()
                },
            )
            .await;
            let created = stream.next().await;
            assert!(created.created, "{kind:?}: {created:?}");
            let (_, events) = collect_events(&mut stream, 3).await;
            assert_eq!(events.len(), 3);
            // Two notifications in a row: the watcher keeps getting them while idle.
            for _ in 0..2 {
                let notify = stream.next().await;
                assert!(notify.events.is_empty(), "{kind:?}: {notify:?}");
                assert!(!notify.canceled && !notify.created, "{kind:?}: {notify:?}");
                assert_eq!(notify.watch_id, created.watch_id, "{kind:?}: {notify:?}");
                assert_eq!(notify.header.unwrap().revision, 4, "{kind:?}");
            }
        });
    }
}

/// A progress request on a stream whose watchers are all synced answers with the current
/// revision, the same way on both servers.
#[test]
fn progress_request() {
    let mut answers = Vec::new();
    for kind in [Kind::Etcd, Kind::Keel] {
        let server = Server::start(kind, &[]);
        answers.push(block_on(async {
            let channel = channel(&server).await;
            let mut kv = KvClient::new(channel.clone());
            within("put", kv.put(put("r1", b"v"))).await.expect("put");
            within("put", kv.put(put("r2", b"v"))).await.expect("put");
            let mut stream = WatchStream::open(
                channel,
                WatchCreateRequest {
                    key: b"r".to_vec(),
                    range_end: prefix_end("r"),
                    ..Default::default()
                },
            )
            .await;
            let created = stream.next().await;
            assert!(created.created);
            stream.send(RequestUnion::ProgressRequest(WatchProgressRequest {}));
            let progress = stream.next().await;
            assert!(progress.events.is_empty(), "{kind:?}: {progress:?}");
            assert_eq!(progress.header.as_ref().unwrap().revision, 3, "{kind:?}");
            // Events keep flowing after the progress response.
            within("put", kv.put(put("r3", b"v"))).await.expect("put");
            let event = stream.next().await;
            assert_eq!(event.events.len(), 1, "{kind:?}: {event:?}");
            (masked(&created), masked(&progress), masked(&event))
        }));
    }
    assert_eq!(answers[0], answers[1], "etcd (left), keel (right)");
}

fn compare_value(key: &str, value: &str) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Value as i32,
        key: key.as_bytes().to_vec(),
        target_union: Some(TargetUnion::Value(value.as_bytes().to_vec())),
        ..Default::default()
    }
}

/// A transaction inside a transaction (etcd 3.3+): inner compares see the outer writes, and
/// the nested responses and revisions match etcd's.
#[test]
fn nested_transactions() {
    let mut answers = Vec::new();
    for kind in [Kind::Etcd, Kind::Keel] {
        let server = Server::start(kind, &[]);
        answers.push(block_on(async {
            let mut kv = KvClient::new(channel(&server).await);
            within("put", kv.put(put("n", b"0"))).await.expect("put");
            let inner = TxnRequest {
                compare: vec![compare_value("n", "0")],
                success: vec![
                    RequestOp {
                        request: Some(Op::RequestPut(put("inner", b"yes"))),
                    },
                    RequestOp {
                        request: Some(Op::RequestRange(RangeRequest {
                            key: b"n".to_vec(),
                            ..Default::default()
                        })),
                    },
                ],
                failure: vec![RequestOp {
                    request: Some(Op::RequestPut(put("inner", b"no"))),
                }],
            };
            let outer = TxnRequest {
                compare: vec![compare_value("n", "0")],
                success: vec![
                    RequestOp {
                        request: Some(Op::RequestTxn(inner.clone())),
                    },
                    RequestOp {
                        request: Some(Op::RequestPut(put("outer", b"1"))),
                    },
                ],
                failure: vec![],
            };
            let first = within("txn", kv.txn(outer.clone()))
                .await
                .expect("txn")
                .into_inner();
            assert!(first.succeeded);
            match &first.responses[0].response {
                Some(OpResponse::ResponseTxn(t)) => assert!(t.succeeded, "{kind:?}: {t:?}"),
                other => panic!("{kind:?}: {other:?}"),
            }
            within("put", kv.put(put("n", b"1"))).await.expect("put");
            // The outer compare now fails; put the nested txn into the failure branch too.
            let mut outer2 = outer.clone();
            outer2.failure = vec![RequestOp {
                request: Some(Op::RequestTxn(inner)),
            }];
            let second = within("txn", kv.txn(outer2))
                .await
                .expect("txn")
                .into_inner();
            let all = within(
                "range",
                kv.range(RangeRequest {
                    key: vec![0],
                    range_end: vec![0],
                    ..Default::default()
                }),
            )
            .await
            .expect("range")
            .into_inner();
            (masked(&first), masked(&second), masked(&all))
        }));
    }
    assert_eq!(answers[0], answers[1], "etcd (left), keel (right)");
}

/// 150 watchers on one stream, one key each, all receive their event, and the watch ids are
/// assigned as etcd assigns them.
#[test]
fn many_watchers_on_one_stream() {
    const WATCHERS: usize = 150;
    let mut ids = Vec::new();
    for kind in [Kind::Etcd, Kind::Keel] {
        let server = Server::start(kind, &[]);
        ids.push(block_on(async {
            let channel = channel(&server).await;
            let watch_key = |i: usize| WatchCreateRequest {
                key: format!("w{i:03}").into_bytes(),
                ..Default::default()
            };
            let mut stream = WatchStream::open(channel.clone(), watch_key(0)).await;
            let mut created_ids = Vec::new();
            for i in 1..WATCHERS {
                stream.create(WatchCreateRequest {
                    key: format!("w{i:03}").into_bytes(),
                    ..Default::default()
                });
            }
            // Creation answers come in request order.
            for _ in 0..WATCHERS {
                let created = stream.next().await;
                assert!(created.created, "{kind:?}: {created:?}");
                created_ids.push(created.watch_id);
            }
            let mut kv = KvClient::new(channel);
            for i in 0..WATCHERS {
                within("put", kv.put(put(&format!("w{i:03}"), b"v")))
                    .await
                    .expect("put");
            }
            let mut seen = [false; WATCHERS];
            let mut count = 0;
            while count < WATCHERS {
                let response = stream.next().await;
                assert_eq!(response.events.len(), 1, "{kind:?}: {response:?}");
                let key =
                    String::from_utf8(response.events[0].kv.as_ref().unwrap().key.clone()).unwrap();
                let index: usize = key[1..].parse().unwrap();
                assert_eq!(created_ids[index], response.watch_id, "{kind:?}: {key}");
                assert!(!seen[index], "{kind:?}: duplicate event for {key}");
                seen[index] = true;
                count += 1;
            }
            created_ids
        }));
    }
    assert_eq!(ids[0], ids[1], "watch ids: etcd (left), keel (right)");
}

/// A watch that starts below the compacted revision is canceled with `compact_revision`.
#[test]
fn watch_from_compacted_revision() {
    let mut answers = Vec::new();
    for kind in [Kind::Etcd, Kind::Keel] {
        let server = Server::start(kind, &[]);
        answers.push(block_on(async {
            let channel = channel(&server).await;
            let mut kv = KvClient::new(channel.clone());
            for i in 0..6 {
                within("put", kv.put(put("c", format!("{i}").as_bytes())))
                    .await
                    .expect("put");
            }
            within(
                "compact",
                kv.compact(CompactionRequest {
                    revision: 5,
                    physical: true,
                }),
            )
            .await
            .expect("compact");
            let mut stream = WatchStream::open(
                channel,
                WatchCreateRequest {
                    key: b"c".to_vec(),
                    start_revision: 2,
                    ..Default::default()
                },
            )
            .await;
            let mut responses = vec![stream.next().await];
            if responses[0].created && !responses[0].canceled {
                responses.push(stream.next().await);
            }
            let last = responses.last().unwrap();
            assert!(last.canceled, "{kind:?}: {responses:?}");
            assert_eq!(last.compact_revision, 5, "{kind:?}: {responses:?}");
            // The stream stays usable: a watch from the compacted revision itself works.
            stream.create(WatchCreateRequest {
                key: b"c".to_vec(),
                start_revision: 5,
                ..Default::default()
            });
            let created = stream.next().await;
            assert!(
                created.created && !created.canceled,
                "{kind:?}: {created:?}"
            );
            let (_, events) = collect_events(&mut stream, 3).await;
            (masked(&responses), masked(&events))
        }));
    }
    assert_eq!(answers[0], answers[1], "etcd (left), keel (right)");
}

/// When a lease expires, every key attached to it is deleted in one revision, and a watcher
/// sees all the delete events in one response.
#[test]
fn lease_expiry_deletes_attached_keys() {
    let mut answers = Vec::new();
    for kind in [Kind::Etcd, Kind::Keel] {
        let server = Server::start(kind, &[]);
        answers.push(block_on(async {
            let channel = channel(&server).await;
            let mut lease = LeaseClient::new(channel.clone());
            let granted = within(
                "grant",
                lease.lease_grant(LeaseGrantRequest { ttl: 2, id: 0 }),
            )
            .await
            .expect("grant")
            .into_inner();
            let mut kv = KvClient::new(channel.clone());
            for key in ["e1", "e2", "e3"] {
                let mut request = put(key, b"v");
                request.lease = granted.id;
                within("put", kv.put(request)).await.expect("put");
            }
            within("put", kv.put(put("e4", b"no lease")))
                .await
                .expect("put");
            let mut stream = WatchStream::open(
                channel,
                WatchCreateRequest {
                    key: b"e".to_vec(),
                    range_end: prefix_end("e"),
                    start_revision: 6,
                    ..Default::default()
                },
            )
            .await;
            assert!(stream.next().await.created);
            let deletes = stream.next().await;
            assert_eq!(deletes.events.len(), 3, "{kind:?}: {deletes:?}");
            for event in &deletes.events {
                assert_eq!(
                    event.r#type,
                    EventType::Delete as i32,
                    "{kind:?}: {event:?}"
                );
                assert_eq!(
                    event.kv.as_ref().unwrap().mod_revision,
                    6,
                    "{kind:?}: {event:?}"
                );
            }
            let left = within(
                "range",
                kv.range(RangeRequest {
                    key: b"e".to_vec(),
                    range_end: prefix_end("e"),
                    ..Default::default()
                }),
            )
            .await
            .expect("range")
            .into_inner();
            (masked(&deletes.events), masked(&left))
        }));
    }
    assert_eq!(answers[0], answers[1], "etcd (left), keel (right)");
}

/// The keep-alive stream answers each request with the lease's TTL, and an unknown lease with
/// TTL 0, on one stream.
#[test]
fn keep_alive_stream() {
    let mut answers = Vec::new();
    for kind in [Kind::Etcd, Kind::Keel] {
        let server = Server::start(kind, &[]);
        answers.push(block_on(async {
            let mut lease = LeaseClient::new(channel(&server).await);
            let granted = within(
                "grant",
                lease.lease_grant(LeaseGrantRequest { ttl: 30, id: 0 }),
            )
            .await
            .expect("grant")
            .into_inner();
            let (tx, requests) = mpsc::unbounded();
            // The first request goes out before the headers are awaited (see WatchStream).
            tx.unbounded_send(LeaseKeepAliveRequest { id: granted.id })
                .unwrap();
            let mut responses = within("keep-alive", lease.lease_keep_alive(requests))
                .await
                .expect("open the keep-alive stream")
                .into_inner();
            let mut seen = Vec::new();
            for (n, id) in [granted.id, granted.id, 0x1234, granted.id]
                .into_iter()
                .enumerate()
            {
                if n > 0 {
                    tx.unbounded_send(LeaseKeepAliveRequest { id }).unwrap();
                }
                let response = within("keep-alive response", responses.next())
                    .await
                    .expect("stream ended")
                    .expect("keep-alive error");
                assert_eq!(response.id, id, "{kind:?}");
                seen.push((response.id == granted.id, response.ttl));
            }
            // Explicit ids are honoured.
            let fixed = within(
                "grant",
                lease.lease_grant(LeaseGrantRequest {
                    ttl: 30,
                    id: 0x4242,
                }),
            )
            .await
            .expect("grant")
            .into_inner();
            assert_eq!(fixed.id, 0x4242, "{kind:?}");
            let again = lease.lease_grant(LeaseGrantRequest {
                ttl: 30,
                id: 0x4242,
            });
            let error = within("grant", again)
                .await
                .expect_err("duplicate lease id");
            (seen, error.code(), error.message().to_string())
        }));
    }
    assert_eq!(answers[0], answers[1], "etcd (left), keel (right)");
    assert_eq!(
        answers[1].0,
        vec![(true, 30), (true, 30), (false, 0), (true, 30)]
    );
}

/// Event filters, explicit watch ids (and a duplicate one), and cancel requests, known and
/// unknown, on one stream: the whole transcript must match etcd's.
#[test]
fn watch_filters_ids_and_cancel() {
    watch_transcripts(false);
}

/// A create request reusing a watch id that is in use on the stream is refused with
/// `watch_id: -1` (etcd's mvcc returns -1 with ErrWatcherDuplicateID).
#[test]
fn watch_duplicate_id() {
    watch_transcripts(true);
}

/// With `duplicate`, a create that reuses id 7 is part of the transcript.
fn watch_transcripts(duplicate: bool) {
    use keel_proto::etcdserverpb::watch_create_request::FilterType;
    use keel_proto::etcdserverpb::WatchCancelRequest;
    let mut transcripts = Vec::new();
    for kind in [Kind::Etcd, Kind::Keel] {
        let server = Server::start(kind, &[]);
        transcripts.push(block_on(async {
            let channel = channel(&server).await;
            let watch =
                |key: &str, range_end: Vec<u8>, filters: Vec<i32>, watch_id| WatchCreateRequest {
                    key: key.as_bytes().to_vec(),
                    range_end,
                    filters,
                    watch_id,
                    ..Default::default()
                };
            let no_put = vec![FilterType::Noput as i32];
            let no_delete = vec![FilterType::Nodelete as i32];
            let mut stream =
                WatchStream::open(channel.clone(), watch("f", prefix_end("f"), no_put, 0)).await;
            let mut transcript = vec![stream.next().await];
            stream.create(watch("f", prefix_end("f"), no_delete, 7));
            transcript.push(stream.next().await);
            if duplicate {
                stream.create(watch("g", vec![], vec![], 7));
                transcript.push(stream.next().await);
            }
            stream.create(watch("h", vec![], vec![], 0));
            transcript.push(stream.next().await);
            let mut kv = KvClient::new(channel);
            within("put", kv.put(put("f1", b"v"))).await.expect("put");
            transcript.push(stream.next().await);
            within(
                "delete",
                kv.delete_range(DeleteRangeRequest {
                    key: b"f1".to_vec(),
                    ..Default::default()
                }),
            )
            .await
            .expect("delete");
            transcript.push(stream.next().await);
            stream.send(RequestUnion::CancelRequest(WatchCancelRequest {
                watch_id: 7,
            }));
            transcript.push(stream.next().await);
            // An unknown id gets no answer at all; the next response is the event below.
            stream.send(RequestUnion::CancelRequest(WatchCancelRequest {
                watch_id: 99,
            }));
            within("put", kv.put(put("f2", b"v"))).await.expect("put");
            within("put", kv.put(put("h", b"v"))).await.expect("put");
            transcript.push(stream.next().await);
            transcript.iter().map(masked).collect::<Vec<_>>()
        }));
    }
    for (etcd, keel) in transcripts[0].iter().zip(&transcripts[1]) {
        assert_eq!(etcd, keel, "etcd (left), keel (right)");
    }
}
