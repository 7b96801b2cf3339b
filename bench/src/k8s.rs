//! `k8s`: a load shaped like a Kubernetes apiserver's use of etcd.
//!
//! The apiserver stores objects under `/registry/<resource>/<namespace>/<name>` and uses etcd
//! in a few fixed ways, which this workload mixes per operation:
//! - **list**: a paginated prefix range (`limit`, then continue from the last key + "\0"),
//!   every page after the first pinned to the first page's revision, as a consistent list is;
//! - **get**: a linearizable single-key range;
//! - **update**: optimistic concurrency: read the object, then a txn "mod_revision == seen →
//!   put, else → get", retried with the fresh object until it succeeds;
//! - **event**: create an Event object attached to a lease (the apiserver reuses one lease for
//!   many events, so each client grants a fresh lease every `--events-per-lease` events);
//! - **watches**: `--watchers` prefix watches on `/registry/` from the revision after the
//!   preload, which must see every write the run made.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::conn::Conn;
use anyhow::{Context, Result};
use clap::Args;
use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::StreamExt;
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::lease_client::LeaseClient;
use keel_proto::etcdserverpb::watch_client::WatchClient;
use keel_proto::etcdserverpb::{
    compare, request_op, response_op, watch_request, Compare, LeaseGrantRequest, PutRequest,
    RangeRequest, RequestOp, TxnRequest, WatchCreateRequest, WatchRequest,
};

use hdrhistogram::Histogram;

use crate::run::{drive, new_histogram, record, status_text, Latency, Op};
use crate::{parse_duration, Common, Rng};

/// Flags of `k8s`.
#[derive(Args, Debug)]
pub struct K8sArgs {
    #[command(flatten)]
    common: Common,
    /// Pod objects created before measuring (the list and update target set).
    #[arg(long, default_value_t = 1000)]
    objects: u64,
    /// Keys per list page.
    #[arg(long, default_value_t = 500)]
    page_size: i64,
    /// Percent of operations that are paginated lists.
    #[arg(long, default_value_t = 2)]
    list_percent: u64,
    /// Percent of operations that are single-object gets.
    #[arg(long, default_value_t = 38)]
    get_percent: u64,
    /// Percent of operations that are OCC updates; the rest are leased event creations.
    #[arg(long, default_value_t = 30)]
    update_percent: u64,
    /// Events created under one lease before a client grants a new one.
    #[arg(long, default_value_t = 100)]
    events_per_lease: u64,
    /// TTL of event leases in seconds.
    #[arg(long, default_value_t = 3600)]
    event_ttl: i64,
    /// Prefix watchers on /registry/ (one stream each).
    #[arg(long, default_value_t = 4)]
    watchers: usize,
    /// How long to wait, after the last operation, for the watchers to catch up.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    drain_timeout: Duration,
}

const PODS: &str = "/registry/pods/default/";
const EVENTS: &str = "/registry/events/default/";

fn pod_key(n: u64) -> Vec<u8> {
    format!("{PODS}pod-{n:07}").into_bytes()
}

/// The key right after every key that starts with `prefix` (etcd's "prefix end").
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Counters shared by all clients.
#[derive(Default)]
struct Tally {
    lists: AtomicU64,
    pages: AtomicU64,
    listed_keys: AtomicU64,
    gets: AtomicU64,
    updates: AtomicU64,
    conflicts: AtomicU64,
    events: AtomicU64,
    leases: AtomicU64,
    /// Successful writes: each one must reach every watcher.
    writes: AtomicU64,
    /// Latency of each kind of operation (list, get, update, event), in microseconds.
    latency_by_kind: Mutex<BTreeMap<&'static str, Histogram<u64>>>,
}

struct K8sOp {
    kv: KvClient<Conn>,
    lease: LeaseClient<Conn>,
    rng: Rng,
    client: usize,
    value: Vec<u8>,
    objects: u64,
    page_size: i64,
    thresholds: [u64; 3],
    events_per_lease: u64,
    event_ttl: i64,
    current_lease: i64,
    events_on_lease: u64,
    tally: Arc<Tally>,
}

impl K8sOp {
    async fn list(&mut self) -> Result<(), String> {
        let mut key = PODS.as_bytes().to_vec();
        let range_end = prefix_end(PODS.as_bytes());
        let mut revision = 0;
        loop {
            let request = RangeRequest {
                key: key.clone(),
                range_end: range_end.clone(),
                limit: self.page_size,
                revision,
                ..Default::default()
            };
            let response = self
                .kv
                .range(request)
                .await
                .map_err(|s| status_text(&s))?
                .into_inner();
            self.tally.pages.fetch_add(1, Ordering::Relaxed);
            self.tally
                .listed_keys
                .fetch_add(response.kvs.len() as u64, Ordering::Relaxed);
            if revision == 0 {
                revision = response.header.as_ref().map(|h| h.revision).unwrap_or(0);
            }
            match response.kvs.last() {
                Some(last) if response.more => {
                    key = last.key.clone();
                    key.push(0);
                }
                _ => break,
            }
        }
        self.tally.lists.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn get(&mut self) -> Result<(), String> {
        let key = pod_key(self.rng.below(self.objects));
        let request = RangeRequest {
            key,
            ..Default::default()
        };
        self.kv.range(request).await.map_err(|s| status_text(&s))?;
        self.tally.gets.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn update(&mut self) -> Result<(), String> {
        let key = pod_key(self.rng.below(self.objects));
        let request = RangeRequest {
            key: key.clone(),
            ..Default::default()
        };
        let response = self
            .kv
            .range(request)
            .await
            .map_err(|s| status_text(&s))?
            .into_inner();
        let mut seen = response.kvs.first().map(|kv| kv.mod_revision).unwrap_or(0);
        // Bounded so that a server that never lets a compare succeed cannot hang the run.
        for _ in 0..100 {
            let guard = Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Mod as i32,
                key: key.clone(),
                range_end: Vec::new(),
                target_union: Some(compare::TargetUnion::ModRevision(seen)),
            };
            let put = RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: key.clone(),
                    value: self.value.clone(),
                    ..Default::default()
                })),
            };
            let reread = RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    key: key.clone(),
                    ..Default::default()
                })),
            };
            let txn = TxnRequest {
                compare: vec![guard],
                success: vec![put],
                failure: vec![reread],
            };
            let response = self
                .kv
                .txn(txn)
                .await
                .map_err(|s| status_text(&s))?
                .into_inner();
            if response.succeeded {
                self.tally.updates.fetch_add(1, Ordering::Relaxed);
                self.tally.writes.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            self.tally.conflicts.fetch_add(1, Ordering::Relaxed);
            seen = response
                .responses
                .first()
                .and_then(|r| match &r.response {
                    Some(response_op::Response::ResponseRange(range)) => range.kvs.first(),
                    _ => None,
                })
                .map(|kv| kv.mod_revision)
                .unwrap_or(0);
        }
        Err("update: 100 conflicts in a row".to_string())
    }

    async fn event(&mut self, i: u64) -> Result<(), String> {
        if self.current_lease == 0 || self.events_on_lease >= self.events_per_lease {
            let request = LeaseGrantRequest {
                ttl: self.event_ttl,
                id: 0,
            };
            let granted = self
                .lease
                .lease_grant(request)
                .await
                .map_err(|s| status_text(&s))?
                .into_inner();
            self.current_lease = granted.id;
            self.events_on_lease = 0;
            self.tally.leases.fetch_add(1, Ordering::Relaxed);
        }
        let key = format!("{EVENTS}ev-{}-{i}", self.client).into_bytes();
        let request = PutRequest {
            key,
            value: self.value.clone(),
            lease: self.current_lease,
            ..Default::default()
        };
        self.kv.put(request).await.map_err(|s| status_text(&s))?;
        self.events_on_lease += 1;
        self.tally.events.fetch_add(1, Ordering::Relaxed);
        self.tally.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl Op for K8sOp {
    fn call(&mut self, i: u64) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let draw = self.rng.below(100);
            let began = Instant::now();
            let (kind, result) = if draw < self.thresholds[0] {
                ("list", self.list().await)
            } else if draw < self.thresholds[1] {
                ("get", self.get().await)
            } else if draw < self.thresholds[2] {
                ("update", self.update().await)
            } else {
                ("event", self.event(i).await)
            };
            // One short lock per operation; the RPCs it follows take far longer.
            let mut by_kind = self.tally.latency_by_kind.lock().expect("latency lock");
            record(
                by_kind.entry(kind).or_insert_with(new_histogram),
                began.elapsed(),
            );
            result
        })
    }
}

/// Runs the k8s mix.
pub async fn run(args: K8sArgs) -> Result<()> {
    let common = args.common;
    let (channels, endpoints) = common.open().await?;
    let value = vec![b'p'; common.val_size];
    let objects = args.objects.max(1);

    // Create the pods, 64 at a time, then note the revision the watchers start after.
    let kv = KvClient::new(channels[0].clone());
    let mut next = 0;
    let mut revision = 0;
    while next < objects {
        let puts = (next..objects.min(next + 64)).map(|n| {
            let mut kv = kv.clone();
            let request = PutRequest {
                key: pod_key(n),
                value: value.clone(),
                ..Default::default()
            };
            async move { kv.put(request).await }
        });
        for result in futures::future::join_all(puts).await {
            let header = result.context("creating pods")?.into_inner().header;
            revision = revision.max(header.map(|h| h.revision).unwrap_or(0));
        }
        next += 64;
    }

    let received = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    let mut ready = Vec::new();
    for w in 0..args.watchers {
        let mut client = WatchClient::new(channels[w % channels.len()].clone());
        let (sender, receiver) = mpsc::unbounded();
        let create = WatchCreateRequest {
            key: b"/registry/".to_vec(),
            range_end: prefix_end(b"/registry/"),
            start_revision: revision + 1,
            ..Default::default()
        };
        sender
            .unbounded_send(WatchRequest {
                request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
            })
            .context("queueing watch create")?;
        let mut responses = client
            .watch(receiver)
            .await
            .context("opening a watch")?
            .into_inner();
        let (created_tx, created_rx) = tokio::sync::oneshot::channel::<()>();
        ready.push(created_rx);
        let received = received.clone();
        tasks.push(tokio::spawn(async move {
            let mut created_tx = Some(created_tx);
            while let Some(Ok(response)) = responses.next().await {
                if response.created {
                    if let Some(tx) = created_tx.take() {
                        let _ = tx.send(());
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
            .context("k8s watchers were not created within 30 s")?
            .context("a k8s watch stream ended early")?;
    }

    let tally = Arc::new(Tally::default());
    let list_end = args.list_percent.min(100);
    let get_end = (list_end + args.get_percent).min(100);
    let update_end = (get_end + args.update_percent).min(100);
    let ops: Vec<K8sOp> = (0..common.clients)
        .map(|c| {
            let channel = channels[c % channels.len()].clone();
            K8sOp {
                kv: KvClient::new(channel.clone()),
                lease: LeaseClient::new(channel),
                rng: Rng::new(c as u64 + 1),
                client: c,
                value: value.clone(),
                objects,
                page_size: args.page_size,
                thresholds: [list_end, get_end, update_end],
                events_per_lease: args.events_per_lease.max(1),
                event_ttl: args.event_ttl,
                current_lease: 0,
                events_on_lease: 0,
                tally: tally.clone(),
            }
        })
        .collect();
    let outcome = drive(ops, common.pace()).await;

    let writes = tally.writes.load(Ordering::Relaxed);
    let expected = writes * args.watchers as u64;
    let deadline = Instant::now() + args.drain_timeout;
    while received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got = received.load(Ordering::Relaxed);
    for task in &tasks {
        task.abort();
    }
    drop(senders);

    let load = |counter: &AtomicU64| serde_json::json!(counter.load(Ordering::Relaxed));
    let mut extra = BTreeMap::new();
    extra.insert("lists".into(), load(&tally.lists));
    extra.insert("list_pages".into(), load(&tally.pages));
    extra.insert("listed_keys".into(), load(&tally.listed_keys));
    extra.insert("gets".into(), load(&tally.gets));
    extra.insert("updates".into(), load(&tally.updates));
    extra.insert("update_conflicts".into(), load(&tally.conflicts));
    extra.insert("events_created".into(), load(&tally.events));
    extra.insert("leases_granted".into(), load(&tally.leases));
    let by_kind: BTreeMap<&str, Latency> = tally
        .latency_by_kind
        .lock()
        .expect("latency lock")
        .iter()
        .map(|(kind, histogram)| (*kind, Latency::of(histogram)))
        .collect();
    extra.insert("latency_by_kind_us".into(), serde_json::json!(by_kind));
    extra.insert("watchers".into(), serde_json::json!(args.watchers));
    extra.insert("events_expected".into(), serde_json::json!(expected));
    extra.insert("events_received".into(), serde_json::json!(got));
    extra.insert(
        "events_lost".into(),
        serde_json::json!(expected.saturating_sub(got)),
    );
    let params = serde_json::json!({
        "objects": objects,
        "page_size": args.page_size,
        "list_percent": args.list_percent,
        "get_percent": args.get_percent,
        "update_percent": args.update_percent,
        "events_per_lease": args.events_per_lease,
        "watchers": args.watchers,
    });
    common.finish(
        "k8s",
        endpoints,
        outcome,
        "operation (a list is all its pages)",
        params,
        extra,
    );
    Ok(())
}
