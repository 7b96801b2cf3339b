//! Connections to etcd or Keel endpoints, as etcd's Go client makes them for etcdctl: the
//! endpoint's scheme and the TLS flags choose TLS, `--user` authenticates once and every
//! request then carries the token, `--command-timeout` bounds each call.

use std::future::Future;
use std::io::BufRead;
use std::net::ToSocketAddrs;
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

use crate::error::{status_text, CliError};
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

/// The shortest keep-alive ping interval gRPC-Go's client uses, whatever is asked for.
const KEEPALIVE_TIME_MIN: Duration = Duration::from_secs(10);

/// Go's text for an expired context, which etcdctl prints for a call that timed out.
pub const DEADLINE: &str = "context deadline exceeded";

/// The channel type of every generated client keelctl uses.
pub type Svc = InterceptedService<Channel, Token>;

/// A connection to one endpoint, with the runtime that drives it.
pub struct Client {
    rt: tokio::runtime::Runtime,
    channel: Channel,
    token: Token,
    command_timeout: Duration,
    /// The endpoint as given on the command line.
    pub endpoint: String,
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
    /// Connects to the first of `--endpoints` that answers within `--dial-timeout`, and
    /// authenticates when `--user` is given. When none answers, the error is the one
    /// etcdctl 3.5 gives when its first call times out: `context deadline exceeded`, exit
    /// status 1 (its dial does not block, so the call is what fails).
    pub fn connect(global: &Global) -> Result<Client, CliError> {
        let mut last = None;
        for endpoint in &global.endpoints {
            match Client::connect_to(global, endpoint) {
                Ok(client) => return Ok(client),
                Err(e) if e.message == DEADLINE => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| CliError::bad_args("no endpoints given")))
    }

    /// Connects to `endpoint` alone (the commands that address each endpoint in turn).
    pub fn connect_to(global: &Global, endpoint: &str) -> Result<Client, CliError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::error(format!("starting the client runtime: {e}")))?;
        let target = parse_endpoint(endpoint)?;
        let tls = tls_config(global, target.tls)?;
        let connector = Connector {
            tls: tls.map(Arc::new),
            host: target.host.clone(),
        };
        let uri = format!("http://{}:{}", bracket(&target.host), target.port);
        let channel = Endpoint::from_shared(uri)
            .map_err(|e| CliError::error(format!("bad endpoint {endpoint}: {e}")))?
            .connect_timeout(global.dial_timeout)
            // As gRPC-Go (etcd's client): pings no more often than every 10 s, and only
            // while a call is open. etcd's servers close connections that ping more often
            // than every 5 s (its --grpc-keepalive-min-time) or ping while idle, which ends
            // long watches, locks and mirrors.
            .http2_keep_alive_interval(global.keepalive_time.max(KEEPALIVE_TIME_MIN))
            .keep_alive_timeout(global.keepalive_timeout)
            .keep_alive_while_idle(false)
            .tcp_nodelay(true);
        let channel = rt
            .block_on(async {
                tokio::time::timeout(
                    global.dial_timeout,
                    channel.connect_with_connector(connector),
                )
                .await
            })
            .map_err(|_| CliError::error(DEADLINE))?
            .map_err(|_| CliError::error(DEADLINE))?;
        let client = Client {
            rt,
            channel,
            token: Token::default(),
            command_timeout: global.command_timeout,
            endpoint: endpoint.to_string(),
        };
        if let Some(user) = &global.user {
            // etcd's client authenticates while it is being made, and etcdctl exits with
            // its bad-connection status when that fails (a wrong password included).
            client
                .authenticate(user, global.password.as_deref())
                .map_err(|e| CliError::bad_connection(e.message))?;
        }
        Ok(client)
    }

    fn authenticate(&self, user: &str, password: Option<&str>) -> Result<(), CliError> {
        let (name, password) = match password {
            Some(password) => (user.to_string(), password.to_string()),
            None => match user.split_once(':') {
                Some((name, password)) => (name.to_string(), password.to_string()),
                None => (user.to_string(), ask_password()?),
            },
        };
        let response = self.call(
            AuthClient::new(self.channel.clone())
                .authenticate(AuthenticateRequest { name, password }),
        )?;
        let token = MetadataValue::try_from(response.token.as_str())
            .map_err(|_| CliError::error("the server sent a token that is not ASCII"))?;
        if let Ok(mut slot) = self.token.0.lock() {
            *slot = Some(token);
        }
        Ok(())
    }

    fn svc(&self) -> Svc {
        InterceptedService::new(self.channel.clone(), self.token.clone())
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
        self.rt
            .block_on(async { tokio::time::timeout(self.command_timeout, call).await })
            .map_err(|_| CliError::error(DEADLINE))?
            .map(tonic::Response::into_inner)
            .map_err(|status| CliError::error(status_text(&status)))
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

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Asks for the password on the terminal (or reads a line from stdin when it is not one).
fn ask_password() -> Result<String, CliError> {
    eprint!("Password: ");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::error(format!("reading the password: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// The TLS configuration for an endpoint, or `None` for plaintext: `https://` always uses
/// TLS, `http://` never, and a bare `host:port` when a TLS flag is given or
/// `--insecure-transport=false`.
fn tls_config(global: &Global, tls: TlsUse) -> Result<Option<rustls::ClientConfig>, CliError> {
    let flags = global.cacert.is_some() || global.cert.is_some() || global.key.is_some();
    let wanted = match tls {
        TlsUse::Require => true,
        TlsUse::Drop => false,
        TlsUse::Optional => flags || !global.insecure_transport,
    };
    if !wanted {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::error(format!("TLS: {e}")))?;
    let builder = if global.insecure_skip_tls_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(path) = &global.cacert {
            for cert in read_pem_certs(path)? {
                roots.add(cert).map_err(|e| {
                    CliError::error(format!(
                        "{}: not a usable CA certificate: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match (&global.cert, &global.key) {
        (Some(cert), Some(key)) => {
            let certs = read_pem_certs(cert)?;
            let key = read_pem_key(key)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| CliError::error(format!("TLS client certificate: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) | (None, Some(_)) => {
            return Err(CliError::error(
                "--cert and --key must be given together for client certificate authentication",
            ))
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Some(config))
}

fn read_pem_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, CliError> {
    use rustls::pki_types::pem::PemObject;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| CliError::error(format!("open {}: {e}", path.display())))?
        .collect();
    let certs = certs.map_err(|e| CliError::error(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(CliError::error(format!(
            "{}: no certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}

fn read_pem_key(path: &std::path::Path) -> Result<PrivateKeyDer<'static>, CliError> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| CliError::error(format!("open {}: {e}", path.display())))
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
                    let name = ServerName::try_from(host.clone())
                        .map_err(|e| std::io::Error::other(format!("bad host {host}: {e}")))?;
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
