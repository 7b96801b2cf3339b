//! One test per etcd MVCC rule the store must follow, with the expected numbers worked out by
//! hand from etcd's semantics (server/storage/mvcc and etcdserver/txn.go).

use keel_engine::mvcc::*;

fn put(store: &mut Store, key: &str, value: &str) -> i64 {
    store
        .put(&PutRequest {
            key: key.into(),
            value: value.into(),
            ..PutRequest::default()
        })
        .unwrap()
        .revision
}

fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp::Put(PutRequest {
        key: key.into(),
        value: value.into(),
        ..PutRequest::default()
    })
}

fn get_op(key: &str) -> RequestOp {
    RequestOp::Range(RangeRequest {
        key: key.into(),
        ..RangeRequest::default()
    })
}

fn delete_op(key: &str, range_end: &str) -> RequestOp {
    RequestOp::DeleteRange(DeleteRangeRequest {
        key: key.into(),
        range_end: range_end.into(),
        prev_kv: false,
    })
}

fn get(store: &Store, key: &str) -> Option<KeyValue> {
    store
        .range(&RangeRequest {
            key: key.into(),
            ..RangeRequest::default()
        })
        .unwrap()
        .kvs
        .pop()
}

fn range(store: &Store, key: &str, range_end: &str) -> RangeResponse {
    store
        .range(&RangeRequest {
            key: key.into(),
            range_end: range_end.into(),
            ..RangeRequest::default()
        })
        .unwrap()
}

fn keys(response: &RangeResponse) -> Vec<String> {
    response
        .kvs
        .iter()
        .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
        .collect()
}

fn compare(key: &str, result: CompareResult, target: CompareTarget) -> Compare {
    Compare {
        result,
        target,
        key: key.into(),
        range_end: vec![],
    }
}

#[test]
fn empty_store_is_at_revision_one_and_first_put_gets_two() {
    let mut store = Store::new();
    assert_eq!(store.current_revision(), 1);
    assert_eq!(store.compact_revision(), -1);
    assert_eq!(put(&mut store, "foo", "bar"), 2);
    let kv = get(&store, "foo").unwrap();
    assert_eq!(
        kv,
        KeyValue {
            key: b"foo".to_vec(),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            value: b"bar".to_vec(),
            lease: 0
        }
    );
}

#[test]
fn versions_count_puts_and_reset_after_delete() {
    let mut store = Store::new();
    put(&mut store, "k", "1"); // 2
    put(&mut store, "k", "2"); // 3
    let kv = get(&store, "k").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
    let deleted = store
        .delete_range(&DeleteRangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!((deleted.deleted, deleted.revision), (1, 4));
    assert_eq!(get(&store, "k"), None);
    put(&mut store, "k", "3"); // 5: a new generation
    let kv = get(&store, "k").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
    // The old generation is still readable at its revisions.
    let old = store
        .range(&RangeRequest {
            key: b"k".to_vec(),
            revision: 3,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(old.kvs[0].value, b"2");
    assert_eq!(old.revision, 5, "the header carries the current revision");
    let gone = store
        .range(&RangeRequest {
            key: b"k".to_vec(),
            revision: 4,
            ..Default::default()
        })
        .unwrap();
    assert!(gone.kvs.is_empty());
}

#[test]
fn key_selection_single_interval_from_key_and_all() {
    let mut store = Store::new();
    for key in ["a", "ab", "b", "c"] {
        put(&mut store, key, "v");
    }
    assert_eq!(keys(&range(&store, "a", "")), ["a"]);
    assert_eq!(keys(&range(&store, "a", "b")), ["a", "ab"]);
    assert_eq!(keys(&range(&store, "ab", "\0")), ["ab", "b", "c"]);
    assert_eq!(keys(&range(&store, "\0", "\0")), ["a", "ab", "b", "c"]);
    assert!(
        keys(&range(&store, "c", "a")).is_empty(),
        "inverted range is empty"
    );
    assert!(keys(&range(&store, "b", "b")).is_empty());
    assert_eq!(
        store.range(&RangeRequest::default()),
        Err(MvccError::EmptyKey)
    );
}

#[test]
fn future_and_compacted_revisions() {
    let mut store = Store::new();
    for i in 0..5 {
        put(&mut store, "k", &i.to_string()); // 2..=6
    }
    let at = |store: &Store, revision| {
        store.range(&RangeRequest {
            key: b"k".to_vec(),
            revision,
            ..Default::default()
        })
    };
    assert_eq!(at(&store, 7), Err(MvccError::FutureRevision));
    store.compact(4).unwrap();
    assert_eq!(at(&store, 3), Err(MvccError::Compacted));
    assert_eq!(
        at(&store, 4).unwrap().kvs[0].value,
        b"2",
        "reading at the compact revision works"
    );
    assert_eq!(at(&store, 0).unwrap().kvs[0].value, b"4");
    assert_eq!(store.compact(4), Err(MvccError::Compacted));
    assert_eq!(store.compact(3), Err(MvccError::Compacted));
    assert_eq!(store.compact(7), Err(MvccError::FutureRevision));
}

#[test]
fn limit_more_count_keys_only_count_only() {
    let mut store = Store::new();
    for key in ["a", "b", "c", "d"] {
        put(&mut store, key, "value");
    }
    let response = store
        .range(&RangeRequest {
            key: b"a".to_vec(),
            range_end: b"z".to_vec(),
            limit: 2,
            keys_only: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(keys(&response), ["a", "b"]);
    assert!(response.more);
    assert_eq!(response.count, 4);
    assert!(response.kvs.iter().all(|kv| kv.value.is_empty()));
    let exact = store
        .range(&RangeRequest {
            key: b"a".to_vec(),
            range_end: b"z".to_vec(),
            limit: 4,
            ..Default::default()
        })
        .unwrap();
    assert!(!exact.more);
    let count = store
        .range(&RangeRequest {
            key: b"a".to_vec(),
            range_end: b"z".to_vec(),
            count_only: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!((count.kvs.len(), count.count, count.more), (0, 4, false));
}

#[test]
fn sort_defaults_follow_etcd() {
    let mut store = Store::new();
    put(&mut store, "a", "3"); // 2
    put(&mut store, "b", "1"); // 3
    put(&mut store, "c", "2"); // 4
    put(&mut store, "b", "1"); // 5: b version 2
    let sorted = |order, target, limit| {
        keys(
            &store
                .range(&RangeRequest {
                    key: b"a".to_vec(),
                    range_end: b"z".to_vec(),
                    sort_order: order,
                    sort_target: target,
                    limit,
                    ..Default::default()
                })
                .unwrap(),
        )
    };
    assert_eq!(
        sorted(SortOrder::Descend, SortTarget::Key, 0),
        ["c", "b", "a"]
    );
    assert_eq!(
        sorted(SortOrder::Ascend, SortTarget::Value, 0),
        ["b", "c", "a"]
    );
    assert_eq!(
        sorted(SortOrder::Descend, SortTarget::Mod, 0),
        ["b", "c", "a"]
    );
    // A non-key target with order NONE sorts ascending; equal targets keep key order.
    assert_eq!(
        sorted(SortOrder::None, SortTarget::Version, 0),
        ["a", "c", "b"]
    );
    // With an explicit order the whole range is sorted before the limit applies...
    assert_eq!(sorted(SortOrder::Descend, SortTarget::Value, 1), ["a"]);
    // ...but with order NONE etcd fetches limit+1 keys in key order and sorts only those.
    assert_eq!(sorted(SortOrder::None, SortTarget::Value, 1), ["b"]);
    // keys_only still sorts by the real value.
    let by_value = store
        .range(&RangeRequest {
            key: b"a".to_vec(),
            range_end: b"z".to_vec(),
            sort_order: SortOrder::Ascend,
            sort_target: SortTarget::Value,
            keys_only: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(keys(&by_value), ["b", "c", "a"]);
    assert!(by_value.kvs.iter().all(|kv| kv.value.is_empty()));
}

#[test]
fn revision_filters_do_not_change_count() {
    let mut store = Store::new();
    put(&mut store, "a", "1"); // 2
    put(&mut store, "b", "1"); // 3
    put(&mut store, "c", "1"); // 4
    put(&mut store, "a", "2"); // 5
    let response = store
        .range(&RangeRequest {
            key: b"a".to_vec(),
            range_end: b"z".to_vec(),
            min_mod_revision: 4,
            max_create_revision: 3,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(keys(&response), ["a"]);
    assert_eq!(response.count, 3);
    let limited = store
        .range(&RangeRequest {
            key: b"a".to_vec(),
            range_end: b"z".to_vec(),
            min_mod_revision: 3,
            limit: 1,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(keys(&limited), ["a"]);
    assert!(limited.more, "three keys pass the filter, one is returned");
}

#[test]
fn delete_of_nothing_keeps_the_revision() {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    let response = store
        .delete_range(&DeleteRangeRequest {
            key: b"x".to_vec(),
            range_end: b"z".to_vec(),
            prev_kv: true,
        })
        .unwrap();
    assert_eq!(
        response,
        DeleteRangeResponse {
            deleted: 0,
            prev_kvs: vec![],
            revision: 2
        }
    );
    assert_eq!(store.current_revision(), 2);
    assert!(store.events(3, b"\0", b"\0", 0).unwrap().is_empty());
}

#[test]
fn delete_range_uses_one_revision_and_reports_prev_kvs() {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    put(&mut store, "b", "2");
    put(&mut store, "c", "3"); // 4
    let response = store
        .delete_range(&DeleteRangeRequest {
            key: b"a".to_vec(),
            range_end: b"c".to_vec(),
            prev_kv: true,
        })
        .unwrap();
    assert_eq!((response.deleted, response.revision), (2, 5));
    assert_eq!(
        response
            .prev_kvs
            .iter()
            .map(|kv| kv.value.clone())
            .collect::<Vec<_>>(),
        [b"1", b"2"]
    );
    let events = store.events(5, b"\0", b"\0", 0).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].kind, EventKind::Delete);
    assert_eq!(
        events[0].kv,
        KeyValue {
            key: b"a".to_vec(),
            mod_revision: 5,
            ..KeyValue::default()
        },
        "a delete event carries only the key and the deletion revision"
    );
    assert_eq!(events[0].prev_kv.as_ref().unwrap().value, b"1");
}

#[test]
fn txn_writes_share_one_revision_with_sub_revisions_and_read_their_writes() {
    let mut store = Store::new();
    put(&mut store, "a", "old"); // 2
    let response = store
        .txn(&TxnRequest {
            compare: vec![],
            success: vec![
                get_op("a"),
                put_op("a", "new"),
                get_op("a"),
                RequestOp::Txn(TxnRequest {
                    compare: vec![],
                    success: vec![put_op("b", "nested"), get_op("b")],
                    failure: vec![],
                }),
                delete_op("zzz", ""),
            ],
            failure: vec![],
        })
        .unwrap();
    assert!(response.succeeded);
    assert_eq!(response.revision, 3);
    assert_eq!(store.current_revision(), 3);
    let ResponseOp::Range(before) = &response.responses[0] else {
        panic!()
    };
    assert_eq!(
        (before.kvs[0].value.as_slice(), before.revision),
        (&b"old"[..], 2)
    );
    let ResponseOp::Put(put_response) = &response.responses[1] else {
        panic!()
    };
    assert_eq!(put_response.revision, 3);
    let ResponseOp::Range(after) = &response.responses[2] else {
        panic!()
    };
    assert_eq!(
        (after.kvs[0].value.as_slice(), after.revision),
        (&b"new"[..], 3)
    );
    assert_eq!(after.kvs[0].version, 2);
    let ResponseOp::Txn(nested) = &response.responses[3] else {
        panic!()
    };
    let ResponseOp::Range(nested_get) = &nested.responses[1] else {
        panic!()
    };
    assert_eq!(nested_get.kvs[0].mod_revision, 3);
    let ResponseOp::DeleteRange(nothing) = &response.responses[4] else {
        panic!()
    };
    assert_eq!((nothing.deleted, nothing.revision), (0, 3));
    // Both changes are events of revision 3, in execution order.
    let events = store.events(3, b"\0", b"\0", 0).unwrap();
    assert_eq!(
        events.iter().map(|e| e.kv.key.clone()).collect::<Vec<_>>(),
        [b"a".to_vec(), b"b".to_vec()]
    );
    assert_eq!(events[0].prev_kv.as_ref().unwrap().value, b"old");
}

#[test]
fn read_only_txn_and_failed_compare_branch() {
    let mut store = Store::new();
    put(&mut store, "a", "1"); // 2
    let response = store
        .txn(&TxnRequest {
            compare: vec![compare(
                "a",
                CompareResult::Equal,
                CompareTarget::Value(b"2".to_vec()),
            )],
            success: vec![put_op("a", "x")],
            failure: vec![get_op("a")],
        })
        .unwrap();
    assert!(!response.succeeded);
    assert_eq!(response.revision, 2, "a read-only txn creates no revision");
    assert_eq!(store.current_revision(), 2);
}

#[test]
fn compares_on_missing_keys_and_ranges() {
    let mut store = Store::new();
    put(&mut store, "a1", "x"); // 2
    put(&mut store, "a2", "x"); // 3
    let holds = |store: &mut Store, c: Compare| {
        store
            .txn(&TxnRequest {
                compare: vec![c],
                ..Default::default()
            })
            .unwrap()
            .succeeded
    };
    assert!(holds(
        &mut store,
        compare("missing", CompareResult::Equal, CompareTarget::Version(0))
    ));
    assert!(holds(
        &mut store,
        compare(
            "missing",
            CompareResult::Equal,
            CompareTarget::CreateRevision(0)
        )
    ));
    assert!(holds(
        &mut store,
        compare(
            "missing",
            CompareResult::Equal,
            CompareTarget::ModRevision(0)
        )
    ));
    assert!(!holds(
        &mut store,
        compare(
            "missing",
            CompareResult::Equal,
            CompareTarget::Value(vec![])
        )
    ));
    assert!(!holds(
        &mut store,
        compare(
            "missing",
            CompareResult::NotEqual,
            CompareTarget::Value(b"q".to_vec())
        )
    ));
    let mut all = compare(
        "a",
        CompareResult::Equal,
        CompareTarget::Value(b"x".to_vec()),
    );
    all.range_end = b"b".to_vec();
    assert!(holds(&mut store, all.clone()));
    let mut newer = compare("a", CompareResult::Greater, CompareTarget::ModRevision(2));
    newer.range_end = b"b".to_vec();
    assert!(
        !holds(&mut store, newer),
        "a1 has mod revision 2, not greater"
    );
    let mut empty = compare("x", CompareResult::Equal, CompareTarget::Version(0));
    empty.range_end = b"y".to_vec();
    assert!(
        holds(&mut store, empty),
        "an empty range compares as a missing key"
    );
}

#[test]
fn nested_compares_see_the_store_before_the_txn() {
    let mut store = Store::new();
    let response = store
        .txn(&TxnRequest {
            compare: vec![],
            success: vec![
                put_op("a", "1"),
                RequestOp::Txn(TxnRequest {
                    // etcd evaluates every compare before the first write, so "a" is missing.
                    compare: vec![compare(
                        "a",
                        CompareResult::Equal,
                        CompareTarget::Version(0),
                    )],
                    success: vec![put_op("b", "saw-nothing")],
                    failure: vec![put_op("b", "saw-a")],
                }),
            ],
            failure: vec![],
        })
        .unwrap();
    let ResponseOp::Txn(nested) = &response.responses[1] else {
        panic!()
    };
    assert!(nested.succeeded);
    assert_eq!(get(&store, "b").unwrap().value, b"saw-nothing");
}

#[test]
fn duplicate_keys_in_a_txn_are_refused_without_effects() {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    let before = store.hash_kv(0).unwrap();
    let refused = [
        vec![put_op("a", "x"), put_op("a", "y")],
        vec![delete_op("a", "c"), put_op("b", "x")],
        vec![put_op("b", "x"), delete_op("a", "\0")],
        vec![
            put_op("a", "x"),
            RequestOp::Txn(TxnRequest {
                compare: vec![],
                success: vec![put_op("a", "y")],
                failure: vec![],
            }),
        ],
        vec![
            delete_op("a", ""),
            RequestOp::Txn(TxnRequest {
                compare: vec![],
                success: vec![],
                failure: vec![put_op("a", "y")],
            }),
        ],
    ];
    for success in refused {
        let request = TxnRequest {
            compare: vec![],
            success,
            failure: vec![],
        };
        assert_eq!(
            store.txn(&request),
            Err(MvccError::DuplicateKey),
            "{request:?}"
        );
        assert_eq!(
            check_txn_request(&request, TXN_OPS_MAX_DEFAULT),
            Err(MvccError::DuplicateKey)
        );
    }
    assert_eq!(store.hash_kv(0).unwrap(), before);
    assert_eq!(store.current_revision(), 2);
    // The same key in both branches of a nested txn is allowed: only one branch runs.
    let both = TxnRequest {
        compare: vec![],
        success: vec![RequestOp::Txn(TxnRequest {
            compare: vec![],
            success: vec![put_op("b", "then")],
            failure: vec![put_op("b", "else")],
        })],
        failure: vec![],
    };
    assert!(store.txn(&both).is_ok());
    // Overlapping deletes are fine too.
    let deletes = TxnRequest {
        compare: vec![],
        success: vec![delete_op("a", "c"), delete_op("b", "d")],
        failure: vec![],
    };
    let response = store.txn(&deletes).unwrap();
    let ResponseOp::DeleteRange(second) = &response.responses[1] else {
        panic!()
    };
    assert_eq!(
        second.deleted, 0,
        "the second delete sees the first one's tombstone"
    );
}

#[test]
fn txn_request_shape_checks() {
    let too_many = TxnRequest {
        compare: vec![],
        success: vec![get_op("a"); 3],
        failure: vec![],
    };
    assert_eq!(check_txn_request(&too_many, 2), Err(MvccError::TooManyOps));
    let empty_compare = TxnRequest {
        compare: vec![compare("", CompareResult::Equal, CompareTarget::Version(0))],
        ..Default::default()
    };
    assert_eq!(
        check_txn_request(&empty_compare, 128),
        Err(MvccError::EmptyKey)
    );
    let value_provided = TxnRequest {
        success: vec![RequestOp::Put(PutRequest {
            key: b"a".to_vec(),
            value: b"v".to_vec(),
            ignore_value: true,
            ..Default::default()
        })],
        ..Default::default()
    };
    assert_eq!(
        check_txn_request(&value_provided, 128),
        Err(MvccError::ValueProvided)
    );
}

#[test]
fn ignore_value_and_ignore_lease() {
    let mut store = Store::new();
    store.lease_grant(7, 60).unwrap();
    let keep = |ignore_value, ignore_lease, value: &str, lease| PutRequest {
        key: b"k".to_vec(),
        value: value.into(),
        lease,
        prev_kv: false,
        ignore_value,
        ignore_lease,
    };
    assert_eq!(
        store.put(&keep(true, false, "", 0)),
        Err(MvccError::KeyNotFound)
    );
    assert_eq!(
        store.put(&keep(false, true, "v", 0)),
        Err(MvccError::KeyNotFound)
    );
    assert_eq!(store.current_revision(), 1);
    store.put(&keep(false, false, "v", 7)).unwrap();
    store.put(&keep(true, false, "", 0)).unwrap();
    let kv = get(&store, "k").unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.lease, kv.version),
        (&b"v"[..], 0, 2),
        "ignore_value keeps the value, not the lease"
    );
    store.put(&keep(false, false, "v2", 7)).unwrap();
    store.put(&keep(false, true, "v3", 0)).unwrap();
    let kv = get(&store, "k").unwrap();
    assert_eq!((kv.value.as_slice(), kv.lease), (&b"v3"[..], 7));
    assert_eq!(
        store.put(&keep(true, false, "x", 0)),
        Err(MvccError::ValueProvided)
    );
    assert_eq!(
        store.put(&keep(false, true, "x", 7)),
        Err(MvccError::LeaseProvided)
    );
    // Inside a txn the check runs before any write and refuses the whole txn.
    let txn = TxnRequest {
        success: vec![
            put_op("other", "x"),
            RequestOp::Put(PutRequest {
                key: b"nope".to_vec(),
                ignore_value: true,
                ..Default::default()
            }),
        ],
        ..Default::default()
    };
    assert_eq!(store.txn(&txn), Err(MvccError::KeyNotFound));
    assert_eq!(get(&store, "other"), None);
}

#[test]
fn compaction_keeps_the_live_key_and_drops_tombstones() {
    let mut store = Store::new();
    put(&mut store, "live", "1"); // 2
    put(&mut store, "dead", "1"); // 3
    store
        .delete_range(&DeleteRangeRequest {
            key: b"dead".to_vec(),
            ..Default::default()
        })
        .unwrap(); // 4
    put(&mut store, "live", "2"); // 5
    put(&mut store, "late", "1"); // 6
    assert_eq!(store.stats().total_revisions, 5);
    store.compact(5).unwrap();
    assert!(store.compaction_pending());
    assert_eq!(
        store.stats().total_revisions,
        5,
        "stats lag until the work is done"
    );
    assert!(store.compact_step(usize::MAX));
    assert_eq!(store.stats().total_revisions, 2, "live@5 and late@6 remain");
    assert_eq!(store.stats().live_keys, 2);
    let at5 = store
        .range(&RangeRequest {
            key: b"\0".to_vec(),
            range_end: b"\0".to_vec(),
            revision: 5,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(keys(&at5), ["live"]);
    assert_eq!(
        at5.kvs[0].create_revision, 2,
        "the kept revision keeps its create revision"
    );
    assert_eq!(at5.kvs[0].version, 2);
    // An old untouched key survives any later compaction.
    put(&mut store, "x", "1"); // 7
    store.compact(7).unwrap();
    assert_eq!(get(&store, "live").unwrap().mod_revision, 5);
    assert_eq!(store.events(6, b"\0", b"\0", 0), Err(MvccError::Compacted));
    let at_compact = store.events(7, b"\0", b"\0", 0).unwrap();
    assert_eq!(at_compact.len(), 1);
    assert_eq!(at_compact[0].kv.key, b"x");
}

#[test]
fn leases_attach_detach_and_revoke_in_one_revision() {
    let mut store = Store::new();
    store.lease_grant(1, 30).unwrap();
    assert_eq!(store.lease_grant(1, 30), Err(MvccError::LeaseExists));
    assert_eq!(
        store.lease_grant(2, LEASE_TTL_MAX_SECONDS + 1),
        Err(MvccError::LeaseTtlTooLarge)
    );
    let with_lease = |key: &str, lease| PutRequest {
        key: key.into(),
        value: b"v".to_vec(),
        lease,
        ..Default::default()
    };
    assert_eq!(
        store.put(&with_lease("a", 9)),
        Err(MvccError::LeaseNotFound)
    );
    store.put(&with_lease("b", 1)).unwrap(); // 2
    store.put(&with_lease("a", 1)).unwrap(); // 3
    store.put(&with_lease("c", 1)).unwrap(); // 4
    store.put(&with_lease("c", 0)).unwrap(); // 5: detaches c
    store
        .delete_range(&DeleteRangeRequest {
            key: b"d".to_vec(),
            ..Default::default()
        })
        .unwrap();
    let info = store.lease_time_to_live(1, true).unwrap();
    assert_eq!(info.keys, [b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(info.granted_ttl_seconds, 30);
    store.lease_checkpoint(1, 12).unwrap();
    assert_eq!(store.leases()[0].remaining_ttl_seconds, 12);
    let revoked = store.lease_revoke(1).unwrap();
    assert_eq!(revoked.revision, 6);
    assert_eq!(store.current_revision(), 6);
    assert_eq!(
        revoked
            .events
            .iter()
            .map(|e| (e.kv.key.clone(), e.kv.mod_revision))
            .collect::<Vec<_>>(),
        [(b"a".to_vec(), 6), (b"b".to_vec(), 6)]
    );
    assert_eq!(store.events(6, b"\0", b"\0", 0).unwrap(), revoked.events);
    assert_eq!(get(&store, "c").unwrap().lease, 0);
    assert_eq!(store.lease_revoke(1), Err(MvccError::LeaseNotFound));
    assert_eq!(
        store.lease_time_to_live(1, false),
        Err(MvccError::LeaseNotFound)
    );
    // A lease without keys is revoked without a revision.
    store.lease_grant(3, 10).unwrap();
    assert_eq!(
        store.lease_revoke(3).unwrap(),
        LeaseRevoke {
            events: vec![],
            revision: 6
        }
    );
    // Deleting a key detaches it.
    store.lease_grant(4, 10).unwrap();
    store.put(&with_lease("e", 4)).unwrap();
    store
        .delete_range(&DeleteRangeRequest {
            key: b"e".to_vec(),
            ..Default::default()
        })
        .unwrap();
    assert!(store.lease_time_to_live(4, true).unwrap().keys.is_empty());
}

#[test]
fn event_feed_filters_by_key_and_stops_at_revision_boundaries() {
    let mut store = Store::new();
    put(&mut store, "a", "1"); // 2
    put(&mut store, "b", "1"); // 3
    store
        .txn(&TxnRequest {
            success: vec![put_op("a", "2"), put_op("c", "1")],
            ..Default::default()
        })
        .unwrap(); // 4
    put(&mut store, "a", "3"); // 5
    let only_a = store.events(3, b"a", b"", 0).unwrap();
    assert_eq!(
        only_a.iter().map(|e| e.kv.mod_revision).collect::<Vec<_>>(),
        [4, 5]
    );
    assert_eq!(only_a[0].prev_kv.as_ref().unwrap().mod_revision, 2);
    assert!(
        store.events(2, b"a", b"", 0).unwrap()[0].prev_kv.is_none(),
        "a creation has no prev_kv"
    );
    let limited = store.events(3, b"\0", b"\0", 2).unwrap();
    assert_eq!(
        limited
            .iter()
            .map(|e| e.kv.mod_revision)
            .collect::<Vec<_>>(),
        [3, 4, 4],
        "revision 4 is not split"
    );
    assert!(store.events(6, b"\0", b"\0", 0).unwrap().is_empty());
}

#[test]
fn hash_is_deterministic_and_sees_changes() {
    let build = || {
        let mut store = Store::new();
        put(&mut store, "a", "1");
        put(&mut store, "b", "2");
        store
    };
    let (mut one, two) = (build(), build());
    assert_eq!(one.hash_kv(0).unwrap(), two.hash_kv(0).unwrap());
    let at2 = one.hash_kv(2).unwrap();
    put(&mut one, "a", "changed");
    assert_ne!(one.hash_kv(0).unwrap().hash, two.hash_kv(0).unwrap().hash);
    assert_eq!(
        one.hash_kv(2).unwrap(),
        at2,
        "a hash at an old revision ignores later writes"
    );
    assert_eq!(one.hash_kv(9), Err(MvccError::FutureRevision));
    one.compact(3).unwrap();
    assert_eq!(one.hash_kv(2), Err(MvccError::Compacted));
}

#[test]
fn stats_track_keys_revisions_and_bytes() {
    let mut store = Store::new();
    put(&mut store, "key", "12345");
    put(&mut store, "key", "1");
    let stats = store.stats();
    assert_eq!((stats.live_keys, stats.total_revisions), (1, 2));
    assert_eq!(
        stats.approximate_bytes,
        3 + 5 + 3 + 1 + 2 * REVISION_OVERHEAD_BYTES
    );
    store.compact(3).unwrap();
    while !store.compact_step(1) {}
    assert_eq!(
        store.stats().approximate_bytes,
        3 + 1 + REVISION_OVERHEAD_BYTES
    );
}

#[test]
fn error_texts_match_etcd() {
    assert_eq!(
        MvccError::Compacted.to_string(),
        "mvcc: required revision has been compacted"
    );
    assert_eq!(
        MvccError::FutureRevision.to_string(),
        "mvcc: required revision is a future revision"
    );
    assert_eq!(
        MvccError::Compacted.grpc_message(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    assert_eq!(
        MvccError::KeyNotFound.grpc_message(),
        "etcdserver: key not found"
    );
    assert_eq!(
        MvccError::LeaseNotFound.grpc_message(),
        "etcdserver: requested lease not found"
    );
    assert_eq!(
        MvccError::DuplicateKey.grpc_message(),
        "etcdserver: duplicate key given in txn request"
    );
    assert_eq!(MvccError::Compacted.grpc_code(), grpc_code::OUT_OF_RANGE);
    assert_eq!(
        MvccError::LeaseExists.grpc_code(),
        grpc_code::FAILED_PRECONDITION
    );
}
