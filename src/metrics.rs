//! Prometheus metrics with etcd's names, rendered in the text exposition format.
//!
//! Only the metrics Keel has a real value for are exported; each keeps etcd's name, type and
//! (for histograms) etcd's buckets, so existing dashboards and alerts work unchanged. The
//! registry is a plain struct of atomics: updating a metric on the hot path is one relaxed
//! atomic add, and rendering happens only when `/metrics` is scraped.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the count (for figures etcd exports as a raft index).
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Subtracts `n`.
    pub fn sub(&self, n: i64) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// etcd's buckets for disk latency histograms: `ExponentialBuckets(0.001, 2, 14)`, 1 ms to
/// 8.192 s, in seconds.
pub const DISK_BUCKETS_SECONDS: [f64; 14] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192,
];

/// A latency histogram over [`DISK_BUCKETS_SECONDS`].
#[derive(Debug, Default)]
pub struct Histogram {
    /// Non-cumulative counts per bucket; the last slot counts observations above every bound.
    buckets: [AtomicU64; DISK_BUCKETS_SECONDS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let slot = DISK_BUCKETS_SECONDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(DISK_BUCKETS_SECONDS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in DISK_BUCKETS_SECONDS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.buckets[DISK_BUCKETS_SECONDS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {}", self.count());
    }
}

/// Values that are read from the store when `/metrics` is rendered rather than counted.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreGauges {
    /// Approximate bytes held by the MVCC store (`etcd_mvcc_db_total_size_in_bytes`).
    pub db_total_size_bytes: u64,
    /// Keys that currently exist (`etcd_debugging_mvcc_keys_total`).
    pub keys_total: u64,
    /// The store's current revision (`etcd_debugging_mvcc_current_revision`).
    pub current_revision: i64,
    /// The store's compact revision (`etcd_debugging_mvcc_compact_revision`).
    pub compact_revision: i64,
    /// Leases held by the store.
    pub leases: u64,
}

/// Every metric the server exports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// `etcd_server_leader_changes_seen_total`.
    pub leader_changes_seen: Counter,
    /// `etcd_server_proposals_committed_total`: as in etcd, the raft commit index.
    pub proposals_committed: Counter,
    /// `etcd_server_proposals_applied_total`: as in etcd, the applied index.
    pub proposals_applied: Counter,
    /// `etcd_server_proposals_pending`.
    pub proposals_pending: Gauge,
    /// `etcd_server_proposals_failed_total`.
    pub proposals_failed: Counter,
    /// `etcd_disk_wal_fsync_duration_seconds`: one observation per WAL batch (write + sync).
    pub wal_fsync: Histogram,
    /// `etcd_disk_backend_commit_duration_seconds`: applying one batch to the store.
    pub backend_commit: Histogram,
    /// `etcd_disk_wal_write_bytes_total`.
    pub wal_write_bytes: Counter,
    /// `etcd_mvcc_range_total`.
    pub range_total: Counter,
    /// `etcd_mvcc_put_total`.
    pub put_total: Counter,
    /// `etcd_mvcc_delete_total`.
    pub delete_total: Counter,
    /// `etcd_mvcc_txn_total`.
    pub txn_total: Counter,
    /// `etcd_debugging_mvcc_watcher_total`.
    pub watchers: Gauge,
    /// `etcd_debugging_mvcc_watch_stream_total`.
    pub watch_streams: Gauge,
    /// `etcd_debugging_lease_granted_total`.
    pub lease_granted: Counter,
    /// `etcd_debugging_lease_revoked_total`.
    pub lease_revoked: Counter,
    /// `etcd_debugging_lease_renewed_total`.
    pub lease_renewed: Counter,
    /// `etcd_server_slow_apply_total`: batches whose apply took over 100 ms.
    pub slow_apply: Counter,
    /// `etcd_server_slow_read_indexes_total`: ReadIndex rounds that had to be asked again.
    pub slow_read_indexes: Counter,
    /// `etcd_server_is_learner`: 1 while this member is a learner.
    pub is_learner: Counter,
    /// `etcd_debugging_auth_revision`: the auth store's revision.
    pub auth_revision: Counter,
    /// `etcd_server_learner_promote_successes`: promotions this member made as leader.
    pub learner_promote_successes: Counter,
    /// `etcd_server_learner_promote_failures{Reason}`: promotions this member refused as
    /// leader, by error text.
    pub learner_promote_failures: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// This member's id (`etcd_server_id{server_id}`); 0 until set.
    pub server_id: Counter,
    /// Peers the transport is connected to (`etcd_network_active_peers{Local,Remote}`).
    pub active_peers: std::sync::Mutex<std::collections::BTreeSet<u64>>,
    /// Per-peer network figures (`etcd_network_*`), by member id.
    pub peers: std::sync::Mutex<std::collections::BTreeMap<u64, PeerCounters>>,
}

/// One peer's network figures, with etcd's metric names.
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerCounters {
    /// `etcd_network_peer_sent_bytes_total{To}`.
    pub sent_bytes: u64,
    /// `etcd_network_peer_received_bytes_total{From}`.
    pub received_bytes: u64,
    /// `etcd_network_peer_sent_failures_total{To}`: sends that failed or were dropped.
    pub sent_failures: u64,
    /// `etcd_network_snapshot_send_success{To}`.
    pub snapshot_send_success: u64,
    /// `etcd_network_snapshot_send_failures{To}`.
    pub snapshot_send_failures: u64,
    /// `etcd_network_snapshot_send_total_duration_seconds{To}`.
    pub snapshot_send_seconds: f64,
    /// `etcd_network_snapshot_receive_success{From}`.
    pub snapshot_receive_success: u64,
    /// `etcd_network_snapshot_receive_failures{From}`.
    pub snapshot_receive_failures: u64,
    /// `etcd_network_snapshot_receive_total_duration_seconds{From}`.
    pub snapshot_receive_seconds: f64,
    /// `etcd_network_snapshot_send_inflights_total{To}`.
    pub snapshot_send_inflights: u64,
    /// `etcd_network_snapshot_receive_inflights_total{From}`.
    pub snapshot_receive_inflights: u64,
    /// `etcd_network_peer_round_trip_time_seconds{To}`: non-cumulative counts per
    /// [`ROUND_TRIP_BUCKETS_SECONDS`] bucket (the last slot: above every bound).
    pub round_trip_buckets: [u64; ROUND_TRIP_BUCKETS_SECONDS.len() + 1],
    /// Sum of the round trips observed, in seconds.
    pub round_trip_seconds: f64,
}

/// Buckets of `etcd_network_peer_round_trip_time_seconds`, etcd's: 0.1 ms doubling 16 times.
pub const ROUND_TRIP_BUCKETS_SECONDS: [f64; 16] = [
    0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256, 0.0512, 0.1024, 0.2048,
    0.4096, 0.8192, 1.6384, 3.2768,
];

impl PeerCounters {
    /// Records one round trip to the peer.
    pub fn observe_round_trip(&mut self, round_trip: Duration) {
        let seconds = round_trip.as_secs_f64();
        let slot = ROUND_TRIP_BUCKETS_SECONDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(ROUND_TRIP_BUCKETS_SECONDS.len());
        self.round_trip_buckets[slot] += 1;
        self.round_trip_seconds += seconds;
    }
}

impl Metrics {
    /// Updates peer `id`'s figures.
    pub fn peer(&self, id: u64, update: impl FnOnce(&mut PeerCounters)) {
        let mut peers = self.peers.lock().expect("peer metrics lock");
        update(peers.entry(id).or_default());
    }

    fn render_peers(&self, out: &mut String) {
        let peers = self.peers.lock().expect("peer metrics lock").clone();
        type Field = fn(&PeerCounters) -> f64;
        let families: [(&str, &str, &str, &str, Field); 11] = [
            (
                "etcd_network_peer_sent_bytes_total",
                "counter",
                "To",
                "The total number of bytes sent to peers.",
                |p| p.sent_bytes as f64,
            ),
            (
                "etcd_network_peer_received_bytes_total",
                "counter",
                "From",
                "The total number of bytes received from peers.",
                |p| p.received_bytes as f64,
            ),
            (
                "etcd_network_peer_sent_failures_total",
                "counter",
                "To",
                "The total number of send failures from peers.",
                |p| p.sent_failures as f64,
            ),
            (
                "etcd_network_snapshot_send_success",
                "counter",
                "To",
                "Total number of successful snapshot sends",
                |p| p.snapshot_send_success as f64,
            ),
            (
                "etcd_network_snapshot_send_failures",
                "counter",
                "To",
                "Total number of snapshot send failures",
                |p| p.snapshot_send_failures as f64,
            ),
            (
                "etcd_network_snapshot_send_total_duration_seconds",
                "counter",
                "To",
                "Total latency distributions of v3 snapshot sends",
                |p| p.snapshot_send_seconds,
            ),
            (
                "etcd_network_snapshot_receive_success",
                "counter",
                "From",
                "Total number of successful snapshot receives",
                |p| p.snapshot_receive_success as f64,
            ),
            (
                "etcd_network_snapshot_receive_failures",
                "counter",
                "From",
                "Total number of snapshot receive failures",
                |p| p.snapshot_receive_failures as f64,
            ),
            (
                "etcd_network_snapshot_receive_total_duration_seconds",
                "counter",
                "From",
                "Total latency distributions of v3 snapshot receives",
                |p| p.snapshot_receive_seconds,
            ),
            (
                "etcd_network_snapshot_send_inflights_total",
                "gauge",
                "To",
                "Total number of inflight snapshot sends",
                |p| p.snapshot_send_inflights as f64,
            ),
            (
                "etcd_network_snapshot_receive_inflights_total",
                "gauge",
                "From",
                "Total number of inflight snapshot receives",
                |p| p.snapshot_receive_inflights as f64,
            ),
        ];
        if peers.is_empty() {
            return;
        }
        for (name, kind, label, help, field) in families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (id, counters) in &peers {
                let _ = writeln!(out, "{name}{{{label}=\"{id:x}\"}} {}", field(counters));
            }
        }
        let name = "etcd_network_peer_round_trip_time_seconds";
        let _ = writeln!(out, "# HELP {name} Round-Trip-Time histogram between peers");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (id, counters) in &peers {
            let mut cumulative = 0;
            for (bound, count) in ROUND_TRIP_BUCKETS_SECONDS
                .iter()
                .zip(&counters.round_trip_buckets)
            {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "{name}_bucket{{To=\"{id:x}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            cumulative += counters.round_trip_buckets[ROUND_TRIP_BUCKETS_SECONDS.len()];
            let _ = writeln!(
                out,
                "{name}_bucket{{To=\"{id:x}\",le=\"+Inf\"}} {cumulative}"
            );
            let _ = writeln!(
                out,
                "{name}_sum{{To=\"{id:x}\"}} {}",
                counters.round_trip_seconds
            );
            let _ = writeln!(out, "{name}_count{{To=\"{id:x}\"}} {cumulative}");
        }
    }
}

fn scalar(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

impl Metrics {
    /// The Prometheus text exposition of every metric. `has_leader` is 1 while the member
    /// knows a leader, `is_leader` while it is the leader.
    pub fn render(
        &self,
        store: StoreGauges,
        has_leader: bool,
        is_leader: bool,
        server_version: &str,
    ) -> String {
        let mut out = String::with_capacity(8192);
        let leader = i64::from(has_leader);
        scalar(
            &mut out,
            "etcd_server_has_leader",
            "gauge",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            leader,
        );
        scalar(
            &mut out,
            "etcd_server_is_leader",
            "gauge",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            i64::from(is_leader),
        );
        scalar(
            &mut out,
            "etcd_server_leader_changes_seen_total",
            "counter",
            "The number of leader changes seen.",
            self.leader_changes_seen.get(),
        );
        scalar(
            &mut out,
            "etcd_server_proposals_committed_total",
            "counter",
            "The total number of consensus proposals committed.",
            self.proposals_committed.get(),
        );
        scalar(
            &mut out,
            "etcd_server_proposals_applied_total",
            "counter",
            "The total number of consensus proposals applied.",
            self.proposals_applied.get(),
        );
        scalar(
            &mut out,
            "etcd_server_proposals_pending",
            "gauge",
            "The current number of pending proposals to commit.",
            self.proposals_pending.get(),
        );
        scalar(
            &mut out,
            "etcd_server_proposals_failed_total",
            "counter",
            "The total number of failed proposals seen.",
            self.proposals_failed.get(),
        );
        scalar(
            &mut out,
            "etcd_server_slow_read_indexes_total",
            "counter",
            "The total number of pending read indexes not in sync with leader's or timed out read index requests.",
            self.slow_read_indexes.get(),
        );
        scalar(
            &mut out,
            "etcd_server_slow_apply_total",
            "counter",
            "The total number of slow apply requests (likely overloaded from slow disk).",
            self.slow_apply.get(),
        );
        scalar(
            &mut out,
            "etcd_server_is_learner",
            "gauge",
            "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            self.is_learner.get(),
        );
        scalar(
            &mut out,
            "etcd_debugging_auth_revision",
            "gauge",
            "The current revision of auth store.",
            self.auth_revision.get(),
        );
        scalar(
            &mut out,
            "etcd_server_learner_promote_successes",
            "counter",
            "The total number of successful learner promotions while this member is leader.",
            self.learner_promote_successes.get(),
        );
        let _ = writeln!(out, "# HELP etcd_server_learner_promote_failures The total number of failed learner promotions (likely learner not ready) while this member is leader.");
        let _ = writeln!(out, "# TYPE etcd_server_learner_promote_failures counter");
        for (reason, count) in self
            .learner_promote_failures
            .lock()
            .expect("promote metrics lock")
            .iter()
        {
            let _ = writeln!(
                out,
                "etcd_server_learner_promote_failures{{Reason=\"{reason}\"}} {count}"
            );
        }
        let server_id = self.server_id.get();
        let _ = writeln!(out, "# HELP etcd_server_id Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.");
        let _ = writeln!(out, "# TYPE etcd_server_id gauge");
        let _ = writeln!(out, "etcd_server_id{{server_id=\"{server_id:x}\"}} 1");
        let _ = writeln!(
            out,
            "# HELP etcd_network_active_peers The current number of active peer connections."
        );
        let _ = writeln!(out, "# TYPE etcd_network_active_peers gauge");
        for remote in self.active_peers.lock().expect("peer metrics lock").iter() {
            let _ = writeln!(
                out,
                "etcd_network_active_peers{{Local=\"{server_id:x}\",Remote=\"{remote:x}\"}} 1"
            );
        }
        let _ = writeln!(out, "# HELP etcd_server_version Which version is running. 1 for 'server_version' label with current version.");
        let _ = writeln!(out, "# TYPE etcd_server_version gauge");
        let _ = writeln!(
            out,
            "etcd_server_version{{server_version=\"{server_version}\"}} 1"
        );
        self.render_peers(&mut out);
        self.wal_fsync.render(
            &mut out,
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
        );
        self.backend_commit.render(
            &mut out,
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend.",
        );
        scalar(
            &mut out,
            "etcd_disk_wal_write_bytes_total",
            "gauge",
            "Total number of bytes written in WAL.",
            self.wal_write_bytes.get(),
        );
        scalar(
            &mut out,
            "etcd_mvcc_db_total_size_in_bytes",
            "gauge",
            "Total size of the underlying database physically allocated in bytes.",
            store.db_total_size_bytes,
        );
        scalar(
            &mut out,
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "gauge",
            "Total size of the underlying database logically in use in bytes.",
            store.db_total_size_bytes,
        );
        scalar(
            &mut out,
            "etcd_debugging_mvcc_db_total_size_in_bytes",
            "gauge",
            "Total size of the underlying database physically allocated in bytes.",
            store.db_total_size_bytes,
        );
        scalar(
            &mut out,
            "etcd_debugging_mvcc_keys_total",
            "gauge",
            "Total number of keys.",
            store.keys_total,
        );
        scalar(
            &mut out,
            "etcd_debugging_mvcc_current_revision",
            "gauge",
            "The current revision of store.",
            store.current_revision,
        );
        scalar(
            &mut out,
            "etcd_debugging_mvcc_compact_revision",
            "gauge",
            "The revision of the last compaction in store.",
            store.compact_revision,
        );
        scalar(
            &mut out,
            "etcd_mvcc_range_total",
            "counter",
            "Total number of ranges seen by this member.",
            self.range_total.get(),
        );
        scalar(
            &mut out,
            "etcd_mvcc_put_total",
            "counter",
            "Total number of puts seen by this member.",
            self.put_total.get(),
        );
        scalar(
            &mut out,
            "etcd_mvcc_delete_total",
            "counter",
            "Total number of deletes seen by this member.",
            self.delete_total.get(),
        );
        scalar(
            &mut out,
            "etcd_mvcc_txn_total",
            "counter",
            "Total number of txns seen by this member.",
            self.txn_total.get(),
        );
        scalar(
            &mut out,
            "etcd_debugging_mvcc_watcher_total",
            "gauge",
            "Total number of watchers.",
            self.watchers.get(),
        );
        scalar(
            &mut out,
            "etcd_debugging_mvcc_watch_stream_total",
            "gauge",
            "Total number of watch streams.",
            self.watch_streams.get(),
        );
        scalar(
            &mut out,
            "etcd_debugging_lease_granted_total",
            "counter",
            "The total number of granted leases.",
            self.lease_granted.get(),
        );
        scalar(
            &mut out,
            "etcd_debugging_lease_revoked_total",
            "counter",
            "The total number of revoked leases.",
            self.lease_revoked.get(),
        );
        scalar(
            &mut out,
            "etcd_debugging_lease_renewed_total",
            "counter",
            "The number of renewed leases seen by the leader.",
            self.lease_renewed.get(),
        );
        scalar(
            &mut out,
            "etcd_debugging_lease_total",
            "gauge",
            "The number of leases held.",
            store.leases,
        );
        process::render(&mut out);
        out
    }
}

/// The metrics of Prometheus' process collector, which etcd (as every Go program that
/// registers the default registry) exports: CPU time, memory, file descriptors and start time,
/// read from `/proc/self` as client_golang's collector reads them. `etcdctl check datascale`
/// reads `process_resident_memory_bytes`. A figure `/proc` cannot give is left out, as the
/// Go collector leaves it out.
pub mod process {
    use std::fmt::Write as _;

    /// The kernel's clock ticks per second in `/proc/<pid>/stat` (USER_HZ); client_golang's
    /// procfs assumes 100, as every Linux ABI defines it.
    const USER_HZ: f64 = 100.0;

    /// The process figures of one scrape.
    #[derive(Debug, Default, PartialEq)]
    pub struct ProcessFigures {
        /// User and system CPU time, seconds.
        pub cpu_seconds: Option<f64>,
        /// Open file descriptors.
        pub open_fds: Option<u64>,
        /// The soft limit on open files (`u64::MAX` when unlimited).
        pub max_fds: Option<u64>,
        /// Virtual memory size, bytes.
        pub virtual_memory_bytes: Option<u64>,
        /// The soft limit on the address space (`u64::MAX` when unlimited).
        pub virtual_memory_max_bytes: Option<u64>,
        /// Resident set size, bytes.
        pub resident_memory_bytes: Option<u64>,
        /// When the process started, seconds since the Unix epoch.
        pub start_time_seconds: Option<f64>,
    }

    /// The fields of `/proc/self/stat` after the command name (which may hold spaces and
    /// parentheses, so the split is at the last `)`): field 3 (state) is index 0.
    fn stat_fields(stat: &str) -> Option<Vec<&str>> {
        let after = &stat[stat.rfind(')')? + 1..];
        Some(after.split_whitespace().collect())
    }

    /// The soft limit of the `/proc/self/limits` row starting with `name`.
    fn soft_limit(limits: &str, name: &str) -> Option<u64> {
        let row = limits.lines().find(|l| l.starts_with(name))?;
        let soft = row[name.len()..].split_whitespace().next()?;
        if soft == "unlimited" {
            Some(u64::MAX)
        } else {
            soft.parse().ok()
        }
    }

    /// Figures from the texts of `/proc/self/stat`, `/proc/self/limits` and `/proc/stat`
    /// (for the boot time), the page size and the number of open descriptors.
    pub fn figures_from(
        stat: Option<&str>,
        limits: Option<&str>,
        system_stat: Option<&str>,
        page_bytes: u64,
        open_fds: Option<u64>,
    ) -> ProcessFigures {
        let fields = stat.and_then(stat_fields);
        // proc(5) numbers the fields from 1 with the state at 3: field n is index n - 3.
        let field = |n: usize| -> Option<u64> { fields.as_ref()?.get(n - 3)?.parse().ok() };
        let boot_seconds = system_stat.and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<u64>().ok())
        });
        let cpu_seconds = match (field(14), field(15)) {
            (Some(user), Some(system)) => Some((user + system) as f64 / USER_HZ),
            _ => None,
        };
        let start_time_seconds = match (field(22), boot_seconds) {
            (Some(ticks), Some(boot)) => Some(boot as f64 + ticks as f64 / USER_HZ),
            _ => None,
        };
        ProcessFigures {
            cpu_seconds,
            open_fds,
            max_fds: limits.and_then(|l| soft_limit(l, "Max open files")),
            virtual_memory_bytes: field(23),
            virtual_memory_max_bytes: limits.and_then(|l| soft_limit(l, "Max address space")),
            resident_memory_bytes: field(24).map(|pages| pages * page_bytes),
            start_time_seconds,
        }
    }

    /// This process' figures now.
    pub fn figures() -> ProcessFigures {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        // SAFETY: sysconf only reads a system constant.
        let page_bytes = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page_bytes = u64::try_from(page_bytes).unwrap_or(4096);
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| entries.count() as u64);
        figures_from(
            read("/proc/self/stat").as_deref(),
            read("/proc/self/limits").as_deref(),
            read("/proc/stat").as_deref(),
            page_bytes,
            open_fds,
        )
    }

    /// A number as client_golang writes it: Go's shortest `%g` (`strconv.FormatFloat(f, 'g',
    /// -1, 64)`), which switches to an exponent from 1e6 up (`1.048576e+06`).
    pub fn go_float(value: f64) -> String {
        if value == 0.0 {
            return "0".to_string();
        }
        let scientific = format!("{value:e}");
        let (mantissa, exponent) = scientific
            .split_once('e')
            .expect("{:e} always writes an exponent");
        let exponent: i32 = exponent.parse().expect("a decimal exponent");
        if !(-4..6).contains(&exponent) {
            let sign = if exponent < 0 { '-' } else { '+' };
            format!("{mantissa}e{sign}{:02}", exponent.abs())
        } else {
            format!("{value}")
        }
    }

    /// Appends the process collector's metrics, with its names, help texts and types.
    pub fn render(out: &mut String) {
        let figures = figures();
        let rows: [(&str, &str, &str, Option<f64>); 7] = [
            (
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                figures.cpu_seconds,
            ),
            (
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
                figures.max_fds.map(|v| v as f64),
            ),
            (
                "process_open_fds",
                "gauge",
                "Number of open file descriptors.",
                figures.open_fds.map(|v| v as f64),
            ),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                figures.resident_memory_bytes.map(|v| v as f64),
            ),
            (
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                figures.start_time_seconds,
            ),
            (
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes.",
                figures.virtual_memory_bytes.map(|v| v as f64),
            ),
            (
                "process_virtual_memory_max_bytes",
                "gauge",
                "Maximum amount of virtual memory available in bytes.",
                figures.virtual_memory_max_bytes.map(|v| v as f64),
            ),
        ];
        for (name, kind, help, value) in rows {
            if let Some(value) = value {
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} {kind}");
                let _ = writeln!(out, "{name} {}", go_float(value));
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn numbers_as_go_writes_them() {
            assert_eq!(go_float(0.0), "0");
            assert_eq!(go_float(12.0), "12");
            assert_eq!(go_float(0.05), "0.05");
            assert_eq!(go_float(999_999.0), "999999");
            assert_eq!(go_float(1_048_576.0), "1.048576e+06");
            assert_eq!(go_float(2.8672e7), "2.8672e+07");
            assert_eq!(go_float(u64::MAX as f64), "1.8446744073709552e+19");
            assert_eq!(go_float(0.00001), "1e-05");
        }

        #[test]
        fn figures_from_proc_texts() {
            // A command name with a space and a parenthesis must not shift the fields.
            let stat = "4242 (keel (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                        250 50 0 0 20 0 9 0 12345 104857600 2560 18446744073709551615";
            let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                          Max open files            1024                 524288               files\n\
                          Max address space         unlimited            unlimited            bytes\n";
            let system = "cpu  1 2 3\nbtime 1700000000\nprocesses 9\n";
            let mut figures = figures_from(Some(stat), Some(limits), Some(system), 4096, Some(7));
            let start = figures.start_time_seconds.take().expect("a start time");
            assert!((start - 1_700_000_123.45).abs() < 1e-3, "{start}");
            assert_eq!(
                figures,
                ProcessFigures {
                    cpu_seconds: Some(3.0),
                    open_fds: Some(7),
                    max_fds: Some(1024),
                    virtual_memory_bytes: Some(104_857_600),
                    virtual_memory_max_bytes: Some(u64::MAX),
                    resident_memory_bytes: Some(2560 * 4096),
                    start_time_seconds: None,
                }
            );
        }

        #[test]
        fn nothing_made_up_without_proc() {
            assert_eq!(
                figures_from(None, None, None, 4096, None),
                ProcessFigures::default()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(500));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(10));
        let mut out = String::new();
        histogram.render(&mut out, "h", "help");
        assert!(out.contains("h_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"0.004\"} 2\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"8.192\"} 2\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("h_count 3\n"), "{out}");
    }

    #[test]
    fn render_names_etcd_metrics() {
        let metrics = Metrics::default();
        metrics.put_total.add(3);
        metrics.auth_revision.set(4);
        let text = metrics.render(StoreGauges::default(), true, true, "3.5.0");
        for name in [
            "etcd_server_has_leader 1",
            "etcd_debugging_auth_revision 4",
            "etcd_mvcc_put_total 3",
            "etcd_disk_wal_fsync_duration_seconds_count 0",
            "etcd_mvcc_db_total_size_in_bytes 0",
        ] {
            assert!(text.contains(name), "missing {name}");
        }
    }
}
