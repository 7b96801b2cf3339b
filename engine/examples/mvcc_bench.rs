//! Micro-benchmark of the MVCC store on one core.
//!
//! Run: `cargo run --release -p keel-engine --example mvcc_bench [keys]` (default 1,000,000
//! keys of 256-byte values). Prints puts/s (new keys and overwrites), point reads/s, 1000-key
//! ranges/s, a watcher's catch-up read, compaction (the logical `compact` call, then each
//! `compact_step` slice), and checkpoint encode/decode times, also in a fresh process.
//! `KEEL_BENCH_KEEP_CHECKPOINT=<file>` keeps the checkpoint; `mvcc_bench restart <file>` then
//! times only the fresh-process load.

use std::hint::black_box;
use std::time::Instant;

use keel_engine::mvcc::{DeleteRangeRequest, PutRequest, RangeRequest, Store};

const VALUE_BYTES: usize = 256;
/// Physical compaction units per `compact_step` call (what the server's log core would do
/// between two write batches).
const STEP_BUDGET: usize = 10_000;

fn key(i: u64) -> Vec<u8> {
    format!("/registry/pods/default/pod-{i:010}").into_bytes()
}

/// A small deterministic generator, so runs are comparable.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

fn report(what: &str, operations: u64, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{what:<40} {operations:>9} ops in {seconds:>7.3} s = {:>12.0} ops/s",
        operations as f64 / seconds
    );
}

/// A fresh process that loads a checkpoint file, as a restarting server would.
fn restart(path: &str) {
    let started = Instant::now();
    let bytes = std::fs::read(path).expect("read checkpoint");
    let read_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let store = Store::decode_checkpoint(&bytes).expect("decode");
    println!(
        "restart in a fresh process: read file     {read_seconds:>7.3} s, decode {:>7.3} s ({} keys)",
        started.elapsed().as_secs_f64(),
        store.stats().live_keys
    );
    // The process ends here; freeing a million allocations one by one is not part of a
    // restart, and would only blur a profile of it.
    std::mem::forget(store);
}

/// Runs pending compaction in `STEP_BUDGET` slices and prints the slice times.
fn compact_in_slices(store: &mut Store, what: &str) {
    let mut slices: Vec<f64> = Vec::new();
    let all_started = Instant::now();
    loop {
        let started = Instant::now();
        let done = store.compact_step(STEP_BUDGET);
        slices.push(started.elapsed().as_secs_f64());
        if done {
            break;
        }
    }
    let total = all_started.elapsed().as_secs_f64();
    let mut sorted = slices.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "{what}({STEP_BUDGET}): {} calls, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, \
         total {total:.3} s",
        slices.len(),
        sorted[sorted.len() / 2] * 1e3,
        sorted[sorted.len() * 99 / 100] * 1e3,
        sorted[sorted.len() - 1] * 1e3,
    );
}

/// One key written `writes` times, then compacted: the obsolete revisions of a single key
/// must be freed in slices too.
fn hot_key(writes: u64) {
    let mut store = Store::new();
    let value = vec![0xcdu8; VALUE_BYTES];
    for _ in 0..writes {
        store
            .put(&PutRequest {
                key: b"/registry/leases/kube-system/hot".to_vec(),
                value: value.clone(),
                ..PutRequest::default()
            })
            .expect("put");
    }
    store.compact(store.current_revision()).expect("compact");
    compact_in_slices(&mut store, &format!("hot key x{writes}: compact_step"));
}

fn main() {
    let mut args = std::env::args().skip(1);
    if let Some("restart") = args.next().as_deref() {
        restart(&args.next().expect("restart <checkpoint file>"));
        return;
    }
    let keys: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let value = vec![0xabu8; VALUE_BYTES];
    let mut store = Store::new();

    let started = Instant::now();
    for i in 0..keys {
        store
            .put(&PutRequest {
                key: key(i),
                value: value.clone(),
                ..PutRequest::default()
            })
            .expect("put");
    }
    report("put (new keys, 256 B)", keys, started);

    let mut random = Lcg(7);
    let overwrites = keys / 2;
    let started = Instant::now();
    for _ in 0..overwrites {
        store
            .put(&PutRequest {
                key: key(random.next(keys)),
                value: value.clone(),
                ..PutRequest::default()
            })
            .expect("put");
    }
    report("put (overwrite random key)", overwrites, started);

    let reads = keys;
    let read_keys: Vec<Vec<u8>> = (0..reads).map(|_| key(random.next(keys))).collect();
    let started = Instant::now();
    for k in read_keys {
        let response = store
            .range(&RangeRequest {
                key: k,
                ..RangeRequest::default()
            })
            .expect("range");
        black_box(response);
    }
    report("point read (random key)", reads, started);

    let ranges = 2_000u64;
    let started = Instant::now();
    for _ in 0..ranges {
        let first = random.next(keys.saturating_sub(1000).max(1));
        let response = store
            .range(&RangeRequest {
                key: key(first),
                range_end: key(first + 1000),
                ..RangeRequest::default()
            })
            .expect("range");
        black_box(response);
    }
    report("range of 1000 keys", ranges, started);

    let started = Instant::now();
    let since = store.current_revision() - 10_000;
    let events = store.events(since, b"\0", b"\0", 0).expect("events");
    report(
        "watch catch-up: events of 10k revisions",
        events.len() as u64,
        started,
    );

    let started = Instant::now();
    let events = store.events(since, &key(0), &key(1000), 0).expect("events");
    report(
        "watch catch-up, 1000-key filter",
        events.len() as u64 + 1,
        started,
    );

    let started = Instant::now();
    store
        .delete_range(&DeleteRangeRequest {
            key: key(0),
            range_end: key(1000),
            prev_kv: false,
        })
        .expect("delete");
    report("delete range of 1000 keys", 1, started);

    let stats = store.stats();
    println!(
        "store: {} live keys, {} revisions, ~{} MiB",
        stats.live_keys,
        stats.total_revisions,
        stats.approximate_bytes >> 20
    );

    // Compaction as the server runs it: the logical step, then slices of physical work
    // between write batches, each of which must stay short.
    let started = Instant::now();
    store.compact(store.current_revision()).expect("compact");
    println!(
        "compact() at current revision (logical):  {:>7.3} us",
        started.elapsed().as_secs_f64() * 1e6
    );
    compact_in_slices(&mut store, "compact_step");

    let started = Instant::now();
    let bytes = store.encode_checkpoint().expect("encode");
    println!(
        "encode checkpoint:                        {:>7.3} s ({} MiB)",
        started.elapsed().as_secs_f64(),
        bytes.len() >> 20
    );
    // A restart has only the checkpoint bytes in memory, not the old store.
    let expected_stats = store.stats();
    let expected_revision = store.current_revision();
    drop(store);
    let started = Instant::now();
    let decoded = Store::decode_checkpoint(&bytes).expect("decode");
    println!(
        "decode checkpoint (restart):              {:>7.3} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(decoded.stats(), expected_stats);
    assert_eq!(decoded.current_revision(), expected_revision);
    drop(decoded);

    let path = std::env::temp_dir().join(format!("keel-mvcc-bench-{}.ckpt", std::process::id()));
    std::fs::write(&path, &bytes).expect("write checkpoint");
    drop(bytes);
    let status = std::process::Command::new(std::env::current_exe().expect("current exe"))
        .arg("restart")
        .arg(&path)
        .status()
        .expect("run restart");
    hot_key(keys / 2);

    // Keep the file for repeated `restart` runs when asked to.
    if let Some(keep) = std::env::var_os("KEEL_BENCH_KEEP_CHECKPOINT") {
        std::fs::rename(&path, keep).expect("keep checkpoint");
    } else {
        let _ = std::fs::remove_file(&path);
    }
    assert!(status.success());
}
