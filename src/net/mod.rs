//! Networking: serving tonic gRPC services and plain HTTP on glommio executors.
//!
//! Each executor (one per core) binds its own listener with [`bind_reuseport`] on the same
//! address, and runs [`serve`] on it; the kernel spreads new connections over the listeners
//! (SO_REUSEPORT spreads connections, not requests). Every connection then lives on the
//! executor that accepted it, and is served by hyper 1.x with glommio supplying the I/O, the
//! task spawner and the timers: no tokio runtime runs in the server process.
//!
//! One port speaks HTTP/1.1 and HTTP/2 (h2c with prior knowledge, as etcd's plaintext clients
//! use). A request whose `content-type` starts with `application/grpc` goes to the tonic
//! [`Routes`]; every other request (`/metrics`, `/health`, `/version`, etcd's JSON gateway)
//! goes to the [`HttpHandler`], whose reply body may stream. What a client sends passes
//! through an [`AuthorityFilter`] before hyper reads it: etcd's Go clients send HTTP/2
//! `:authority` values (`http://host:port`, `#initially=[...]`) that hyper's HTTP/2 library
//! refuses and etcd accepts.
//!
//! # One executor per core
//!
//! ```no_run
//! # use std::rc::Rc;
//! # fn routes() -> tonic::service::Routes { unimplemented!() }
//! # fn handler() -> Rc<dyn keel::net::HttpHandler> { unimplemented!() }
//! use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
//! use keel::net::{bind_reuseport, serve, ServeOptions};
//!
//! let addr: std::net::SocketAddr = "0.0.0.0:2379".parse().unwrap();
//! let cores = 2;
//! let pool = LocalExecutorPoolBuilder::new(PoolPlacement::MaxSpread(cores, None))
//!     .on_all_shards(move || async move {
//!         // Each core binds the same address; the kernel spreads connections over them.
//!         let listener = bind_reuseport(addr)?;
//!         // Built per core: tonic services are `Send + Sync`, so they may share state
//!         // through `Arc`s, but core-local state must be reached through channels.
//!         let shutdown = std::future::pending::<()>();
//!         serve(listener, routes(), handler(), ServeOptions::default(), shutdown).await
//!     })
//!     .unwrap();
//! for result in pool.join_all() {
//!     result.unwrap().unwrap();
//! }
//! ```
//!
//! With [`ServeOptions::tls`] set (see [`server_config`]), every connection first completes a
//! TLS handshake (rustls over glommio's stream, ALPN `h2` and `http/1.1`), then is served the
//! same way.
//!
//! # Calling other members
//!
//! [`connect`] is the other direction: it opens an HTTP/2 connection (h2c, or TLS) to a gRPC
//! server from a glommio executor and returns a [`GrpcChannel`] for tonic's generated clients,
//! such as `PeerClient::new(channel)`. tonic's own `Channel` needs a tokio runtime, which the
//! server process does not run.

mod authority;
mod client;
mod hpack;
mod io;
mod rt;
mod self_signed;
mod tls;
mod tls_verify;

pub use self::authority::{AuthorityFilter, HEADER_BLOCK_BYTES_MAX};
pub use self::client::{
    connect, ClientOptions, ConnectError, GrpcChannel, ResponseBody, ResponseFuture,
    CONNECT_TIMEOUT_DEFAULT, HTTP2_KEEPALIVE_INTERVAL_DEFAULT, HTTP2_KEEPALIVE_TIMEOUT_DEFAULT,
};
pub use self::self_signed::{SelfSignedCert, SelfSignedError};
pub use self::tls::{
    client_config_from_files, parse_cipher_suites, server_config, server_config_from_files,
    CipherSuiteError, TlsConfigError, TlsFiles, TlsFilesError, TlsVersion,
};
pub use self::tls_verify::AllowedIdentities;

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures::channel::oneshot;
use futures::future::{self, Either, FutureExt, LocalBoxFuture, Shared};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::server::conn::auto;
use tonic::body::Body;
use tonic::service::Routes;
use tower_service::Service;

use self::io::HyperIo;
use self::rt::{GlommioTimer, LocalExec};

/// The default for [`ServeOptions::connections_max`].
pub const CONNECTIONS_MAX_DEFAULT: usize = 10_000;

/// The default for [`ServeOptions::http_body_max`]: etcd's default `--max-request-bytes`
/// (1.5 MiB) plus room for framing.
pub const HTTP_BODY_MAX_DEFAULT: usize = 1536 * 1024 + 64 * 1024;

/// How long a failed `accept` (out of file descriptors, out of memory) waits before the next
/// try, so that the loop neither spins nor gives up on a passing shortage.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(20);

/// Limits and timeouts for one listener.
///
/// The defaults follow etcd's server defaults where etcd has one.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The most connections served at once on this listener. A connection accepted beyond it
    /// is closed at once (the client sees the connection reset and may retry), so a flood
    /// cannot exhaust memory or file descriptors. Default [`CONNECTIONS_MAX_DEFAULT`].
    pub connections_max: usize,
    /// How often an idle HTTP/2 connection is pinged; `None` never pings. Default 2 h
    /// (etcd's `--grpc-keepalive-interval`).
    pub http2_keepalive_interval: Option<Duration>,
    /// How long a keep-alive ping may go unanswered before the connection is closed. Default
    /// 20 s (etcd's `--grpc-keepalive-timeout`).
    pub http2_keepalive_timeout: Duration,
    /// The most concurrent streams (RPCs) per HTTP/2 connection. Default `u32::MAX`, etcd's
    /// `--max-concurrent-streams`: Kubernetes runs many watches over one connection.
    pub http2_max_concurrent_streams: u32,
    /// The largest HTTP/2 frame payload the server accepts. Default 16 KiB (the protocol's
    /// initial value).
    pub http2_max_frame_size: u32,
    /// The HTTP/2 per-stream flow-control window; `None` keeps hyper's default (1 MiB).
    pub http2_initial_stream_window_size: Option<u32>,
    /// The HTTP/2 per-connection flow-control window; `None` keeps hyper's default (1 MiB).
    pub http2_initial_connection_window_size: Option<u32>,
    /// TLS for every connection; `None` serves plaintext (HTTP/1.1 and h2c). Build it with
    /// [`server_config`]. Default `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Whether the common name of a verified client certificate is handed to gRPC handlers
    /// ([`ClientCommonName`], the user when a request carries no token). etcd does so only
    /// with `--client-cert-auth`, although `--trusted-ca-file` alone already makes clients
    /// present certificates. Default `true`.
    pub tls_client_identity: bool,
    /// Whether a client's verified certificate must name the address it connects from
    /// (etcd's peer listener makes this check unless
    /// `--experimental-peer-skip-client-san-verification`; its client listener never does):
    /// a certificate with IP or DNS subject alternative names is refused after the handshake
    /// unless one of the IPs is the client's, or one of the names resolves to it. Only with
    /// [`ServeOptions::tls`] asking for client certificates. Default `false`.
    pub tls_check_client_address: bool,
    /// How long a new connection may take to finish its TLS handshake (if any) and show its
    /// protocol: the whole HTTP/2 preface, or the first byte of an HTTP/1 request. hyper's own
    /// timers start only after that, so without this a client could hold a connection slot
    /// forever by sending nothing. Default 10 s.
    pub handshake_timeout: Duration,
    /// How long an HTTP/1 client may take to send a request's headers. Default 30 s.
    pub http1_header_read_timeout: Option<Duration>,
    /// The largest body a plain-HTTP (non-gRPC) request may carry; a larger one is answered
    /// with 413. gRPC message limits are tonic's (`max_decoding_message_size`). Default
    /// [`HTTP_BODY_MAX_DEFAULT`].
    pub http_body_max: usize,
    /// After shutdown is asked for, how long in-flight connections get to finish before they
    /// are closed. Long-lived streams (watches) never finish on their own, so this bounds
    /// shutdown. Default 5 s.
    pub shutdown_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            connections_max: CONNECTIONS_MAX_DEFAULT,
            http2_keepalive_interval: Some(Duration::from_secs(2 * 60 * 60)),
            http2_keepalive_timeout: Duration::from_secs(20),
            http2_max_concurrent_streams: u32::MAX,
            http2_max_frame_size: 16 * 1024,
            http2_initial_stream_window_size: None,
            http2_initial_connection_window_size: None,
            tls: None,
            tls_client_identity: true,
            tls_check_client_address: false,
            handshake_timeout: Duration::from_secs(10),
            http1_header_read_timeout: Some(Duration::from_secs(30)),
            http_body_max: HTTP_BODY_MAX_DEFAULT,
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

/// A plain-HTTP handler for non-gRPC requests (`/metrics`, `/health`, `/version`, ...).
///
/// It is called on the executor thread that accepted the connection, so it may hold
/// core-local (`!Send`) state, and its future may await other work on that core (such as
/// asking the raft core whether the member is healthy). The request body has been read in
/// full (at most [`ServeOptions::http_body_max`] bytes).
pub trait HttpHandler: 'static {
    /// Answers one request.
    fn handle(
        &self,
        request: http::Request<Bytes>,
    ) -> LocalBoxFuture<'static, http::Response<String>>;

    /// Answers one request with a body that may stream: each frame of the body is written to
    /// the client as it comes (etcd's JSON gateway streams watch events this way). This is
    /// what the server calls; the default answers with [`HttpHandler::handle`]'s text.
    fn handle_streaming(
        &self,
        request: http::Request<Bytes>,
    ) -> LocalBoxFuture<'static, http::Response<Body>> {
        let response = self.handle(request);
        Box::pin(async move {
            response
                .await
                .map(|text| Body::new(Full::new(Bytes::from(text))))
        })
    }
}

/// Binds one listener on `addr` with SO_REUSEPORT, so that every executor (one per core) can
/// bind the same address and the kernel spreads connections over them. Call it once per
/// executor, on that executor's thread: the listener belongs to that executor.
///
/// # Panics
///
/// Panics when called outside a glommio executor.
pub fn bind_reuseport(addr: SocketAddr) -> std::io::Result<glommio::net::TcpListener> {
    // glommio's `bind` sets SO_REUSEPORT before binding, with a backlog of 1024.
    glommio::net::TcpListener::bind(addr).map_err(std::io::Error::from)
}

/// Serves `grpc` and `http` on `listener` until `shutdown` resolves; then stops accepting,
/// lets in-flight connections finish (HTTP/2 connections get a GOAWAY) for up to
/// [`ServeOptions::shutdown_timeout`], closes whatever is left, and returns.
///
/// Must run on the glommio executor that owns `listener`; connections and their streams run
/// as tasks on that executor. Errors on one connection (a client sending garbage, a reset)
/// close that connection only. Failed accepts (such as running out of file descriptors) are
/// logged and retried after a short pause, so the listener keeps serving once they pass.
///
/// Dropping the returned future instead of resolving `shutdown` closes every connection of
/// this listener at once, without the graceful phase.
pub async fn serve(
    listener: glommio::net::TcpListener,
    grpc: Routes,
    http: Rc<dyn HttpHandler>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let builder = Rc::new(connection_builder(&options));
    let dispatch = Rc::new(Dispatch {
        grpc: RefCell::new(grpc.prepare()),
        http,
        http_body_max: options.http_body_max,
    });
    let tracker = Rc::new(Tracker::default());
    let (graceful_tx, graceful_rx) = oneshot::channel::<()>();
    let (abort_tx, abort_rx) = oneshot::channel::<()>();
    let signals = Signals {
        graceful: graceful_rx.shared(),
        abort: abort_rx.shared(),
    };
    let local_addr = listener.local_addr().ok();
    let tls = options.tls.clone().map(futures_rustls::TlsAcceptor::from);

    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = match future::select(pin!(listener.accept()), shutdown.as_mut()).await {
            Either::Left((accepted, _)) => accepted,
            Either::Right(((), _)) => break,
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(addr = ?local_addr, error = %e, "accept failed; pausing");
                glommio::timer::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        if tracker.active.get() >= options.connections_max {
            tracing::debug!(
                addr = ?local_addr,
                limit = options.connections_max,
                "connection limit reached; closing a new connection"
            );
            drop(stream);
            continue;
        }
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY failed; closing the connection");
            continue;
        }
        let guard = tracker.enter();
        let builder = builder.clone();
        let dispatch = dispatch.clone();
        let signals = signals.clone();
        let mut handshake = Handshake::start(options.handshake_timeout);
        let tls = tls.clone();
        let tls_client_identity = options.tls_client_identity;
        let check_address = options.tls_check_client_address;
        let max_frame_size = options.http2_max_frame_size;
        glommio::spawn_local(async move {
            match tls {
                None => {
                    let service = DispatchService(dispatch, None);
                    serve_connection(
                        &builder,
                        max_frame_size,
                        stream,
                        handshake,
                        service,
                        signals,
                    )
                    .await
                }
                Some(acceptor) => {
                    let peer = stream.peer_addr().ok();
                    if let Some(stream) = accept_tls(
                        &acceptor,
                        stream,
                        peer,
                        check_address,
                        &mut handshake,
                        &signals,
                    )
                    .await
                    {
                        let name = tls_client_identity
                            .then(|| client_common_name(stream.get_ref().1))
                            .flatten();
                        let service = DispatchService(dispatch, name);
                        serve_connection(
                            &builder,
                            max_frame_size,
                            stream,
                            handshake,
                            service,
                            signals,
                        )
                        .await;
                    }
                }
            }
            drop(guard);
        })
        .detach();
    }

    // Closing the listener first makes the kernel send new connections to the other
    // executors' listeners (or refuse them when this was the last).
    drop(listener);
    let _ = graceful_tx.send(());
    let idle = pin!(tracker.idle());
    let deadline = pin!(glommio::timer::sleep(options.shutdown_timeout));
    let drained = future::select(idle, deadline).await;
    if let Either::Right(_) = drained {
        tracing::info!(
            addr = ?local_addr,
            connections = tracker.active.get(),
            "shutdown timeout reached; closing the remaining connections"
        );
        let _ = abort_tx.send(());
        tracker.idle().await;
    }
    Ok(())
}

/// Builds the HTTP/1 + HTTP/2 connection builder for `options`.
fn connection_builder(options: &ServeOptions) -> auto::Builder<LocalExec> {
    let mut builder = auto::Builder::new(LocalExec);
    builder
        .http1()
        .timer(GlommioTimer)
        .header_read_timeout(options.http1_header_read_timeout);
    builder
        .http2()
        .timer(GlommioTimer)
        .keep_alive_interval(options.http2_keepalive_interval)
        .keep_alive_timeout(options.http2_keepalive_timeout)
        .max_concurrent_streams(options.http2_max_concurrent_streams)
        .max_frame_size(options.http2_max_frame_size)
        .initial_stream_window_size(options.http2_initial_stream_window_size)
        .initial_connection_window_size(options.http2_initial_connection_window_size);
    builder
}

/// Serves one connection until it ends, shutting it down gracefully or closing it when the
/// listener's signals say so. What the client sends goes through the `:authority` filter
/// ([`AuthorityFilter`]), for a server whose HTTP/2 frames may be `max_frame_size` long.
async fn serve_connection<IO>(
    builder: &auto::Builder<LocalExec>,
    max_frame_size: u32,
    stream: IO,
    handshake: Handshake,
    service: DispatchService,
    mut signals: Signals,
) where
    IO: futures::io::AsyncRead + futures::io::AsyncWrite + Unpin + 'static,
{
    // HTTP/2 allows frame sizes from 16 KiB to 16 MiB - 1.
    let filter = AuthorityFilter::new((max_frame_size as usize).clamp(16 * 1024, (1 << 24) - 1));
    let io = HyperIo::with_authority_filter(stream, handshake.protocol_known.clone(), filter);
    let mut conn = pin!(builder.serve_connection(io, service));
    let mut graceful_started = false;
    let mut handshake_timer = Some(handshake.timer);
    let result = future::poll_fn(|cx| {
        if let Some(timer) = &mut handshake_timer {
            if handshake.protocol_known.get() {
                handshake_timer = None;
            } else if timer.poll_unpin(cx).is_ready() {
                tracing::debug!("connection sent no protocol preface in time; closing it");
                return Poll::Ready(Ok(()));
            }
        }
        if !graceful_started && signals.graceful.poll_unpin(cx).is_ready() {
            graceful_started = true;
            conn.as_mut().graceful_shutdown();
        }
        // Only a connection already asked to finish can be told to stop, so the abort signal
        // is not polled (and costs nothing) during normal serving.
        if graceful_started && signals.abort.poll_unpin(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        conn.as_mut().poll(cx)
    })
    .await;
    if let Err(e) = result {
        // Clients that send garbage or vanish end here; it concerns only this connection.
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Logs a refused TLS connection with the client's address, once per address and reason (a
/// client retrying with the wrong certificate would otherwise fill the log; etcd logs each
/// "rejected connection"). `stage` says where it was refused. A certificate that expired or is
/// not yet valid is one reason, whatever the clock said at each try.
fn log_rejection(peer: Option<std::net::SocketAddr>, stage: &str, reason: String) {
    const REMEMBERED_MAX: usize = 4096;
    static LOGGED: std::sync::Mutex<Option<std::collections::HashSet<(std::net::IpAddr, String)>>> =
        std::sync::Mutex::new(None);
    let Some(peer) = peer else {
        tracing::warn!(error = %reason, "rejected a TLS connection: {stage}");
        return;
    };
    let Ok(mut logged) = LOGGED.lock() else {
        return;
    };
    let logged = logged.get_or_insert_with(Default::default);
    if logged.len() >= REMEMBERED_MAX {
        logged.clear();
    }
    if logged.insert((peer.ip(), reason.clone())) {
        tracing::warn!(remote = %peer, error = %reason, "rejected connection: {stage}");
    }
}

/// Runs the TLS handshake of a new connection within its handshake deadline, then, with
/// `check_address`, the check that the client's certificate names the address it connects
/// from ([`ServeOptions::tls_check_client_address`]), within the same deadline. `None` when
/// the handshake failed, the check refused the client, time ran out, or shutdown began
/// meanwhile: the connection is then dropped.
async fn accept_tls<IO>(
    acceptor: &futures_rustls::TlsAcceptor,
    stream: IO,
    peer: Option<std::net::SocketAddr>,
    check_address: bool,
    handshake: &mut Handshake,
    signals: &Signals,
) -> Option<futures_rustls::server::TlsStream<IO>>
where
    IO: futures::io::AsyncRead + futures::io::AsyncWrite + Unpin,
{
    let accept = async {
        let stream = acceptor.accept(stream).await.map_err(|e| {
            log_rejection(
                peer,
                "TLS handshake failed",
                tls_verify::rejection_reason(&e),
            )
        })?;
        let leaf = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first());
        if let (true, Some(leaf), Some(remote)) = (check_address, leaf, peer) {
            // The check may have to resolve the certificate's DNS names, which blocks: it
            // runs on glommio's blocking pool (a peer connects rarely; connections last).
            let der = leaf.as_ref().to_vec();
            let checked = glommio::executor()
                .spawn_blocking(move || {
                    tls_verify::check_client_address(&der, remote.ip(), &tls_verify::SystemResolver)
                })
                .await;
            if let Err(reason) = checked {
                log_rejection(
                    peer,
                    "the certificate does not name the address it connects from",
                    reason,
                );
                return Err(());
            }
        }
        Ok(stream)
    };
    let mut accept = pin!(accept);
    let mut graceful = signals.graceful.clone();
    let outcome = future::poll_fn(|cx| {
        if let Poll::Ready(result) = accept.as_mut().poll(cx) {
            return Poll::Ready(Some(result));
        }
        if handshake.timer.poll_unpin(cx).is_ready() || graceful.poll_unpin(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await;
    match outcome {
        Some(Ok(stream)) => Some(stream),
        Some(Err(())) => None,
        None => {
            tracing::debug!("TLS handshake timed out or shutdown began; closing the connection");
            None
        }
    }
}

/// A new connection's deadline for its TLS handshake and for showing its protocol.
struct Handshake {
    /// Set by the connection's [`HyperIo`] once the protocol is known.
    protocol_known: Rc<Cell<bool>>,
    /// Fires at the deadline.
    timer: glommio::timer::Timer,
}

impl Handshake {
    /// Starts the clock for a connection accepted now.
    fn start(timeout: Duration) -> Self {
        Self {
            protocol_known: Rc::new(Cell::new(false)),
            timer: glommio::timer::Timer::new(timeout),
        }
    }
}

/// The listener's shutdown signals, shared by every connection task.
#[derive(Clone)]
struct Signals {
    /// Resolves when connections should finish their requests and close.
    graceful: Shared<oneshot::Receiver<()>>,
    /// Resolves when connections should close at once.
    abort: Shared<oneshot::Receiver<()>>,
}

/// Counts a listener's open connections and wakes the shutdown path when none is left.
#[derive(Default)]
struct Tracker {
    active: Cell<usize>,
    idle_waker: RefCell<Option<Waker>>,
}

impl Tracker {
    /// Counts one more connection until the returned guard is dropped.
    fn enter(self: &Rc<Self>) -> ConnectionGuard {
        self.active.set(self.active.get() + 1);
        ConnectionGuard(self.clone())
    }

    /// Resolves once no connection is open.
    fn idle(&self) -> impl Future<Output = ()> + '_ {
        future::poll_fn(move |cx| {
            if self.active.get() == 0 {
                Poll::Ready(())
            } else {
                *self.idle_waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    }
}

/// One open connection, counted in its listener's [`Tracker`].
struct ConnectionGuard(Rc<Tracker>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let active = self.0.active.get();
        debug_assert!(active > 0, "connection count underflow");
        self.0.active.set(active - 1);
        if active == 1 {
            if let Some(waker) = self.0.idle_waker.borrow_mut().take() {
                waker.wake();
            }
        }
    }
}

/// What a listener routes requests to.
struct Dispatch {
    /// tonic's router. A `RefCell` because tower's `call` takes `&mut self` while hyper's
    /// takes `&self`; the borrow lasts only for the synchronous `call`.
    grpc: RefCell<Routes>,
    http: Rc<dyn HttpHandler>,
    http_body_max: usize,
}

/// hyper's view of a [`Dispatch`]: one per connection, with the common name of the client
/// certificate the connection's TLS handshake verified, if any.
struct DispatchService(Rc<Dispatch>, Option<ClientCommonName>);

/// The subject common name of the verified certificate a client presented on its TLS
/// connection: put in the extensions of every gRPC request on that connection (etcd takes it
/// as the user name when a request carries no auth token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCommonName(pub std::sync::Arc<str>);

/// The common name of the client certificate `connection` verified (rustls exposes the peer
/// certificates only once the verifier accepted them).
fn client_common_name(connection: &rustls::ServerConnection) -> Option<ClientCommonName> {
    let leaf = connection.peer_certificates()?.first()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let name = certificate
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?;
    Some(ClientCommonName(name.into()))
}

/// tonic's response future (its type is not exported) or the plain-HTTP handler's.
type DispatchFuture = Either<
    futures::future::Map<
        <Routes as Service<http::Request<Incoming>>>::Future,
        fn(Result<http::Response<Body>, Infallible>) -> Result<http::Response<Body>, Infallible>,
    >,
    LocalBoxFuture<'static, Result<http::Response<Body>, Infallible>>,
>;

impl hyper::service::Service<http::Request<Incoming>> for DispatchService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = DispatchFuture;

    fn call(&self, mut request: http::Request<Incoming>) -> Self::Future {
        if is_grpc(&request) {
            if let Some(name) = &self.1 {
                request.extensions_mut().insert(name.clone());
            }
            // tonic's router is always ready (axum's `Router::poll_ready` returns `Ready`), so
            // calling it without `poll_ready` keeps tower's contract.
            let rewrite: fn(_) -> _ =
                |result: Result<http::Response<Body>, Infallible>| result.map(grpc_go_size_error);
            Either::Left(self.0.grpc.borrow_mut().call(request).map(rewrite))
        } else {
            let dispatch = self.0.clone();
            Either::Right(Box::pin(
                async move { Ok(dispatch.http_request(request).await) },
            ))
        }
    }
}

impl Dispatch {
    /// Reads a plain-HTTP request's body within the limit and hands the request to the
    /// handler.
    async fn http_request(&self, request: http::Request<Incoming>) -> http::Response<Body> {
        let (parts, body) = request.into_parts();
        let body = match Limited::new(body, self.http_body_max).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                let too_large = e
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some();
                let (status, text) = if too_large {
                    (
                        http::StatusCode::PAYLOAD_TOO_LARGE,
                        "request body too large\n",
                    )
                } else {
                    (
                        http::StatusCode::BAD_REQUEST,
                        "request body could not be read\n",
                    )
                };
                let mut response = http::Response::new(Body::new(Full::new(Bytes::from(text))));
                *response.status_mut() = status;
                return response;
            }
        };
        self.http
            .handle_streaming(http::Request::from_parts(parts, body))
            .await
    }
}

/// tonic refuses a message above the decode limit with `OutOfRange` "Error, decoded message
/// length too large: found N bytes, the limit is: M bytes"; etcd's gRPC library (grpc-go)
/// answers the same condition with `ResourceExhausted` "grpc: received message larger than max
/// (N vs. M)". Clients and tests look at both, so a trailers-only response carrying tonic's
/// error is rewritten to grpc-go's code and text. Every other response passes untouched.
fn grpc_go_size_error(mut response: http::Response<Body>) -> http::Response<Body> {
    const TONIC_PREFIX: &str = "Error, decoded message length too large: found ";
    let headers = response.headers();
    if headers.get("grpc-status").map(|v| v.as_bytes()) != Some(b"11") {
        return response;
    }
    let Some(message) = headers
        .get("grpc-message")
        .map(|v| percent_decode(v.as_bytes()))
    else {
        return response;
    };
    let Some(rest) = message.strip_prefix(TONIC_PREFIX) else {
        return response;
    };
    let numbers: Vec<&str> = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|part| !part.is_empty())
        .collect();
    let [found, limit] = numbers[..] else {
        return response;
    };
    let text = format!("grpc: received message larger than max ({found} vs. {limit})");
    let headers = response.headers_mut();
    headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    if let Ok(value) = http::HeaderValue::from_str(&text) {
        headers.insert("grpc-message", value);
    }
    response
}

/// Decodes gRPC's percent-encoded `grpc-message` (invalid escapes are kept as they are).
fn percent_decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `request` is a gRPC call: gRPC's content types are `application/grpc` and
/// `application/grpc+<codec>`.
fn is_grpc<B>(request: &http::Request<B>) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}
