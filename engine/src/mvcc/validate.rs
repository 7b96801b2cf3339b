//! Request checks that etcd's gRPC layer makes before a request reaches the state machine.
//!
//! The server should call [`check_txn_request`] (and [`check_put_request`]) before proposing,
//! to answer bad requests without a raft round trip. The store runs the same checks again at
//! apply time (without the op-count limit, which is per-member configuration), because a txn
//! must either apply completely or not at all: every error a txn can hit is found here or in
//! the store's pre-execution pass, never halfway through its writes.

use std::collections::BTreeSet;

use super::error::MvccError;
use super::types::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};

/// etcd's default `--max-txn-ops`: the most compares, or operations in one branch, a txn may
/// have.
pub const TXN_OPS_MAX_DEFAULT: usize = 128;

/// Checks a range request as etcd's API does: the key must not be empty.
pub fn check_range_request(request: &RangeRequest) -> Result<(), MvccError> {
    if request.key.is_empty() {
        return Err(MvccError::EmptyKey);
    }
    Ok(())
}

/// Checks a put request as etcd's API does: a key, and no value (lease) together with
/// `ignore_value` (`ignore_lease`).
pub fn check_put_request(request: &PutRequest) -> Result<(), MvccError> {
    if request.key.is_empty() {
        return Err(MvccError::EmptyKey);
    }
    if request.ignore_value && !request.value.is_empty() {
        return Err(MvccError::ValueProvided);
    }
    if request.ignore_lease && request.lease != 0 {
        return Err(MvccError::LeaseProvided);
    }
    Ok(())
}

/// Checks a delete request as etcd's API does: the key must not be empty.
pub fn check_delete_request(request: &DeleteRangeRequest) -> Result<(), MvccError> {
    if request.key.is_empty() {
        return Err(MvccError::EmptyKey);
    }
    Ok(())
}

/// Checks a txn as etcd's API does, in etcd's order: at most `txn_ops_max` compares and at
/// most that many operations per branch (nested txns included), no empty key anywhere, the
/// put rules of [`check_put_request`], then no key written twice: two puts of one key, or a
/// put of a key that a delete of the same txn covers, give [`MvccError::DuplicateKey`]. Puts of
/// one key in both branches of one nested txn are allowed (only one branch runs), as in etcd.
///
/// One deliberate difference from etcd: a delete with `range_end == [0]` ("every key >=
/// key") counts here as covering every key from `key` on. etcd's interval check takes the
/// literal `[key, "\0")` (an empty interval), accepts such a txn, and then can fail halfway
/// through its writes (etcd panics the member); Keel refuses it up front instead.
pub fn check_txn_request(request: &TxnRequest, txn_ops_max: usize) -> Result<(), MvccError> {
    check_txn_shape(request, txn_ops_max)?;
    check_intervals(&request.success)?;
    check_intervals(&request.failure)?;
    Ok(())
}

fn check_txn_shape(request: &TxnRequest, txn_ops_max: usize) -> Result<(), MvccError> {
    let ops = request
        .compare
        .len()
        .max(request.success.len())
        .max(request.failure.len());
    if ops > txn_ops_max {
        return Err(MvccError::TooManyOps);
    }
    if request.compare.iter().any(|c| c.key.is_empty()) {
        return Err(MvccError::EmptyKey);
    }
    for op in request.success.iter().chain(request.failure.iter()) {
        match op {
            RequestOp::Range(r) => check_range_request(r)?,
            RequestOp::Put(p) => check_put_request(p)?,
            RequestOp::DeleteRange(d) => check_delete_request(d)?,
            RequestOp::Txn(t) => check_txn_shape(t, txn_ops_max)?,
        }
    }
    Ok(())
}

/// A deleted key interval: `[begin, end)`, with `end == None` meaning unbounded.
struct Interval<'a> {
    begin: &'a [u8],
    end: Option<&'a [u8]>,
}

impl<'a> Interval<'a> {
    fn of(request: &'a DeleteRangeRequest) -> Interval<'a> {
        let key = request.key.as_slice();
        match request.range_end.as_slice() {
            [] => Interval {
                begin: key,
                end: Some(key),
            },
            [0] => Interval {
                begin: key,
                end: None,
            },
            end => Interval {
                begin: key,
                end: Some(end),
            },
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        match self.end {
            // A point interval (`end == begin` is how a single-key delete is stored).
            Some(end) if end == self.begin => key == self.begin,
            Some(end) => key >= self.begin && key < end,
            None => key >= self.begin,
        }
    }
}

type Puts<'a> = BTreeSet<&'a [u8]>;

fn check_intervals(ops: &[RequestOp]) -> Result<(Puts<'_>, Vec<Interval<'_>>), MvccError> {
    let mut deletes: Vec<Interval<'_>> = ops
        .iter()
        .filter_map(|op| match op {
            RequestOp::DeleteRange(d) => Some(Interval::of(d)),
            _ => None,
        })
        .collect();
    let mut puts: Puts<'_> = BTreeSet::new();
    let covered = |deletes: &[Interval<'_>], key: &[u8]| deletes.iter().any(|d| d.contains(key));
    for op in ops {
        let RequestOp::Txn(nested) = op else {
            continue;
        };
        let (puts_then, deletes_then) = check_intervals(&nested.success)?;
        let (puts_else, deletes_else) = check_intervals(&nested.failure)?;
        for key in &puts_then {
            if puts.contains(key) || covered(&deletes, key) {
                return Err(MvccError::DuplicateKey);
            }
            puts.insert(key);
        }
        for key in &puts_else {
            // The same key in both branches is fine: only one of them runs.
            if puts.contains(key) && !puts_then.contains(key) {
                return Err(MvccError::DuplicateKey);
            }
            if covered(&deletes, key) {
                return Err(MvccError::DuplicateKey);
            }
            puts.insert(key);
        }
        deletes.extend(deletes_then);
        deletes.extend(deletes_else);
    }
    for op in ops {
        let RequestOp::Put(put) = op else {
            continue;
        };
        let key = put.key.as_slice();
        if puts.contains(key) || covered(&deletes, key) {
            return Err(MvccError::DuplicateKey);
        }
        puts.insert(key);
    }
    Ok((puts, deletes))
}
