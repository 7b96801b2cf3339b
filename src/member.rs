//! A member: the server core, the peer transport and the API, wired together and started.
//!
//! This module is where the layers meet, so that they need not know each other: the server
//! core ([`crate::server`]) knows nothing of gRPC, the API services ([`crate::api`]) use the
//! server core, and this module starts them both.
//!
//! Threads (see docs/architecture.md): one **raft core** thread runs a glommio executor that
//! owns the raft node and the WAL and applies every write ([`crate::server::log`],
//! [`crate::raft::node`]); one **peer** thread talks to the other members
//! ([`crate::raft::transport`]); `--cores` **front** threads each run a glommio executor with
//! one SO_REUSEPORT listener per client URL, serving the gRPC services
//! ([`crate::api::routes`]) and the HTTP endpoints ([`crate::http`]). Front cores read the
//! store directly and send writes and ReadIndex requests to the raft core over bounded
//! channels.
//!
//! [`start`] returns once every listener is bound and the store is recovered, so a caller
//! (a test, or the `keel` binary) can connect right away; [`ServerHandle::stop`] shuts the
//! member down and waits for every thread.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context as _};
use keel_engine::io::GlommioDisk;
use keel_engine::wal::WalOptions;
use keel_proto::etcdserverpb as pb;
use tonic::service::Routes;

use crate::api::gateway::Gateway;
use crate::api::routes::routes;
use crate::cluster;
use crate::config::{parse_urls, Config};
use crate::datadir::DataDir;
use crate::http::HttpEndpoints;
use crate::net::{self, ServeOptions};
use crate::raft::node::{self, Bootstrap, NodeConfig, RaftNode};
use crate::raft::raft_logger;
use crate::raft::transport::{self, PeerIdentity};
use crate::server::log::{Checkpointer, CoreChannels, RaftCore};
use crate::server::publish_attributes;
use crate::server::state::{Limits, MemberInfo, Shared, SharedConfig, SharedRef};
use crate::server::tokens::Tokens;

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

    /// Shuts down: stops accepting, lets in-flight requests finish, drains the raft core, and
    /// waits for every thread. The data dir lock is released when this returns.
    pub fn stop(mut self) {
        // A leader hands over first (as etcd does), so the others need not wait an election
        // timeout.
        if self.shared.hand_over_leadership() {
            tracing::info!(
                leader = %format!("{:x}", self.shared.leader_id.load(Ordering::Acquire)),
                "handed leadership over before stopping"
            );
        }
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

impl Identity {
    /// Reads the ids stored in the data dir, or stores `fallback` there on first start. A data
    /// dir keeps the ids it was created with, whatever the flags say later (as etcd's does).
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
                bail!(
                    "--{flag} {url}: https is not implemented yet for this listener; use http://"
                );
            }
            Ok(url.socket_addr()?)
        })
        .collect()
}

/// Removes the backend files of Snapshot streams a crash interrupted (a stream removes its
/// own when it ends).
fn remove_snapshot_leftovers(snap_dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(snap_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("backend-export-") && name.ends_with(".db.tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// True when the data dir holds a checkpoint (every member that ever started wrote one).
fn has_checkpoint(data_dir: &DataDir) -> bool {
    let name = keel_engine::checkpoint::file_name(0);
    let suffix = &name[name.rfind('.').unwrap_or(0)..];
    std::fs::read_dir(data_dir.snap_dir())
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(suffix)))
        })
        .unwrap_or(false)
}

/// The TLS configurations of the client listeners and of the peer listener, and how to
/// connect to peers.
type TlsConfigs = (
    Option<std::sync::Arc<rustls::ServerConfig>>,
    Option<std::sync::Arc<rustls::ServerConfig>>,
    net::ClientOptions,
);

/// The TLS configurations from the flags. `--auto-tls` and `--peer-auto-tls` certificates are
/// made here unless they exist (under `<data-dir>/fixtures`, so only once the data dir is open
/// and locked: a fresh data dir must be empty when it is opened).
fn tls_configs(config: &Config) -> anyhow::Result<TlsConfigs> {
    for (flag, self_signed) in [
        ("client", config.client_self_signed()?),
        ("peer", config.peer_self_signed()?),
    ] {
        if let Some(self_signed) = self_signed {
            self_signed
                .ensure()
                .with_context(|| format!("failed to get {flag} self-signed certs"))?;
        }
    }
    // https client URLs are served over TLS with --cert-file/--key-file (re-read when they
    // change); http ones stay plain, as etcd serves them.
    let client_tls = match config.client_tls()? {
        Some(files) => Some(net::server_config_from_files(&files)?),
        None => None,
    };
    // Peers: with --peer-cert-file (or --peer-auto-tls), TLS both ways on https peer URLs,
    // checked against --peer-trusted-ca-file; http peer URLs stay plaintext, as in etcd (the
    // transport decides per URL).
    let (peer_serve_tls, peer_client) = match config.peer_tls()? {
        Some(peer) => (
            Some(net::server_config_from_files(&peer.server)?),
            net::ClientOptions {
                tls: Some(net::client_config_from_files(
                    &peer.server,
                    peer.trusted_ca.as_deref(),
                )?),
                ..net::ClientOptions::default()
            },
        ),
        None => (None, net::ClientOptions::default()),
    };
    Ok((client_tls, peer_serve_tls, peer_client))
}

/// Starts a member with `config`. Returns when it serves clients.
pub fn start(config: &Config) -> anyhow::Result<ServerHandle> {
    config.validate()?;
    config.check_tls()?;
    for warning in config.tls_warnings() {
        tracing::warn!("{warning}");
    }
    let mut client_addrs = Vec::new();
    let mut client_https = Vec::new();
    for url in parse_urls("listen-client-urls", &config.listen_client_urls)? {
        client_addrs.push(url.socket_addr()?);
        client_https.push(url.scheme == "https");
    }
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
    // The cluster as `--initial-cluster` describes it (etcd's default: this member alone at
    // its advertised peer URLs), checked as etcd checks it before bootstrapping.
    let initial_cluster_text = match &config.initial_cluster {
        Some(text) => text.clone(),
        None => peer_urls
            .iter()
            .map(|url| format!("{}={url}", config.name))
            .collect::<Vec<_>>()
            .join(","),
    };
    let initial_cluster = cluster::parse_initial_cluster(&initial_cluster_text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", cluster::INITIAL_CLUSTER_ERROR_CONTEXT))?;
    cluster::validate_bootstrap(&config.name, &peer_urls, &initial_cluster)?;
    let (mut cluster_id, bootstrap_members) =
        cluster::bootstrap_members(&initial_cluster, &config.initial_cluster_token)?;
    let mut own_id = cluster::member_id(&peer_urls, &config.initial_cluster_token, None);

    let data_dir_path = config.data_dir();
    let data_dir = DataDir::open(&data_dir_path)
        .with_context(|| format!("opening data dir {}", data_dir_path.display()))?;
    let (client_tls, peer_serve_tls, peer_client) = tls_configs(config)?;
    let client_secure: Vec<_> = client_https
        .iter()
        .map(|&https| if https { client_tls.clone() } else { None })
        .collect();
    // A member joining a running cluster (`existing`) with a data dir that holds no state yet
    // learns the cluster from its peers (etcd's GetClusterFromRemotePeers): the ids are the
    // cluster's, its own the one MemberAdd gave its peer URLs. With state on disk the flags are
    // ignored, as etcd ignores them.
    let joining = config.initial_cluster_state == "existing" && !has_checkpoint(&data_dir);
    let mut remote_members = Vec::new();
    if joining {
        let joined = crate::join::fetch_cluster(
            &peer_client,
            &config.initial_cluster_token,
            &peer_urls,
            &initial_cluster,
        )?;
        cluster_id = joined.cluster_id;
        own_id = joined.member_id;
        remote_members = joined.members;
    }
    let wal_dir: PathBuf = match &config.wal_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating --wal-dir {}", dir.display()))?;
            dir.clone()
        }
        None => data_dir.wal_dir(),
    };
    let snap_dir = data_dir.snap_dir();
    remove_snapshot_leftovers(&snap_dir);
    let snap_dir_for_peers = snap_dir.clone();
    let identity = Identity::load_or_store(
        &data_dir.root().join("member").join("identity"),
        Identity {
            cluster_id,
            member_id: own_id,
        },
    )?;
    let members: Vec<pb::Member> = if joining {
        remote_members
    } else {
        bootstrap_members
            .iter()
            .map(|m| pb::Member {
                id: m.id,
                name: m.name.clone(),
                peer_ur_ls: m.peer_urls.clone(),
                client_ur_ls: if m.id == identity.member_id {
                    client_urls.clone()
                } else {
                    Vec::new()
                },
                is_learner: m.is_learner,
            })
            .collect()
    };
    // The peer port is always bound (a single member may be joined by others later), as etcd
    // binds it. The peers are the members the log names, told to the transport by the raft core.
    let peer_listen: Vec<transport::PeerEndpoint> =
        parse_urls("listen-peer-urls", &config.listen_peer_urls)?
            .iter()
            .map(transport::PeerEndpoint::of)
            .collect::<Result<_, _>>()?;

    // etcd's minimum lease TTL: 1.5 election timeouts, rounded up to whole seconds.
    let heartbeat_ms = config.heartbeat_interval.max(1);
    let election_ticks = (config.election_timeout / heartbeat_ms).max(2);
    let min_ttl_ms = (3 * election_ticks / 2) * heartbeat_ms;
    let limits = Limits {
        request_bytes_max: usize::try_from(config.max_request_bytes).unwrap_or(usize::MAX),
        txn_ops_max: config.max_txn_ops as usize,
        quota_bytes: config.quota_bytes(),
        lease_ttl_min_seconds: (min_ttl_ms as i64 + 999) / 1000,
        strict_reconfig_check: config.strict_reconfig_check,
        max_learners: config.experimental_max_learners,
    };
    let member = MemberInfo {
        name: config.name.clone(),
        peer_urls: peer_urls.clone(),
        client_urls: client_urls.clone(),
    };
    let progress_interval = config.watch_progress_notify_interval()?;
    let auto_compaction = config.auto_compaction()?;
    // etcd's request timeout: 5 s plus two election timeouts.
    let request_timeout_ms = 5000 + 2 * config.election_timeout;
    let node_config = NodeConfig {
        id: identity.member_id,
        election_ticks: election_ticks as usize,
        heartbeat_ticks: 1,
        request_timeout_ticks: request_timeout_ms / heartbeat_ms,
        snapshot_count: config.snapshot_count,
        catch_up_entries: config.experimental_snapshot_catchup_entries,
        trim_min_entries: crate::raft::log_store::TRIM_MIN_ENTRIES,
        election_ticks_range: None,
        max_learners: config.experimental_max_learners,
    };
    let bootstrap = Bootstrap {
        member_id: identity.member_id,
        members,
        joining,
    };
    let auto_promote = config.auto_promote_learners;
    // Auth tokens: JWT key files are read now, so a bad one stops the member at startup.
    let tokens = Tokens::from_spec(
        &config.token_spec()?,
        Duration::from_secs(config.auth_token_ttl.max(1)),
    )
    .map_err(|e| anyhow::anyhow!("--auth-token: {e}"))?;
    let bcrypt_cost = if (4..=31).contains(&config.bcrypt_cost) {
        config.bcrypt_cost
    } else {
        // etcd warns and uses the default for a cost bcrypt cannot use.
        tracing::warn!(
            bcrypt_cost = config.bcrypt_cost,
            "--bcrypt-cost out of range [4, 31]; using the default 10"
        );
        bcrypt::DEFAULT_COST
    };
    let tick_interval = Duration::from_millis(heartbeat_ms);

    // The raft core: recover, publish the shared state, start the peer transport on the same
    // executor, run the loop.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<SharedRef>>();
    let peer_identity = PeerIdentity {
        client: peer_client.clone(),
        serve_tls: peer_serve_tls,
        check_peer_address: !config.experimental_peer_skip_client_san_verification,
        cluster_id: identity.cluster_id,
        member_id: identity.member_id,
        cluster_token: config.initial_cluster_token.clone(),
        name: config.name.clone(),
        peer_urls: peer_urls.clone(),
        client_urls: client_urls.clone(),
    };
    let raft_core = crate::executor::Options {
        time_slice: Some(crate::server::log::RAFT_CORE_PREEMPT),
        watchdog: crate::server::log::RAFT_CORE_WATCHDOG,
    };
    let log_thread = crate::executor::spawn("keel-raft", raft_core, move || async move {
        let fail = |error: anyhow::Error| {
            let _ = ready_tx.send(Err(error));
        };
        let snap = match open_disk(&snap_dir, "checkpoint").await {
            Ok(disk) => disk,
            Err(error) => return fail(error),
        };
        // The WAL's batches are O_DSYNC writes on a thread of their own (not on this one):
        // the raft core goes on ticking, stepping messages and applying meanwhile. A
        // cluster's only member makes them here instead (`RaftCore::set_inline_writes`).
        let wal_disk = match open_disk(&wal_dir, "WAL").await.and_then(|disk| {
            disk.with_write_thread("keel-wal-write")
                .map_err(|e| anyhow::anyhow!("starting the WAL's write thread: {e}"))
        }) {
            Ok(disk) => disk,
            Err(error) => return fail(error),
        };
        let inline_writes = wal_disk.inline_writes();
        let mut recovered =
            match node::recover(wal_disk, snap, WalOptions::default(), &bootstrap).await {
                Ok(recovered) => recovered,
                Err(error) => return fail(error.into()),
            };
        tracing::info!(
            checkpoint_index = recovered.checkpoint_index,
            replayed = recovered.replayed,
            applied_index = recovered.applied_index,
            revision = recovered.store.current_revision(),
            "recovered"
        );
        let store = std::mem::take(&mut recovered.store);
        let meta = recovered.meta.clone();
        let (shared, inputs) = Shared::new(
            SharedConfig {
                cluster_id: identity.cluster_id,
                member_id: identity.member_id,
                member,
                limits,
                watch_progress_interval: progress_interval,
                id_seed: None,
                tokens,
                bcrypt_cost,
                scratch_dir: snap_dir.clone(),
            },
            store,
            &meta,
            recovered.applied_index,
        );
        let (node, writer) =
            match RaftNode::new(node_config, recovered, shared.clone(), &raft_logger()) {
                Ok(started) => started,
                Err(error) => return fail(error.into()),
            };
        let checkpointer = match Checkpointer::start(shared.clone(), snap_dir.clone()) {
            Ok(checkpointer) => checkpointer,
            Err(error) => return fail(error),
        };
        let peers = match transport::start(
            peer_identity,
            peer_listen,
            shared.clone(),
            inputs.lease_forwards,
            inputs.promote_forwards,
            snap_dir_for_peers,
        ) {
            Ok(peers) => peers,
            Err(error) => return fail(error),
        };
        let mut core = RaftCore::new(
            node,
            writer,
            shared.clone(),
            CoreChannels {
                proposals: inputs.proposals,
                reads: inputs.reads,
                peers: peers.inbox,
                transfers: inputs.transfers,
            },
            peers.senders,
            tick_interval,
            auto_compaction,
            checkpointer,
        );
        core.set_auto_promote(auto_promote);
        core.set_inline_writes(inline_writes);
        core.prime().await;
        let _ = ready_tx.send(Ok(shared.clone()));
        glommio::spawn_local(publish_attributes(shared.clone())).detach();
        core.run().await;
        shared.stop();
        peers.done.await;
    })
    .map_err(|e| anyhow::anyhow!("starting the raft core thread: {e}"))?;
    let shared = match ready_rx.recv() {
        Ok(Ok(shared)) => shared,
        Ok(Err(error)) => {
            let _ = log_thread.join();
            return Err(error.context("recovering the store"));
        }
        Err(_) => {
            let _ = log_thread.join();
            bail!("the raft core thread died during recovery");
        }
    };
    // A panic in the raft core leaves a store that may be half-applied and a member that can
    // no longer commit: the whole process stops at once rather than serve stale reads while
    // `/health` says true (etcd does the same; a supervisor restarts the member).
    let mut threads: Vec<JoinHandle<()>> = vec![std::thread::spawn(move || {
        if log_thread.join().is_err() {
            eprintln!("keel: the raft core panicked; stopping the member (restart it to recover)");
            std::process::exit(70);
        }
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
            client_tls: client_secure.clone(),
            client_certificate_identity: config.client_certificate_identity(),
            grpc_gateway: config.enable_grpc_gateway,
            metrics_addrs: bound_metrics.clone(),
        };
        let spawned = crate::executor::spawn(
            &format!("keel-front-{core}"),
            crate::executor::Options::default(),
            move || front.run(bound_tx),
        );
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

/// Opens the `what` directory `dir` for glommio I/O, naming it in the error.
async fn open_disk(dir: &std::path::Path, what: &str) -> anyhow::Result<GlommioDisk> {
    GlommioDisk::open(dir)
        .await
        .map_err(|e| anyhow::anyhow!("opening {what} directory {}: {e}", dir.display()))
}

struct FrontCore {
    shared: SharedRef,
    client_addrs: Vec<SocketAddr>,
    /// The TLS configuration of each client address (`None`: plain).
    client_tls: Vec<Option<std::sync::Arc<rustls::ServerConfig>>>,
    /// Whether a verified client certificate's common name names the user (etcd's
    /// `--client-cert-auth`).
    client_certificate_identity: bool,
    /// Whether the client port serves etcd's JSON gateway (`--enable-grpc-gateway`).
    grpc_gateway: bool,
    metrics_addrs: Vec<SocketAddr>,
}

type BoundAddrs = anyhow::Result<(Vec<SocketAddr>, Vec<SocketAddr>)>;

impl FrontCore {
    async fn run(self, bound: std::sync::mpsc::Sender<BoundAddrs>) {
        let mut listeners = Vec::new();
        let mut clients = Vec::new();
        let mut metrics = Vec::new();
        let client_tls = self.client_tls.iter().cloned();
        for ((addr, is_client), tls) in self
            .client_addrs
            .iter()
            .map(|a| (a, true))
            .chain(self.metrics_addrs.iter().map(|a| (a, false)))
            .zip(client_tls.chain(std::iter::repeat(None)))
        {
            match net::bind_reuseport(*addr) {
                Ok(listener) => {
                    let local = listener.local_addr().unwrap_or(*addr);
                    if is_client {
                        clients.push(local);
                    } else {
                        metrics.push(local);
                    }
                    listeners.push((listener, is_client, tls));
                }
                Err(error) => {
                    let _ = bound.send(Err(anyhow::anyhow!("listening on {addr}: {error}")));
                    return;
                }
            }
        }
        let _ = bound.send(Ok((clients, metrics)));
        let http: Rc<dyn net::HttpHandler> = Rc::new(HttpEndpoints::new(self.shared.clone()));
        let mut tasks = Vec::new();
        for (listener, is_client, tls) in listeners {
            // The metrics listener stays plain http while the client port is https, as in etcd.
            let options = ServeOptions {
                tls,
                tls_client_identity: self.client_certificate_identity,
                ..ServeOptions::default()
            };
            let grpc = if is_client {
                routes(&self.shared)
            } else {
                Routes::default()
            };
            let shared = self.shared.clone();
            let shutdown = async move { shared.stopped().await };
            // The client port also serves etcd's JSON gateway over the same services; the
            // metrics port serves only the plain endpoints, as in etcd.
            let handler: Rc<dyn net::HttpHandler> = if is_client && self.grpc_gateway {
                Rc::new(Gateway::new(grpc.clone(), http.clone()))
            } else {
                http.clone()
            };
            let serving = net::serve(listener, grpc, handler, options, shutdown);
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
    // A member that stops on its own (removed from the cluster) ends the wait below as a
    // signal would.
    let watched = server.shared.clone();
    std::thread::spawn(move || {
        futures::executor::block_on(watched.stopped());
        // SAFETY: signalling this process; SIGTERM is blocked in every thread, so only the
        // sigwait below receives it.
        unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    });
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
