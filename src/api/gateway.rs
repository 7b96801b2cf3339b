//! etcd's gRPC JSON gateway: the v3 API as JSON over plain HTTP on the client port, as etcd
//! 3.5 serves it (grpc-gateway v1 with its default `JSONPb{OrigName: true}` marshaler).
//!
//! A `POST /v3/kv/range` with a JSON body becomes a gRPC call `/etcdserverpb.KV/Range` made
//! in-process on the same tonic [`Routes`] the client port serves, so auth, the leader check
//! and the message size limits apply exactly as to a gRPC client; the reply comes back as
//! JSON. The translation needs no per-message code: the compiled descriptors of etcd's protos
//! ([`keel_proto::FILE_DESCRIPTOR_SET`]) drive prost-reflect's dynamic messages, which read
//! and write the protobuf JSON mapping with the options grpc-gateway's marshaler uses:
//!
//! - field names as written in the `.proto` files (`create_revision`, `peerURLs`, `TTL`);
//! - fields holding their zero value left out, enums by name, 64-bit integers as strings,
//!   bytes in standard base64;
//! - on input, either field name form, numbers or strings for integers, and unknown fields
//!   ignored.
//!
//! Streaming methods (`/v3/watch`, `/v3/lease/keepalive`, `/v3/maintenance/snapshot`,
//! `/v3/election/observe`) answer with one `{"result":{...}}` line per message, written as
//! each message comes. A request body may hold several JSON messages in a row for the
//! client-streaming methods (watch, keepalive); the body is read whole before the call starts.
//!
//! Errors are grpc-gateway's: `{"error":"<text>","code":<gRPC code>,"message":"<text>"}`
//! with the HTTP status grpc-gateway maps the code to, and on a stream that already sent a
//! message, a last `{"error":{"grpc_code":..,"http_code":..,"message":..,"http_status":..}}`.
//! An unknown `/v3/` path is answered `404 Not Found`, a known path with another method than
//! POST `405 Method Not Allowed`, in Go's plain-text form; `/v3beta/` paths are served as
//! `/v3/` (etcd 3.5 rewrites them the same way).
//!
//! The `Authorization` header is passed as the `authorization` metadata, which the auth layer
//! accepts as the token (as etcd does), and `Grpc-Metadata-<Name>` headers as `<name>`
//! metadata (such as `Grpc-Metadata-Hasleader: true`).

use std::rc::Rc;
use std::sync::OnceLock;

use bytes::{Buf, Bytes, BytesMut};
use futures::future::LocalBoxFuture;
use futures::stream::{self, Stream, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody};
use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions,
};
use tonic::body::Body;
use tonic::service::Routes;
use tonic::{Code, Status};
use tower_service::Service;

use crate::net::HttpHandler;

/// How a gateway method's gRPC call streams, which decides how its body and reply are framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Streaming {
    /// One request, one reply (`{...}`).
    Unary,
    /// One request, a stream of replies (`{"result":{...}}` lines).
    Server,
    /// Requests and replies both streamed: the body may hold several JSON messages.
    Both,
}

/// Every gateway path of etcd 3.5 and the gRPC method it calls: the paths of etcd's
/// `*.pb.gw.go` files (`api/etcdserverpb/gw`, `v3lockpb/gw`, `v3electionpb/gw`), including
/// the `/v3/kv/lease/...` aliases of three Lease methods.
const METHODS: &[(&str, &str, &str)] = &[
    ("/v3/kv/range", "etcdserverpb.KV", "Range"),
    ("/v3/kv/put", "etcdserverpb.KV", "Put"),
    ("/v3/kv/deleterange", "etcdserverpb.KV", "DeleteRange"),
    ("/v3/kv/txn", "etcdserverpb.KV", "Txn"),
    ("/v3/kv/compaction", "etcdserverpb.KV", "Compact"),
    ("/v3/watch", "etcdserverpb.Watch", "Watch"),
    ("/v3/lease/grant", "etcdserverpb.Lease", "LeaseGrant"),
    ("/v3/lease/revoke", "etcdserverpb.Lease", "LeaseRevoke"),
    ("/v3/kv/lease/revoke", "etcdserverpb.Lease", "LeaseRevoke"),
    (
        "/v3/lease/keepalive",
        "etcdserverpb.Lease",
        "LeaseKeepAlive",
    ),
    (
        "/v3/lease/timetolive",
        "etcdserverpb.Lease",
        "LeaseTimeToLive",
    ),
    (
        "/v3/kv/lease/timetolive",
        "etcdserverpb.Lease",
        "LeaseTimeToLive",
    ),
    ("/v3/lease/leases", "etcdserverpb.Lease", "LeaseLeases"),
    ("/v3/kv/lease/leases", "etcdserverpb.Lease", "LeaseLeases"),
    (
        "/v3/cluster/member/add",
        "etcdserverpb.Cluster",
        "MemberAdd",
    ),
    (
        "/v3/cluster/member/remove",
        "etcdserverpb.Cluster",
        "MemberRemove",
    ),
    (
        "/v3/cluster/member/update",
        "etcdserverpb.Cluster",
        "MemberUpdate",
    ),
    (
        "/v3/cluster/member/list",
        "etcdserverpb.Cluster",
        "MemberList",
    ),
    (
        "/v3/cluster/member/promote",
        "etcdserverpb.Cluster",
        "MemberPromote",
    ),
    ("/v3/maintenance/alarm", "etcdserverpb.Maintenance", "Alarm"),
    (
        "/v3/maintenance/status",
        "etcdserverpb.Maintenance",
        "Status",
    ),
    (
        "/v3/maintenance/defragment",
        "etcdserverpb.Maintenance",
        "Defragment",
    ),
    ("/v3/maintenance/hash", "etcdserverpb.Maintenance", "Hash"),
    (
        "/v3/maintenance/hashkv",
        "etcdserverpb.Maintenance",
        "HashKV",
    ),
    (
        "/v3/maintenance/snapshot",
        "etcdserverpb.Maintenance",
        "Snapshot",
    ),
    (
        "/v3/maintenance/transfer-leadership",
        "etcdserverpb.Maintenance",
        "MoveLeader",
    ),
    (
        "/v3/maintenance/downgrade",
        "etcdserverpb.Maintenance",
        "Downgrade",
    ),
    ("/v3/auth/enable", "etcdserverpb.Auth", "AuthEnable"),
    ("/v3/auth/disable", "etcdserverpb.Auth", "AuthDisable"),
    ("/v3/auth/status", "etcdserverpb.Auth", "AuthStatus"),
    ("/v3/auth/authenticate", "etcdserverpb.Auth", "Authenticate"),
    ("/v3/auth/user/add", "etcdserverpb.Auth", "UserAdd"),
    ("/v3/auth/user/get", "etcdserverpb.Auth", "UserGet"),
    ("/v3/auth/user/list", "etcdserverpb.Auth", "UserList"),
    ("/v3/auth/user/delete", "etcdserverpb.Auth", "UserDelete"),
    (
        "/v3/auth/user/changepw",
        "etcdserverpb.Auth",
        "UserChangePassword",
    ),
    ("/v3/auth/user/grant", "etcdserverpb.Auth", "UserGrantRole"),
    (
        "/v3/auth/user/revoke",
        "etcdserverpb.Auth",
        "UserRevokeRole",
    ),
    ("/v3/auth/role/add", "etcdserverpb.Auth", "RoleAdd"),
    ("/v3/auth/role/get", "etcdserverpb.Auth", "RoleGet"),
    ("/v3/auth/role/list", "etcdserverpb.Auth", "RoleList"),
    ("/v3/auth/role/delete", "etcdserverpb.Auth", "RoleDelete"),
    (
        "/v3/auth/role/grant",
        "etcdserverpb.Auth",
        "RoleGrantPermission",
    ),
    (
        "/v3/auth/role/revoke",
        "etcdserverpb.Auth",
        "RoleRevokePermission",
    ),
    ("/v3/lock/lock", "v3lockpb.Lock", "Lock"),
    ("/v3/lock/unlock", "v3lockpb.Lock", "Unlock"),
    ("/v3/election/campaign", "v3electionpb.Election", "Campaign"),
    ("/v3/election/proclaim", "v3electionpb.Election", "Proclaim"),
    ("/v3/election/leader", "v3electionpb.Election", "Leader"),
    ("/v3/election/observe", "v3electionpb.Election", "Observe"),
    ("/v3/election/resign", "v3electionpb.Election", "Resign"),
];

/// The most JSON messages one client-streaming request body may hold (a watch body with a
/// create request per key, say); more are refused rather than queued without bound.
const STREAM_REQUESTS_MAX: usize = 1024;

/// One gateway method, resolved against the descriptors.
#[derive(Clone, Debug)]
struct Method {
    /// The gRPC path, `/etcdserverpb.KV/Range`.
    grpc_path: String,
    input: MessageDescriptor,
    output: MessageDescriptor,
    streaming: Streaming,
}

/// The gateway's methods by HTTP path, built once from the descriptors.
fn methods() -> &'static [(&'static str, Method)] {
    static METHOD_TABLE: OnceLock<Vec<(&'static str, Method)>> = OnceLock::new();
    METHOD_TABLE.get_or_init(|| {
        let pool = DescriptorPool::decode(keel_proto::FILE_DESCRIPTOR_SET)
            .expect("keel-proto's descriptor set decodes");
        METHODS
            .iter()
            .map(|&(path, service, method)| {
                let service_descriptor = pool
                    .get_service_by_name(service)
                    .unwrap_or_else(|| panic!("service {service} in keel-proto"));
                let descriptor = service_descriptor
                    .methods()
                    .find(|m| m.name() == method)
                    .unwrap_or_else(|| panic!("method {service}/{method} in keel-proto"));
                let streaming = match (
                    descriptor.is_client_streaming(),
                    descriptor.is_server_streaming(),
                ) {
                    (false, false) => Streaming::Unary,
                    (false, true) => Streaming::Server,
                    (true, _) => Streaming::Both,
                };
                let method = Method {
                    grpc_path: format!("/{service}/{method}"),
                    input: descriptor.input(),
                    output: descriptor.output(),
                    streaming,
                };
                (path, method)
            })
            .collect()
    })
}

/// The method served at `path` (after `/v3beta/` became `/v3/`).
fn method_at(path: &str) -> Option<&'static Method> {
    methods()
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, method)| method)
}

/// Whether `path` belongs to the gateway (etcd hands every `/v3/` path to it, and rewrites
/// `/v3beta/` to `/v3/` first).
pub fn is_gateway_path(path: &str) -> bool {
    path.starts_with("/v3/") || path.starts_with("/v3beta/")
}

/// The plain-HTTP handler of the client port: the JSON gateway for `/v3/` and `/v3beta/`
/// paths, and `fallback` (the `/metrics`, `/health`, ... endpoints) for every other path.
pub struct Gateway {
    /// The same gRPC services the client port serves; called in-process.
    routes: Routes,
    fallback: Rc<dyn HttpHandler>,
}

impl Gateway {
    /// A gateway calling `routes`, handing non-gateway paths to `fallback`.
    pub fn new(routes: Routes, fallback: Rc<dyn HttpHandler>) -> Gateway {
        Gateway {
            routes: routes.prepare(),
            fallback,
        }
    }
}

impl HttpHandler for Gateway {
    fn handle(
        &self,
        request: http::Request<Bytes>,
    ) -> LocalBoxFuture<'static, http::Response<String>> {
        self.fallback.handle(request)
    }

    fn handle_streaming(
        &self,
        request: http::Request<Bytes>,
    ) -> LocalBoxFuture<'static, http::Response<Body>> {
        if !is_gateway_path(request.uri().path()) {
            return self.fallback.handle_streaming(request);
        }
        let routes = self.routes.clone();
        Box::pin(async move {
            let mut response = serve(routes, request).await;
            add_cors_headers(response.headers_mut());
            response
        })
    }
}

/// Answers one gateway request.
async fn serve(routes: Routes, request: http::Request<Bytes>) -> http::Response<Body> {
    let path = request.uri().path();
    let path = match path.strip_prefix("/v3beta/") {
        Some(rest) => format!("/v3/{rest}"),
        None => path.to_string(),
    };
    if request.method() == http::Method::OPTIONS {
        // etcd answers a CORS preflight before routing.
        return text_response(http::StatusCode::OK, "");
    }
    let Some(method) = method_at(&path) else {
        return text_response(http::StatusCode::NOT_FOUND, "Not Found\n");
    };
    if request.method() != http::Method::POST {
        return text_response(http::StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    }
    let (parts, body) = request.into_parts();
    let messages = match decode_requests(&method.input, &body, method.streaming) {
        Ok(messages) => messages,
        Err(status) => return error_response(&status, false),
    };
    let grpc_request = grpc_request(method, &parts.headers, &messages);
    let grpc_response = match call(routes, grpc_request).await {
        Ok(response) => response,
        Err(status) => return error_response(&status, false),
    };
    match method.streaming {
        Streaming::Unary => unary_reply(method, grpc_response).await,
        Streaming::Server | Streaming::Both => stream_reply(method, grpc_response).await,
    }
}

/// Reads the request messages from a JSON body as grpc-gateway does: an empty body is an
/// empty message; one JSON value is read for a unary or server-streaming method (anything
/// after it is ignored), every value in the body for a client-streaming one.
fn decode_requests(
    input: &MessageDescriptor,
    body: &[u8],
    streaming: Streaming,
) -> Result<Vec<DynamicMessage>, Status> {
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>();
    let mut messages = Vec::new();
    loop {
        let value = match values.next() {
            None => break,
            Some(Ok(value)) => value,
            Some(Err(error)) => return Err(json_error(&error)),
        };
        messages.push(message_from_json(input, value)?);
        if streaming != Streaming::Both {
            break;
        }
        if messages.len() > STREAM_REQUESTS_MAX {
            return Err(Status::invalid_argument(format!(
                "too many messages in one request body (the limit is {STREAM_REQUESTS_MAX})"
            )));
        }
    }
    if messages.is_empty() && streaming != Streaming::Both {
        // Go's JSON decoder answers an empty body with io.EOF, which grpc-gateway takes as
        // an empty request.
        messages.push(DynamicMessage::new(input.clone()));
    }
    Ok(messages)
}

/// One JSON value as a request message (`null` is the empty message, as in Go's jsonpb).
fn message_from_json(
    input: &MessageDescriptor,
    value: serde_json::Value,
) -> Result<DynamicMessage, Status> {
    if value.is_null() {
        return Ok(DynamicMessage::new(input.clone()));
    }
    let options = DeserializeOptions::new().deny_unknown_fields(false);
    DynamicMessage::deserialize_with_options(input.clone(), value, &options)
        .map_err(|error| Status::invalid_argument(error.to_string()))
}

/// A body that is not JSON: a truncated body with Go's text, other errors with the parser's.
fn json_error(error: &serde_json::Error) -> Status {
    if error.is_eof() {
        Status::invalid_argument("unexpected EOF")
    } else {
        Status::invalid_argument(error.to_string())
    }
}

/// The in-process gRPC request for `messages`, carrying the HTTP request's metadata as
/// grpc-gateway passes it on.
fn grpc_request(
    method: &Method,
    headers: &http::HeaderMap,
    messages: &[DynamicMessage],
) -> http::Request<Body> {
    let mut framed = BytesMut::new();
    for message in messages {
        let encoded = message.encode_to_vec();
        framed.extend_from_slice(&[0]);
        framed.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
        framed.extend_from_slice(&encoded);
    }
    let mut request = http::Request::new(Body::new(Full::new(framed.freeze())));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() =
        http::Uri::try_from(method.grpc_path.as_str()).expect("gateway gRPC paths are valid URIs");
    let grpc_headers = request.headers_mut();
    grpc_headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    grpc_headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    for (name, value) in headers {
        if name == http::header::AUTHORIZATION {
            grpc_headers.append("authorization", value.clone());
        } else if let Some(key) = name.as_str().strip_prefix("grpc-metadata-") {
            // Metadata may not stand in for the call's own gRPC headers.
            let reserved = key.starts_with("grpc-") || key == "content-type" || key == "te";
            if let (false, Ok(key)) = (reserved, http::HeaderName::try_from(key)) {
                grpc_headers.append(key, value.clone());
            }
        }
    }
    request
}

/// Calls the gRPC services. tonic answers every failure inside the response, so an `Err` is
/// only a router that could not be called at all.
async fn call(
    mut routes: Routes,
    request: http::Request<Body>,
) -> Result<http::Response<Body>, Status> {
    // tonic's router is always ready (see `net::DispatchService`).
    match routes.call(request).await {
        Ok(response) => Ok(response),
        Err(never) => match never {},
    }
}

/// The gRPC status a trailers-only response or a trailer block carries, when it is not OK.
fn error_status(headers: &http::HeaderMap) -> Option<Status> {
    Status::from_header_map(headers).filter(|status| status.code() != Code::Ok)
}

/// The reply of a unary method: its message as JSON, or grpc-gateway's error body.
async fn unary_reply(method: &Method, response: http::Response<Body>) -> http::Response<Body> {
    if let Some(status) = error_status(response.headers()) {
        return error_response(&status, false);
    }
    let metadata = response_metadata(response.headers());
    let collected = match response.into_body().collect().await {
        Ok(collected) => collected,
        Err(status) => return error_response(&status, false),
    };
    if let Some(status) = collected.trailers().and_then(error_status) {
        return error_response(&status, false);
    }
    let mut frames = FrameDecoder::default();
    frames.push(&collected.to_bytes());
    let message = match frames.next_message() {
        Ok(Some(message)) => message,
        Ok(None) => {
            return error_response(
                &Status::internal("the gRPC call ended without a response message"),
                false,
            )
        }
        Err(status) => return error_response(&status, false),
    };
    match message_to_json(&method.output, message) {
        Ok(json) => json_response(http::StatusCode::OK, metadata, Body::new(Full::new(json))),
        Err(status) => error_response(&status, false),
    }
}

/// The reply of a streaming method: a `{"result":...}` line per message as it comes. The
/// status line waits for the first message (or error), as grpc-gateway's does: a stream whose
/// first item is an error is answered with that error's HTTP status.
async fn stream_reply(method: &Method, response: http::Response<Body>) -> http::Response<Body> {
    if let Some(status) = error_status(response.headers()) {
        return error_response(&status, true);
    }
    let metadata = response_metadata(response.headers());
    let mut chunks = Box::pin(stream_chunks(method.output.clone(), response.into_body()));
    let first = match chunks.next().await {
        None => return json_response(http::StatusCode::OK, metadata, Body::empty()),
        Some(StreamChunk::Error(status)) => return error_response(&status, true),
        Some(StreamChunk::Result(line)) => line,
    };
    let rest = chunks.map(|chunk| {
        let bytes = match chunk {
            StreamChunk::Result(line) => line,
            StreamChunk::Error(status) => stream_error_chunk(&status),
        };
        Ok::<_, std::convert::Infallible>(http_body::Frame::data(bytes))
    });
    let all = stream::once(async move { Ok(http_body::Frame::data(first)) }).chain(rest);
    json_response(
        http::StatusCode::OK,
        metadata,
        Body::new(StreamBody::new(all)),
    )
}

/// One piece of a streamed reply.
enum StreamChunk {
    /// A `{"result":{...}}\n` line.
    Result(Bytes),
    /// The error that ended the stream.
    Error(Status),
}

/// The messages of a streaming gRPC response body as JSON result lines, ending with the
/// error that ended the call, if any.
fn stream_chunks(output: MessageDescriptor, body: Body) -> impl Stream<Item = StreamChunk> + Send {
    struct State {
        body: Body,
        frames: FrameDecoder,
        output: MessageDescriptor,
        done: bool,
    }
    let state = State {
        body,
        frames: FrameDecoder::default(),
        output,
        done: false,
    };
    stream::unfold(state, |mut state| async move {
        loop {
            if state.done {
                return None;
            }
            match state.frames.next_message() {
                Ok(Some(message)) => {
                    let chunk = match message_to_json(&state.output, message) {
                        Ok(json) => {
                            let mut line = Vec::with_capacity(json.len() + 12);
                            line.extend_from_slice(b"{\"result\":");
                            line.extend_from_slice(&json);
                            line.extend_from_slice(b"}\n");
                            StreamChunk::Result(Bytes::from(line))
                        }
                        Err(status) => {
                            state.done = true;
                            StreamChunk::Error(status)
                        }
                    };
                    return Some((chunk, state));
                }
                Ok(None) => {}
                Err(status) => {
                    state.done = true;
                    return Some((StreamChunk::Error(status), state));
                }
            }
            match state.body.frame().await {
                None => return None,
                Some(Err(status)) => {
                    state.done = true;
                    return Some((StreamChunk::Error(status), state));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => state.frames.push(&data),
                    Err(frame) => {
                        if let Some(status) = frame.trailers_ref().and_then(error_status) {
                            state.done = true;
                            return Some((StreamChunk::Error(status), state));
                        }
                    }
                },
            }
        }
    })
}

/// Splits a gRPC body into its length-prefixed messages.
#[derive(Default)]
struct FrameDecoder {
    buffer: BytesMut,
}

impl FrameDecoder {
    /// Adds bytes read from the body.
    fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// The next whole message, if the buffer holds one.
    fn next_message(&mut self) -> Result<Option<Bytes>, Status> {
        if self.buffer.len() < 5 {
            return Ok(None);
        }
        if self.buffer[0] != 0 {
            // The in-process call never asks for compression.
            return Err(Status::internal(
                "compressed gRPC message in a gateway reply",
            ));
        }
        let length = u32::from_be_bytes([
            self.buffer[1],
            self.buffer[2],
            self.buffer[3],
            self.buffer[4],
        ]) as usize;
        if self.buffer.len() < 5 + length {
            return Ok(None);
        }
        self.buffer.advance(5);
        Ok(Some(self.buffer.split_to(length).freeze()))
    }
}

/// A reply message as grpc-gateway's marshaler writes it.
fn message_to_json(output: &MessageDescriptor, encoded: Bytes) -> Result<Bytes, Status> {
    let message = DynamicMessage::decode(output.clone(), encoded)
        .map_err(|error| Status::internal(format!("decoding a gateway reply: {error}")))?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(true)
        .stringify_64_bit_integers(true)
        .use_enum_numbers(false);
    let mut serializer = serde_json::Serializer::new(Vec::new());
    message
        .serialize_with_options(&mut serializer, &options)
        .map_err(|error| Status::internal(format!("encoding a gateway reply: {error}")))?;
    Ok(Bytes::from(go_json_escape(serializer.into_inner())))
}

/// Escapes what Go's JSON encoder escapes and serde_json does not: `<`, `>` and `&` (for
/// HTML), and the line and paragraph separators U+2028 and U+2029 (for JavaScript). They can
/// only occur inside strings, where the escapes mean the same characters.
fn go_json_escape(json: Vec<u8>) -> Vec<u8> {
    let needs = |b: &u8| matches!(b, b'<' | b'>' | b'&' | 0xE2);
    if !json.iter().any(needs) {
        return json;
    }
    let mut out = Vec::with_capacity(json.len() + 16);
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'<' => out.extend_from_slice(b"\\u003c"),
            b'>' => out.extend_from_slice(b"\\u003e"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            0xE2 if json.get(i + 1) == Some(&0x80)
                && matches!(json.get(i + 2), Some(0xA8 | 0xA9)) =>
            {
                let escape: &[u8] = if json[i + 2] == 0xA8 {
                    b"\\u2028"
                } else {
                    b"\\u2029"
                };
                out.extend_from_slice(escape);
                i += 2;
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    out
}

/// A JSON string literal as Go writes one.
fn json_string(text: &str) -> String {
    let quoted = serde_json::to_string(text).expect("a string serializes");
    String::from_utf8(go_json_escape(quoted.into_bytes())).expect("escaping keeps UTF-8")
}

/// The HTTP status grpc-gateway v1 answers a gRPC code with (`runtime.HTTPStatusFromCode`).
fn http_status(code: Code) -> http::StatusCode {
    use http::StatusCode as S;
    match code {
        Code::Ok => S::OK,
        Code::Cancelled => S::REQUEST_TIMEOUT,
        Code::Unknown => S::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument => S::BAD_REQUEST,
        Code::DeadlineExceeded => S::GATEWAY_TIMEOUT,
        Code::NotFound => S::NOT_FOUND,
        Code::AlreadyExists => S::CONFLICT,
        Code::PermissionDenied => S::FORBIDDEN,
        Code::Unauthenticated => S::UNAUTHORIZED,
        Code::ResourceExhausted => S::TOO_MANY_REQUESTS,
        // Deliberately not 412, as in grpc-gateway.
        Code::FailedPrecondition => S::BAD_REQUEST,
        Code::Aborted => S::CONFLICT,
        Code::OutOfRange => S::BAD_REQUEST,
        Code::Unimplemented => S::NOT_IMPLEMENTED,
        Code::Internal => S::INTERNAL_SERVER_ERROR,
        Code::Unavailable => S::SERVICE_UNAVAILABLE,
        Code::DataLoss => S::INTERNAL_SERVER_ERROR,
    }
}

/// grpc-gateway's error reply: `{"error":..,"code":..,"message":..}` for a unary method, or
/// for a `stream` that failed before its first message, its stream error chunk.
fn error_response(status: &Status, stream: bool) -> http::Response<Body> {
    let body = if stream {
        stream_error_chunk(status)
    } else {
        let message = json_string(status.message());
        Bytes::from(format!(
            "{{\"error\":{message},\"code\":{},\"message\":{message}}}",
            status.code() as i32
        ))
    };
    json_response(
        http_status(status.code()),
        http::HeaderMap::new(),
        Body::new(Full::new(body)),
    )
}

/// The last chunk of a stream that ended with an error (grpc-gateway's `StreamError`).
fn stream_error_chunk(status: &Status) -> Bytes {
    let http = http_status(status.code());
    Bytes::from(format!(
        "{{\"error\":{{\"grpc_code\":{},\"http_code\":{},\"message\":{},\"http_status\":{}}}}}",
        status.code() as i32,
        http.as_u16(),
        json_string(status.message()),
        json_string(http.canonical_reason().unwrap_or("")),
    ))
}

/// The gRPC response's header metadata as grpc-gateway forwards it: `Grpc-Metadata-<name>`.
fn response_metadata(headers: &http::HeaderMap) -> http::HeaderMap {
    let mut metadata = http::HeaderMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        if name.starts_with("grpc-") || name == "content-length" || name == "date" {
            continue;
        }
        if let Ok(forwarded) = http::HeaderName::try_from(format!("grpc-metadata-{name}")) {
            metadata.append(forwarded, value.clone());
        }
    }
    metadata
}

/// A JSON reply with `status`, the forwarded `metadata` headers and `body`.
fn json_response(
    status: http::StatusCode,
    metadata: http::HeaderMap,
    body: Body,
) -> http::Response<Body> {
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.extend(metadata);
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// A plain-text reply as Go's `http.Error` writes it.
fn text_response(status: http::StatusCode, text: &'static str) -> http::Response<Body> {
    let mut response =
        http::Response::new(Body::new(Full::new(Bytes::from_static(text.as_bytes()))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if !text.is_empty() {
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(
            "x-content-type-options",
            http::HeaderValue::from_static("nosniff"),
        );
    }
    response
}

/// The CORS headers etcd writes on every reply while it allows every origin (its default
/// `--cors=*`).
fn add_cors_headers(headers: &mut http::HeaderMap) {
    headers.insert(
        "access-control-allow-headers",
        http::HeaderValue::from_static("accept, content-type, authorization"),
    );
    headers.insert(
        "access-control-allow-methods",
        http::HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
    );
    headers.insert(
        "access-control-allow-origin",
        http::HeaderValue::from_static("*"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gateway_method_resolves() {
        // Resolving panics on a name missing from the descriptors.
        assert_eq!(methods().len(), METHODS.len());
        assert_eq!(
            method_at("/v3/watch").map(|m| m.streaming),
            Some(Streaming::Both)
        );
        assert_eq!(
            method_at("/v3/maintenance/snapshot").map(|m| m.streaming),
            Some(Streaming::Server)
        );
        assert_eq!(
            method_at("/v3/kv/lease/leases").map(|m| m.grpc_path.as_str()),
            Some("/etcdserverpb.Lease/LeaseLeases")
        );
        assert!(method_at("/v3/kv/rangex").is_none());
    }

    #[test]
    fn json_follows_grpc_gateway_marshaler() {
        let range = method_at("/v3/kv/range").expect("range");
        let response = keel_proto::etcdserverpb::RangeResponse {
            header: Some(keel_proto::etcdserverpb::ResponseHeader {
                cluster_id: 1,
                member_id: 0,
                revision: 7,
                raft_term: 2,
            }),
            kvs: vec![keel_proto::mvccpb::KeyValue {
                key: b"foo".to_vec(),
                value: b"<&>".to_vec(),
                create_revision: 7,
                mod_revision: 7,
                version: 1,
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        let json =
            message_to_json(&range.output, Bytes::from(response.encode_to_vec())).expect("encodes");
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            "{\"header\":{\"cluster_id\":\"1\",\"revision\":\"7\",\"raft_term\":\"2\"},\
             \"kvs\":[{\"key\":\"Zm9v\",\"create_revision\":\"7\",\"mod_revision\":\"7\",\
             \"version\":\"1\",\"value\":\"PCY+\"}],\"count\":\"1\"}"
        );
        let members = method_at("/v3/cluster/member/list").expect("member list");
        let response = keel_proto::etcdserverpb::MemberListResponse {
            members: vec![keel_proto::etcdserverpb::Member {
                id: 5,
                name: "a<b".to_string(),
                peer_ur_ls: vec!["http://x".to_string()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let json = message_to_json(&members.output, Bytes::from(response.encode_to_vec()))
            .expect("encodes");
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            "{\"members\":[{\"ID\":\"5\",\"name\":\"a\\u003cb\",\"peerURLs\":[\"http://x\"]}]}"
        );
    }

    #[test]
    fn requests_accept_both_name_forms_and_ignore_unknown_fields() {
        let grant = method_at("/v3/lease/grant").expect("grant");
        let messages = decode_requests(
            &grant.input,
            br#"{"TTL": 60, "ID": "7", "unknown": true}"#,
            grant.streaming,
        )
        .expect("decodes");
        let decoded = keel_proto::etcdserverpb::LeaseGrantRequest::decode(
            messages[0].encode_to_vec().as_slice(),
        )
        .expect("protobuf");
        assert_eq!((decoded.ttl, decoded.id), (60, 7));
        let put = method_at("/v3/kv/put").expect("put");
        let messages = decode_requests(
            &put.input,
            br#"{"key":"YQ==","prevKv":true}"#,
            put.streaming,
        )
        .expect("decodes");
        let decoded =
            keel_proto::etcdserverpb::PutRequest::decode(messages[0].encode_to_vec().as_slice())
                .expect("protobuf");
        assert_eq!(decoded.key, b"a");
        assert!(decoded.prev_kv);
    }

    #[test]
    fn bodies_decode_as_grpc_gateway_reads_them() {
        let range = method_at("/v3/kv/range").expect("range");
        // An empty body is an empty request.
        let messages = decode_requests(&range.input, b"  \n", range.streaming).expect("empty");
        assert_eq!(messages.len(), 1);
        let truncated = decode_requests(&range.input, b"{\"key\":", range.streaming);
        let status = truncated.expect_err("truncated");
        assert_eq!(
            (status.code(), status.message()),
            (Code::InvalidArgument, "unexpected EOF")
        );
        let watch = method_at("/v3/watch").expect("watch");
        let messages = decode_requests(
            &watch.input,
            br#"{"create_request":{"key":"YQ=="}} {"progress_request":{}}"#,
            watch.streaming,
        )
        .expect("two requests");
        assert_eq!(messages.len(), 2);
    }

    #[test]
    fn headers_become_metadata_as_grpc_gateway_passes_them() {
        let range = method_at("/v3/kv/range").expect("range");
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", "token.1".parse().unwrap());
        headers.insert("grpc-metadata-hasleader", "true".parse().unwrap());
        headers.insert("grpc-metadata-content-type", "text/plain".parse().unwrap());
        headers.insert("grpc-metadata-grpc-timeout", "1S".parse().unwrap());
        headers.insert("x-other", "no".parse().unwrap());
        let request = grpc_request(range, &headers, &[DynamicMessage::new(range.input.clone())]);
        assert_eq!(request.uri().path(), "/etcdserverpb.KV/Range");
        let sent = request.headers();
        assert_eq!(sent.get("authorization").unwrap(), "token.1");
        assert_eq!(sent.get("hasleader").unwrap(), "true");
        assert_eq!(sent.get("content-type").unwrap(), "application/grpc");
        assert!(sent.get("grpc-timeout").is_none());
        assert!(sent.get("x-other").is_none());
    }

    #[test]
    fn grpc_frames_split_across_reads() {
        let mut frames = FrameDecoder::default();
        frames.push(&[0, 0, 0, 0, 3, b'a']);
        assert!(frames.next_message().expect("valid").is_none());
        frames.push(&[b'b', b'c', 0, 0, 0, 0, 0]);
        assert_eq!(
            frames.next_message().expect("valid").as_deref(),
            Some(&b"abc"[..])
        );
        assert_eq!(
            frames.next_message().expect("valid").as_deref(),
            Some(&b""[..])
        );
        assert!(frames.next_message().expect("valid").is_none());
    }

    #[test]
    fn errors_are_written_as_grpc_gateway_writes_them() {
        let status = Status::invalid_argument("etcdserver: key is not provided");
        assert_eq!(
            &stream_error_chunk(&status)[..],
            &b"{\"error\":{\"grpc_code\":3,\"http_code\":400,\"message\":\"etcdserver: key is not provided\",\"http_status\":\"Bad Request\"}}"[..]
        );
        assert_eq!(
            http_status(Code::FailedPrecondition),
            http::StatusCode::BAD_REQUEST
        );
        assert_eq!(
            http_status(Code::Unauthenticated),
            http::StatusCode::UNAUTHORIZED
        );
    }
}
