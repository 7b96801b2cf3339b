//! The glommio gRPC client (`keel::net::connect`) calling `keel::net::serve` over loopback.
//!
//! Server and client each run on their own glommio executor thread, as two Keel members
//! would; no tokio runtime runs anywhere in these tests. The service is a small test
//! implementation of Keel's peer protocol: `Hello` echoes the caller, and the
//! client-streaming `Raft` counts the raft messages it receives. Every wait is bounded, so a
//! broken client fails a test instead of hanging it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::future::{self, Either, LocalBoxFuture};
use futures::SinkExt;
use keel::net::{bind_reuseport, connect, serve, ClientOptions, ConnectError, HttpHandler};
use keel::net::{GrpcChannel, ServeOptions};
use keel_proto::keelpeerpb::peer_client::PeerClient;
use keel_proto::keelpeerpb::peer_server::{Peer, PeerServer};
use keel_proto::keelpeerpb::{
    HelloRequest, HelloResponse, MemberInfo, RaftBatch, RaftMessage, RaftStreamSummary,
    SnapshotChunk, SnapshotReceived,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tonic::{Code, Request, Response, Status, Streaming};

/// Every test gives up after this long instead of hanging.
const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How many batches the streaming test sends, and how many raft messages each carries.
const RAFT_BATCHES: u64 = 1000;
const RAFT_MESSAGES_PER_BATCH: u64 = 3;

/// The test CA, and the server certificate it signed for `localhost` and `127.0.0.1`.
const CA_PEM: &[u8] = include_bytes!("net_tls/ca.pem");
const SERVER_PEM: &[u8] = include_bytes!("net_tls/server.pem");
const SERVER_KEY: &[u8] = include_bytes!("net_tls/server.key");

/// A peer service whose `Hello` echoes the caller's identity and whose `Raft` counts the raft
/// messages on the stream until the client closes it.
struct TestPeer;

#[tonic::async_trait]
impl Peer for TestPeer {
    async fn raft(
        &self,
        request: Request<Streaming<RaftBatch>>,
    ) -> Result<Response<RaftStreamSummary>, Status> {
        let mut stream = request.into_inner();
        let mut messages_received = 0;
        while let Some(batch) = stream.message().await? {
            messages_received += batch.messages.len() as u64;
        }
        Ok(Response::new(RaftStreamSummary { messages_received }))
    }

    async fn snapshot(
        &self,
        _: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<SnapshotReceived>, Status> {
        Err(Status::unimplemented("test service"))
    }

    async fn hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloResponse>, Status> {
        let request = request.into_inner();
        Ok(Response::new(HelloResponse {
            cluster_id: request.cluster_id,
            member: request.sender,
            protocol_version: request.protocol_version,
            server_version: request.cluster_token,
        }))
    }

    async fn lease(
        &self,
        _request: Request<keel_proto::keelpeerpb::LeaseRequest>,
    ) -> Result<Response<keel_proto::keelpeerpb::LeaseResponse>, Status> {
        Err(Status::unimplemented("not used by these tests"))
    }

    async fn promote(
        &self,
        _request: Request<keel_proto::keelpeerpb::PromoteRequest>,
    ) -> Result<Response<keel_proto::keelpeerpb::PromoteResponse>, Status> {
        Err(Status::unimplemented("not used by these tests"))
    }

    async fn members(
        &self,
        _request: Request<keel_proto::keelpeerpb::MembersRequest>,
    ) -> Result<Response<keel_proto::keelpeerpb::MembersResponse>, Status> {
        Err(Status::unimplemented("not used by these tests"))
    }
}

/// Answers every plain-HTTP request with 404; these tests speak gRPC only.
struct NoHttp;

impl HttpHandler for NoHttp {
    fn handle(&self, _: http::Request<Bytes>) -> LocalBoxFuture<'static, http::Response<String>> {
        let mut response = http::Response::new("not found\n".to_string());
        *response.status_mut() = http::StatusCode::NOT_FOUND;
        Box::pin(async move { response })
    }
}

/// A peer server on its own glommio executor thread.
struct TestServer {
    addr: SocketAddr,
    /// Asks the server to stop; taken by [`TestServer::control`] or by `Drop`.
    shutdown: Option<oneshot::Sender<()>>,
    /// Resolves once `serve` has returned.
    stopped: Option<oneshot::Receiver<std::io::Result<()>>>,
    thread: Option<glommio::ExecutorJoinHandle<()>>,
}

/// Stops a [`TestServer`] from another executor.
struct ServerControl {
    shutdown: oneshot::Sender<()>,
    stopped: oneshot::Receiver<std::io::Result<()>>,
}

impl ServerControl {
    /// Asks the server to stop and waits until `serve` has returned.
    async fn stop(self) {
        let _ = self.shutdown.send(());
        let served = self
            .stopped
            .await
            .expect("the server thread reports its end");
        served.expect("serve ends cleanly");
    }
}

impl TestServer {
    fn start(options: ServeOptions) -> Self {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let (stopped_tx, stopped_rx) = oneshot::channel();
        let thread = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .name("client-test-server")
            .spawn(move || async move {
                let served = async {
                    let listener = bind_reuseport("127.0.0.1:0".parse().unwrap())?;
                    addr_tx.send(listener.local_addr()?).unwrap();
                    let grpc = tonic::service::Routes::new(PeerServer::new(TestPeer));
                    serve(listener, grpc, Rc::new(NoHttp), options, async {
                        let _ = shutdown_rx.await;
                    })
                    .await
                }
                .await;
                let _ = stopped_tx.send(served);
            })
            .expect("start the server executor");
        let addr = addr_rx.recv_timeout(TEST_TIMEOUT).expect("server address");
        Self {
            addr,
            shutdown: Some(shutdown_tx),
            stopped: Some(stopped_rx),
            thread: Some(thread),
        }
    }

    /// Hands the means to stop the server to a client executor.
    fn control(&mut self) -> ServerControl {
        ServerControl {
            shutdown: self.shutdown.take().expect("server not yet stopped"),
            stopped: self.stopped.take().expect("server not yet stopped"),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        // `serve` returns within its shutdown timeout once asked to stop.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `client` on a fresh glommio executor thread and returns its output, re-raising its
/// panic if it panicked. The client fails with "test timed out" after [`TEST_TIMEOUT`].
fn on_executor<T, F, Fut>(client: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let thread = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("client-test-client")
        .spawn(move || async move {
            let output = with_timeout(client()).await;
            let _ = done_tx.send(());
            output
        })
        .expect("start the client executor");
    // The executor's own timeout ends the client; this bounds the thread even if the
    // executor itself got stuck. A panic drops `done_tx`, which ends the wait too.
    if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
        done_rx.recv_timeout(TEST_TIMEOUT + Duration::from_secs(10))
    {
        panic!("the client executor did not finish in time");
    }
    match thread.join() {
        Ok(output) => output,
        Err(glommio::GlommioError::BuilderError(glommio::BuilderErrorKind::ThreadPanic(
            payload,
        ))) => std::panic::resume_unwind(payload),
        Err(e) => panic!("client executor failed: {e}"),
    }
}

/// Fails the test when `f` does not finish within [`TEST_TIMEOUT`].
async fn with_timeout<F: Future>(f: F) -> F::Output {
    match future::select(pin!(f), glommio::timer::Timer::new(TEST_TIMEOUT)).await {
        Either::Left((output, _)) => output,
        Either::Right(_) => panic!("test timed out"),
    }
}

/// Client options for loopback: a short connect timeout, so a broken connect fails fast.
fn loopback_options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

fn hello_request(name: &str) -> HelloRequest {
    HelloRequest {
        cluster_token: format!("token-{name}"),
        cluster_id: 7,
        sender: Some(MemberInfo {
            member_id: 42,
            name: name.to_string(),
            ..Default::default()
        }),
        expected_member_id: 0,
        protocol_version: 1,
        server_version: "test".to_string(),
    }
}

/// Calls `Hello` and checks that the server echoed the caller.
async fn hello(channel: &GrpcChannel, name: &str) -> Result<(), Status> {
    let mut client = PeerClient::new(channel.clone());
    let response = client.hello(hello_request(name)).await?.into_inner();
    assert_eq!(response.cluster_id, 7);
    assert_eq!(response.server_version, format!("token-{name}"));
    assert_eq!(response.member.expect("member echoed").name, name);
    Ok(())
}

fn raft_batch(index: u64, payload_bytes: usize) -> RaftBatch {
    RaftBatch {
        cluster_id: 7,
        from_member_id: 1,
        to_member_id: 2,
        messages: (0..RAFT_MESSAGES_PER_BATCH)
            .map(|n| RaftMessage {
                message: vec![(index + n) as u8; payload_bytes],
            })
            .collect(),
    }
}

/// Waits until `channel` reports its connection closed.
async fn until_closed(channel: &GrpcChannel) {
    while !channel.is_closed() {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn unary_and_client_streaming_calls() {
    let server = TestServer::start(ServeOptions::default());
    let addr = server.addr;
    on_executor(move || async move {
        let channel = connect(addr, &loopback_options()).await.expect("connect");
        assert!(!channel.is_closed());
        assert_eq!(channel.peer_addr(), addr);

        hello(&channel, "first").await.expect("unary call");

        // Clones share the connection; their calls run as concurrent streams.
        let calls = (0..10).map(|n| {
            let channel = channel.clone();
            async move { hello(&channel, &format!("member-{n}")).await }
        });
        for result in future::join_all(calls).await {
            result.expect("concurrent unary call");
        }

        // A client-streaming call fed from a bounded channel by another task, as the raft
        // transport will feed it. One batch carries ~1 MiB per message, more than HTTP/2's
        // initial flow-control windows, so flow control must do its part.
        let (mut batches_tx, batches_rx) = mpsc::channel::<RaftBatch>(16);
        let sender = glommio::spawn_local(async move {
            for index in 0..RAFT_BATCHES {
                let payload_bytes = if index == RAFT_BATCHES / 2 {
                    1024 * 1024
                } else {
                    64
                };
                batches_tx
                    .send(raft_batch(index, payload_bytes))
                    .await
                    .expect("the call reads the request stream");
            }
            // Dropping the sender ends the request stream, and the server then answers.
        });
        let mut client = PeerClient::new(channel.clone());
        let summary = client
            .raft(batches_rx)
            .await
            .expect("client-streaming call")
            .into_inner();
        sender.await;
        assert_eq!(
            summary.messages_received,
            RAFT_BATCHES * RAFT_MESSAGES_PER_BATCH
        );

        // The connection is still good for more calls.
        hello(&channel, "after-stream").await.expect("unary call");
        assert!(!channel.is_closed());
    });
}

#[test]
fn calls_fail_after_the_server_stops() {
    let mut server = TestServer::start(ServeOptions {
        // An open stream holds up the graceful shutdown until this ends it.
        shutdown_timeout: Duration::from_millis(200),
        ..Default::default()
    });
    let addr = server.addr;
    let control = server.control();
    on_executor(move || async move {
        let channel = connect(addr, &loopback_options()).await.expect("connect");
        hello(&channel, "before").await.expect("unary call");

        // A raft stream the client never finishes, like a member's long-lived stream.
        let (mut batches_tx, batches_rx) = mpsc::channel::<RaftBatch>(16);
        let mut client = PeerClient::new(channel.clone());
        let in_flight = glommio::spawn_local(async move { client.raft(batches_rx).await });
        batches_tx.send(raft_batch(0, 16)).await.unwrap();
        // Let the stream task send its request first; requests leave in order, so once the
        // following call is answered the server has seen the stream open.
        glommio::timer::sleep(Duration::from_millis(10)).await;
        hello(&channel, "during").await.expect("unary call");

        let stopping = Instant::now();
        control.stop().await;
        let status = in_flight
            .await
            .expect_err("an open stream fails when its server goes away");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            stopping.elapsed() < Duration::from_secs(5),
            "the failure took {:?}",
            stopping.elapsed()
        );
        drop(batches_tx);

        until_closed(&channel).await;
        let status = hello(&channel, "after")
            .await
            .expect_err("a call on a closed channel fails");
        // tonic's generated clients report a `poll_ready` failure as UNKNOWN ("Service was
        // not ready"), with the channel's UNAVAILABLE status in the text.
        assert!(
            matches!(status.code(), Code::Unknown | Code::Unavailable),
            "{status:?}"
        );
        assert!(status.message().contains("closed"), "{status:?}");

        // Nothing listens on the port any more.
        match connect(addr, &loopback_options()).await {
            Err(ConnectError::Refused { addr: refused, .. }) => assert_eq!(refused, addr),
            other => panic!("expected a refused connection, got {other:?}"),
        }
    });
}

#[test]
fn connecting_to_a_closed_port_is_refused_quickly() {
    // The kernel picks a free port; once the listener is closed, nothing listens there.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    on_executor(move || async move {
        let started = Instant::now();
        let error = connect(addr, &loopback_options())
            .await
            .expect_err("nothing listens");
        assert!(
            matches!(error, ConnectError::Refused { .. }),
            "expected a refused connection, got {error:?}"
        );
        assert!(error.to_string().contains("refused"), "{error}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "refusal took {:?}",
            started.elapsed()
        );
    });
}

#[test]
fn a_zero_connect_timeout_times_out() {
    let server = TestServer::start(ServeOptions::default());
    let addr = server.addr;
    on_executor(move || async move {
        let options = ClientOptions {
            connect_timeout: Duration::ZERO,
            ..Default::default()
        };
        match connect(addr, &options).await {
            Err(ConnectError::Timeout { timeout, .. }) => assert_eq!(timeout, Duration::ZERO),
            other => panic!("expected a timeout, got {other:?}"),
        }
    });
}

#[test]
fn a_silent_peer_fails_calls_through_keepalive() {
    // A listener that never accepts: the kernel completes TCP handshakes into its backlog, so
    // the client connects and sends, but nothing ever answers, as with a hung peer.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    on_executor(move || async move {
        let options = ClientOptions {
            http2_keepalive_interval: Some(Duration::from_millis(100)),
            http2_keepalive_timeout: Duration::from_millis(200),
            ..loopback_options()
        };
        let channel = connect(addr, &options).await.expect("connect");
        let started = Instant::now();
        let status = hello(&channel, "silent")
            .await
            .expect_err("an unanswered call fails once pings go unanswered");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(status.message().contains("keep-alive"), "{status:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the failure took {:?}",
            started.elapsed()
        );
        until_closed(&channel).await;
    });
    drop(listener);
}

/// A rustls client configuration that trusts the test CA and offers HTTP/2.
fn tls_client_config() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(CA_PEM) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

#[test]
fn tls_calls_and_certificate_checks() {
    let tls = keel::net::server_config(SERVER_PEM, SERVER_KEY, None).unwrap();
    let server = TestServer::start(ServeOptions {
        tls: Some(tls),
        ..Default::default()
    });
    let addr = server.addr;
    on_executor(move || async move {
        // The certificate names 127.0.0.1, which is what the client checks by default.
        let options = ClientOptions {
            tls: Some(tls_client_config()),
            ..loopback_options()
        };
        let channel = connect(addr, &options).await.expect("TLS connect");
        hello(&channel, "tls").await.expect("unary call over TLS");

        // The same with the certificate's DNS name.
        let by_name = ClientOptions {
            tls_server_name: Some(ServerName::try_from("localhost").unwrap()),
            ..options.clone()
        };
        let channel = connect(addr, &by_name).await.expect("TLS connect");
        hello(&channel, "tls-by-name").await.expect("unary call");

        // A name the certificate does not carry is refused during the handshake.
        let wrong_name = ClientOptions {
            tls_server_name: Some(ServerName::try_from("example.com").unwrap()),
            ..options.clone()
        };
        match connect(addr, &wrong_name).await {
            Err(ConnectError::Tls { .. }) => {}
            other => panic!("expected a TLS error, got {other:?}"),
        }

        // Plaintext HTTP/2 to a TLS port connects (TCP) but its calls fail; they must not
        // hang.
        let channel = connect(addr, &loopback_options()).await.expect("connect");
        hello(&channel, "plaintext")
            .await
            .expect_err("plaintext to a TLS port fails");
    });
}
