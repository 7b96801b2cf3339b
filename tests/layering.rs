//! The crate layering of ARCHITECTURE.md, checked from `cargo metadata`.
//!
//! `keel-proto` and `keel-engine` import nothing from the workspace; the engine, which must
//! stay free of the network and of raft, must not reach tonic, prost, raft or tokio even
//! transitively through its normal (non-dev) dependencies; `keel-bench` is a client and may
//! import only `keel-proto`.
//!
//! Inside the `keel` crate, arrows run one way too: the API layer (`src/api/`) uses the server
//! core, never the reverse, and the server core answers with typed errors rather than gRPC
//! statuses. [`server_and_raft_core_know_nothing_of_grpc_or_the_api`] reads the sources of
//! `src/server/` and the raft core (everything in `src/raft/` but the peer transport, itself a
//! gRPC service) and fails if any of them mentions `tonic` or `crate::api`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// The resolved dependency graph: package id -> (name, normal-dependency ids).
struct Graph {
    names: BTreeMap<String, String>,
    normal_edges: BTreeMap<String, Vec<String>>,
    workspace: BTreeSet<String>,
}

fn load_graph() -> Graph {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid json");
    let mut names = BTreeMap::new();
    for package in metadata["packages"].as_array().expect("packages") {
        names.insert(
            package["id"].as_str().expect("id").to_string(),
            package["name"].as_str().expect("name").to_string(),
        );
    }
    let workspace = metadata["workspace_members"]
        .as_array()
        .expect("workspace members")
        .iter()
        .map(|id| id.as_str().expect("id").to_string())
        .collect();
    let mut normal_edges = BTreeMap::new();
    for node in metadata["resolve"]["nodes"]
        .as_array()
        .expect("resolve nodes")
    {
        let id = node["id"].as_str().expect("id").to_string();
        let deps = node["deps"]
            .as_array()
            .expect("deps")
            .iter()
            .filter(|dep| {
                dep["dep_kinds"]
                    .as_array()
                    .expect("dep kinds")
                    .iter()
                    .any(|kind| kind["kind"].is_null())
            })
            .map(|dep| dep["pkg"].as_str().expect("pkg").to_string())
            .collect();
        normal_edges.insert(id, deps);
    }
    Graph {
        names,
        normal_edges,
        workspace,
    }
}

impl Graph {
    fn id_of(&self, name: &str) -> String {
        self.names
            .iter()
            .find(|(id, n)| n.as_str() == name && self.workspace.contains(*id))
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| panic!("workspace crate {name} not found"))
    }

    fn direct_workspace_deps(&self, name: &str) -> BTreeSet<String> {
        self.normal_edges[&self.id_of(name)]
            .iter()
            .filter(|id| self.workspace.contains(*id))
            .map(|id| self.names[id].clone())
            .collect()
    }

    fn transitive_names(&self, name: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![self.id_of(name)];
        while let Some(id) = stack.pop() {
            for dep in &self.normal_edges[&id] {
                if seen.insert(dep.clone()) {
                    stack.push(dep.clone());
                }
            }
        }
        seen.iter().map(|id| self.names[id].clone()).collect()
    }
}

#[test]
fn proto_imports_nothing_from_the_workspace() {
    let graph = load_graph();
    assert_eq!(graph.direct_workspace_deps("keel-proto"), BTreeSet::new());
}

#[test]
fn engine_imports_nothing_from_the_workspace() {
    let graph = load_graph();
    assert_eq!(graph.direct_workspace_deps("keel-engine"), BTreeSet::new());
}

#[test]
fn engine_stays_free_of_network_and_raft() {
    let graph = load_graph();
    let forbidden = ["tonic", "prost", "raft", "raft-proto", "tokio", "hyper"];
    let reached: Vec<String> = graph
        .transitive_names("keel-engine")
        .into_iter()
        .filter(|name| forbidden.contains(&name.as_str()))
        .collect();
    assert!(reached.is_empty(), "keel-engine reaches {reached:?}");
}

#[test]
fn bench_is_a_client_of_proto_only() {
    let graph = load_graph();
    let deps = graph.direct_workspace_deps("keel-bench");
    assert!(
        deps.iter().all(|name| name == "keel-proto"),
        "keel-bench imports {deps:?}"
    );
}

#[test]
fn server_may_import_engine_and_proto() {
    let graph = load_graph();
    let deps = graph.direct_workspace_deps("keel");
    let allowed: BTreeSet<String> = ["keel-engine", "keel-proto"].map(String::from).into();
    assert!(deps.is_subset(&allowed), "keel imports {deps:?}");
}

/// Every `.rs` file under `dir`, recursively, in path order.
fn rust_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read source dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn server_and_raft_core_know_nothing_of_grpc_or_the_api() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    // The peer transport serves and calls Keel's Peer gRPC service: gRPC is its edge.
    let allowed = [src.join("raft").join("transport.rs")];
    let files: Vec<_> = rust_files(&src.join("server"))
        .into_iter()
        .chain(rust_files(&src.join("raft")))
        .filter(|path| !allowed.contains(path))
        .collect();
    assert!(
        files.iter().any(|p| p.ends_with("server/state.rs"))
            && files.iter().any(|p| p.ends_with("raft/node.rs")),
        "the source walk found {files:?}"
    );
    let forbidden = ["tonic", "crate::api", "keel::api"];
    let mut found = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("read source");
        for (number, line) in text.lines().enumerate() {
            for word in forbidden {
                if line.contains(word) {
                    found.push(format!(
                        "{}:{}: mentions `{word}`: {}",
                        path.strip_prefix(&src).unwrap_or(path).display(),
                        number + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "the server core must not use the API layer or gRPC (convert at the API edge, \
         src/api/error.rs):\n{}",
        found.join("\n")
    );
}
