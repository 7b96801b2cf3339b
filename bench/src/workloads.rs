//! The request/response workloads: put, range, txn-put, txn-mixed, lease-keepalive.

use std::collections::BTreeMap;

use crate::conn::Conn;
use anyhow::{Context, Result};
use clap::Args;
use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::lease_client::LeaseClient;
use keel_proto::etcdserverpb::{
    request_op, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, PutRequest,
    RangeRequest, RequestOp, TxnRequest,
};
use tonic::Streaming;

use crate::run::{drive, status_text, Op};
use crate::{Common, Keys, Rng};

/// Flags of `put`.
#[derive(Args, Debug)]
pub struct PutArgs {
    #[command(flatten)]
    common: Common,
}

/// Flags of `range`.
#[derive(Args, Debug)]
pub struct RangeArgs {
    #[command(flatten)]
    common: Common,
    /// l = linearizable (quorum read), s = serializable (local read).
    #[arg(long, default_value = "l", value_parser = ["l", "s"])]
    consistency: String,
    /// Put every key of the key space before measuring, so that ranges find values.
    #[arg(long)]
    preload: bool,
    /// Range over all keys of the key space (key 0 up to the end) instead of one key; with
    /// --limit this is a paginated-style read of the first page.
    #[arg(long)]
    all_keys: bool,
    /// Maximum keys per response (0 = no limit).
    #[arg(long, default_value_t = 0)]
    limit: i64,
}

/// Flags of `txn-put`.
#[derive(Args, Debug)]
pub struct TxnPutArgs {
    #[command(flatten)]
    common: Common,
    /// Puts per txn.
    #[arg(long, default_value_t = 1)]
    txn_ops: usize,
}

/// Flags of `txn-mixed`.
#[derive(Args, Debug)]
pub struct TxnMixedArgs {
    #[command(flatten)]
    common: Common,
    /// Reads per write: 1 = half reads, 4 = 80% reads, 0 = writes only.
    #[arg(long, default_value_t = 1.0)]
    rw_ratio: f64,
    /// l = linearizable reads, s = serializable reads.
    #[arg(long, default_value = "l", value_parser = ["l", "s"])]
    consistency: String,
}

/// Flags of `lease-keepalive`.
#[derive(Args, Debug)]
pub struct LeaseArgs {
    #[command(flatten)]
    common: Common,
    /// TTL of each client's lease in seconds.
    #[arg(long, default_value_t = 60)]
    ttl: i64,
}

/// A KV client with the key generator and value every KV workload shares.
struct KvOp {
    kv: KvClient<Conn>,
    keys: Keys,
    rng: Rng,
    value: Vec<u8>,
}

impl KvOp {
    fn new(common: &Common, channels: &[Conn], client: usize) -> KvOp {
        KvOp {
            kv: KvClient::new(channels[client % channels.len()].clone()),
            keys: common.keys(),
            rng: Rng::new(client as u64 + 1),
            value: vec![b'v'; common.val_size],
        }
    }

    fn next_key(&mut self, i: u64) -> Vec<u8> {
        let n = self.keys.pick(i, &mut self.rng);
        self.keys.key(n)
    }
}

fn kv_ops(common: &Common, channels: &[Conn]) -> Vec<KvOp> {
    (0..common.clients)
        .map(|c| KvOp::new(common, channels, c))
        .collect()
}

struct Put(KvOp);

impl Op for Put {
    fn call(&mut self, i: u64) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let op = &mut self.0;
            let key = op.next_key(i);
            let request = PutRequest {
                key,
                value: op.value.clone(),
                ..Default::default()
            };
            op.kv
                .put(request)
                .await
                .map(|_| ())
                .map_err(|s| status_text(&s))
        })
    }
}

/// `put`: one put per operation.
pub async fn put(args: PutArgs) -> Result<()> {
    let common = args.common;
    let (channels, endpoints) = common.open().await?;
    let ops = kv_ops(&common, &channels).into_iter().map(Put).collect();
    let outcome = drive(ops, common.pace()).await;
    common.finish(
        "put",
        endpoints,
        outcome,
        "request",
        serde_json::json!({}),
        BTreeMap::new(),
    );
    Ok(())
}

/// Puts keys 0..n of the key space through `channel`, 64 at a time, before a measurement.
pub async fn preload(channel: Conn, keys: Keys, n: u64, value: &[u8]) -> Result<()> {
    let mut kv = KvClient::new(channel);
    let mut next = 0u64;
    while next < n {
        let batch: Vec<_> = (next..n.min(next + 64))
            .map(|k| {
                let mut kv = kv.clone();
                let request = PutRequest {
                    key: keys.key(k),
                    value: value.to_vec(),
                    ..Default::default()
                };
                async move { kv.put(request).await }
            })
            .collect();
        for result in futures::future::join_all(batch).await {
            result.context("preloading keys")?;
        }
        next += 64;
    }
    // Keep the client used so a connection error surfaces here rather than mid-measurement.
    kv.range(RangeRequest {
        key: keys.key(0),
        ..Default::default()
    })
    .await?;
    Ok(())
}

struct Range {
    op: KvOp,
    serializable: bool,
    all_keys: bool,
    limit: i64,
}

impl Op for Range {
    fn call(&mut self, i: u64) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let (key, range_end) = if self.all_keys {
                // "\0" as range_end means every key at or above `key`.
                (vec![0u8], vec![0u8])
            } else {
                (self.op.next_key(i), Vec::new())
            };
            let request = RangeRequest {
                key,
                range_end,
                limit: self.limit,
                serializable: self.serializable,
                ..Default::default()
            };
            self.op
                .kv
                .range(request)
                .await
                .map(|_| ())
                .map_err(|s| status_text(&s))
        })
    }
}

/// `range`: one range per operation, linearizable or serializable.
pub async fn range(args: RangeArgs) -> Result<()> {
    let common = args.common;
    let (channels, endpoints) = common.open().await?;
    if args.preload {
        let value = vec![b'v'; common.val_size];
        preload(
            channels[0].clone(),
            common.keys(),
            common.key_space_size,
            &value,
        )
        .await?;
    }
    let serializable = args.consistency == "s";
    let ops = kv_ops(&common, &channels)
        .into_iter()
        .map(|op| Range {
            op,
            serializable,
            all_keys: args.all_keys,
            limit: args.limit,
        })
        .collect();
    let outcome = drive(ops, common.pace()).await;
    let params = serde_json::json!({
        "consistency": args.consistency,
        "preload": args.preload,
        "all_keys": args.all_keys,
        "limit": args.limit,
    });
    common.finish(
        "range",
        endpoints,
        outcome,
        "request",
        params,
        BTreeMap::new(),
    );
    Ok(())
}

struct TxnPut {
    op: KvOp,
    txn_ops: usize,
}

impl Op for TxnPut {
    fn call(&mut self, i: u64) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            // etcd refuses a txn that puts the same key twice, so a txn's keys are
            // consecutive key numbers from a picked base (the key space is at least txn_ops).
            let base = self.op.keys.pick(i, &mut self.op.rng);
            let space = self.op.keys.space();
            let success = (0..self.txn_ops as u64)
                .map(|j| put_op(self.op.keys.key((base + j) % space), self.op.value.clone()))
                .collect();
            let request = TxnRequest {
                compare: vec![],
                success,
                failure: vec![],
            };
            self.op
                .kv
                .txn(request)
                .await
                .map(|_| ())
                .map_err(|s| status_text(&s))
        })
    }
}

fn put_op(key: Vec<u8>, value: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key,
            value,
            ..Default::default()
        })),
    }
}

fn range_op(key: Vec<u8>, serializable: bool) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key,
            serializable,
            ..Default::default()
        })),
    }
}

/// `txn-put`: txns of `--txn-ops` puts, no compares.
pub async fn txn_put(args: TxnPutArgs) -> Result<()> {
    let common = args.common;
    let (channels, endpoints) = common.open().await?;
    let txn_ops = args.txn_ops.max(1);
    if (txn_ops as u64) > common.key_space_size {
        anyhow::bail!("--txn-ops {txn_ops} needs --key-space-size of at least {txn_ops}");
    }
    let ops = kv_ops(&common, &channels)
        .into_iter()
        .map(|op| TxnPut { op, txn_ops })
        .collect();
    let outcome = drive(ops, common.pace()).await;
    let params = serde_json::json!({ "txn_ops": txn_ops });
    common.finish(
        "txn-put",
        endpoints,
        outcome,
        "request",
        params,
        BTreeMap::new(),
    );
    Ok(())
}

struct TxnMixed {
    op: KvOp,
    read_probability: f64,
    serializable: bool,
}

impl Op for TxnMixed {
    fn call(&mut self, i: u64) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let key = self.op.next_key(i);
            let draw = (self.op.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let request_op = if draw < self.read_probability {
                range_op(key, self.serializable)
            } else {
                put_op(key, self.op.value.clone())
            };
            let request = TxnRequest {
                compare: vec![],
                success: vec![request_op],
                failure: vec![],
            };
            self.op
                .kv
                .txn(request)
                .await
                .map(|_| ())
                .map_err(|s| status_text(&s))
        })
    }
}

/// `txn-mixed`: txns that each hold one read or one write.
pub async fn txn_mixed(args: TxnMixedArgs) -> Result<()> {
    let common = args.common;
    let (channels, endpoints) = common.open().await?;
    let ratio = args.rw_ratio.max(0.0);
    let read_probability = ratio / (ratio + 1.0);
    let serializable = args.consistency == "s";
    let ops: Vec<TxnMixed> = kv_ops(&common, &channels)
        .into_iter()
        .map(|op| TxnMixed {
            op,
            read_probability,
            serializable,
        })
        .collect();
    let outcome = drive(ops, common.pace()).await;
    let params = serde_json::json!({ "rw_ratio": ratio, "consistency": args.consistency });
    let mut extra = BTreeMap::new();
    extra.insert(
        "read_fraction".to_string(),
        serde_json::json!(read_probability),
    );
    common.finish("txn-mixed", endpoints, outcome, "request", params, extra);
    Ok(())
}

struct KeepAlive {
    id: i64,
    sender: mpsc::Sender<LeaseKeepAliveRequest>,
    responses: Streaming<LeaseKeepAliveResponse>,
}

impl Op for KeepAlive {
    fn call(&mut self, _i: u64) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.sender
                .send(LeaseKeepAliveRequest { id: self.id })
                .await
                .map_err(|_| "keep-alive stream closed".to_string())?;
            match self.responses.next().await {
                Some(Ok(response)) if response.ttl > 0 => Ok(()),
                Some(Ok(_)) => Err("lease expired (TTL <= 0)".to_string()),
                Some(Err(status)) => Err(status_text(&status)),
                None => Err("keep-alive stream ended".to_string()),
            }
        })
    }
}

/// `lease-keepalive`: each client grants a lease, then sends keep-alives on its own stream
/// and waits for each answer.
pub async fn lease_keepalive(args: LeaseArgs) -> Result<()> {
    let common = args.common;
    let (channels, endpoints) = common.open().await?;
    let mut ops = Vec::with_capacity(common.clients);
    for c in 0..common.clients {
        let mut lease = LeaseClient::new(channels[c % channels.len()].clone());
        let granted = lease
            .lease_grant(LeaseGrantRequest {
                ttl: args.ttl,
                id: 0,
            })
            .await
            .context("granting a lease")?
            .into_inner();
        let (mut sender, receiver) = mpsc::channel(1);
        // etcd (grpc-go) sends a stream's response headers only with its first message, and
        // tonic's call returns only after the headers: so one keep-alive goes out first and
        // its answer is read here, outside the measurement.
        sender
            .send(LeaseKeepAliveRequest { id: granted.id })
            .await?;
        let mut responses = lease.lease_keep_alive(receiver).await?.into_inner();
        responses
            .next()
            .await
            .context("keep-alive stream ended before its first answer")?
            .context("first keep-alive")?;
        ops.push(KeepAlive {
            id: granted.id,
            sender,
            responses,
        });
    }
    let outcome = drive(ops, common.pace()).await;
    let params = serde_json::json!({ "ttl": args.ttl });
    common.finish(
        "lease-keepalive",
        endpoints,
        outcome,
        "request",
        params,
        BTreeMap::new(),
    );
    Ok(())
}
