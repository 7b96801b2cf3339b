//! The Keel server: threads, startup, shutdown.
//!
//! Layout (see docs/architecture.md): one **log core** thread runs a glommio executor that
//! owns the WAL and applies every write ([`log`]); `--cores` **front** threads each run a
//! glommio executor with one SO_REUSEPORT listener per client URL, serving the gRPC services
//! ([`crate::api`]) and the HTTP endpoints ([`crate::http`]). Front cores read the store
//! directly and send writes to the log core over a bounded channel.
//!
//! [`start`] returns once every listener is bound and the store is recovered, so a caller
//! (a test, or the `keel` binary) can connect right away; [`ServerHandle::stop`] shuts the
//! member down and waits for every thread.

pub mod apply;
pub mod command;
pub mod log;
pub mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context as _};
use glommio::{LocalExecutorBuilder, Placement};
use keel_proto::etcdserverpb::cluster_server::ClusterServer;
use keel_proto::etcdserverpb::kv_server::KvServer;
use keel_proto::etcdserverpb::lease_server::LeaseServer;
use keel_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use keel_proto::etcdserverpb::watch_server::WatchServer;
use keel_proto::grpc_health_v1::health_server::HealthServer;
use tonic::service::Routes;

use crate::api::convert::HeaderFields;
use crate::api::health::HealthService;
use crate::api::kv::KvService;
use crate::api::lease::LeaseService;
use crate::api::maintenance::{ClusterService, MaintenanceService};
use crate::api::watch::WatchService;
use crate::config::{parse_urls, Config};
use crate::datadir::DataDir;
use crate::http::HttpEndpoints;
use crate::metrics::Metrics;
use crate::net::{self, ServeOptions};
use state::{IdGenerator, Limits, MemberInfo, Shared, SharedRef};

/// Proposals queued for the log core before writers wait (back-pressure).
pub const PROPOSALS_QUEUED_MAX: usize = 16 * 1024;

/// The raft term a single member reports (etcd's first election makes a new single member's
/// term 2).
pub const SINGLE_MEMBER_TERM: u64 = 2;

/// A running member.
pub struct ServerHandle {
    shared: SharedRef,
    threads: Vec<JoinHandle<()>>,
    /// The bound client addresses, in `--listen-client-urls` order (ports resolved).
    pub client_addrs: Vec<SocketAddr>,
    /// The bound metrics addresses.
    pub metrics_addrs: Vec<SocketAddr>,
    _data_dir: DataDir,
}

impl ServerHandle {
    /// The state shared by the services (for tests and tools in this process).
    pub fn shared(&self) -> &SharedRef {
        &self.shared
    }

    /// Begins shutdown without waiting.
    pub fn begin_stop(&self) {
        self.shared.stop();
    }

    /// Shuts down: stops accepting, lets in-flight requests finish, drains the log core, and
    /// waits for every thread. The data dir lock is released when this returns.
    pub fn stop(mut self) {
        self.shared.stop();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }

    /// Waits for every thread (after [`ServerHandle::begin_stop`] or a fatal error).
    pub fn wait(mut self) {
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Member and cluster ids, fixed when the data dir is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The cluster id.
    pub cluster_id: u64,
    /// This member's id.
    pub member_id: u64,
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

impl Identity {
    /// Ids derived from the peer URLs and the cluster token, as etcd derives them (the
    /// values differ from etcd's; they are opaque to clients).
    pub fn derive(peer_urls: &[String], token: &str) -> Identity {
        let mut urls = peer_urls.to_vec();
        urls.sort();
        let joined = urls.join(",");
        let member_id = fnv1a(&[joined.as_bytes(), token.as_bytes()]).max(1);
        let cluster_id = fnv1a(&[&member_id.to_be_bytes(), token.as_bytes()]).max(1);
        Identity {
            cluster_id,
            member_id,
        }
    }

    /// Reads the ids stored in the data dir, or stores `fallback` there on first start.
    pub fn load_or_store(path: &std::path::Path, fallback: Identity) -> anyhow::Result<Identity> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut cluster_id = None;
                let mut member_id = None;
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("cluster_id=") {
                        cluster_id = u64::from_str_radix(v.trim(), 16).ok();
                    } else if let Some(v) = line.strip_prefix("member_id=") {
                        member_id = u64::from_str_radix(v.trim(), 16).ok();
                    }
                }
                match (cluster_id, member_id) {
                    (Some(cluster_id), Some(member_id)) => Ok(Identity {
                        cluster_id,
                        member_id,
                    }),
                    _ => bail!("{} is damaged: {text:?}", path.display()),
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let text = format!(
                    "cluster_id={:016x}\nmember_id={:016x}\n",
                    fallback.cluster_id, fallback.member_id
                );
                let temp = path.with_extension("tmp");
                std::fs::write(&temp, text)
                    .and_then(|_| std::fs::File::open(&temp)?.sync_all())
                    .and_then(|_| std::fs::rename(&temp, path))
                    .with_context(|| format!("writing {}", path.display()))?;
                if let Some(dir) = path.parent() {
                    std::fs::File::open(dir)
                        .and_then(|d| d.sync_all())
                        .with_context(|| format!("syncing {}", dir.display()))?;
                }
                Ok(fallback)
            }
            Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
        }
    }
}

fn addrs(flag: &'static str, urls: &str) -> anyhow::Result<Vec<SocketAddr>> {
    parse_urls(flag, urls)?
        .iter()
        .map(|url| {
            if url.scheme == "https" {
                bail!("--{flag} {url}: TLS is not implemented yet; use http:// URLs");
            }
            Ok(url.socket_addr()?)
        })
        .collect()
}

fn routes(shared: &SharedRef) -> Routes {
    let decode_max = shared.limits.request_bytes_max + state::GRPC_OVERHEAD_BYTES;
    Routes::new(KvServer::new(KvService::new(shared.clone())).max_decoding_message_size(decode_max))
        .add_service(
            WatchServer::new(WatchService::new(shared.clone()))
                .max_decoding_message_size(decode_max),
        )
        .add_service(
            LeaseServer::new(LeaseService::new(shared.clone()))
                .max_decoding_message_size(decode_max),
        )
        .add_service(
            MaintenanceServer::new(MaintenanceService::new(shared.clone()))
                .max_decoding_message_size(decode_max),
        )
        .add_service(ClusterServer::new(ClusterService::new(shared.clone())))
        .add_service(HealthServer::new(HealthService::new(shared.clone())))
}

/// Starts a member with `config`. Returns when it serves clients.
pub fn start(config: &Config) -> anyhow::Result<ServerHandle> {
    config.validate()?;
    let client_addrs = addrs("listen-client-urls", &config.listen_client_urls)?;
    let metrics_addrs = match &config.listen_metrics_urls {
        Some(urls) => addrs("listen-metrics-urls", urls)?,
        None => Vec::new(),
    };
    let peer_urls: Vec<String> = parse_urls(
        "initial-advertise-peer-urls",
        &config.initial_advertise_peer_urls,
    )?
    .iter()
    .map(|u| u.to_string())
    .collect();
    let client_urls: Vec<String> =
        parse_urls("advertise-client-urls", &config.advertise_client_urls)?
            .iter()
            .map(|u| u.to_string())
            .collect();
    if let Some(cluster) = &config.initial_cluster {
        let members = cluster.split(',').filter(|m| !m.trim().is_empty()).count();
        if members > 1 {
            bail!(
                "--initial-cluster names {members} members; this build of keel runs a single \
                 member only (replication is not implemented yet)"
            );
        }
    }

    let data_dir_path = config.data_dir();
    let data_dir = DataDir::open(&data_dir_path)
        .with_context(|| format!("opening data dir {}", data_dir_path.display()))?;
    let wal_dir: PathBuf = match &config.wal_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating --wal-dir {}", dir.display()))?;
            dir.clone()
        }
        None => data_dir.wal_dir(),
    };
    let snap_dir = data_dir.snap_dir();
    let identity = Identity::load_or_store(
        &data_dir.root().join("member").join("identity"),
        Identity::derive(&peer_urls, &config.initial_cluster_token),
    )?;

    // etcd's minimum lease TTL: 1.5 election timeouts, rounded up to whole seconds.
    let election_ticks = (config.election_timeout / config.heartbeat_interval.max(1)).max(1);
    let min_ttl_ms = (3 * election_ticks / 2) * config.heartbeat_interval;
    let limits = Limits {
        request_bytes_max: usize::try_from(config.max_request_bytes).unwrap_or(usize::MAX),
        txn_ops_max: config.max_txn_ops as usize,
        quota_bytes: config.quota_bytes(),
        lease_ttl_min_seconds: (min_ttl_ms as i64 + 999) / 1000,
    };
    let member = MemberInfo {
        name: config.name.clone(),
        peer_urls,
        client_urls,
    };
    let progress_interval = config.watch_progress_notify_interval()?;
    let snapshot_count = config.snapshot_count;
    let auto_compaction = config.auto_compaction()?;

    // The log core: recover, publish the shared state, then run the loop.
    let (proposals, inbox) = async_channel::bounded(PROPOSALS_QUEUED_MAX);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<SharedRef>>();
    let log_thread = LocalExecutorBuilder::new(Placement::Unbound)
        .name("keel-log")
        .spawn(move || async move {
            let recovered = log::recover(&wal_dir, &snap_dir).await;
            let (storage, recovered) = match recovered {
                Ok(r) => r,
                Err(error) => {
                    let _ = ready_tx.send(Err(error));
                    return;
                }
            };
            tracing::info!(
                checkpoint_index = recovered.checkpoint_index,
                replayed = recovered.replayed,
                revision = recovered.store.current_revision(),
                "recovered"
            );
            let clocks = log::start_lease_clocks(&recovered.store);
            let shared = Arc::new(Shared {
                store: RwLock::new(recovered.store),
                header: HeaderFields {
                    cluster_id: identity.cluster_id,
                    member_id: identity.member_id,
                    raft_term: SINGLE_MEMBER_TERM,
                },
                member,
                limits,
                proposals,
                revision_changed: event_listener::Event::new(),
                applied_index: AtomicU64::new(recovered.last_index),
                lease_clocks: Mutex::new(clocks),
                alarms: Mutex::new(recovered.alarms),
                metrics: Metrics::default(),
                ids: IdGenerator::new(identity.member_id),
                wal_failed: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
                stop_event: event_listener::Event::new(),
                watch_progress_interval: progress_interval,
            });
            let core = log::LogCore::new(
                shared.clone(),
                storage,
                inbox,
                recovered.last_index,
                recovered.checkpoint_index,
                snapshot_count,
                auto_compaction,
            );
            let _ = ready_tx.send(Ok(shared));
            core.run().await;
        })
        .map_err(|e| anyhow::anyhow!("starting the log core thread: {e}"))?;
    let shared = match ready_rx.recv() {
        Ok(Ok(shared)) => shared,
        Ok(Err(error)) => {
            let _ = log_thread.join();
            return Err(error.context("recovering the store"));
        }
        Err(_) => {
            let _ = log_thread.join();
            bail!("the log core thread died during recovery");
        }
    };
    let mut threads: Vec<JoinHandle<()>> = vec![std::thread::spawn(move || {
        let _ = log_thread.join();
    })];

    // Front cores. The first binds the listeners (resolving port 0), the others bind the
    // same addresses with SO_REUSEPORT.
    let cores = if config.cores == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        config.cores
    };
    let mut bound_clients = client_addrs.clone();
    let mut bound_metrics = metrics_addrs.clone();
    for core in 0..cores {
        let (bound_tx, bound_rx) =
            std::sync::mpsc::channel::<anyhow::Result<(Vec<SocketAddr>, Vec<SocketAddr>)>>();
        let front = FrontCore {
            shared: shared.clone(),
            client_addrs: bound_clients.clone(),
            metrics_addrs: bound_metrics.clone(),
        };
        let spawned = LocalExecutorBuilder::new(Placement::Unbound)
            .name(&format!("keel-front-{core}"))
            .spawn(move || front.run(bound_tx));
        let handle = match spawned {
            Ok(handle) => handle,
            Err(error) => {
                shared.stop();
                for thread in threads {
                    let _ = thread.join();
                }
                return Err(anyhow::anyhow!("starting front core {core}: {error}"));
            }
        };
        match bound_rx.recv() {
            Ok(Ok((clients, metrics))) => {
                bound_clients = clients;
                bound_metrics = metrics;
                threads.push(std::thread::spawn(move || {
                    let _ = handle.join();
                }));
            }
            Ok(Err(error)) => {
                shared.stop();
                let _ = handle.join();
                for thread in threads {
                    let _ = thread.join();
                }
                return Err(error);
            }
            Err(_) => {
                shared.stop();
                let _ = handle.join();
                for thread in threads {
                    let _ = thread.join();
                }
                bail!("front core {core} died while binding");
            }
        }
    }
    tracing::info!(
        name = %config.name,
        member_id = %format!("{:x}", identity.member_id),
        clients = ?bound_clients,
        "ready to serve client requests"
    );
    Ok(ServerHandle {
        shared,
        threads,
        client_addrs: bound_clients,
        metrics_addrs: bound_metrics,
        _data_dir: data_dir,
    })
}

struct FrontCore {
    shared: SharedRef,
    client_addrs: Vec<SocketAddr>,
    metrics_addrs: Vec<SocketAddr>,
}

type BoundAddrs = anyhow::Result<(Vec<SocketAddr>, Vec<SocketAddr>)>;

impl FrontCore {
    async fn run(self, bound: std::sync::mpsc::Sender<BoundAddrs>) {
        let mut listeners = Vec::new();
        let mut clients = Vec::new();
        let mut metrics = Vec::new();
        for (addr, is_client) in self
            .client_addrs
            .iter()
            .map(|a| (a, true))
            .chain(self.metrics_addrs.iter().map(|a| (a, false)))
        {
            match net::bind_reuseport(*addr) {
                Ok(listener) => {
                    let local = listener.local_addr().unwrap_or(*addr);
                    if is_client {
                        clients.push(local);
                    } else {
                        metrics.push(local);
                    }
                    listeners.push((listener, is_client));
                }
                Err(error) => {
                    let _ = bound.send(Err(anyhow::anyhow!("listening on {addr}: {error}")));
                    return;
                }
            }
        }
        let _ = bound.send(Ok((clients, metrics)));
        let http: Rc<dyn net::HttpHandler> = Rc::new(HttpEndpoints::new(self.shared.clone()));
        let options = ServeOptions::default();
        let mut tasks = Vec::new();
        for (listener, is_client) in listeners {
            let grpc = if is_client {
                routes(&self.shared)
            } else {
                Routes::default()
            };
            let shared = self.shared.clone();
            let shutdown = async move {
                loop {
                    let listener = shared.stop_event.listen();
                    if shared.stopping.load(Ordering::Acquire) {
                        return;
                    }
                    listener.await;
                }
            };
            let serving = net::serve(listener, grpc, http.clone(), options.clone(), shutdown);
            tasks.push(glommio::spawn_local(async move {
                if let Err(error) = serving.await {
                    tracing::error!(%error, "listener failed");
                }
            }));
        }
        for task in tasks {
            task.await;
        }
    }
}

/// Runs a member until SIGINT or SIGTERM, then shuts it down cleanly. For the binary.
pub fn run(config: &Config) -> anyhow::Result<()> {
    // Block the signals in this thread before any other thread starts, so every thread
    // inherits the mask and only `sigwait` below sees them.
    // SAFETY: sigset_t is plain data initialized by sigemptyset; the calls get valid pointers.
    let mask = unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut mask);
        libc::sigaddset(&mut mask, libc::SIGINT);
        libc::sigaddset(&mut mask, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &mask, std::ptr::null_mut());
        mask
    };
    let server = start(config)?;
    let mut signal: libc::c_int = 0;
    // SAFETY: `mask` is a valid signal set and `signal` a valid out-pointer.
    unsafe { libc::sigwait(&mask, &mut signal) };
    tracing::info!(signal, "received signal, shutting down");
    let stopping = std::thread::spawn(move || server.stop());
    // A shutdown that hangs ends the process after a deadline; the WAL makes that safe.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !stopping.is_finished() {
        if std::time::Instant::now() > deadline {
            tracing::warn!("shutdown took over 10 s; exiting");
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::info!("stopped");
    Ok(())
}
