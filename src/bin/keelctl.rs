//! `keelctl`: Keel's command-line tool. So far it has the offline snapshot commands of
//! etcdctl/etcdutl for etcd's backup files: `snapshot restore` (an etcd or Keel snapshot, or
//! an etcd member's `member/snap/db`, into a new Keel data dir) and `snapshot status`. The
//! rest of etcdctl's commands are not built yet; use etcdctl against Keel meanwhile.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Keel's command-line tool (etcdctl-compatible; so far the snapshot commands).
#[derive(Parser, Debug)]
#[command(name = "keelctl", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Snapshot files in etcd's format (what `etcdctl snapshot save` writes).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

#[derive(Subcommand, Debug)]
enum SnapshotCommand {
    /// Restores a snapshot (or an etcd member's member/snap/db) into a new Keel data dir, for
    /// one member of a new cluster; restore every member of the cluster from the same file.
    Restore(RestoreArgs),
    /// Checks a snapshot file and prints its hash, revision, total keys and size, as
    /// `etcdctl snapshot status` does.
    Status(StatusArgs),
}

#[derive(Args, Debug)]
struct RestoreArgs {
    /// The snapshot file.
    file: PathBuf,
    /// Path to the data directory to create (default: <name>.keel).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Human-readable name of the member being restored.
    #[arg(long, default_value = "default")]
    name: String,
    /// The new cluster: name=peer-url,...
    #[arg(long, default_value = "default=http://localhost:2380")]
    initial_cluster: String,
    /// Initial cluster token of the new cluster.
    #[arg(long, default_value = "etcd-cluster")]
    initial_cluster_token: String,
    /// This member's peer URLs, as it will advertise them.
    #[arg(long, default_value = "http://localhost:2380")]
    initial_advertise_peer_urls: String,
}

#[derive(Args, Debug)]
struct StatusArgs {
    /// The snapshot file.
    file: PathBuf,
}

fn restore(args: &RestoreArgs) -> Result<(), String> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.keel", args.name)));
    keel::backup::restore(
        &args.file,
        &keel::backup::RestoreTarget {
            data_dir: &data_dir,
            name: &args.name,
            initial_cluster: &args.initial_cluster,
            initial_cluster_token: &args.initial_cluster_token,
            initial_advertise_peer_urls: &args.initial_advertise_peer_urls,
        },
    )
    .map_err(|e| e.to_string())?;
    println!(
        "restored snapshot {} into {} (member {})",
        args.file.display(),
        data_dir.display(),
        args.name
    );
    Ok(())
}

fn status(args: &StatusArgs) -> Result<(), String> {
    let status = keel::backup::status(&args.file).map_err(|e| e.to_string())?;
    println!(
        "{:x}, {}, {}, {}",
        status.hash, status.revision, status.total_keys, status.total_size
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Snapshot(SnapshotCommand::Restore(args)) => restore(args),
        Command::Snapshot(SnapshotCommand::Status(args)) => status(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error}");
            ExitCode::FAILURE
        }
    }
}
