//! `txn` and `compaction`, with etcdctl's script grammar, messages and output formats.
//!
//! A txn script is three sections, each ended by an empty line: the comparisons, the
//! requests run when all of them hold, and the requests run otherwise. A comparison is
//! `target("key") op "value"`, read as Go's `fmt.Sscanf(rest, "%q) %s %q")` reads it; a
//! request is a `get`, `put` or `del` command line with the flags of those commands.

use std::io::BufRead;

use clap::{Args, Parser, Subcommand};
use keel_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use keel_proto::etcdserverpb::request_op::Request;
use keel_proto::etcdserverpb::response_op::Response;
use keel_proto::etcdserverpb::{
    CompactionRequest, Compare, RequestOp, ResponseOp, TxnRequest, TxnResponse,
};

use crate::error::CliError;
use crate::global::Format;
use crate::gofmt::{quote, JsonObject};
use crate::goscan::{argify, parse_int, Scanner};
use crate::kv::{self, DelArgs, GetArgs, PutArgs};
use crate::print::{self, Out};
use crate::Ctx;

/// `txn [options]`: processes all the requests in one transaction.
#[derive(Args, Debug)]
pub struct TxnArgs {
    /// Arguments are refused: the transaction comes from stdin.
    #[arg(hide = true)]
    pub args: Vec<String>,
    /// Input transaction in interactive mode.
    #[arg(short, long)]
    pub interactive: bool,
}

/// `compaction [options] <revision>`: compacts the event history.
#[derive(Args, Debug)]
pub struct CompactionArgs {
    /// The revision to compact up to.
    pub args: Vec<String>,
    /// 'true' to wait for compaction to physically remove all old revisions.
    #[arg(long)]
    pub physical: bool,
}

/// One request line of a txn script, parsed with the flags of the command it names (any
/// unambiguous prefix of its name will do, as cobra's prefix matching allows).
#[derive(Parser, Debug)]
#[command(
    no_binary_name = true,
    infer_subcommands = true,
    disable_help_subcommand = true
)]
struct RequestLine {
    #[command(subcommand)]
    op: RequestCommand,
}

#[derive(Subcommand, Debug)]
enum RequestCommand {
    Get(GetArgs),
    Put(PutArgs),
    Del(DelArgs),
}

/// `txn`.
pub fn txn(ctx: &Ctx, args: &TxnArgs) -> Result<(), CliError> {
    if !args.args.is_empty() {
        return Err(CliError::bad_args("txn command does not accept argument"));
    }
    let client = ctx.client()?;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let prompt = |text: &str| {
        if args.interactive {
            println!("{text}");
        }
    };
    prompt("compares:");
    let compare = read_section(&mut input, parse_compare)?;
    prompt("success requests (get, put, del):");
    let success = read_section(&mut input, parse_request)?;
    prompt("failure requests (get, put, del):");
    let failure = read_section(&mut input, parse_request)?;
    let request = TxnRequest {
        compare,
        success,
        failure,
    };
    let response = client.call(client.kv().txn(request))?;
    print_txn(ctx.out, &response)
}

/// Reads lines up to an empty one (spaces trimmed), parsing each. The input ending first is
/// an error, as it is for etcdctl (Go's `EOF`), even when the last line lacks only its
/// newline.
fn read_section<T>(
    input: &mut impl BufRead,
    parse: impl Fn(&str) -> Result<T, CliError>,
) -> Result<Vec<T>, CliError> {
    let mut items = Vec::new();
    loop {
        let mut raw = Vec::new();
        let read = input
            .read_until(b'\n', &mut raw)
            .map_err(|e| CliError::invalid_input(e.to_string()))?;
        if read == 0 || raw.last() != Some(&b'\n') {
            return Err(CliError::invalid_input("EOF"));
        }
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim();
        if line.is_empty() {
            return Ok(items);
        }
        items.push(parse(line)?);
    }
}

/// A comparison line: `target("key") op "value"` with target `ver`/`version`,
/// `c`/`create`, `m`/`mod`, `val`/`value` or `lease`, op `=`, `!=`, `>` or `<`, and the
/// value a decimal number (a hexadecimal lease ID for `lease`) or, for `value`, any string.
/// Keys and values are Go strings, double- or back-quoted.
///
/// Two cases differ from etcdctl 3.5, which panics on them (exit 2): an unknown operator is
/// an invalid-input error, and `lease` compares the key's lease with the hexadecimal ID as
/// etcdctl 3.6 does.
pub fn parse_compare(line: &str) -> Result<Compare, CliError> {
    let malformed = || CliError::invalid_input(format!("malformed comparison: {line}"));
    let (target, rest) = line.split_once('(').ok_or_else(malformed)?;
    // Sscanf("%q) %s %q"): what was read before a failure shows in the error.
    let mut scanner = Scanner::new(rest);
    let mut key = Vec::new();
    let mut op = String::new();
    let mut value = Vec::new();
    let scanned = (|| {
        key = scanner.quoted()?;
        scanner.literal(')')?;
        scanner.space()?;
        op = scanner.word()?;
        scanner.space()?;
        value = scanner.quoted()?;
        Some(())
    })();
    if scanned.is_none() {
        return Err(CliError::invalid_input(format!(
            "malformed comparison: {line}; got {target}({}) {op} {}",
            quote(&key),
            quote(&value)
        )));
    }
    let invalid = || CliError::invalid_input(format!("invalid txn compare request: {line}"));
    let number = |base| {
        std::str::from_utf8(&value)
            .ok()
            .and_then(|text| parse_int(text, base).ok())
            .ok_or_else(invalid)
    };
    let (target, union) = match target {
        "ver" | "version" => (CompareTarget::Version, TargetUnion::Version(number(10)?)),
        "c" | "create" => (
            CompareTarget::Create,
            TargetUnion::CreateRevision(number(10)?),
        ),
        "m" | "mod" => (CompareTarget::Mod, TargetUnion::ModRevision(number(10)?)),
        "val" | "value" => (CompareTarget::Value, TargetUnion::Value(value.clone())),
        "lease" => (CompareTarget::Lease, TargetUnion::Lease(number(16)?)),
        other => {
            return Err(CliError::invalid_input(format!(
                "malformed comparison: {line} (unknown target {other})"
            )))
        }
    };
    let result = match op.as_str() {
        "=" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        ">" => CompareResult::Greater,
        "<" => CompareResult::Less,
        _ => {
            return Err(CliError::invalid_input(format!(
                "malformed comparison: {line} (unknown operator {op}: use =, !=, > or <)"
            )))
        }
    };
    Ok(Compare {
        result: result as i32,
        target: target as i32,
        key,
        range_end: Vec::new(),
        target_union: Some(union),
    })
}

/// A request line: `get`, `put` or `del` with its arguments and flags, as those commands
/// take them (and fail as they fail). `put` takes its value from the line only: the script
/// is what stdin holds.
pub fn parse_request(line: &str) -> Result<RequestOp, CliError> {
    let args = argify(line).map_err(CliError::invalid_input)?;
    if args.len() < 2 {
        return Err(CliError::invalid_input(format!(
            "invalid txn compare request: {line}"
        )));
    }
    let parsed = RequestLine::try_parse_from(&args)
        .map_err(|_| CliError::invalid_input(format!("invalid txn request: {line}")))?;
    let request = match parsed.op {
        RequestCommand::Get(get) => Request::RequestRange(kv::get_request(&get)?),
        RequestCommand::Put(put) => {
            if put.args.len() == 1 && !put.ignore_value {
                return Err(CliError::bad_args(
                    "put command needs 1 argument and input from stdin or 2 arguments",
                ));
            }
            Request::RequestPut(kv::put_request(&put)?)
        }
        RequestCommand::Del(del) => Request::RequestDeleteRange(kv::del_request(&del)?),
    };
    Ok(RequestOp {
        request: Some(request),
    })
}

/// A TxnResponse in every format: simple prints SUCCESS or FAILURE, then each response
/// after an empty line as its command prints it; fields prints the header, `"Succeeded"`
/// and each response's fields.
pub fn print_txn(out: Out, response: &TxnResponse) -> Result<(), CliError> {
    match out.format {
        Format::Simple => {
            println!(
                "{}",
                if response.succeeded {
                    "SUCCESS"
                } else {
                    "FAILURE"
                }
            );
            for op in &response.responses {
                println!();
                print_response(out, op)?;
            }
        }
        Format::Fields => {
            print::fields_header(&response.header);
            println!("\"Succeeded\" : {}", response.succeeded);
            for op in &response.responses {
                print_response(out, op)?;
            }
        }
        Format::Json => println!("{}", txn_json(response)),
        Format::Protobuf => print::protobuf(response),
        Format::Table => return Err(print::unsupported(out.format)),
    }
    Ok(())
}

/// One response of a transaction, printed by its command's printer.
fn print_response(out: Out, op: &ResponseOp) -> Result<(), CliError> {
    match &op.response {
        Some(Response::ResponseRange(range)) => kv::print_get(out, range, false),
        Some(Response::ResponsePut(put)) => kv::print_put(out, put),
        Some(Response::ResponseDeleteRange(del)) => kv::print_del(out, del),
        // etcdctl's scripts cannot nest transactions; a response to one is left out.
        Some(Response::ResponseTxn(_)) | None => Ok(()),
    }
}

/// A TxnResponse as etcdctl 3.5's JSON: each response under `"Response"` (Go's name for
/// the oneof field), keyed by the oneof member's JSON name.
pub fn txn_json(response: &TxnResponse) -> String {
    let responses = response
        .responses
        .iter()
        .map(|op| {
            let inner = match &op.response {
                Some(Response::ResponseRange(r)) => Some(("response_range", kv::range_json(r))),
                Some(Response::ResponsePut(r)) => Some(("response_put", kv::put_json(r))),
                Some(Response::ResponseDeleteRange(r)) => {
                    Some(("response_delete_range", kv::del_json(r)))
                }
                Some(Response::ResponseTxn(r)) => Some(("response_txn", txn_json(r))),
                None => None,
            };
            JsonObject::new()
                .raw(
                    "Response",
                    inner.map(|(name, json)| JsonObject::new().raw(name, Some(json)).finish()),
                )
                .finish()
        })
        .collect();
    JsonObject::new()
        .raw("header", print::header_json(&response.header))
        .bool("succeeded", response.succeeded)
        .list("responses", responses)
        .finish()
}

/// `compaction`.
pub fn compaction(ctx: &Ctx, args: &CompactionArgs) -> Result<(), CliError> {
    if args.args.len() != 1 {
        return Err(CliError::bad_args("compaction command needs 1 argument"));
    }
    let revision = parse_int(&args.args[0], 10).map_err(CliError::error)?;
    let client = ctx.client()?;
    client.call(client.kv().compact(CompactionRequest {
        revision,
        physical: args.physical,
    }))?;
    println!("compacted revision {revision}");
    Ok(())
}

/// Reads a whole script from `input` (the tests' entry point to the parser).
#[cfg(test)]
fn parse_script(input: &str) -> Result<TxnRequest, CliError> {
    let mut input = input.as_bytes();
    Ok(TxnRequest {
        compare: read_section(&mut input, parse_compare)?,
        success: read_section(&mut input, parse_request)?,
        failure: read_section(&mut input, parse_request)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<impl std::fmt::Debug, CliError>) -> (u8, String) {
        let error = result.expect_err("an error");
        (error.code, error.message)
    }

    #[test]
    fn comparisons_parse_as_etcdctl_reads_them() {
        let cmp = parse_compare(r#"mod("k1") > "3""#).unwrap();
        assert_eq!(cmp.key, b"k1");
        assert_eq!(cmp.target, CompareTarget::Mod as i32);
        assert_eq!(cmp.result, CompareResult::Greater as i32);
        assert_eq!(cmp.target_union, Some(TargetUnion::ModRevision(3)));
        let cmp = parse_compare(r#"value("a\tb") != `x "y"`"#).unwrap();
        assert_eq!(cmp.key, b"a\tb");
        assert_eq!(
            cmp.target_union,
            Some(TargetUnion::Value(b"x \"y\"".to_vec()))
        );
        let cmp = parse_compare(r#"lease("k") = "694d7a1b2c3d4e5f""#).unwrap();
        assert_eq!(cmp.key, b"k");
        assert_eq!(
            cmp.target_union,
            Some(TargetUnion::Lease(0x694d7a1b2c3d4e5f))
        );
    }

    #[test]
    fn malformed_comparisons_fail_with_etcdctls_text() {
        assert_eq!(
            message(parse_compare(r#"value("k1")="v1""#)),
            (
                3,
                r#"malformed comparison: value("k1")="v1"; got value("k1")  """#.into()
            )
        );
        assert_eq!(
            message(parse_compare(r#"value("k1") ="#)),
            (
                3,
                r#"malformed comparison: value("k1") =; got value("k1") = """#.into()
            )
        );
        assert_eq!(
            message(parse_compare("foo")),
            (3, "malformed comparison: foo".into())
        );
        assert_eq!(
            message(parse_compare(r#"bar("k") = "v""#)),
            (
                3,
                r#"malformed comparison: bar("k") = "v" (unknown target bar)"#.into()
            )
        );
        assert_eq!(
            message(parse_compare(r#"ver("k") = "x""#)),
            (3, r#"invalid txn compare request: ver("k") = "x""#.into())
        );
        assert_eq!(message(parse_compare(r#"ver("k") == "1""#)).0, 3);
    }

    #[test]
    fn request_lines_use_the_commands_flags() {
        let op = parse_request("g k --prefix --limit=2").unwrap();
        let Some(Request::RequestRange(range)) = op.request else {
            panic!("a range");
        };
        assert_eq!(
            (range.key, range.range_end, range.limit),
            (b"k".to_vec(), b"l".to_vec(), 2)
        );
        let op = parse_request(r#"put "a b" 'c d' --prev-kv"#).unwrap();
        let Some(Request::RequestPut(put)) = op.request else {
            panic!("a put");
        };
        assert_eq!(
            (put.key, put.value, put.prev_kv),
            (b"a b".to_vec(), b"c d".to_vec(), true)
        );
        assert_eq!(
            message(parse_request("put")),
            (3, "invalid txn compare request: put".into())
        );
        assert_eq!(
            message(parse_request("foo bar")),
            (3, "invalid txn request: foo bar".into())
        );
        assert_eq!(message(parse_request("put k")).0, 128);
        assert_eq!(message(parse_request("get --help")).0, 3);
    }

    #[test]
    fn scripts_need_every_section_ended() {
        assert!(parse_script("\n\n\n").is_ok());
        assert_eq!(
            message(parse_script("value(\"k\") = \"v\"\n\nput a b\n")),
            (3, "EOF".into())
        );
        assert_eq!(
            message(parse_script("\n\n\n".trim_end())),
            (3, "EOF".into())
        );
    }
}
