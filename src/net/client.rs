//! A gRPC client transport for glommio executors: one HTTP/2 connection to one peer, usable
//! by tonic's generated clients (`PeerClient::new(channel)`).
//!
//! # Why not tonic's own `Channel`
//!
//! tonic's `transport::Channel` dials with tokio's sockets, sleeps on tokio's timers and spawns
//! its connection task on the tokio runtime, so it works only inside a tokio runtime. The
//! server process runs no tokio runtime: every task runs on a glommio executor, one per core.
//! This module builds the same thing from the pieces the server side already uses:
//!
//! - [`connect`] opens a TCP connection with glommio's [`TcpStream`], optionally runs a TLS
//!   handshake (rustls through futures-rustls), and starts HTTP/2 with prior knowledge (h2c
//!   when plaintext) through hyper's client, with glommio as hyper's runtime: [`LocalExec`]
//!   spawns hyper's tasks and [`GlommioTimer`] drives its keep-alive pings.
//! - The connection's driver task is spawned on the calling executor with
//!   `glommio::spawn_local` and runs until the connection ends. It ends when the peer closes
//!   the connection, when the transport fails, or when the last [`GrpcChannel`] handle is
//!   dropped.
//! - [`GrpcChannel`] is hyper's request sender behind the `tower` service interface tonic's
//!   clients expect. Clones share the connection, and calls over it run as concurrent HTTP/2
//!   streams.
//!
//! # Data flow
//!
//! A tonic client encodes a request into a [`tonic::body::Body`] and calls the channel. The
//! channel fills in the URI's scheme and authority, which tonic leaves out, and hands the
//! request to hyper. hyper queues it for the driver task, which writes it to the socket and
//! later delivers the response; the response body is wrapped in [`ResponseBody`] so that
//! transport failures reach tonic as a [`tonic::Status`].
//!
//! # Failures and reconnection
//!
//! A channel never reconnects by itself: a peer member that restarted is a new connection,
//! and the caller decides when to dial again (with its own backoff). How failures reach the
//! caller, and how to tell that a channel is spent, is described on [`GrpcChannel`].

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::{self, BoxFuture, Either};
use glommio::net::TcpStream;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use rustls::pki_types::ServerName;
use tonic::body::Body;
use tonic::Status;
use tower_service::Service;

use super::io::HyperIo;
use super::rt::{GlommioTimer, LocalExec};

/// The default for [`ClientOptions::connect_timeout`].
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);

/// The default for [`ClientOptions::http2_keepalive_interval`].
pub const HTTP2_KEEPALIVE_INTERVAL_DEFAULT: Duration = Duration::from_secs(30);

/// The default for [`ClientOptions::http2_keepalive_timeout`].
pub const HTTP2_KEEPALIVE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(20);

/// The ALPN protocol identifier of HTTP/2 over TLS (RFC 9113, section 3.2).
const ALPN_H2: &[u8] = b"h2";

/// How to connect to a peer and look after the connection.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// How long [`connect`] may take altogether: the TCP connect, the TLS handshake (if any)
    /// and the start of HTTP/2. A peer that does not answer in time yields
    /// [`ConnectError::Timeout`]. A zero duration times out at once. Default
    /// [`CONNECT_TIMEOUT_DEFAULT`] (5 s).
    pub connect_timeout: Duration,
    /// How long the connection may go without receiving a frame before the client sends an
    /// HTTP/2 PING; `None` never pings. Pings find a peer that vanished without closing the
    /// connection (a crashed machine, a cut cable): without them, a long-lived stream waits on
    /// it until TCP gives up, which takes many minutes. Default
    /// [`HTTP2_KEEPALIVE_INTERVAL_DEFAULT`] (30 s).
    pub http2_keepalive_interval: Option<Duration>,
    /// How long a PING may go unanswered before the connection is closed and its calls fail
    /// with [`tonic::Code::Unavailable`]. Default [`HTTP2_KEEPALIVE_TIMEOUT_DEFAULT`] (20 s).
    pub http2_keepalive_timeout: Duration,
    /// Whether to ping also while no call is open. Default `false`: an idle connection costs
    /// nothing, and the next call finds out soon enough if it is dead.
    pub http2_keepalive_while_idle: bool,
    /// The HTTP/2 per-stream flow-control window for responses; `None` keeps hyper's default.
    pub http2_initial_stream_window_size: Option<u32>,
    /// The HTTP/2 per-connection flow-control window for responses; `None` keeps hyper's
    /// default.
    pub http2_initial_connection_window_size: Option<u32>,
    /// The largest HTTP/2 frame payload the client accepts; `None` keeps the protocol's
    /// initial value (16 KiB).
    pub http2_max_frame_size: Option<u32>,
    /// TLS for the connection; `None` speaks plaintext HTTP/2 (h2c with prior knowledge).
    /// The configuration should offer ALPN `h2` (`alpn_protocols = vec![b"h2".to_vec()]`):
    /// Keel's listeners also speak HTTP/1.1, and a peer that picks HTTP/1.1 is refused with
    /// [`ConnectError::Tls`]. A peer that picks no protocol is spoken to in HTTP/2 anyway, as
    /// in plaintext. Default `None`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The name the peer's certificate must carry; `None` uses the IP address connected to.
    /// Only used with [`ClientOptions::tls`]. Default `None`.
    pub tls_server_name: Option<ServerName<'static>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            http2_keepalive_interval: Some(HTTP2_KEEPALIVE_INTERVAL_DEFAULT),
            http2_keepalive_timeout: HTTP2_KEEPALIVE_TIMEOUT_DEFAULT,
            http2_keepalive_while_idle: false,
            http2_initial_stream_window_size: None,
            http2_initial_connection_window_size: None,
            http2_max_frame_size: None,
            tls: None,
            tls_server_name: None,
        }
    }
}

/// Why [`connect`] could not open a channel. Every variant is worth retrying later with a
/// backoff, except a [`ConnectError::Tls`] caused by a wrong configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Nothing listens at the address: the peer is down or restarting, or the address is
    /// wrong.
    #[error("connection to {addr} refused: nothing listens there (is the peer running?)")]
    Refused {
        /// The address dialed.
        addr: SocketAddr,
        /// The operating system's error.
        source: io::Error,
    },
    /// The peer did not complete the connection within [`ClientOptions::connect_timeout`]:
    /// it may be down, overloaded or unreachable.
    #[error(
        "connecting to {addr} timed out after {timeout:?}; the peer may be down or unreachable"
    )]
    Timeout {
        /// The address dialed.
        addr: SocketAddr,
        /// The limit that ran out.
        timeout: Duration,
    },
    /// The TCP connection could not be opened for another reason (no route to the host, out
    /// of file descriptors, ...).
    #[error("cannot connect to {addr}: {source}")]
    Io {
        /// The address dialed.
        addr: SocketAddr,
        /// The operating system's error.
        source: io::Error,
    },
    /// The TLS handshake failed (the peer's certificate was not trusted or does not carry
    /// the expected name, the peer wanted a client certificate, the peer chose HTTP/1.1, ...).
    #[error(
        "TLS handshake with {addr} failed: {}",
        super::tls_verify::rejection_reason(.source)
    )]
    Tls {
        /// The address dialed.
        addr: SocketAddr,
        /// What went wrong; rustls' error is inside when rustls found it.
        source: io::Error,
    },
    /// The HTTP/2 connection could not be started over the open connection.
    #[error("HTTP/2 handshake with {addr} failed: {source}")]
    Handshake {
        /// The address dialed.
        addr: SocketAddr,
        /// hyper's error.
        source: hyper::Error,
    },
}

/// Opens an HTTP/2 connection to the gRPC server at `addr` and returns a channel for tonic's
/// generated clients, e.g. `PeerClient::new(channel)`.
///
/// The connection belongs to the calling executor: its driver task runs there until the
/// connection ends, so the channel should be used on this executor too. The whole attempt
/// (TCP, TLS, HTTP/2) is bounded by [`ClientOptions::connect_timeout`].
///
/// HTTP/2 needs no answer from the server before the first request, so a successful
/// `connect` shows only that the peer accepted the TCP connection (and completed TLS, if
/// any); a server that then says nothing is found by the first call, through its deadline or
/// keep-alive pings.
///
/// # Panics
///
/// Panics when called outside a glommio executor, as every glommio I/O call does.
pub async fn connect(
    addr: SocketAddr,
    options: &ClientOptions,
) -> Result<GrpcChannel, ConnectError> {
    let deadline = glommio::timer::Timer::new(options.connect_timeout);
    // The deadline is polled first, so that a zero timeout fails without touching the
    // network, and an attempt that finishes on the same poll as the deadline still fails:
    // the limit is the limit.
    match future::select(deadline, pin!(open(addr, options))).await {
        Either::Left((_, _)) => Err(ConnectError::Timeout {
            addr,
            timeout: options.connect_timeout,
        }),
        Either::Right((result, _)) => result,
    }
}

/// The body of [`connect`], without its deadline. Dropping it mid-way closes the socket.
async fn open(addr: SocketAddr, options: &ClientOptions) -> Result<GrpcChannel, ConnectError> {
    let stream = TcpStream::connect(addr).await.map_err(|e| {
        let source = io::Error::from(e);
        match source.kind() {
            io::ErrorKind::ConnectionRefused => ConnectError::Refused { addr, source },
            io::ErrorKind::TimedOut => ConnectError::Timeout {
                addr,
                timeout: options.connect_timeout,
            },
            _ => ConnectError::Io { addr, source },
        }
    })?;
    // gRPC messages are written whole; Nagle's algorithm would only hold back the last
    // segment of each message waiting for an acknowledgement.
    stream.set_nodelay(true).map_err(|e| ConnectError::Io {
        addr,
        source: e.into(),
    })?;

    let scheme;
    let sender = match &options.tls {
        None => {
            scheme = http::uri::Scheme::HTTP;
            start_http2(addr, stream, options).await?
        }
        Some(config) => {
            scheme = http::uri::Scheme::HTTPS;
            let server_name = options
                .tls_server_name
                .clone()
                .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
            let connector = futures_rustls::TlsConnector::from(config.clone());
            let stream = connector
                .connect(server_name, stream)
                .await
                .map_err(|source| ConnectError::Tls { addr, source })?;
            if let Some(protocol) = stream.get_ref().1.alpn_protocol() {
                if protocol != ALPN_H2 {
                    let chosen = String::from_utf8_lossy(protocol).into_owned();
                    return Err(ConnectError::Tls {
                        addr,
                        source: io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("the peer chose protocol {chosen:?} over ALPN, not h2"),
                        ),
                    });
                }
            }
            start_http2(addr, stream, options).await?
        }
    };

    Ok(GrpcChannel {
        sender,
        peer: addr,
        scheme,
        authority: authority(addr),
    })
}

/// The URI authority for `addr`: `ip:port`, with an IPv6 address in brackets and without its
/// scope ID, which URIs cannot carry. Keel's servers do not look at the authority; HTTP/2
/// only requires one to be present.
fn authority(addr: SocketAddr) -> http::uri::Authority {
    let text = match addr.ip() {
        std::net::IpAddr::V4(ip) => format!("{ip}:{}", addr.port()),
        std::net::IpAddr::V6(ip) => format!("[{ip}]:{}", addr.port()),
    };
    http::uri::Authority::try_from(text).unwrap_or_else(|e| {
        debug_assert!(false, "socket address {addr} is not a URI authority: {e}");
        http::uri::Authority::from_static("localhost")
    })
}

/// Starts HTTP/2 over `stream` and spawns the connection's driver task on this executor.
async fn start_http2<IO>(
    addr: SocketAddr,
    stream: IO,
    options: &ClientOptions,
) -> Result<http2::SendRequest<Body>, ConnectError>
where
    IO: futures::io::AsyncRead + futures::io::AsyncWrite + Unpin + 'static,
{
    // The protocol is known from the start (the client chose it), so the preface watch that
    // `HyperIo` runs for servers is switched off.
    let io = HyperIo::new(stream, Rc::new(Cell::new(true)));
    let mut builder = http2::Builder::new(LocalExec);
    builder
        .timer(GlommioTimer)
        .keep_alive_interval(options.http2_keepalive_interval)
        .keep_alive_timeout(options.http2_keepalive_timeout)
        .keep_alive_while_idle(options.http2_keepalive_while_idle)
        .initial_stream_window_size(options.http2_initial_stream_window_size)
        .initial_connection_window_size(options.http2_initial_connection_window_size)
        .max_frame_size(options.http2_max_frame_size);
    let (sender, connection) = builder
        .handshake::<_, Body>(io)
        .await
        .map_err(|source| ConnectError::Handshake { addr, source })?;
    glommio::spawn_local(async move {
        match connection.await {
            Ok(()) => tracing::debug!(peer = %addr, "client connection closed"),
            // The calls in flight see the failure themselves; this only records it.
            Err(e) => tracing::debug!(peer = %addr, error = %e, "client connection failed"),
        }
    })
    .detach();
    Ok(sender)
}

/// One HTTP/2 connection to a gRPC server, as the transport of tonic's generated clients.
///
/// Made by [`connect`]. Clones are cheap and share the connection; each call is one HTTP/2
/// stream on it. The connection's driver runs on the executor that connected, so the channel
/// is meant to be used there.
///
/// # Deadlines
///
/// The channel gives up on a call only when the connection fails, including when keep-alive
/// pings go unanswered. A peer that keeps the connection healthy but never answers one call
/// holds that call forever, so every call needs a deadline of its own: race it against a
/// glommio timer. Dropping a call's future resets its stream and leaves the connection
/// usable.
///
/// # Failures
///
/// A channel never reconnects. Once [`GrpcChannel::is_closed`] is true, calls fail at once
/// and the caller should [`connect`] again. A transport failure (the connection closed, was
/// reset, or stopped answering pings) fails the calls on it with
/// [`tonic::Code::Unavailable`]; a [`tonic::Status`] from tonic's own request encoding is
/// passed on unchanged. tonic's generated clients report an error from `poll_ready` (a call
/// on a channel already closed) as [`tonic::Code::Unknown`] with the text "Service was not
/// ready: ...", so a caller decides about reconnecting with [`GrpcChannel::is_closed`]
/// rather than by the code.
#[derive(Clone, Debug)]
pub struct GrpcChannel {
    sender: http2::SendRequest<Body>,
    /// The address connected to, for error messages.
    peer: SocketAddr,
    /// `http`, or `https` over TLS; filled into request URIs.
    scheme: http::uri::Scheme,
    /// The peer's address as a URI authority; filled into request URIs.
    authority: http::uri::Authority,
}

impl GrpcChannel {
    /// Whether the connection has ended (closed by either side or failed). A closed channel
    /// never opens again; [`connect`] anew.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// The address this channel is connected to.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }
}

impl Service<http::Request<Body>> for GrpcChannel {
    type Response = http::Response<ResponseBody>;
    type Error = Status;
    type Future = ResponseFuture;

    /// Ready at once while the connection is open, and an [`tonic::Code::Unavailable`] error
    /// once it has ended. HTTP/2 has no per-request admission to wait for here: hyper queues
    /// requests beyond the peer's stream limit itself.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        self.sender
            .poll_ready(cx)
            .map_err(|e| transport_status(self.peer, e))
    }

    fn call(&mut self, mut request: http::Request<Body>) -> ResponseFuture {
        // tonic's generated clients send only a path; HTTP/2 needs `:scheme` and `:authority`
        // too. A URI that already has them (a client made `with_origin`) is kept.
        if request.uri().scheme().is_none() || request.uri().authority().is_none() {
            let mut parts = request.uri().clone().into_parts();
            parts.scheme = Some(self.scheme.clone());
            parts.authority = Some(self.authority.clone());
            if parts.path_and_query.is_none() {
                parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
            }
            match http::Uri::from_parts(parts) {
                Ok(uri) => *request.uri_mut() = uri,
                Err(e) => {
                    let status = Status::internal(format!("cannot build the request URI: {e}"));
                    return ResponseFuture(Box::pin(future::ready(Err(status))));
                }
            }
        }
        let peer = self.peer;
        let response = self.sender.send_request(request);
        ResponseFuture(Box::pin(async move {
            match response.await {
                Ok(response) => Ok(response.map(|inner| ResponseBody { inner, peer })),
                Err(e) => Err(transport_status(peer, e)),
            }
        }))
    }
}

/// The response to one call on a [`GrpcChannel`]: resolves when the response headers arrive,
/// or fails with a [`tonic::Status`] when the transport fails first.
pub struct ResponseFuture(BoxFuture<'static, Result<http::Response<ResponseBody>, Status>>);

impl Future for ResponseFuture {
    type Output = Result<http::Response<ResponseBody>, Status>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// The body of a response on a [`GrpcChannel`]: hyper's body, with transport failures turned
/// into [`tonic::Status`] (see [`GrpcChannel`], "Failures", for the codes).
///
/// tonic would map hyper's errors itself, but how depends on which of tonic's features the
/// build happens to switch on (its `server` and `channel` features add the mappings); without
/// them every transport failure would become [`tonic::Code::Unknown`]. Mapping here gives the
/// same codes in every build.
#[derive(Debug)]
pub struct ResponseBody {
    inner: Incoming,
    /// The address connected to, for error messages.
    peer: SocketAddr,
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let peer = self.peer;
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map(|frame| frame.map(|result| result.map_err(|e| transport_status(peer, e))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Turns a hyper error on the connection to `peer` into the status a caller sees.
///
/// A [`tonic::Status`] inside the error (tonic's request encoder failed, for example on a
/// message over its size limit) is passed on as it is. Everything else is a transport
/// failure: the connection closed, was reset, or stopped answering pings. gRPC's answer to a
/// transport failure is UNAVAILABLE (retry, reconnecting if the channel is closed), which is
/// what the caller gets, with hyper's error as the source.
fn transport_status(peer: SocketAddr, error: hyper::Error) -> Status {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = cause {
        if let Some(status) = e.downcast_ref::<Status>() {
            return Status::new(status.code(), status.message());
        }
        cause = e.source();
    }
    let what = if error.is_timeout() {
        "the peer stopped answering keep-alive pings"
    } else if error.is_canceled() || error.is_closed() {
        "the connection is closed"
    } else {
        "the connection failed"
    };
    let mut status = Status::unavailable(format!("{what} (peer {peer}): {error}"));
    status.set_source(Arc::new(error));
    status
}
