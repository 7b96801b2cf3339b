//! Serving tonic and plain HTTP on a glommio executor (`keel::net`), driven by tokio clients
//! from the test thread. The server thread runs no tokio runtime.

use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::oneshot;
use futures::future::LocalBoxFuture;
use futures::{Stream, StreamExt};
use keel::net::{bind_reuseport, serve, HttpHandler, ServeOptions};
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::kv_server::{Kv, KvServer};
use keel_proto::etcdserverpb::watch_client::WatchClient;
use keel_proto::etcdserverpb::watch_request::RequestUnion;
use keel_proto::etcdserverpb::watch_server::{Watch, WatchServer};
use keel_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse, WatchCreateRequest,
    WatchRequest, WatchResponse,
};
use keel_proto::mvccpb::{Event, KeyValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

/// Every test gives up after this long instead of hanging.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A KV service whose `Range` echoes the key and whose `Put` waits until the test opens its
/// gate (to hold a request in flight across a shutdown).
#[derive(Default)]
struct EchoKv {
    put_gate: Arc<Mutex<Option<oneshot::Receiver<()>>>>,
}

#[tonic::async_trait]
impl Kv for EchoKv {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let key = request.into_inner().key;
        Ok(Response::new(RangeResponse {
            kvs: vec![KeyValue {
                key,
                ..Default::default()
            }],
            count: 1,
            ..Default::default()
        }))
    }

    async fn put(&self, _: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let gate = self.put_gate.lock().unwrap().take();
        if let Some(gate) = gate {
            let _ = gate.await;
        }
        Ok(Response::new(PutResponse::default()))
    }

    async fn delete_range(
        &self,
        _: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        Err(Status::unimplemented("test service"))
    }

    async fn txn(&self, _: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        Err(Status::unimplemented("test service"))
    }

    async fn compact(
        &self,
        _: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        Err(Status::unimplemented("test service"))
    }
}

/// A watch service that answers each create request with one event carrying its key.
struct EchoWatch;

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for EchoWatch {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<WatchStream>, Status> {
        let mut next_id = 0;
        let responses = request.into_inner().map(move |request| {
            let request = request?;
            let Some(RequestUnion::CreateRequest(create)) = request.request_union else {
                return Err(Status::invalid_argument("only create requests"));
            };
            next_id += 1;
            Ok(WatchResponse {
                watch_id: next_id,
                created: true,
                events: vec![Event {
                    kv: Some(KeyValue {
                        key: create.key,
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            })
        });
        Ok(Response::new(Box::pin(responses)))
    }
}

/// Plain HTTP: `/health`, `/echo` (returns the body) and 404 for the rest.
struct TestHttp;

impl HttpHandler for TestHttp {
    fn handle(
        &self,
        request: http::Request<Bytes>,
    ) -> LocalBoxFuture<'static, http::Response<String>> {
        let response = match request.uri().path() {
            "/health" => http::Response::new("{\"health\":\"true\"}".to_string()),
            "/echo" => http::Response::new(String::from_utf8_lossy(request.body()).into_owned()),
            _ => {
                let mut response = http::Response::new("not found\n".to_string());
                *response.status_mut() = http::StatusCode::NOT_FOUND;
                response
            }
        };
        Box::pin(async move { response })
    }
}

/// A server on its own glommio executor thread.
struct TestServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<glommio::ExecutorJoinHandle<std::io::Result<()>>>,
    put_gate: Arc<Mutex<Option<oneshot::Receiver<()>>>>,
}

impl TestServer {
    fn start(options: ServeOptions) -> Self {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let put_gate: Arc<Mutex<Option<oneshot::Receiver<()>>>> = Arc::default();
        let gate = put_gate.clone();
        let thread = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .name("net-test")
            .spawn(move || async move {
                let listener = bind_reuseport("127.0.0.1:0".parse().unwrap())?;
                addr_tx.send(listener.local_addr()?).unwrap();
                let grpc = tonic::service::Routes::new(KvServer::new(EchoKv { put_gate: gate }))
                    .add_service(WatchServer::new(EchoWatch));
                serve(listener, grpc, Rc::new(TestHttp), options, async {
                    let _ = shutdown_rx.await;
                })
                .await
            })
            .expect("start the server executor");
        let addr = addr_rx.recv_timeout(TEST_TIMEOUT).expect("server address");
        Self {
            addr,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
            put_gate,
        }
    }

    /// Asks the server to stop and waits (off the async runtime) until `serve` returns.
    async fn stop(&mut self) -> std::io::Result<()> {
        let _ = self.shutdown.take().unwrap().send(());
        let thread = self.thread.take().unwrap();
        tokio::task::spawn_blocking(move || thread.join().expect("server thread"))
            .await
            .unwrap()
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sends one raw HTTP/1.1 request and reads the response until the server closes.
async fn http_get(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

/// Reads one HTTP/1.1 response head plus body on a keep-alive connection (enough for the
/// tiny responses here: reads until the `content-length` bytes of the body have arrived).
async fn read_response(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|line| {
                    line.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= head_end + 4 + length {
                return Ok(text);
            }
        }
    }
}

async fn range(client: &mut KvClient<Channel>, key: &[u8]) -> Result<Vec<u8>, Status> {
    let response = client
        .range(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })
        .await?;
    Ok(response.into_inner().kvs.remove(0).key)
}

async fn with_timeout<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test timed out")
}

#[tokio::test]
async fn unary_grpc_and_plain_http_share_one_port() {
    with_timeout(async {
        let mut server = TestServer::start(ServeOptions::default());
        let mut kv = KvClient::new(server.channel().await);
        assert_eq!(range(&mut kv, b"hello").await.unwrap(), b"hello");
        assert_eq!(range(&mut kv, b"again").await.unwrap(), b"again");

        let health = http_get(
            server.addr,
            "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        assert!(health.ends_with("{\"health\":\"true\"}"), "{health}");

        let missing = http_get(
            server.addr,
            "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

        let echo = http_get(
            server.addr,
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nabcde",
        )
        .await;
        assert!(
            echo.starts_with("HTTP/1.1 200") && echo.ends_with("abcde"),
            "{echo}"
        );

        // A gRPC path nobody serves gets gRPC's "unimplemented", not an HTTP error.
        let mut watch_only =
            keel_proto::etcdserverpb::lease_client::LeaseClient::new(server.channel().await);
        let status = watch_only
            .lease_grant(keel_proto::etcdserverpb::LeaseGrantRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented);

        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn plain_http_body_over_the_limit_gets_413() {
    with_timeout(async {
        let mut server = TestServer::start(ServeOptions {
            http_body_max: 4,
            ..Default::default()
        });
        let response = http_get(
            server.addr,
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nabcde",
        )
        .await;
        assert!(response.starts_with("HTTP/1.1 413"), "{response}");
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn bidi_watch_stream() {
    with_timeout(async {
        let mut server = TestServer::start(ServeOptions::default());
        let mut watch = WatchClient::new(server.channel().await);
        let (requests_tx, requests_rx) = futures::channel::mpsc::unbounded();
        let create = |key: &str| WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })),
        };
        requests_tx.unbounded_send(create("a")).unwrap();
        let mut responses = watch.watch(requests_rx).await.unwrap().into_inner();
        // Each request is sent only after the previous answer arrived: a true conversation.
        for (i, key) in ["a", "b", "c"].iter().enumerate() {
            if i > 0 {
                requests_tx.unbounded_send(create(key)).unwrap();
            }
            let response = responses.message().await.unwrap().expect("a response");
            assert_eq!(response.watch_id, i as i64 + 1);
            assert_eq!(response.events[0].kv.as_ref().unwrap().key, key.as_bytes());
        }
        drop(requests_tx);
        assert!(
            responses.message().await.unwrap().is_none(),
            "stream ends with the requests"
        );
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn garbage_closes_only_its_connection() {
    with_timeout(async {
        let mut server = TestServer::start(ServeOptions::default());
        let mut kv = KvClient::new(server.channel().await);
        assert_eq!(range(&mut kv, b"before").await.unwrap(), b"before");

        let garbage: [&[u8]; 3] = [
            // Not HTTP at all.
            &[
                0xff, 0x00, 0x13, 0x37, 0xde, 0xad, 0xbe, 0xef, b'\r', b'\n', b'\r', b'\n',
            ],
            // An HTTP/2 preface followed by a frame header announcing a huge bogus frame.
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\x09\x00\x00\x00\x00\x01garbage",
            // A malformed HTTP/1 request line.
            b"GET\x00/ HTTP/9.9\r\n\r\n",
        ];
        for bytes in garbage {
            let mut stream = TcpStream::connect(server.addr).await.unwrap();
            stream.write_all(bytes).await.unwrap();
            let mut sink = Vec::new();
            // The server answers with an error (or nothing) and closes; a reset is fine too.
            let _ = stream.read_to_end(&mut sink).await;
        }

        // The existing connection and new ones still work.
        assert_eq!(range(&mut kv, b"after").await.unwrap(), b"after");
        let mut fresh = KvClient::new(server.channel().await);
        assert_eq!(range(&mut fresh, b"fresh").await.unwrap(), b"fresh");
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn connections_over_the_limit_are_closed() {
    with_timeout(async {
        let mut server = TestServer::start(ServeOptions {
            connections_max: 2,
            ..Default::default()
        });
        let request = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
        // Two keep-alive connections, each proven accepted by a served request.
        let mut first = TcpStream::connect(server.addr).await.unwrap();
        let mut second = TcpStream::connect(server.addr).await.unwrap();
        for stream in [&mut first, &mut second] {
            stream.write_all(request.as_bytes()).await.unwrap();
            let response = read_response(stream).await.unwrap();
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        }

        // A third is closed without an answer.
        let mut third = TcpStream::connect(server.addr).await.unwrap();
        let _ = third.write_all(request.as_bytes()).await;
        let mut rest = Vec::new();
        let read = third.read_to_end(&mut rest).await;
        assert!(
            read.is_err() || rest.is_empty(),
            "over-limit connection got {rest:?}"
        );

        // Once one closes, a new connection is served. The server notices the close
        // asynchronously, so retry until the slot is free.
        drop(first);
        loop {
            let mut stream = TcpStream::connect(server.addr).await.unwrap();
            let _ = stream.write_all(request.as_bytes()).await;
            if let Ok(response) = read_response(&mut stream).await {
                assert!(response.starts_with("HTTP/1.1 200"), "{response}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_calls_then_returns() {
    with_timeout(async {
        let mut server = TestServer::start(ServeOptions {
            // Long enough that the in-flight call below finishes within it.
            shutdown_timeout: Duration::from_secs(30),
            ..Default::default()
        });
        let (open_gate, gate) = oneshot::channel();
        *server.put_gate.lock().unwrap() = Some(gate);
        let mut kv = KvClient::new(server.channel().await);
        let in_flight = tokio::spawn(async move { kv.put(PutRequest::default()).await });
        // An idle HTTP/1 keep-alive connection must not hold shutdown up.
        let mut idle = TcpStream::connect(server.addr).await.unwrap();
        idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        read_response(&mut idle).await.unwrap();
        // Wait until the put is inside the handler (it took the gate).
        while server.put_gate.lock().unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        let addr = server.addr;
        let shutdown = server.shutdown.take().unwrap();
        let thread = server.thread.take().unwrap();
        shutdown.send(()).unwrap();
        let mut stopped = tokio::task::spawn_blocking(move || thread.join().unwrap());
        // While the put is held, the server must not finish.
        tokio::select! {
            _ = &mut stopped => panic!("serve returned with a call in flight"),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        assert!(!in_flight.is_finished());
        open_gate.send(()).unwrap();
        in_flight
            .await
            .unwrap()
            .expect("the in-flight call completes");
        (&mut stopped).await.unwrap().unwrap();
        // The idle connection was closed, and the port no longer accepts.
        let mut rest = Vec::new();
        let _ = idle.read_to_end(&mut rest).await;
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "listener still open"
        );
    })
    .await;
}

#[tokio::test]
async fn shutdown_closes_long_streams_after_the_timeout() {
    with_timeout(async {
        let mut server = TestServer::start(ServeOptions {
            shutdown_timeout: Duration::from_millis(100),
            ..Default::default()
        });
        let mut watch = WatchClient::new(server.channel().await);
        let (requests_tx, requests_rx) = futures::channel::mpsc::unbounded();
        requests_tx
            .unbounded_send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest::default())),
            })
            .unwrap();
        let mut responses = watch.watch(requests_rx).await.unwrap().into_inner();
        responses.message().await.unwrap().expect("created");
        // The watch stays open (the request stream never ends); shutdown must still return.
        server.stop().await.unwrap();
        let after = responses.message().await;
        assert!(
            !matches!(after, Ok(Some(_))),
            "the watch outlived the server: {after:?}"
        );
        drop(requests_tx);
    })
    .await;
}

/// Rough unary throughput with a tokio client on the same machine; prints, asserts nothing
/// about time.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn unary_throughput() {
    with_timeout(async {
        let mut server = TestServer::start(ServeOptions::default());
        const CONNECTIONS: usize = 4;
        const IN_FLIGHT_PER_CONNECTION: usize = 16;
        const CALLS_PER_TASK: usize = 500;
        let mut channels = Vec::new();
        for _ in 0..CONNECTIONS {
            channels.push(server.channel().await);
        }
        let started = Instant::now();
        let mut tasks = Vec::new();
        for channel in &channels {
            for _ in 0..IN_FLIGHT_PER_CONNECTION {
                let mut kv = KvClient::new(channel.clone());
                tasks.push(tokio::spawn(async move {
                    for _ in 0..CALLS_PER_TASK {
                        range(&mut kv, b"k").await.unwrap();
                    }
                }));
            }
        }
        for task in tasks {
            task.await.unwrap();
        }
        let calls = CONNECTIONS * IN_FLIGHT_PER_CONNECTION * CALLS_PER_TASK;
        let elapsed = started.elapsed();
        println!(
            "unary Range: {calls} calls over {CONNECTIONS} connections x {IN_FLIGHT_PER_CONNECTION} \
             in flight in {elapsed:?}: {:.0} req/s",
            calls as f64 / elapsed.as_secs_f64()
        );

        // One call at a time: the round trip of a single unary call.
        const SEQUENTIAL_CALLS: usize = 2_000;
        let mut kv = KvClient::new(channels[0].clone());
        let started = Instant::now();
        for _ in 0..SEQUENTIAL_CALLS {
            range(&mut kv, b"k").await.unwrap();
        }
        let elapsed = started.elapsed();
        println!(
            "unary Range, one at a time: {SEQUENTIAL_CALLS} calls in {elapsed:?}: {:?} per call",
            elapsed / SEQUENTIAL_CALLS as u32
        );
        server.stop().await.unwrap();
    })
    .await;
}

/// Reads until the server closes the connection, failing the test if it stays open for long.
async fn expect_closed_by_server(stream: &mut TcpStream) {
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "the server kept the connection open");
}

#[tokio::test]
async fn http2_keepalive_closes_a_peer_that_never_answers_pings() {
    with_timeout(async {
        let mut server = TestServer::start(ServeOptions {
            http2_keepalive_interval: Some(Duration::from_millis(50)),
            http2_keepalive_timeout: Duration::from_millis(50),
            ..Default::default()
        });
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        // The client preface and an empty SETTINGS frame; then silence, so pings go unanswered.
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .unwrap();
        expect_closed_by_server(&mut stream).await;
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn http1_slow_headers_time_out() {
    with_timeout(async {
        let mut server = TestServer::start(ServeOptions {
            http1_header_read_timeout: Some(Duration::from_millis(50)),
            ..Default::default()
        });
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        // Half a request, then nothing more.
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost")
            .await
            .unwrap();
        expect_closed_by_server(&mut stream).await;
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn connections_that_never_show_a_protocol_are_closed() {
    with_timeout(async {
        let mut server = TestServer::start(ServeOptions {
            handshake_timeout: Duration::from_millis(50),
            ..Default::default()
        });
        // Nothing at all.
        let mut silent = TcpStream::connect(server.addr).await.unwrap();
        expect_closed_by_server(&mut silent).await;
        // The start of the HTTP/2 preface, then nothing.
        let mut partial = TcpStream::connect(server.addr).await.unwrap();
        partial.write_all(b"PRI * HTTP").await.unwrap();
        expect_closed_by_server(&mut partial).await;

        // Connections past the handshake are not touched by its timeout: an HTTP/1 keep-alive
        // connection and an HTTP/2 connection, both idle for longer than the timeout.
        let mut h1 = TcpStream::connect(server.addr).await.unwrap();
        h1.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        read_response(&mut h1).await.unwrap();
        let mut h2 = TcpStream::connect(server.addr).await.unwrap();
        h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .unwrap();
        // Deliberately idle past the handshake timeout (not a readiness wait).
        tokio::time::sleep(Duration::from_millis(300)).await;
        h1.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let response = read_response(&mut h1).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        // An HTTP/2 PING must come back acknowledged.
        h2.write_all(b"\0\0\x08\x06\0\0\0\0\0pingpong")
            .await
            .unwrap();
        loop {
            let mut header = [0u8; 9];
            h2.read_exact(&mut header)
                .await
                .expect("h2 connection still open");
            let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let mut payload = vec![0u8; length];
            h2.read_exact(&mut payload).await.unwrap();
            let (kind, flags) = (header[3], header[4]);
            if kind == 6 && flags & 1 == 1 {
                assert_eq!(payload, b"pingpong");
                break;
            }
        }
        server.stop().await.unwrap();
    })
    .await;
}

const CA_PEM: &[u8] = include_bytes!("net_tls/ca.pem");
const SERVER_PEM: &[u8] = include_bytes!("net_tls/server.pem");
const SERVER_KEY: &[u8] = include_bytes!("net_tls/server.key");
const CLIENT_PEM: &[u8] = include_bytes!("net_tls/client.pem");
const CLIENT_KEY: &[u8] = include_bytes!("net_tls/client.key");

/// A TLS channel to `server` that trusts the test CA, optionally with the client identity.
async fn tls_channel(
    server: &TestServer,
    with_identity: bool,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(CA_PEM))
        .domain_name("localhost");
    if with_identity {
        tls = tls.identity(tonic::transport::Identity::from_pem(CLIENT_PEM, CLIENT_KEY));
    }
    Channel::from_shared(format!("https://localhost:{}", server.addr.port()))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

#[tokio::test]
async fn tls_serves_grpc_and_rejects_plaintext() {
    with_timeout(async {
        let tls = keel::net::server_config(SERVER_PEM, SERVER_KEY, None).unwrap();
        let mut server = TestServer::start(ServeOptions {
            tls: Some(tls),
            ..Default::default()
        });
        let mut kv = KvClient::new(tls_channel(&server, false).await.unwrap());
        assert_eq!(range(&mut kv, b"secret").await.unwrap(), b"secret");

        // Plaintext HTTP/2 to the TLS port fails, and only that connection.
        let plain = Channel::from_shared(format!("http://{}", server.addr)).unwrap();
        if let Ok(channel) = plain.connect().await {
            assert!(range(&mut KvClient::new(channel), b"x").await.is_err());
        }
        // Plaintext HTTP/1 gets no HTTP answer (at most a TLS alert).
        let answer = http_get(server.addr, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(!answer.starts_with("HTTP/"), "{answer}");
        assert_eq!(range(&mut kv, b"still").await.unwrap(), b"still");
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate() {
    with_timeout(async {
        let tls = keel::net::server_config(SERVER_PEM, SERVER_KEY, Some(CA_PEM)).unwrap();
        let mut server = TestServer::start(ServeOptions {
            tls: Some(tls),
            ..Default::default()
        });
        let mut kv = KvClient::new(tls_channel(&server, true).await.unwrap());
        assert_eq!(range(&mut kv, b"mutual").await.unwrap(), b"mutual");

        // Without a client certificate the handshake (or the first call) fails.
        if let Ok(channel) = tls_channel(&server, false).await {
            assert!(range(&mut KvClient::new(channel), b"x").await.is_err());
        }
        server.stop().await.unwrap();
    })
    .await;
}

#[test]
fn tls_config_errors_name_the_bad_input() {
    use keel::net::{server_config, TlsConfigError};
    let err = server_config(b"", SERVER_KEY, None).unwrap_err();
    assert!(
        matches!(
            err,
            TlsConfigError::NoCertificate {
                what: "certificate chain"
            }
        ),
        "{err}"
    );
    let err = server_config(SERVER_PEM, b"not a key", None).unwrap_err();
    assert!(
        matches!(
            err,
            TlsConfigError::Pem {
                what: "private key",
                ..
            }
        ),
        "{err}"
    );
    let err = server_config(SERVER_PEM, SERVER_KEY, Some(b"")).unwrap_err();
    assert!(
        matches!(err, TlsConfigError::NoCertificate { what: "client CA" }),
        "{err}"
    );
}
