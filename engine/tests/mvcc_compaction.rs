//! Incremental compaction: `compact` is the logical step, `compact_step` releases memory in
//! slices. A store with work pending must answer, hash and checkpoint exactly like the same
//! store with the work finished, also across queued compactions and writes made mid-way.

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

fn delete(store: &mut Store, key: &str) -> i64 {
    store
        .delete_range(&DeleteRangeRequest {
            key: key.into(),
            ..DeleteRangeRequest::default()
        })
        .unwrap()
        .revision
}

/// The same store with every pending slice of physical compaction done.
fn finished(store: &Store) -> Store {
    let mut done = store.clone();
    while !done.compact_step(usize::MAX) {}
    done
}

/// Everything members compare or clients can see, except the lagging stats.
fn observe(store: &Store) -> String {
    let mut out = format!(
        "rev {} compact {} live {} hash {:?} {:?}\n",
        store.current_revision(),
        store.compact_revision(),
        store.stats().live_keys,
        store.hash_kv(0),
        store.hash_kv(store.compact_revision().max(1)),
    );
    for revision in store.compact_revision().max(1)..=store.current_revision() {
        let all = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision,
            ..RangeRequest::default()
        };
        out += &format!("{:?}\n", store.range(&all));
        out += &format!("{:?}\n", store.events(revision, &[0], &[0], 0));
    }
    out += &format!("{:?}\n", store.encode_checkpoint());
    out
}

/// A store with a mix of overwritten, deleted and re-created keys.
fn churned() -> Store {
    let mut store = Store::new();
    for round in 0..6 {
        for k in 0..8 {
            let key = format!("k{k}");
            if (round + k) % 4 == 3 {
                delete(&mut store, &key);
            } else {
                put(&mut store, &key, &format!("v{round}"));
            }
        }
    }
    store
}

#[test]
fn compact_is_logical_and_steps_release_memory() {
    let mut store = churned();
    let before = store.stats();
    let at = store.current_revision() - 10;
    store.compact(at).unwrap();
    assert_eq!(store.compact_revision(), at);
    assert!(store.compaction_pending());
    assert_eq!(store.stats(), before, "compact itself drops nothing");
    assert!(!store.compact_step(0), "a zero budget only reports");
    let done = finished(&store);
    let mut steps = 0;
    while !store.compact_step(1) {
        steps += 1;
        assert_eq!(observe(&store), observe(&done), "after {steps} steps");
    }
    assert!(steps > 5, "budget 1 takes many slices ({steps})");
    assert!(!store.compaction_pending());
    assert_eq!(store.stats(), done.stats());
    assert!(store.stats().total_revisions < before.total_revisions);
    assert!(store.compact_step(10), "nothing left to do");
}

#[test]
fn hash_and_checkpoint_do_not_depend_on_progress() {
    let mut store = churned();
    let reference = {
        let mut one_go = store.clone();
        one_go.compact(30).unwrap();
        finished(&one_go)
    };
    store.compact(30).unwrap();
    for _ in 0..4 {
        store.compact_step(3);
        assert_eq!(store.hash_kv(0), reference.hash_kv(0));
        assert_eq!(store.hash_kv(30), reference.hash_kv(30));
        assert_eq!(store.hash_kv(29), Err(MvccError::Compacted));
        assert_eq!(
            store.encode_checkpoint().unwrap(),
            reference.encode_checkpoint().unwrap()
        );
    }
    let decoded = Store::decode_checkpoint(&store.encode_checkpoint().unwrap()).unwrap();
    assert!(!decoded.compaction_pending());
    assert_eq!(decoded.stats(), reference.stats());
}

#[test]
fn queued_compactions_target_the_newest() {
    let mut store = churned();
    let reference = {
        let mut one_go = store.clone();
        one_go.compact(40).unwrap();
        finished(&one_go)
    };
    store.compact(10).unwrap();
    store.compact_step(4);
    assert!(store.compaction_pending());
    store.compact(25).unwrap();
    store.compact_step(2);
    assert_eq!(store.compact(25), Err(MvccError::Compacted));
    assert_eq!(store.compact(1_000), Err(MvccError::FutureRevision));
    store.compact(40).unwrap();
    assert_eq!(observe(&store), observe(&reference));
    while !store.compact_step(2) {}
    assert_eq!(observe(&store), observe(&reference));
    assert_eq!(store.stats(), reference.stats());
    // Compacting again after the work finished (the kept changes at 40 are released now).
    store.compact(45).unwrap();
    while !store.compact_step(1) {}
    let mut again = reference.clone();
    again.compact(45).unwrap();
    assert_eq!(observe(&store), observe(&finished(&again)));
}

#[test]
fn writes_while_work_is_pending() {
    let mut store = churned();
    let mut reference = store.clone();
    let at = store.current_revision();
    store.compact(at).unwrap();
    reference.compact(at).unwrap();
    reference = finished(&reference);
    store.compact_step(2);
    // Change the histories the pending work has not reached yet: re-create deleted keys,
    // delete live ones, overwrite, and revoke a lease.
    store.lease_grant(9, 60).unwrap();
    reference.lease_grant(9, 60).unwrap();
    for (k, write) in [(3, 'p'), (0, 'd'), (7, 'p'), (1, 'p'), (1, 'd'), (5, 'l')] {
        let key = format!("k{k}");
        for s in [&mut store, &mut reference] {
            match write {
                'p' => {
                    put(s, &key, "new");
                }
                'd' => {
                    delete(s, &key);
                }
                _ => {
                    s.put(&PutRequest {
                        key: key.clone().into(),
                        value: b"leased".to_vec(),
                        lease: 9,
                        ..PutRequest::default()
                    })
                    .unwrap();
                }
            }
        }
        store.compact_step(1);
        assert_eq!(observe(&store), observe(&reference), "after {write} {key}");
    }
    assert_eq!(store.lease_revoke(9), reference.lease_revoke(9));
    assert_eq!(observe(&store), observe(&reference));
    while !store.compact_step(1) {}
    assert_eq!(observe(&store), observe(&reference));
    assert_eq!(store.stats(), reference.stats());
}

#[test]
fn one_big_revision_at_the_compact_revision() {
    // A txn that writes many keys in one revision: compaction at that revision visits them
    // but keeps them logged (a watcher may start there); the next compaction releases them.
    let mut store = Store::new();
    for i in 0..20 {
        put(&mut store, &format!("k{i:02}"), "old");
    }
    let txn = TxnRequest {
        success: (0..20)
            .map(|i| {
                RequestOp::Put(PutRequest {
                    key: format!("k{i:02}").into(),
                    value: b"new".to_vec(),
                    ..PutRequest::default()
                })
            })
            .collect(),
        ..TxnRequest::default()
    };
    let big = store.txn(&txn).unwrap().revision;
    put(&mut store, "after", "1");
    store.compact(big).unwrap();
    while !store.compact_step(3) {}
    assert_eq!(store.stats().total_revisions, 21);
    assert_eq!(store.events(big, &[0], &[0], 0).unwrap().len(), 21);
    store.compact(big + 1).unwrap();
    assert!(store.compaction_pending());
    while !store.compact_step(3) {}
    assert_eq!(store.stats().total_revisions, 21);
    assert_eq!(store.events(big + 1, &[0], &[0], 0).unwrap().len(), 1);
    assert_eq!(store.events(big, &[0], &[0], 0), Err(MvccError::Compacted));
}

#[test]
fn a_tombstone_at_the_compact_revision_disappears_at_once() {
    let mut store = Store::new();
    put(&mut store, "a", "1"); // 2
    let gone = delete(&mut store, "a"); // 3
    put(&mut store, "b", "1"); // 4
    store.compact(gone).unwrap();
    let events = store.events(gone, &[0], &[0], 0).unwrap();
    assert_eq!(events.len(), 1, "only b's put: the tombstone is compacted");
    assert_eq!(events[0].kv.key, b"b");
    assert!(store.compaction_pending());
    assert_eq!(store.hash_kv(0), finished(&store).hash_kv(0));
}

#[test]
fn a_hot_key_is_freed_a_slice_at_a_time() {
    // One key written thousands of times between compactions: no single step may free more
    // than its budget, and the answers never change while the slices run.
    let mut store = Store::new();
    for i in 0..5_000 {
        put(&mut store, "hot", &format!("{i}"));
    }
    put(&mut store, "cold", "1");
    let at = store.current_revision();
    store.compact(at).unwrap();
    let done = finished(&store);
    let before = observe(&done);
    let mut steps = 0;
    loop {
        let held = store.stats().total_revisions;
        let finished_now = store.compact_step(100);
        let freed = held - store.stats().total_revisions;
        assert!(freed <= 100, "step {steps} freed {freed} revisions");
        steps += 1;
        if steps % 7 == 0 {
            // Mid-way, the store answers as a copy with the work finished does.
            assert_eq!(observe(&store), observe(&finished(&store)));
        }
        if finished_now {
            break;
        }
    }
    assert!(steps >= 50, "{steps} steps");
    assert_eq!(observe(&store), before);
    assert_eq!(store.stats(), done.stats());
    assert_eq!(store.stats().total_revisions, 2);
}
