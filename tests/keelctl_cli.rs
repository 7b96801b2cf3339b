//! keelctl's command-line edges against etcdctl's, shared by every command: cobra's and
//! pflag's errors (unknown flags and commands with their suggestions, bad and missing flag
//! values), the usage text on stdout, help, command prefixes, `completion`; the `ETCDCTL_*`
//! variables; and the connections: several endpoints, TLS (CA, client certificates,
//! `--insecure-skip-tls-verify`, https endpoints, wrong CAs), unreachable endpoints, users
//! and passwords, `--discovery-srv`. Each step runs etcdctl 3.4.23 and keelctl, against etcd
//! 3.4.23 and against Keel, and compares stdout, the `Error:` lines and the exit code.
//!
//! keelctl is etcdctl 3.5, named keelctl: etcdctl's outputs are compared with `etcdctl`
//! renamed. Where 3.5 differs from 3.4.23 a step says how.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::ctl::{Quad, Seen, Tool};
use common::{normalize, DeadPort, Kind, TlsServer};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

/// Runs `tool` with exactly `args` (no endpoint or timeouts added), the environment's
/// `ETCDCTL_*` variables replaced by `env`, and `stdin` if given.
fn run(tool: Tool, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut command = Command::new(tool.binary());
    for (key, _) in std::env::vars() {
        if key.starts_with("ETCDCTL_") {
            command.env_remove(key);
        }
    }
    command.env("ETCDCTL_API", "3");
    for (key, value) in env {
        command.env(key, value);
    }
    command
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", tool.binary().display()));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("wait for the tool")
}

/// etcdctl's results as keelctl's: the program's name.
fn renamed(seen: Seen) -> Seen {
    Seen {
        stdout: seen.stdout.replace("etcdctl", "keelctl"),
        errors: seen.errors.replace("etcdctl", "keelctl"),
        code: seen.code,
    }
}

/// etcdctl 3.5's `get` has `--count-only` (3.4.23's has not): one more line in its usage.
fn with_count_only(seen: Seen) -> Seen {
    Seen {
        stdout: seen.stdout.replace(
            "      --from-key[=false]",
            "      --count-only[=false]\t\tGet only the count\n      --from-key[=false]",
        ),
        ..seen
    }
}

/// The two tools, no server involved: keelctl's results must equal `to_35` of etcdctl's
/// (renamed).
fn same_offline(args: &[&str], env: &[(&str, &str)], to_35: impl Fn(Seen) -> Seen) -> Seen {
    let etcdctl = run(Tool::Etcdctl, args, env, None);
    let keelctl = run(Tool::Keelctl, args, env, None);
    let expected = to_35(renamed(Seen::of(&etcdctl)));
    let seen = Seen::of(&keelctl);
    assert_eq!(
        seen,
        expected,
        "{args:?}\netcdctl stderr: {}\nkeelctl stderr: {}",
        String::from_utf8_lossy(&etcdctl.stderr),
        String::from_utf8_lossy(&keelctl.stderr)
    );
    seen
}

/// The usage text without its COMMANDS block (etcdctl 3.4.23 lists commands keelctl does
/// not have yet, and Debian's build lists `completion bash` etc.).
fn without_commands(text: &str) -> String {
    let mut out = Vec::new();
    let mut skipping = false;
    for line in text.lines() {
        if line == "COMMANDS:" {
            skipping = true;
            continue;
        }
        if skipping && line.is_empty() {
            skipping = false;
        }
        if !skipping {
            out.push(line);
        }
    }
    out.join("\n")
}

#[test]
fn flag_and_command_errors_match_etcdctl() {
    // Help and usage on stdout, exit 0.
    let seen = same_offline(&["get", "--help"], &[], with_count_only);
    assert!(
        seen.stdout.starts_with("NAME:\n\tget - Gets the key"),
        "{}",
        seen.stdout
    );
    same_offline(&["put", "-h"], &[], |s| s);
    same_offline(&["help", "get"], &[], with_count_only);
    same_offline(&["help", "pu"], &[], |s| s);
    // etcdctl 3.5's del has --range (3.4.23's has not).
    same_offline(&["del", "--help=true"], &[], |seen| Seen {
        stdout: seen.stdout.replace(
            "\treturn deleted key-value pairs\n",
            "\treturn deleted key-value pairs\n      --range[=false]\t\tdelete range of keys\n",
        ),
        ..seen
    });
    // Unknown, malformed and incomplete flags: the error, the usage on stdout, the error
    // again, exit 1.
    for args in [
        &["get", "--count-onl", "k"][..],
        &["get", "-x", "k"],
        &["get", "-kx"],
        &["get", "k", "--limit"],
        &["get", "k", "--limit=abc"],
        &["get", "k", "--limit", "99999999999999999999"],
        &["get", "k", "--prefix=maybe"],
        &["get", "k", "---prefix"],
        &["put", "k", "v", "--prev-kv=2"],
        &["--dial-timeout=soon", "get", "k"],
        &["--dial-timeout=5", "get", "k"],
        &["--hex=yes", "get", "k"],
        &["get", "k", "-w"],
    ] {
        let seen = same_offline(args, &[], with_count_only);
        assert_eq!(seen.code, 1, "{args:?}");
        assert!(
            seen.stdout.starts_with("NAME:\n"),
            "{args:?}: {}",
            seen.stdout
        );
        let lines: Vec<&str> = seen.errors.lines().collect();
        assert!(
            lines.len() == 2 && lines[0] == lines[1],
            "{args:?}: {lines:?}"
        );
    }
    // The root command: no arguments shows the usage; an unknown flag fails with it.
    for (args, code) in [(&[][..], 0), (&["--version"][..], 1), (&["-w"][..], 1)] {
        let etcdctl = renamed(Seen::of(&run(Tool::Etcdctl, args, &[], None)));
        let keelctl = Seen::of(&run(Tool::Keelctl, args, &[], None));
        assert_eq!(
            (keelctl.code, keelctl.errors.as_str()),
            (etcdctl.code, etcdctl.errors.as_str()),
            "{args:?}"
        );
        assert_eq!(keelctl.code, code);
        assert_eq!(
            without_commands(&keelctl.stdout),
            without_commands(&etcdctl.stdout),
            "{args:?}"
        );
        assert!(keelctl
            .stdout
            .contains("\tget\t\t\tGets the key or a range of keys\n"));
        assert!(keelctl
            .stdout
            .contains("\thelp\t\t\tHelp about any command\n"));
    }
    // Unknown commands, with cobra's suggestions; no usage.
    for args in [&["gett", "k"][..], &["foo"], &["pu-t"], &["Get"]] {
        let seen = same_offline(args, &[], |s| s);
        assert_eq!((seen.code, seen.stdout.as_str()), (1, ""), "{args:?}");
        assert!(
            seen.errors.starts_with("Error: unknown command"),
            "{}",
            seen.errors
        );
    }
    // The suggestions follow each error line (stderr compared whole).
    for (word, suggestion) in [("gett", "get"), ("pu-t", "put"), ("Get", "get")] {
        let etcdctl = run(Tool::Etcdctl, &[word], &[], None);
        let keelctl = run(Tool::Keelctl, &[word], &[], None);
        let expected = String::from_utf8_lossy(&etcdctl.stderr).replace("etcdctl", "keelctl");
        assert_eq!(String::from_utf8_lossy(&keelctl.stderr), expected);
        assert!(
            expected.contains(&format!("\n\nDid you mean this?\n\t{suggestion}\n")),
            "{expected}"
        );
    }
    // An unknown help topic: a notice on stderr, the root usage, exit 0.
    let etcdctl = run(Tool::Etcdctl, &["help", "nothing"], &[], None);
    let keelctl = run(Tool::Keelctl, &["help", "nothing"], &[], None);
    assert_eq!(keelctl.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&keelctl.stderr),
        String::from_utf8_lossy(&etcdctl.stderr)
    );
    assert_eq!(
        without_commands(&normalize(&String::from_utf8_lossy(&keelctl.stdout))),
        without_commands(&renamed(Seen::of(&etcdctl)).stdout)
    );
    // A command group alone shows its usage (exit 0).
    let seen = Seen::of(&run(Tool::Keelctl, &["snapshot"], &[], None));
    assert_eq!(seen.code, 0);
    assert!(
        seen.stdout
            .starts_with("NAME:\n\tsnapshot - Manages etcd node snapshots\n\nUSAGE:\n\tkeelctl snapshot <subcommand> [flags]\n"),
        "{}",
        seen.stdout
    );
    // etcdctl 3.5 refuses ETCDCTL_API values other than 2 and 3 with "unsupported API
    // version: <v>" (3.4.23 printed no colon).
    let etcdctl = run(Tool::Etcdctl, &["get", "k"], &[("ETCDCTL_API", "4")], None);
    let keelctl = run(Tool::Keelctl, &["get", "k"], &[("ETCDCTL_API", "4")], None);
    assert_eq!(keelctl.status.code(), etcdctl.status.code());
    assert_eq!(
        String::from_utf8_lossy(&keelctl.stderr),
        String::from_utf8_lossy(&etcdctl.stderr).replace("version 4", "version: 4")
    );
}

/// `completion` is etcdctl 3.6's (3.5 has none; Debian's 3.4.23 has cobra's newer form with
/// one subcommand per shell): a script per shell, cobra's argument errors otherwise.
#[test]
fn completion_scripts() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = run(Tool::Keelctl, &["completion", shell], &[], None);
        let seen = Seen::of(&out);
        assert_eq!(seen.code, 0, "{shell}: {out:?}");
        assert!(seen.stdout.contains("keelctl"), "{shell}");
        assert!(
            seen.stdout.contains("member") || seen.stdout.contains("get"),
            "{shell}"
        );
    }
    for (args, error) in [
        (&["completion"][..], "Error: accepts 1 arg(s), received 0"),
        (
            &["completion", "tcsh"],
            "Error: invalid argument \"tcsh\" for \"keelctl completion\"",
        ),
        (
            &["completion", "bash", "zsh"],
            "Error: accepts 1 arg(s), received 2",
        ),
    ] {
        let seen = Seen::of(&run(Tool::Keelctl, args, &[], None));
        assert_eq!(seen.code, 1, "{args:?}");
        assert_eq!(seen.errors, format!("{error}\n{error}"), "{args:?}");
        assert!(seen
            .stdout
            .contains("\tkeelctl completion [bash|zsh|fish|powershell]\n"));
    }
}

#[test]
fn prefixes_and_flag_syntax_as_etcdctl() {
    let quad = Quad::start(&[]);
    quad.check(&["pu", "foo", "bar"], None);
    quad.check(&["ge", "foo"], None);
    // Go's integer syntax (base prefixes: 0x10 is 16, 010 is 8).
    quad.check(&["put", "n", "1"], None);
    quad.check(&["get", "foo", "--rev=0x2"], None);
    quad.check(&["get", "foo", "--rev=010"], None);
    quad.check(&["get", "foo", "--limit", "0b1", "--prefix=true"], None);
    // Shorthand forms, repeated flags (the last wins), bools with values.
    quad.check(&["-wjson", "get", "foo"], None);
    quad.check(&["-w=fields", "get", "foo", "-w", "json"], None);
    quad.check(&["--hex=false", "get", "foo", "--prefix=false"], None);
    quad.check(&["get", "--keys-only", "foo", "--hex"], None);
    // "--" ends the flags: keys and values that start with '-'.
    quad.check(&["put", "--", "-k", "-v"], None);
    quad.check(&["get", "--", "-k"], None);
    // An unknown -w is refused when the client is made (exit 4), after the arguments are
    // checked (exit 128).
    quad.check(&["-w", "yaml", "get", "foo"], None);
    quad.check(&["-w", "yaml", "get"], None);
    // An empty --cert/--key/--cacert is refused (exit 128); files that cannot be read or
    // parsed too.
    quad.check(&["--cert=", "get", "foo"], None);
    quad.check(&["--key", "", "get", "foo"], None);
    quad.check(&["--cacert=", "get", "foo"], None);
    quad.check(&["--cacert=/nonexistent/ca.pem", "get", "foo"], None);
    quad.check(&["--cert=/nonexistent/c.pem", "get", "foo"], None);
    quad.check(
        &[
            "--cert=/nonexistent/c.pem",
            "--key=/nonexistent/k.pem",
            "get",
            "foo",
        ],
        None,
    );
    // Endpoints are trimmed and tried in turn: the first one is down.
    quad.check(
        &["--endpoints= 127.0.0.1:1 ,{endpoint}", "get", "foo"],
        None,
    );
}

/// `ETCDCTL_*` variables: each global flag's, applied when the command makes its client.
#[test]
fn environment_variables_as_etcdctl() {
    let etcd = common::Server::start(Kind::Etcd, &[]);
    let keel = common::Server::start(Kind::Keel, &[]);
    for server in [&etcd, &keel] {
        let ep = format!("--endpoints={}", server.endpoint);
        let out = run(Tool::Etcdctl, &[&ep, "put", "foo", "bar"], &[], None);
        assert!(out.status.success(), "{out:?}");
    }
    let check = |args: &[&str], env: &[(&str, &str)]| -> Vec<(Seen, Output)> {
        let mut results = Vec::new();
        for server in [&etcd, &keel] {
            let endpoint = server.endpoint.clone();
            let mut env = env.to_vec();
            if !env.iter().any(|(k, _)| *k == "ETCDCTL_ENDPOINTS") {
                env.push(("ETCDCTL_ENDPOINTS", &endpoint));
            }
            let etcdctl = run(Tool::Etcdctl, args, &env, None);
            let keelctl = run(Tool::Keelctl, args, &env, None);
            let expected = renamed(Seen::of(&etcdctl));
            assert_eq!(
                Seen::of(&keelctl),
                expected,
                "{args:?} {env:?}\netcdctl: {}\nkeelctl: {}",
                String::from_utf8_lossy(&etcdctl.stderr),
                String::from_utf8_lossy(&keelctl.stderr)
            );
            results.push((expected, keelctl));
        }
        results
    };
    check(&["get", "foo"], &[]);
    check(&["get", "foo"], &[("ETCDCTL_WRITE_OUT", "json")]);
    check(&["get", "foo"], &[("ETCDCTL_HEX", "true")]);
    // A value that does not parse is ignored (the flag keeps Go's zero value: no dial
    // timeout here).
    check(&["get", "foo"], &[("ETCDCTL_DIAL_TIMEOUT", "soon")]);
    // The commands start their timeout before they read the environment, so
    // ETCDCTL_COMMAND_TIMEOUT has no effect on get.
    check(&["get", "foo"], &[("ETCDCTL_COMMAND_TIMEOUT", "1ns")]);
    // ETCDCTL_INSECURE_TRANSPORT that does not parse leaves false: TLS to a plain server.
    check(
        &["--command-timeout=2s", "get", "foo"],
        &[("ETCDCTL_INSECURE_TRANSPORT", "maybe")],
    );
    check(&["get", "foo"], &[("ETCDCTL_WRITE_OUT", "yaml")]);
    // Unknown variables, and empty ones, are warned about (3.5: a zap JSON line; 3.4.23: a
    // capnslog line) and the command runs.
    for (_, keelctl) in check(
        &["get", "foo"],
        &[("ETCDCTL_FOO", "bar"), ("ETCDCTL_HEX", "")],
    ) {
        let stderr = String::from_utf8_lossy(&keelctl.stderr);
        for variable in ["ETCDCTL_FOO=bar", "ETCDCTL_HEX="] {
            assert!(
                stderr.contains("\"level\":\"warn\",\"ts\":\"20") && stderr.contains(&format!(
                    "\"msg\":\"unrecognized environment variable\",\"environment-variable\":\"{variable}\"}}"
                )),
                "{stderr}"
            );
        }
    }
    // A flag given both ways is fatal (exit 1): 3.5 logs a zap fatal line (its message has
    // a doubled parenthesis), 3.4.23 a capnslog one.
    for server in [&etcd, &keel] {
        let ep = format!("--endpoints={}", server.endpoint);
        for args in [&[&ep[..], "get", "foo"][..], &["--hex", "get", "foo"]] {
            let env = [
                ("ETCDCTL_ENDPOINTS", server.endpoint.as_str()),
                ("ETCDCTL_HEX", "true"),
            ];
            let etcdctl = run(Tool::Etcdctl, args, &env, None);
            let keelctl = run(Tool::Keelctl, args, &env, None);
            assert_eq!(Seen::of(&keelctl), renamed(Seen::of(&etcdctl)), "{args:?}");
            assert_eq!(keelctl.status.code(), Some(1));
            let etcd_stderr = String::from_utf8_lossy(&etcdctl.stderr);
            let stderr = String::from_utf8_lossy(&keelctl.stderr);
            let variable = if args[0] == "--hex" {
                "ETCDCTL_HEX"
            } else {
                "ETCDCTL_ENDPOINTS"
            };
            assert!(
                etcd_stderr.contains(&format!("conflicting environment variable \"{variable}\""))
            );
            assert!(
                stderr.starts_with("{\"level\":\"fatal\",\"ts\":\"20")
                    && stderr.contains("\"msg\":\"conflicting environment variable is shadowed by corresponding command-line flag (either unset environment variable or disable flag))\"")
                    && stderr.contains(&format!("\"environment-variable\":\"{variable}\"")),
                "{stderr}"
            );
        }
    }
    // --debug prints every global flag as its variable, values from the environment
    // included.
    for (expected, keelctl) in check(
        &["--debug", "--hex", "get", "foo"],
        &[("ETCDCTL_DIAL_TIMEOUT", "3s")],
    ) {
        assert_eq!(expected.code, 0);
        let etcdctl_lines = {
            let etcdctl = run(
                Tool::Etcdctl,
                &["--debug", "--hex", "get", "foo"],
                &[
                    ("ETCDCTL_DIAL_TIMEOUT", "3s"),
                    ("ETCDCTL_ENDPOINTS", &etcd.endpoint),
                ],
                None,
            );
            debug_lines(&etcdctl)
        };
        let keelctl_lines = debug_lines(&keelctl);
        assert_eq!(keelctl_lines.len(), 18, "{keelctl_lines:?}");
        assert!(keelctl_lines.contains(&"ETCDCTL_DIAL_TIMEOUT=3s".to_string()));
        assert!(keelctl_lines.contains(&"ETCDCTL_HEX=true".to_string()));
        // The endpoint differs between the two servers.
        let mask = |lines: Vec<String>| -> Vec<String> {
            lines
                .into_iter()
                .filter(|l| !l.starts_with("ETCDCTL_ENDPOINTS="))
                .collect()
        };
        assert_eq!(mask(keelctl_lines), mask(etcdctl_lines));
    }
}

/// The `ETCDCTL_*=` lines of stderr.
fn debug_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| l.starts_with("ETCDCTL_"))
        .map(str::to_string)
        .collect()
}

/// No endpoint answers: the first call's deadline (--command-timeout) passes; with `--user`
/// the token fetch's (--dial-timeout) does, and etcd's client constructor exits 2.
#[test]
fn unreachable_endpoints_fail_as_etcdctl() {
    let held = DeadPort::new();
    let dead = format!("--endpoints=127.0.0.1:{}", held.port);
    for args in [
        &[&dead[..], "--command-timeout=1s", "get", "foo"][..],
        &[&dead[..], "--command-timeout=1s", "put", "foo", "bar"],
        &[
            &dead[..],
            "--dial-timeout=1s",
            "--command-timeout=3s",
            "--user=root:pw",
            "get",
            "foo",
        ],
    ] {
        let started = Instant::now();
        let seen = same_offline(args, &[], |s| s);
        assert_eq!(seen.errors, "Error: context deadline exceeded");
        assert!(started.elapsed() < Duration::from_secs(20));
    }
    // --discovery-srv: both SRV lookups fail (this domain has none), exit 1 with both
    // lookup errors.
    let etcdctl = Seen::of(&run(
        Tool::Etcdctl,
        &["--discovery-srv=keel-test.invalid", "get", "a"],
        &[],
        None,
    ));
    let keelctl = Seen::of(&run(
        Tool::Keelctl,
        &["--discovery-srv=keel-test.invalid", "get", "a"],
        &[],
        None,
    ));
    assert_eq!(keelctl.code, etcdctl.code);
    assert_eq!(keelctl.code, 1);
    assert!(
        keelctl.errors.starts_with(
            "Error: dns lookup errors: lookup _etcd-client-ssl._tcp.keel-test.invalid on "
        ),
        "{}",
        keelctl.errors
    );
    if etcdctl.errors.ends_with("no such host") {
        // A name server answered (no network on CI may mean other texts).
        assert_eq!(keelctl.errors, etcdctl.errors);
    }
}

/// Users and passwords: from --user (user:password), --password, or the "Password: "
/// prompt; a wrong password exits 2 (etcd's client constructor fails); a server without
/// auth is used without a token; an empty password means no token at all.
#[test]
fn users_and_passwords_as_etcdctl() {
    let quad = Quad::start(&[]);
    quad.check(&["--user=root:rootpw", "put", "before", "auth"], None);
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["user", "grant-role", "root", "root"],
        &["auth", "enable"],
    ] {
        for server in &quad.servers {
            let ep = format!("--endpoints={}", server.endpoint);
            let mut full = vec![ep.as_str(), "--user=root:rootpw"];
            full.extend_from_slice(args);
            let out = run(Tool::Etcdctl, &full, &[], None);
            assert!(out.status.success(), "{args:?}: {out:?}");
        }
    }
    quad.check(&["--user=root:rootpw", "put", "k", "v"], None);
    quad.check(&["--user=root", "--password=rootpw", "get", "k"], None);
    quad.check(&["--user=root:wrong", "get", "k"], None);
    quad.check(&["--user=nobody:pw", "get", "k"], None);
    quad.check(&["--user=root:", "get", "k"], None);
    quad.check(&["get", "k"], None);
    // The prompt goes to stdout, the answer is read from stdin.
    let seen = quad.check(&["--user=root", "get", "k"], Some("rootpw\n"));
    assert!(
        seen.stdout.starts_with("Password: \nk\nv\n"),
        "{}",
        seen.stdout
    );
    quad.check(&["--user=root", "get", "k"], Some("wrong\n"));
}

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

    /// Writes `name.pem` and `name.key`: a certificate for 127.0.0.1 and localhost, for
    /// servers and clients.
    fn issue(&self, dir: &Path, name: &str) {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("signed certificate");
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("write");
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).expect("write");
    }
}

/// TLS: the TLS flags or an https endpoint choose TLS; the server's CA, a client
/// certificate, `--insecure-skip-tls-verify`; what fails (plaintext to a TLS port, the
/// wrong CA, no client certificate, an http endpoint with a CA) fails as etcdctl's first
/// call does: `context deadline exceeded`, exit 1.
#[test]
fn tls_connections_as_etcdctl() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, other) = (Authority::new("ca"), Authority::new("other-ca"));
    std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).expect("write");
    std::fs::write(dir.path().join("other-ca.pem"), other.cert.pem()).expect("write");
    ca.issue(dir.path(), "server");
    ca.issue(dir.path(), "client");
    other.issue(dir.path(), "stranger");
    let file = |name: &str| -> PathBuf { dir.path().join(name) };
    let flag = |flag: &str, name: &str| format!("--{flag}={}", file(name).display());
    let server_flags = |client_auth: bool| {
        let mut flags = vec![
            flag("cert-file", "server.pem"),
            flag("key-file", "server.key"),
        ];
        if client_auth {
            flags.push("--client-cert-auth".to_string());
            flags.push(flag("trusted-ca-file", "ca.pem"));
        }
        flags
    };
    let (cacert, other_ca) = (flag("cacert", "ca.pem"), flag("cacert", "other-ca.pem"));
    let (cert, key) = (flag("cert", "client.pem"), flag("key", "client.key"));
    let (stranger_cert, stranger_key) = (flag("cert", "stranger.pem"), flag("key", "stranger.key"));
    for client_auth in [false, true] {
        let servers: Vec<(Kind, TlsServer)> = [Kind::Etcd, Kind::Keel]
            .into_iter()
            .map(|kind| {
                let sub = dir.path().join(format!("{kind:?}-{client_auth}"));
                std::fs::create_dir_all(&sub).expect("dir");
                (
                    kind,
                    TlsServer::start(kind, &sub, &server_flags(client_auth)),
                )
            })
            .collect();
        for (kind, server) in &servers {
            let ep = format!("--endpoints={}", server.endpoint);
            let https = format!("--endpoints=https://{}", server.endpoint);
            let http = format!("--endpoints=http://{}", server.endpoint);
            let mut steps: Vec<Vec<&str>> = vec![
                vec![&ep, &cacert, &cert, &key, "put", "k", "v"],
                vec![&https, &cacert, &cert, &key, "get", "k"],
                vec![
                    &ep,
                    "--insecure-transport=false",
                    "--insecure-skip-tls-verify",
                    &cert,
                    &key,
                    "get",
                    "k",
                ],
                vec![
                    &https,
                    "--insecure-skip-tls-verify",
                    &cert,
                    &key,
                    "-w",
                    "json",
                    "get",
                    "k",
                ],
                // Failures.
                vec![&ep, "get", "k"],
                vec![&ep, &other_ca, &cert, &key, "get", "k"],
                vec![&https, &cert, &key, "get", "k"],
                vec![&http, &cacert, &cert, &key, "get", "k"],
                vec![&ep, "--insecure-transport=false", "get", "k"],
                vec![&ep, &cacert, &cert, "get", "k"],
            ];
            if client_auth {
                steps.push(vec![&ep, &cacert, "get", "k"]);
                steps.push(vec![
                    &ep,
                    &cacert,
                    &stranger_cert,
                    &stranger_key,
                    "get",
                    "k",
                ]);
            } else {
                steps.push(vec![&ep, &cacert, "get", "k"]);
                steps.push(vec![&https, &cacert, "get", "k"]);
            }
            for step in steps {
                let mut args = vec!["--command-timeout=2s", "--dial-timeout=1s"];
                args.extend(step.iter().copied());
                let etcdctl = Seen::of(&run(Tool::Etcdctl, &args, &[], None));
                let keelctl = Seen::of(&run(Tool::Keelctl, &args, &[], None));
                assert_eq!(
                    keelctl,
                    renamed(etcdctl),
                    "{kind:?} (client auth {client_auth}): {args:?}"
                );
            }
        }
        // The first steps succeed, the failures time out, against both servers.
        let (_, etcd) = &servers[0];
        let ok = Seen::of(&run(
            Tool::Keelctl,
            &[
                &format!("--endpoints={}", etcd.endpoint),
                &cacert,
                &cert,
                &key,
                "get",
                "k",
            ],
            &[],
            None,
        ));
        assert_eq!((ok.code, ok.stdout.as_str()), (0, "k\nv\n"));
        let failed = Seen::of(&run(
            Tool::Keelctl,
            &[
                "--command-timeout=1s",
                &format!("--endpoints={}", etcd.endpoint),
                &other_ca,
                "get",
                "k",
            ],
            &[],
            None,
        ));
        assert_eq!(
            (failed.code, failed.errors.as_str()),
            (1, "Error: context deadline exceeded")
        );
    }
}
