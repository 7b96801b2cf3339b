//! Wire-format checks for etcd's messages.
//!
//! Each expected byte string below was worked out by hand from etcd's published field numbers
//! and protobuf's encoding rules (a field's tag byte is `number << 3 | wire_type`, with wire
//! type 0 for varints and 2 for length-delimited fields), not produced by running the encoder.
//! A wrong field number, a wrong scalar type or a wrong oneof placement in our .proto files
//! changes the bytes and fails the test.

use keel_proto::authpb::{permission, Permission};
use keel_proto::etcdserverpb::{
    compare, range_request, request_op, watch_create_request, watch_request, Compare,
    DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveResponse, LeaseTimeToLiveResponse, Member,
    PutRequest, RangeRequest, RequestOp, ResponseHeader, StatusResponse, TxnRequest,
    WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use keel_proto::etcdserverpb::{AuthRoleGrantPermissionRequest, HashKvResponse};
use keel_proto::mvccpb::{event, Event, KeyValue};
use keel_proto::v3electionpb::{CampaignRequest, LeaderKey};
use keel_proto::v3lockpb::LockRequest;
use prost::Message;

/// Encodes `message`, compares with `expected`, and decodes `expected` back to check the
/// reverse direction too (what a real etcd client sends must parse to the same message).
fn assert_wire<M>(message: &M, expected: &[u8])
where
    M: Message + Default + PartialEq + std::fmt::Debug,
{
    let encoded = message.encode_to_vec();
    assert_eq!(
        encoded, expected,
        "encoding of {message:?} differs from the hand-computed bytes"
    );
    let decoded = M::decode(expected).expect("hand-computed bytes must decode");
    assert_eq!(&decoded, message);
}

#[test]
fn put_request_fields() {
    // key=1 (bytes), value=2 (bytes), lease=3 (varint), prev_kv=4 (varint).
    let put = PutRequest {
        key: b"a".to_vec(),
        value: b"b".to_vec(),
        lease: 7,
        prev_kv: true,
        ..Default::default()
    };
    assert_wire(
        &put,
        &[0x0a, 0x01, b'a', 0x12, 0x01, b'b', 0x18, 0x07, 0x20, 0x01],
    );

    // ignore_value=5, ignore_lease=6.
    let put = PutRequest {
        ignore_value: true,
        ignore_lease: true,
        ..Default::default()
    };
    assert_wire(&put, &[0x28, 0x01, 0x30, 0x01]);
}

#[test]
fn range_request_fields() {
    let range = RangeRequest {
        key: b"a".to_vec(),
        range_end: b"b".to_vec(),
        limit: 5,
        revision: 6,
        sort_order: range_request::SortOrder::Descend as i32,
        sort_target: range_request::SortTarget::Mod as i32,
        serializable: true,
        keys_only: true,
        count_only: true,
        min_mod_revision: 1,
        max_mod_revision: 2,
        min_create_revision: 3,
        max_create_revision: 4,
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x01, b'a', // key = 1
        0x12, 0x01, b'b', // range_end = 2
        0x18, 0x05,       // limit = 3
        0x20, 0x06,       // revision = 4
        0x28, 0x02,       // sort_order = 5: DESCEND = 2
        0x30, 0x03,       // sort_target = 6: MOD = 3
        0x38, 0x01,       // serializable = 7
        0x40, 0x01,       // keys_only = 8
        0x48, 0x01,       // count_only = 9
        0x50, 0x01,       // min_mod_revision = 10
        0x58, 0x02,       // max_mod_revision = 11
        0x60, 0x03,       // min_create_revision = 12
        0x68, 0x04,       // max_create_revision = 13
    ];
    assert_wire(&range, &expected);
}

#[test]
fn compare_mod_revision() {
    // result=1 (LESS = 2), target=2 (MOD = 2), key=3, target_union.mod_revision=6.
    let cmp = Compare {
        result: compare::CompareResult::Less as i32,
        target: compare::CompareTarget::Mod as i32,
        key: b"k".to_vec(),
        target_union: Some(compare::TargetUnion::ModRevision(5)),
        range_end: Vec::new(),
    };
    assert_wire(
        &cmp,
        &[0x08, 0x02, 0x10, 0x02, 0x1a, 0x01, b'k', 0x30, 0x05],
    );
}

#[test]
fn compare_version_zero_is_sent() {
    // "version == 0" (the key does not exist) is the most common transaction guard. Because
    // version sits in a oneof, the zero must still appear on the wire as field 4; a plain
    // proto3 scalar would drop it. EQUAL and VERSION are both 0 and are omitted.
    let cmp = Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Version as i32,
        key: b"k".to_vec(),
        target_union: Some(compare::TargetUnion::Version(0)),
        range_end: Vec::new(),
    };
    assert_wire(&cmp, &[0x1a, 0x01, b'k', 0x20, 0x00]);
}

#[test]
fn compare_other_targets_and_range_end() {
    // create_revision=5, value=7, lease=8, and range_end=64, whose tag 64<<3|2 = 514 needs
    // two varint bytes: 0x82 0x04.
    let create = Compare {
        target: compare::CompareTarget::Create as i32,
        target_union: Some(compare::TargetUnion::CreateRevision(3)),
        ..Default::default()
    };
    assert_wire(&create, &[0x10, 0x01, 0x28, 0x03]);

    let value = Compare {
        result: compare::CompareResult::NotEqual as i32,
        target: compare::CompareTarget::Value as i32,
        target_union: Some(compare::TargetUnion::Value(b"v".to_vec())),
        ..Default::default()
    };
    assert_wire(&value, &[0x08, 0x03, 0x10, 0x03, 0x3a, 0x01, b'v']);

    let lease = Compare {
        result: compare::CompareResult::Greater as i32,
        target: compare::CompareTarget::Lease as i32,
        key: b"k".to_vec(),
        target_union: Some(compare::TargetUnion::Lease(9)),
        range_end: b"l".to_vec(),
    };
    assert_wire(
        &lease,
        &[
            0x08, 0x01, 0x10, 0x04, 0x1a, 0x01, b'k', 0x40, 0x09, 0x82, 0x04, 0x01, b'l',
        ],
    );
}

#[test]
fn txn_request_oneof_branches() {
    // success=2 holds RequestOp.request_put (2); failure=3 holds request_delete_range (3);
    // a nested transaction is request_txn (4).
    let txn = TxnRequest {
        compare: Vec::new(),
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: b"a".to_vec(),
                ..Default::default()
            })),
        }],
        failure: vec![
            RequestOp {
                request: Some(request_op::Request::RequestDeleteRange(
                    DeleteRangeRequest {
                        key: b"a".to_vec(),
                        ..Default::default()
                    },
                )),
            },
            RequestOp {
                request: Some(request_op::Request::RequestTxn(TxnRequest::default())),
            },
        ],
    };
    #[rustfmt::skip]
    let expected = [
        0x12, 0x05, 0x12, 0x03, 0x0a, 0x01, b'a', // success[0].request_put.key
        0x1a, 0x05, 0x1a, 0x03, 0x0a, 0x01, b'a', // failure[0].request_delete_range.key
        0x1a, 0x02, 0x22, 0x00,                   // failure[1].request_txn = {}
    ];
    assert_wire(&txn, &expected);

    // request_range is field 1 and compare is field 1 of TxnRequest.
    let txn = TxnRequest {
        compare: vec![Compare {
            key: b"k".to_vec(),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest::default())),
        }],
        failure: Vec::new(),
    };
    assert_wire(
        &txn,
        &[0x0a, 0x03, 0x1a, 0x01, b'k', 0x12, 0x02, 0x0a, 0x00],
    );
}

#[test]
fn watch_create_request_fields() {
    let watch = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: b"k".to_vec(),
                range_end: b"l".to_vec(),
                start_revision: 10,
                progress_notify: true,
                filters: vec![watch_create_request::FilterType::Nodelete as i32],
                prev_kv: true,
                watch_id: 3,
                fragment: true,
            },
        )),
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x13,       // create_request = 1, 19 bytes
        0x0a, 0x01, b'k', // key = 1
        0x12, 0x01, b'l', // range_end = 2
        0x18, 0x0a,       // start_revision = 3
        0x20, 0x01,       // progress_notify = 4
        0x2a, 0x01, 0x01, // filters = 5, packed: [NODELETE = 1]
        0x30, 0x01,       // prev_kv = 6
        0x38, 0x03,       // watch_id = 7
        0x40, 0x01,       // fragment = 8
    ];
    assert_wire(&watch, &expected);
}

#[test]
fn watch_cancel_and_progress_requests() {
    let cancel = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CancelRequest(
            WatchCancelRequest { watch_id: 5 },
        )),
    };
    assert_wire(&cancel, &[0x12, 0x02, 0x08, 0x05]);

    // An empty progress request is still sent, as field 3 with length 0.
    let progress = WatchRequest {
        request_union: Some(watch_request::RequestUnion::ProgressRequest(
            WatchProgressRequest {},
        )),
    };
    assert_wire(&progress, &[0x1a, 0x00]);
}

#[test]
fn watch_response_fields() {
    let response = WatchResponse {
        header: Some(ResponseHeader {
            revision: 4,
            ..Default::default()
        }),
        watch_id: 1,
        created: true,
        canceled: true,
        compact_revision: 2,
        cancel_reason: "x".to_owned(),
        fragment: true,
        events: vec![Event {
            r#type: event::EventType::Delete as i32,
            kv: Some(KeyValue {
                key: b"k".to_vec(),
                mod_revision: 4,
                ..Default::default()
            }),
            prev_kv: None,
        }],
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x02, 0x18, 0x04, // header = 1 { revision = 3 }
        0x10, 0x01,             // watch_id = 2
        0x18, 0x01,             // created = 3
        0x20, 0x01,             // canceled = 4
        0x28, 0x02,             // compact_revision = 5
        0x32, 0x01, b'x',       // cancel_reason = 6
        0x38, 0x01,             // fragment = 7
        0x5a, 0x09,             // events = 11, 9 bytes
        0x08, 0x01,             //   type = 1: DELETE = 1
        0x12, 0x05,             //   kv = 2, 5 bytes
        0x0a, 0x01, b'k',       //     key = 1
        0x18, 0x04,             //     mod_revision = 3
    ];
    assert_wire(&response, &expected);
}

#[test]
fn key_value_and_event_fields() {
    let kv = KeyValue {
        key: b"k".to_vec(),
        create_revision: 1,
        mod_revision: 2,
        version: 3,
        value: b"v".to_vec(),
        lease: 4,
    };
    assert_wire(
        &kv,
        &[
            0x0a, 0x01, b'k', 0x10, 0x01, 0x18, 0x02, 0x20, 0x03, 0x2a, 0x01, b'v', 0x30, 0x04,
        ],
    );

    let event = Event {
        r#type: event::EventType::Put as i32,
        kv: None,
        prev_kv: Some(KeyValue {
            version: 1,
            ..Default::default()
        }),
    };
    assert_wire(&event, &[0x1a, 0x02, 0x20, 0x01]);
}

#[test]
fn response_header_fields() {
    let header = ResponseHeader {
        cluster_id: 1,
        member_id: 2,
        revision: 3,
        raft_term: 4,
    };
    assert_wire(&header, &[0x08, 0x01, 0x10, 0x02, 0x18, 0x03, 0x20, 0x04]);
}

#[test]
fn negative_int64_uses_ten_byte_varint() {
    // etcd's revisions and TTLs are int64 (not sint64): -1 encodes as ten bytes of
    // two's-complement varint. LeaseTimeToLive answers TTL -1 for a missing lease.
    let response = LeaseTimeToLiveResponse {
        ttl: -1,
        granted_ttl: 4,
        keys: vec![b"k".to_vec()],
        ..Default::default()
    };
    #[rustfmt::skip]
    let expected = [
        0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, // TTL = 3
        0x20, 0x04,       // grantedTTL = 4
        0x2a, 0x01, b'k', // keys = 5
    ];
    assert_wire(&response, &expected);
}

#[test]
fn lease_fields() {
    // LeaseGrantRequest: TTL = 1, ID = 2 (the reverse of the response's order).
    assert_wire(
        &LeaseGrantRequest { ttl: 10, id: 7 },
        &[0x08, 0x0a, 0x10, 0x07],
    );
    // LeaseKeepAliveResponse: ID = 2, TTL = 3.
    assert_wire(
        &LeaseKeepAliveResponse {
            header: None,
            id: 7,
            ttl: 10,
        },
        &[0x10, 0x07, 0x18, 0x0a],
    );
}

#[test]
fn member_fields() {
    let member = Member {
        id: 1,
        name: "n".to_owned(),
        peer_ur_ls: vec!["p".to_owned()],
        client_ur_ls: vec!["c".to_owned()],
        is_learner: true,
    };
    assert_wire(
        &member,
        &[
            0x08, 0x01, 0x12, 0x01, b'n', 0x1a, 0x01, b'p', 0x22, 0x01, b'c', 0x28, 0x01,
        ],
    );
}

#[test]
fn status_response_fields() {
    let status = StatusResponse {
        version: "3".to_owned(),
        db_size: 1,
        leader: 5,
        raft_index: 6,
        raft_term: 2,
        raft_applied_index: 7,
        errors: vec!["x".to_owned()],
        db_size_in_use: 3,
        is_learner: true,
        storage_version: "s".to_owned(),
        db_size_quota: 4,
        ..Default::default()
    };
    #[rustfmt::skip]
    let expected = [
        0x12, 0x01, b'3', // version = 2
        0x18, 0x01,       // dbSize = 3
        0x20, 0x05,       // leader = 4
        0x28, 0x06,       // raftIndex = 5
        0x30, 0x02,       // raftTerm = 6
        0x38, 0x07,       // raftAppliedIndex = 7
        0x42, 0x01, b'x', // errors = 8
        0x48, 0x03,       // dbSizeInUse = 9
        0x50, 0x01,       // isLearner = 10
        0x5a, 0x01, b's', // storageVersion = 11
        0x60, 0x04,       // dbSizeQuota = 12
    ];
    assert_wire(&status, &expected);
}

#[test]
fn hash_kv_response_fields() {
    // hash is uint32 = 2, compact_revision = 3, hash_revision = 4.
    let response = HashKvResponse {
        header: None,
        hash: 0x80,
        compact_revision: 2,
        hash_revision: 3,
    };
    assert_wire(&response, &[0x10, 0x80, 0x01, 0x18, 0x02, 0x20, 0x03]);
}

#[test]
fn auth_permission_fields() {
    let request = AuthRoleGrantPermissionRequest {
        name: "r".to_owned(),
        perm: Some(Permission {
            perm_type: permission::Type::Readwrite as i32,
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
        }),
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x01, b'r',       // name = 1
        0x12, 0x08,             // perm = 2, 8 bytes
        0x08, 0x02,             //   permType = 1: READWRITE = 2
        0x12, 0x01, b'a',       //   key = 2
        0x1a, 0x01, b'b',       //   range_end = 3
    ];
    assert_wire(&request, &expected);
}

#[test]
fn lock_and_election_fields() {
    assert_wire(
        &LockRequest {
            name: b"n".to_vec(),
            lease: 5,
        },
        &[0x0a, 0x01, b'n', 0x10, 0x05],
    );
    assert_wire(
        &CampaignRequest {
            name: b"e".to_vec(),
            lease: 2,
            value: b"v".to_vec(),
        },
        &[0x0a, 0x01, b'e', 0x10, 0x02, 0x1a, 0x01, b'v'],
    );
    assert_wire(
        &LeaderKey {
            name: b"e".to_vec(),
            key: b"k".to_vec(),
            rev: 3,
            lease: 4,
        },
        &[0x0a, 0x01, b'e', 0x12, 0x01, b'k', 0x18, 0x03, 0x20, 0x04],
    );
}

#[test]
fn unknown_fields_from_newer_clients_are_skipped() {
    // A newer client may send fields this build does not know (here field 15, varint 1,
    // appended to a PutRequest). Decoding must skip them rather than fail.
    let bytes = [0x0a, 0x01, b'a', 0x78, 0x01];
    let put = PutRequest::decode(&bytes[..]).expect("unknown fields are skipped");
    assert_eq!(put.key, b"a");
}

#[test]
fn truncated_input_is_an_error_not_a_panic() {
    // A length prefix promising more bytes than remain must yield a decode error.
    let bytes = [0x0a, 0x05, b'a'];
    assert!(PutRequest::decode(&bytes[..]).is_err());
}

#[test]
fn peer_snapshot_chunk_layout() {
    use keel_proto::keelpeerpb::SnapshotChunk;
    // crc32 is fixed32 (wire type 5: tag 9<<3|5 = 0x4d, then four little-endian bytes) so that
    // its size never depends on its value; last = 10 and raft_message = 11 follow.
    let chunk = SnapshotChunk {
        term: 2,
        index: 9,
        total_size: 1,
        offset: 0,
        data: b"d".to_vec(),
        crc32: 0x0102_0304,
        last: true,
        raft_message: b"m".to_vec(),
        ..Default::default()
    };
    #[rustfmt::skip]
    let expected = [
        0x20, 0x02,                         // term = 4
        0x28, 0x09,                         // index = 5
        0x30, 0x01,                         // total_size = 6
        0x42, 0x01, b'd',                   // data = 8
        0x4d, 0x04, 0x03, 0x02, 0x01,       // crc32 = 9
        0x50, 0x01,                         // last = 10
        0x5a, 0x01, b'm',                   // raft_message = 11
    ];
    assert_wire(&chunk, &expected);
}

#[test]
fn peer_raft_batch_carries_opaque_bytes() {
    use keel_proto::keelpeerpb::{RaftBatch, RaftMessage};
    // The raft payload is carried byte for byte, whatever it contains.
    let opaque = vec![0x00, 0xff, 0x08, 0x01];
    let batch = RaftBatch {
        cluster_id: 1,
        from_member_id: 2,
        to_member_id: 3,
        messages: vec![RaftMessage {
            message: opaque.clone(),
        }],
    };
    #[rustfmt::skip]
    let expected = [
        0x08, 0x01, 0x10, 0x02, 0x18, 0x03,       // cluster_id, from_member_id, to_member_id
        0x22, 0x06, 0x0a, 0x04, 0x00, 0xff, 0x08, 0x01, // messages = 4 { message = 1 }
    ];
    assert_wire(&batch, &expected);
}
