//! Drives a generated server directly, without a network, to check that it answers on etcd's
//! exact method path and speaks gRPC framing around the prost messages.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use http_body_util::{BodyExt, Full};
use keel_proto::etcdserverpb::kv_server::{Kv, KvServer};
use keel_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use keel_proto::mvccpb::KeyValue;
use prost::Message;
use tonic::codegen::{http, Bytes, Service};
use tonic::{Request, Response, Status};

/// Polls a future to completion on the current thread. The generated server and the
/// in-memory bodies used here never wait on I/O, so a no-op waker suffices; the loop bound
/// turns an unexpected wait into a test failure instead of a hang.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    for _ in 0..1_000 {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
    }
    panic!("future did not complete without I/O");
}

/// A KV service that answers Put by echoing the request's key and lease, and nothing else.
struct EchoPut;

#[tonic::async_trait]
impl Kv for EchoPut {
    async fn range(&self, _: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        Err(Status::unimplemented("range"))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let put = request.into_inner();
        Ok(Response::new(PutResponse {
            header: Some(ResponseHeader {
                revision: put.lease,
                ..Default::default()
            }),
            prev_kv: Some(KeyValue {
                key: put.key,
                ..Default::default()
            }),
        }))
    }

    async fn delete_range(
        &self,
        _: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        Err(Status::unimplemented("delete_range"))
    }

    async fn txn(&self, _: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        Err(Status::unimplemented("txn"))
    }

    async fn compact(
        &self,
        _: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        Err(Status::unimplemented("compact"))
    }
}

/// Wraps an encoded message in gRPC's length-prefixed framing: a zero compression flag and
/// the length as a big-endian u32.
fn grpc_frame(message: &impl Message) -> Bytes {
    let payload = message.encode_to_vec();
    let length = u32::try_from(payload.len()).expect("test messages are small");
    let mut framed = vec![0u8];
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(&payload);
    Bytes::from(framed)
}

/// Sends one unary call to the server and returns the HTTP response headers' grpc-status
/// (set when the call fails before any message), the response payload and the trailers'
/// grpc-status.
fn call(path: &str, body: Bytes) -> (Option<String>, Bytes, Option<String>) {
    let mut server = KvServer::new(EchoPut);
    let request = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(body))
        .expect("valid request");
    let mut context = Context::from_waker(Waker::noop());
    assert!(matches!(
        Service::<http::Request<Full<Bytes>>>::poll_ready(&mut server, &mut context),
        Poll::Ready(Ok(()))
    ));
    let response = block_on(server.call(request)).expect("the service itself never fails");
    let header_status = response
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().expect("ascii status").to_owned());
    let collected = block_on(response.into_body().collect()).expect("body collects");
    let trailer_status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .map(|v| v.to_str().expect("ascii status").to_owned());
    (header_status, collected.to_bytes(), trailer_status)
}

#[test]
fn put_is_served_on_etcds_path() {
    let request = PutRequest {
        key: b"greeting".to_vec(),
        value: b"hello".to_vec(),
        lease: 42,
        ..Default::default()
    };
    let (header_status, body, trailer_status) = call("/etcdserverpb.KV/Put", grpc_frame(&request));
    assert_eq!(header_status, None);
    assert_eq!(trailer_status.as_deref(), Some("0"), "grpc-status OK");

    assert!(body.len() >= 5, "response has a gRPC frame header");
    assert_eq!(body[0], 0, "response is not compressed");
    let length = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    assert_eq!(body.len(), 5 + length, "exactly one response message");
    let response = PutResponse::decode(&body[5..]).expect("response decodes");
    assert_eq!(response.header.map(|h| h.revision), Some(42));
    assert_eq!(
        response.prev_kv.map(|kv| kv.key),
        Some(b"greeting".to_vec())
    );
}

#[test]
fn unknown_method_is_unimplemented() {
    // Status code 12 is UNIMPLEMENTED. A lower-case service name is a different path: gRPC
    // paths are case-sensitive, which is why etcd's "KV" spelling matters.
    for path in ["/etcdserverpb.KV/Nope", "/etcdserverpb.Kv/Put"] {
        let (header_status, _, trailer_status) = call(path, grpc_frame(&PutRequest::default()));
        let status = header_status.or(trailer_status);
        assert_eq!(status.as_deref(), Some("12"), "status for {path}");
    }
}
