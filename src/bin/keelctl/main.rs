//! `keelctl`: an etcdctl-compatible command-line client for Keel and for upstream etcd, with
//! etcdutl's offline snapshot tools.
//!
//! Commands, flags, `ETCDCTL_*` variables, output formats (`-w simple|json|protobuf|table|
//! fields`), error messages and exit codes follow etcdctl 3.5, so scripts written for etcdctl
//! work unchanged. Each command lives in its own module; [`Ctx`] carries the global flags and
//! opens the connection on first use, so commands that need no server (the offline snapshot
//! tools) never dial one.

mod auth;
mod check;
mod client;
mod cobra;
mod completion;
mod concurrency;
mod endpoint;
mod error;
mod global;
mod gofmt;
mod goscan;
mod kv;
mod lease;
mod maintenance;
mod member;
mod mirror;
mod print;
mod snapshot;
mod srv;
mod table;
mod txn;
mod usage;
mod watch;

use std::cell::OnceCell;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use client::Client;
use error::CliError;
use global::Global;
use print::Out;

/// A simple command line client for etcd3 and Keel.
#[derive(Parser, Debug)]
#[command(name = "keelctl", version, disable_help_subcommand = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Gets the key or a range of keys.
    Get(kv::GetArgs),
    /// Puts the given key into the store.
    Put(kv::PutArgs),
    /// Removes the specified key or range of keys [key, range_end).
    Del(kv::DelArgs),
    /// Manages etcd node snapshots.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Lease related commands.
    #[command(subcommand)]
    Lease(lease::LeaseCommand),
    /// Membership related commands.
    #[command(subcommand)]
    Member(member::MemberCommand),
    /// Endpoint related commands.
    Endpoint(endpoint::EndpointArgs),
    /// Alarm related commands.
    #[command(subcommand)]
    Alarm(maintenance::AlarmCommand),
    /// Defragments the storage of the etcd members with given endpoints.
    Defrag(maintenance::DefragArgs),
    /// Transfers leadership to another etcd cluster member.
    MoveLeader(maintenance::MoveLeaderArgs),
    /// Prints the version of etcdctl.
    Version,
    /// Txn processes all the requests in one transaction.
    Txn(txn::TxnArgs),
    /// Compacts the event history in etcd.
    Compaction(txn::CompactionArgs),
    /// Watches events stream on keys or prefixes.
    Watch(watch::WatchArgs),
    /// User related commands.
    #[command(subcommand)]
    User(auth::UserCommand),
    /// Role related commands.
    #[command(subcommand)]
    Role(auth::RoleCommand),
    /// Enable or disable authentication.
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    /// Acquires a named lock.
    Lock(concurrency::LockArgs),
    /// Observes and participates in leader election.
    Elect(concurrency::ElectArgs),
    /// Makes a mirror at the destination etcd cluster.
    MakeMirror(mirror::MakeMirrorArgs),
    /// Commands for checking properties of the etcd cluster.
    #[command(subcommand)]
    Check(check::CheckCommand),
    /// Generate completion script
    Completion(completion::CompletionArgs),
}

/// What every command gets: the global flags, how to print, and the connection (opened on
/// first use).
pub struct Ctx {
    /// The global flags.
    pub global: Global,
    /// `-w` and `--hex`.
    pub out: Out,
    client: OnceCell<Client>,
}

impl Ctx {
    fn new(global: Global) -> Ctx {
        let out = Out {
            format: global.write_out,
            hex: global.hex,
        };
        Ctx {
            global,
            out,
            client: OnceCell::new(),
        }
    }

    /// The connection to the endpoints, opened on first use.
    pub fn client(&self) -> Result<&Client, CliError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let client = Client::connect(&self.global)?;
        Ok(self.client.get_or_init(|| client))
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let ctx = Ctx::new(cli.global);
    match &cli.command {
        Command::Get(args) => kv::get(&ctx, args),
        Command::Put(args) => kv::put(&ctx, args),
        Command::Del(args) => kv::del(&ctx, args),
        Command::Snapshot(command) => snapshot::run(&ctx, command),
        Command::Lease(command) => lease::run(&ctx, command),
        Command::Member(command) => member::run(&ctx, command),
        Command::Endpoint(args) => endpoint::run(&ctx, args),
        Command::Alarm(command) => maintenance::alarm(&ctx, command),
        Command::Defrag(args) => maintenance::defrag(&ctx, args),
        Command::MoveLeader(args) => maintenance::move_leader(&ctx, args),
        Command::Version => maintenance::version(),
        Command::Txn(args) => txn::txn(&ctx, args),
        Command::Compaction(args) => txn::compaction(&ctx, args),
        Command::Watch(args) => watch::watch(&ctx, args),
        Command::User(command) => auth::user(&ctx, command),
        Command::Role(command) => auth::role(&ctx, command),
        Command::Auth(command) => auth::auth(&ctx, command),
        Command::Lock(args) => concurrency::lock(&ctx, args),
        Command::Elect(args) => concurrency::elect(&ctx, args),
        Command::MakeMirror(args) => mirror::make_mirror(&ctx, args),
        Command::Check(command) => check::run(&ctx, command),
        Command::Completion(args) => completion::run(args),
    }
}

/// etcdctl's start: `ETCDCTL_API` picks the API (only v3 here), then the command line and
/// the `ETCDCTL_*` variables are read as etcdctl reads them ([`cobra`]), then the command
/// runs; a failure prints `Error: <message>` to stderr and exits with etcdctl's code.
fn main() -> ExitCode {
    let api = std::env::var_os("ETCDCTL_API").map(|v| v.to_string_lossy().into_owned());
    match api.as_deref().unwrap_or_default() {
        "" | "3" => {}
        "2" => {
            eprintln!(
                "Error: ETCDCTL_API=2: the v2 API is not supported by keelctl (unset \
                 ETCDCTL_API or set it to 3)"
            );
            return ExitCode::from(error::exit::ERROR);
        }
        other => {
            eprintln!("unsupported API version: {other}");
            return ExitCode::from(error::exit::ERROR);
        }
    }
    // etcdctl unsets ETCDCTL_API before it reads the other variables.
    let env: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .filter(|(k, _)| k != "ETCDCTL_API")
        .collect();
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut root = Cli::command();
    root.build();
    let (argv, extras) = match cobra::parse(&root, &args, &env) {
        cobra::Outcome::Run { argv, extras } => (argv, extras),
        cobra::Outcome::Exit(code) => return ExitCode::from(code),
    };
    let mut cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => return ExitCode::from(cobra::clap_error(&root, &argv, &e)),
    };
    extras.apply(&mut cli.global);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error}");
            ExitCode::from(error.code)
        }
    }
}
