//! The `keel` server binary.

fn main() {
    eprintln!("keel: the server is not yet implemented (issue 3)");
    std::process::exit(1);
}
