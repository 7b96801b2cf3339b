//! Runs every keel-bench subcommand briefly against a real upstream etcd and checks the JSON
//! summaries: the requested number of operations ran, none failed, and the watch workloads
//! saw every event. Then feeds the summaries to `report`. Skipped (with a message) when
//! /usr/bin/etcd is not installed (scripts/install-test-deps.sh installs it). No timing is
//! asserted: this machine is shared and noisy.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ETCD: &str = "/usr/bin/etcd";
const BENCH: &str = env!("CARGO_BIN_EXE_keel-bench");

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("keel-bench-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running etcd, killed on drop (also when a check fails and the test panics).
struct Etcd {
    child: Child,
    endpoint: String,
    _dir: TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    // The port is released at once; etcd binds it a moment later. A collision is possible
    // but unlikely, and would show as a readiness timeout, not a wrong result.
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Certificates for a TLS etcd: a CA, and one certificate (for 127.0.0.1) that serves both as
/// etcd's server certificate and as the client's.
struct Certs {
    ca: String,
    cert: String,
    key: String,
}

impl Certs {
    /// keel-bench's TLS flags.
    fn bench_flags(&self) -> Vec<String> {
        [
            "--cacert", &self.ca, "--cert", &self.cert, "--key", &self.key,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

/// Makes certificates with the openssl command, or returns None when it is not installed.
fn make_certs(dir: &Path) -> Option<Certs> {
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        matches!(status, Ok(s) if s.success())
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .ok()?;
    // No argument contains a space, so each command is written as one string.
    let steps = [
        "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca",
        "req -newkey rsa:2048 -nodes -keyout node.key -out node.csr -subj /CN=127.0.0.1",
        "x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out node.pem -days 2 \
         -extfile ext.cnf",
    ];
    for step in steps {
        if !run(&step.split_whitespace().collect::<Vec<_>>()) {
            return None;
        }
    }
    let path = |name: &str| dir.join(name).to_str().map(str::to_string);
    Some(Certs {
        ca: path("ca.pem")?,
        cert: path("node.pem")?,
        key: path("node.key")?,
    })
}

fn start_etcd(certs: Option<&Certs>) -> Etcd {
    let dir = TempDir::new("etcd");
    let scheme = if certs.is_some() { "https" } else { "http" };
    let client = format!("{scheme}://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.0.join("etcd.log")).expect("log file");
    let mut command = Command::new(ETCD);
    command
        .arg("--data-dir")
        .arg(dir.0.join("data"))
        .args(["--name", "default"])
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &format!("default={peer}")]);
    if let Some(certs) = certs {
        command
            .args(["--cert-file", &certs.cert, "--key-file", &certs.key])
            .args(["--trusted-ca-file", &certs.ca, "--client-cert-auth"]);
    }
    let child = command
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start etcd");
    let etcd = Etcd {
        child,
        endpoint: client,
        _dir: dir,
    };
    let tls_flags = certs.map(Certs::bench_flags).unwrap_or_default();
    // Ready means a put succeeds: the member has elected itself and applies writes.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = Command::new(BENCH)
            .args([
                "put",
                "--endpoints",
                &etcd.endpoint,
                "--total",
                "1",
                "--json",
            ])
            .args(&tls_flags)
            .output()
            .expect("run keel-bench");
        if output.status.success() {
            let summary: serde_json::Value =
                serde_json::from_slice(&output.stdout).expect("json summary");
            if summary["errors"] == 0 {
                return etcd;
            }
        }
        assert!(
            Instant::now() < deadline,
            "etcd did not become ready within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `keel-bench <args> --json`, checks total == requested and no errors, returns the JSON.
fn bench(endpoint: &str, args: &[&str], total: u64, raw: &Path, name: &str) -> serde_json::Value {
    let mut command = Command::new(BENCH);
    command.args(args).args([
        "--endpoints",
        endpoint,
        "--total",
        &total.to_string(),
        "--json",
    ]);
    let output = command.output().expect("run keel-bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "keel-bench {args:?} failed: {stderr}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("keel-bench {args:?} printed no JSON ({e}): {stderr}"));
    assert_eq!(summary["requested_total"], total, "{args:?}: {summary}");
    assert_eq!(summary["total"], total, "{args:?}: {summary}");
    assert_eq!(summary["ok"], total, "{args:?}: {summary}");
    assert_eq!(summary["errors"], 0, "{args:?}: {summary}");
    assert!(
        summary["latency_us"]["p50"].as_u64().unwrap_or(0) > 0,
        "{args:?}: {summary}"
    );
    std::fs::write(raw.join(format!("etcd-{name}-r1.json")), &output.stdout).expect("save");
    summary
}

fn assert_no_lost_events(summary: &serde_json::Value) {
    let extra = &summary["extra"];
    let expected = extra["events_expected"].as_u64().expect("events_expected");
    assert!(expected > 0, "no events expected: {summary}");
    assert_eq!(extra["events_received"], expected, "{summary}");
    assert_eq!(extra["events_lost"], 0, "{summary}");
}

#[test]
fn every_workload_runs_cleanly_against_etcd() {
    if !Path::new(ETCD).exists() {
        eprintln!("skipping: {ETCD} is not installed (run scripts/install-test-deps.sh)");
        return;
    }
    let etcd = start_etcd(None);
    let endpoint = etcd.endpoint.clone();
    let raw = TempDir::new("raw");
    let raw_path = raw.0.as_path();

    bench(
        &endpoint,
        &["put", "--clients", "4", "--conns", "2"],
        200,
        raw_path,
        "put-seq",
    );
    bench(
        &endpoint,
        &[
            "put",
            "--sequential-keys",
            "--key-space-size",
            "50",
            "--rate",
            "2000",
        ],
        50,
        raw_path,
        "put-rate",
    );
    for consistency in ["l", "s"] {
        bench(
            &endpoint,
            &[
                "range",
                "--consistency",
                consistency,
                "--preload",
                "--key-space-size",
                "20",
            ],
            100,
            raw_path,
            &format!("range-{consistency}-100c"),
        );
    }
    bench(
        &endpoint,
        &["range", "--all-keys", "--limit", "5"],
        20,
        raw_path,
        "range-all",
    );
    bench(
        &endpoint,
        &[
            "txn-put",
            "--txn-ops",
            "2",
            "--clients",
            "3",
            "--key-space-size",
            "10",
        ],
        60,
        raw_path,
        "txn-put",
    );
    bench(
        &endpoint,
        &["txn-mixed", "--rw-ratio", "4", "--clients", "3"],
        100,
        raw_path,
        "txn-mixed-100c",
    );
    let watch = bench(
        &endpoint,
        &[
            "watch",
            "--streams",
            "3",
            "--watchers-per-stream",
            "4",
            "--key-space-size",
            "5",
        ],
        100,
        raw_path,
        "watch",
    );
    assert_no_lost_events(&watch);
    assert_eq!(watch["extra"]["watchers"], 12);
    let latency = bench(
        &endpoint,
        &[
            "watch-latency",
            "--streams",
            "2",
            "--watchers-per-stream",
            "5",
            "--rate",
            "200",
        ],
        40,
        raw_path,
        "watch-latency-100w",
    );
    assert_no_lost_events(&latency);
    assert_eq!(latency["extra"]["events_expected"], 400);
    bench(
        &endpoint,
        &["lease-keepalive", "--clients", "3"],
        60,
        raw_path,
        "lease-keepalive",
    );
    let k8s = bench(
        &endpoint,
        &[
            "k8s",
            "--clients",
            "8",
            "--conns",
            "2",
            "--objects",
            "120",
            "--page-size",
            "50",
        ],
        200,
        raw_path,
        "k8s-100c",
    );
    assert_no_lost_events(&k8s);
    assert!(
        k8s["extra"]["lists"].as_u64().unwrap_or(0) + k8s["extra"]["gets"].as_u64().unwrap_or(0)
            > 0
    );

    // With a single endpoint --target-leader is a no-op; with two (the same member twice) it
    // must find the leader through Maintenance.Status.
    let two = format!("{endpoint},{endpoint}");
    let led = bench(
        &two,
        &["put", "--target-leader"],
        10,
        raw_path,
        "put-leader",
    );
    assert_eq!(led["endpoints"].as_array().map(Vec::len), Some(1), "{led}");
    drop(etcd);

    // The report reads what the runs saved, plus a disk measurement.
    let disk = Command::new(BENCH)
        .args([
            "disk",
            raw_path.to_str().expect("utf-8 path"),
            "--count",
            "50",
            "--json",
        ])
        .output()
        .expect("run disk");
    assert!(
        disk.status.success(),
        "disk: {}",
        String::from_utf8_lossy(&disk.stderr)
    );
    let disk_json: serde_json::Value = serde_json::from_slice(&disk.stdout).expect("disk json");
    assert!(
        disk_json["write_fdatasync_us"]["p50"].as_u64().unwrap_or(0) > 0,
        "{disk_json}"
    );
    std::fs::write(raw_path.join("disk.json"), &disk.stdout).expect("save disk");
    std::fs::write(
        raw_path.join("keel-put-seq-r1.err"),
        "keel: not available\n",
    )
    .expect("err");
    let out = TempDir::new("report");
    let md = out.0.join("report.md");
    let report = Command::new(BENCH)
        .args([
            "report",
            "--input",
            raw_path.to_str().expect("utf-8"),
            "--output",
        ])
        .arg(&md)
        .output()
        .expect("run report");
    assert!(
        report.status.success(),
        "report: {}",
        String::from_utf8_lossy(&report.stderr)
    );
    let text = std::fs::read_to_string(&md).expect("report written");
    assert!(text.contains("| put-seq |"), "{text}");
    assert!(text.contains("O_DIRECT"), "{text}");
    assert!(
        out.0.join("report").join("latency-put-seq.svg").exists(),
        "{text}"
    );
}

#[test]
fn durations_and_errors_are_reported_without_a_server() {
    // Nothing listens on this port: connecting fails, and keel-bench says so and exits 1.
    let port = free_port();
    let output = Command::new(BENCH)
        .args([
            "put",
            "--endpoints",
            &format!("http://127.0.0.1:{port}"),
            "--duration",
            "1s",
        ])
        .output()
        .expect("run keel-bench");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("connecting to"), "{stderr}");
    let bad = Command::new(BENCH)
        .args(["put", "--duration", "10 parsecs"])
        .output()
        .expect("run keel-bench");
    assert!(!bad.status.success());
}

#[test]
fn tls_flags_work_against_an_etcd_with_client_certificates() {
    if !Path::new(ETCD).exists() {
        eprintln!("skipping: {ETCD} is not installed (run scripts/install-test-deps.sh)");
        return;
    }
    let dir = TempDir::new("certs");
    let Some(certs) = make_certs(&dir.0) else {
        eprintln!("skipping: the openssl command is not available to make test certificates");
        return;
    };
    let etcd = start_etcd(Some(&certs));
    let raw = TempDir::new("tls-raw");
    let mut args = vec!["put".to_string(), "--clients".into(), "2".into()];
    args.extend(certs.bench_flags());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    bench(&etcd.endpoint, &args, 50, &raw.0, "put-tls");
    // Without a client certificate the server refuses the requests (client-cert-auth).
    let refused = Command::new(BENCH)
        .args([
            "put",
            "--endpoints",
            &etcd.endpoint,
            "--total",
            "3",
            "--json",
        ])
        .args(["--cacert", &certs.ca])
        .output()
        .expect("run keel-bench");
    let failed = !refused.status.success()
        || serde_json::from_slice::<serde_json::Value>(&refused.stdout)
            .map(|summary| summary["errors"] == 3)
            .unwrap_or(false);
    assert!(failed, "{}", String::from_utf8_lossy(&refused.stdout));
}
