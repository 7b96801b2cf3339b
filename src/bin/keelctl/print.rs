//! The pieces of etcdctl's printers shared by the commands: response headers and key-values
//! in each output format, protobuf output, and the error for a format a command lacks.

use keel_proto::etcdserverpb::ResponseHeader;
use keel_proto::mvccpb::KeyValue;
use prost::Message;

use crate::error::{exit, CliError};
use crate::global::Format;
use crate::gofmt::{hex_prefixed, println_bytes, quote, JsonObject};

/// How to print: the format (`-w`) and `--hex`.
#[derive(Clone, Copy, Debug)]
pub struct Out {
    /// `-w/--write-out`.
    pub format: Format,
    /// `--hex`.
    pub hex: bool,
}

/// etcdctl's error for an output format a command does not have.
pub fn unsupported(format: Format) -> CliError {
    CliError::new(
        exit::BAD_FEATURE,
        format!("{} not supported as output format", format.name()),
    )
}

/// A response header as JSON (absent when the response has none).
pub fn header_json(header: &Option<ResponseHeader>) -> Option<String> {
    header.as_ref().map(|h| {
        JsonObject::new()
            .u64("cluster_id", h.cluster_id)
            .u64("member_id", h.member_id)
            .i64("revision", h.revision)
            .u64("raft_term", h.raft_term)
            .finish()
    })
}

/// A key-value as JSON.
pub fn kv_json(kv: &KeyValue) -> String {
    JsonObject::new()
        .bytes("key", &kv.key)
        .i64("create_revision", kv.create_revision)
        .i64("mod_revision", kv.mod_revision)
        .i64("version", kv.version)
        .bytes("value", &kv.value)
        .i64("lease", kv.lease)
        .finish()
}

/// The header lines of `-w fields`. Go's printer writes the revision even when it is zero
/// (`"Revision" : 0` in `etcdctl -w fields member list`), and `--hex` does not change them.
pub fn fields_header(header: &Option<ResponseHeader>) {
    let h = header.unwrap_or_default();
    println!("\"ClusterID\" : {}", h.cluster_id);
    println!("\"MemberID\" : {}", h.member_id);
    println!("\"Revision\" : {}", h.revision);
    println!("\"RaftTerm\" : {}", h.raft_term);
}

/// A key-value in `-w fields`, its field names prefixed with `prefix` ("Prev" for previous
/// values).
pub fn fields_kv(prefix: &str, kv: &KeyValue) {
    println!("\"{prefix}Key\" : {}", quote(&kv.key));
    println!("\"{prefix}CreateRevision\" : {}", kv.create_revision);
    println!("\"{prefix}ModRevision\" : {}", kv.mod_revision);
    println!("\"{prefix}Version\" : {}", kv.version);
    println!("\"{prefix}Value\" : {}", quote(&kv.value));
    println!("\"{prefix}Lease\" : {}", kv.lease);
}

/// A key-value in simple output: the key line (unless `value_only`), then the value line.
pub fn simple_kv(kv: &KeyValue, hex: bool, value_only: bool) {
    let render = |bytes: &[u8]| {
        if hex {
            hex_prefixed(bytes).into_bytes()
        } else {
            bytes.to_vec()
        }
    };
    if !value_only {
        println_bytes(&render(&kv.key));
    }
    println_bytes(&render(&kv.value));
}

/// `-w protobuf`: the response's protobuf encoding, raw, with no newline.
pub fn protobuf(message: &impl Message) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&message.encode_to_vec());
    let _ = out.flush();
}
