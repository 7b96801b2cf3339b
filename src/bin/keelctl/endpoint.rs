//! `endpoint health|status|hashkv`: each endpoint of `--endpoints` (or, with `--cluster`,
//! every client URL of the member list) asked on a connection of its own, printed as etcdctl
//! 3.5 prints them.
//!
//! etcdctl checks health concurrently and prints the results in the order they finish, which
//! is any order; keelctl checks concurrently too and prints them in the order of the
//! endpoints, one of the orders etcdctl may print.

use std::time::Instant;

use clap::{Args, Subcommand};
use keel_proto::etcdserverpb::{
    AlarmRequest, AlarmType, HashKvRequest, HashKvResponse, RangeRequest, StatusRequest,
    StatusResponse,
};

use crate::client::Client;
use crate::error::{exit, CliError};
use crate::global::{Format, Global};
use crate::gofmt::{json_string, quote, JsonObject};
use crate::print::{self, Out};
use crate::table::{self, go_duration, go_list};
use crate::Ctx;

/// Ends the process with `code` and no `Error:` line (etcdctl's `os.Exit` after reporting
/// each failure itself), stdout flushed first.
pub fn exit_quietly(code: u8) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(i32::from(code))
}

/// `endpoint <subcommand>`: endpoint related commands.
#[derive(Args, Debug)]
pub struct EndpointArgs {
    /// Use all endpoints from the cluster member list.
    #[arg(long, global = true)]
    pub cluster: bool,
    #[command(subcommand)]
    pub command: EndpointCommand,
}

/// The endpoint subcommands.
#[derive(Subcommand, Debug)]
pub enum EndpointCommand {
    /// Checks the healthiness of endpoints specified in `--endpoints` flag.
    Health,
    /// Prints out the status of endpoints specified in `--endpoints` flag.
    ///
    /// When --write-out is set to simple, this command prints out comma-separated status
    /// lists for each endpoint. The items in the lists are endpoint, ID, version, db size, is
    /// leader, is learner, raft term, raft index, raft applied index, errors.
    Status,
    /// Prints the KV history hash for each endpoint in --endpoints.
    Hashkv(HashKvArgs),
}

/// `endpoint hashkv [--rev]`.
#[derive(Args, Debug)]
pub struct HashKvArgs {
    /// Maximum revision to hash (default: all revisions).
    #[arg(long, default_value_t = 0)]
    pub rev: i64,
}

/// Runs an endpoint subcommand.
pub fn run(ctx: &Ctx, args: &EndpointArgs) -> Result<(), CliError> {
    let endpoints = endpoints(ctx, args.cluster)?;
    match &args.command {
        EndpointCommand::Health => health(ctx, &endpoints),
        EndpointCommand::Status => status(ctx, &endpoints),
        EndpointCommand::Hashkv(hash_args) => hash_kv(ctx, &endpoints, hash_args.rev),
    }
}

/// The endpoints to address: `--endpoints`, or with `cluster` every client URL of the member
/// list (etcdctl's `endpointsFromCluster`).
pub fn endpoints(ctx: &Ctx, cluster: bool) -> Result<Vec<String>, CliError> {
    if !cluster {
        return Ok(ctx.global.endpoints.clone());
    }
    let response = crate::member::member_list(ctx).map_err(|e| {
        CliError::error(format!(
            "failed to fetch endpoints from etcd cluster member list: {e}"
        ))
    })?;
    Ok(response
        .members
        .into_iter()
        .flat_map(|m| m.client_ur_ls)
        .collect())
}

/// One endpoint's health, as etcdctl's `epHealth`.
#[derive(Clone, Debug)]
struct Health {
    endpoint: String,
    healthy: bool,
    took: String,
    error: String,
}

/// Checks one endpoint: a linearizable read of key "health" commits through consensus
/// ("permission denied" counts as healthy: the request got that far), then the alarm list
/// must be empty.
fn check_health(global: &Global, endpoint: &str) -> Health {
    let started = Instant::now();
    let mut health = Health {
        endpoint: endpoint.to_string(),
        healthy: false,
        took: String::new(),
        error: String::new(),
    };
    let client = match Client::connect_to(global, endpoint) {
        Ok(client) => client,
        Err(e) => {
            health.took = go_duration(started.elapsed());
            health.error = e.message;
            return health;
        }
    };
    let read = client.call(client.kv().range(RangeRequest {
        key: b"health".to_vec(),
        ..Default::default()
    }));
    health.took = go_duration(started.elapsed());
    match read {
        Ok(_) => health.healthy = true,
        Err(e) if e.message == "etcdserver: permission denied" => health.healthy = true,
        Err(e) => health.error = e.message,
    }
    if health.healthy {
        match client.call(client.maintenance().alarm(AlarmRequest::default())) {
            Ok(response) if !response.alarms.is_empty() => {
                health.healthy = false;
                health.error = "Active Alarm(s): ".to_string();
                for alarm in &response.alarms {
                    health
                        .error
                        .push_str(match AlarmType::try_from(alarm.alarm) {
                            Ok(AlarmType::Nospace) => "NOSPACE ",
                            Ok(AlarmType::Corrupt) => "CORRUPT ",
                            _ => "UNKNOWN ",
                        });
                }
            }
            Ok(_) => {}
            Err(_) => {
                health.healthy = false;
                health.error = "Unable to fetch the alarm list".to_string();
            }
        }
    }
    health
}

fn health(ctx: &Ctx, endpoints: &[String]) -> Result<(), CliError> {
    let global = &ctx.global;
    let results: Vec<Health> = std::thread::scope(|scope| {
        let checks: Vec<_> = endpoints
            .iter()
            .map(|endpoint| scope.spawn(move || check_health(global, endpoint)))
            .collect();
        checks
            .into_iter()
            .zip(endpoints)
            .map(|(check, endpoint)| {
                check.join().unwrap_or_else(|_| Health {
                    endpoint: endpoint.clone(),
                    healthy: false,
                    took: String::new(),
                    error: "the health check failed".to_string(),
                })
            })
            .collect()
    });
    print_health(ctx.out, &results)?;
    if results.iter().any(|h| !h.error.is_empty()) {
        return Err(CliError::error("unhealthy cluster"));
    }
    Ok(())
}

fn print_health(out: Out, results: &[Health]) -> Result<(), CliError> {
    match out.format {
        Format::Simple => {
            for h in results {
                if h.error.is_empty() {
                    println!(
                        "{} is healthy: successfully committed proposal: took = {}",
                        h.endpoint, h.took
                    );
                } else {
                    eprintln!(
                        "{} is unhealthy: failed to commit proposal: {}",
                        h.endpoint, h.error
                    );
                }
            }
        }
        Format::Json => {
            let items: Vec<String> = results
                .iter()
                .map(|h| {
                    JsonObject::new()
                        .str_always("endpoint", &h.endpoint)
                        .bool_always("health", h.healthy)
                        .str_always("took", &h.took)
                        .str("error", &h.error)
                        .finish()
                })
                .collect();
            println!("[{}]", items.join(","));
        }
        Format::Fields => {
            for h in results {
                println!("\"Endpoint\" : {}", quote(h.endpoint.as_bytes()));
                println!("\"Health\" : {}", h.healthy);
                println!("\"Took\" : {}", h.took);
                println!("\"Error\" : {}", h.error);
                println!();
            }
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = results
                .iter()
                .map(|h| {
                    vec![
                        h.endpoint.clone(),
                        h.healthy.to_string(),
                        h.took.clone(),
                        h.error.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(&["endpoint", "health", "took", "error"], &rows)
            );
        }
        Format::Protobuf => return Err(print::unsupported(out.format)),
    }
    Ok(())
}

/// Asks each endpoint in turn on a connection of its own; a failure is reported on stderr
/// with `failed` and the next endpoint is asked. The answers, and the last error.
fn each_endpoint<T>(
    ctx: &Ctx,
    endpoints: &[String],
    failed: &str,
    ask: impl Fn(&Client) -> Result<T, CliError>,
) -> (Vec<(String, T)>, Option<CliError>) {
    let mut answers = Vec::new();
    let mut last_error = None;
    for endpoint in endpoints {
        let answer = Client::connect_to(&ctx.global, endpoint).and_then(|client| ask(&client));
        match answer {
            Ok(answer) => answers.push((endpoint.clone(), answer)),
            Err(e) => {
                eprintln!("{failed} {endpoint} ({e})");
                last_error = Some(e);
            }
        }
    }
    (answers, last_error)
}

fn status(ctx: &Ctx, endpoints: &[String]) -> Result<(), CliError> {
    let (answers, error) = each_endpoint(
        ctx,
        endpoints,
        "Failed to get the status of endpoint",
        |client| client.call(client.maintenance().status(StatusRequest {})),
    );
    print_status(ctx.out, &answers)?;
    match error {
        // etcdctl exits without an `Error:` line: the failures are on stderr already.
        Some(_) => exit_quietly(exit::ERROR),
        None => Ok(()),
    }
}

/// A StatusResponse as etcd 3.5's JSON (the fields etcd 3.5 has, in its order).
fn status_json(response: &StatusResponse) -> String {
    JsonObject::new()
        .raw("header", print::header_json(&response.header))
        .str("version", &response.version)
        .i64("dbSize", response.db_size)
        .u64("leader", response.leader)
        .u64("raftIndex", response.raft_index)
        .u64("raftTerm", response.raft_term)
        .u64("raftAppliedIndex", response.raft_applied_index)
        .list(
            "errors",
            response.errors.iter().map(|e| json_string(e)).collect(),
        )
        .i64("dbSizeInUse", response.db_size_in_use)
        .bool("isLearner", response.is_learner)
        .finish()
}

fn print_status(out: Out, answers: &[(String, StatusResponse)]) -> Result<(), CliError> {
    let rows = || -> Vec<Vec<String>> {
        answers
            .iter()
            .map(|(endpoint, s)| {
                let member_id = s.header.unwrap_or_default().member_id;
                vec![
                    endpoint.clone(),
                    format!("{member_id:x}"),
                    s.version.clone(),
                    keel::backup::human_bytes(s.db_size.max(0) as u64),
                    (s.leader == member_id).to_string(),
                    s.is_learner.to_string(),
                    s.raft_term.to_string(),
                    s.raft_index.to_string(),
                    s.raft_applied_index.to_string(),
                    s.errors.join(", "),
                ]
            })
            .collect()
    };
    match out.format {
        Format::Simple => {
            for row in rows() {
                println!("{}", row.join(", "));
            }
        }
        Format::Table => print!(
            "{}",
            table::render(
                &[
                    "endpoint",
                    "ID",
                    "version",
                    "db size",
                    "is leader",
                    "is learner",
                    "raft term",
                    "raft index",
                    "raft applied index",
                    "errors",
                ],
                &rows(),
            )
        ),
        Format::Json => {
            let items: Vec<String> = answers
                .iter()
                .map(|(endpoint, s)| {
                    JsonObject::new()
                        .str_always("Endpoint", endpoint)
                        .raw("Status", Some(status_json(s)))
                        .finish()
                })
                .collect();
            println!("[{}]", items.join(","));
        }
        Format::Fields => {
            for (endpoint, s) in answers {
                print::fields_header(&s.header);
                println!("\"Version\" : {}", quote(s.version.as_bytes()));
                println!("\"DBSize\" : {}", s.db_size);
                println!("\"Leader\" : {}", s.leader);
                println!("\"IsLearner\" : {}", s.is_learner);
                println!("\"RaftIndex\" : {}", s.raft_index);
                println!("\"RaftTerm\" : {}", s.raft_term);
                println!("\"RaftAppliedIndex\" : {}", s.raft_applied_index);
                println!("\"Errors\" : {}", go_list(&s.errors));
                println!("\"Endpoint\" : {}", quote(endpoint.as_bytes()));
                println!();
            }
        }
        Format::Protobuf => return Err(print::unsupported(out.format)),
    }
    Ok(())
}

fn hash_kv(ctx: &Ctx, endpoints: &[String], revision: i64) -> Result<(), CliError> {
    let (answers, error) = each_endpoint(
        ctx,
        endpoints,
        "Failed to get the hash of endpoint",
        |client| client.call(client.maintenance().hash_kv(HashKvRequest { revision })),
    );
    print_hash_kv(ctx.out, &answers)?;
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn print_hash_kv(out: Out, answers: &[(String, HashKvResponse)]) -> Result<(), CliError> {
    let rows = || -> Vec<Vec<String>> {
        answers
            .iter()
            .map(|(endpoint, h)| vec![endpoint.clone(), h.hash.to_string()])
            .collect()
    };
    match out.format {
        Format::Simple => {
            for row in rows() {
                println!("{}", row.join(", "));
            }
        }
        Format::Table => print!("{}", table::render(&["endpoint", "hash"], &rows())),
        Format::Json => {
            // etcd 3.5's HashKVResponse has no hash_revision: it is not shown.
            let items: Vec<String> = answers
                .iter()
                .map(|(endpoint, h)| {
                    let hash = JsonObject::new()
                        .raw("header", print::header_json(&h.header))
                        .u64("hash", u64::from(h.hash))
                        .i64("compact_revision", h.compact_revision)
                        .finish();
                    JsonObject::new()
                        .str_always("Endpoint", endpoint)
                        .raw("HashKV", Some(hash))
                        .finish()
                })
                .collect();
            println!("[{}]", items.join(","));
        }
        Format::Fields => {
            for (endpoint, h) in answers {
                print::fields_header(&h.header);
                println!("\"Endpoint\" : {}", quote(endpoint.as_bytes()));
                println!("\"Hash\" : {}", h.hash);
                println!();
            }
        }
        Format::Protobuf => return Err(print::unsupported(out.format)),
    }
    Ok(())
}
