//! WAL append benchmark on the real disk.
//!
//! Appends batches of 1, 10, 100 and 1000 entries of 256 bytes, each batch one write and one
//! sync, once with write + fdatasync and once with O_DSYNC writes, and measures entries/s,
//! syncs/s, bytes written per entry and batch latency. As the physical reference it also
//! measures a raw 4 KiB O_DIRECT|O_DSYNC write (and a 4 KiB write + fdatasync) into a
//! zero-filled file. Every figure is the median of three runs.
//!
//! Run: `cargo run --release -p keel-engine --example wal_bench [-- DIR]`. DIR must be on the
//! disk under test (never tmpfs); the default is a new directory under the system temp dir.

use std::time::{Duration, Instant};

use keel_engine::io::{Disk, File, GlommioDisk, OpenOptions};
use keel_engine::wal::{RecordType, Wal, WalOptions};

const ENTRY_BYTES: usize = 256;
const RUNS: usize = 3;

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    values[values.len() / 2]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One run's results for one configuration.
struct RunResult {
    entries_per_second: f64,
    syncs_per_second: f64,
    bytes_per_entry: f64,
    p50_micros: f64,
    p99_micros: f64,
    max_micros: f64,
}

async fn run_wal(dir: &std::path::Path, dsync: bool, batch_entries: usize) -> RunResult {
    let _ = std::fs::remove_dir_all(dir);
    let disk = GlommioDisk::open(dir).await.expect("open disk");
    let options = WalOptions {
        dsync,
        ..WalOptions::default()
    };
    let (mut wal, _) = Wal::open(disk, options).await.expect("open wal");
    let payloads: Vec<Vec<u8>> = (0..batch_entries)
        .map(|i| vec![i as u8; ENTRY_BYTES])
        .collect();
    let batch: Vec<(RecordType, &[u8])> = payloads
        .iter()
        .map(|p| (RecordType::Entry, p.as_slice()))
        .collect();
    // Enough batches for a stable p99; the 1000-entry runs (82 MB) also cross one segment
    // roll, so their max shows what a roll costs with the spare segment prepared alongside.
    let batches = match batch_entries {
        1 => 3000,
        10 => 2000,
        100 => 600,
        _ => 300,
    };
    for _ in 0..20 {
        wal.append(&batch).await.expect("warm-up append");
    }
    let bytes_before = wal.bytes_written();
    let syncs_before = wal.syncs();
    let mut latencies = Vec::with_capacity(batches);
    let start = Instant::now();
    for _ in 0..batches {
        let t = Instant::now();
        wal.append(&batch).await.expect("append");
        latencies.push(t.elapsed());
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    let entries = (batches * batch_entries) as f64;
    RunResult {
        entries_per_second: entries / elapsed,
        syncs_per_second: (wal.syncs() - syncs_before) as f64 / elapsed,
        bytes_per_entry: (wal.bytes_written() - bytes_before) as f64 / entries,
        p50_micros: micros(percentile(&latencies, 0.5)),
        p99_micros: micros(percentile(&latencies, 0.99)),
        max_micros: micros(*latencies.last().expect("at least one batch")),
    }
}

/// p50 of a raw 4 KiB write into a zero-filled file, with O_DSYNC or followed by fdatasync.
async fn raw_4k_p50(dir: &std::path::Path, dsync: bool) -> f64 {
    let _ = std::fs::remove_dir_all(dir);
    let disk = GlommioDisk::open(dir).await.expect("open disk");
    let file = disk
        .open("raw", OpenOptions::create())
        .await
        .expect("create");
    file.zero_fill(16 << 20).await.expect("zero fill");
    file.sync().await.expect("sync");
    file.close().await.expect("close");
    let file = disk
        .open("raw", OpenOptions::read_write().with_dsync(dsync))
        .await
        .expect("open");
    let mut latencies = Vec::new();
    for i in 0..3000u64 {
        let mut buf = file.alloc_buf(4096);
        buf.as_mut()[0] = i as u8;
        let t = Instant::now();
        file.write_at(i * 4096, buf).await.expect("write");
        if !dsync {
            file.sync().await.expect("sync");
        }
        latencies.push(t.elapsed());
    }
    latencies.sort();
    micros(percentile(&latencies, 0.5))
}

/// Time to create one 64 MiB segment (zero-fill, header, sync, rename, directory sync): the
/// cost of a segment roll.
async fn segment_create_millis(dir: &std::path::Path) -> f64 {
    let _ = std::fs::remove_dir_all(dir);
    let disk = GlommioDisk::open(dir).await.expect("open disk");
    let t = Instant::now();
    let (wal, _) = Wal::open(disk, WalOptions::default())
        .await
        .expect("open wal");
    let elapsed = t.elapsed();
    drop(wal);
    elapsed.as_secs_f64() * 1e3
}

async fn bench(base: std::path::PathBuf) {
    let dir = base.join("bench");
    let mut raw_dsync = Vec::new();
    let mut raw_fdatasync = Vec::new();
    let mut roll = Vec::new();
    for _ in 0..RUNS {
        raw_dsync.push(raw_4k_p50(&dir, true).await);
        raw_fdatasync.push(raw_4k_p50(&dir, false).await);
        roll.push(segment_create_millis(&dir).await);
    }
    println!(
        "raw 4 KiB O_DIRECT|O_DSYNC write p50: {:.0} us",
        median(raw_dsync)
    );
    println!(
        "raw 4 KiB O_DIRECT write + fdatasync p50: {:.0} us",
        median(raw_fdatasync)
    );
    println!("64 MiB segment creation: {:.0} ms", median(roll));
    println!();
    println!(
        "| mode | entries/batch | entries/s | syncs/s | bytes/entry | p50 us | p99 us | max us |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for dsync in [false, true] {
        for batch_entries in [1, 10, 100, 1000] {
            let mut results = Vec::new();
            for _ in 0..RUNS {
                results.push(run_wal(&dir, dsync, batch_entries).await);
            }
            let pick = |f: fn(&RunResult) -> f64| median(results.iter().map(f).collect());
            println!(
                "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
                if dsync {
                    "O_DSYNC write"
                } else {
                    "write + fdatasync"
                },
                batch_entries,
                pick(|r| r.entries_per_second),
                pick(|r| r.syncs_per_second),
                pick(|r| r.bytes_per_entry),
                pick(|r| r.p50_micros),
                pick(|r| r.p99_micros),
                pick(|r| r.max_micros),
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let base = match std::env::args().nth(1) {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::env::temp_dir().join(format!("keel-wal-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&base).expect("create bench dir");
    let handle = glommio::LocalExecutorBuilder::default()
        .spawn({
            let base = base.clone();
            move || bench(base)
        })
        .expect("start executor");
    handle.join().expect("bench thread");
    let _ = std::fs::remove_dir_all(&base);
}
