//! Checkpoint round trips (encode → decode gives a store that answers identically, now and
//! after further writes) and refusal of damaged payloads without panicking.

use keel_engine::mvcc::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u8, i64),
    Delete(u8, u8),
    Compact(i64),
    Grant(i64),
    Revoke(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..8, any::<u8>(), 0i64..3).prop_map(|(k, v, l)| Op::Put(k, v, l)),
        2 => (0u8..8, 0u8..9).prop_map(|(k, e)| Op::Delete(k, e)),
        1 => (0i64..40).prop_map(Op::Compact),
        1 => (1i64..3).prop_map(Op::Grant),
        1 => (1i64..3).prop_map(Op::Revoke),
    ]
}

fn apply(store: &mut Store, op: &Op) {
    // Refusals are part of the sequence too; both stores must refuse identically, which the
    // callers check through the answers afterwards.
    let _ = match op {
        Op::Put(k, v, lease) => store
            .put(&PutRequest {
                key: vec![b'k', *k],
                value: vec![*v; usize::from(*v % 5)],
                lease: *lease,
                ..PutRequest::default()
            })
            .map(|_| ()),
        Op::Delete(k, e) => store
            .delete_range(&DeleteRangeRequest {
                key: vec![b'k', *k],
                range_end: if e > k { vec![b'k', *e] } else { vec![] },
                prev_kv: false,
            })
            .map(|_| ()),
        Op::Compact(r) => store.compact(*r),
        Op::Grant(id) => store.lease_grant(*id, 10 * id),
        Op::Revoke(id) => store.lease_revoke(*id).map(|_| ()),
    };
}

/// Everything observable about a store. Stats are taken with pending physical compaction
/// finished (on a copy), because they lag until then by design.
fn observe(store: &Store) -> String {
    let mut done = store.clone();
    while !done.compact_step(usize::MAX) {}
    let mut out = format!(
        "rev {} compact {} stats {:?} hash {:?} leases {:?}\n",
        store.current_revision(),
        store.compact_revision(),
        done.stats(),
        store.hash_kv(0),
        store.leases()
    );
    for lease in store.leases() {
        out += &format!("{:?}\n", store.lease_time_to_live(lease.id, true));
    }
    for revision in store.compact_revision().max(1)..=store.current_revision() {
        let all = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision,
            ..RangeRequest::default()
        };
        out += &format!("{:?}\n", store.range(&all));
    }
    out += &format!(
        "{:?}\n",
        store.events(store.compact_revision().max(1), &[0], &[0], 0)
    );
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_answers_identically(
        before in prop::collection::vec(op(), 0..40),
        after in prop::collection::vec(op(), 0..20),
    ) {
        let mut original = Store::new();
        for op in &before {
            apply(&mut original, op);
        }
        let bytes = original.encode_checkpoint().unwrap();
        let mut decoded = Store::decode_checkpoint(&bytes).unwrap();
        prop_assert_eq!(observe(&decoded), observe(&original));
        prop_assert_eq!(decoded.encode_checkpoint().unwrap(), bytes, "re-encoding is byte-identical");
        for op in &after {
            apply(&mut original, op);
            apply(&mut decoded, op);
        }
        prop_assert_eq!(observe(&decoded), observe(&original));
    }

    /// A checkpoint encoded a slice at a time while writes, compactions and lease changes go on
    /// between the slices is byte for byte the checkpoint of the store when it began, also
    /// when its output is taken as it goes.
    #[test]
    fn sliced_encoding_captures_the_store_when_it_began(
        before in prop::collection::vec(op(), 0..40),
        during in prop::collection::vec((op(), 0usize..4), 0..30),
    ) {
        let mut store = Store::new();
        for op in &before {
            apply(&mut store, op);
        }
        let expected = store.encode_checkpoint().unwrap();
        let at_begin = observe(&store);
        let mut encoder = store.begin_checkpoint();
        prop_assert_eq!(encoder.revision(), store.current_revision());
        let (mut done, mut taken, mut spare) = (false, Vec::new(), Vec::new());
        for (op, budget) in &during {
            apply(&mut store, op);
            // Physical compaction is held off while the encoder works.
            let pending_before = store.compaction_pending();
            store.compact_step(usize::MAX);
            prop_assert_eq!(store.compaction_pending(), pending_before);
            if !done {
                done = encoder.step(&store, *budget).unwrap();
            }
            if budget % 2 == 1 {
                encoder.take_output(&mut spare);
                taken.extend_from_slice(&spare);
            }
        }
        while !encoder.step(&store, 1).unwrap() {}
        store.end_checkpoint(encoder.instance());
        let bytes = assemble(taken, encoder.finish().unwrap());
        prop_assert_eq!(&bytes, &expected);
        prop_assert_eq!(observe(&Store::decode_checkpoint(&bytes).unwrap()), at_begin);
        // Compaction resumes once the checkpoint ended.
        while !store.compact_step(usize::MAX) {}
        prop_assert!(!store.compaction_pending());
    }

    #[test]
    fn random_bytes_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        prop_assert!(Store::decode_checkpoint(&bytes).is_err());
    }

    #[test]
    fn damaged_payloads_are_refused(seed in any::<u64>(), position in any::<usize>(), cut in any::<usize>()) {
        let mut store = Store::new();
        let mut x = seed;
        for _ in 0..20 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            apply(&mut store, &Op::Put((x >> 60) as u8, (x >> 52) as u8, 0));
        }
        let bytes = store.encode_checkpoint().unwrap();
        let mut flipped = bytes.clone();
        let at = position % flipped.len();
        flipped[at] ^= 1 << (seed % 8);
        prop_assert!(matches!(Store::decode_checkpoint(&flipped), Err(MvccError::CorruptCheckpoint(_))));
        let truncated = &bytes[..cut % bytes.len()];
        prop_assert!(matches!(Store::decode_checkpoint(truncated), Err(MvccError::CorruptCheckpoint(_))));
    }
}

/// The payload from the output taken before [`CheckpointEncoder::finish`] and its end.
fn assemble(mut taken: Vec<u8>, end: PayloadEnd) -> Vec<u8> {
    assert_eq!(end.from_start, taken.is_empty());
    taken.extend_from_slice(&end.rest);
    taken.extend_from_slice(&end.index);
    taken[..end.header.len()].copy_from_slice(&end.header);
    taken
}

#[test]
fn an_unfinished_encoder_refuses_to_finish() {
    let mut store = Store::new();
    for i in 0..3u8 {
        apply(&mut store, &Op::Put(i, i, 0));
    }
    let mut encoder = store.begin_checkpoint();
    assert!(!encoder.step(&store, 2).unwrap());
    assert!(matches!(
        encoder.finish(),
        Err(MvccError::CheckpointTooLarge(_))
    ));
}

#[test]
fn an_encoder_refuses_a_store_it_did_not_begin_on() {
    let mut store = Store::new();
    apply(&mut store, &Op::Put(1, 1, 0));
    let mut encoder = store.begin_checkpoint();
    let replaced = Store::decode_checkpoint(&store.encode_checkpoint().unwrap()).unwrap();
    assert!(matches!(
        encoder.step(&replaced, 10),
        Err(MvccError::StoreReplaced)
    ));
    assert!(encoder.step(&store, 10).unwrap());
}

#[test]
fn empty_store_round_trips() {
    let store = Store::new();
    let decoded = Store::decode_checkpoint(&store.encode_checkpoint().unwrap()).unwrap();
    assert_eq!(observe(&decoded), observe(&store));
}

#[test]
fn unaligned_buffers_decode() {
    let mut store = Store::new();
    for i in 0..100u32 {
        store
            .put(&PutRequest {
                key: i.to_be_bytes().to_vec(),
                value: vec![7; 100],
                ..PutRequest::default()
            })
            .unwrap();
    }
    let bytes = store.encode_checkpoint().unwrap();
    for shift in 1..16 {
        let mut buffer = vec![0u8; shift];
        buffer.extend_from_slice(&bytes);
        let decoded = Store::decode_checkpoint(&buffer[shift..]).unwrap();
        assert_eq!(observe(&decoded), observe(&store));
    }
}

/// Recomputes both checksums of a payload whose body was edited, so that the structural
/// checks behind them (rkyv validation, store invariants) get exercised.
fn reseal(bytes: &mut [u8]) {
    let body = crc32fast::hash(&bytes[48..]);
    bytes[40..44].copy_from_slice(&body.to_le_bytes());
    let header = crc32fast::hash(&bytes[..44]);
    bytes[44..48].copy_from_slice(&header.to_le_bytes());
}

#[test]
fn resealed_damage_is_caught_by_validation() {
    let mut store = Store::new();
    store.lease_grant(5, 10).unwrap();
    for i in 0..30u8 {
        store
            .put(&PutRequest {
                key: vec![b'k', i % 7],
                value: vec![i; 3],
                lease: if i % 3 == 0 { 5 } else { 0 },
                ..PutRequest::default()
            })
            .unwrap();
    }
    store.compact(10).unwrap();
    let bytes = store.encode_checkpoint().unwrap();
    let mut refused = 0;
    for at in 48..bytes.len() {
        for bit in [0u8, 3, 7] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 1 << bit;
            reseal(&mut damaged);
            match Store::decode_checkpoint(&damaged) {
                Err(MvccError::CorruptCheckpoint(_)) => refused += 1,
                Err(other) => panic!("unexpected error {other}"),
                // A flip inside a value, or in a field no invariant constrains (a lease's
                // TTL), still decodes; the rest must be refused.
                Ok(_) => {}
            }
        }
    }
    assert!(refused > 0);
    let mut version = bytes.clone();
    version[8] = 2;
    let header = crc32fast::hash(&version[..44]);
    version[44..48].copy_from_slice(&header.to_le_bytes());
    let error = Store::decode_checkpoint(&version).unwrap_err();
    assert!(error.to_string().contains("format version 2"), "{error}");
}
