//! keel-bench: a load generator for etcd v3 API endpoints (Keel or upstream etcd).
//!
//! Subcommands follow etcd's `benchmark` tool: `put`, `range`, `txn-put`, `txn-mixed`,
//! `watch`, `watch-latency`, `lease-keepalive`, plus `k8s` (a Kubernetes-apiserver-like mix),
//! `disk` (the device's sync latency, the floor under any durable write) and `report` (turns
//! the raw JSON of `perf/compare.sh` into a markdown table and SVG plots).
//!
//! Components: `conn` opens connections, `run` drives clients and summarises latencies,
//! `workloads`, `watch` and `k8s` define the operations, `disk` and `report` stand alone.

mod conn;
mod disk;
mod k8s;
mod report;
mod run;
mod secure;
mod watch;
mod workloads;

use std::time::Duration;

use crate::conn::Conn;
use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};

use crate::conn::ConnSpec;
use crate::run::{Outcome, Pace, Stop, Summary};

/// A load generator for etcd v3 API endpoints (Keel or upstream etcd).
#[derive(Parser, Debug)]
#[command(name = "keel-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Put keys (one put per operation).
    Put(workloads::PutArgs),
    /// Range over keys (single-key gets unless --range-end-prefix).
    Range(workloads::RangeArgs),
    /// Txns with one put each and no compares.
    TxnPut(workloads::TxnPutArgs),
    /// Txns that are reads (a range) or writes (a put) at a read/write ratio.
    TxnMixed(workloads::TxnMixedArgs),
    /// N watchers over M streams; puts; measures event throughput and checks none is lost.
    Watch(watch::WatchArgs),
    /// Put-to-event delivery latency seen by W watchers of one key.
    WatchLatency(watch::WatchLatencyArgs),
    /// Lease keep-alives, one lease and one keep-alive stream per client.
    LeaseKeepalive(workloads::LeaseArgs),
    /// A Kubernetes-apiserver-like mix: paginated lists, gets, OCC updates, leased events,
    /// prefix watches from a revision.
    K8s(k8s::K8sArgs),
    /// Writes a CA and server/client certificates for the secure comparison.
    Certs(secure::CertsArgs),
    /// Creates root and a benchmark user with read-write access to every key, then enables
    /// auth.
    AuthSetup(secure::AuthSetupArgs),
    /// Latency of 4 KiB durable writes on the filesystem holding DIR (the physical floor).
    Disk(disk::DiskArgs),
    /// Writes a markdown report with SVG plots from the raw JSON of perf/compare.sh.
    Report(report::ReportArgs),
}

/// Flags every network workload takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Comma-separated endpoints, http://host:port.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    pub endpoints: Vec<String>,
    /// gRPC (HTTP/2) connections to open.
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// Concurrent clients, spread round-robin over the connections.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Stop after this many operations (default 10000 when --duration is not given).
    #[arg(long, conflicts_with = "duration")]
    pub total: Option<u64>,
    /// Stop after this long instead: "10s", "500ms", "2m".
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Operations per second over all clients; 0 = no limit.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// An operation still unanswered after this long counts as a failed one ("timeout").
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub op_timeout: Duration,
    /// Print every operation that takes at least this long to stderr as it ends ("20ms"),
    /// with its end time (Unix seconds, milliseconds), to line it up with a server's log.
    #[arg(long, value_parser = parse_duration)]
    pub slow_log: Option<Duration>,
    /// Key size in bytes.
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    /// Number of distinct keys operations pick from.
    #[arg(long, default_value_t = 1)]
    pub key_space_size: u64,
    /// Pick keys in order (operation i uses key i mod key-space-size) instead of at random.
    #[arg(long)]
    pub sequential_keys: bool,
    /// With several endpoints, send everything to the leader (found via Maintenance.Status).
    #[arg(long)]
    pub target_leader: bool,
    /// CA certificate (PEM) to verify https:// endpoints with (TLS by rustls).
    #[arg(long)]
    pub cacert: Option<String>,
    /// Client certificate (PEM) for mutual TLS; goes with --key.
    #[arg(long)]
    pub cert: Option<String>,
    /// Client private key (PEM) for mutual TLS; goes with --cert.
    #[arg(long)]
    pub key: Option<String>,
    /// Authenticate as this user (name:password) and send its token with every request.
    #[arg(long)]
    pub user: Option<String>,
    /// Print the summary as one JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

impl Common {
    /// The stop condition and rate.
    pub fn pace(&self) -> Pace {
        let stop = match (self.total, self.duration) {
            (_, Some(duration)) => Stop::Duration(duration),
            (Some(total), None) => Stop::Total(total),
            (None, None) => Stop::Total(10_000),
        };
        Pace {
            stop,
            rate: self.rate,
            op_timeout: self.op_timeout,
            slow_log: self.slow_log,
        }
    }

    /// Checks flag combinations that clap cannot.
    pub fn validate(&self) -> Result<()> {
        if self.clients == 0 || self.conns == 0 {
            bail!("--clients and --conns must be at least 1");
        }
        if self.key_space_size == 0 {
            bail!("--key-space-size must be at least 1");
        }
        if self.rate < 0.0 || !self.rate.is_finite() {
            bail!("--rate must be a non-negative number");
        }
        Ok(())
    }

    /// Opens the connections: returns channels and the endpoints used.
    pub async fn open(&self) -> Result<(Vec<Conn>, Vec<String>)> {
        self.validate()?;
        let spec = ConnSpec {
            endpoints: self.endpoints.clone(),
            cacert: self.cacert.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            user: self.user.clone(),
        };
        spec.open(self.conns, self.target_leader).await
    }

    /// The key generator these flags describe.
    pub fn keys(&self) -> Keys {
        Keys {
            size: self.key_size,
            space: self.key_space_size,
            sequential: self.sequential_keys,
        }
    }

    /// The common flags as JSON, recorded in every summary.
    pub fn params(&self) -> serde_json::Value {
        serde_json::json!({
            "total": self.total,
            "duration_secs": self.duration.map(|d| d.as_secs_f64()),
            "rate": self.rate,
            "key_size": self.key_size,
            "val_size": self.val_size,
            "key_space_size": self.key_space_size,
            "sequential_keys": self.sequential_keys,
            "target_leader": self.target_leader,
        })
    }

    /// Builds the summary of a finished run and prints it (text or JSON).
    pub fn finish(
        &self,
        workload: &str,
        endpoints: Vec<String>,
        outcome: Outcome,
        latency_of: &str,
        extra_params: serde_json::Value,
        extra: std::collections::BTreeMap<String, serde_json::Value>,
    ) -> Summary {
        let mut params = self.params();
        if let (Some(all), serde_json::Value::Object(more)) = (params.as_object_mut(), extra_params)
        {
            all.extend(more);
        }
        let errors: u64 = outcome.errors.values().sum();
        let secs = outcome.elapsed.as_secs_f64();
        let summary = Summary {
            workload: workload.to_string(),
            endpoints,
            conns: self.conns,
            clients: self.clients,
            requested_total: match self.pace().stop {
                Stop::Total(total) => Some(total),
                Stop::Duration(_) => None,
            },
            total: outcome.ok + errors,
            ok: outcome.ok,
            errors,
            error_counts: outcome.errors,
            duration_secs: secs,
            ops_per_sec: if secs > 0.0 {
                outcome.ok as f64 / secs
            } else {
                0.0
            },
            latency_of: latency_of.to_string(),
            latency_us: run::Latency::of(&outcome.histogram),
            latency_cdf_us: run::cdf(&outcome.histogram),
            params,
            extra,
        };
        if self.json {
            println!(
                "{}",
                serde_json::to_string(&summary).expect("summary serializes")
            );
        } else {
            summary.print_text();
        }
        summary
    }
}

/// Parses "10s", "250ms", "2m", "1h" or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?}"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("bad duration unit in {text:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("bad duration {text:?}: {e}"))
}

/// Generates keys of a fixed size from a key space.
#[derive(Clone, Copy, Debug)]
pub struct Keys {
    size: usize,
    space: u64,
    sequential: bool,
}

impl Keys {
    /// The key number operation `i` uses.
    pub fn pick(&self, i: u64, rng: &mut Rng) -> u64 {
        if self.sequential {
            i % self.space
        } else {
            rng.below(self.space)
        }
    }

    /// The number of distinct keys.
    pub fn space(&self) -> u64 {
        self.space
    }

    /// The bytes of key number `n`: zero-padded decimal, so that keys sort by number and stay
    /// readable in etcdctl; at least as long as the number needs.
    pub fn key(&self, n: u64) -> Vec<u8> {
        format!("{n:0width$}", width = self.size).into_bytes()
    }
}

/// A small, fast, seedable generator (splitmix64); benchmarks need speed and repeatability,
/// not cryptographic quality.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for client number `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in 0..n (n > 0); the modulo bias is negligible for benchmark key spaces.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Disk(args) => disk::run(args),
        Command::Report(args) => report::run(args),
        Command::Certs(args) => secure::certs(args),
        command => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                match command {
                    Command::Put(args) => workloads::put(args).await,
                    Command::Range(args) => workloads::range(args).await,
                    Command::TxnPut(args) => workloads::txn_put(args).await,
                    Command::TxnMixed(args) => workloads::txn_mixed(args).await,
                    Command::Watch(args) => watch::watch(args).await,
                    Command::WatchLatency(args) => watch::watch_latency(args).await,
                    Command::LeaseKeepalive(args) => workloads::lease_keepalive(args).await,
                    Command::K8s(args) => k8s::run(args).await,
                    Command::AuthSetup(args) => secure::auth_setup(args).await,
                    Command::Disk(_) | Command::Report(_) | Command::Certs(_) => {
                        unreachable!("handled above")
                    }
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn keys_are_fixed_width_and_stay_in_the_key_space() {
        let keys = Keys {
            size: 8,
            space: 5,
            sequential: true,
        };
        assert_eq!(keys.key(42), b"00000042".to_vec());
        let mut rng = Rng::new(1);
        assert_eq!(
            (0..7).map(|i| keys.pick(i, &mut rng)).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4, 0, 1]
        );
        let random = Keys {
            size: 8,
            space: 5,
            sequential: false,
        };
        assert!((0..1000).all(|i| random.pick(i, &mut rng) < 5));
    }

    #[test]
    fn rng_streams_differ_by_seed_and_repeat_for_one_seed() {
        let take = |seed| {
            let mut rng = Rng::new(seed);
            (0..4).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(take(3), take(3));
        assert_ne!(take(3), take(4));
    }
}
