//! Crash tests of the WAL on the simulated disk.
//!
//! For each seed, a random workload (batches of random sizes, segment rolls, releases) runs
//! once to count its sync points, then once per sync point with a simulated power loss armed
//! there. The crash loses unsynced data and may tear the last write. After reopening, every
//! acknowledged batch must be present in order, the batch in flight must be wholly present or
//! wholly absent, nothing else may appear, and appending must work. A failing seed is printed
//! with the crash point so that it reproduces exactly.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};

use futures_lite::future::block_on;
use keel_engine::io::{SeededRng, SimDisk};
use keel_engine::wal::{Record, RecordType, Wal, WalError, WalOptions};

/// Seeds per test: 200 in release builds, fewer in (much slower) debug builds; override with
/// KEEL_CRASH_SEEDS for longer runs.
fn seed_count() -> u64 {
    let default = if cfg!(debug_assertions) { 16 } else { 200 };
    std::env::var("KEEL_CRASH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn options(seed: u64) -> WalOptions {
    WalOptions {
        segment_bytes: 16 * 1024,
        dsync: seed % 3 == 0,
    }
}

fn random_batch(rng: &mut SeededRng, first_lsn: u64) -> Vec<Record> {
    let bound = if rng.chance(1, 4) { 30 } else { 5 };
    let count = 1 + rng.below(bound);
    (0..count)
        .map(|i| {
            let big = rng.chance(1, 20);
            let len = if big {
                5000 + rng.below(15000)
            } else {
                rng.below(600)
            };
            let lsn = first_lsn + i;
            let record_type = match rng.below(10) {
                0 => RecordType::HardState,
                1 => RecordType::Checkpoint,
                _ => RecordType::Entry,
            };
            let payload = (0..len).map(|j| (lsn.wrapping_mul(7) + j) as u8).collect();
            Record {
                lsn,
                record_type,
                payload,
            }
        })
        .collect()
}

async fn append(wal: &mut Wal<SimDisk>, batch: &[Record]) -> Result<u64, WalError> {
    let framed: Vec<(RecordType, &[u8])> = batch
        .iter()
        .map(|r| (r.record_type, r.payload.as_slice()))
        .collect();
    wal.append(&framed).await
}

/// Recoveries in which the batch in flight survived, and in which it was dropped: both must
/// happen, or the test is not exercising what it claims to.
static IN_FLIGHT_KEPT: AtomicU64 = AtomicU64::new(0);
static IN_FLIGHT_DROPPED: AtomicU64 = AtomicU64::new(0);

/// What the workload acknowledged before the crash.
struct Outcome {
    acknowledged: Vec<Record>,
    in_flight: Vec<Record>,
    released_through: u64,
}

async fn workload(disk: &SimDisk, seed: u64) -> Outcome {
    let mut rng = SeededRng::new(seed.wrapping_mul(0x9E37_79B9));
    let mut outcome = Outcome {
        acknowledged: Vec::new(),
        in_flight: Vec::new(),
        released_through: 0,
    };
    let (mut wal, records) = match Wal::open(disk.clone(), options(seed)).await {
        Ok(opened) => opened,
        Err(_) if disk.is_frozen() => return outcome,
        Err(e) => panic!("open failed without a crash: {e}"),
    };
    assert!(records.is_empty());
    let batches = 10 + rng.below(25);
    for _ in 0..batches {
        if rng.chance(1, 8) && wal.last_lsn() > 0 {
            let through = rng.below(wal.last_lsn() + 1);
            // A release interrupted by the crash may or may not have taken effect.
            outcome.released_through = outcome.released_through.max(through);
            match wal.release_through(through).await {
                Ok(_) => {}
                Err(_) if disk.is_frozen() => return outcome,
                Err(e) => panic!("release failed without a crash: {e}"),
            }
        }
        let batch = random_batch(&mut rng, wal.last_lsn() + 1);
        match append(&mut wal, &batch).await {
            Ok(last) => {
                assert_eq!(last, batch.last().unwrap().lsn);
                outcome.acknowledged.extend(batch);
            }
            Err(_) if disk.is_frozen() => {
                outcome.in_flight = batch;
                return outcome;
            }
            Err(e) => panic!("append failed without a crash: {e}"),
        }
    }
    outcome
}

/// Reopens after a crash, possibly crashing again during recovery, and checks the records.
async fn recover_and_check(disk: &SimDisk, seed: u64, outcome: &Outcome, rng: &mut SeededRng) {
    disk.crash();
    if rng.chance(1, 3) {
        // Crash again during recovery itself (tail zeroing, tmp cleanup, first segment).
        disk.crash_at_sync_point(disk.sync_points() + rng.below(3));
        if Wal::open(disk.clone(), options(seed)).await.is_err() {
            assert!(disk.is_frozen(), "recovery failed without a crash");
        }
        disk.crash();
    }
    let (mut wal, records) = Wal::open(disk.clone(), options(seed))
        .await
        .unwrap_or_else(|e| panic!("reopen failed: {e}"));
    let acknowledged = &outcome.acknowledged;
    let last_acknowledged = acknowledged.last().map(|r| r.lsn).unwrap_or(0);
    // Whole segments only are released, so the log may start earlier than the release point
    // but never after it.
    let first = records.first().map(|r| r.lsn).unwrap_or(wal.first_lsn());
    assert!(
        first <= outcome.released_through + 1,
        "log starts at {first}, released through {}",
        outcome.released_through
    );
    assert!(first >= 1);
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.lsn, first + i as u64, "LSNs must be contiguous");
    }
    let durable_acknowledged: Vec<&Record> =
        acknowledged.iter().filter(|r| r.lsn >= first).collect();
    assert!(
        records.len() >= durable_acknowledged.len(),
        "acknowledged records lost"
    );
    for (got, want) in records.iter().zip(&durable_acknowledged) {
        assert_eq!(got, *want, "acknowledged record differs");
    }
    let extra = &records[durable_acknowledged.len()..];
    if !extra.is_empty() {
        assert_eq!(
            extra,
            &outcome.in_flight[..],
            "a batch must be all or nothing"
        );
        IN_FLIGHT_KEPT.fetch_add(1, Ordering::Relaxed);
    } else if !outcome.in_flight.is_empty() {
        IN_FLIGHT_DROPPED.fetch_add(1, Ordering::Relaxed);
    }
    assert_eq!(
        wal.last_lsn(),
        records
            .last()
            .map(|r| r.lsn)
            .unwrap_or(last_acknowledged.max(first - 1))
    );
    // The log keeps working after recovery.
    let batch = random_batch(rng, wal.last_lsn() + 1);
    append(&mut wal, &batch)
        .await
        .expect("append after recovery");
    drop(wal);
    let (_, again) = Wal::open(disk.clone(), options(seed))
        .await
        .expect("second reopen");
    assert_eq!(again[..records.len()], records[..]);
    assert_eq!(again[records.len()..], batch[..]);
}

fn run_case(seed: u64, crash_point: Option<u64>) {
    let result = catch_unwind(AssertUnwindSafe(|| {
        block_on(async {
            let disk = SimDisk::new(seed);
            if let Some(point) = crash_point {
                disk.crash_at_sync_point(point);
            }
            let outcome = workload(&disk, seed).await;
            let mut rng = SeededRng::new(seed ^ 0xC0FFEE ^ crash_point.unwrap_or(u64::MAX));
            recover_and_check(&disk, seed, &outcome, &mut rng).await;
        })
    }));
    if let Err(panic) = result {
        eprintln!("crash test failed: seed {seed}, crash point {crash_point:?}");
        std::panic::resume_unwind(panic);
    }
}

fn sync_points_of(seed: u64) -> u64 {
    block_on(async {
        let disk = SimDisk::new(seed);
        workload(&disk, seed).await;
        disk.sync_points()
    })
}

#[test]
fn every_sync_point_crash_keeps_acknowledged_batches() {
    for seed in 0..seed_count() {
        let points = sync_points_of(seed);
        run_case(seed, None);
        for point in 0..points {
            run_case(seed, Some(point));
        }
    }
    assert!(IN_FLIGHT_KEPT.load(Ordering::Relaxed) > 0);
    assert!(IN_FLIGHT_DROPPED.load(Ordering::Relaxed) > 0);
}

#[test]
fn crash_without_tearing_keeps_acknowledged_batches() {
    // Same checks with torn writes off, so that whole in-flight batches survive more often.
    for seed in 1000..1000 + seed_count() {
        let points = sync_points_of(seed);
        for point in (0..points).step_by(3) {
            let result = catch_unwind(AssertUnwindSafe(|| {
                block_on(async {
                    let disk = SimDisk::new(seed);
                    disk.set_tear_writes(false);
                    disk.crash_at_sync_point(point);
                    let outcome = workload(&disk, seed).await;
                    let mut rng = SeededRng::new(seed ^ point);
                    recover_and_check(&disk, seed, &outcome, &mut rng).await;
                })
            }));
            if let Err(panic) = result {
                eprintln!("crash test (no tearing) failed: seed {seed}, crash point {point}");
                std::panic::resume_unwind(panic);
            }
        }
    }
}
