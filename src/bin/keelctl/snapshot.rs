//! `snapshot restore` and `snapshot status`: the offline tools of etcdctl/etcdutl for etcd's
//! backup files. Restore makes a new Keel data dir from an etcd or Keel snapshot, or from an
//! etcd member's `member/snap/db`; status prints what `etcdctl snapshot status` prints.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::error::CliError;

#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Restores a snapshot (or an etcd member's member/snap/db) into a new Keel data dir, for
    /// one member of a new cluster; restore every member of the cluster from the same file.
    Restore(RestoreArgs),
    /// Checks a snapshot file and prints its hash, revision, total keys and size, as
    /// `etcdctl snapshot status` does.
    Status(StatusArgs),
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The snapshot file.
    pub file: PathBuf,
    /// Path to the data directory to create (default: <name>.keel).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Human-readable name of the member being restored.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// The new cluster: name=peer-url,...
    #[arg(long, default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,
    /// Initial cluster token of the new cluster.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// This member's peer URLs, as it will advertise them.
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The snapshot file.
    pub file: PathBuf,
}

fn restore(args: &RestoreArgs) -> Result<(), CliError> {
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
    .map_err(CliError::error)?;
    println!(
        "restored snapshot {} into {} (member {})",
        args.file.display(),
        data_dir.display(),
        args.name
    );
    Ok(())
}

fn status(args: &StatusArgs) -> Result<(), CliError> {
    let status = keel::backup::status(&args.file).map_err(CliError::error)?;
    println!(
        "{:x}, {}, {}, {}",
        status.hash, status.revision, status.total_keys, status.total_size
    );
    Ok(())
}

/// Runs a snapshot subcommand.
pub fn run(command: &SnapshotCommand) -> Result<(), CliError> {
    match command {
        SnapshotCommand::Restore(args) => restore(args),
        SnapshotCommand::Status(args) => status(args),
    }
}
