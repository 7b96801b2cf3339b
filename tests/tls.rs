//! Client TLS with real processes: the real etcdctl with `--cacert --cert --key` against Keel
//! over https, the refusals (no CA, a client without a certificate or with one from another
//! CA, plaintext to the TLS port), a server certificate rotated on disk and picked up without
//! a restart, and the metrics listener staying plain http; the same steps against upstream
//! etcd behave the same. Certificates are made here with rcgen.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{error_lines, free_port, http_get, Kind, ETCDCTL_BIN, READY_TIMEOUT};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

/// A CA and what it signs.
struct Authority {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let mut params = CertificateParams::new(Vec::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        Authority { cert, key }
    }

    /// A certificate for 127.0.0.1 usable by a server and a client: (cert PEM, key PEM).
    fn issue(&self, common_name: &str) -> (String, String) {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("signed certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// Every file the session uses, in one temp dir.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).expect("write a PEM file");
    }

    /// A certificate from `ca` for `common_name`, written as `name.pem` and `name.key`.
    fn issue(&self, ca: &Authority, common_name: &str, name: &str) {
        let (cert, key) = ca.issue(common_name);
        self.write(&format!("{name}.pem"), &cert);
        self.write(&format!("{name}.key"), &key);
    }

    fn arg(&self, flag: &str, name: &str) -> String {
        format!("--{flag}={}", self.path(name).display())
    }
}

/// A server with an https client URL and a plain http metrics URL; killed on drop.
struct Server {
    child: Child,
    endpoint: String,
    metrics: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(kind: Kind, dir: &Path, tls: &[String]) -> Server {
    let (client, peer, metrics) = (free_port(), free_port(), free_port());
    let log = dir.join(format!("{kind:?}.log"));
    let out = std::fs::File::create(&log).expect("log");
    let err = out.try_clone().expect("log");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let mut command = Command::new(kind.binary());
    command
        .arg("--name=tls")
        .arg(format!(
            "--data-dir={}",
            dir.join(format!("{kind:?}.data")).display()
        ))
        .arg(format!("--listen-client-urls=https://127.0.0.1:{client}"))
        .arg(format!(
            "--advertise-client-urls=https://127.0.0.1:{client}"
        ))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=tls={peer_url}"))
        .arg(format!("--listen-metrics-urls=http://127.0.0.1:{metrics}"))
        .args(tls)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    for (key, _) in std::env::vars() {
        if key.starts_with("ETCD_") {
            command.env_remove(key);
        }
    }
    let mut server = Server {
        child: command.spawn().expect("spawn the server"),
        endpoint: format!("127.0.0.1:{client}"),
        metrics: format!("127.0.0.1:{metrics}"),
        log,
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    while !matches!(http_get(&server.metrics, "/health"), Ok((200, _))) {
        let exited = server.child.try_wait().ok().flatten();
        assert!(
            exited.is_none() && Instant::now() < deadline,
            "{kind:?} did not become healthy: {}",
            std::fs::read_to_string(&server.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// etcdctl against `server` with the TLS flags given: exit status and `Error:` lines.
fn ctl(server: &Server, tls: &[String], args: &[&str]) -> String {
    let output = Command::new(ETCDCTL_BIN)
        .env("ETCDCTL_API", "3")
        .env_remove("ETCDCTL_ENDPOINTS")
        .arg(format!("--endpoints={}", server.endpoint))
        .arg("--dial-timeout=2s")
        .arg("--command-timeout=3s")
        .args(tls)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run etcdctl");
    format!(
        "{args:?}: exit {:?} {}",
        output.status.code(),
        error_lines(&output)
    )
}

/// One session against `kind` with client certificate authentication; what each step gave.
fn session(kind: Kind) -> Vec<String> {
    let files = Files {
        dir: tempfile::tempdir().expect("temp dir"),
    };
    let (ca1, ca2) = (Authority::new("ca-one"), Authority::new("ca-two"));
    files.write("ca1.pem", &ca1.cert.pem());
    files.write("ca2.pem", &ca2.cert.pem());
    files.issue(&ca1, "server", "server");
    files.issue(&ca1, "client", "client");
    files.issue(&ca2, "stranger", "other");
    let server = start(
        kind,
        files.dir.path(),
        &[
            files.arg("cert-file", "server.pem"),
            files.arg("key-file", "server.key"),
            "--client-cert-auth".to_string(),
            files.arg("trusted-ca-file", "ca1.pem"),
        ],
    );
    let trusted = |ca: &str, cert: Option<(&str, &str)>| {
        let mut flags = vec![files.arg("cacert", ca)];
        if let Some((cert, key)) = cert {
            flags.push(files.arg("cert", cert));
            flags.push(files.arg("key", key));
        }
        flags
    };
    let client = Some(("client.pem", "client.key"));
    let mut out = vec![
        ctl(&server, &trusted("ca1.pem", client), &["put", "k", "v"]),
        ctl(&server, &trusted("ca1.pem", client), &["get", "k"]),
        // No client certificate, or one from another CA.
        ctl(&server, &trusted("ca1.pem", None), &["get", "k"]),
        ctl(
            &server,
            &trusted("ca1.pem", Some(("other.pem", "other.key"))),
            &["get", "k"],
        ),
        // The server's certificate is not trusted without its CA; plaintext is refused.
        ctl(&server, &trusted("ca2.pem", client), &["get", "k"]),
        ctl(&server, &[], &["get", "k"]),
    ];
    // The metrics listener stays plain http.
    out.push(format!(
        "metrics: {:?}",
        http_get(&server.metrics, "/health")
            .map(|(code, _)| code)
            .ok()
    ));
    // The server certificate is rotated on disk (now from the second CA): served from the
    // next handshake on, without a restart.
    let (rotated_cert, rotated_key) = ca2.issue("server");
    files.write("server.key.new", &rotated_key);
    files.write("server.pem.new", &rotated_cert);
    std::fs::rename(files.path("server.key.new"), files.path("server.key")).expect("rename");
    std::fs::rename(files.path("server.pem.new"), files.path("server.pem")).expect("rename");
    out.push(ctl(&server, &trusted("ca2.pem", client), &["get", "k"]));
    out.push(ctl(&server, &trusted("ca1.pem", client), &["get", "k"]));
    // Refused handshakes are logged with the client's address.
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    out.push(format!(
        "log names a rejected connection from 127.0.0.1: {}",
        log.lines()
            .any(|l| l.contains("rejected connection") && l.contains("127.0.0.1:"))
    ));
    out
}

/// Keel and etcd 3.4.23 accept and refuse the same steps, with the same etcdctl output.
#[test]
fn client_tls_matches_etcd() {
    let etcd = session(Kind::Etcd);
    let keel = session(Kind::Keel);
    assert_eq!(keel, etcd);
    let ok: Vec<bool> = keel.iter().map(|s| s.contains("exit Some(0)")).collect();
    assert_eq!(
        ok,
        [true, true, false, false, false, false, false, true, false, false],
        "{keel:#?}"
    );
    assert!(keel[6].contains("Some(200)"), "{keel:#?}");
    assert!(keel[9].ends_with("true"), "{keel:#?}");
}

/// With `--client-cert-auth` and auth enabled, the verified client certificate's common name
/// is the user when no token is sent: users without passwords act through their certificates
/// alone; a token, when sent, wins over the certificate.
fn common_name_session(kind: Kind) -> Vec<String> {
    let files = Files {
        dir: tempfile::tempdir().expect("temp dir"),
    };
    let ca = Authority::new("ca");
    files.write("ca.pem", &ca.cert.pem());
    files.issue(&ca, "server", "server");
    files.issue(&ca, "root", "root");
    files.issue(&ca, "alice", "alice");
    files.issue(&ca, "nobody", "nobody");
    let server = start(
        kind,
        files.dir.path(),
        &[
            files.arg("cert-file", "server.pem"),
            files.arg("key-file", "server.key"),
            "--client-cert-auth".to_string(),
            files.arg("trusted-ca-file", "ca.pem"),
        ],
    );
    let as_cert = |name: &str| {
        vec![
            files.arg("cacert", "ca.pem"),
            files.arg("cert", &format!("{name}.pem")),
            files.arg("key", &format!("{name}.key")),
        ]
    };
    let root = as_cert("root");
    let mut out = Vec::new();
    for args in [
        &["user", "add", "root", "--no-password"][..],
        &["role", "add", "root"],
        &["user", "grant-role", "root", "root"],
        &["user", "add", "alice", "--no-password"],
        &["user", "add", "bob", "--new-user-password=bobpw"],
        &["role", "add", "r1"],
        &[
            "role",
            "grant-permission",
            "r1",
            "readwrite",
            "foo",
            "--prefix",
        ],
        &["user", "grant-role", "alice", "r1"],
        &["auth", "enable"],
        &["put", "bar", "root-wrote-this"],
    ] {
        out.push(ctl(&server, &root, args));
    }
    let alice = as_cert("alice");
    out.push(ctl(&server, &alice, &["put", "foo1", "v"]));
    out.push(ctl(&server, &alice, &["get", "bar"]));
    out.push(ctl(&server, &alice, &["user", "list"]));
    // A certificate naming no user: every check fails.
    out.push(ctl(&server, &as_cert("nobody"), &["get", "foo1"]));
    // A token (bob's) names the user even on alice's connection.
    let mut bob = alice.clone();
    bob.push("--user=bob:bobpw".to_string());
    out.push(ctl(&server, &bob, &["get", "foo1"]));
    out.push(ctl(&server, &root, &["user", "list"]));
    out
}

#[test]
fn client_certificate_common_name_is_the_user_as_in_etcd() {
    let etcd = common_name_session(Kind::Etcd);
    let keel = common_name_session(Kind::Keel);
    assert_eq!(keel, etcd);
    let ok: Vec<bool> = keel.iter().map(|s| s.contains("exit Some(0)")).collect();
    let mut expected = vec![true; 10];
    expected.extend([true, false, false, false, false, true]);
    assert_eq!(ok, expected, "{keel:#?}");
    assert!(
        keel[11].ends_with("etcdserver: permission denied"),
        "{keel:#?}"
    );
    assert!(
        keel[14].ends_with("etcdserver: permission denied"),
        "{keel:#?}"
    );
}

/// An https client URL without a certificate is refused at startup with etcd's message.
#[test]
fn https_without_a_certificate_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let output = Command::new(Kind::Keel.binary())
        .arg(format!("--data-dir={}", dir.path().join("data").display()))
        .arg(format!("--listen-client-urls=https://127.0.0.1:{port}"))
        .arg(format!("--advertise-client-urls=https://127.0.0.1:{port}"))
        .output()
        .expect("run keel");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "TLS key/cert (--cert-file, --key-file) must be provided for client url \
             https://127.0.0.1:{port} with HTTPS scheme"
        )),
        "{stderr}"
    );
}

/// Three members with peer mTLS (https peer URLs, each peer's certificate checked against
/// `--peer-trusted-ca-file`) form a cluster and serve; a member added with a certificate from
/// another CA cannot join (it cannot even ask the peers for the cluster) and the cluster goes
/// on serving.
#[test]
fn peers_with_mutual_tls_form_a_cluster_and_keep_a_stranger_out() {
    let files = Files {
        dir: tempfile::tempdir().expect("temp dir"),
    };
    let (ca1, ca2) = (Authority::new("peer-ca"), Authority::new("stranger-ca"));
    files.write("ca1.pem", &ca1.cert.pem());
    files.write("ca2.pem", &ca2.cert.pem());
    files.issue(&ca1, "peer", "peer");
    files.issue(&ca2, "stranger", "other");
    let flags = [
        files.arg("peer-cert-file", "peer.pem"),
        files.arg("peer-key-file", "peer.key"),
        files.arg("peer-trusted-ca-file", "ca1.pem"),
        "--peer-client-cert-auth".to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut cluster = common::Cluster::start(Kind::Keel, 3, &flags);
    let put = common::etcdctl(&cluster.members[0].endpoint, &["put", "k", "v"], None);
    assert!(put.status.success(), "{}", error_lines(&put));
    let get = common::etcdctl(&cluster.members[2].endpoint, &["get", "k"], None);
    assert_eq!(String::from_utf8_lossy(&get.stdout), "k\nv\n");

    // The stranger is added (a quorum must have been connected for 5 s first).
    let index = cluster.prepare("m3");
    let peer_url = format!("--peer-urls={}", cluster.members[index].peer_url);
    let deadline = Instant::now() + READY_TIMEOUT * 2;
    let added = loop {
        let added = common::etcdctl(
            &cluster.members[0].endpoint,
            &["member", "add", "m3", &peer_url],
            None,
        );
        if added.status.success() || !error_lines(&added).contains("unhealthy cluster") {
            break added;
        }
        assert!(Instant::now() < deadline, "{}", error_lines(&added));
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(added.status.success(), "{}", error_lines(&added));
    let initial_cluster = String::from_utf8_lossy(&added.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER="))
        .map(|v| v.trim_matches('"').to_string())
        .expect("ETCD_INITIAL_CLUSTER");
    let stranger = [
        files.arg("peer-cert-file", "other.pem"),
        files.arg("peer-key-file", "other.key"),
        files.arg("peer-trusted-ca-file", "ca2.pem"),
    ];
    let stranger: Vec<&str> = stranger.iter().map(String::as_str).collect();
    cluster.join(index, &initial_cluster, &stranger);
    let status = cluster.wait_exit(index, READY_TIMEOUT);
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{}", cluster.logs());
    assert!(cluster.members[index]
        .log()
        .contains("cannot fetch cluster info from peer urls"));
    // The three go on serving, and say whom they refused.
    let put = common::etcdctl(&cluster.members[1].endpoint, &["put", "k", "w"], None);
    assert!(put.status.success(), "{}", error_lines(&put));
    assert!(
        (0..3).any(|i| cluster.members[i].log().contains("rejected connection")),
        "{}",
        cluster.logs()
    );
}
