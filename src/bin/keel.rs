//! The `keel` server binary: parses etcd's flags, runs a member until SIGINT/SIGTERM.

use clap::Parser;
use keel::config::Config;

/// jemalloc instead of glibc's malloc: the raft core allocates and frees per entry and per
/// message, and glibc's free-list upkeep cost several percent of its CPU under load.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let config = Config::parse();
    // Bad flag values exit with status 2, like clap's own parse errors (and etcd's).
    if let Err(error) = config.validate() {
        eprintln!("keel: {error}");
        eprintln!("Run 'keel --help' for the flags.");
        std::process::exit(2);
    }
    let filter = match config.log_level.as_str() {
        "panic" | "fatal" => "error",
        other => other,
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEEL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    if let Err(error) = keel::member::run(&config) {
        eprintln!("keel: {error:#}");
        std::process::exit(1);
    }
}
