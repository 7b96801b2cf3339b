//! keel-bench: a load generator for etcd v3 API endpoints.

fn main() {
    eprintln!("keel-bench: not yet implemented (issue 4)");
    std::process::exit(1);
}
