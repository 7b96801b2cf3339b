//! Connections to etcd or Keel endpoints, as etcd's Go client makes them for etcdctl: the
//! endpoint's scheme and the TLS flags choose TLS, `--user` authenticates once and every
//! request then carries the token, `--command-timeout` bounds each call.

use std::future::Future;
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use keel_proto::etcdserverpb::auth_client::AuthClient;
use keel_proto::etcdserverpb::cluster_client::ClusterClient;
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::lease_client::LeaseClient;
use keel_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_proto::etcdserverpb::watch_client::WatchClient;
use keel_proto::etcdserverpb::AuthenticateRequest;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::Status;

use crate::error::{exit, status_text, CliError};
use crate::global::Global;

/// Adds the auth token, once there is one, to every request (the `token` metadata etcd's
/// clients send).
#[derive(Clone, Debug, Default)]
pub struct Token(Arc<Mutex<Option<MetadataValue<Ascii>>>>);

impl tonic::service::Interceptor for Token {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let token = self.0.lock().map(|t| t.clone()).unwrap_or_default();
        if let Some(token) = token {
            request.metadata_mut().insert("token", token);
        }
        Ok(request)
    }
}

/// Go's text for an expired context, which etcdctl prints for a call that timed out.
pub const DEADLINE: &str = "context deadline exceeded";

/// The channel type of every generated client keelctl uses.
pub type Svc = InterceptedService<Channel, Token>;

/// A connection to one endpoint, with the runtime that drives it.
pub struct Client {
    rt: tokio::runtime::Runtime,
    /// Replaced by [`Client::redial`] after the connection broke.
    channel: std::sync::Mutex<Channel>,
    token: Token,
    /// What [`Client::redial`] needs: the flags, the TLS settings and every endpoint.
    redial: Redial,
    command_timeout: Duration,
    /// The endpoint as given on the command line.
    pub endpoint: String,
}

/// How to connect again: the flags, TLS settings and endpoints the client was made with.
struct Redial {
    global: Global,
    tls: TlsFiles,
    targets: Vec<(String, Target)>,
}

/// One endpoint, split: whether it must, may or must not use TLS, and `host:port`.
struct Target {
    tls: TlsUse,
    host: String,
    port: u16,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TlsUse {
    /// `https://`: TLS even without TLS flags.
    Require,
    /// `http://`: never TLS.
    Drop,
    /// No scheme: TLS when the TLS flags configure it.
    Optional,
}

fn parse_endpoint(endpoint: &str) -> Result<Target, CliError> {
    let (tls, rest) = if let Some(rest) = endpoint.strip_prefix("https://") {
        (TlsUse::Require, rest)
    } else if let Some(rest) = endpoint.strip_prefix("http://") {
        (TlsUse::Drop, rest)
    } else if endpoint.starts_with("unix://") || endpoint.starts_with("unixs://") {
        return Err(CliError::error(format!(
            "unix socket endpoints are not supported by keelctl: {endpoint}"
        )));
    } else {
        (TlsUse::Optional, endpoint)
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| CliError::error(format!("address {rest}: missing port in address")))?;
    let port = port
        .parse()
        .map_err(|_| CliError::error(format!("address {rest}: invalid port")))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok(Target { tls, host, port })
}

impl Client {
    /// Makes the client as etcdctl makes its own: prints `--debug`'s variable lines, finds
    /// the endpoints (`--discovery-srv`), checks the TLS flags (`--cert ""` and the like exit
    /// 128), asks for the password when `--user` has none, refuses an unknown `-w` (exit 4),
    /// reads the TLS files (exit 128), then connects to the first of the endpoints that
    /// answers, trying them in turn until `--command-timeout` ends, the deadline of
    /// etcdctl's first call: then the error is `context deadline exceeded`, exit 1. With
    /// `--user` the token is fetched within `--dial-timeout`, and a failure there exits 2 as
    /// etcd's client constructor does.
    pub fn connect(global: &Global) -> Result<Client, CliError> {
        for line in &global.debug_lines {
            eprintln!("{line}");
        }
        let endpoints = endpoints(global)?;
        for (flag, value) in [
            ("cert", &global.cert),
            ("key", &global.key),
            ("cacert", &global.cacert),
        ] {
            let empty = value.as_ref().is_none_or(|v| v.as_os_str().is_empty());
            if empty && global.was_given(flag) {
                return Err(CliError::bad_args(format!(
                    "empty string is passed to --{flag} option"
                )));
            }
        }
        let credentials = credentials(global)?;
        if global.unsupported_write_out.is_some() {
            return Err(CliError::new(
                exit::BAD_FEATURE,
                "unsupported output format",
            ));
        }
        let tls = TlsFiles::read(global)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::error(format!("starting the client runtime: {e}")))?;
        let budget = if credentials.is_some() {
            global.dial_timeout
        } else {
            global.command_timeout
        };
        let deadline = tokio::time::Instant::now() + budget;
        let targets: Vec<(String, Target)> = endpoints
            .iter()
            .map(|e| parse_endpoint(e).map(|t| (e.clone(), t)))
            .collect::<Result<_, _>>()?;
        let (endpoint, channel) = rt
            .block_on(async {
                let mut pause = Duration::from_millis(50);
                loop {
                    for (endpoint, target) in &targets {
                        let attempt = dial(global, &tls, target, deadline);
                        if let Ok(channel) = attempt.await {
                            return Ok((endpoint.clone(), channel));
                        }
                        if tokio::time::Instant::now() >= deadline {
                            return Err(());
                        }
                    }
                    let now = tokio::time::Instant::now();
                    if now + pause >= deadline {
                        tokio::time::sleep_until(deadline).await;
                        return Err(());
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            })
            .map_err(|()| {
                retry_warning(
                    endpoints.first().map(String::as_str).unwrap_or_default(),
                    "rpc error: code = DeadlineExceeded desc = context deadline exceeded",
                );
                match credentials {
                    Some(_) => CliError::bad_connection(DEADLINE),
                    None => CliError::error(DEADLINE),
                }
            })?;
        let client = Client {
            rt,
            channel: std::sync::Mutex::new(channel),
            token: Token::default(),
            command_timeout: global.command_timeout,
            endpoint,
            redial: Redial {
                global: global.clone(),
                tls,
                targets,
            },
        };
        if let Some((name, password)) = credentials {
            client.authenticate(name, password, deadline)?;
        }
        Ok(client)
    }

    /// Connects to `endpoint` alone (the commands that address each endpoint in turn).
    pub fn connect_to(global: &Global, endpoint: &str) -> Result<Client, CliError> {
        let mut one = global.clone();
        one.endpoints = vec![endpoint.to_string()];
        one.discovery_srv = None;
        Client::connect(&one)
    }

    /// Fetches the token (etcd's client does so in its constructor, within the dial
    /// timeout): a refusal exits 2; a server without auth enabled is used without a token.
    fn authenticate(
        &self,
        name: String,
        password: String,
        deadline: tokio::time::Instant,
    ) -> Result<(), CliError> {
        let mut auth = AuthClient::new(
            self.channel
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        );
        let call = auth.authenticate(AuthenticateRequest { name, password });
        let response = self
            .rt
            .block_on(async { tokio::time::timeout_at(deadline, call).await })
            .map_err(|_| CliError::bad_connection(DEADLINE))?;
        let response = match response {
            Ok(response) => response.into_inner(),
            Err(status) if status.message() == "etcdserver: authentication is not enabled" => {
                return Ok(())
            }
            Err(status) => return Err(CliError::bad_connection(status_text(&status))),
        };
        let token = MetadataValue::try_from(response.token.as_str())
            .map_err(|_| CliError::bad_connection("the server sent a token that is not ASCII"))?;
        if let Ok(mut slot) = self.token.0.lock() {
            *slot = Some(token);
        }
        Ok(())
    }

    fn svc(&self) -> Svc {
        InterceptedService::new(
            self.channel
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            self.token.clone(),
        )
    }

    /// Connects again after the connection broke (a watch resuming, as etcd's client
    /// resumes its watches): each endpoint tried once in turn, each within
    /// `--dial-timeout`. Whether one answered; later calls use its connection.
    pub async fn redial(&self) -> bool {
        let Redial {
            global,
            tls,
            targets,
        } = &self.redial;
        let budget = if global.dial_timeout.is_zero() {
            Duration::from_secs(2)
        } else {
            global.dial_timeout
        };
        for (_, target) in targets {
            let deadline = tokio::time::Instant::now() + budget;
            if let Ok(channel) = dial(global, tls, target, deadline).await {
                *self.channel.lock().unwrap_or_else(|e| e.into_inner()) = channel;
                return true;
            }
        }
        false
    }

    /// The KV service.
    pub fn kv(&self) -> KvClient<Svc> {
        KvClient::new(self.svc())
    }

    /// The Watch service.
    pub fn watch(&self) -> WatchClient<Svc> {
        WatchClient::new(self.svc())
    }

    /// The Lease service.
    pub fn lease(&self) -> LeaseClient<Svc> {
        LeaseClient::new(self.svc())
    }

    /// The Cluster service.
    pub fn cluster(&self) -> ClusterClient<Svc> {
        ClusterClient::new(self.svc())
    }

    /// The Maintenance service.
    pub fn maintenance(&self) -> MaintenanceClient<Svc> {
        MaintenanceClient::new(self.svc())
    }

    /// The Auth service.
    pub fn auth(&self) -> AuthClient<Svc> {
        AuthClient::new(self.svc())
    }

    /// Runs one unary call within `--command-timeout`; a failure becomes etcdctl's error.
    pub fn call<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, CliError> {
        let result = self
            .rt
            .block_on(async { tokio::time::timeout(self.command_timeout, call).await });
        match result {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => {
                retry_warning(
                    &self.endpoint,
                    &format!(
                        "rpc error: code = {} desc = {}",
                        crate::error::go_code_name(status.code()),
                        status.message()
                    ),
                );
                Err(CliError::error(status_text(&status)))
            }
            Err(_) => {
                retry_warning(
                    &self.endpoint,
                    "rpc error: code = DeadlineExceeded desc = context deadline exceeded",
                );
                Err(CliError::error(DEADLINE))
            }
        }
    }

    /// Runs `work` to completion with no time limit (streams: watch, keep-alive, snapshot).
    pub fn block_on<F: Future>(&self, work: F) -> F::Output {
        self.rt.block_on(work)
    }

    /// `--command-timeout`.
    pub fn command_timeout(&self) -> Duration {
        self.command_timeout
    }
}

/// The warning etcd's client logs (zap JSON on stderr) for every failed unary call.
fn retry_warning(endpoint: &str, error: &str) {
    use crate::gofmt::json_string;
    eprintln!(
        "{{\"level\":\"warn\",\"ts\":{},\"logger\":\"etcd-client\",\"caller\":\"v3@v{}/retry_interceptor.go:62\",\"msg\":\"retrying of unary invoker failed\",\"target\":{},\"attempt\":0,\"error\":{}}}",
        json_string(&crate::cobra::zap_timestamp()),
        crate::usage::ETCDCTL_VERSION,
        json_string(&format!("etcd-endpoints://0xc000000000/{endpoint}")),
        json_string(error)
    );
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// `--user` and `--password` as etcdctl reads them: no user, no authentication; a
/// password from `--password`, else after the first `:` of `--user`, else asked for. An
/// empty password means no authentication (etcd's client fetches no token then).
fn credentials(global: &Global) -> Result<Option<(String, String)>, CliError> {
    let user = global.user.clone().unwrap_or_default();
    if user.is_empty() {
        return Ok(None);
    }
    let password = global.password.clone().unwrap_or_default();
    let (name, password) = if !password.is_empty() {
        (user, password)
    } else {
        match user.split_once(':') {
            Some((name, password)) => (name.to_string(), password.to_string()),
            None => {
                let password = ask_password("Password: ")?;
                (user, password)
            }
        }
    };
    Ok((!password.is_empty()).then_some((name, password)))
}

/// Asks for a password as etcdctl does (speakeasy): the prompt on stdout, the answer read
/// from stdin up to a newline with the terminal's echo off, then a newline on stdout.
pub fn ask_password(prompt: &str) -> Result<String, CliError> {
    use std::io::{Read, Write};
    let mut stdout = std::io::stdout();
    let _ = write!(stdout, "{prompt}");
    let _ = stdout.flush();
    let echo = EchoOff::new();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    let mut stdin = std::io::stdin().lock();
    loop {
        match stdin.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CliError::error(e)),
        }
    }
    drop(echo);
    let _ = writeln!(stdout);
    let mut password = String::from_utf8_lossy(&line).into_owned();
    if password.ends_with('\r') {
        password.pop();
    }
    Ok(password)
}

/// Turns the terminal's echo off while it lives (nothing when stdin is not a terminal).
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> EchoOff {
        // SAFETY: tcgetattr and tcsetattr only read and write the termios struct given to
        // them; a failure (stdin is no terminal) leaves it untouched and is checked.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut saved) != 0 {
                return EchoOff(None);
            }
            let mut quiet = saved;
            quiet.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &quiet) != 0 {
                return EchoOff(None);
            }
            EchoOff(Some(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the settings read in `new`.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved);
            }
        }
    }
}

/// The endpoints: those `--discovery-srv` finds, else `--endpoints` (each trimmed). With
/// `--insecure-discovery=false`, discovered `http://` endpoints are dropped with a notice.
fn endpoints(global: &Global) -> Result<Vec<String>, CliError> {
    let domain = global.discovery_srv.clone().unwrap_or_default();
    if !domain.is_empty() {
        let service_name = global.discovery_srv_name.clone().unwrap_or_default();
        let mut found =
            crate::srv::client_endpoints(&domain, &service_name).map_err(CliError::error)?;
        if !global.insecure_discovery {
            found.retain(|endpoint| {
                let insecure = endpoint.starts_with("http://");
                if insecure {
                    eprintln!(
                        "ignoring discovered insecure endpoint {}",
                        crate::gofmt::quote(endpoint.as_bytes())
                    );
                }
                !insecure
            });
        }
        if !found.is_empty() {
            return Ok(found);
        }
    }
    Ok(global
        .endpoints
        .iter()
        .map(|e| e.trim().to_string())
        .collect())
}

/// Go's text for a failed file open: `open <path>: no such file or directory`.
fn open_error(path: &std::path::Path, error: &std::io::Error) -> String {
    let text = error.to_string();
    let text = match text.find(" (os error") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    let text: String = match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    };
    format!("open {}: {text}", path.display())
}

/// The TLS settings of the flags, read once (etcd's `newClientCfg`). `flags` is the
/// configuration the TLS flags make (or `--insecure-transport=false` alone); `https://`
/// endpoints without one use the system's roots.
struct TlsFiles {
    flags: Option<Arc<rustls::ClientConfig>>,
    /// The name to verify instead of the endpoint's host (`--discovery-srv` with
    /// `--insecure-discovery=false`).
    server_name: Option<String>,
}

impl TlsFiles {
    /// Reads the files; errors are etcdctl's (exit 128).
    fn read(global: &Global) -> Result<TlsFiles, CliError> {
        let path = |p: &Option<PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
        let (cert, key, cacert) = (path(&global.cert), path(&global.key), path(&global.cacert));
        let server_name = if global.insecure_discovery {
            None
        } else {
            global.discovery_srv.clone().filter(|d| !d.is_empty())
        };
        let wanted = cert.is_some()
            || key.is_some()
            || cacert.is_some()
            || server_name.is_some()
            || !global.insecure_transport;
        if !wanted {
            return Ok(TlsFiles {
                flags: None,
                server_name,
            });
        }
        let identity = match (&cert, &key) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let read = |p: &PathBuf| {
                    std::fs::read(p).map_err(|e| CliError::bad_args(open_error(p, &e)))
                };
                let (cert_pem, key_pem) = (read(cert)?, read(key)?);
                Some(key_pair(&cert_pem, &key_pem)?)
            }
            _ => {
                let show = |p: &Option<PathBuf>| {
                    p.as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                };
                return Err(CliError::bad_args(format!(
                    "KeyFile and CertFile must both be present[key: {}, cert: {}]",
                    show(&key),
                    show(&cert)
                )));
            }
        };
        let roots = match &cacert {
            Some(cacert) => {
                let pem = std::fs::read(cacert)
                    .map_err(|e| CliError::bad_args(open_error(cacert, &e)))?;
                Some(root_store(&pem)?)
            }
            None => None,
        };
        let config = client_config(roots, identity, global.insecure_skip_tls_verify)?;
        Ok(TlsFiles {
            flags: Some(Arc::new(config)),
            server_name,
        })
    }

    /// The configuration for an endpoint of this kind, or `None` for plaintext.
    fn for_target(&self, tls: TlsUse) -> Result<Option<Arc<rustls::ClientConfig>>, CliError> {
        Ok(match tls {
            TlsUse::Drop => None,
            TlsUse::Optional => self.flags.clone(),
            TlsUse::Require => match &self.flags {
                Some(config) => Some(config.clone()),
                None => Some(Arc::new(client_config(None, None, false)?)),
            },
        })
    }
}

/// A client certificate chain and its key.
type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// Go's `tls.X509KeyPair`, with its error texts.
fn key_pair(cert_pem: &[u8], key_pem: &[u8]) -> Result<Identity, CliError> {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(CliError::bad_args(
            "tls: failed to find any PEM data in certificate input",
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|_| CliError::bad_args("tls: failed to find any PEM data in key input"))?;
    Ok((certs, key))
}

/// The CA bundle's certificates (Go's `NewCertPool`: a PEM certificate that does not parse
/// is an error, text without PEM blocks an empty pool).
fn root_store(pem: &[u8]) -> Result<rustls::RootCertStore, CliError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| CliError::bad_args(format!("x509: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| CliError::bad_args(format!("x509: {e}")))?;
    }
    Ok(roots)
}

/// The system's CA bundle (Go's default roots), empty when there is none.
fn system_roots() -> rustls::RootCertStore {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let path = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
    if let Ok(pem) = std::fs::read(path) {
        for cert in CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok) {
            let _ = roots.add(cert);
        }
    }
    roots
}

/// A rustls client configuration: `roots` (the system's when `None`), the client identity,
/// and `--insecure-skip-tls-verify`.
fn client_config(
    roots: Option<rustls::RootCertStore>,
    identity: Option<Identity>,
    skip_verify: bool,
) -> Result<rustls::ClientConfig, CliError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::bad_args(format!("tls: {e}")))?;
    let builder = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider)))
    } else {
        builder.with_root_certificates(roots.unwrap_or_else(system_roots))
    };
    let mut config = match identity {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| CliError::bad_args(format!("tls: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The shortest keepalive ping interval gRPC's clients use (etcd's servers refuse pings
/// that come more often than every 5 s).
const KEEPALIVE_TIME_MIN: Duration = Duration::from_secs(10);

/// One connection attempt to `target`, within `--dial-timeout` and the deadline.
async fn dial(
    global: &Global,
    tls: &TlsFiles,
    target: &Target,
    deadline: tokio::time::Instant,
) -> Result<Channel, ()> {
    let connector = Connector {
        tls: tls.for_target(target.tls).map_err(|_| ())?,
        host: target.host.clone(),
        server_name: tls.server_name.clone(),
    };
    let uri = format!("http://{}:{}", bracket(&target.host), target.port);
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|_| ())?
        // As gRPC-Go (etcd's client): pings no more often than every 10 s, and only while a
        // call is open. etcd's servers close connections that ping more often than every
        // 5 s (its --grpc-keepalive-min-time) or ping while idle, which would end long
        // watches, locks and mirrors.
        .http2_keep_alive_interval(global.keepalive_time.max(KEEPALIVE_TIME_MIN))
        .keep_alive_timeout(global.keepalive_timeout)
        .keep_alive_while_idle(false)
        .tcp_nodelay(true);
    let mut limit = deadline;
    if !global.dial_timeout.is_zero() {
        limit = limit.min(tokio::time::Instant::now() + global.dial_timeout);
    }
    let connect = async {
        let channel = endpoint
            .connect_with_connector(connector)
            .await
            .map_err(|_| ())?;
        if probe(channel.clone()).await {
            Ok(channel)
        } else {
            Err(())
        }
    };
    tokio::time::timeout_at(limit, connect)
        .await
        .unwrap_or(Err(()))
}

/// Whether the server answers gRPC on `channel`. An HTTP/2 connection can look established
/// while nothing works (plaintext to a TLS port; a TLS 1.3 server that rejects the client's
/// certificate after the handshake), where etcd's client keeps waiting for a ready
/// connection until the call's deadline. A call to a method no server has proves the
/// connection: any answer from the server will do.
async fn probe(channel: Channel) -> bool {
    use keel_proto::etcdserverpb::{StatusRequest, StatusResponse};
    use tonic::Code;
    let mut grpc = tonic::client::Grpc::new(channel);
    if grpc.ready().await.is_err() {
        return false;
    }
    let codec = tonic_prost::ProstCodec::<StatusRequest, StatusResponse>::default();
    let path = http::uri::PathAndQuery::from_static("/keelctl.Probe/Ready");
    match grpc
        .unary(tonic::Request::new(StatusRequest {}), path, codec)
        .await
    {
        Ok(_) => true,
        Err(status) => {
            !matches!(
                status.code(),
                Code::Unknown
                    | Code::Unavailable
                    | Code::Cancelled
                    | Code::DeadlineExceeded
                    | Code::Internal
            ) || status.message().contains("mapped from HTTP")
        }
    }
}

/// `--insecure-skip-tls-verify`: any server certificate is accepted (signatures are still
/// checked, so the handshake itself is sound).
#[derive(Debug)]
struct AcceptAnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A byte stream tonic's HTTP/2 client can run over: plain TCP or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Dials TCP and, for TLS endpoints, runs the handshake with the endpoint's host name.
#[derive(Clone)]
struct Connector {
    tls: Option<Arc<rustls::ClientConfig>>,
    host: String,
    server_name: Option<String>,
}

type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<TokioIo<Box<dyn Io>>, std::io::Error>> + Send>>;

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Box<dyn Io>>;
    type Error = std::io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        let host = self.host.clone();
        let server_name = self.server_name.clone().unwrap_or_else(|| host.clone());
        Box::pin(async move {
            let port = uri.port_u16().unwrap_or(2379);
            let addrs: Vec<_> = (host.as_str(), port).to_socket_addrs()?.collect();
            let mut last = std::io::Error::other(format!("no address for {host}"));
            let mut stream = None;
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(s) => {
                        stream = Some(s);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            let stream = stream.ok_or(last)?;
            stream.set_nodelay(true)?;
            let io: Box<dyn Io> = match tls {
                None => Box::new(stream),
                Some(config) => {
                    let name = ServerName::try_from(server_name.clone()).map_err(|e| {
                        std::io::Error::other(format!("bad server name {server_name}: {e}"))
                    })?;
                    let tls = tokio_rustls::TlsConnector::from(config)
                        .connect(name, stream)
                        .await?;
                    Box::new(tls)
                }
            };
            Ok(TokioIo::new(io))
        })
    }
}
