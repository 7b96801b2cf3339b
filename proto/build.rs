//! Compiles the .proto files under `proto/` with protox (a protobuf compiler written in Rust,
//! so no system `protoc` is needed) and generates prost messages plus tonic clients and
//! servers with tonic-prost-build. The compiled descriptor set is also written to
//! `$OUT_DIR/keel_descriptor_set.bin` for gRPC reflection.

use std::path::{Path, PathBuf};

/// Every file compiled, relative to the include root `proto/`. The import paths inside the
/// files are relative to the same root.
const PROTO_FILES: &[&str] = &[
    "etcd/api/mvccpb/kv.proto",
    "etcd/api/authpb/auth.proto",
    "etcd/api/etcdserverpb/rpc.proto",
    "etcd/server/etcdserver/api/v3lock/v3lockpb/v3lock.proto",
    "etcd/server/etcdserver/api/v3election/v3electionpb/v3election.proto",
    "keel/peer.proto",
    "grpc/health/v1/health.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let include_root = manifest_dir.join("proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    // Cargo scans a directory given to rerun-if-changed recursively, so new files count too.
    println!("cargo:rerun-if-changed={}", include_root.display());
    println!("cargo:rerun-if-changed=build.rs");

    let files: Vec<PathBuf> = PROTO_FILES.iter().map(|f| include_root.join(f)).collect();
    // Source info is kept so that proto comments become rustdoc comments on generated items.
    let descriptor_set = protox::Compiler::new([&include_root])?
        .include_source_info(true)
        .include_imports(true)
        .open_files(&files)?
        .file_descriptor_set();

    write_descriptor_set(&descriptor_set, &out_dir.join("keel_descriptor_set.bin"))?;

    tonic_prost_build::configure()
        // Clients are generated without tonic's `transport` feature: callers build them with
        // `XClient::new(channel)` over whatever channel type they bring.
        .build_transport(false)
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptor_set)?;
    Ok(())
}

/// Writes the descriptor set without source info (comments and spans): reflection clients do
/// not need it, and leaving it out keeps the constant embedded in every binary small.
fn write_descriptor_set(
    descriptor_set: &tonic_prost_build::FileDescriptorSet,
    path: &Path,
) -> std::io::Result<()> {
    let mut stripped = descriptor_set.clone();
    for file in &mut stripped.file {
        file.source_code_info = None;
    }
    std::fs::write(path, prost::Message::encode_to_vec(&stripped))
}
