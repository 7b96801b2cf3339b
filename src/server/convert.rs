//! Conversions between etcd's protobuf messages and the engine's request types.
//!
//! The engine mirrors etcd's messages field by field (see `keel_engine::mvcc::types`), so
//! these functions only move fields. Enum values the engine does not know (a newer client
//! sending a sort order from the future) become [`ServerError::InvalidEnum`], never a panic.
//!
//! Apply converts the requests in log entries with them; the API layer converts requests
//! before it checks them, and answers with the response conversions.

use keel_engine::mvcc;
use keel_proto::etcdserverpb as pb;
use keel_proto::mvccpb;

use crate::server::error::ServerError;
use crate::server::state::HeaderFields;

/// A request field held a value etcd does not define.
fn bad_enum(field: &'static str, value: i32) -> ServerError {
    ServerError::InvalidEnum { field, value }
}

/// etcd's `RangeRequest` as the engine's.
pub fn range_request(request: &pb::RangeRequest) -> Result<mvcc::RangeRequest, ServerError> {
    let sort_order = match request.sort_order {
        0 => mvcc::SortOrder::None,
        1 => mvcc::SortOrder::Ascend,
        2 => mvcc::SortOrder::Descend,
        other => return Err(bad_enum("sort order", other)),
    };
    let sort_target = match request.sort_target {
        0 => mvcc::SortTarget::Key,
        1 => mvcc::SortTarget::Version,
        2 => mvcc::SortTarget::Create,
        3 => mvcc::SortTarget::Mod,
        4 => mvcc::SortTarget::Value,
        other => return Err(bad_enum("sort target", other)),
    };
    Ok(mvcc::RangeRequest {
        key: request.key.clone(),
        range_end: request.range_end.clone(),
        limit: request.limit,
        revision: request.revision,
        sort_order,
        sort_target,
        keys_only: request.keys_only,
        count_only: request.count_only,
        min_mod_revision: request.min_mod_revision,
        max_mod_revision: request.max_mod_revision,
        min_create_revision: request.min_create_revision,
        max_create_revision: request.max_create_revision,
    })
}

/// etcd's `PutRequest` as the engine's.
pub fn put_request(request: &pb::PutRequest) -> mvcc::PutRequest {
    mvcc::PutRequest {
        key: request.key.clone(),
        value: request.value.clone(),
        lease: request.lease,
        prev_kv: request.prev_kv,
        ignore_value: request.ignore_value,
        ignore_lease: request.ignore_lease,
    }
}

/// etcd's `PutRequest` as the engine's, moving the key and value.
pub fn put_request_owned(request: pb::PutRequest) -> mvcc::PutRequest {
    mvcc::PutRequest {
        key: request.key,
        value: request.value,
        lease: request.lease,
        prev_kv: request.prev_kv,
        ignore_value: request.ignore_value,
        ignore_lease: request.ignore_lease,
    }
}

/// etcd's `DeleteRangeRequest` as the engine's, moving the keys.
pub fn delete_request_owned(request: pb::DeleteRangeRequest) -> mvcc::DeleteRangeRequest {
    mvcc::DeleteRangeRequest {
        key: request.key,
        range_end: request.range_end,
        prev_kv: request.prev_kv,
    }
}

/// Checks a put as etcd's API does (see `mvcc::check_put_request`) without copying its key
/// and value.
pub fn check_put(request: &mut pb::PutRequest) -> Result<(), ServerError> {
    let borrowed = mvcc::PutRequest {
        key: std::mem::take(&mut request.key),
        value: std::mem::take(&mut request.value),
        lease: request.lease,
        prev_kv: request.prev_kv,
        ignore_value: request.ignore_value,
        ignore_lease: request.ignore_lease,
    };
    let result = mvcc::check_put_request(&borrowed);
    request.key = borrowed.key;
    request.value = borrowed.value;
    result.map_err(ServerError::from)
}

/// etcd's `DeleteRangeRequest` as the engine's.
pub fn delete_request(request: &pb::DeleteRangeRequest) -> mvcc::DeleteRangeRequest {
    mvcc::DeleteRangeRequest {
        key: request.key.clone(),
        range_end: request.range_end.clone(),
        prev_kv: request.prev_kv,
    }
}

fn compare(compare: &pb::Compare) -> Result<mvcc::Compare, ServerError> {
    use pb::compare::TargetUnion;
    let result = match compare.result {
        0 => mvcc::CompareResult::Equal,
        1 => mvcc::CompareResult::Greater,
        2 => mvcc::CompareResult::Less,
        3 => mvcc::CompareResult::NotEqual,
        other => return Err(bad_enum("compare result", other)),
    };
    // etcd reads the union member that matches `target`; a missing union member compares
    // against the zero value of that target's type, as Go's generated getters return.
    let union = compare.target_union.as_ref();
    let target = match compare.target {
        0 => mvcc::CompareTarget::Version(match union {
            Some(TargetUnion::Version(v)) => *v,
            _ => 0,
        }),
        1 => mvcc::CompareTarget::CreateRevision(match union {
            Some(TargetUnion::CreateRevision(v)) => *v,
            _ => 0,
        }),
        2 => mvcc::CompareTarget::ModRevision(match union {
            Some(TargetUnion::ModRevision(v)) => *v,
            _ => 0,
        }),
        3 => mvcc::CompareTarget::Value(match union {
            Some(TargetUnion::Value(v)) => v.clone(),
            _ => Vec::new(),
        }),
        4 => mvcc::CompareTarget::Lease(match union {
            Some(TargetUnion::Lease(v)) => *v,
            _ => 0,
        }),
        other => return Err(bad_enum("compare target", other)),
    };
    Ok(mvcc::Compare {
        result,
        target,
        key: compare.key.clone(),
        range_end: compare.range_end.clone(),
    })
}

fn request_op(op: &pb::RequestOp) -> Result<mvcc::RequestOp, ServerError> {
    use pb::request_op::Request;
    match &op.request {
        Some(Request::RequestRange(r)) => Ok(mvcc::RequestOp::Range(range_request(r)?)),
        Some(Request::RequestPut(r)) => Ok(mvcc::RequestOp::Put(put_request(r))),
        Some(Request::RequestDeleteRange(r)) => Ok(mvcc::RequestOp::DeleteRange(delete_request(r))),
        Some(Request::RequestTxn(r)) => Ok(mvcc::RequestOp::Txn(txn_request(r)?)),
        // etcd's apply treats an empty RequestOp as a no-op read of nothing; its validation
        // refuses it first with this text.
        None => Err(ServerError::EmptyTxnOp),
    }
}

/// etcd's `TxnRequest` as the engine's (nested txns included).
pub fn txn_request(request: &pb::TxnRequest) -> Result<mvcc::TxnRequest, ServerError> {
    Ok(mvcc::TxnRequest {
        compare: request
            .compare
            .iter()
            .map(compare)
            .collect::<Result<_, _>>()?,
        success: request
            .success
            .iter()
            .map(request_op)
            .collect::<Result<_, _>>()?,
        failure: request
            .failure
            .iter()
            .map(request_op)
            .collect::<Result<_, _>>()?,
    })
}

/// The engine's key-value as etcd's.
pub fn key_value(kv: mvcc::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

/// The engine's event as etcd's. `with_prev_kv` is the watcher's `prev_kv` option.
pub fn event(event: mvcc::Event, with_prev_kv: bool) -> mvccpb::Event {
    mvccpb::Event {
        r#type: match event.kind {
            mvcc::EventKind::Put => mvccpb::event::EventType::Put as i32,
            mvcc::EventKind::Delete => mvccpb::event::EventType::Delete as i32,
        },
        kv: Some(key_value(event.kv)),
        prev_kv: if with_prev_kv {
            event.prev_kv.map(key_value)
        } else {
            None
        },
    }
}

/// The engine's range answer as etcd's.
pub fn range_response(response: mvcc::RangeResponse, header: &HeaderFields) -> pb::RangeResponse {
    pb::RangeResponse {
        header: header.at(response.revision),
        kvs: response.kvs.into_iter().map(key_value).collect(),
        more: response.more,
        count: response.count,
    }
}

/// The engine's put answer as etcd's.
pub fn put_response(response: mvcc::PutResponse, header: &HeaderFields) -> pb::PutResponse {
    pb::PutResponse {
        header: header.at(response.revision),
        prev_kv: response.prev_kv.map(key_value),
    }
}

/// The engine's delete answer as etcd's.
pub fn delete_response(
    response: mvcc::DeleteRangeResponse,
    header: &HeaderFields,
) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: header.at(response.revision),
        deleted: response.deleted,
        prev_kvs: response.prev_kvs.into_iter().map(key_value).collect(),
    }
}

/// The engine's txn answer as etcd's. The responses of the txn's operations carry a header
/// holding only a revision, as etcd's apply fills them (no cluster, member or term).
pub fn txn_response(response: mvcc::TxnResponse, header: &HeaderFields) -> pb::TxnResponse {
    use pb::response_op::Response;
    let inner = &HeaderFields {
        cluster_id: 0,
        member_id: 0,
        raft_term: 0,
    };
    let responses = response
        .responses
        .into_iter()
        .map(|op| pb::ResponseOp {
            response: Some(match op {
                mvcc::ResponseOp::Range(r) => Response::ResponseRange(range_response(r, inner)),
                mvcc::ResponseOp::Put(r) => Response::ResponsePut(put_response(r, inner)),
                mvcc::ResponseOp::DeleteRange(r) => {
                    Response::ResponseDeleteRange(delete_response(r, inner))
                }
                mvcc::ResponseOp::Txn(r) => Response::ResponseTxn(txn_response(r, inner)),
            }),
        })
        .collect();
    pb::TxnResponse {
        header: header.at(response.revision),
        succeeded: response.succeeded,
        responses,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_enum_values_are_invalid_enum_errors() {
        let request = pb::RangeRequest {
            key: b"a".to_vec(),
            sort_order: 7,
            ..Default::default()
        };
        let error = range_request(&request).unwrap_err();
        assert_eq!(
            error,
            ServerError::InvalidEnum {
                field: "sort order",
                value: 7
            }
        );
    }

    #[test]
    fn compare_without_union_member_compares_with_zero_value() {
        let request = pb::TxnRequest {
            compare: vec![pb::Compare {
                result: 0,
                target: 2,
                key: b"k".to_vec(),
                range_end: Vec::new(),
                target_union: None,
            }],
            ..Default::default()
        };
        let txn = txn_request(&request).unwrap();
        assert_eq!(txn.compare[0].target, mvcc::CompareTarget::ModRevision(0));
    }
}
