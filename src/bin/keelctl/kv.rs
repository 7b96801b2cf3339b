//! `get`, `put` and `del`, with etcdctl's flags, checks, messages and output formats.

use std::io::Read;

use clap::Args;
use keel_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use keel_proto::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
};

use crate::error::CliError;
use crate::global::Format;
use crate::gofmt::JsonObject;
use crate::print::{self, Out};
use crate::Ctx;

/// `get [options] <key> [range_end]`: gets the key or a range of keys.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// The key, and optionally the end of the range (exclusive).
    pub args: Vec<String>,
    /// Linearizable(l) or Serializable(s).
    #[arg(long, default_value = "l")]
    pub consistency: String,
    /// Order of results; ASCEND or DESCEND (ASCEND by default).
    #[arg(long, default_value = "")]
    pub order: String,
    /// Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION.
    #[arg(long, default_value = "")]
    pub sort_by: String,
    /// Maximum number of results.
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
    /// Get keys with matching prefix.
    #[arg(long)]
    pub prefix: bool,
    /// Get keys that are greater than or equal to the given key using byte compare.
    #[arg(long)]
    pub from_key: bool,
    /// Specify the kv revision.
    #[arg(long, default_value_t = 0)]
    pub rev: i64,
    /// Get only the keys.
    #[arg(long)]
    pub keys_only: bool,
    /// Get only the count.
    #[arg(long)]
    pub count_only: bool,
    /// Only write values when using the "simple" output format.
    #[arg(long)]
    pub print_value_only: bool,
}

/// `put [options] <key> <value>` (value from stdin when left out): puts the given key into
/// the store.
#[derive(Args, Debug)]
pub struct PutArgs {
    /// The key and its value.
    pub args: Vec<String>,
    /// lease ID (in hexadecimal) to attach to the key
    #[arg(long, default_value = "0")]
    pub lease: String,
    /// return the previous key-value pair before modification
    #[arg(long)]
    pub prev_kv: bool,
    /// updates the key using its current value
    #[arg(long)]
    pub ignore_value: bool,
    /// updates the key using its current lease
    #[arg(long)]
    pub ignore_lease: bool,
}

/// `del [options] <key> [range_end]`: removes the specified key or range of keys.
#[derive(Args, Debug)]
pub struct DelArgs {
    /// The key, and optionally the end of the range (exclusive).
    pub args: Vec<String>,
    /// delete keys with matching prefix
    #[arg(long)]
    pub prefix: bool,
    /// return deleted key-value pairs
    #[arg(long)]
    pub prev_kv: bool,
    /// delete keys that are greater than or equal to the given key using byte compare
    #[arg(long)]
    pub from_key: bool,
    /// delete range of keys
    #[arg(long)]
    pub range: bool,
}

/// The end of the range of keys starting with `prefix` (etcd's `GetPrefixRangeEnd`): the
/// prefix with its last byte below 0xff incremented and what follows dropped; "\0" (every
/// key) when every byte is 0xff.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The key and range end of a key argument with `--prefix`/`--from-key`, as etcd's client
/// options make them.
pub fn key_range(
    key: &str,
    range_end: Option<&str>,
    prefix: bool,
    from_key: bool,
) -> (Vec<u8>, Vec<u8>) {
    let mut key = key.as_bytes().to_vec();
    let mut end = range_end.map(|e| e.as_bytes().to_vec()).unwrap_or_default();
    if prefix {
        if key.is_empty() {
            key = vec![0];
            end = vec![0];
        } else {
            end = prefix_end(&key);
        }
    }
    if from_key {
        if key.is_empty() {
            key = vec![0];
        }
        end = vec![0];
    }
    (key, end)
}

/// The RangeRequest of `get`'s arguments, or etcdctl's error for them.
pub fn get_request(args: &GetArgs) -> Result<RangeRequest, CliError> {
    // Arguments after the range end are ignored, as etcdctl ignores them.
    if args.args.is_empty() {
        return Err(CliError::bad_args(
            "get command needs one argument as key and an optional argument as range_end",
        ));
    }
    if args.prefix && args.from_key {
        return Err(CliError::bad_args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    if args.keys_only && args.count_only {
        return Err(CliError::bad_args(
            "`--keys-only` and `--count-only` cannot be set at the same time, choose one",
        ));
    }
    let serializable = match args.consistency.as_str() {
        "s" => true,
        "l" => false,
        other => {
            return Err(CliError::new(
                crate::error::exit::BAD_FEATURE,
                format!(
                    "unknown consistency flag {}",
                    crate::gofmt::quote(other.as_bytes())
                ),
            ))
        }
    };
    if args.args.len() > 1 && (args.prefix || args.from_key) {
        return Err(CliError::bad_args(
            "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
        ));
    }
    let order = match args.order.to_uppercase().as_str() {
        "ASCEND" => SortOrder::Ascend,
        "DESCEND" => SortOrder::Descend,
        "" => SortOrder::None,
        _ => {
            return Err(CliError::new(
                crate::error::exit::BAD_FEATURE,
                format!("bad sort order {}", args.order),
            ))
        }
    };
    let target = match args.sort_by.to_uppercase().as_str() {
        "CREATE" => SortTarget::Create,
        "KEY" | "" => SortTarget::Key,
        "MODIFY" => SortTarget::Mod,
        "VALUE" => SortTarget::Value,
        "VERSION" => SortTarget::Version,
        _ => {
            return Err(CliError::new(
                crate::error::exit::BAD_FEATURE,
                format!("bad sort target {}", args.sort_by),
            ))
        }
    };
    // Keys come sorted ascending anyway; asking for it would make the server sort.
    let order = if target == SortTarget::Key && order == SortOrder::Ascend {
        SortOrder::None
    } else {
        order
    };
    let (key, range_end) = key_range(
        &args.args[0],
        args.args.get(1).map(String::as_str),
        args.prefix,
        args.from_key,
    );
    Ok(RangeRequest {
        key,
        range_end,
        limit: args.limit,
        revision: args.rev.max(0),
        sort_order: order as i32,
        sort_target: target as i32,
        serializable,
        keys_only: args.keys_only,
        count_only: args.count_only,
        ..Default::default()
    })
}

/// `get`.
pub fn get(ctx: &Ctx, args: &GetArgs) -> Result<(), CliError> {
    let request = get_request(args)?;
    let client = ctx.client()?;
    let response = client.call(client.kv().range(request))?;
    if args.count_only && ctx.out.format != Format::Fields {
        return Err(CliError::bad_args(
            "--count-only is only for `--write-out=fields`",
        ));
    }
    if args.print_value_only && ctx.out.format != Format::Simple {
        return Err(CliError::bad_args(
            "print-value-only is only for `--write-out=simple`",
        ));
    }
    print_get(ctx.out, &response, args.print_value_only)
}

/// A RangeResponse in every format.
pub fn print_get(out: Out, response: &RangeResponse, value_only: bool) -> Result<(), CliError> {
    match out.format {
        Format::Simple => {
            for kv in &response.kvs {
                print::simple_kv(kv, out.hex, value_only);
            }
        }
        Format::Json => println!("{}", range_json(response)),
        Format::Protobuf => print::protobuf(response),
        Format::Fields => {
            print::fields_header(&response.header);
            for kv in &response.kvs {
                print::fields_kv("", kv);
            }
            println!("\"More\" : {}", response.more);
            println!("\"Count\" : {}", response.count);
        }
        Format::Table => return Err(print::unsupported(out.format)),
    }
    Ok(())
}

/// A RangeResponse as etcdctl's JSON.
pub fn range_json(response: &RangeResponse) -> String {
    JsonObject::new()
        .raw("header", print::header_json(&response.header))
        .list("kvs", response.kvs.iter().map(print::kv_json).collect())
        .bool("more", response.more)
        .i64("count", response.count)
        .finish()
}

/// Reads a whole argument from stdin when it is not on the command line (etcdctl's
/// `argOrStdin`); empty input is an error.
pub fn arg_or_stdin(args: &[String], index: usize) -> Option<String> {
    if let Some(arg) = args.get(index) {
        return Some(arg.clone());
    }
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).ok()?;
    if input.is_empty() {
        return None;
    }
    Some(String::from_utf8_lossy(&input).into_owned())
}

/// Parses a lease ID given in hexadecimal, as etcdctl's flags and arguments take them.
pub fn parse_lease_id(text: &str) -> Result<i64, String> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let go_error = |what: &str| {
        format!(
            "strconv.ParseInt: parsing {}: {what}",
            crate::gofmt::quote(text.as_bytes())
        )
    };
    if digits.is_empty() || digits.contains('_') {
        return Err(go_error("invalid syntax"));
    }
    let magnitude = u64::from_str_radix(digits, 16).map_err(|e| {
        if matches!(e.kind(), std::num::IntErrorKind::PosOverflow) {
            go_error("value out of range")
        } else {
            go_error("invalid syntax")
        }
    })?;
    if negative {
        if magnitude > i64::MAX as u64 + 1 {
            return Err(go_error("value out of range"));
        }
        Ok((magnitude as i64).wrapping_neg())
    } else {
        i64::try_from(magnitude).map_err(|_| go_error("value out of range"))
    }
}

/// The PutRequest of `put`'s arguments.
pub fn put_request(args: &PutArgs) -> Result<PutRequest, CliError> {
    const NEEDS: &str = "put command needs 1 argument and input from stdin or 2 arguments";
    if args.args.is_empty() {
        return Err(CliError::bad_args(NEEDS));
    }
    if args.ignore_value && args.args.len() > 1 {
        return Err(CliError::bad_args(
            "put command needs only 1 argument when 'ignore-value' is set",
        ));
    }
    let value = if args.ignore_value {
        String::new()
    } else {
        arg_or_stdin(&args.args, 1).ok_or_else(|| CliError::bad_args(NEEDS))?
    };
    let lease = parse_lease_id(&args.lease)
        .map_err(|e| CliError::bad_args(format!("bad lease ID ({e}), expecting ID in Hex")))?;
    Ok(PutRequest {
        key: args.args[0].as_bytes().to_vec(),
        value: value.into_bytes(),
        lease,
        prev_kv: args.prev_kv,
        ignore_value: args.ignore_value,
        ignore_lease: args.ignore_lease,
    })
}

/// `put`.
pub fn put(ctx: &Ctx, args: &PutArgs) -> Result<(), CliError> {
    let request = put_request(args)?;
    let client = ctx.client()?;
    let response = client.call(client.kv().put(request))?;
    print_put(ctx.out, &response)
}

/// A PutResponse in every format.
pub fn print_put(out: Out, response: &PutResponse) -> Result<(), CliError> {
    match out.format {
        Format::Simple => {
            println!("OK");
            if let Some(prev) = &response.prev_kv {
                print::simple_kv(prev, out.hex, false);
            }
        }
        Format::Json => println!("{}", put_json(response)),
        Format::Protobuf => print::protobuf(response),
        Format::Fields => {
            print::fields_header(&response.header);
            if let Some(prev) = &response.prev_kv {
                print::fields_kv("Prev", prev);
            }
        }
        Format::Table => return Err(print::unsupported(out.format)),
    }
    Ok(())
}

/// A PutResponse as etcdctl's JSON.
pub fn put_json(response: &PutResponse) -> String {
    JsonObject::new()
        .raw("header", print::header_json(&response.header))
        .raw("prev_kv", response.prev_kv.as_ref().map(print::kv_json))
        .finish()
}

/// The DeleteRangeRequest of `del`'s arguments.
pub fn del_request(args: &DelArgs) -> Result<DeleteRangeRequest, CliError> {
    if args.args.is_empty() || args.args.len() > 2 {
        return Err(CliError::bad_args(
            "del command needs one argument as key and an optional argument as range_end",
        ));
    }
    if args.prefix && args.from_key {
        return Err(CliError::bad_args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    if args.args.len() > 1 && (args.prefix || args.from_key) {
        return Err(CliError::bad_args(
            "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
        ));
    }
    let (key, range_end) = key_range(
        &args.args[0],
        args.args.get(1).map(String::as_str),
        args.prefix,
        args.from_key,
    );
    Ok(DeleteRangeRequest {
        key,
        range_end,
        prev_kv: args.prev_kv,
    })
}

/// `del`.
pub fn del(ctx: &Ctx, args: &DelArgs) -> Result<(), CliError> {
    let request = del_request(args)?;
    let client = ctx.client()?;
    let response = client.call(client.kv().delete_range(request))?;
    print_del(ctx.out, &response)
}

/// A DeleteRangeResponse in every format.
pub fn print_del(out: Out, response: &DeleteRangeResponse) -> Result<(), CliError> {
    match out.format {
        Format::Simple => {
            println!("{}", response.deleted);
            for kv in &response.prev_kvs {
                print::simple_kv(kv, out.hex, false);
            }
        }
        Format::Json => println!("{}", del_json(response)),
        Format::Protobuf => print::protobuf(response),
        Format::Fields => {
            print::fields_header(&response.header);
            println!("\"Deleted\" : {}", response.deleted);
            for kv in &response.prev_kvs {
                print::fields_kv("Prev", kv);
            }
        }
        Format::Table => return Err(print::unsupported(out.format)),
    }
    Ok(())
}

/// A DeleteRangeResponse as etcdctl's JSON.
pub fn del_json(response: &DeleteRangeResponse) -> String {
    JsonObject::new()
        .raw("header", print::header_json(&response.header))
        .i64("deleted", response.deleted)
        .list(
            "prev_kvs",
            response.prev_kvs.iter().map(print::kv_json).collect(),
        )
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_as_etcd_computes_them() {
        assert_eq!(prefix_end(b"abc"), b"abd");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }

    #[test]
    fn lease_ids_parse_as_hex() {
        assert_eq!(parse_lease_id("0"), Ok(0));
        assert_eq!(parse_lease_id("694d7a1b2c3d4e5f"), Ok(0x694d7a1b2c3d4e5f));
        assert!(parse_lease_id("zz").is_err());
        assert!(parse_lease_id("ffffffffffffffff").is_err());
    }
}
