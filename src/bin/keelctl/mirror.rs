//! `make-mirror`: copies the keys of the source cluster (those under `--prefix`) to a
//! destination cluster, then follows the source's changes and replays them there, as
//! etcdctl's make-mirror does with etcd's `mirror` package.
//!
//! The existing keys are read at one revision, 1000 at a time, and put one by one; the
//! changes are watched from the next revision and replayed in transactions, one per source
//! revision (split when one holds more than `--max-txn-ops` changes). Every 30 seconds the
//! number of keys synced so far (base keys, then each replayed change) is printed.
//! `--rev` and `--max-txn-ops` are etcdctl 3.6's flags (3.5 has neither): with `--rev` the
//! existing keys are not copied, only the changes from that revision on are replayed.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use keel_proto::etcdserverpb::request_op::Request;
use keel_proto::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use keel_proto::mvccpb::event::EventType;

use crate::client::Client;
use crate::concurrency::watch;
use crate::error::{status_text, CliError};
use crate::global::parse_bool;
use crate::kv::prefix_end;
use crate::Ctx;

/// How many keys one read of the base sync asks for (etcd's `batchLimit`).
const BASE_BATCH_KEYS_MAX: i64 = 1000;
/// How often the number of keys synced is printed.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(30);

/// `make-mirror [options] <destination>`.
#[derive(Args, Debug)]
pub struct MakeMirrorArgs {
    /// The destination endpoint.
    pub args: Vec<String>,
    /// Key-value prefix to mirror.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Specify the kv revision to start to mirror.
    #[arg(long, default_value_t = 0)]
    pub rev: i64,
    /// Maximum number of operations permitted in a transaction during syncing updates.
    #[arg(long, default_value_t = 128)]
    pub max_txn_ops: u32,
    /// Destination prefix to mirror a prefix to a different prefix in the destination
    /// cluster.
    #[arg(long, default_value = "")]
    pub dest_prefix: String,
    /// Mirror key-values to the root of the destination cluster.
    #[arg(long)]
    pub no_dest_prefix: bool,
    /// Identify secure client using this TLS certificate file for the destination cluster.
    #[arg(long, default_value = "")]
    pub dest_cert: String,
    /// Identify secure client using this TLS key file.
    #[arg(long, default_value = "")]
    pub dest_key: String,
    /// Verify certificates of TLS enabled secure servers using this CA bundle.
    #[arg(long, default_value = "")]
    pub dest_cacert: String,
    /// Disable transport security for client connections.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          require_equals = true, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub dest_insecure_transport: bool,
    /// Destination username[:password] for authentication (prompt if password is not
    /// supplied).
    #[arg(long, default_value = "")]
    pub dest_user: String,
    /// Destination password for authentication (if this option is used, --user option
    /// shouldn't include password).
    #[arg(long, default_value = "")]
    pub dest_password: String,
}

/// What a source key becomes at the destination: the first occurrence of the prefix
/// replaced by the destination prefix (Go's `strings.Replace(key, prefix, dest, 1)`; an empty
/// prefix puts the destination prefix in front).
fn destination_key(key: &[u8], prefix: &[u8], dest: &[u8]) -> Vec<u8> {
    let at = if prefix.is_empty() {
        Some(0)
    } else {
        key.windows(prefix.len()).position(|w| w == prefix)
    };
    match at {
        Some(at) => [&key[..at], dest, &key[at + prefix.len()..]].concat(),
        None => key.to_vec(),
    }
}

/// `make-mirror`: runs until the source's watch ends or a call fails, which is always an
/// error (exit status 1), as in etcdctl.
pub fn make_mirror(ctx: &Ctx, args: &MakeMirrorArgs) -> Result<(), CliError> {
    let [destination] = args.args.as_slice() else {
        return Err(CliError::bad_args(
            "make-mirror takes one destination argument",
        ));
    };
    let mut dest_global = ctx.global.clone();
    dest_global.endpoints = vec![destination.clone()];
    let path = |p: &str| (!p.is_empty()).then(|| std::path::PathBuf::from(p));
    dest_global.cert = path(&args.dest_cert);
    dest_global.key = path(&args.dest_key);
    dest_global.cacert = path(&args.dest_cacert);
    dest_global.insecure_transport = args.dest_insecure_transport;
    dest_global.insecure_skip_tls_verify = false;
    dest_global.user = (!args.dest_user.is_empty()).then(|| args.dest_user.clone());
    dest_global.password = (!args.dest_password.is_empty()).then(|| args.dest_password.clone());
    if dest_global.user.is_some() && dest_global.password.is_none() {
        if let Some(user) = &dest_global.user {
            if !user.contains(':') {
                eprint!("Destination Password: ");
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .map_err(|e| CliError::error(format!("reading the password: {e}")))?;
                dest_global.password = Some(line.trim_end_matches(['\n', '\r']).to_string());
            }
        }
    }
    let dest = Client::connect_to(&dest_global, destination)?;
    let source = ctx.client()?;
    if args.no_dest_prefix && !args.dest_prefix.is_empty() {
        return Err(CliError::bad_args(
            "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one",
        ));
    }
    let dest_prefix = if args.no_dest_prefix || !args.dest_prefix.is_empty() {
        args.dest_prefix.clone()
    } else {
        args.prefix.clone()
    };
    let total = Arc::new(AtomicI64::new(0));
    // Each connection is driven by its own runtime: the destination's runs on a thread of
    // its own while the source's drives the mirroring.
    let (stop_dest, dest_stopped) = futures::channel::oneshot::channel::<()>();
    let dest_ref = &dest;
    let outcome = std::thread::scope(|scope| {
        scope.spawn(move || {
            dest_ref.block_on(async {
                let _ = dest_stopped.await;
            })
        });
        let outcome = mirror_until_failure(source, dest_ref, args, &dest_prefix, &total);
        let _ = stop_dest.send(());
        outcome
    });
    match outcome {
        Err(e) => Err(e),
        // Go prints its nil error: the watch ended, which etcdctl reports as a failure.
        Ok(()) => Err(CliError::error("<nil>")),
    }
}

/// Mirrors on the source's runtime until the watch ends or a call fails.
fn mirror_until_failure(
    source: &Client,
    dest: &Client,
    args: &MakeMirrorArgs,
    dest_prefix: &str,
    total: &Arc<AtomicI64>,
) -> Result<(), CliError> {
    source.block_on(async {
        let counter = total.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROGRESS_INTERVAL).await;
                println!("{}", counter.load(Ordering::Relaxed));
            }
        });
        let mirror = Mirror {
            source,
            dest,
            prefix: args.prefix.as_bytes(),
            dest_prefix: dest_prefix.as_bytes(),
            total,
        };
        mirror.run(args.rev, args.max_txn_ops).await
    })
}

/// One mirroring: where from, where to, and the count of keys synced.
struct Mirror<'a> {
    source: &'a Client,
    dest: &'a Client,
    prefix: &'a [u8],
    dest_prefix: &'a [u8],
    total: &'a AtomicI64,
}

fn failed(status: tonic::Status) -> CliError {
    CliError::error(status_text(&status))
}

impl Mirror<'_> {
    async fn run(&self, rev: i64, max_txn_ops: u32) -> Result<(), CliError> {
        let start = (rev - 1).max(0);
        let synced = if start == 0 {
            self.sync_base().await?
        } else {
            start
        };
        self.sync_updates(synced, max_txn_ops).await
    }

    /// Copies every key under the prefix as of the current revision; returns that revision.
    async fn sync_base(&self) -> Result<i64, CliError> {
        // The revision comes from a read of one key (etcd reads "foo" when there is no
        // prefix).
        let probe = if self.prefix.is_empty() {
            b"foo".as_slice()
        } else {
            self.prefix
        };
        let revision = self
            .source
            .kv()
            .range(RangeRequest {
                key: probe.to_vec(),
                ..Default::default()
            })
            .await
            .map_err(failed)?
            .into_inner()
            .header
            .map_or(0, |h| h.revision);
        let (mut key, range_end) = if self.prefix.is_empty() {
            (vec![0], vec![0])
        } else {
            (self.prefix.to_vec(), prefix_end(self.prefix))
        };
        loop {
            let batch = self
                .source
                .kv()
                .range(RangeRequest {
                    key: key.clone(),
                    range_end: range_end.clone(),
                    limit: BASE_BATCH_KEYS_MAX,
                    revision,
                    ..Default::default()
                })
                .await
                .map_err(failed)?
                .into_inner();
            for kv in &batch.kvs {
                self.dest
                    .kv()
                    .put(PutRequest {
                        key: destination_key(&kv.key, self.prefix, self.dest_prefix),
                        value: kv.value.clone(),
                        ..Default::default()
                    })
                    .await
                    .map_err(failed)?;
                self.total.fetch_add(1, Ordering::Relaxed);
            }
            match batch.kvs.last() {
                Some(last) if batch.more => {
                    key = last.key.clone();
                    key.push(0);
                }
                _ => return Ok(revision),
            }
        }
    }

    /// Replays the changes after `revision`: one transaction per source revision, split at
    /// `max_txn_ops` changes.
    async fn sync_updates(&self, revision: i64, max_txn_ops: u32) -> Result<(), CliError> {
        let (key, range_end) = if self.prefix.is_empty() {
            (vec![0], vec![0])
        } else {
            (self.prefix.to_vec(), prefix_end(self.prefix))
        };
        let mut events = watch(self.source, &key, range_end, revision + 1).await?;
        while let Some(response) = events.next().await {
            let response = response?;
            let mut ops = Vec::new();
            let mut last_revision = 0;
            for event in &response.events {
                let kv = event.kv.clone().unwrap_or_default();
                if last_revision != 0 && kv.mod_revision > last_revision {
                    self.commit(std::mem::take(&mut ops)).await?;
                }
                last_revision = kv.mod_revision;
                if ops.len() == max_txn_ops as usize {
                    self.commit(std::mem::take(&mut ops)).await?;
                }
                let key = destination_key(&kv.key, self.prefix, self.dest_prefix);
                let request = if event.r#type == EventType::Delete as i32 {
                    Request::RequestDeleteRange(DeleteRangeRequest {
                        key,
                        ..Default::default()
                    })
                } else {
                    Request::RequestPut(PutRequest {
                        key,
                        value: kv.value,
                        ..Default::default()
                    })
                };
                ops.push(RequestOp {
                    request: Some(request),
                });
                self.total.fetch_add(1, Ordering::Relaxed);
            }
            if !ops.is_empty() {
                self.commit(ops).await?;
            }
        }
        Ok(())
    }

    async fn commit(&self, ops: Vec<RequestOp>) -> Result<(), CliError> {
        self.dest
            .kv()
            .txn(TxnRequest {
                success: ops,
                ..Default::default()
            })
            .await
            .map_err(failed)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_move_under_the_destination_prefix_as_go_replaces() {
        assert_eq!(destination_key(b"a/k", b"a/", b"b/"), b"b/k");
        assert_eq!(destination_key(b"a/k", b"a/", b""), b"k");
        assert_eq!(destination_key(b"k", b"", b"x/"), b"x/k");
        assert_eq!(destination_key(b"k", b"", b""), b"k");
        assert_eq!(destination_key(b"zz", b"a", b"b"), b"zz");
    }
}
