//! `check perf` and `check datascale`: etcdctl's load checks, with its workloads, progress
//! bar, PASS/FAIL lines and exit statuses.
//!
//! `perf` writes 1 KiB values under random 256-byte keys at the workload's rate for 60
//! seconds and judges the throughput (at least 90% of the rate), the slowest write (at most
//! 500 ms) and the latencies' standard deviation (at most 100 ms). `datascale` writes the
//! workload's number of 1 KiB key-values and reports how much the first endpoint's resident
//! memory (its `process_resident_memory_bytes` metric) grew. Both delete their keys after,
//! optionally compacting and defragmenting. etcdctl opens one connection per simulated
//! client; keelctl runs the same number of concurrent writers over one connection.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use clap::Args;
use futures::channel::mpsc;
use futures::StreamExt;
use keel_proto::etcdserverpb::{
    CompactionRequest, DefragmentRequest, DeleteRangeRequest, PutRequest, RangeRequest,
};
use rand::Rng;

use crate::client::Client;
use crate::error::{exit, status_text, CliError};
use crate::gofmt::quote;
use crate::kv::prefix_end;
use crate::Ctx;

/// How long the cleanup's delete, a compaction or a defragmentation may take.
const MAINTENANCE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the progress bar is redrawn (pb's default refresh rate).
const PROGRESS_REFRESH: Duration = Duration::from_millis(200);

/// `check <subcommand>`.
#[derive(clap::Subcommand, Debug)]
pub enum CheckCommand {
    /// Check the performance of the etcd cluster.
    Perf(PerfArgs),
    /// Check the memory usage of holding data for different workloads on a given server
    /// endpoint.
    Datascale(DatascaleArgs),
}

/// `check perf [options]`.
#[derive(Args, Debug)]
pub struct PerfArgs {
    /// The performance check's workload model. Accepted workloads: s(small), m(medium),
    /// l(large), xl(xLarge).
    #[arg(long, default_value = "s")]
    pub load: String,
    /// The prefix for writing the performance check's keys.
    #[arg(long, default_value = "/etcdctl-check-perf/")]
    pub prefix: String,
    /// Compact storage with last revision after test is finished.
    #[arg(long)]
    pub auto_compact: bool,
    /// Defragment storage after test is finished.
    #[arg(long)]
    pub auto_defrag: bool,
}

/// `check datascale [options]`.
#[derive(Args, Debug)]
pub struct DatascaleArgs {
    /// The datascale check's workload model. Accepted workloads: s(small), m(medium),
    /// l(large), xl(xLarge).
    #[arg(long, default_value = "s")]
    pub load: String,
    /// The prefix for writing the datascale check's keys.
    #[arg(long, default_value = "/etcdctl-check-datascale/")]
    pub prefix: String,
    /// Compact storage with last revision after test is finished.
    #[arg(long)]
    pub auto_compact: bool,
    /// Defragment storage after test is finished.
    #[arg(long)]
    pub auto_defrag: bool,
}

/// A workload's name, from its long or short form.
fn model(load: &str) -> Result<&'static str, CliError> {
    match load {
        "s" | "small" => Ok("s"),
        "m" | "medium" => Ok("m"),
        "l" | "large" => Ok("l"),
        "xl" | "xLarge" => Ok("xl"),
        _ => Err(CliError::new(
            exit::BAD_FEATURE,
            format!("unknown load option {load}"),
        )),
    }
}

/// Runs a `check` command.
pub fn run(ctx: &Ctx, command: &CheckCommand) -> Result<(), CliError> {
    match command {
        CheckCommand::Perf(args) => perf(ctx, args),
        CheckCommand::Datascale(args) => datascale(ctx, args),
    }
}

/// The latencies and errors of a run, as etcd's `report` package sums them.
#[derive(Default)]
struct Stats {
    latencies: Vec<f64>,
    errors: BTreeMap<String, u64>,
}

impl Stats {
    fn record(&mut self, outcome: Result<Duration, String>) {
        match outcome {
            Ok(latency) => self.latencies.push(latency.as_secs_f64()),
            Err(e) => *self.errors.entry(e).or_default() += 1,
        }
    }

    fn slowest(&self) -> f64 {
        self.latencies.iter().copied().fold(0.0, f64::max)
    }

    fn stddev(&self) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let n = self.latencies.len() as f64;
        let mean = self.latencies.iter().sum::<f64>() / n;
        (self
            .latencies
            .iter()
            .map(|l| (l - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt()
    }

    fn print_errors(&self) {
        println!("FAIL: too many errors");
        for (error, count) in &self.errors {
            println!("FAIL: ERROR({error}) -> {count}");
        }
    }
}

/// pb's text progress bar as etcdctl shows it when stdout is no terminal: `\r`, the counts,
/// the percentage, and the time left; on finishing, the time taken and a newline.
#[derive(Clone, Copy)]
struct Progress {
    total: u64,
    started: Instant,
}

impl Progress {
    fn new(total: u64) -> Progress {
        Progress {
            total,
            started: Instant::now(),
        }
    }

    fn draw(&self, current: u64) {
        let percent = current as f64 * 100.0 / self.total.max(1) as f64;
        let mut line = format!("\r {current} / {} {percent:>7.2}%", self.total);
        if current > 0 && current < self.total {
            let per_item = self.started.elapsed().as_secs_f64() / current as f64;
            let left = (per_item * (self.total - current) as f64) as u64;
            line.push_str(&format!(" {:02}m{:02}s", left / 60, left % 60));
        }
        print!("{line}");
        let _ = std::io::stdout().flush();
    }

    fn finish(&self) {
        let percent = 100.0;
        println!(
            "\r {} / {} {percent:>7.2}% {}",
            self.total,
            self.total,
            go_seconds(self.started.elapsed().as_secs())
        );
    }
}

/// Go's `Duration.String()` of whole seconds: `59s`, `1m0s`, `1h2m3s`.
fn go_seconds(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// A random key under `prefix`: `size` bytes holding a random number as a Go varint, the
/// rest zeros.
fn random_key(prefix: &[u8], size: usize) -> Vec<u8> {
    let n: i64 = rand::thread_rng().gen_range(0..i64::MAX);
    let mut zigzag = (n << 1) as u64;
    let mut key = prefix.to_vec();
    let start = key.len();
    key.resize(start + size, 0);
    let mut at = start;
    while zigzag >= 0x80 {
        key[at] = (zigzag as u8) | 0x80;
        zigzag >>= 7;
        at += 1;
    }
    key[at] = zigzag as u8;
    key
}

/// Fails with etcdctl's text when `prefix` already holds keys (`quoted_command` says
/// whether 3.5 quotes the delete command in the message, as `perf` does).
async fn require_empty(
    client: &Client,
    prefix: &str,
    quoted_command: bool,
) -> Result<(), CliError> {
    let response = client
        .kv()
        .range(RangeRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: prefix_end(prefix.as_bytes()),
            limit: 1,
            ..Default::default()
        })
        .await
        .map_err(|s| CliError::error(status_text(&s)))?
        .into_inner();
    if response.kvs.is_empty() {
        return Ok(());
    }
    let quoted = quote(prefix.as_bytes());
    let message = if quoted_command {
        format!("prefix {quoted} has keys. Delete with 'etcdctl del --prefix {prefix}' first")
    } else {
        format!("prefix {quoted} has keys. Delete with etcdctl del --prefix {prefix} first")
    };
    Err(CliError::invalid_input(message))
}

/// Writes the puts `requests` yields with `writers` concurrent writers, each result recorded
/// (and `on_done` told) as it comes.
async fn write_all(
    client: &Client,
    writers: usize,
    requests: mpsc::Receiver<PutRequest>,
    mut on_done: impl FnMut(u64),
) -> Stats {
    let mut stats = Stats::default();
    let mut done = 0u64;
    let mut results = requests
        .map(|request| {
            let mut kv = client.kv();
            async move {
                let start = Instant::now();
                kv.put(request)
                    .await
                    .map(|_| start.elapsed())
                    .map_err(|s| status_text(&s))
            }
        })
        .buffer_unordered(writers);
    while let Some(outcome) = results.next().await {
        stats.record(outcome);
        done += 1;
        on_done(done);
    }
    stats
}

/// Deletes the keys under `prefix`, then compacts and defragments when asked, printing what
/// etcdctl prints. A failed delete is reported, not fatal (`perf`) or fatal (`datascale`).
fn clean_up(
    ctx: &Ctx,
    client: &Client,
    prefix: &str,
    compact: bool,
    defrag: bool,
    delete_failure_fatal: bool,
) -> Result<(), CliError> {
    let deleted = client.block_on(async {
        tokio::time::timeout(
            MAINTENANCE_TIMEOUT,
            client.kv().delete_range(DeleteRangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
                ..Default::default()
            }),
        )
        .await
    });
    let deleted = match deleted {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => {
            let text = status_text(&status);
            if delete_failure_fatal {
                return Err(CliError::error(text));
            }
            println!("FAIL: Cleanup failed during key deletion: ERROR({text})");
            return defrag_all(ctx, defrag);
        }
        Err(_) => {
            if delete_failure_fatal {
                return Err(CliError::error(crate::client::DEADLINE));
            }
            println!(
                "FAIL: Cleanup failed during key deletion: ERROR({})",
                crate::client::DEADLINE
            );
            return defrag_all(ctx, defrag);
        }
    };
    if compact {
        let revision = deleted.header.map_or(0, |h| h.revision);
        println!("Compacting with revision {revision}");
        client.call(client.kv().compact(CompactionRequest {
            revision,
            physical: true,
        }))?;
        println!("Compacted with revision {revision}");
    }
    defrag_all(ctx, defrag)
}

fn defrag_all(ctx: &Ctx, defrag: bool) -> Result<(), CliError> {
    if !defrag {
        return Ok(());
    }
    for endpoint in &ctx.global.endpoints {
        let shown = quote(endpoint.as_bytes());
        println!("Defragmenting {shown}");
        let client = Client::connect_to(&ctx.global, endpoint)?;
        client.block_on(async {
            tokio::time::timeout(
                MAINTENANCE_TIMEOUT,
                client.maintenance().defragment(DefragmentRequest {}),
            )
            .await
            .map_err(|_| CliError::error(crate::client::DEADLINE))?
            .map_err(|s| CliError::error(status_text(&s)))
        })?;
        println!("Defragmented {shown}");
    }
    Ok(())
}

/// Ends the process with etcdctl's failure status after a FAIL line (no `Error:` line).
fn fail() -> ! {
    let _ = std::io::stdout().flush();
    std::process::exit(i32::from(exit::ERROR))
}

/// `check perf`.
pub fn perf(ctx: &Ctx, args: &PerfArgs) -> Result<(), CliError> {
    let (rate_per_second, writers) = match model(&args.load)? {
        "s" => (150, 50),
        "m" => (1000, 200),
        "l" => (8000, 500),
        _ => (15000, 1000),
    };
    let duration_seconds = 60u64;
    let client = ctx.client()?;
    let (stats, elapsed) = client.block_on(async {
        require_empty(client, &args.prefix, true).await?;
        let progress = Progress::new(duration_seconds);
        progress.draw(0);
        let (mut sender, requests) = mpsc::channel(writers);
        let prefix = args.prefix.clone().into_bytes();
        let started = Instant::now();
        let end = started + Duration::from_secs(duration_seconds);
        tokio::spawn(async move {
            let gap = Duration::from_secs_f64(1.0 / f64::from(rate_per_second));
            let mut next = Instant::now();
            let value = vec![0u8; 1024];
            while next < end {
                tokio::time::sleep_until(next.into()).await;
                let put = PutRequest {
                    key: random_key(&prefix, 256),
                    value: value.clone(),
                    ..Default::default()
                };
                if futures::SinkExt::send(&mut sender, put).await.is_err() {
                    return;
                }
                next += gap;
            }
        });
        let bar = progress;
        let drawer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROGRESS_REFRESH).await;
                bar.draw(started.elapsed().as_secs().min(duration_seconds - 1));
            }
        });
        let stats = write_all(client, writers, requests, |_| {}).await;
        drawer.abort();
        // The bar runs its full duration, as etcdctl's ticks it once a second.
        tokio::time::sleep_until(end.into()).await;
        let elapsed = started.elapsed();
        progress.finish();
        Ok::<_, CliError>((stats, elapsed))
    })?;
    clean_up(
        ctx,
        client,
        &args.prefix,
        args.auto_compact,
        args.auto_defrag,
        false,
    )?;
    let mut ok = true;
    if !stats.errors.is_empty() {
        stats.print_errors();
        ok = false;
    }
    let rps = stats.latencies.len() as f64 / elapsed.as_secs_f64();
    if rps / f64::from(rate_per_second) <= 0.9 {
        println!("FAIL: Throughput too low: {} writes/s", rps as i64 + 1);
        ok = false;
    } else {
        println!("PASS: Throughput is {} writes/s", rps as i64 + 1);
    }
    let slowest = stats.slowest();
    if slowest > 0.5 {
        println!("Slowest request took too long: {slowest:.6}s");
        ok = false;
    } else {
        println!("PASS: Slowest request took {slowest:.6}s");
    }
    let stddev = stats.stddev();
    if stddev > 0.1 {
        println!("Stddev too high: {stddev:.6}s");
        ok = false;
    } else {
        println!("PASS: Stddev is {stddev:.6}s");
    }
    if ok {
        println!("PASS");
        Ok(())
    } else {
        println!("FAIL");
        fail()
    }
}

/// `check datascale`.
pub fn datascale(ctx: &Ctx, args: &DatascaleArgs) -> Result<(), CliError> {
    let (count, writers) = match model(&args.load)? {
        "s" => (10_000u64, 50),
        "m" => (100_000, 200),
        "l" => (1_000_000, 500),
        _ => (3_000_000, 1000),
    };
    let client = ctx.client()?;
    let endpoint = ctx.global.endpoints.first().cloned().unwrap_or_default();
    client.block_on(require_empty(client, &args.prefix, false))?;
    let Some(before) = resident_memory_bytes(&endpoint) else {
        println!("FAIL: Could not read process_resident_memory_bytes before the put operations.");
        fail()
    };
    println!(
        "Start data scale check for work load [{count} key-value pairs, 1024 bytes per \
         key-value, {writers} concurrent clients]."
    );
    let progress = Progress::new(count);
    progress.draw(0);
    let stats = client.block_on(async {
        let (mut sender, requests) = mpsc::channel(writers);
        let prefix = args.prefix.clone().into_bytes();
        tokio::spawn(async move {
            let value = vec![0u8; 512];
            for _ in 0..count {
                let put = PutRequest {
                    key: random_key(&prefix, 512),
                    value: value.clone(),
                    ..Default::default()
                };
                if futures::SinkExt::send(&mut sender, put).await.is_err() {
                    return;
                }
            }
        });
        let mut last_draw = Instant::now();
        write_all(client, writers, requests, |done| {
            if last_draw.elapsed() >= PROGRESS_REFRESH {
                progress.draw(done);
                last_draw = Instant::now();
            }
        })
        .await
    });
    progress.finish();
    let Some(after) = resident_memory_bytes(&endpoint) else {
        println!("FAIL: Could not read process_resident_memory_bytes after the put operations.");
        fail()
    };
    clean_up(
        ctx,
        client,
        &args.prefix,
        args.auto_compact,
        args.auto_defrag,
        true,
    )?;
    if !stats.errors.is_empty() {
        stats.print_errors();
        fail()
    }
    let used_mb = (after - before) / (1024.0 * 1024.0);
    println!("PASS: Approximate system memory used : {used_mb:.2} MB.");
    Ok(())
}

/// The endpoint's `process_resident_memory_bytes` from its `/metrics` over HTTP, or `None`
/// after printing why not (as etcdctl prints it).
fn resident_memory_bytes(endpoint: &str) -> Option<f64> {
    const KEY: &str = "process_resident_memory_bytes";
    let host = endpoint
        .strip_prefix("http://")
        .unwrap_or(endpoint)
        .trim_end_matches('/');
    let url = format!("http://{host}/metrics");
    if endpoint.starts_with("https://") {
        println!(
            "fetch error: Get {}: TLS metrics endpoints are not supported by keelctl",
            quote(url.as_bytes())
        );
        return None;
    }
    let body = match http_get(host) {
        Ok(body) => body,
        Err(e) => {
            println!("fetch error: Get {}: {e}", quote(url.as_bytes()));
            return None;
        }
    };
    let Some(line) = body.lines().find(|l| l.starts_with(KEY)) else {
        println!("could not find: {KEY}");
        return None;
    };
    let value = line[KEY.len()..].trim();
    match value.parse::<f64>() {
        Ok(bytes) => Some(bytes),
        Err(_) => {
            println!(
                "parse error: strconv.ParseFloat: parsing {}: invalid syntax",
                quote(value.as_bytes())
            );
            None
        }
    }
}

/// A plain HTTP/1.0 GET of `/metrics` from `host` (1.0, so the body is never chunked); the
/// body.
fn http_get(host: &str) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(MAINTENANCE_TIMEOUT))?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_and_durations_as_etcdctl_names_them() {
        assert_eq!(model("xLarge").ok(), Some("xl"));
        assert_eq!(
            model("huge").map_err(|e| (e.code, e.message)).err(),
            Some((4, "unknown load option huge".to_string()))
        );
        assert_eq!(go_seconds(59), "59s");
        assert_eq!(go_seconds(60), "1m0s");
        assert_eq!(go_seconds(3723), "1h2m3s");
        let key = random_key(b"/p/", 256);
        assert_eq!(key.len(), 259);
        assert!(key.starts_with(b"/p/"));
    }
}
