//! The watch workloads: `watch` (event throughput, nothing lost) and `watch-latency`
//! (put-to-event delivery time).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::conn::Conn;
use anyhow::{bail, Context, Result};
use clap::Args;
use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::StreamExt;
use hdrhistogram::Histogram;
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::watch_client::WatchClient;
use keel_proto::etcdserverpb::{watch_request, PutRequest, WatchCreateRequest, WatchRequest};

use crate::run::{drive, new_histogram, record, status_text, Op};
use crate::{parse_duration, Common, Keys, Rng};

/// Flags of `watch`.
#[derive(Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    common: Common,
    /// Watch streams, spread over the connections.
    #[arg(long, default_value_t = 10)]
    streams: usize,
    /// Watchers per stream; watcher j watches key j mod --key-space-size.
    #[arg(long, default_value_t = 10)]
    watchers_per_stream: usize,
    /// How long to wait, after the last put, for the remaining events.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    drain_timeout: Duration,
}

/// Flags of `watch-latency`.
#[derive(Args, Debug)]
pub struct WatchLatencyArgs {
    #[command(flatten)]
    common: Common,
    /// Watch streams, spread over the connections.
    #[arg(long, default_value_t = 10)]
    streams: usize,
    /// Watchers per stream; all watch the same key.
    #[arg(long, default_value_t = 10)]
    watchers_per_stream: usize,
    /// How long to wait, after the last put, for the remaining events.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    drain_timeout: Duration,
}

/// The instant every timestamp in a watch-latency value counts from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Open watch streams and what they have received so far.
struct Watchers {
    /// Events received over all streams.
    received: Arc<AtomicU64>,
    /// Errors seen on the streams (a stream error ends that stream).
    errors: Arc<Mutex<BTreeMap<String, u64>>>,
    /// Delivery latency of events whose value carries a send timestamp.
    latency: Arc<Mutex<Histogram<u64>>>,
    /// Senders kept alive so the streams stay open until the end.
    _senders: Vec<mpsc::UnboundedSender<WatchRequest>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Watchers {
    /// Opens `streams` streams with `per_stream` watchers each, watcher j (counting over all
    /// streams) on `keys_for(j)` = (key, range_end), and returns once every watcher is created.
    async fn open(
        channels: &[Conn],
        streams: usize,
        per_stream: usize,
        start_revision: i64,
        timestamps: bool,
        keys_for: impl Fn(usize) -> (Vec<u8>, Vec<u8>),
    ) -> Result<Watchers> {
        let received = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Mutex::new(BTreeMap::new()));
        let latency = Arc::new(Mutex::new(new_histogram()));
        let mut senders = Vec::new();
        let mut tasks = Vec::new();
        let mut ready = Vec::new();
        for s in 0..streams {
            let mut client = WatchClient::new(channels[s % channels.len()].clone());
            let (sender, receiver) = mpsc::unbounded();
            for w in 0..per_stream {
                let (key, range_end) = keys_for(s * per_stream + w);
                let create = WatchCreateRequest {
                    key,
                    range_end,
                    start_revision,
                    ..Default::default()
                };
                let request = WatchRequest {
                    request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
                };
                sender
                    .unbounded_send(request)
                    .context("queueing watch create")?;
            }
            let mut responses = client
                .watch(receiver)
                .await
                .context("opening a watch stream")?
                .into_inner();
            let (created_tx, created_rx) = tokio::sync::oneshot::channel::<()>();
            ready.push(created_rx);
            let received = received.clone();
            let errors = errors.clone();
            let latency = latency.clone();
            tasks.push(tokio::spawn(async move {
                let mut created = 0usize;
                let mut created_tx = Some(created_tx);
                while let Some(message) = responses.next().await {
                    let response = match message {
                        Ok(response) => response,
                        Err(status) => {
                            *errors
                                .lock()
                                .expect("errors lock")
                                .entry(status_text(&status))
                                .or_default() += 1;
                            break;
                        }
                    };
                    if response.created {
                        created += 1;
                        if created == per_stream {
                            if let Some(tx) = created_tx.take() {
                                let _ = tx.send(());
                            }
                        }
                    }
                    if response.canceled {
                        let reason = format!("watch canceled: {}", response.cancel_reason);
                        *errors
                            .lock()
                            .expect("errors lock")
                            .entry(reason)
                            .or_default() += 1;
                    }
                    if timestamps && !response.events.is_empty() {
                        let now = epoch().elapsed();
                        // Recording straight into the shared histogram under a short lock is
                        // cheaper than merging per-task histograms, whose merge walks every
                        // bucket.
                        let mut shared = latency.lock().expect("latency lock");
                        for event in &response.events {
                            let sent = event.kv.as_ref().and_then(|kv| timestamp(&kv.value));
                            if let Some(sent) = sent {
                                record(&mut shared, now.saturating_sub(sent));
                            }
                        }
                    }
                    received.fetch_add(response.events.len() as u64, Ordering::Relaxed);
                }
            }));
            senders.push(sender);
        }
        for created in ready {
            tokio::time::timeout(Duration::from_secs(30), created)
                .await
                .context("watchers were not all created within 30 s")?
                .context("a watch stream ended before its watchers were created")?;
        }
        Ok(Watchers {
            received,
            errors,
            latency,
            _senders: senders,
            tasks,
        })
    }

    /// Waits until `expected` events arrived or `timeout` passed; returns the count received.
    async fn drain(&self, expected: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received.load(Ordering::Relaxed);
            if got >= expected || Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn close(self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Reads the send time a watch-latency put wrote at the front of its value.
fn timestamp(value: &[u8]) -> Option<Duration> {
    let bytes: [u8; 8] = value.get(..8)?.try_into().ok()?;
    Some(Duration::from_nanos(u64::from_le_bytes(bytes)))
}

/// Puts that count, per successful put, how many events the watchers should see.
struct CountedPut {
    kv: KvClient<Conn>,
    keys: Keys,
    rng: Rng,
    value: Vec<u8>,
    /// Watchers per key number (index = key number).
    watchers_on: Arc<Vec<u64>>,
    expected: Arc<AtomicU64>,
    stamp: bool,
}

impl Op for CountedPut {
    fn call(&mut self, i: u64) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let n = self.keys.pick(i, &mut self.rng);
            let mut value = self.value.clone();
            if self.stamp {
                let sent = epoch().elapsed().as_nanos() as u64;
                value[..8].copy_from_slice(&sent.to_le_bytes());
            }
            let request = PutRequest {
                key: self.keys.key(n),
                value,
                ..Default::default()
            };
            match self.kv.put(request).await {
                Ok(_) => {
                    self.expected
                        .fetch_add(self.watchers_on[n as usize], Ordering::Relaxed);
                    Ok(())
                }
                Err(status) => Err(status_text(&status)),
            }
        })
    }
}

fn counted_puts(
    common: &Common,
    channels: &[Conn],
    watchers_on: Arc<Vec<u64>>,
    expected: Arc<AtomicU64>,
    stamp: bool,
) -> Vec<CountedPut> {
    (0..common.clients)
        .map(|c| CountedPut {
            kv: KvClient::new(channels[c % channels.len()].clone()),
            keys: common.keys(),
            rng: Rng::new(c as u64 + 1),
            value: vec![b'v'; common.val_size.max(if stamp { 8 } else { 0 })],
            watchers_on: watchers_on.clone(),
            expected: expected.clone(),
            stamp,
        })
        .collect()
}

/// `watch`: opens the watchers, runs the puts, then waits for every expected event.
pub async fn watch(args: WatchArgs) -> Result<()> {
    let common = args.common;
    let (channels, endpoints) = common.open().await?;
    if common.key_space_size > 1_000_000 {
        bail!("watch keeps a watcher count per key: use --key-space-size <= 1000000");
    }
    let space = common.key_space_size as usize;
    let keys = common.keys();
    let watcher_total = args.streams * args.watchers_per_stream;
    let mut watchers_on = vec![0u64; space];
    for j in 0..watcher_total {
        watchers_on[j % space] += 1;
    }
    let watchers = Watchers::open(
        &channels,
        args.streams,
        args.watchers_per_stream,
        0,
        false,
        |j| (keys.key((j % space) as u64), Vec::new()),
    )
    .await?;
    let expected = Arc::new(AtomicU64::new(0));
    let ops = counted_puts(
        &common,
        &channels,
        Arc::new(watchers_on),
        expected.clone(),
        false,
    );
    let started = Instant::now();
    let outcome = drive(ops, common.pace()).await;
    let expected = expected.load(Ordering::Relaxed);
    let received = watchers.drain(expected, args.drain_timeout).await;
    let events_secs = started.elapsed().as_secs_f64();
    let stream_errors = watchers.errors.lock().expect("errors lock").clone();
    watchers.close();
    let mut outcome = outcome;
    for (message, count) in stream_errors {
        *outcome.errors.entry(message).or_default() += count;
    }
    let mut extra = BTreeMap::new();
    extra.insert("watchers".into(), serde_json::json!(watcher_total));
    extra.insert("events_expected".into(), serde_json::json!(expected));
    extra.insert("events_received".into(), serde_json::json!(received));
    extra.insert(
        "events_lost".into(),
        serde_json::json!(expected.saturating_sub(received)),
    );
    extra.insert(
        "events_per_sec".into(),
        serde_json::json!(received as f64 / events_secs),
    );
    let params = serde_json::json!({
        "streams": args.streams,
        "watchers_per_stream": args.watchers_per_stream,
    });
    common.finish("watch", endpoints, outcome, "put request", params, extra);
    Ok(())
}

/// `watch-latency`: every watcher watches one key; each put carries its send time in the
/// value and each watcher records how long the event took to reach it.
pub async fn watch_latency(args: WatchLatencyArgs) -> Result<()> {
    let mut common = args.common;
    // Every put goes to the one watched key.
    common.key_space_size = 1;
    let (channels, endpoints) = common.open().await?;
    let keys = common.keys();
    epoch();
    let watcher_total = args.streams * args.watchers_per_stream;
    let watchers = Watchers::open(
        &channels,
        args.streams,
        args.watchers_per_stream,
        0,
        true,
        |_| (keys.key(0), Vec::new()),
    )
    .await?;
    let expected = Arc::new(AtomicU64::new(0));
    let watchers_on = Arc::new(vec![watcher_total as u64]);
    let ops = counted_puts(&common, &channels, watchers_on, expected.clone(), true);
    let mut outcome = drive(ops, common.pace()).await;
    let expected = expected.load(Ordering::Relaxed);
    let received = watchers.drain(expected, args.drain_timeout).await;
    let stream_errors = watchers.errors.lock().expect("errors lock").clone();
    let delivery = watchers.latency.lock().expect("latency lock").clone();
    watchers.close();
    for (message, count) in stream_errors {
        *outcome.errors.entry(message).or_default() += count;
    }
    let mut extra = BTreeMap::new();
    extra.insert("watchers".into(), serde_json::json!(watcher_total));
    extra.insert("events_expected".into(), serde_json::json!(expected));
    extra.insert("events_received".into(), serde_json::json!(received));
    extra.insert(
        "events_lost".into(),
        serde_json::json!(expected.saturating_sub(received)),
    );
    extra.insert(
        "put_latency_us".into(),
        serde_json::json!(crate::run::Latency::of(&outcome.histogram)),
    );
    // The headline latency of this workload is delivery, not the put round trip.
    outcome.histogram = delivery;
    let params = serde_json::json!({
        "streams": args.streams,
        "watchers_per_stream": args.watchers_per_stream,
    });
    common.finish(
        "watch-latency",
        endpoints,
        outcome,
        "put-to-event delivery",
        params,
        extra,
    );
    Ok(())
}
