//! The closed-loop load driver shared by every request/response workload.
//!
//! Each of `--clients` tasks owns one [`Op`] (a client's state: its gRPC stubs, its random
//! number generator, any open streams). A task repeatedly claims the next operation number from
//! a shared counter, waits for its slot when `--rate` is set, runs the operation and records its
//! latency in its own histogram; histograms merge at the end, so the hot path shares only one
//! atomic counter.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// One client's unit of work. `call(i)` runs operation number `i` (unique across clients).
pub trait Op: Send + 'static {
    /// Runs one operation; an `Err` carries a short message that is counted by text.
    fn call(&mut self, i: u64) -> BoxFuture<'_, Result<(), String>>;
}

/// When a run stops: after a number of operations or after a wall-clock duration.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// Stop after this many operations (successful or failed) in all.
    Total(u64),
    /// Stop starting operations after this long.
    Duration(Duration),
}

/// How the driver paces clients.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// When to stop.
    pub stop: Stop,
    /// Operations per second over all clients; 0 means as fast as the clients can go.
    pub rate: f64,
    /// An operation that takes longer counts as failed ("timeout"), so that a stuck server
    /// ends a run instead of hanging it.
    pub op_timeout: Duration,
    /// Operations that take at least this long are printed to stderr as they end (their end
    /// as Unix time in milliseconds and their latency), to line slow ones up with a server's
    /// log; `None`: none are.
    pub slow_log: Option<Duration>,
}

/// What a run measured, before it is turned into a [`Summary`].
pub struct Outcome {
    /// Per-operation latency in microseconds.
    pub histogram: Histogram<u64>,
    /// Operations that returned `Ok`.
    pub ok: u64,
    /// Failed operations, counted by message.
    pub errors: BTreeMap<String, u64>,
    /// From the first operation's start to the last one's end.
    pub elapsed: Duration,
}

/// A histogram in microseconds with three significant digits, growing as needed.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::<u64>::new(3).expect("3 significant digits is a valid precision")
}

/// Records a latency, rounding sub-microsecond values up to 1 µs so that they stay visible.
pub fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    let micros = (latency.as_micros() as u64).max(1);
    // `saturating_record` would clamp instead of growing the histogram, so use `record`: an
    // auto-resizing histogram only refuses values beyond its u64 range, which a latency in
    // microseconds cannot reach.
    let _ = histogram.record(micros);
}

/// Prints one slow operation to stderr: `slow op <i>: ended <unix ms> after <µs> µs`.
fn log_slow(i: u64, latency: Duration) {
    let ended = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!(
        "slow op {i}: ended {}.{:03} after {} us",
        ended.as_secs(),
        ended.subsec_millis(),
        latency.as_micros()
    );
}

/// Formats a gRPC status as "Code: message", the key by which errors are counted.
pub fn status_text(status: &tonic::Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    text.truncate(200);
    text
}

/// Runs every op concurrently until `pace.stop`, returning merged measurements.
pub async fn drive<O: Op>(ops: Vec<O>, pace: Pace) -> Outcome {
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let progress = Progress::start(pace.stop, counter.clone(), start);
    let mut tasks = Vec::with_capacity(ops.len());
    for mut op in ops {
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut histogram = new_histogram();
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let mut ok = 0u64;
            let mut last_end = start;
            loop {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                if let Stop::Total(total) = pace.stop {
                    if i >= total {
                        break;
                    }
                }
                if pace.rate > 0.0 {
                    // Operation i is due at start + i/rate: a fixed schedule, so a slow
                    // response does not lower the offered rate for everybody else.
                    let due = start + Duration::from_secs_f64(i as f64 / pace.rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                if let Stop::Duration(limit) = pace.stop {
                    if start.elapsed() >= limit {
                        break;
                    }
                }
                let began = Instant::now();
                let result = tokio::time::timeout(pace.op_timeout, op.call(i))
                    .await
                    .unwrap_or_else(|_| Err(format!("timeout after {:?}", pace.op_timeout)));
                last_end = Instant::now();
                let latency = last_end - began;
                record(&mut histogram, latency);
                if pace.slow_log.is_some_and(|slow| latency >= slow) {
                    log_slow(i, latency);
                }
                match result {
                    Ok(()) => ok += 1,
                    Err(message) => *errors.entry(message).or_default() += 1,
                }
            }
            (histogram, ok, errors, last_end)
        }));
    }
    let mut outcome = Outcome {
        histogram: new_histogram(),
        ok: 0,
        errors: BTreeMap::new(),
        elapsed: Duration::ZERO,
    };
    let mut last_end = start;
    for task in tasks {
        let (histogram, ok, errors, end) = task.await.expect("client task panicked");
        outcome
            .histogram
            .add(&histogram)
            .expect("histograms with the same precision merge");
        outcome.ok += ok;
        for (message, count) in errors {
            *outcome.errors.entry(message).or_default() += count;
        }
        last_end = last_end.max(end);
    }
    progress.finish();
    outcome.elapsed = last_end - start;
    outcome
}

/// A progress bar on stderr, only when stderr is a terminal (never in scripts or tests).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn start(stop: Stop, counter: Arc<AtomicU64>, start: Instant) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress {
                bar: None,
                ticker: None,
            };
        }
        let (length, by_time) = match stop {
            Stop::Total(total) => (total, false),
            Stop::Duration(limit) => (limit.as_millis() as u64, true),
        };
        let bar = indicatif::ProgressBar::new(length);
        let style = if by_time {
            "{elapsed_precise} [{bar:40}] {percent}% {msg}"
        } else {
            "{elapsed_precise} [{bar:40}] {pos}/{len} {msg}"
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(style) {
            bar.set_style(style);
        }
        let ticking = bar.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let done = counter.load(Ordering::Relaxed);
                if by_time {
                    ticking.set_position((start.elapsed().as_millis() as u64).min(length));
                    ticking.set_message(format!("{done} ops"));
                } else {
                    ticking.set_position(done.min(length));
                }
            }
        });
        Progress {
            bar: Some(bar),
            ticker: Some(ticker),
        }
    }

    fn finish(self) {
        if let Some(ticker) = self.ticker {
            ticker.abort();
        }
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Smallest value.
    pub min: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value.
    pub max: u64,
}

impl Latency {
    /// Reads the percentiles of a histogram; all zero for an empty one.
    pub fn of(histogram: &Histogram<u64>) -> Latency {
        if histogram.is_empty() {
            return Latency::default();
        }
        Latency {
            min: histogram.min(),
            mean: histogram.mean(),
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        }
    }
}

/// The quantiles at which the latency distribution is sampled for CDF plots: dense in the
/// middle, and down to 1 in 100,000 in the tail where the differences between systems live.
const CDF_QUANTILES: &[f64] = &[
    0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.96,
    0.97, 0.98, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99999, 1.0,
];

/// The latency distribution as (quantile, microseconds) pairs.
pub fn cdf(histogram: &Histogram<u64>) -> Vec<(f64, u64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    CDF_QUANTILES
        .iter()
        .map(|&q| (q, histogram.value_at_quantile(q)))
        .collect()
}

/// The machine-readable result of one run, printed by `--json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// Subcommand name, e.g. "put", "range", "watch-latency".
    pub workload: String,
    /// Endpoints the connections went to (after `--target-leader`).
    pub endpoints: Vec<String>,
    /// gRPC connections.
    pub conns: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// `--total` when given, else null (a `--duration` run).
    pub requested_total: Option<u64>,
    /// Operations finished, successful or not.
    pub total: u64,
    /// Successful operations.
    pub ok: u64,
    /// Failed operations.
    pub errors: u64,
    /// Failed operations by error message.
    pub error_counts: BTreeMap<String, u64>,
    /// Wall-clock seconds from the first operation's start to the last one's end.
    pub duration_secs: f64,
    /// Successful operations per second.
    pub ops_per_sec: f64,
    /// What `latency_us` measures, e.g. "request" or "put-to-event delivery".
    pub latency_of: String,
    /// Latency percentiles in microseconds.
    pub latency_us: Latency,
    /// The latency distribution as [quantile, microseconds] pairs, for plots.
    pub latency_cdf_us: Vec<(f64, u64)>,
    /// The flags the run used.
    pub params: serde_json::Value,
    /// Workload-specific results (watch event counts, OCC retries, ...).
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Summary {
    /// Prints a readable summary, as etcd's benchmark tool does.
    pub fn print_text(&self) {
        println!("Summary ({}):", self.workload);
        println!("  Endpoints:  {}", self.endpoints.join(","));
        println!("  Conns:      {}   Clients: {}", self.conns, self.clients);
        println!(
            "  Total:      {} ({} ok, {} errors)",
            self.total, self.ok, self.errors
        );
        println!("  Duration:   {:.3} s", self.duration_secs);
        println!("  Ops/sec:    {:.1}", self.ops_per_sec);
        let l = &self.latency_us;
        println!("  Latency ({}, µs):", self.latency_of);
        println!(
            "    min {}  mean {:.1}  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            l.min, l.mean, l.p50, l.p90, l.p99, l.p999, l.max
        );
        for (key, value) in &self.extra {
            println!("  {key}: {value}");
        }
        if !self.error_counts.is_empty() {
            println!("  Errors:");
            for (message, count) in &self.error_counts {
                println!("    {count} × {message}");
            }
        }
    }
}
