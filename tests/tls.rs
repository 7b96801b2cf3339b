//! Client TLS with real processes: the real etcdctl with `--cacert --cert --key` against Keel
//! over https, the refusals (no CA, a client without a certificate or with one from another
//! CA, plaintext to the TLS port), a server certificate rotated on disk and picked up without
//! a restart, and the metrics listener staying plain http; the same steps against upstream
//! etcd behave the same. Certificates are made here with rcgen.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{error_lines, free_port, http_get, Kind, TlsServer, ETCDCTL_BIN, READY_TIMEOUT};
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
        self.issue_with(common_name, |_| {})
    }

    /// [`Authority::issue`], with the parameters changed by `configure` first.
    fn issue_with(
        &self,
        common_name: &str,
        configure: impl FnOnce(&mut CertificateParams),
    ) -> (String, String) {
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
        configure(&mut params);
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("signed certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// A revocation list (PEM) revoking the certificates with these serial numbers.
    fn crl(&self, revoked: &[u64]) -> String {
        let now = time::OffsetDateTime::now_utc();
        let params = rcgen::CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + time::Duration::days(30),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|&serial| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(serial),
                    revocation_time: now - time::Duration::hours(1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.cert, &self.key)
            .expect("signed CRL")
            .pem()
            .expect("CRL PEM")
    }
}

/// Sets a certificate's serial number.
fn serial(number: u64) -> impl FnOnce(&mut CertificateParams) {
    move |params| params.serial_number = Some(rcgen::SerialNumber::from(number))
}

/// Makes a certificate one that expired in 2021.
fn expired(params: &mut CertificateParams) {
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
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

    /// [`Files::issue`] with the parameters changed by `configure`.
    fn issue_with(
        &self,
        ca: &Authority,
        common_name: &str,
        name: &str,
        configure: impl FnOnce(&mut CertificateParams),
    ) {
        let (cert, key) = ca.issue_with(common_name, configure);
        self.write(&format!("{name}.pem"), &cert);
        self.write(&format!("{name}.key"), &key);
    }

    /// Writes `text` to `name` through a rename, as a careful operator replaces a file.
    fn replace(&self, name: &str, text: &str) {
        self.write(&format!("{name}.new"), text);
        std::fs::rename(self.path(&format!("{name}.new")), self.path(name)).expect("rename");
    }

    fn arg(&self, flag: &str, name: &str) -> String {
        format!("--{flag}={}", self.path(name).display())
    }
}

/// etcdctl against `server` with the TLS flags given: exit status and `Error:` lines.
fn ctl(server: &TlsServer, tls: &[String], args: &[&str]) -> String {
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
    let server = TlsServer::start(
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
    let server = TlsServer::start(
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
/// `--peer-trusted-ca-file`, `--peer-cert-allowed-cn` and `--peer-crl-file`) form a cluster
/// and serve; a member added with a certificate from another CA cannot join (it cannot even
/// ask the peers for the cluster), nor can one with a certificate from the right CA whose
/// common name is not allowed, nor one whose certificate the CRL revokes; the cluster goes on
/// serving and logs whom it refused, and why.
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
    files.issue(&ca1, "intruder", "intruder");
    files.issue_with(&ca1, "peer", "revoked", serial(77));
    files.write("crl.pem", &ca1.crl(&[77]));
    let flags = [
        files.arg("peer-cert-file", "peer.pem"),
        files.arg("peer-key-file", "peer.key"),
        files.arg("peer-trusted-ca-file", "ca1.pem"),
        "--peer-client-cert-auth".to_string(),
        "--peer-cert-allowed-cn=peer,other-peer".to_string(),
        files.arg("peer-crl-file", "crl.pem"),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut cluster = common::Cluster::start(Kind::Keel, 3, &flags);
    let put = common::etcdctl(&cluster.members[0].endpoint, &["put", "k", "v"], None);
    assert!(put.status.success(), "{}", error_lines(&put));
    let get = common::etcdctl(&cluster.members[2].endpoint, &["get", "k"], None);
    assert_eq!(String::from_utf8_lossy(&get.stdout), "k\nv\n");

    // The stranger is added (a quorum must have been connected for 5 s first).
    let index = cluster.prepare("m3");
    let peer_url = cluster.members[index].peer_url.clone();
    let initial_cluster = add_member(&cluster, "m3", &peer_url);
    // Each stranger in turn takes the added member's place, with a fresh data dir.
    let strangers = [
        // It does not trust the members' certificates either, so it gives up first: the
        // members see the handshake end.
        ("other", "ca2.pem", "tls handshake eof"),
        (
            "intruder",
            "ca1.pem",
            "common name \"intruder\" is not one of the allowed CNs [\"peer\" \"other-peer\"]",
        ),
        ("revoked", "ca1.pem", "invalid peer certificate: Revoked"),
    ];
    for (name, ca, refusal) in strangers {
        let _ = std::fs::remove_dir_all(cluster.dir.path().join("m3"));
        let stranger = [
            files.arg("peer-cert-file", &format!("{name}.pem")),
            files.arg("peer-key-file", &format!("{name}.key")),
            files.arg("peer-trusted-ca-file", ca),
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
            (0..3).any(|i| cluster.members[i]
                .log()
                .lines()
                .any(|l| l.contains("rejected connection") && l.contains(refusal))),
            "{name}: {}",
            cluster.logs()
        );
    }
}

/// `etcdctl member add name --peer-urls=peer_url` through member 0, tried again while the
/// cluster refuses it as unhealthy (a quorum must have been connected for 5 s first); the
/// `ETCD_INITIAL_CLUSTER` it prints, for the new member's `--initial-cluster`.
fn add_member(cluster: &common::Cluster, name: &str, peer_url: &str) -> String {
    let peer_urls = format!("--peer-urls={peer_url}");
    let deadline = Instant::now() + READY_TIMEOUT * 2;
    let added = loop {
        let added = common::etcdctl(
            &cluster.members[0].endpoint,
            &["member", "add", name, &peer_urls],
            None,
        );
        if added.status.success() || !error_lines(&added).contains("unhealthy cluster") {
            break added;
        }
        assert!(Instant::now() < deadline, "{}", error_lines(&added));
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(added.status.success(), "{}", error_lines(&added));
    String::from_utf8_lossy(&added.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER="))
        .map(|v| v.trim_matches('"').to_string())
        .expect("ETCD_INITIAL_CLUSTER")
}

/// The peer TLS flags of `kind` for a certificate from `files` (`name.pem`, `name.key`,
/// `ca.pem`), with client certificates required of peers. etcd gets `--logger=zap`, 3.5's
/// default (3.4's capnslog words its messages differently).
fn peer_tls_flags(kind: Kind, files: &Files, name: &str) -> Vec<String> {
    let mut flags = vec![
        files.arg("peer-cert-file", &format!("{name}.pem")),
        files.arg("peer-key-file", &format!("{name}.key")),
        files.arg("peer-trusted-ca-file", "ca.pem"),
        "--peer-client-cert-auth".to_string(),
    ];
    if kind == Kind::Etcd {
        flags.push("--logger=zap".to_string());
    }
    flags
}

/// With a peer certificate but http peer URLs, etcd ignores the certificate (with a warning
/// for each http peer listener) and its members talk plaintext to one another; so does Keel.
/// Three members form a cluster and replicate, and their peer ports answer plain HTTP.
#[test]
fn http_peer_urls_ignore_the_peer_certificate_as_in_etcd() {
    for kind in [Kind::Keel, Kind::Etcd] {
        let files = Files {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        let ca = Authority::new("peer-ca");
        files.write("ca.pem", &ca.cert.pem());
        files.issue(&ca, "peer", "peer");
        let flags = peer_tls_flags(kind, &files, "peer");
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let cluster = common::Cluster::start_with_peer_scheme(kind, 3, "http", &flags);
        let put = common::etcdctl(&cluster.members[0].endpoint, &["put", "k", "v"], None);
        assert!(put.status.success(), "{kind:?}: {}", error_lines(&put));
        let get = common::etcdctl(&cluster.members[2].endpoint, &["get", "k"], None);
        assert_eq!(String::from_utf8_lossy(&get.stdout), "k\nv\n", "{kind:?}");
        for member in &cluster.members {
            let peer = member
                .peer_url
                .strip_prefix("http://")
                .expect("an http URL");
            // A TLS listener would not answer plain HTTP at all.
            let answer = http_get(peer, "/version");
            assert!(answer.is_ok(), "{kind:?}: {answer:?}");
            let log = member.log();
            for warning in [
                "scheme is HTTP while key and cert files are present; ignoring key and cert files",
                "scheme is HTTP while --peer-client-cert-auth is enabled; ignoring client cert \
                 auth for this URL",
            ] {
                assert!(log.contains(warning), "{kind:?}: {warning}\n{log}");
            }
        }
    }
}

/// The SANs of a certificate for a member on both loopback addresses.
fn both_loopbacks(params: &mut CertificateParams) {
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("::1".parse().expect("::1")));
}

/// Makes a certificate's only subject alternative name `ip`.
fn only_ip(ip: &'static str) -> impl FnOnce(&mut CertificateParams) {
    move |params| {
        params.subject_alt_names = vec![rcgen::SanType::IpAddress(ip.parse().expect("an IP"))]
    }
}

/// etcd's peer listener refuses a peer whose certificate has subject alternative names none of
/// which is the address it connects from (etcd 3.4.23 and 3.5 alike), unless
/// `--experimental-peer-skip-client-san-verification`. A member is added at an IPv6 loopback
/// peer URL, so that its certificate can be valid for the URL it serves (`::1`) and still not
/// name the address it connects to the others from (127.0.0.1): it cannot even ask them for
/// the cluster, and they log why. With 127.0.0.1 in its certificate too it joins; so does the
/// first one once the members skip the check.
#[test]
fn peer_certificates_must_name_the_address_they_connect_from_as_in_etcd() {
    for kind in [Kind::Keel, Kind::Etcd] {
        let files = Files {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        let ca = Authority::new("peer-ca");
        files.write("ca.pem", &ca.cert.pem());
        files.issue_with(&ca, "peer", "peer", both_loopbacks);
        files.issue_with(&ca, "peer", "v6", only_ip("::1"));
        files.issue_with(&ca, "peer", "both", |params| {
            only_ip("::1")(params);
            params
                .subject_alt_names
                .push(rcgen::SanType::IpAddress("127.0.0.1".parse().expect("IP")));
        });
        let member_flags = peer_tls_flags(kind, &files, "peer");
        for skip in [false, true] {
            let mut flags = member_flags.clone();
            if skip {
                flags.push("--experimental-peer-skip-client-san-verification".to_string());
            }
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            let mut cluster = common::Cluster::start(kind, 2, &flags);
            let index = cluster.prepare("m2");
            let port = cluster.members[index]
                .peer_url
                .rsplit(':')
                .next()
                .expect("a port")
                .to_string();
            let url = format!("https://[::1]:{port}");
            let initial_cluster = add_member(&cluster, "m2", &url);
            let joiner = |name: &str| {
                vec![
                    files.arg("peer-cert-file", &format!("{name}.pem")),
                    files.arg("peer-key-file", &format!("{name}.key")),
                    format!("--listen-peer-urls={url}"),
                    format!("--initial-advertise-peer-urls={url}"),
                ]
            };
            let join = |cluster: &mut common::Cluster, name: &str| {
                let _ = std::fs::remove_dir_all(cluster.dir.path().join("m2"));
                let flags = joiner(name);
                let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
                cluster.join(index, &initial_cluster, &flags);
            };
            if !skip {
                join(&mut cluster, "v6");
                let status = cluster.wait_exit(index, READY_TIMEOUT);
                assert_eq!(
                    status.and_then(|s| s.code()),
                    Some(1),
                    "{kind:?}: {}",
                    cluster.logs()
                );
                assert!(
                    cluster.members[index]
                        .log()
                        .contains("cannot fetch cluster info from peer urls"),
                    "{kind:?}: {}",
                    cluster.logs()
                );
                assert!(
                    (0..2).any(|i| cluster.members[i]
                        .log()
                        .lines()
                        .any(|l| l.contains("rejected connection")
                            && l.contains("x509: certificate is valid for ::1, not 127.0.0.1"))),
                    "{kind:?}: {}",
                    cluster.logs()
                );
                join(&mut cluster, "both");
            } else {
                join(&mut cluster, "v6");
            }
            cluster.wait_healthy(index);
            let put = common::etcdctl(&cluster.members[index].endpoint, &["put", "k", "v"], None);
            assert!(put.status.success(), "{kind:?}: {}", error_lines(&put));
            let get = common::etcdctl(&cluster.members[0].endpoint, &["get", "k"], None);
            assert_eq!(String::from_utf8_lossy(&get.stdout), "k\nv\n", "{kind:?}");
        }
    }
}

/// Certificates a revocation list names, and expired ones, refused by `kind`: what each step
/// gave. The CRL is replaced on disk while the server runs; etcd reads it at every handshake,
/// Keel when it changes, so both see the new list at the next connection.
fn revocation_session(kind: Kind) -> Vec<String> {
    let files = Files {
        dir: tempfile::tempdir().expect("temp dir"),
    };
    let ca = Authority::new("ca");
    files.write("ca.pem", &ca.cert.pem());
    files.issue(&ca, "server", "server");
    files.issue_with(&ca, "good", "good", serial(1001));
    files.issue_with(&ca, "revoked", "revoked", serial(1002));
    files.issue_with(&ca, "good", "expired", |p| {
        serial(1003)(p);
        expired(p);
    });
    files.write("crl.pem", &ca.crl(&[1002]));
    let server = TlsServer::start(
        kind,
        files.dir.path(),
        &[
            files.arg("cert-file", "server.pem"),
            files.arg("key-file", "server.key"),
            "--client-cert-auth".to_string(),
            files.arg("trusted-ca-file", "ca.pem"),
            files.arg("client-crl-file", "crl.pem"),
        ],
    );
    let as_cert = |name: &str| {
        vec![
            files.arg("cacert", "ca.pem"),
            files.arg("cert", &format!("{name}.pem")),
            files.arg("key", &format!("{name}.key")),
        ]
    };
    let mut out = vec![
        ctl(&server, &as_cert("good"), &["put", "k", "v"]),
        ctl(&server, &as_cert("revoked"), &["get", "k"]),
        ctl(&server, &as_cert("expired"), &["get", "k"]),
    ];
    // The good certificate revoked too, then nothing revoked any more.
    files.replace("crl.pem", &ca.crl(&[1002, 1001]));
    out.push(ctl(&server, &as_cert("good"), &["get", "k"]));
    files.replace("crl.pem", &ca.crl(&[]));
    out.push(ctl(&server, &as_cert("revoked"), &["get", "k"]));
    out.push(ctl(&server, &as_cert("good"), &["get", "k"]));
    if kind == Kind::Keel {
        // Keel says why it refused each (etcd 3.4 logs a closed connection).
        let log = std::fs::read_to_string(&server.log).unwrap_or_default();
        for reason in [
            "invalid peer certificate: Revoked",
            "invalid peer certificate: certificate expired",
        ] {
            assert!(
                log.lines()
                    .any(|l| l.contains("rejected connection") && l.contains(reason)),
                "{reason}: {log}"
            );
        }
    }
    out
}

/// A revoked and an expired client certificate are refused by Keel and etcd 3.4.23 alike,
/// and a CRL replaced on disk counts from the next connection on.
#[test]
fn revoked_and_expired_client_certificates_are_refused_as_in_etcd() {
    let etcd = revocation_session(Kind::Etcd);
    let keel = revocation_session(Kind::Keel);
    assert_eq!(keel, etcd);
    let ok: Vec<bool> = keel.iter().map(|s| s.contains("exit Some(0)")).collect();
    assert_eq!(ok, [true, false, false, false, true, true], "{keel:#?}");
}

/// One TLS handshake with a rustls client offering only `versions` and, if given, only
/// `suite`: the version and suite agreed, or why the handshake failed.
fn handshake(
    endpoint: &str,
    ca_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    suite: Option<rustls::CipherSuite>,
) -> String {
    use rustls::pki_types::pem::PemObject;
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(suite) = suite {
        provider.cipher_suites.retain(|s| s.suite() == suite);
    }
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA"))
        .expect("root");
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider))
        .with_protocol_versions(versions)
        .expect("client versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut connection =
        rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("connection");
    let mut socket = std::net::TcpStream::connect(endpoint).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    while connection.is_handshaking() {
        if let Err(error) = connection.complete_io(&mut socket) {
            return format!("refused: {error}");
        }
    }
    format!(
        "{:?} {:?}",
        connection.protocol_version().expect("version"),
        connection.negotiated_cipher_suite().expect("suite").suite()
    )
}

/// What clients offering one cipher suite each get from `kind` with `--cipher-suites`.
fn cipher_session(kind: Kind) -> Vec<String> {
    use rustls::version::{TLS12, TLS13};
    use rustls::CipherSuite as S;
    let files = Files {
        dir: tempfile::tempdir().expect("temp dir"),
    };
    let ca = Authority::new("ca");
    files.write("ca.pem", &ca.cert.pem());
    files.issue(&ca, "server", "server");
    let server = TlsServer::start(
        kind,
        files.dir.path(),
        &[
            files.arg("cert-file", "server.pem"),
            files.arg("key-file", "server.key"),
            "--cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,\
             TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
                .to_string(),
        ],
    );
    let ca_pem = ca.cert.pem();
    let try_suite = |versions: &[&'static rustls::SupportedProtocolVersion], suite| {
        handshake(&server.endpoint, &ca_pem, versions, suite)
    };
    vec![
        try_suite(&[&TLS12], Some(S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)),
        try_suite(
            &[&TLS12],
            Some(S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
        ),
        try_suite(&[&TLS12], Some(S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)),
        // TLS 1.3 suites are not restricted (Go cannot restrict them).
        try_suite(&[&TLS13], Some(S::TLS13_CHACHA20_POLY1305_SHA256)),
        // etcdctl still connects.
        ctl(
            &server,
            &[files.arg("cacert", "ca.pem")],
            &["put", "k", "v"],
        ),
    ]
}

/// `--cipher-suites` restricts TLS 1.2 as in etcd 3.4.23: a client that offers only a suite
/// left out is refused, one that offers an allowed suite gets it, and TLS 1.3 is untouched.
#[test]
fn cipher_suites_restrict_tls12_as_in_etcd() {
    let etcd = cipher_session(Kind::Etcd);
    let keel = cipher_session(Kind::Keel);
    assert_eq!(
        keel[0], "TLSv1_2 TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "{keel:#?}"
    );
    assert!(keel[1].starts_with("refused") && keel[2].starts_with("refused"));
    assert_eq!(
        keel[3], "TLSv1_3 TLS13_CHACHA20_POLY1305_SHA256",
        "{keel:#?}"
    );
    assert!(keel[4].contains("exit Some(0)"), "{keel:#?}");
    assert_eq!(keel, etcd);
}

/// Both servers refuse to start with a cipher suite name Go does not know; Keel also refuses
/// cipher suites when only TLS 1.3 is allowed (as etcd 3.5 does), and a name Go knows but
/// rustls does not implement, naming it.
#[test]
fn tls_flag_errors_stop_the_start_as_in_etcd() {
    let run = |kind: Kind, flags: &[&str]| {
        let dir = tempfile::tempdir().expect("temp dir");
        let (client, peer) = (free_port(), free_port());
        let mut command = Command::new(kind.binary());
        command
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!("--initial-cluster=default=http://127.0.0.1:{peer}"))
            .args(flags)
            .stdin(Stdio::null());
        for (key, _) in std::env::vars() {
            if key.starts_with("ETCD_") {
                command.env_remove(key);
            }
        }
        let output = command.output().expect("run the server");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let flags = ["--cipher-suites=TLS_FOO"];
    let message = "unexpected TLS cipher suite \"TLS_FOO\"";
    let (code, stderr) = run(Kind::Etcd, &flags);
    assert_eq!(code, Some(1), "etcd: {stderr}");
    assert!(stderr.contains(message), "etcd: {stderr}");
    let (code, stderr) = run(Kind::Keel, &flags);
    assert_eq!(code, Some(1), "keel: {stderr}");
    assert!(stderr.contains(message), "keel: {stderr}");
    // etcd 3.4 has no --tls-min-version; etcd 3.5 refuses cipher suites with TLS 1.3 as the
    // minimum in its configuration check (server/embed/config.go, Validate), exit status 1.
    let (code, stderr) = run(
        Kind::Keel,
        &[
            "--tls-min-version=TLS1.3",
            "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("cipher suites cannot be configured when only TLS1.3 is enabled"),
        "{stderr}"
    );
    let (code, stderr) = run(
        Kind::Keel,
        &["--cipher-suites=TLS_RSA_WITH_AES_128_CBC_SHA"],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr
            .contains("TLS cipher suite \"TLS_RSA_WITH_AES_128_CBC_SHA\" is not supported by keel"),
        "{stderr}"
    );
}

/// etcdctl against a server with `--auto-tls`: what each step gave. The generated pair lives
/// under `<data-dir>/fixtures/client`.
fn auto_tls_session(kind: Kind) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TlsServer::start(kind, dir.path(), &["--auto-tls".to_string()]);
    let skip_verify = [
        "--insecure-transport=false".to_string(),
        "--insecure-skip-tls-verify".to_string(),
    ];
    let fixtures = dir.path().join(format!("{kind:?}.data/fixtures/client"));
    let key_mode = std::fs::metadata(fixtures.join("key.pem"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    vec![
        ctl(&server, &skip_verify, &["put", "k", "v"]),
        ctl(&server, &skip_verify, &["get", "k"]),
        // Without skipping verification the self-signed certificate is not trusted.
        ctl(
            &server,
            &["--insecure-transport=false".to_string()],
            &["get", "k"],
        ),
        format!(
            "cert.pem: {}, key.pem mode: {:o}",
            fixtures.join("cert.pem").exists(),
            key_mode.unwrap_or(0)
        ),
    ]
}

/// `--auto-tls` serves etcdctl with `--insecure-skip-tls-verify`, as etcd 3.4.23 does.
#[test]
fn auto_tls_serves_etcdctl_as_etcd_does() {
    let etcd = auto_tls_session(Kind::Etcd);
    let keel = auto_tls_session(Kind::Keel);
    assert_eq!(keel, etcd);
    let ok: Vec<bool> = keel.iter().map(|s| s.contains("exit Some(0)")).collect();
    assert_eq!(ok, [true, true, false, false], "{keel:#?}");
    assert_eq!(keel[3], "cert.pem: true, key.pem mode: 600");
}

/// Three members with `--peer-auto-tls` and https peer URLs, no certificate files: each makes
/// its own self-signed pair, none verifies the others' (as in etcd), and they form a cluster.
#[test]
fn peers_with_auto_tls_form_a_cluster() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let initial_cluster = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("m{i}=https://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    struct Members(Vec<Child>);
    impl Drop for Members {
        fn drop(&mut self) {
            for child in &mut self.0 {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    let mut members = Members(Vec::new());
    for (i, (client, peer)) in ports.iter().enumerate() {
        let log = std::fs::File::create(dir.path().join(format!("m{i}.log"))).expect("log");
        let mut command = Command::new(Kind::Keel.binary());
        command
            .arg(format!("--name=m{i}"))
            .arg(format!(
                "--data-dir={}",
                dir.path().join(format!("m{i}")).display()
            ))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--listen-peer-urls=https://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=https://127.0.0.1:{peer}"
            ))
            .arg(format!("--initial-cluster={initial_cluster}"))
            .arg("--initial-cluster-token=auto-tls-cluster")
            .arg("--peer-auto-tls")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        for (key, _) in std::env::vars() {
            if key.starts_with("ETCD_") {
                command.env_remove(key);
            }
        }
        members.0.push(command.spawn().expect("spawn keel"));
    }
    let logs = || {
        (0..3)
            .map(|i| {
                let log = std::fs::read_to_string(dir.path().join(format!("m{i}.log")));
                format!("==== m{i} ====\n{}", log.unwrap_or_default())
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    for (i, (client, _)) in ports.iter().enumerate() {
        let endpoint = format!("127.0.0.1:{client}");
        while !matches!(http_get(&endpoint, "/health"), Ok((200, _))) {
            let exited = members.0[i].try_wait().ok().flatten();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "m{i} did not become healthy:\n{}",
                logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let put = common::etcdctl(
        &format!("127.0.0.1:{}", ports[0].0),
        &["put", "k", "v"],
        None,
    );
    assert!(put.status.success(), "{}", error_lines(&put));
    let get = common::etcdctl(&format!("127.0.0.1:{}", ports[2].0), &["get", "k"], None);
    assert_eq!(String::from_utf8_lossy(&get.stdout), "k\nv\n");
    for i in 0..3 {
        let fixtures = dir.path().join(format!("m{i}/fixtures/peer"));
        assert!(
            fixtures.join("cert.pem").exists() && fixtures.join("key.pem").exists(),
            "m{i}"
        );
    }
}

/// A client that opens a TCP connection to the TLS port and never finishes the handshake
/// (sends nothing, or half a ClientHello) is disconnected by the server after its handshake
/// timeout (10 s), so it cannot hold a connection slot forever.
#[test]
fn a_tls_handshake_that_never_finishes_is_closed() {
    use std::io::{Read, Write};
    let files = Files {
        dir: tempfile::tempdir().expect("temp dir"),
    };
    let ca = Authority::new("ca");
    files.write("ca.pem", &ca.cert.pem());
    files.issue(&ca, "server", "server");
    let server = TlsServer::start(
        Kind::Keel,
        files.dir.path(),
        &[
            files.arg("cert-file", "server.pem"),
            files.arg("key-file", "server.key"),
        ],
    );
    let silent = std::net::TcpStream::connect(&server.endpoint).expect("connect");
    let mut partial = std::net::TcpStream::connect(&server.endpoint).expect("connect");
    // A handshake record header announcing 512 bytes, and the first few of them.
    partial
        .write_all(&[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ])
        .expect("write");
    // Generous: the server's timeout is 10 s.
    let deadline = Duration::from_secs(60);
    for (name, mut stream) in [("silent", silent), ("partial", partial)] {
        stream.set_read_timeout(Some(deadline)).expect("timeout");
        let mut buffer = [0u8; 64];
        let closed = loop {
            match stream.read(&mut buffer) {
                Ok(0) => break true,
                // A TLS alert may come before the close.
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(e) => panic!("{name}: the server did not close the connection: {e}"),
            }
        };
        assert!(closed, "{name}");
    }
    // The server still serves.
    let get = ctl(
        &server,
        &[files.arg("cacert", "ca.pem")],
        &["put", "k", "v"],
    );
    assert!(get.contains("exit Some(0)"), "{get}");
}

/// `--trusted-ca-file` without `--client-cert-auth`: etcd still asks every client for a
/// certificate signed by that CA (its TLS listener requires one whenever a CA file is given);
/// so does Keel. What each step gave.
fn trusted_ca_session(kind: Kind) -> Vec<String> {
    let files = Files {
        dir: tempfile::tempdir().expect("temp dir"),
    };
    let ca = Authority::new("ca");
    files.write("ca.pem", &ca.cert.pem());
    files.issue(&ca, "server", "server");
    files.issue(&ca, "client", "client");
    let server = TlsServer::start(
        kind,
        files.dir.path(),
        &[
            files.arg("cert-file", "server.pem"),
            files.arg("key-file", "server.key"),
            files.arg("trusted-ca-file", "ca.pem"),
        ],
    );
    let ca_only = vec![files.arg("cacert", "ca.pem")];
    let mut with_cert = ca_only.clone();
    with_cert.push(files.arg("cert", "client.pem"));
    with_cert.push(files.arg("key", "client.key"));
    vec![
        ctl(&server, &ca_only, &["put", "k", "v"]),
        ctl(&server, &with_cert, &["put", "k", "v"]),
    ]
}

#[test]
fn a_trusted_ca_alone_requires_client_certificates_as_in_etcd() {
    let etcd = trusted_ca_session(Kind::Etcd);
    let keel = trusted_ca_session(Kind::Keel);
    assert_eq!(keel, etcd);
    let ok: Vec<bool> = keel.iter().map(|s| s.contains("exit Some(0)")).collect();
    assert_eq!(ok, [false, true], "{keel:#?}");
}
