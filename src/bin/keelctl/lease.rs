//! `lease grant|revoke|timetolive|list|keep-alive`, with etcdctl's checks, messages, exit
//! codes and output formats.
//!
//! etcd's Go client wraps the grant, keep-alive, time-to-live and list responses in structs
//! that embed the response header, and etcdctl prints those structs: their JSON carries the
//! header's fields at the top level, and their `-w protobuf` output is the header alone (the
//! only protobuf message in them). `timetolive`, `list` and `keep-alive` run without
//! etcdctl's command timeout and fail with exit status 2, as etcdctl's do.

use std::time::Duration;

use clap::{Args, Subcommand};
use futures::StreamExt;
use keel_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest,
};
use tokio::time::Instant;

use crate::client::Client;
use crate::error::{exit, status_text, CliError};
use crate::global::Format;
use crate::gofmt::{json_string, quote, JsonObject};
use crate::print::{self, Out};
use crate::table::{flat_header_json, go_list, header_text, lease_hex};
use crate::Ctx;

/// `lease <subcommand>`: lease related commands.
#[derive(Subcommand, Debug)]
pub enum LeaseCommand {
    /// Creates leases.
    Grant(GrantArgs),
    /// Revokes leases.
    Revoke(IdArgs),
    /// Get lease information.
    Timetolive(TimeToLiveArgs),
    /// List all active leases.
    List(NoArgs),
    /// Keeps leases alive (renew).
    KeepAlive(KeepAliveArgs),
}

/// `lease grant <ttl>`.
#[derive(Args, Debug)]
pub struct GrantArgs {
    /// The time to live, in seconds.
    pub args: Vec<String>,
}

/// A subcommand that takes one lease ID (hexadecimal).
#[derive(Args, Debug)]
pub struct IdArgs {
    /// The lease ID, in hexadecimal.
    pub args: Vec<String>,
}

/// `lease timetolive <leaseID> [options]`.
#[derive(Args, Debug)]
pub struct TimeToLiveArgs {
    /// The lease ID, in hexadecimal.
    pub args: Vec<String>,
    /// Get keys attached to this lease.
    #[arg(long)]
    pub keys: bool,
}

/// A subcommand whose arguments etcdctl ignores.
#[derive(Args, Debug)]
pub struct NoArgs {
    /// Ignored.
    pub args: Vec<String>,
}

/// `lease keep-alive [options] <leaseID>`.
#[derive(Args, Debug)]
pub struct KeepAliveArgs {
    /// The lease ID, in hexadecimal.
    pub args: Vec<String>,
    /// Resets the keep-alive time to its original value and exits immediately.
    #[arg(long)]
    pub once: bool,
}

/// Runs a lease subcommand.
pub fn run(ctx: &Ctx, command: &LeaseCommand) -> Result<(), CliError> {
    match command {
        LeaseCommand::Grant(args) => grant(ctx, args),
        LeaseCommand::Revoke(args) => revoke(ctx, args),
        LeaseCommand::Timetolive(args) => time_to_live(ctx, args),
        LeaseCommand::List(_) => list(ctx),
        LeaseCommand::KeepAlive(args) => keep_alive(ctx, args),
    }
}

/// Go's `strconv.ParseInt(text, 10, 64)`, with its error text.
pub fn parse_go_int(text: &str) -> Result<i64, String> {
    let error = |what: &str| {
        format!(
            "strconv.ParseInt: parsing {}: {what}",
            quote(text.as_bytes())
        )
    };
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(error("invalid syntax"));
    }
    text.parse::<i64>().map_err(|_| error("value out of range"))
}

/// A lease ID argument, or etcdctl's error for it.
fn lease_id(text: &str) -> Result<i64, CliError> {
    crate::kv::parse_lease_id(text)
        .map_err(|e| CliError::bad_args(format!("bad lease ID arg ({e}), expecting ID in Hex")))
}

/// `-w protobuf` of a client struct that embeds the header: the header's encoding.
fn protobuf_header(header: &Option<keel_proto::etcdserverpb::ResponseHeader>) {
    if let Some(header) = header {
        print::protobuf(header);
    }
}

fn grant(ctx: &Ctx, args: &GrantArgs) -> Result<(), CliError> {
    if args.args.len() != 1 {
        return Err(CliError::bad_args("lease grant command needs TTL argument"));
    }
    let ttl =
        parse_go_int(&args.args[0]).map_err(|e| CliError::bad_args(format!("bad TTL ({e})")))?;
    let client = ctx.client()?;
    let response = client
        .call(client.lease().lease_grant(LeaseGrantRequest { ttl, id: 0 }))
        .map_err(|e| CliError::error(format!("failed to grant lease ({e})")))?;
    print_grant(ctx.out, &response)
}

/// A LeaseGrantResponse in every format.
pub fn print_grant(out: Out, response: &LeaseGrantResponse) -> Result<(), CliError> {
    match out.format {
        Format::Simple => println!(
            "lease {} granted with TTL({}s)",
            lease_hex(response.id),
            response.ttl
        ),
        Format::Json => println!(
            "{}",
            flat_header_json(&response.header)
                .i64_always("ID", response.id)
                .i64_always("TTL", response.ttl)
                .str_always("Error", &response.error)
                .finish()
        ),
        Format::Fields => {
            print::fields_header(&response.header);
            println!("\"ID\" : {}", response.id);
            println!("\"TTL\" : {}", response.ttl);
        }
        Format::Protobuf => protobuf_header(&response.header),
        Format::Table => return Err(print::unsupported(out.format)),
    }
    Ok(())
}

fn revoke(ctx: &Ctx, args: &IdArgs) -> Result<(), CliError> {
    if args.args.len() != 1 {
        return Err(CliError::bad_args("lease revoke command needs 1 argument"));
    }
    let id = lease_id(&args.args[0])?;
    let client = ctx.client()?;
    let response = client
        .call(client.lease().lease_revoke(LeaseRevokeRequest { id }))
        .map_err(|e| CliError::error(format!("failed to revoke lease ({e})")))?;
    match ctx.out.format {
        Format::Simple => println!("lease {} revoked", lease_hex(id)),
        Format::Json => println!(
            "{}",
            JsonObject::new()
                .raw("header", print::header_json(&response.header))
                .finish()
        ),
        Format::Fields => print::fields_header(&response.header),
        // etcdctl hands the response to its protobuf printer as a type without a Marshal
        // method, and fails.
        Format::Protobuf => {
            return Err(CliError::new(
                exit::BAD_FEATURE,
                format!(
                    "marshal unsupported for type clientv3.LeaseRevokeResponse ({{{}}})",
                    header_text(&response.header)
                ),
            ))
        }
        Format::Table => return Err(print::unsupported(ctx.out.format)),
    }
    Ok(())
}

/// A call made without a time limit (etcdctl gives these `context.TODO()`); failures exit
/// with status 2.
fn call_unbounded<T>(
    client: &Client,
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, CliError> {
    client
        .block_on(call)
        .map(tonic::Response::into_inner)
        .map_err(|status| CliError::bad_connection(status_text(&status)))
}

fn time_to_live(ctx: &Ctx, args: &TimeToLiveArgs) -> Result<(), CliError> {
    if args.args.len() != 1 {
        return Err(CliError::bad_args(
            "lease timetolive command needs lease ID as argument",
        ));
    }
    let id = lease_id(&args.args[0])?;
    let client = ctx.client()?;
    let response = call_unbounded(
        client,
        client.lease().lease_time_to_live(LeaseTimeToLiveRequest {
            id,
            keys: args.keys,
        }),
    )?;
    match ctx.out.format {
        Format::Simple => {
            if response.granted_ttl == 0 && response.ttl == -1 {
                println!("lease {} already expired", lease_hex(response.id));
                return Ok(());
            }
            let mut text = format!(
                "lease {} granted with TTL({}s), remaining({}s)",
                lease_hex(response.id),
                response.granted_ttl,
                response.ttl
            );
            if args.keys {
                let keys: Vec<String> = response
                    .keys
                    .iter()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect();
                text.push_str(&format!(", attached keys({})", go_list(&keys)));
            }
            println!("{text}");
        }
        Format::Json => {
            use base64::Engine as _;
            let keys = response
                .keys
                .iter()
                .map(|k| {
                    format!(
                        "\"{}\"",
                        base64::engine::general_purpose::STANDARD.encode(k)
                    )
                })
                .collect();
            println!(
                "{}",
                flat_header_json(&response.header)
                    .i64_always("id", response.id)
                    .i64_always("ttl", response.ttl)
                    .i64_always("granted-ttl", response.granted_ttl)
                    .list_always("keys", keys)
                    .finish()
            );
        }
        Format::Fields => {
            print::fields_header(&response.header);
            println!("\"ID\" : {}", response.id);
            println!("\"TTL\" : {}", response.ttl);
            println!("\"GrantedTTL\" : {}", response.granted_ttl);
            for key in &response.keys {
                println!("\"Key\" : {}", quote(key));
            }
        }
        Format::Protobuf => protobuf_header(&response.header),
        Format::Table => return Err(print::unsupported(ctx.out.format)),
    }
    Ok(())
}

fn list(ctx: &Ctx) -> Result<(), CliError> {
    let client = ctx.client()?;
    let response = call_unbounded(client, client.lease().lease_leases(LeaseLeasesRequest {}))?;
    match ctx.out.format {
        Format::Simple => {
            println!("found {} leases", response.leases.len());
            for lease in &response.leases {
                println!("{}", lease_hex(lease.id));
            }
        }
        Format::Json => {
            // The client copies the leases into a slice made with their count, so an empty
            // list is `[]`, not `null`.
            let leases: Vec<String> = response
                .leases
                .iter()
                .map(|l| format!("{{\"id\":{}}}", l.id))
                .collect();
            let mut json = flat_header_json(&response.header).finish();
            json.pop();
            if json.len() > 1 {
                json.push(',');
            }
            json.push_str(&format!(
                "{}:[{}]}}",
                json_string("leases"),
                leases.join(",")
            ));
            println!("{json}");
        }
        Format::Fields => {
            print::fields_header(&response.header);
            for lease in &response.leases {
                println!("\"ID\" : {}", lease.id);
            }
        }
        Format::Protobuf => protobuf_header(&response.header),
        Format::Table => return Err(print::unsupported(ctx.out.format)),
    }
    Ok(())
}

/// One keep-alive response in every format.
fn print_keep_alive(out: Out, response: &LeaseKeepAliveResponse) -> Result<(), CliError> {
    match out.format {
        Format::Simple => println!(
            "lease {} keepalived with TTL({})",
            lease_hex(response.id),
            response.ttl
        ),
        Format::Json => println!(
            "{}",
            flat_header_json(&response.header)
                .i64_always("ID", response.id)
                .i64_always("TTL", response.ttl)
                .finish()
        ),
        Format::Fields => {
            print::fields_header(&response.header);
            println!("\"ID\" : {}", response.id);
            println!("\"TTL\" : {}", response.ttl);
        }
        Format::Protobuf => protobuf_header(&response.header),
        Format::Table => return Err(print::unsupported(out.format)),
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    Ok(())
}

/// How long etcd's client assumes a lease lives before its first keep-alive answer.
const FIRST_DEADLINE: Duration = Duration::from_secs(5);
/// How long etcd's client waits before opening a failed keep-alive stream again.
const RETRY_WAIT: Duration = Duration::from_millis(500);

fn keep_alive(ctx: &Ctx, args: &KeepAliveArgs) -> Result<(), CliError> {
    if args.args.len() != 1 {
        return Err(CliError::bad_args(
            "lease keep-alive command needs lease ID as argument",
        ));
    }
    let id = lease_id(&args.args[0])?;
    let client = ctx.client()?;
    if args.once {
        let response = client.block_on(keep_alive_once(client, id))?;
        return print_keep_alive(ctx.out, &response);
    }
    client.block_on(keep_alive_loop(client, id, ctx.out))?;
    if ctx.out.format == Format::Simple {
        println!("lease {} expired or revoked.", lease_hex(id));
    }
    Ok(())
}

/// One keep-alive on a stream of its own; a lease the server no longer has is etcd's
/// "requested lease not found".
async fn keep_alive_once(client: &Client, id: i64) -> Result<LeaseKeepAliveResponse, CliError> {
    let failed = |status: tonic::Status| CliError::bad_connection(status_text(&status));
    let (sender, requests) = futures::channel::mpsc::unbounded();
    sender
        .unbounded_send(LeaseKeepAliveRequest { id })
        .map_err(|e| CliError::bad_connection(e.to_string()))?;
    let mut responses = client
        .lease()
        .lease_keep_alive(requests)
        .await
        .map_err(failed)?
        .into_inner();
    let response = responses.message().await.map_err(failed)?;
    drop(sender);
    match response {
        Some(response) if response.ttl > 0 => Ok(response),
        Some(_) => Err(CliError::bad_connection(
            "etcdserver: requested lease not found",
        )),
        None => Err(CliError::bad_connection(
            "rpc error: code = Canceled desc = the keep-alive stream closed",
        )),
    }
}

/// Keeps the lease alive as etcd's client does: a keep-alive at once, the next a third of
/// the granted TTL after each answer, each answer printed; it ends when an answer says the
/// lease is gone (TTL 0) or when no answer came within the last TTL (the lease has expired
/// meanwhile). A broken stream is opened again after half a second.
async fn keep_alive_loop(client: &Client, id: i64, out: Out) -> Result<(), CliError> {
    let mut deadline = Instant::now() + FIRST_DEADLINE;
    let mut next_send: Instant;
    loop {
        if Instant::now() > deadline {
            return Ok(());
        }
        let (sender, requests) = futures::channel::mpsc::unbounded();
        // The request goes out with the stream: etcd answers the call (headers included) only
        // with its first keep-alive response.
        if sender.unbounded_send(LeaseKeepAliveRequest { id }).is_err() {
            return Ok(());
        }
        next_send = Instant::now() + RETRY_WAIT;
        let opened =
            tokio::time::timeout_at(deadline, client.lease().lease_keep_alive(requests)).await;
        let mut responses = match opened {
            Err(_) => return Ok(()),
            Ok(Err(_)) => {
                tokio::time::sleep(RETRY_WAIT).await;
                continue;
            }
            Ok(Ok(responses)) => responses.into_inner(),
        };
        loop {
            let wake = next_send.min(deadline);
            tokio::select! {
                message = responses.next() => match message {
                    Some(Ok(response)) => {
                        if response.ttl <= 0 {
                            return Ok(());
                        }
                        let ttl = Duration::from_secs(response.ttl.unsigned_abs());
                        next_send = Instant::now() + ttl / 3;
                        deadline = Instant::now() + ttl;
                        print_keep_alive(out, &response)?;
                    }
                    Some(Err(_)) | None => {
                        tokio::time::sleep(RETRY_WAIT).await;
                        break;
                    }
                },
                _ = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= deadline {
                        return Ok(());
                    }
                    if Instant::now() >= next_send {
                        if sender.unbounded_send(LeaseKeepAliveRequest { id }).is_err() {
                            break;
                        }
                        // Until an answer moves it, the next send waits for the usual
                        // half-second check of etcd's client.
                        next_send = Instant::now() + RETRY_WAIT;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse_as_go_parses_them() {
        assert_eq!(parse_go_int("60"), Ok(60));
        assert_eq!(parse_go_int("+5"), Ok(5));
        assert_eq!(
            parse_go_int("x"),
            Err("strconv.ParseInt: parsing \"x\": invalid syntax".to_string())
        );
        assert_eq!(
            parse_go_int("99999999999999999999"),
            Err(
                "strconv.ParseInt: parsing \"99999999999999999999\": value out of range"
                    .to_string()
            )
        );
    }
}
