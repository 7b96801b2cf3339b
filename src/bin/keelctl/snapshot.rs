//! `snapshot save`, `snapshot restore` and `snapshot status`. Save streams a member's
//! backend snapshot into a file, as etcdctl does; restore and status are the offline tools of
//! etcdctl/etcdutl for etcd's backup files. Restore makes a new Keel data dir from an etcd or
//! Keel snapshot, or from an etcd member's `member/snap/db`; status prints what `etcdutl
//! snapshot status` prints, in each of its formats.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Subcommand};
use keel_proto::etcdserverpb::SnapshotRequest;
use sha2::{Digest, Sha256};

use crate::error::{exit, status_text, CliError};
use crate::global::Format;
use crate::gofmt::JsonObject;
use crate::Ctx;

/// `snapshot <subcommand>`: manages etcd node snapshots.
#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Stores an etcd node backend snapshot to a given file.
    Save(SaveArgs),
    /// Restores a snapshot (or an etcd member's member/snap/db) into a new Keel data dir, for
    /// one member of a new cluster; restore every member of the cluster from the same file.
    Restore(RestoreArgs),
    /// Checks a snapshot file and prints its hash, revision, total keys and size, as
    /// `etcdctl snapshot status` does.
    Status(StatusArgs),
}

/// `snapshot restore <filename> [options]`.
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
    /// Path to the WAL directory, which must not exist (default: in the data dir); start the
    /// member with the same --wal-dir.
    #[arg(long)]
    pub wal_dir: Option<PathBuf>,
    /// Ignore the snapshot's integrity hash (required for a db copied from a data dir).
    #[arg(long)]
    pub skip_hash_check: bool,
}

/// `snapshot save <filename>`.
#[derive(Args, Debug)]
pub struct SaveArgs {
    /// The file to write.
    pub args: Vec<String>,
}

/// `snapshot status <filename>`.
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
    let bar = progress_bar();
    let report = |stage: keel::backup::RestoreStage, done: u64, total: u64| {
        use keel::backup::RestoreStage;
        let message = match stage {
            RestoreStage::Verifying => "verifying",
            RestoreStage::Reading => "reading",
            RestoreStage::Writing => "writing",
        };
        if bar.message() != message {
            bar.reset();
            bar.set_message(message);
        }
        bar.set_length(total);
        bar.set_position(done);
    };
    let restored = keel::backup::restore(
        &args.file,
        &keel::backup::RestoreTarget {
            data_dir: &data_dir,
            name: &args.name,
            initial_cluster: &args.initial_cluster,
            initial_cluster_token: &args.initial_cluster_token,
            initial_advertise_peer_urls: &args.initial_advertise_peer_urls,
            wal_dir: args.wal_dir.as_deref(),
            hash: if args.skip_hash_check {
                keel::backup::HashCheck::Skipped
            } else {
                keel::backup::HashCheck::Required
            },
        },
        &report,
    );
    bar.finish_and_clear();
    restored.map_err(CliError::error)?;
    println!(
        "restored snapshot {} into {} (member {})",
        args.file.display(),
        data_dir.display(),
        args.name
    );
    Ok(())
}

/// `snapshot status` in each format etcdutl 3.5 has: simple (one line), table, json,
/// fields; protobuf fails as etcdutl's does (its status is not a protobuf message).
fn status(ctx: &Ctx, args: &StatusArgs) -> Result<(), CliError> {
    let status = keel::backup::status(&args.file).map_err(CliError::error)?;
    let row = vec![
        format!("{:x}", status.hash),
        status.revision.to_string(),
        status.total_keys.to_string(),
        status.total_size.clone(),
    ];
    match ctx.out.format {
        Format::Simple => println!("{}", row.join(", ")),
        Format::Table => print!(
            "{}",
            crate::table::render(&["hash", "revision", "total keys", "total size"], &[row])
        ),
        Format::Json => println!(
            "{}",
            JsonObject::new()
                .i64_always("hash", i64::from(status.hash))
                .i64_always("revision", status.revision)
                .i64_always("totalKey", status.total_keys as i64)
                .i64_always("totalSize", status.total_size_bytes as i64)
                .finish()
        ),
        Format::Fields => {
            println!("\"Hash\" : {}", status.hash);
            println!("\"Revision\" : {}", status.revision);
            println!("\"Keys\" : {}", status.total_keys);
            println!("\"Size\" : {}", status.total_size_bytes);
        }
        Format::Protobuf => {
            return Err(CliError::new(
                exit::BAD_FEATURE,
                format!(
                    "marshal unsupported for type snapshot.Status ({{{} {} {} {}}})",
                    status.hash, status.revision, status.total_keys, status.total_size_bytes
                ),
            ))
        }
    }
    Ok(())
}

/// Whether `--command-timeout` was given (on the command line or as
/// `ETCDCTL_COMMAND_TIMEOUT`): etcdctl bounds `snapshot save` only then.
fn command_timeout_given() -> bool {
    std::env::args().any(|a| a == "--command-timeout" || a.starts_with("--command-timeout="))
        || std::env::var("ETCDCTL_COMMAND_TIMEOUT").is_ok_and(|v| !v.is_empty())
}

/// An info line on stderr, shaped like the JSON log lines etcdctl 3.5 writes while saving.
fn log_info(message: &str, fields: &[(&str, &str)]) {
    let mut line = JsonObject::new()
        .str_always("level", "info")
        .str_always("msg", message);
    for (name, value) in fields {
        line = line.str_always(name, value);
    }
    eprintln!("{}", line.finish());
}

/// The length of a snapshot that ends with etcd's SHA-256 trailer: the database is whole
/// pages (a multiple of 512 bytes), and the trailer adds 32.
fn has_checksum(size: u64) -> bool {
    size % 512 == 32
}

/// `snapshot save`: streams the snapshot of the one endpoint into `<file>.part`, checks the
/// SHA-256 trailer against the data, syncs, and renames the file into place. Failures exit
/// with status 5 and leave no `.part` file behind.
fn save(ctx: &Ctx, args: &SaveArgs) -> Result<(), CliError> {
    if args.args.len() != 1 {
        return Err(CliError::bad_args("snapshot save expects one argument"));
    }
    let path = PathBuf::from(&args.args[0]);
    let interrupted = |message: String| CliError::new(exit::INTERRUPTED, message);
    if ctx.global.endpoints.len() != 1 {
        return Err(interrupted(format!(
            "snapshot must be requested to one selected node, not multiple {}",
            crate::table::go_list(&ctx.global.endpoints)
        )));
    }
    let part = PathBuf::from(format!("{}.part", path.display()));
    let result = save_to(ctx, &path, &part);
    // The partial file goes whatever happened (after a rename there is none).
    let _ = std::fs::remove_file(&part);
    result.map_err(|e| interrupted(e.message))?;
    println!("Snapshot saved at {}", path.display());
    Ok(())
}

fn save_to(ctx: &Ctx, path: &Path, part: &Path) -> Result<(), CliError> {
    let client = ctx.client()?;
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(part)
            .map_err(|e| CliError::error(format!("could not open {} ({e})", part.display())))?
    };
    log_info(
        "created temporary db file",
        &[("path", &part.display().to_string())],
    );
    let started = Instant::now();
    let endpoint = ctx.global.endpoints[0].clone();
    let timeout = command_timeout_given().then(|| client.command_timeout());
    let work = async {
        let mut stream = client
            .maintenance()
            .snapshot(SnapshotRequest {})
            .await
            .map_err(|s| CliError::error(status_text(&s)))?
            .into_inner();
        log_info("fetching snapshot", &[("endpoint", &endpoint)]);
        let bar = progress_bar();
        let mut hasher = Sha256::new();
        // The last 32 bytes seen so far: the trailer once the stream ends.
        let mut tail: Vec<u8> = Vec::with_capacity(64);
        let mut size = 0u64;
        while let Some(response) = stream
            .message()
            .await
            .map_err(|s| CliError::error(status_text(&s)))?
        {
            file.write_all(&response.blob)
                .map_err(|e| CliError::error(format!("writing {}: {e}", part.display())))?;
            size += response.blob.len() as u64;
            bar.set_length(size + response.remaining_bytes);
            bar.set_position(size);
            tail.extend_from_slice(&response.blob);
            if tail.len() > 32 {
                let hashed = tail.len() - 32;
                hasher.update(&tail[..hashed]);
                tail.drain(..hashed);
            }
        }
        bar.finish_and_clear();
        Ok::<_, CliError>((size, hasher, tail))
    };
    let (size, hasher, trailer) = match timeout {
        Some(limit) => client
            .block_on(async { tokio::time::timeout(limit, work).await })
            .map_err(|_| CliError::error(crate::client::DEADLINE))??,
        None => client.block_on(work)?,
    };
    if !has_checksum(size) {
        return Err(CliError::error(format!(
            "sha256 checksum not found [bytes: {size}]"
        )));
    }
    let computed = hasher.finalize();
    if computed.as_slice() != trailer.as_slice() {
        return Err(CliError::error(format!(
            "expected sha256 {}, got {}",
            hex(&trailer),
            hex(&computed)
        )));
    }
    file.sync_all()
        .map_err(|e| CliError::error(format!("syncing {}: {e}", part.display())))?;
    drop(file);
    log_info(
        "fetched snapshot",
        &[
            ("endpoint", &endpoint),
            ("size", &keel::backup::human_bytes(size)),
            ("took", &crate::table::go_duration(started.elapsed())),
        ],
    );
    std::fs::rename(part, path).map_err(|e| {
        CliError::error(format!(
            "could not rename {} to {} ({e})",
            part.display(),
            path.display()
        ))
    })?;
    log_info("saved", &[("path", &path.display().to_string())]);
    Ok(())
}

/// A progress bar on stderr with bytes, rate and ETA (and the stage, for restore), or a
/// hidden one when stderr is not a terminal, so that scripts' output stays clean.
fn progress_bar() -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:9} {bytes}/{total_bytes} [{wide_bar}] {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs a snapshot subcommand.
pub fn run(ctx: &Ctx, command: &SnapshotCommand) -> Result<(), CliError> {
    match command {
        SnapshotCommand::Save(args) => save(ctx, args),
        SnapshotCommand::Restore(args) => restore(args),
        SnapshotCommand::Status(args) => status(ctx, args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_follow_whole_pages() {
        assert!(has_checksum(4096 * 5 + 32));
        assert!(!has_checksum(4096 * 5));
        assert!(!has_checksum(31));
    }
}
