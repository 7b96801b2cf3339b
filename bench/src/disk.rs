//! `disk`: the latency of one durable 4 KiB write on the filesystem of a directory.
//!
//! A single-member store cannot acknowledge a write faster than the disk makes it durable, so
//! this is the floor to hold sequential-put latency against. Two ways are measured, both into
//! a preallocated, zero-filled file (on ext4, writes that extend a file are slower, and a WAL
//! that pre-fills its segments never pays for that):
//! - `direct_dsync`: `O_DIRECT | O_DSYNC`, one `pwrite` of an aligned buffer (one device
//!   write with FUA or a flush, no page cache), the best a WAL can do per record;
//! - `write_fdatasync`: a buffered `pwrite` then `fdatasync`, what etcd's WAL does.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::run::{new_histogram, record, Latency};

/// Flags of `disk`.
#[derive(Args, Debug)]
pub struct DiskArgs {
    /// A directory on the filesystem to measure (a scratch file is created and removed).
    dir: PathBuf,
    /// Writes per method.
    #[arg(long, default_value_t = 2000)]
    count: usize,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// The JSON `disk --json` prints.
#[derive(Debug, Serialize, Deserialize)]
pub struct DiskSummary {
    /// The directory measured.
    pub dir: String,
    /// Writes per method.
    pub count: usize,
    /// Bytes per write.
    pub block_bytes: usize,
    /// O_DIRECT|O_DSYNC pwrite latency (µs); null if O_DIRECT is refused by the filesystem.
    pub direct_dsync_us: Option<Latency>,
    /// Why O_DIRECT could not be measured, if it could not.
    pub direct_error: Option<String>,
    /// Buffered pwrite + fdatasync latency (µs).
    pub write_fdatasync_us: Latency,
}

const BLOCK: usize = 4096;

/// A zeroed, 4096-aligned buffer for O_DIRECT, freed on drop.
struct AlignedBlock {
    pointer: *mut u8,
    layout: std::alloc::Layout,
}

impl AlignedBlock {
    fn new() -> AlignedBlock {
        let layout = std::alloc::Layout::from_size_align(BLOCK, BLOCK).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let pointer = unsafe { std::alloc::alloc_zeroed(layout) };
        if pointer.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        AlignedBlock { pointer, layout }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the pointer is valid for BLOCK bytes, initialised (zeroed), and uniquely
        // borrowed through &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.pointer, BLOCK) }
    }
}

impl Drop for AlignedBlock {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this very layout.
        unsafe { std::alloc::dealloc(self.pointer, self.layout) }
    }
}

/// Creates `path` with `count` zero blocks, written and synced, so later writes overwrite
/// allocated blocks instead of extending the file.
fn zero_filled(path: &PathBuf, count: usize) -> Result<()> {
    let mut file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let zeros = vec![0u8; BLOCK * 256];
    let mut left = count * BLOCK;
    while left > 0 {
        let n = left.min(zeros.len());
        file.write_all(&zeros[..n])?;
        left -= n;
    }
    file.sync_all()?;
    Ok(())
}

fn direct_dsync(path: &PathBuf, count: usize) -> Result<Latency> {
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
        .open(path)
        .with_context(|| format!("opening {} with O_DIRECT|O_DSYNC", path.display()))?;
    let mut block = AlignedBlock::new();
    let mut histogram = new_histogram();
    for i in 0..count {
        block.bytes_mut()[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let began = Instant::now();
        file.write_all_at(block.bytes_mut(), (i * BLOCK) as u64)
            .context("O_DIRECT write")?;
        record(&mut histogram, began.elapsed());
    }
    Ok(Latency::of(&histogram))
}

fn write_fdatasync(path: &PathBuf, count: usize) -> Result<Latency> {
    let file = OpenOptions::new().write(true).open(path)?;
    let mut block = vec![1u8; BLOCK];
    let mut histogram = new_histogram();
    for i in 0..count {
        block[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let began = Instant::now();
        file.write_all_at(&block, (i * BLOCK) as u64)?;
        file.sync_data()?;
        record(&mut histogram, began.elapsed());
    }
    Ok(Latency::of(&histogram))
}

/// Runs both measurements and prints them.
pub fn run(args: DiskArgs) -> Result<()> {
    if !args.dir.is_dir() {
        bail!("{} is not a directory", args.dir.display());
    }
    let count = args.count.max(1);
    let path = args
        .dir
        .join(format!(".keel-bench-disk-{}", std::process::id()));
    let result = (|| -> Result<DiskSummary> {
        zero_filled(&path, count)?;
        let (direct, direct_error) = match direct_dsync(&path, count) {
            Ok(latency) => (Some(latency), None),
            Err(error) => (None, Some(format!("{error:#}"))),
        };
        zero_filled(&path, count)?;
        let buffered = write_fdatasync(&path, count)?;
        Ok(DiskSummary {
            dir: args.dir.display().to_string(),
            count,
            block_bytes: BLOCK,
            direct_dsync_us: direct,
            direct_error,
            write_fdatasync_us: buffered,
        })
    })();
    let _ = std::fs::remove_file(&path);
    let summary = result?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
        return Ok(());
    }
    println!(
        "Disk ({}; {} × {} B writes into a zero-filled file):",
        summary.dir, count, BLOCK
    );
    match &summary.direct_dsync_us {
        Some(l) => println!(
            "  O_DIRECT|O_DSYNC write:   p50 {} µs  p90 {} µs  p99 {} µs  max {} µs",
            l.p50, l.p90, l.p99, l.max
        ),
        None => println!(
            "  O_DIRECT|O_DSYNC write:   n/a ({})",
            summary.direct_error.as_deref().unwrap_or("?")
        ),
    }
    let l = &summary.write_fdatasync_us;
    println!(
        "  write + fdatasync:        p50 {} µs  p90 {} µs  p99 {} µs  max {} µs",
        l.p50, l.p90, l.p99, l.max
    );
    Ok(())
}
