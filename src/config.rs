//! Server configuration: etcd's flag names and `ETCD_*` environment variables.
//!
//! Every flag takes its value from the command line first, then from the environment
//! variable etcd uses for it (`--data-dir` ↔ `ETCD_DATA_DIR`), then the etcd default. Flags
//! that Keel accepts for compatibility but whose feature is not built yet are listed in the
//! README; they are parsed and validated, never silently misread.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// etcd's default for `--max-request-bytes`: 1.5 MiB.
pub const REQUEST_BYTES_MAX_DEFAULT: u64 = 1_572_864;
/// etcd's default for `--quota-backend-bytes`: 2 GiB.
pub const QUOTA_BACKEND_BYTES_DEFAULT: u64 = 2 * 1024 * 1024 * 1024;
/// etcd's largest recommended `--quota-backend-bytes`: 8 GiB (above it etcd warns).
pub const QUOTA_BACKEND_BYTES_WARN: u64 = 8 * 1024 * 1024 * 1024;

/// The `keel` server's command line, identical in names and defaults to etcd's.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "keel",
    version,
    about = "Keel: an etcd-compatible key-value store (etcd v3 API, thread-per-core engine).",
    long_about = "Keel serves etcd's v3 gRPC API. It takes etcd's flags and ETCD_* environment \
variables. With no flags it starts a single member named 'default' with its data in \
./default.keel, serving clients on http://127.0.0.1:2379."
)]
pub struct Config {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,

    /// Path to the data directory (default: ./<name>.keel).
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Path to a dedicated WAL directory (default: <data-dir>/member/wal).
    #[arg(long, env = "ETCD_WAL_DIR")]
    pub wal_dir: Option<PathBuf>,

    /// Comma-separated URLs to listen on for client traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub listen_client_urls: String,

    /// Comma-separated client URLs of this member to advertise to the cluster.
    #[arg(
        long,
        env = "ETCD_ADVERTISE_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub advertise_client_urls: String,

    /// Comma-separated URLs to listen on for peer traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub listen_peer_urls: String,

    /// Comma-separated peer URLs of this member to advertise to the cluster.
    #[arg(
        long,
        env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub initial_advertise_peer_urls: String,

    /// Initial cluster configuration for bootstrapping (name=peer-url,...).
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,

    /// Initial cluster state: 'new' or 'existing'.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new",
          value_parser = ["new", "existing"])]
    pub initial_cluster_state: String,

    /// Initial cluster token for the cluster during bootstrap.
    #[arg(
        long,
        env = "ETCD_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,

    /// Comma-separated additional URLs to serve /metrics and /health on.
    #[arg(long, env = "ETCD_LISTEN_METRICS_URLS")]
    pub listen_metrics_urls: Option<String>,

    /// Raise an alarm and refuse writes when the store exceeds this many bytes (0 = default).
    #[arg(long, env = "ETCD_QUOTA_BACKEND_BYTES", default_value_t = 0)]
    pub quota_backend_bytes: u64,

    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = REQUEST_BYTES_MAX_DEFAULT)]
    pub max_request_bytes: u64,

    /// Maximum number of operations permitted in a transaction.
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: u32,

    /// Interpret --auto-compaction-retention as 'periodic' (a duration) or 'revision'.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_MODE", default_value = "periodic",
          value_parser = ["periodic", "revision"])]
    pub auto_compaction_mode: String,

    /// Auto compaction retention: hours or a duration (1h, 30m) for 'periodic', a count of
    /// revisions for 'revision'. 0 disables auto compaction.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_RETENTION", default_value = "0")]
    pub auto_compaction_retention: String,

    /// Number of committed entries between checkpoints of the store (etcd's snapshot count).
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 10_000)]
    pub snapshot_count: u64,

    /// Number of entries kept in the raft log behind a checkpoint, so that a slow follower
    /// catches up from the log; one further behind is sent the checkpoint instead.
    #[arg(
        long,
        env = "ETCD_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES",
        default_value_t = 5_000
    )]
    pub experimental_snapshot_catchup_entries: u64,

    /// Path to the client server TLS cert file (for https client URLs).
    #[arg(long, env = "ETCD_CERT_FILE")]
    pub cert_file: Option<PathBuf>,

    /// Path to the client server TLS key file.
    #[arg(long, env = "ETCD_KEY_FILE")]
    pub key_file: Option<PathBuf>,

    /// Enable client cert authentication (clients must present a certificate signed by
    /// --trusted-ca-file).
    #[arg(long, env = "ETCD_CLIENT_CERT_AUTH", default_value_t = false,
          action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub client_cert_auth: bool,

    /// Path to the client server TLS trusted CA cert file.
    #[arg(long, env = "ETCD_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<PathBuf>,

    /// Minimum TLS version supported by the server: TLS1.2 or TLS1.3.
    #[arg(long, env = "ETCD_TLS_MIN_VERSION", default_value = "TLS1.2")]
    pub tls_min_version: String,

    /// Maximum TLS version supported by the server: TLS1.2 or TLS1.3 (empty: the newest).
    #[arg(long, env = "ETCD_TLS_MAX_VERSION", default_value = "")]
    pub tls_max_version: String,

    /// Path to the client certificate revocation list file.
    #[arg(long, env = "ETCD_CLIENT_CRL_FILE")]
    pub client_crl_file: Option<PathBuf>,

    /// Comma-separated list of allowed SAN hostnames for client cert authentication.
    #[arg(long, env = "ETCD_CLIENT_CERT_ALLOWED_HOSTNAME")]
    pub client_cert_allowed_hostname: Option<String>,

    /// Client TLS using generated certificates.
    #[arg(long, env = "ETCD_AUTO_TLS", default_value_t = false,
          action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub auto_tls: bool,

    /// Comma-separated list of supported TLS cipher suites between client/server and peers
    /// (empty will be auto-populated by the TLS library).
    #[arg(long, env = "ETCD_CIPHER_SUITES")]
    pub cipher_suites: Option<String>,

    /// Comma-separated list of allowed CNs for inter-peer TLS authentication.
    #[arg(long, env = "ETCD_PEER_CERT_ALLOWED_CN")]
    pub peer_cert_allowed_cn: Option<String>,

    /// Comma-separated list of allowed SAN hostnames for inter-peer TLS authentication.
    #[arg(long, env = "ETCD_PEER_CERT_ALLOWED_HOSTNAME")]
    pub peer_cert_allowed_hostname: Option<String>,

    /// Path to the peer certificate revocation list file.
    #[arg(long, env = "ETCD_PEER_CRL_FILE")]
    pub peer_crl_file: Option<PathBuf>,

    /// Peer TLS using self-generated certificates if --peer-key-file and --peer-cert-file are
    /// not provided.
    #[arg(long, env = "ETCD_PEER_AUTO_TLS", default_value_t = false,
          action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub peer_auto_tls: bool,

    /// The validity period of the client and peer certificates that are automatically
    /// generated by etcd when you specify ClientAutoTLS and PeerAutoTLS, the unit is year, and
    /// the default is 1.
    #[arg(long, env = "ETCD_SELF_SIGNED_CERT_VALIDITY", default_value_t = 1)]
    pub self_signed_cert_validity: u32,

    /// Path to the peer server TLS cert file (for https peer URLs); also presented to the
    /// peers this member connects to.
    #[arg(long, env = "ETCD_PEER_CERT_FILE")]
    pub peer_cert_file: Option<PathBuf>,

    /// Path to the peer server TLS key file.
    #[arg(long, env = "ETCD_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,

    /// Path to the peer server TLS trusted CA file: peers' certificates must be signed by it.
    #[arg(long, env = "ETCD_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,

    /// Enable peer client cert authentication (peers connecting here must present a
    /// certificate signed by --peer-trusted-ca-file).
    #[arg(long, env = "ETCD_PEER_CLIENT_CERT_AUTH", default_value_t = false,
          action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub peer_client_cert_auth: bool,

    /// Skip verification of SAN field in client certificate for peer connections.
    #[arg(long, env = "ETCD_EXPERIMENTAL_PEER_SKIP_CLIENT_SAN_VERIFICATION",
          default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true")]
    pub experimental_peer_skip_client_san_verification: bool,

    /// Auth token type and options: 'simple', or 'jwt,pub-key=<file>,priv-key=<file>,
    /// sign-method=<RS256|ES256|EdDSA|...>,ttl=<duration>'.
    #[arg(long, env = "ETCD_AUTH_TOKEN", default_value = "simple")]
    pub auth_token: String,

    /// Time (in seconds) a simple auth token lives after its last use.
    #[arg(long, env = "ETCD_AUTH_TOKEN_TTL", default_value_t = crate::server::tokens::SIMPLE_TOKEN_TTL_DEFAULT)]
    pub auth_token_ttl: u64,

    /// Cost of the bcrypt hashes of user passwords (4 to 31; out of range: 10).
    #[arg(long, env = "ETCD_BCRYPT_COST", default_value_t = 10)]
    pub bcrypt_cost: u32,

    /// Serve etcd's JSON gateway (`POST /v3/...` with JSON bodies) on the client port.
    #[arg(long, env = "ETCD_ENABLE_GRPC_GATEWAY", default_value_t = true,
          action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_grpc_gateway: bool,

    /// Reject reconfiguration requests that would cause quorum loss (too few started or
    /// connected voters afterwards).
    #[arg(long, env = "ETCD_STRICT_RECONFIG_CHECK", default_value_t = true,
          action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub strict_reconfig_check: bool,

    /// Maximum number of learners the cluster may hold at once (etcd 3.5 fixes it at 1;
    /// 3.6 names the flag --max-learners).
    #[arg(long, env = "ETCD_EXPERIMENTAL_MAX_LEARNERS", default_value_t = 1)]
    pub experimental_max_learners: usize,

    /// Keel only: the leader promotes a learner to a voter on its own once the learner's log
    /// holds 90% of the leader's (the check MemberPromote makes). Off by default, as in etcd.
    #[arg(long, env = "KEEL_AUTO_PROMOTE_LEARNERS", default_value_t = false,
          action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub auto_promote_learners: bool,

    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,

    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,

    /// Log level: debug, info, warn, error, panic or fatal.
    #[arg(long, env = "ETCD_LOG_LEVEL", default_value = "info",
          value_parser = ["debug", "info", "warn", "error", "panic", "fatal"])]
    pub log_level: String,

    /// Number of executor threads (cores) to run on; 0 means one per available core.
    #[arg(long, env = "KEEL_CORES", default_value_t = 0)]
    pub cores: usize,

    /// Interval of the progress notifications etcd sends to idle watchers that asked for
    /// them (`progress_notify`), e.g. `10m`, `500ms`.
    #[arg(
        long,
        env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL",
        default_value = "10m"
    )]
    pub experimental_watch_progress_notify_interval: String,
}

/// A configuration that parsed but does not make sense.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A URL flag held something that is not an `http://host:port` URL.
    #[error("invalid URL {url:?} in --{flag}: {reason}")]
    BadUrl {
        /// The flag name.
        flag: &'static str,
        /// The offending value.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// Any other bad value.
    #[error("{0}")]
    Invalid(String),
}

/// The certificate and key of the `kind` ("client" or "peer") listeners: both given, or
/// neither (then an https URL of that kind is refused with etcd's message).
fn cert_and_key(
    kind: &str,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    https: Option<Url>,
) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
    let prefix = if kind == "peer" { "peer-" } else { "" };
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some((cert.clone(), key.clone()))),
        (None, None) => match https {
            Some(url) => Err(ConfigError::Invalid(format!(
                "TLS key/cert (--{prefix}cert-file, --{prefix}key-file) must be provided for \
                 {kind} url {url} with HTTPS scheme"
            ))),
            None => Ok(None),
        },
        _ => Err(ConfigError::Invalid(format!(
            "--{prefix}cert-file and --{prefix}key-file must be given together"
        ))),
    }
}

/// Peer TLS from the flags.
#[derive(Clone, Debug)]
pub struct PeerTls {
    /// What the peer listener serves with and requires of the peers that connect: a
    /// certificate signed by `--peer-trusted-ca-file` (etcd asks for one whenever that file is
    /// given, with or without `--peer-client-cert-auth`), not revoked by `--peer-crl-file`,
    /// naming an allowed CN or hostname. Also the certificate this member presents.
    pub server: crate::net::TlsFiles,
    /// `--peer-trusted-ca-file`: the CA the certificates of the peers this member connects to
    /// are checked against. `None` with `--peer-auto-tls`: etcd verifies no peer certificate
    /// then, as every member's is self-signed.
    pub trusted_ca: Option<PathBuf>,
}

/// How auto compaction is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Off.
    Disabled,
    /// Keep this much history by time.
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(i64),
}

/// A URL this server listens on or advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `http` or `https`.
    pub scheme: String,
    /// Host as written (`localhost`, `127.0.0.1`, `[::1]`).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

impl Url {
    /// Parses `scheme://host:port` as etcd accepts it on its URL flags.
    pub fn parse(flag: &'static str, text: &str) -> Result<Url, ConfigError> {
        let bad = |reason: &str| ConfigError::BadUrl {
            flag,
            url: text.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| bad("missing scheme"))?;
        if scheme != "http" && scheme != "https" && scheme != "unix" && scheme != "unixs" {
            return Err(bad("scheme must be http or https"));
        }
        if scheme.starts_with("unix") {
            return Err(bad("unix sockets are not supported by keel"));
        }
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(bad("URL must not have a path"));
        }
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("missing port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| bad("port is not a number 0-65535"))?;
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        Ok(Url {
            scheme: scheme.to_string(),
            host: host.to_string(),
            port,
        })
    }

    /// The socket addresses to bind for this URL. `localhost` means the IPv4 loopback only,
    /// as Keel binds explicit addresses rather than resolving names at start-up.
    pub fn socket_addr(&self) -> Result<SocketAddr, ConfigError> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let ip: std::net::IpAddr = match host {
            "localhost" => std::net::Ipv4Addr::LOCALHOST.into(),
            other => other.parse().map_err(|_| ConfigError::BadUrl {
                flag: "listen-*-urls",
                url: self.to_string(),
                reason: "host must be an IP address or localhost".to_string(),
            })?,
        };
        Ok(SocketAddr::new(ip, self.port))
    }
}

/// Splits a comma-separated URL flag.
pub fn parse_urls(flag: &'static str, text: &str) -> Result<Vec<Url>, ConfigError> {
    let urls: Vec<Url> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| Url::parse(flag, s))
        .collect::<Result<_, _>>()?;
    if urls.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "--{flag} must name at least one URL"
        )));
    }
    Ok(urls)
}

/// Parses a Go-style duration (`1h`, `30m`, `90s`, `1h30m`, `500ms`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::from_secs_f64(number * seconds_per_unit);
    }
    Some(total)
}

impl Config {
    /// The data directory, defaulting to `./<name>.keel` as etcd defaults to `<name>.etcd`.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.keel", self.name)))
    }

    /// `--experimental-watch-progress-notify-interval` as a duration (at least 1 ms).
    pub fn watch_progress_notify_interval(&self) -> Result<Duration, ConfigError> {
        let text = self.experimental_watch_progress_notify_interval.trim();
        match parse_duration(text) {
            Some(interval) if interval >= Duration::from_millis(1) => Ok(interval),
            _ => Err(ConfigError::Invalid(format!(
                "invalid --experimental-watch-progress-notify-interval {text:?}: want a \
                 duration such as 10m or 500ms"
            ))),
        }
    }

    /// The quota in bytes, with etcd's default for 0.
    pub fn quota_bytes(&self) -> u64 {
        if self.quota_backend_bytes == 0 {
            QUOTA_BACKEND_BYTES_DEFAULT
        } else {
            self.quota_backend_bytes
        }
    }

    /// The auto compaction setting, validated.
    pub fn auto_compaction(&self) -> Result<AutoCompaction, ConfigError> {
        let retention = self.auto_compaction_retention.trim();
        let invalid = || {
            ConfigError::Invalid(format!(
                "invalid --auto-compaction-retention {retention:?} for mode {:?}",
                self.auto_compaction_mode
            ))
        };
        if self.auto_compaction_mode == "revision" {
            let revisions: i64 = retention.parse().map_err(|_| invalid())?;
            return match revisions {
                0 => Ok(AutoCompaction::Disabled),
                n if n > 0 => Ok(AutoCompaction::Revision(n)),
                _ => Err(invalid()),
            };
        }
        // etcd reads a bare number as hours in periodic mode.
        let period = match retention.parse::<u64>() {
            Ok(hours) => Duration::from_secs(hours * 3600),
            Err(_) => parse_duration(retention).ok_or_else(invalid)?,
        };
        if period.is_zero() {
            Ok(AutoCompaction::Disabled)
        } else {
            Ok(AutoCompaction::Periodic(period))
        }
    }

    /// Checks the values that clap cannot check on its own.
    pub fn validate(&self) -> Result<(), ConfigError> {
        parse_urls("listen-client-urls", &self.listen_client_urls)?;
        parse_urls("advertise-client-urls", &self.advertise_client_urls)?;
        parse_urls("listen-peer-urls", &self.listen_peer_urls)?;
        parse_urls(
            "initial-advertise-peer-urls",
            &self.initial_advertise_peer_urls,
        )?;
        if let Some(urls) = &self.listen_metrics_urls {
            parse_urls("listen-metrics-urls", urls)?;
        }
        self.auto_compaction()?;
        self.watch_progress_notify_interval()?;
        if self.heartbeat_interval == 0 {
            return Err(ConfigError::Invalid(
                "--heartbeat-interval must be > 0".into(),
            ));
        }
        if self.election_timeout < 5 * self.heartbeat_interval {
            return Err(ConfigError::Invalid(format!(
                "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]",
                self.election_timeout, self.heartbeat_interval
            )));
        }
        if self.max_txn_ops == 0 {
            return Err(ConfigError::Invalid("--max-txn-ops must be > 0".into()));
        }
        if self.max_request_bytes == 0 {
            return Err(ConfigError::Invalid(
                "--max-request-bytes must be > 0".into(),
            ));
        }
        if self.snapshot_count == 0 {
            return Err(ConfigError::Invalid("--snapshot-count must be > 0".into()));
        }
        self.token_spec()?;
        Ok(())
    }

    /// `--auth-token`, parsed (its key files are read at startup).
    pub fn token_spec(&self) -> Result<crate::server::tokens::TokenSpec, ConfigError> {
        crate::server::tokens::parse_token_spec(&self.auth_token)
            .map_err(|e| ConfigError::Invalid(format!("--auth-token: {e}")))
    }

    /// The TLS settings every TLS listener and peer connection shares, checked as etcd checks
    /// them at startup (an error exits with status 1, as etcd's do): `--tls-min-version`,
    /// `--tls-max-version` and `--cipher-suites` even when no TLS is configured, then the
    /// client and peer TLS flags.
    pub fn check_tls(&self) -> Result<(), ConfigError> {
        self.tls_versions()?;
        self.cipher_suite_list()?;
        self.client_tls()?;
        self.peer_tls()?;
        Ok(())
    }

    /// The TLS files for https peer URLs (`--peer-cert-file`, `--peer-key-file`,
    /// `--peer-trusted-ca-file`, `--peer-crl-file`, the allowed CNs or hostnames), or the
    /// self-signed pair of `--peer-auto-tls`; `None` when no peer certificate is configured.
    /// Refuses an https peer URL without one.
    pub fn peer_tls(&self) -> Result<Option<PeerTls>, ConfigError> {
        let https = parse_urls("listen-peer-urls", &self.listen_peer_urls)?
            .into_iter()
            .chain(parse_urls(
                "initial-advertise-peer-urls",
                &self.initial_advertise_peer_urls,
            )?)
            .find(|u| u.scheme == "https");
        if let Some(auto) = self.peer_self_signed()? {
            // etcd makes the pair even for http peer URLs, and then talks plaintext.
            if https.is_none() {
                return Ok(None);
            }
            // etcd replaces every peer TLS setting with the generated pair (its SelfCert
            // returns a fresh TLSInfo): no CA, no CRL, no allowed names, nothing verified.
            return Ok(Some(PeerTls {
                server: self.tls_files(auto.cert(), auto.key())?,
                trusted_ca: None,
            }));
        }
        let Some((cert, key)) =
            cert_and_key("peer", &self.peer_cert_file, &self.peer_key_file, https)?
        else {
            return Ok(None);
        };
        let Some(trusted_ca) = self.peer_trusted_ca_file.clone() else {
            return Err(ConfigError::Invalid(
                "peer TLS needs --peer-trusted-ca-file (the CA the peers' certificates are \
                 signed by)"
                    .into(),
            ));
        };
        let mut server = self.tls_files(cert, key)?;
        server.client_ca = Some(trusted_ca.clone());
        server.crl = self.peer_crl_file.clone();
        server.allowed = crate::net::AllowedIdentities::from_flags(
            self.peer_cert_allowed_cn.as_deref(),
            self.peer_cert_allowed_hostname.as_deref(),
        )
        .map_err(ConfigError::Invalid)?;
        Ok(Some(PeerTls {
            server,
            trusted_ca: Some(trusted_ca),
        }))
    }

    /// A certificate and key with the shared versions and cipher suites, nothing else yet.
    fn tls_files(&self, cert: PathBuf, key: PathBuf) -> Result<crate::net::TlsFiles, ConfigError> {
        let (min_version, max_version) = self.tls_versions()?;
        let mut files = crate::net::TlsFiles::new(cert, key);
        files.min_version = min_version;
        files.max_version = max_version;
        files.cipher_suites = self.cipher_suite_list()?;
        Ok(files)
    }

    /// `--tls-min-version` and `--tls-max-version` (empty: TLS 1.3), checked as etcd checks
    /// them.
    fn tls_versions(
        &self,
    ) -> Result<(crate::net::TlsVersion, crate::net::TlsVersion), ConfigError> {
        let version =
            |text: &str| crate::net::TlsVersion::parse(text).map_err(ConfigError::Invalid);
        let min_version = version(&self.tls_min_version)?;
        let max_version = if self.tls_max_version.is_empty() {
            crate::net::TlsVersion::Tls13
        } else {
            version(&self.tls_max_version)?
        };
        if !self.tls_max_version.is_empty() && min_version > max_version {
            return Err(ConfigError::Invalid(format!(
                "min version ({}) is greater than max version ({})",
                self.tls_min_version, self.tls_max_version
            )));
        }
        Ok((min_version, max_version))
    }

    /// `--cipher-suites`, parsed; refused with TLS 1.3 as the minimum, as etcd refuses it (Go
    /// cannot choose TLS 1.3 suites).
    fn cipher_suite_list(&self) -> Result<Vec<rustls::CipherSuite>, ConfigError> {
        let suites = crate::net::parse_cipher_suites(self.cipher_suites.as_deref().unwrap_or(""))
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if !suites.is_empty() && self.tls_min_version == "TLS1.3" {
            return Err(ConfigError::Invalid(
                "cipher suites cannot be configured when only TLS1.3 is enabled".into(),
            ));
        }
        Ok(suites)
    }

    /// The self-signed certificate `--auto-tls` asks for, unless `--cert-file` or `--key-file`
    /// is given (then etcd ignores `--auto-tls`, with a warning).
    pub fn client_self_signed(&self) -> Result<Option<crate::net::SelfSignedCert>, ConfigError> {
        if !self.auto_tls || self.cert_file.is_some() || self.key_file.is_some() {
            return Ok(None);
        }
        Ok(Some(crate::net::SelfSignedCert {
            dir: self.data_dir().join("fixtures").join("client"),
            hosts: listen_hosts("listen-client-urls", &self.listen_client_urls)?,
            validity_years: self.self_signed_cert_validity,
        }))
    }

    /// The self-signed certificate `--peer-auto-tls` asks for, unless `--peer-cert-file` or
    /// `--peer-key-file` is given.
    pub fn peer_self_signed(&self) -> Result<Option<crate::net::SelfSignedCert>, ConfigError> {
        if !self.peer_auto_tls || self.peer_cert_file.is_some() || self.peer_key_file.is_some() {
            return Ok(None);
        }
        Ok(Some(crate::net::SelfSignedCert {
            dir: self.data_dir().join("fixtures").join("peer"),
            hosts: listen_hosts("listen-peer-urls", &self.listen_peer_urls)?,
            validity_years: self.self_signed_cert_validity,
        }))
    }

    /// The TLS files for https client URLs (`--cert-file`, `--key-file`, `--trusted-ca-file`,
    /// `--client-crl-file`, `--client-cert-allowed-hostname`), or the self-signed pair of
    /// `--auto-tls`; `None` when no certificate is configured. Refuses an https client URL
    /// without a certificate with etcd's message (checked at startup, not with the flags: etcd
    /// exits 1 for it, not 2).
    pub fn client_tls(&self) -> Result<Option<crate::net::TlsFiles>, ConfigError> {
        let https = parse_urls("listen-client-urls", &self.listen_client_urls)?
            .into_iter()
            .find(|u| u.scheme == "https");
        if let Some(auto) = self.client_self_signed()? {
            // etcd replaces every client TLS setting with the generated pair: no client
            // certificates are asked for (see `tls_warnings`).
            return Ok(Some(self.tls_files(auto.cert(), auto.key())?));
        }
        let Some((cert, key)) = cert_and_key("client", &self.cert_file, &self.key_file, https)?
        else {
            return Ok(None);
        };
        // etcd asks clients for a certificate whenever --trusted-ca-file is given, with or
        // without --client-cert-auth (which then only decides whether the certificate's
        // common name is the user).
        let client_ca = match (self.client_cert_auth, &self.trusted_ca_file) {
            (_, Some(ca)) => Some(ca.clone()),
            (true, None) => {
                return Err(ConfigError::Invalid(
                    "--client-cert-auth needs --trusted-ca-file (the CA client certificates \
                     must be signed by)"
                        .into(),
                ))
            }
            (false, None) => None,
        };
        let mut files = self.tls_files(cert, key)?;
        files.client_ca = client_ca;
        files.crl = self.client_crl_file.clone();
        files.allowed = crate::net::AllowedIdentities::from_flags(
            None,
            self.client_cert_allowed_hostname.as_deref(),
        )
        .map_err(ConfigError::Invalid)?;
        Ok(Some(files))
    }

    /// Whether the common name of a verified client certificate names the user: with
    /// `--client-cert-auth`, unless `--auto-tls` replaced the client TLS settings.
    pub fn client_certificate_identity(&self) -> bool {
        self.client_cert_auth && !matches!(self.client_self_signed(), Ok(Some(_)))
    }

    /// etcd's startup warnings about TLS flags that have no effect, and Keel's where etcd
    /// drops a setting without one.
    pub fn tls_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let client_auto = matches!(self.client_self_signed(), Ok(Some(_)));
        let peer_auto = matches!(self.peer_self_signed(), Ok(Some(_)));
        if self.auto_tls && !client_auto {
            warnings.push("ignoring client auto TLS since certs given".to_string());
        }
        if self.peer_auto_tls && !peer_auto {
            warnings.push("ignoring peer auto TLS since certs given".to_string());
        }
        if client_auto && (self.client_cert_auth || self.trusted_ca_file.is_some()) {
            warnings.push(
                "--auto-tls replaces the client TLS settings: --client-cert-auth, \
                 --trusted-ca-file and --client-crl-file are ignored (as etcd ignores them)"
                    .to_string(),
            );
        }
        if peer_auto
            && (self.peer_client_cert_auth
                || self.peer_trusted_ca_file.is_some()
                || self.peer_crl_file.is_some()
                || self.peer_cert_allowed_cn.is_some()
                || self.peer_cert_allowed_hostname.is_some())
        {
            warnings.push(
                "--peer-auto-tls replaces the peer TLS settings: --peer-client-cert-auth, \
                 --peer-trusted-ca-file, --peer-crl-file and the allowed CN/hostname are \
                 ignored (as etcd ignores them)"
                    .to_string(),
            );
        }
        let client_certs = self.cert_file.is_some() || self.key_file.is_some() || client_auto;
        for url in parse_urls("listen-client-urls", &self.listen_client_urls)
            .unwrap_or_default()
            .iter()
            .filter(|u| u.scheme == "http")
        {
            if client_certs {
                warnings.push(format!(
                    "scheme is http or unix while key and cert files are present; ignoring \
                     key and cert files (client-url {url})"
                ));
            }
            if self.client_cert_auth {
                warnings.push(format!(
                    "scheme is http or unix while --client-cert-auth is enabled; ignoring \
                     client cert auth for this URL (client-url {url})"
                ));
            }
        }
        // etcd warns for each http peer listener; connections to peers with http URLs are
        // plaintext too (see `raft::transport::PeerEndpoint`).
        let peer_certs =
            self.peer_cert_file.is_some() || self.peer_key_file.is_some() || self.peer_auto_tls;
        for url in parse_urls("listen-peer-urls", &self.listen_peer_urls)
            .unwrap_or_default()
            .iter()
            .filter(|u| u.scheme == "http")
        {
            if peer_certs {
                warnings.push(format!(
                    "scheme is HTTP while key and cert files are present; ignoring key and \
                     cert files (peer-url {url})"
                ));
            }
            if self.peer_client_cert_auth && !peer_auto {
                warnings.push(format!(
                    "scheme is HTTP while --peer-client-cert-auth is enabled; ignoring client \
                     cert auth for this URL (peer-url {url})"
                ));
            }
        }
        if !client_auto && self.client_crl_file.is_some() && self.trusted_ca_file.is_none() {
            warnings.push(
                "--client-crl-file has no effect without --trusted-ca-file: no client \
                 certificates are asked for"
                    .to_string(),
            );
        }
        warnings
    }
}

/// The hosts of a listen URL flag, ports and IPv6 brackets left out (the names a self-signed
/// certificate is made for).
fn listen_hosts(flag: &'static str, urls: &str) -> Result<Vec<String>, ConfigError> {
    Ok(parse_urls(flag, urls)?
        .into_iter()
        .map(|u| {
            u.host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("keel").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_etcd() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.name, "default");
        assert_eq!(config.data_dir(), PathBuf::from("default.keel"));
        assert_eq!(config.max_request_bytes, 1_572_864);
        assert_eq!(config.max_txn_ops, 128);
        assert_eq!(config.quota_bytes(), 2 * 1024 * 1024 * 1024);
        assert_eq!(config.auto_compaction().unwrap(), AutoCompaction::Disabled);
        config.validate().unwrap();
    }

    #[test]
    fn unknown_flag_is_a_usage_error() {
        let error = parse(&["--no-such-flag"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn urls_parse_and_bad_urls_are_refused() {
        let urls = parse_urls("x", "http://127.0.0.1:2379,https://[::1]:4001").unwrap();
        assert_eq!(urls[0].port, 2379);
        assert_eq!(urls[1].host, "[::1]");
        assert!(urls[1].socket_addr().unwrap().is_ipv6());
        assert!(parse_urls("x", "127.0.0.1:2379").is_err());
        assert!(parse_urls("x", "http://127.0.0.1").is_err());
        assert!(parse_urls("x", "http://127.0.0.1:99999").is_err());
        assert!(parse_urls("x", "ftp://127.0.0.1:1").is_err());
    }

    #[test]
    fn auto_compaction_modes() {
        let config = parse(&["--auto-compaction-retention", "1"]).unwrap();
        assert_eq!(
            config.auto_compaction().unwrap(),
            AutoCompaction::Periodic(Duration::from_secs(3600))
        );
        let config = parse(&["--auto-compaction-retention", "1h30m"]).unwrap();
        assert_eq!(
            config.auto_compaction().unwrap(),
            AutoCompaction::Periodic(Duration::from_secs(5400))
        );
        let config = parse(&[
            "--auto-compaction-mode",
            "revision",
            "--auto-compaction-retention",
            "1000",
        ])
        .unwrap();
        assert_eq!(
            config.auto_compaction().unwrap(),
            AutoCompaction::Revision(1000)
        );
        let config = parse(&[
            "--auto-compaction-mode",
            "revision",
            "--auto-compaction-retention",
            "1h",
        ])
        .unwrap();
        assert!(config.auto_compaction().is_err());
    }

    #[test]
    fn election_timeout_must_cover_heartbeats() {
        let config = parse(&["--heartbeat-interval", "100", "--election-timeout", "200"]).unwrap();
        assert!(config.validate().is_err());
    }

    #[test]
    fn tls_flags_have_etcd_names_and_environment_variables() {
        use clap::CommandFactory;
        let command = Config::command();
        for (flag, env) in [
            ("client-crl-file", "ETCD_CLIENT_CRL_FILE"),
            (
                "client-cert-allowed-hostname",
                "ETCD_CLIENT_CERT_ALLOWED_HOSTNAME",
            ),
            ("auto-tls", "ETCD_AUTO_TLS"),
            ("cipher-suites", "ETCD_CIPHER_SUITES"),
            ("peer-cert-allowed-cn", "ETCD_PEER_CERT_ALLOWED_CN"),
            (
                "peer-cert-allowed-hostname",
                "ETCD_PEER_CERT_ALLOWED_HOSTNAME",
            ),
            ("peer-crl-file", "ETCD_PEER_CRL_FILE"),
            ("peer-auto-tls", "ETCD_PEER_AUTO_TLS"),
            (
                "experimental-peer-skip-client-san-verification",
                "ETCD_EXPERIMENTAL_PEER_SKIP_CLIENT_SAN_VERIFICATION",
            ),
            (
                "self-signed-cert-validity",
                "ETCD_SELF_SIGNED_CERT_VALIDITY",
            ),
        ] {
            let arg = command
                .get_arguments()
                .find(|a| a.get_long() == Some(flag))
                .unwrap_or_else(|| panic!("--{flag} missing"));
            assert_eq!(arg.get_env(), Some(std::ffi::OsStr::new(env)), "--{flag}");
            assert!(!arg.is_hide_set(), "--{flag} is hidden");
        }
        let config = parse(&[]).unwrap();
        assert!(!config.auto_tls && !config.peer_auto_tls);
        assert_eq!(config.self_signed_cert_validity, 1);
        assert!(parse(&["--auto-tls"]).unwrap().auto_tls);
        assert!(!parse(&["--auto-tls=false"]).unwrap().auto_tls);
        assert!(parse(&["--peer-auto-tls=true"]).unwrap().peer_auto_tls);
        assert!(parse(&["--self-signed-cert-validity=-1"]).is_err());
    }

    fn tls_error(args: &[&str]) -> String {
        parse(args).unwrap().check_tls().unwrap_err().to_string()
    }

    #[test]
    fn cipher_suites_and_versions_are_checked_as_etcd_checks_them() {
        let config = parse(&[
            "--cipher-suites",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        ])
        .unwrap();
        config.check_tls().unwrap();
        assert_eq!(config.cipher_suite_list().unwrap().len(), 2);
        assert_eq!(
            tls_error(&["--cipher-suites", "TLS_FOO"]),
            "unexpected TLS cipher suite \"TLS_FOO\""
        );
        assert!(
            tls_error(&["--cipher-suites", "TLS_RSA_WITH_AES_128_CBC_SHA"])
                .contains("\"TLS_RSA_WITH_AES_128_CBC_SHA\" is not supported by keel")
        );
        assert_eq!(
            tls_error(&[
                "--tls-min-version=TLS1.3",
                "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
            ]),
            "cipher suites cannot be configured when only TLS1.3 is enabled"
        );
        assert_eq!(
            tls_error(&["--tls-min-version=TLS1.3", "--tls-max-version=TLS1.2"]),
            "min version (TLS1.3) is greater than max version (TLS1.2)"
        );
        assert_eq!(
            tls_error(&["--tls-max-version=TLS1.1"]),
            "unexpected TLS version \"TLS1.1\" (must be one of: TLS1.2, TLS1.3)"
        );
        parse(&["--tls-min-version=TLS1.3"])
            .unwrap()
            .check_tls()
            .unwrap();
        // The suites apply to client and peer TLS alike.
        let config = parse(&[
            "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "--cert-file=c",
            "--key-file=k",
            "--peer-cert-file=pc",
            "--peer-key-file=pk",
            "--peer-trusted-ca-file=ca",
        ])
        .unwrap();
        let suites = [rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256];
        assert_eq!(config.client_tls().unwrap().unwrap().cipher_suites, suites);
        assert_eq!(
            config.peer_tls().unwrap().unwrap().server.cipher_suites,
            suites
        );
    }

    #[test]
    fn a_trusted_ca_asks_for_client_certificates_and_client_cert_auth_names_the_user() {
        let base = ["--cert-file=c", "--key-file=k"];
        let with = |extra: &[&str]| {
            let args: Vec<&str> = base.iter().chain(extra).copied().collect();
            parse(&args).unwrap()
        };
        let config = with(&["--trusted-ca-file=ca", "--client-crl-file=crl"]);
        let files = config.client_tls().unwrap().unwrap();
        assert_eq!(files.client_ca, Some(PathBuf::from("ca")));
        assert_eq!(files.crl, Some(PathBuf::from("crl")));
        assert!(!config.client_certificate_identity());
        let config = with(&["--trusted-ca-file=ca", "--client-cert-auth"]);
        assert!(config.client_certificate_identity());
        assert!(with(&["--client-cert-auth"]).client_tls().is_err());
        assert!(with(&[]).client_tls().unwrap().unwrap().client_ca.is_none());
        let config = with(&["--trusted-ca-file=ca", "--client-cert-allowed-hostname=a,b"]);
        assert_eq!(
            config.client_tls().unwrap().unwrap().allowed,
            crate::net::AllowedIdentities::Hostnames(vec!["a".into(), "b".into()])
        );
        let warnings = with(&["--client-crl-file=crl"]).tls_warnings();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("--client-crl-file has no effect")),
            "{warnings:?}"
        );
    }

    #[test]
    fn peer_tls_always_verifies_peers_and_takes_allowed_names() {
        let base = [
            "--peer-cert-file=pc",
            "--peer-key-file=pk",
            "--peer-trusted-ca-file=ca",
            "--peer-crl-file=crl",
        ];
        let with = |extra: &[&str]| {
            let args: Vec<&str> = base.iter().chain(extra).copied().collect();
            parse(&args).unwrap()
        };
        let peer = with(&[]).peer_tls().unwrap().unwrap();
        assert_eq!(peer.server.client_ca, Some(PathBuf::from("ca")));
        assert_eq!(peer.trusted_ca, Some(PathBuf::from("ca")));
        assert_eq!(peer.server.crl, Some(PathBuf::from("crl")));
        assert_eq!(peer.server.allowed, crate::net::AllowedIdentities::Any);
        let peer = with(&["--peer-cert-allowed-cn=m1,m2"])
            .peer_tls()
            .unwrap()
            .unwrap();
        assert_eq!(
            peer.server.allowed,
            crate::net::AllowedIdentities::CommonNames(vec!["m1".into(), "m2".into()])
        );
        let error = with(&[
            "--peer-cert-allowed-cn=m1",
            "--peer-cert-allowed-hostname=h1",
        ])
        .check_tls()
        .unwrap_err()
        .to_string();
        assert_eq!(
            error,
            "AllowedCNs and AllowedHostnames are mutually exclusive (cns=[\"m1\"], \
             hostnames=[\"h1\"])"
        );
    }

    #[test]
    fn auto_tls_makes_its_own_certificates_and_replaces_the_tls_settings() {
        let config = parse(&[
            "--data-dir=/d",
            "--listen-client-urls=https://127.0.0.1:2379,https://localhost:2381,https://[::1]:2382",
            "--listen-peer-urls=https://127.0.0.1:2380",
            "--initial-advertise-peer-urls=https://127.0.0.1:2380",
            "--auto-tls",
            "--peer-auto-tls",
            "--client-cert-auth",
            "--peer-cert-allowed-cn=m1",
            "--self-signed-cert-validity=3",
        ])
        .unwrap();
        config.check_tls().unwrap();
        let client = config.client_self_signed().unwrap().unwrap();
        assert_eq!(client.dir, PathBuf::from("/d/fixtures/client"));
        assert_eq!(client.hosts, ["127.0.0.1", "localhost", "::1"]);
        assert_eq!(client.validity_years, 3);
        let files = config.client_tls().unwrap().unwrap();
        assert_eq!(files.cert, PathBuf::from("/d/fixtures/client/cert.pem"));
        assert_eq!(files.key, PathBuf::from("/d/fixtures/client/key.pem"));
        assert!(files.client_ca.is_none());
        assert!(!config.client_certificate_identity());
        let peer = config.peer_tls().unwrap().unwrap();
        assert_eq!(peer.server.cert, PathBuf::from("/d/fixtures/peer/cert.pem"));
        assert!(peer.trusted_ca.is_none() && peer.server.client_ca.is_none());
        assert_eq!(peer.server.allowed, crate::net::AllowedIdentities::Any);
        let warnings = config.tls_warnings();
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with("--auto-tls replaces"))
                && warnings
                    .iter()
                    .any(|w| w.starts_with("--peer-auto-tls replaces")),
            "{warnings:?}"
        );

        // Certificates given: auto TLS is ignored, with etcd's warning.
        let config = parse(&[
            "--auto-tls",
            "--cert-file=c",
            "--key-file=k",
            "--peer-auto-tls",
            "--peer-cert-file=pc",
            "--peer-key-file=pk",
            "--peer-trusted-ca-file=ca",
        ])
        .unwrap();
        assert!(config.client_self_signed().unwrap().is_none());
        assert!(config.peer_self_signed().unwrap().is_none());
        assert_eq!(
            config.client_tls().unwrap().unwrap().cert,
            PathBuf::from("c")
        );
        let warnings = config.tls_warnings();
        assert!(
            warnings.contains(&"ignoring client auto TLS since certs given".to_string())
                && warnings.contains(&"ignoring peer auto TLS since certs given".to_string()),
            "{warnings:?}"
        );
        // With http peer URLs the pair is made but not used, as in etcd.
        let config = parse(&["--peer-auto-tls"]).unwrap();
        assert!(config.peer_self_signed().unwrap().is_some());
        assert!(config.peer_tls().unwrap().is_none());
        // An https URL without certificates is served with the generated pair.
        let config = parse(&["--listen-client-urls=https://127.0.0.1:2379", "--auto-tls"]).unwrap();
        assert!(config.client_tls().unwrap().is_some());
    }
    #[test]
    fn http_peer_urls_ignore_the_peer_certificate_with_etcd_warnings() {
        let config = parse(&[
            "--listen-peer-urls=http://127.0.0.1:2380,https://127.0.0.1:2381",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            "--peer-cert-file=pc",
            "--peer-key-file=pk",
            "--peer-trusted-ca-file=ca",
            "--peer-client-cert-auth",
        ])
        .unwrap();
        assert_eq!(
            config.tls_warnings(),
            [
                "scheme is HTTP while key and cert files are present; ignoring key and cert \
                 files (peer-url http://127.0.0.1:2380)",
                "scheme is HTTP while --peer-client-cert-auth is enabled; ignoring client cert \
                 auth for this URL (peer-url http://127.0.0.1:2380)",
            ]
        );
        // The certificate still serves the https URL and connections to https peers.
        assert!(config.peer_tls().unwrap().is_some());
        assert!(parse(&[]).unwrap().tls_warnings().is_empty());
        assert!(!config.experimental_peer_skip_client_san_verification);
        let skip = parse(&["--experimental-peer-skip-client-san-verification"]).unwrap();
        assert!(skip.experimental_peer_skip_client_san_verification);
    }
}
