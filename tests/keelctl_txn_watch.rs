//! keelctl's txn, compaction and watch against etcdctl's, each tool against etcd and against
//! Keel (tests/common/ctl.rs): the same normalized output in every format, the same errors
//! and exit codes.
//!
//! A watch runs until it is killed, so the watch tests run each tool as a child, read its
//! stdout on a thread until a sentinel event shows (or a deadline passes, failing the test)
//! and then kill it. Events are replayed from a past revision (`--rev`) wherever possible,
//! so that no write races a watch's creation.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::ctl::{protobuf_fields, run_tool, Quad, Seen, Tool, COMBINATIONS};
use common::{normalize, Cluster, Kind, Server, COMMAND_TIMEOUT};

const FORMATS: [&str; 4] = ["simple", "json", "fields", "protobuf"];

/// etcdctl 3.5 names a txn response's oneof member by its JSON name (`response_range`);
/// 3.4.23's generated code had no JSON name for it, so Go used the field's (`ResponseRange`).
fn json_oneof_names_35(mut seen: Seen) -> Seen {
    for (from, to) in [
        ("\"ResponseRange\":", "\"response_range\":"),
        ("\"ResponsePut\":", "\"response_put\":"),
        ("\"ResponseDeleteRange\":", "\"response_delete_range\":"),
    ] {
        seen.stdout = seen.stdout.replace(from, to);
    }
    seen
}

/// A script that touches every kind of request and response.
const SCRIPT: &str = "value(\"k1\") = \"v1\"\nmod(\"k2\") > \"0\"\n\nput k1 \"new\tvalue\" --prev-kv\nget k --prefix\ndel k2 --prev-kv\nput k3 v3\n\nget k1\n\n";

#[test]
fn txn_in_every_format() {
    let quad = Quad::start(&[]);
    quad.check(&["put", "k1", "v1"], None);
    quad.check(&["put", "k2", "v2"], None);
    for format in FORMATS {
        let w = format!("-w={format}");
        // Succeeds once (k1 is v1), then fails (k1 changed), in each format.
        quad.check(&["put", "k1", "v1"], None);
        quad.check(&["put", "k2", "v2"], None);
        for _ in 0..2 {
            quad.check_35(&[&w, "txn"], Some(SCRIPT), json_oneof_names_35);
        }
    }
    // Every comparison target and operator; keys and values double- or back-quoted; Go's
    // escapes.
    let script = "create(\"k1\") < \"1000\"\nc(\"k1\") != \"0\"\nversion(\"k1\") > \"0\"\nver(\"none\") = \"0\"\nm(`k1`) > \"1\"\nval(\"k\\x31\") != `x`\n\nput \"a b\" \"\\u00e9\\t\"\nget \"a b\"\ng k1\npu k9 v9\nd k9\n\nput nope nope\n\n";
    for format in FORMATS {
        quad.check_35(
            &[&format!("-w={format}"), "txn"],
            Some(script),
            json_oneof_names_35,
        );
    }
    // Interactive mode prints the prompts; empty sections; --hex; trimmed lines.
    quad.check(
        &["txn", "-i"],
        Some("  value(\"k1\") = \"v1\"  \n\n  get k1  \n\n\n"),
    );
    quad.check(&["txn", "--interactive"], Some("\n\n\n"));
    quad.check(
        &["--hex", "txn"],
        Some("\nput k1 hex --prev-kv\nget k1\n\n\n"),
    );
    quad.check(
        &["--hex", "-w=fields", "txn"],
        Some("\nput k1 hex2 --prev-kv\nget k1\n\n\n"),
    );
    // Requests with get's, put's and del's flags.
    quad.check(&["put", "r1", "a"], None);
    quad.check(&["put", "r2", "b"], None);
    quad.check_35(
        &["-w=json", "txn"],
        Some("\nget r --prefix --keys-only\nget r1 r3 --order=DESCEND --sort-by=value --limit=1\nget r --prefix --rev=2 --consistency=s\ndel r2 --from-key --prev-kv\nput r1 x --ignore-lease\n\n\n"),
        json_oneof_names_35,
    );
    quad.check(&["-w=protobuf", "txn"], Some("\nget \"\" --from-key\n\n\n"));
    // A failing request fails the transaction with the server's error.
    quad.check(&["txn"], Some("\nput k1 a\nput k1 b\n\n\n"));
}

#[test]
fn malformed_scripts_fail_as_etcdctl_fails() {
    let quad = Quad::start(&[]);
    for script in [
        // The input ends before a section's empty line.
        "",
        "value(\"k1\") = \"v1\"",
        "value(\"k1\") = \"v1\"\n\nput a b\n",
        "\n\n\n".trim_end_matches('\n'),
        // Comparisons.
        "foo\n\n\n\n",
        "value(\"k1\")=\"v1\"\n\n\n\n",
        "value(\"k1\") =\n\n\n\n",
        "value(k1) = \"v\"\n\n\n\n",
        "value(\"k1\" ) = \"v\"\n\n\n\n",
        "value(\"k\\z\") = \"v\"\n\n\n\n",
        "bar(\"k1\") = \"v\"\n\n\n\n",
        "ver(\"k1\") = \"x\"\n\n\n\n",
        "mod(\"k1\") > \"99999999999999999999\"\n\n\n\n",
        // Requests.
        "\nput\n\n\n",
        "\nfoo bar\n\n\n",
        "\nget k --bogus\n\n\n",
        "\nget k --rev=abc\n\n\n",
        "\nget k --prefix --from-key\n\n\n",
        "\nget k --consistency=x\n\n\n",
        "\nget k --order=up\n\n\n",
        "\nput k\n\n\n",
        "\nput k v --lease=zz\n\n\n",
        "\nput k v --ignore-value\n\n\n",
        "\ndel a b c\n\n\n",
        "\nput \"\\z\" v\n\n\n",
        "\n\nhelp\n\n",
    ] {
        let seen = quad.check(&["txn"], Some(script));
        assert_ne!(seen.code, 0, "{script:?} should fail");
    }
    // A quote that opens no string is skipped, as etcdctl's argument splitting skips it.
    quad.check(
        &["txn"],
        Some("\nput \"unterminated v\nget unterminated\n\n\n"),
    );
    // Arguments are refused; a table is not a format of txn.
    // (No stdin: the tool exits before reading it.)
    quad.check(&["txn", "extra"], None);
    quad.check(&["-w=table", "txn"], Some("\n\n\n"));
}

/// Where etcdctl 3.5 and 3.4.23 split a line differently, or where etcdctl panics, keelctl
/// is checked alone against both servers.
#[test]
fn txn_35_and_fixed_behaviour() {
    for kind in [Kind::Etcd, Kind::Keel] {
        let server = Server::start(kind, &[]);
        let keelctl = |args: &[&str], stdin: &str| {
            let out = run_tool(Tool::Keelctl, &server.endpoint, args, Some(stdin));
            Seen::of(&out)
        };
        // etcdctl 3.4.23 cut single-quoted strings to the number of arguments on the line
        // (a bug 3.5 fixed): 3.5 takes them whole.
        let seen = keelctl(&["txn"], "\nput 'x y' 'a b c'\nget 'x y'\n\n\n");
        assert_eq!(
            (seen.stdout.as_str(), seen.code),
            ("SUCCESS\n\nOK\n\nx y\na b c\n", 0),
            "{kind:?}"
        );
        // get's --count-only is new in 3.5; in a txn the count shows in -w fields.
        let seen = keelctl(&["-w=fields", "txn"], "\nget x --prefix --count-only\n\n\n");
        assert!(
            seen.stdout.contains("\"Count\" : 1\n"),
            "{kind:?}: {seen:?}"
        );
        assert!(!seen.stdout.contains("\"Key\""), "{kind:?}: {seen:?}");
        // etcdctl 3.5 panics on a lease comparison; keelctl compares the key's lease with a
        // hexadecimal ID, as etcdctl 3.6 does.
        let out = server.etcdctl(&["lease", "grant", "100"], None);
        let lease = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .expect("a lease id")
            .to_string();
        let seen = keelctl(&["put", "leased", "v", &format!("--lease={lease}")], "");
        assert_eq!(seen.code, 0, "{kind:?}: {seen:?}");
        let seen = keelctl(
            &["txn"],
            &format!("lease(\"leased\") = \"{lease}\"\nlease(\"x y\") = \"0\"\n\n\n\n"),
        );
        assert_eq!(seen.stdout, "SUCCESS\n", "{kind:?}");
        let seen = keelctl(&["txn"], "lease(\"leased\") = \"0\"\n\n\n\n");
        assert_eq!(seen.stdout, "FAILURE\n", "{kind:?}");
        let seen = keelctl(&["txn"], "lease(\"leased\") = \"xyz\"\n\n\n\n");
        assert_eq!(
            (seen.errors.as_str(), seen.code),
            (
                "Error: invalid txn compare request: lease(\"leased\") = \"xyz\"",
                3
            ),
            "{kind:?}"
        );
        // etcdctl panics on an unknown operator (exit 2); keelctl says what is wrong.
        let seen = keelctl(&["txn"], "value(\"k\") == \"v\"\n\n\n\n");
        assert_eq!(seen.code, 3, "{kind:?}: {seen:?}");
        assert!(
            seen.errors.contains("unknown operator =="),
            "{kind:?}: {seen:?}"
        );
    }
}

#[test]
fn compaction_as_etcdctl() {
    let quad = Quad::start(&[]);
    for i in 0..5 {
        quad.check(&["put", "c", &i.to_string()], None);
    }
    quad.check(&["compaction", "3"], None);
    quad.check(&["compaction", "3"], None);
    quad.check(&["compaction", "2"], None);
    quad.check(&["compaction", "1000"], None);
    quad.check(&["compaction", "abc"], None);
    quad.check(&["compaction"], None);
    quad.check(&["compaction", "4", "5"], None);
    quad.check(&["compaction", "5", "--physical"], None);
    quad.check(&["get", "c", "--rev=4"], None);
    quad.check(&["get", "c", "--rev=5"], None);
    // A watch from a compacted revision is shown as canceled, and ends with exit 5.
    for format in FORMATS {
        let seen = check_with_env(
            &quad,
            &[&format!("-w={format}"), "watch", "c", "--rev=2"],
            &[],
            "",
        );
        assert_eq!(seen.code, 5);
    }
}

/// A tool watching as a child process; its stdout is read on a thread.
struct Watcher {
    child: Child,
    output: mpsc::Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

/// How long a watch may take to show what the test waits for.
const WATCH_DEADLINE: Duration = Duration::from_secs(20);

impl Watcher {
    fn start(tool: Tool, endpoint: &str, args: &[&str], env: &[(&str, &str)]) -> Watcher {
        let mut command = Command::new(tool.binary());
        for (key, _) in std::env::vars() {
            if key.starts_with("ETCDCTL_") {
                command.env_remove(key);
            }
        }
        command
            .env("ETCDCTL_API", "3")
            .envs(env.iter().copied())
            .arg(format!("--endpoints={endpoint}"))
            .arg(COMMAND_TIMEOUT)
            .arg("--dial-timeout=10s")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn the tool");
        let mut stdout = child.stdout.take().expect("stdout");
        let (tx, output) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buffer) {
                if n == 0 || tx.send(buffer[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        Watcher {
            child,
            output,
            seen: Vec::new(),
        }
    }

    /// Reads stdout until `marker` shows, then to the end of its line (the end of the output
    /// read so far for protobuf). Returns the output up to there.
    fn read_until(&mut self, marker: &[u8], lines: bool) -> Vec<u8> {
        let deadline = Instant::now() + WATCH_DEADLINE;
        loop {
            if let Some(at) = find(&self.seen, marker) {
                let after = at + marker.len();
                if !lines {
                    return self.seen.clone();
                }
                if let Some(newline) = self.seen[after..].iter().position(|&b| b == b'\n') {
                    return self.seen[..after + newline + 1].to_vec();
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(bytes) => self.seen.extend_from_slice(&bytes),
                Err(_) => {
                    let _ = self.child.kill();
                    let mut stderr = String::new();
                    if let Some(mut e) = self.child.stderr.take() {
                        let _ = e.read_to_string(&mut stderr);
                    }
                    panic!(
                        "no {:?} in the watch output within {WATCH_DEADLINE:?}: stdout {:?}, \
                         stderr {stderr:?}",
                        String::from_utf8_lossy(marker),
                        String::from_utf8_lossy(&self.seen)
                    );
                }
            }
        }
    }

    /// Writes a line to the tool's stdin.
    fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin.write_all(line.as_bytes()).expect("write to the tool");
        stdin.flush().expect("flush");
    }

    /// Kills the tool and returns its stderr.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        stderr
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The sentinel's value, written last; the marker that shows it in each format.
const SENTINEL: &str = "SENTINEL";

fn marker(format: &str, hex: bool) -> (Vec<u8>, bool) {
    match (format, hex) {
        ("json", _) => (b"\"U0VOVElORUw=\"".to_vec(), true),
        ("protobuf", _) => (SENTINEL.as_bytes().to_vec(), false),
        ("fields", _) => (b"\"Value\" : \"SENTINEL\"".to_vec(), true),
        (_, true) => (b"\\x53\\x45\\x4e\\x54\\x49\\x4e\\x45\\x4c".to_vec(), true),
        _ => (SENTINEL.as_bytes().to_vec(), true),
    }
}

/// The same watch in all four combinations, read up to the sentinel's event; the outputs
/// (normalized, protobuf as fields) must be equal.
fn check_watch(quad: &Quad, args: &[&str], format: &str, hex: bool) {
    let (marker, lines) = marker(format, hex);
    let outputs: Vec<String> = COMBINATIONS
        .iter()
        .zip(&quad.servers)
        .map(|((tool, _), server)| {
            let mut watcher = Watcher::start(*tool, &server.endpoint, args, &[]);
            let out = watcher.read_until(&marker, lines);
            watcher.stop();
            if format == "protobuf" {
                protobuf_fields(&out, true)
            } else {
                normalize(&String::from_utf8_lossy(&out))
            }
        })
        .collect();
    assert_eq!(
        outputs[0], outputs[2],
        "etcdctl: etcd and Keel differ for {args:?}"
    );
    for i in [1, 3] {
        assert_eq!(
            outputs[i], outputs[0],
            "keelctl differs from etcdctl for {args:?} ({:?})",
            COMBINATIONS[i]
        );
    }
}

#[test]
fn watch_in_every_format() {
    let quad = Quad::start(&[]);
    quad.check(&["put", "w", "1"], None);
    quad.check(&["put", "w/a", "2"], None);
    quad.check(&["put", "w", "3"], None);
    quad.check(&["del", "w"], None);
    quad.check(&["put", "x", "quoted \"é\"\t"], None);
    quad.check(&["put", "w", SENTINEL], None);
    quad.check(&["put", "x", SENTINEL], None);
    for format in FORMATS {
        let w = format!("-w={format}");
        check_watch(&quad, &[&w, "watch", "w", "--rev=2"], format, false);
        check_watch(
            &quad,
            &[&w, "watch", "w", "--rev=2", "--prev-kv"],
            format,
            false,
        );
        check_watch(
            &quad,
            &[&w, "watch", "--prefix", "w", "--rev=1"],
            format,
            false,
        );
        check_watch(
            &quad,
            &[&w, "watch", "a", "x", "--rev=1", "--prev-kv"],
            format,
            false,
        );
    }
    check_watch(
        &quad,
        &["--hex", "watch", "w", "--rev=2", "--prev-kv"],
        "simple",
        true,
    );
    check_watch(
        &quad,
        &["watch", "", "--prefix", "--rev=1"],
        "simple",
        false,
    );
}

#[test]
fn watch_runs_a_command_for_each_event() {
    let quad = Quad::start(&[]);
    quad.check(&["put", "e", "one"], None);
    quad.check(&["put", "e", "two \"quoted\""], None);
    quad.check(&["del", "e"], None);
    quad.check(&["put", "e", SENTINEL], None);
    let script = "echo \"rev=$ETCD_WATCH_REVISION type=$ETCD_WATCH_EVENT_TYPE key=$ETCD_WATCH_KEY value=$ETCD_WATCH_VALUE\"";
    check_watch(
        &quad,
        &["watch", "e", "--rev=2", "--", "sh", "-c", script],
        "simple",
        false,
    );
    // Flags after the key and before `--`, and ETCDCTL_WATCH_KEY in place of the key.
    let outputs: Vec<(String, String)> = COMBINATIONS
        .iter()
        .zip(&quad.servers)
        .map(|((tool, _), server)| {
            let mut watcher = Watcher::start(
                *tool,
                &server.endpoint,
                &["watch", "--rev=2", "--", "sh", "-c", script],
                &[("ETCDCTL_WATCH_KEY", "e")],
            );
            let out = watcher.read_until(b"value=\"SENTINEL\"", true);
            watcher.stop();
            (normalize(&String::from_utf8_lossy(&out)), String::new())
        })
        .collect();
    for i in 1..4 {
        assert_eq!(outputs[i], outputs[0], "{:?}", COMBINATIONS[i]);
    }
    // A failing command ends the watch with status 1 and etcdctl's message.
    for (script, message) in [
        (
            "exit 3",
            "command [\"sh\" \"-c\" \"exit 3\"] error (exit status 3)",
        ),
        (
            "kill -9 $$",
            "command [\"sh\" \"-c\" \"kill -9 $$\"] error (signal: killed)",
        ),
    ] {
        for ((tool, kind), server) in COMBINATIONS.iter().zip(&quad.servers) {
            let (_, stderr, code) = run_bounded(
                *tool,
                &server.endpoint,
                &["watch", "e", "--rev=2", "--", "sh", "-c", script],
                &[],
                "",
            );
            assert_eq!(code, 1, "{tool:?} {kind:?}: {stderr}");
            assert!(stderr.contains(message), "{tool:?} {kind:?}: {stderr}");
        }
    }
    let missing = "command [\"/nonexistent/cmd\"] error (fork/exec /nonexistent/cmd: no such file or directory)";
    for ((tool, kind), server) in COMBINATIONS.iter().zip(&quad.servers) {
        let (_, stderr, code) = run_bounded(
            *tool,
            &server.endpoint,
            &["watch", "e", "--rev=2", "--", "/nonexistent/cmd"],
            &[],
            "",
        );
        assert_eq!(code, 1, "{tool:?} {kind:?}: {stderr}");
        assert!(stderr.contains(missing), "{tool:?} {kind:?}: {stderr}");
    }
}

/// Runs a command that ends by itself, with `env` set and `stdin` written (then closed),
/// and returns its stdout, stderr and exit code; a command still running after the
/// deadline fails the test.
fn run_bounded(
    tool: Tool,
    endpoint: &str,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &str,
) -> (Vec<u8>, String, i32) {
    let mut watcher = Watcher::start(tool, endpoint, args, env);
    watcher.send(stdin);
    drop(watcher.child.stdin.take());
    let deadline = Instant::now() + WATCH_DEADLINE;
    let status = loop {
        if let Some(status) = watcher.child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let stdout = String::from_utf8_lossy(&watcher.seen).into_owned();
            let stderr = watcher.stop();
            panic!("{tool:?} {args:?} did not exit: stdout {stdout:?}, stderr {stderr:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = std::mem::take(&mut watcher.seen);
    while let Ok(bytes) = watcher.output.recv_timeout(Duration::from_secs(5)) {
        stdout.extend_from_slice(&bytes);
    }
    let stderr = watcher.stop();
    (stdout, stderr, status.code().unwrap_or(-1))
}

/// Runs a command that ends by itself in every combination with `env` set, and requires
/// equal results (stdout normalized, protobuf as fields; `Error:` lines; exit codes).
fn check_with_env(quad: &Quad, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Seen {
    check_with_env_35(quad, args, env, stdin, |seen| seen)
}

/// As [`check_with_env`], for a command whose output etcdctl 3.5 changed: keelctl's results
/// must equal `to_35` applied to etcdctl's.
fn check_with_env_35(
    quad: &Quad,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &str,
    to_35: impl Fn(Seen) -> Seen,
) -> Seen {
    let protobuf = args.contains(&"-w=protobuf");
    let seen: Vec<Seen> = COMBINATIONS
        .iter()
        .zip(&quad.servers)
        .map(|((tool, _), server)| {
            let (stdout, stderr, code) = run_bounded(*tool, &server.endpoint, args, env, stdin);
            Seen {
                stdout: if protobuf && !stdout.is_empty() {
                    protobuf_fields(&stdout, true)
                } else {
                    normalize(&String::from_utf8_lossy(&stdout))
                },
                errors: normalize(
                    &stderr
                        .lines()
                        .filter(|l| l.starts_with("Error:"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
                code,
            }
        })
        .collect();
    assert_eq!(
        seen[2], seen[0],
        "etcdctl: etcd and Keel differ for {args:?} with {env:?}"
    );
    let expected = to_35(seen[0].clone());
    for i in [1, 3] {
        assert_eq!(
            seen[i], expected,
            "{args:?} with {env:?}: {:?}",
            COMBINATIONS[i]
        );
    }
    seen[0].clone()
}

#[test]
fn bad_watch_arguments_fail_as_etcdctl_fails() {
    let quad = Quad::start(&[]);
    quad.check(&["put", "a", "1"], None);
    for args in [
        &["watch"][..],
        &["watch", "--prefix"],
        &["watch", "a", "b", "--prefix"],
        &["watch", "a", "--"],
        &["-w=table", "watch", "a", "--rev=1"],
    ] {
        let seen = check_with_env(&quad, args, &[], "");
        assert_ne!(seen.code, 0, "{args:?} should fail");
    }
    let seen = check_with_env(&quad, &["watch"], &[("ETCDCTL_WATCH_RANGE_END", "z")], "");
    assert_eq!(seen.code, 128);
    let seen = check_with_env(&quad, &["watch", "a"], &[("ETCDCTL_WATCH_KEY", "k")], "");
    assert_eq!(seen.code, 128);
    let seen = check_with_env(
        &quad,
        &["watch", "a", "--", "echo"],
        &[("ETCDCTL_WATCH_KEY", "k")],
        "",
    );
    assert_eq!(seen.code, 128);
    // A range whose end is below its key: the server refuses it, the watch ends.
    for format in ["simple", "json"] {
        let seen = check_with_env(
            &quad,
            &[&format!("-w={format}"), "watch", "b", "a"],
            &[],
            "",
        );
        assert_eq!(seen.code, 5);
    }
    // Interactive mode: stdin ending is an error (exit 3); a bad flag ends it (exit 128).
    // etcdctl 3.5 starts this message in lower case ("Error reading ..." in 3.4.23).
    let seen = check_with_env_35(
        &quad,
        &["watch", "-i"],
        &[],
        "watch a\nwatch b",
        |mut seen| {
            seen.errors = seen
                .errors
                .replace("Error: Error reading", "Error: error reading");
            seen
        },
    );
    assert_eq!(seen.code, 3);
    let seen = check_with_env(
        &quad,
        &["watch", "-i"],
        &[],
        "foo\n\nwatch\nwatch a --bogus\n",
    );
    assert_eq!(seen.code, 128);
    let seen = check_with_env(&quad, &["watch", "-i"], &[], "watch a --rev\n");
    assert_eq!(seen.code, 128);
    let seen = check_with_env(
        &quad,
        &["watch", "-i"],
        &[],
        "watch a b --prefix\nwatch a --\n",
    );
    assert_eq!(seen.code, 128);
}

#[test]
fn interactive_watch_and_progress() {
    let quad = Quad::start(&[]);
    quad.check(&["put", "i", "1"], None);
    quad.check(&["put", "j", "2"], None);
    let outputs: Vec<(String, String)> = COMBINATIONS
        .iter()
        .zip(&quad.servers)
        .map(|((tool, _), server)| {
            let mut watcher = Watcher::start(*tool, &server.endpoint, &["watch", "-i"], &[]);
            // Invalid lines are reported on stderr and skipped.
            watcher.send("\nfoo\nwatch\nwatch a b --prefix\n");
            watcher.send("watch i --prev-kv\nprogress\n");
            watcher.read_until(b"progress notify: 3", true);
            let out = run_tool(*tool, &server.endpoint, &["put", "i", "after"], None);
            assert!(out.status.success(), "{out:?}");
            watcher.read_until(b"after", true);
            // A second watch, with a command; the progress answer goes to both watches.
            // (Double quotes: etcdctl 3.4.23 cuts single-quoted strings short.)
            watcher.send("watch j -- sh -c \"echo ran for $ETCD_WATCH_KEY\"\n");
            watcher.send("progress\n");
            watcher.read_until(b"progress notify: 4\nprogress notify: 4", true);
            let out = run_tool(*tool, &server.endpoint, &["put", "j", SENTINEL], None);
            assert!(out.status.success(), "{out:?}");
            let out = watcher.read_until(b"ran for \"j\"", true);
            let stderr = watcher.stop();
            let invalid: Vec<&str> = stderr
                .lines()
                .filter(|l| l.starts_with("Invalid command"))
                .collect();
            (
                normalize(&String::from_utf8_lossy(&out)),
                invalid.join("\n"),
            )
        })
        .collect();
    for i in 1..4 {
        assert_eq!(outputs[i], outputs[0], "{:?}", COMBINATIONS[i]);
    }
}

/// `--progress-notify` is new in etcdctl 3.5: the server's periodic progress notifications
/// show as `progress notify: <revision>` lines.
#[test]
fn progress_notify_as_etcdctl_3_5() {
    for kind in [Kind::Etcd, Kind::Keel] {
        let server = Server::start(
            kind,
            &["--experimental-watch-progress-notify-interval=200ms"],
        );
        let out = run_tool(Tool::Keelctl, &server.endpoint, &["put", "p", "1"], None);
        assert!(out.status.success(), "{out:?}");
        let mut watcher = Watcher::start(
            Tool::Keelctl,
            &server.endpoint,
            &["watch", "p", "--progress-notify"],
            &[],
        );
        let out = watcher.read_until(b"progress notify: 2", true);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "progress notify: 2\n",
            "{kind:?}"
        );
        watcher.stop();
        let mut watcher = Watcher::start(
            Tool::Keelctl,
            &server.endpoint,
            &["-w=json", "watch", "p", "--progress-notify"],
            &[],
        );
        let out = watcher.read_until(b"\"Events\":[]", true);
        let text = normalize(&String::from_utf8_lossy(&out));
        assert!(
            text.ends_with(
                "{\"Header\":{\"cluster_id\":N,\"member_id\":N,\"revision\":2,\"raft_term\":N},\
                 \"Events\":[],\"CompactRevision\":0,\"Canceled\":false,\"Created\":false}\n"
            ),
            "{kind:?}: {text}"
        );
        watcher.stop();
    }
}

/// A watch whose connection breaks resumes where it was, as etcd's client resumes it: on a
/// 3-member cluster, watchers given the first two members' endpoints see the member they use
/// killed (SIGKILL) in turn while writes go on through the third; each shows every event
/// once, in order. etcdctl and keelctl against Keel, and keelctl against etcd.
#[test]
fn a_watch_resumes_after_its_connection_breaks() {
    for kind in [Kind::Keel, Kind::Etcd] {
        let mut cluster = Cluster::start(kind, 3, &[]);
        let writer = cluster.members[2].endpoint.clone();
        let put = |value: &str| {
            // The cluster may be electing a leader after a kill: retry until it answers.
            let deadline = Instant::now() + WATCH_DEADLINE;
            loop {
                let output = run_tool(Tool::Keelctl, &writer, &["put", "w", value], None);
                if output.status.success() {
                    return;
                }
                assert!(Instant::now() < deadline, "put {value}: {output:?}");
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        put("v0");
        let revision = {
            let output = run_tool(Tool::Keelctl, &writer, &["get", "w", "-w", "json"], None);
            let json: serde_json::Value =
                serde_json::from_slice(&output.stdout).expect("get -w json");
            json["header"]["revision"].as_i64().expect("revision")
        };
        let endpoints = format!(
            "{},{}",
            cluster.members[0].endpoint, cluster.members[1].endpoint
        );
        let tools: &[Tool] = match kind {
            Kind::Keel => &[Tool::Etcdctl, Tool::Keelctl],
            Kind::Etcd => &[Tool::Keelctl],
        };
        let rev = format!("--rev={revision}");
        let mut watchers: Vec<Watcher> = tools
            .iter()
            .map(|tool| Watcher::start(*tool, &endpoints, &["watch", "w", &rev], &[]))
            .collect();
        for watcher in &mut watchers {
            watcher.read_until(b"v0", true);
        }
        for (round, victim) in [0usize, 1].into_iter().enumerate() {
            cluster.kill(victim);
            let value = format!("v{}", round + 1);
            put(&value);
            cluster.restart(victim);
            cluster.wait_healthy(victim);
            for watcher in &mut watchers {
                watcher.read_until(value.as_bytes(), true);
            }
        }
        put(SENTINEL);
        for (tool, mut watcher) in tools.iter().zip(watchers) {
            let out = watcher.read_until(SENTINEL.as_bytes(), true);
            watcher.stop();
            assert_eq!(
                String::from_utf8_lossy(&out),
                "PUT\nw\nv0\nPUT\nw\nv1\nPUT\nw\nv2\nPUT\nw\nSENTINEL\n",
                "{tool:?} against {kind:?}"
            );
        }
    }
}
