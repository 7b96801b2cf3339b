//! gRPC requests whose HTTP/2 `:authority` is not a bare `host:port`, as etcd's Go clients
//! send them, are served as etcd serves them.
//!
//! The story: etcdctl sends the endpoint as written as the `:authority` on its per-endpoint
//! commands (`--endpoints=http://127.0.0.1:2379 endpoint status`), and etcd's Go client 3.5.0
//! to 3.5.9 sends `#initially=[https://a:2379;https://b:2379]` with several endpoints (etcd
//! issues 13192 and 16324). etcd ignores the value; Keel's HTTP/2 library (h2) reset every such
//! request with `RST_STREAM(PROTOCOL_ERROR)`, so `endpoint status` and friends failed against
//! Keel. Keel now rewrites such an `:authority` before h2 reads it (src/net/authority.rs).
//!
//! The requests here are written frame by frame by a small HTTP/2 client over a plain or a TLS
//! socket, with header blocks from an independent HPACK encoder (loona-hpack's, which indexes
//! everything into its dynamic table), so that the exact `:authority` bytes, CONTINUATION
//! frames and dynamic table references are under the test's control. Each step runs against
//! upstream etcd too, and both must answer the same.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{error_lines, etcdctl, normalize, Kind, Server, TlsServer};
use keel_proto::etcdserverpb::{PutRequest, RangeRequest, RangeResponse};
use prost::Message;
use regex::Regex;

/// How long one read from a server may take before the test fails instead of hanging.
const READ_TIMEOUT: Duration = Duration::from_secs(15);

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types and flags (RFC 9113, section 6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// What a server answered on one stream.
#[derive(Debug, Default)]
struct Reply {
    headers: Vec<(String, String)>,
    trailers: Vec<(String, String)>,
    data: Vec<u8>,
    /// The RST_STREAM error code, if the stream was reset.
    reset: Option<u32>,
}

impl Reply {
    fn field(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .chain(&self.trailers)
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `:status`, `grpc-status` and the reset code, for comparing servers.
    fn outcome(&self) -> String {
        format!(
            ":status={:?} grpc-status={:?} reset={:?}",
            self.field(":status"),
            self.field("grpc-status"),
            self.reset
        )
    }

    /// The gRPC response message.
    fn message<M: Message + Default>(&self) -> M {
        assert!(self.data.len() >= 5, "no gRPC message: {self:?}");
        M::decode(&self.data[5..]).expect("a gRPC response message")
    }
}

/// A minimal HTTP/2 client: one request at a time, every header block through one HPACK
/// encoder and decoder pair (so the dynamic tables carry over from request to request).
struct RawClient<S> {
    io: S,
    scheme: &'static str,
    encoder: loona_hpack::Encoder<'static>,
    decoder: loona_hpack::Decoder<'static>,
    next_stream: u32,
}

impl<S: Read + Write> RawClient<S> {
    fn start(mut io: S, scheme: &'static str) -> Self {
        io.write_all(PREFACE).expect("write the preface");
        let mut client = RawClient {
            io,
            scheme,
            encoder: loona_hpack::Encoder::new(),
            decoder: loona_hpack::Decoder::new(),
            next_stream: 1,
        };
        client.write_frame(SETTINGS, 0, 0, &[]);
        client
    }

    fn write_frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        frame.extend([kind, flags]);
        frame.extend(stream.to_be_bytes());
        frame.extend(payload);
        self.io.write_all(&frame).expect("write a frame");
        self.io.flush().expect("flush");
    }

    fn read_frame(&mut self) -> (u8, u8, u32, Vec<u8>) {
        let mut head = [0; 9];
        self.io.read_exact(&mut head).expect("read a frame header");
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0; len];
        self.io
            .read_exact(&mut payload)
            .expect("read a frame payload");
        (head[3], head[4], stream, payload)
    }

    /// A unary gRPC call with `authority` and the `extra` fields; the header block goes in
    /// frames of at most `split` bytes (HEADERS, then CONTINUATION).
    fn call(
        &mut self,
        authority: &str,
        path: &str,
        message: &[u8],
        extra: &[(&str, &str)],
        split: usize,
    ) -> Reply {
        let stream = self.next_stream;
        self.next_stream += 2;
        let mut fields: Vec<(&str, &str)> = vec![
            (":method", "POST"),
            (":scheme", self.scheme),
            (":path", path),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ];
        fields.extend_from_slice(extra);
        let block = self
            .encoder
            .encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
        let pieces: Vec<&[u8]> = block.chunks(split).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let kind = if i == 0 { HEADERS } else { CONTINUATION };
            let flags = if i + 1 == pieces.len() {
                END_HEADERS
            } else {
                0
            };
            self.write_frame(kind, flags, stream, piece);
        }
        let mut body = vec![0];
        body.extend((message.len() as u32).to_be_bytes());
        body.extend(message);
        self.write_frame(DATA, END_STREAM, stream, &body);

        let mut reply = Reply::default();
        let mut block: Option<(u32, u8, Vec<u8>)> = None;
        loop {
            let (kind, flags, on, payload) = self.read_frame();
            match kind {
                SETTINGS if flags & ACK == 0 => self.write_frame(SETTINGS, ACK, 0, &[]),
                PING if flags & ACK == 0 => self.write_frame(PING, ACK, 0, &payload),
                GOAWAY => panic!("the server sent GOAWAY: {payload:?}"),
                RST_STREAM if on == stream => {
                    reply.reset = Some(u32::from_be_bytes(payload[..4].try_into().unwrap()));
                    return reply;
                }
                DATA => {
                    if !payload.is_empty() {
                        let increment = (payload.len() as u32).to_be_bytes();
                        self.write_frame(WINDOW_UPDATE, 0, 0, &increment);
                        self.write_frame(WINDOW_UPDATE, 0, on, &increment);
                    }
                    if on == stream {
                        reply.data.extend(&payload);
                        if flags & END_STREAM != 0 {
                            return reply;
                        }
                    }
                }
                HEADERS | CONTINUATION => {
                    let (_, first_flags, fragment) =
                        block.get_or_insert_with(|| (on, flags, Vec::new()));
                    assert_eq!(*first_flags & 0x28, 0, "no padding or priority expected");
                    fragment.extend(&payload);
                    if flags & END_HEADERS == 0 {
                        continue;
                    }
                    let (on, first_flags, fragment) = block.take().unwrap();
                    let fields: Vec<(String, String)> = self
                        .decoder
                        .decode(&fragment)
                        .expect("the server's header block")
                        .into_iter()
                        .map(|(n, v)| {
                            (
                                String::from_utf8_lossy(&n).into_owned(),
                                String::from_utf8_lossy(&v).into_owned(),
                            )
                        })
                        .collect();
                    if on == stream {
                        if reply.headers.is_empty() {
                            reply.headers = fields;
                        } else {
                            reply.trailers = fields;
                        }
                        if first_flags & END_STREAM != 0 {
                            return reply;
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn put(&mut self, authority: &str, key: &str, value: &str) -> Reply {
        let request = PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        };
        let path = "/etcdserverpb.KV/Put";
        self.call(authority, path, &request.encode_to_vec(), &[], 1 << 14)
    }

    /// A Range of `key` with the `extra` fields, its block split at `split` bytes: the
    /// outcome and the values found.
    fn get(&mut self, authority: &str, key: &str, extra: &[(&str, &str)], split: usize) -> String {
        let request = RangeRequest {
            key: key.into(),
            ..Default::default()
        };
        let path = "/etcdserverpb.KV/Range";
        let reply = self.call(authority, path, &request.encode_to_vec(), extra, split);
        let values: Vec<String> = if reply.field("grpc-status") == Some("0") {
            let response: RangeResponse = reply.message();
            response
                .kvs
                .iter()
                .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
                .collect()
        } else {
            Vec::new()
        };
        format!("{} values={values:?}", reply.outcome())
    }
}

/// The session of [`the_go_clients_authorities_are_served`]: a put and gets with the
/// authorities etcd's Go clients send, on one connection to the server at `port`.
fn go_client_session<S: Read + Write>(client: &mut RawClient<S>, port: u16) -> Vec<String> {
    let url = format!("{}://127.0.0.1:{port}", client.scheme);
    let bare = format!("127.0.0.1:{port}");
    let initially = format!("#initially=[{url};{}://127.0.0.2:{port}]", client.scheme);
    let put = client.put(&url, "k", "v1");
    let mut lines = vec![format!("put via {url}: {}", put.outcome())];
    for authority in [&url, &initially, &bare, &format!("{url}/"), &url] {
        let got = client.get(authority, "k", &[], 1 << 14);
        lines.push(format!("get via {authority}: {got}"));
    }
    // The port differs between the servers.
    lines
        .iter()
        .map(|line| line.replace(&port.to_string(), "PORT"))
        .collect()
}

/// The Go clients' authorities over h2c: served, as by etcd.
#[test]
fn the_go_clients_authorities_are_served() {
    let sessions: Vec<Vec<String>> = [Kind::Etcd, Kind::Keel]
        .into_iter()
        .map(|kind| {
            let server = Server::start(kind, &[]);
            let stream = tcp(&server.endpoint);
            let mut client = RawClient::start(stream, "http");
            go_client_session(&mut client, server.client_port)
        })
        .collect();
    assert_eq!(sessions[0], sessions[1], "etcd (left), keel (right)");
    for line in &sessions[1] {
        assert!(line.contains("grpc-status=Some(\"0\")"), "{line}");
        assert!(
            line.starts_with("put") || line.ends_with("values=[\"v1\"]"),
            "{line}"
        );
    }
}

/// The same over TLS: the filter sees the decrypted stream.
#[test]
fn the_go_clients_authorities_are_served_over_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_pem = write_certificates(dir.path());
    let sessions: Vec<Vec<String>> = [Kind::Etcd, Kind::Keel]
        .into_iter()
        .map(|kind| {
            let certs = dir.path();
            let flags = [
                format!("--cert-file={}", certs.join("server.pem").display()),
                format!("--key-file={}", certs.join("server.key").display()),
            ];
            let server = TlsServer::start(kind, certs, &flags);
            let port = server
                .endpoint
                .rsplit_once(':')
                .and_then(|(_, port)| port.parse().ok())
                .expect("the endpoint's port");
            let stream = tls(&server.endpoint, &ca_pem);
            let mut client = RawClient::start(stream, "https");
            go_client_session(&mut client, port)
        })
        .collect();
    assert_eq!(sessions[0], sessions[1], "etcd (left), keel (right)");
    for line in &sessions[1] {
        assert!(line.contains("grpc-status=Some(\"0\")"), "{line}");
    }
}

/// Many requests on one connection: good and bad authorities interleaved, fields that fill
/// and evict the dynamic table (one larger than the whole table, which empties it), and large
/// blocks sent as HEADERS plus CONTINUATION frames. Every request is served, as by etcd.
#[test]
fn many_requests_with_mixed_authorities_and_large_headers_on_one_connection() {
    let sessions: Vec<Vec<String>> = [Kind::Etcd, Kind::Keel]
        .into_iter()
        .map(|kind| {
            let server = Server::start(kind, &[]);
            let port = server.client_port;
            let mut client = RawClient::start(tcp(&server.endpoint), "http");
            let bare = format!("127.0.0.1:{port}");
            let authorities = [
                bare.clone(),
                format!("http://127.0.0.1:{port}"),
                format!("#initially=[http://127.0.0.1:{port};http://other:2379]"),
                bare.clone(),
                format!("http://localhost:{port}/"),
            ];
            let mut lines = Vec::new();
            // Written with the good authority first: these blocks pass untouched and fill the
            // server's table before any rewrite.
            for i in 0..3 {
                let put = client.put(&bare, &format!("k{i}"), &format!("v{i}"));
                lines.push(format!("put k{i}: {}", put.outcome()));
            }
            for i in 0..60usize {
                let authority = &authorities[i % authorities.len()];
                let request_id = format!("request-{i}");
                let mut extra: Vec<(&str, String)> = vec![("x-request-id", request_id)];
                let mut split = 1 << 14;
                if i % 7 == 3 {
                    // A new entry of about 3 KB: the table evicts most of what it holds.
                    extra.push(("x-large", "l".repeat(3000 + i)));
                    split = 1000;
                }
                if i % 11 == 5 {
                    // Larger than the whole table: it empties the table and is not added.
                    extra.push(("x-huge", "h".repeat(5000 + i)));
                    split = 1500;
                }
                let extra: Vec<(&str, &str)> =
                    extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
                let got = client.get(authority, &format!("k{}", i % 3), &extra, split);
                let authority = authority.replace(&port.to_string(), "PORT");
                lines.push(format!("{i} via {authority}: {got}"));
            }
            lines
        })
        .collect();
    assert_eq!(sessions[0], sessions[1], "etcd (left), keel (right)");
    for (i, line) in sessions[1][3..].iter().enumerate() {
        let want = format!("grpc-status=Some(\"0\") reset=None values=[\"v{}\"]", i % 3);
        assert!(line.ends_with(&want), "{line}");
    }
}

/// The real etcdctl with URL endpoints on its per-endpoint commands: the same as against
/// etcd.
#[test]
fn etcdctl_url_endpoints_on_per_endpoint_commands_match_etcd() {
    let commands: [&[&str]; 5] = [
        &["endpoint", "status", "-w", "json"],
        &["endpoint", "health"],
        &["endpoint", "health", "-w", "json"],
        &["endpoint", "hashkv", "-w", "json"],
        &["endpoint", "status"],
    ];
    let hash = Regex::new(r#""hash":\d+"#).unwrap();
    // The simple format's raft term and indexes are bare numbers.
    let raft_numbers = Regex::new(r"(, \d+){3}, $").unwrap();
    let outputs: Vec<Vec<String>> = [Kind::Etcd, Kind::Keel]
        .into_iter()
        .map(|kind| {
            let server = Server::start(kind, &[]);
            let url = server.url();
            let put = etcdctl(&url, &["put", "a", "1"], None);
            assert!(put.status.success(), "{kind:?}: {}", error_lines(&put));
            commands
                .iter()
                .map(|args| {
                    // Two endpoints, both the URL: etcdctl runs the command per endpoint.
                    let output = etcdctl(&format!("{url},{url}"), args, None);
                    assert!(
                        output.status.success(),
                        "{kind:?} {args:?}: {}",
                        error_lines(&output)
                    );
                    let text = String::from_utf8_lossy(&output.stdout).into_owned();
                    let text = hash.replace_all(&text, "\"hash\":H");
                    let text: Vec<String> = text
                        .lines()
                        .map(|line| raft_numbers.replace(line, ", N, N, N, ").into_owned())
                        .collect();
                    format!("{args:?}\n{}", normalize(&text.join("\n")))
                })
                .collect()
        })
        .collect();
    assert_eq!(outputs[0], outputs[1], "etcd (left), keel (right)");
}

fn tcp(endpoint: &str) -> TcpStream {
    let stream = TcpStream::connect(endpoint).expect("connect");
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("timeout");
    stream
}

/// A TLS connection offering ALPN `h2`, trusting `ca_pem`.
fn tls(endpoint: &str, ca_pem: &str) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA"))
        .expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let connection = rustls::ClientConnection::new(Arc::new(config), name).expect("connection");
    rustls::StreamOwned::new(connection, tcp(endpoint))
}

/// Writes a CA and a server certificate for 127.0.0.1 (`server.pem`, `server.key`) into
/// `dir`; returns the CA's PEM.
fn write_certificates(dir: &Path) -> String {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "ca");
    let ca_key = KeyPair::generate().expect("key");
    let ca = params.self_signed(&ca_key).expect("CA");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("server params");
    params.distinguished_name.push(DnType::CommonName, "server");
    let key = KeyPair::generate().expect("key");
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    std::fs::write(dir.join("server.pem"), cert.pem()).expect("write");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("write");
    ca.pem()
}
