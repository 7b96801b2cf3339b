//! etcdctl against keel and against upstream etcd, side by side: every test starts a fresh
//! pair of servers with the same flags, runs the same etcdctl command sequence on both and
//! requires the same normalized stdout, the same `Error:` lines and the same exit codes.
//! Revisions are compared as they are: keel must assign exactly the revisions etcd assigns.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{error_lines, normalize, Kind, Server, COMMAND_TIMEOUT, ETCDCTL_BIN};
use regex::Regex;

/// How long a watch may take to print what the test waits for.
const WATCH_TIMEOUT: Duration = Duration::from_secs(30);

/// One etcd and one keel, started with the same flags, plus per-server values (lease ids,
/// paths) that commands refer to as `{name}`.
struct Pair {
    servers: [Server; 2],
    vars: [HashMap<String, String>; 2],
}

impl Pair {
    fn start(extra: &[&str]) -> Pair {
        let servers = [
            Server::start(Kind::Etcd, extra),
            Server::start(Kind::Keel, extra),
        ];
        let vars = [0, 1].map(|i| {
            let mut vars = HashMap::new();
            vars.insert(
                "dir".to_string(),
                servers[i].dir.path().display().to_string(),
            );
            vars
        });
        Pair { servers, vars }
    }

    /// `args` with every `{name}` replaced by server `i`'s value.
    fn expand(&self, i: usize, args: &[&str]) -> Vec<String> {
        args.iter()
            .map(|arg| {
                let mut arg = arg.to_string();
                for (name, value) in &self.vars[i] {
                    arg = arg.replace(&format!("{{{name}}}"), value);
                }
                arg
            })
            .collect()
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> [Output; 2] {
        [0, 1].map(|i| {
            let expanded = self.expand(i, args);
            let expanded: Vec<&str> = expanded.iter().map(String::as_str).collect();
            self.servers[i].etcdctl(&expanded, stdin)
        })
    }

    /// The comparable parts of one output: normalized stdout (with this server's variable
    /// values masked), the `Error:` lines and the exit code.
    fn comparable(&self, i: usize, output: &Output) -> (String, String, Option<i32>) {
        let mut stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        for (name, value) in &self.vars[i] {
            if name == "dir" {
                stdout = stdout.replace(value.as_str(), "{dir}");
            }
        }
        (
            normalize(&stdout),
            normalize(&error_lines(output)),
            output.status.code(),
        )
    }

    /// Runs `args` on both servers and asserts that they answer alike; returns etcd's
    /// normalized stdout.
    fn check(&self, args: &[&str], stdin: Option<&str>) -> String {
        let outputs = self.run(args, stdin);
        self.compare(args, &outputs)
    }

    fn compare(&self, args: &[&str], outputs: &[Output; 2]) -> String {
        let etcd = self.comparable(0, &outputs[0]);
        let keel = self.comparable(1, &outputs[1]);
        // Shown with `--nocapture`, to see what was compared.
        eprintln!("$ etcdctl {}\n{}{}", args.join(" "), etcd.0, etcd.1);
        assert_eq!(
            etcd,
            keel,
            "etcdctl {args:?}: etcd (left) and keel (right) differ\netcd stderr:\n{}\nkeel \
             stderr:\n{}",
            String::from_utf8_lossy(&outputs[0].stderr),
            String::from_utf8_lossy(&outputs[1].stderr)
        );
        etcd.0
    }

    /// Like [`Pair::check`], and stores capture group 1 of `pattern` in each server's raw
    /// stdout as the variable `name`.
    fn capture(&mut self, name: &str, args: &[&str], pattern: &str) {
        let outputs = self.run(args, None);
        self.compare(args, &outputs);
        let re = Regex::new(pattern).expect("valid pattern");
        for (i, output) in outputs.iter().enumerate() {
            let stdout = String::from_utf8_lossy(&output.stdout);
            let value = re
                .captures(&stdout)
                .unwrap_or_else(|| panic!("{pattern:?} not in {stdout:?}"))[1]
                .to_string();
            self.vars[i].insert(name.to_string(), value);
        }
    }

    /// Runs `etcdctl watch <args>` on both servers until a line equal to `until` appears,
    /// after `trigger` (if any) ran, and compares the normalized output.
    fn check_watch(&self, args: &[&str], until: &str, trigger: &dyn Fn(&Pair)) -> String {
        let children: Vec<_> = (0..2)
            .map(|i| {
                let mut child = Command::new(ETCDCTL_BIN)
                    .env("ETCDCTL_API", "3")
                    .env_remove("ETCDCTL_ENDPOINTS")
                    .arg(format!("--endpoints={}", self.servers[i].endpoint))
                    .arg(COMMAND_TIMEOUT)
                    .arg("watch")
                    .args(self.expand(i, args))
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn etcdctl watch");
                let stdout = child.stdout.take().expect("stdout pipe");
                let mut stderr = child.stderr.take().expect("stderr pipe");
                let stderr = std::thread::spawn(move || {
                    let mut text = String::new();
                    let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
                    text
                });
                let (tx, rx) = mpsc::channel();
                std::thread::spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                });
                (child, rx, stderr)
            })
            .collect();
        trigger(self);
        let mut results = Vec::new();
        for (mut child, rx, stderr) in children {
            let deadline = Instant::now() + WATCH_TIMEOUT;
            let mut lines = Vec::new();
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(line) => {
                        let done = line == until;
                        lines.push(line);
                        if done {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            let _ = child.kill();
            let _ = child.wait();
            // etcdctl's own messages (a canceled watch says why); its client logs are JSON.
            let stderr = stderr.join().unwrap_or_default();
            let messages: Vec<&str> = stderr.lines().filter(|l| !l.starts_with('{')).collect();
            let mut text = lines.join("\n");
            if !messages.is_empty() {
                text = format!("{text}\n[stderr]\n{}", messages.join("\n"));
            }
            results.push(normalize(&text));
        }
        eprintln!("$ etcdctl watch {}\n{}", args.join(" "), results[0]);
        assert_eq!(
            results[0], results[1],
            "etcdctl watch {args:?}: etcd (left) and keel (right) differ"
        );
        assert!(
            until.is_empty() || results[0].ends_with(until),
            "etcdctl watch {args:?} never printed {until:?}; got {:?}",
            results[0]
        );
        results[0].clone()
    }
}

/// Puts shared by several tests: several versions of some keys, so revisions matter.
fn seed(pair: &Pair) {
    for (key, value) in [
        ("a", "1"),
        ("b", "2"),
        ("c", "3"),
        ("foo", "bar"),
        ("foo1", "bar1"),
        ("foo2", "bar2"),
        ("a", "11"),
        ("zoo", "z"),
        ("foo1", "bar1b"),
        ("b", "0"),
    ] {
        assert_eq!(pair.check(&["put", key, value], None), "OK\n");
    }
}

#[test]
fn put_and_get_with_every_flag() {
    let pair = Pair::start(&[]);
    seed(&pair);
    pair.check(&["put", "a", "111", "--prev-kv"], None);
    pair.check(&["put", "a", "1111", "--prev-kv", "-w", "json"], None);
    pair.check(&["put", "new", "x", "--prev-kv"], None);
    pair.check(&["put", "b", "--ignore-value"], None);
    pair.check(&["put", "nokey", "--ignore-value"], None);
    pair.check(&["put", "b", "--ignore-lease"], None);
    let gets: &[&[&str]] = &[
        &["get", "a"],
        &["get", "missing"],
        &["get", "a", "-w", "json"],
        &["get", "a", "-w", "fields"],
        &["get", "foo", "--prefix"],
        &["get", "foo", "--prefix", "-w", "json"],
        &["get", "foo", "--prefix", "--limit", "2"],
        &["get", "foo", "--prefix", "--limit", "2", "-w", "json"],
        &["get", "b", "--from-key"],
        &["get", "b", "--from-key", "--limit", "3"],
        &["get", "", "--from-key", "--keys-only"],
        &["get", "a", "foo1"],
        &["get", "a", "--rev", "1"],
        &["get", "a", "--rev", "7"],
        &["get", "a", "--rev", "7", "-w", "json"],
        &["get", "foo", "--prefix", "--rev", "5"],
        &["get", "", "--prefix", "--keys-only"],
        &["get", "", "--prefix", "--count-only", "-w", "json"],
        &["get", "foo", "--prefix", "--count-only", "-w", "fields"],
        &["get", "", "--prefix", "--print-value-only"],
        &["get", "a", "--consistency", "s"],
        &["get", "", "--prefix", "--consistency", "s", "-w", "json"],
    ];
    for args in gets {
        pair.check(args, None);
    }
    for target in ["KEY", "VERSION", "CREATE", "MODIFY", "VALUE"] {
        for order in ["ASCEND", "DESCEND"] {
            pair.check(
                &["get", "", "--prefix", "--sort-by", target, "--order", order],
                None,
            );
            pair.check(
                &[
                    "get",
                    "",
                    "--prefix",
                    "--sort-by",
                    target,
                    "--order",
                    order,
                    "--limit",
                    "3",
                ],
                None,
            );
        }
        pair.check(
            &["get", "foo", "--prefix", "--sort-by", target, "-w", "json"],
            None,
        );
    }
    pair.check(&["get", "", "--prefix", "--order", "DESCEND"], None);
}

#[test]
fn puts_with_leases() {
    let mut pair = Pair::start(&[]);
    pair.capture(
        "lease",
        &["lease", "grant", "600"],
        r"lease ([0-9a-f]+) granted",
    );
    pair.check(&["put", "l1", "v1", "--lease={lease}"], None);
    pair.check(&["put", "l2", "v2", "--lease={lease}"], None);
    pair.check(&["get", "l1", "-w", "json"], None);
    pair.check(&["get", "l1", "-w", "fields"], None);
    // --ignore-lease keeps the key's lease; a plain put detaches it.
    pair.check(&["put", "l1", "v1b", "--ignore-lease"], None);
    pair.check(&["get", "l1", "-w", "json"], None);
    pair.check(&["put", "l2", "v2b"], None);
    pair.check(&["get", "l2", "-w", "json"], None);
    pair.check(&["put", "l2", "--ignore-lease"], None);
    // Attaching a lease and ignoring it at once is refused.
    pair.check(
        &["put", "l1", "x", "--lease={lease}", "--ignore-lease"],
        None,
    );
    pair.check(&["put", "nolease", "x", "--ignore-lease"], None);
    pair.check(&["lease", "timetolive", "{lease}", "--keys"], None);
    pair.check(&["lease", "revoke", "{lease}"], None);
    pair.check(&["get", "", "--prefix"], None);
}

#[test]
fn deletes() {
    let pair = Pair::start(&[]);
    seed(&pair);
    pair.check(&["del", "a"], None);
    pair.check(&["del", "a"], None);
    pair.check(&["del", "foo", "--prefix", "--prev-kv"], None);
    pair.check(&["del", "b", "--prev-kv", "-w", "json"], None);
    pair.check(&["put", "m1", "1"], None);
    pair.check(&["put", "m2", "2"], None);
    pair.check(&["del", "c", "m2"], None);
    pair.check(&["del", "m", "--from-key", "--prev-kv"], None);
    pair.check(&["get", "", "--from-key"], None);
    pair.check(&["get", "a", "--rev", "3", "-w", "json"], None);
    pair.check(&["put", "a", "again", "-w", "json"], None);
    pair.check(&["get", "a", "-w", "json"], None);
}

#[test]
fn transactions_from_stdin() {
    let pair = Pair::start(&[]);
    seed(&pair);
    let txns = [
        // Success branch on a value compare.
        "value(\"a\") = \"11\"\n\nput a 12\nget a\n\nput a wrong\n\n",
        // Failure branch.
        "value(\"a\") = \"nope\"\n\nput a wrong\n\nget a\nput fail yes\n\n",
        // Version, create and mod revision compares, several at once.
        "version(\"a\") = \"3\"\ncreate(\"a\") = \"2\"\nmod(\"foo1\") > \"5\"\n\nput t1 ok\n\
         del foo2\n\nput t1 bad\n\n",
        "mod(\"b\") < \"3\"\n\nput t2 ok\n\nget b\nget foo --prefix\n\n",
        "version(\"missing\") = \"0\"\n\nput created yes\n\n\n",
        "create(\"created\") > \"0\"\n\ndel created\nget \"\" --from-key\n\n\n",
        "value(\"zoo\") != \"y\"\nvalue(\"c\") > \"2\"\n\nput t3 ok\n\n\n",
        // No compares: the success branch always runs.
        "\nput t4 1\nput t5 2\n\n\n",
    ];
    for txn in txns {
        pair.check(&["txn"], Some(txn));
        pair.check(&["txn", "-w", "json"], Some(txn));
    }
    pair.check(&["get", "", "--prefix", "-w", "json"], None);
}

#[test]
fn watches() {
    let pair = Pair::start(&[]);
    seed(&pair);
    pair.check(&["del", "foo2"], None);
    pair.check(&["txn"], Some("\nput k1 t1\nput k2 t2\ndel c\n\n\n"));
    pair.check(&["put", "end", "END"], None);
    // History from revision 1, with and without previous values.
    pair.check_watch(&["--prefix", "", "--rev", "1"], "END", &|_| {});
    pair.check_watch(&["--prefix", "", "--rev", "1", "--prev-kv"], "END", &|_| {});
    pair.check_watch(&["foo", "--prefix", "--rev", "2"], "bar1b", &|_| {});
    pair.check_watch(&["a", "--rev", "1"], "11", &|_| {});
    pair.check_watch(&["b", "foo1", "--rev", "1"], "0", &|_| {});
    // Live events: each watch starts at the next revision, so it sees exactly what follows.
    let out = pair.check(&["get", "end", "-w", "json"], None);
    let rev: i64 = Regex::new(r#""revision":(\d+)"#)
        .unwrap()
        .captures(&out)
        .unwrap()[1]
        .parse()
        .unwrap();
    let next = (rev + 1).to_string();
    pair.check_watch(
        &["--prefix", "live", "--rev", &next, "--prev-kv"],
        "STOP",
        &|pair| {
            pair.check(&["put", "live1", "a"], None);
            pair.check(&["put", "live1", "b"], None);
            pair.check(&["del", "live1"], None);
            pair.check(&["txn"], Some("\nput live2 x\nput live3 y\n\n\n"));
            pair.check(&["put", "live9", "STOP"], None);
        },
    );
}

#[test]
fn leases() {
    let mut pair = Pair::start(&[]);
    pair.capture(
        "l1",
        &["lease", "grant", "600"],
        r"lease ([0-9a-f]+) granted",
    );
    pair.capture(
        "l2",
        &["lease", "grant", "300"],
        r"lease ([0-9a-f]+) granted",
    );
    pair.check(&["lease", "list"], None);
    pair.check(&["put", "k1", "v", "--lease={l1}"], None);
    pair.check(&["put", "k2", "v", "--lease={l1}"], None);
    pair.check(&["put", "k3", "v", "--lease={l2}"], None);
    pair.check(&["lease", "timetolive", "{l1}"], None);
    pair.check(&["lease", "timetolive", "{l1}", "--keys"], None);
    pair.check(
        &["lease", "timetolive", "{l1}", "--keys", "-w", "json"],
        None,
    );
    pair.check(&["lease", "keep-alive", "--once", "{l1}"], None);
    pair.check(&["lease", "revoke", "{l1}"], None);
    pair.check(&["get", "k", "--prefix"], None);
    pair.check(&["get", "k", "--prefix", "-w", "json"], None);
    pair.check(&["lease", "list"], None);
    pair.check(&["lease", "timetolive", "{l1}"], None);
    pair.check(&["lease", "revoke", "{l1}"], None);
    pair.check(&["lease", "keep-alive", "--once", "{l1}"], None);
    pair.check(&["lease", "revoke", "{l2}"], None);
    pair.check(&["lease", "list"], None);
    // Ids are hex on etcdctl's command line.
    pair.check(&["lease", "timetolive", "abcdef", "--keys"], None);
    // Below the minimum TTL (1.5 x election timeout, rounded up) etcd grants the minimum.
    pair.capture(
        "short",
        &["lease", "grant", "1"],
        r"lease ([0-9a-f]+) granted",
    );
    pair.check(&["lease", "timetolive", "{short}"], None);
    pair.check(&["lease", "grant", "0"], None);
    pair.check(&["lease", "grant", "-5"], None);
    pair.check(&["lease", "grant", "600", "-w", "json"], None);
    pair.check(
        &["lease", "keep-alive", "--once", "{short}", "-w", "json"],
        None,
    );
}

#[test]
fn compaction() {
    let pair = Pair::start(&[]);
    seed(&pair);
    pair.check(&["compact", "5"], None);
    pair.check(&["get", "a", "--rev", "4"], None);
    pair.check(&["get", "a", "--rev", "5"], None);
    pair.check(&["get", "a", "--rev", "3", "-w", "json"], None);
    pair.check(&["compact", "5"], None);
    pair.check(&["compact", "3"], None);
    pair.check(&["compact", "100"], None);
    pair.check(&["compact", "8", "--physical"], None);
    pair.check(&["get", "", "--prefix", "--rev", "8"], None);
    pair.check(&["get", "", "--prefix", "--rev", "7"], None);
    pair.check(&["txn"], Some("\nget a --rev 2\n\n\n"));
    pair.check_watch(&["--prefix", "", "--rev", "9"], "0", &|_| {});
    // A watch below the compacted revision is canceled and etcdctl exits with the reason.
    pair.check_watch(&["a", "--rev", "2"], "", &|_| {});
    pair.check_watch(&["--prefix", "", "--rev", "3", "--prev-kv"], "", &|_| {});
    pair.check(&["del", "", "--from-key"], None);
    pair.check(&["compact", "11"], None);
    pair.check(&["get", "", "--from-key", "-w", "json"], None);
}

#[test]
fn cluster_and_maintenance() {
    let pair = Pair::start(&[]);
    seed(&pair);
    pair.check(&["member", "list"], None);
    pair.check(&["endpoint", "health"], None);
    pair.check(&["endpoint", "health", "-w", "json"], None);
    pair.check(&["endpoint", "status", "-w", "json"], None);
    // The simple format prints raft term and indexes as bare numbers: compare the rest.
    let outputs = pair.run(&["endpoint", "status"], None);
    let fields: Vec<Vec<String>> = outputs
        .iter()
        .map(|o| {
            let text = normalize(&String::from_utf8_lossy(&o.stdout));
            let mut fields: Vec<String> = text.split(',').map(|f| f.trim().to_string()).collect();
            assert_eq!(fields.len(), 10, "endpoint status: {text:?}");
            for field in &mut fields[6..9] {
                assert!(field.parse::<u64>().is_ok(), "raft number {field:?}");
                *field = "N".to_string();
            }
            fields
        })
        .collect();
    assert_eq!(
        fields[0], fields[1],
        "endpoint status: etcd (left), keel (right)"
    );
    pair.check(&["alarm", "list"], None);
    pair.check(&["defrag"], None);
    pair.check(&["snapshot", "save", "{dir}/snap.db"], None);
    pair.check(&["get", "", "--prefix", "-w", "json"], None);
}

/// etcd's MemberList header carries no revision (etcd's cluster service fills only ids and
/// the raft term).
#[test]
fn member_list_json() {
    let pair = Pair::start(&[]);
    seed(&pair);
    pair.check(&["member", "list", "-w", "json"], None);
}

#[test]
fn errors() {
    let pair = Pair::start(&[]);
    seed(&pair);
    pair.check(&["get", "a", "--rev", "100"], None);
    pair.check(&["get", "a", "--rev", "11"], None);
    pair.check(&["get", "a", "--rev", "11", "-w", "json"], None);
    pair.check(&["lease", "revoke", "1234"], None);
    pair.check(&["lease", "keep-alive", "--once", "1234"], None);
    pair.check(&["lease", "timetolive", "1234"], None);
    pair.check(&["put", "k", "v", "--lease=1234"], None);
    pair.check(&["put", "", "v"], None);
    pair.check(&["get", ""], None);
    pair.check(&["del", ""], None);
    pair.check(&["get", "b", "a"], None);
    pair.check(&["txn"], Some("\nput a 1\nput a 2\n\n\n"));
    pair.check(&["txn"], Some("\nput a 1\ndel a\n\n\n"));
    pair.check(&["txn"], Some("\nput \"\" x\n\n\n"));
    pair.check(&["txn"], Some("\nput a 1\n\nput a 2\nput a 3\n\n"));
    pair.check(&["txn"], Some("\nput k v --lease=1234\n\n\n"));
    pair.check(&["compact", "0"], None);
    pair.check(&["get", "", "--prefix", "-w", "json"], None);
}

#[test]
fn more_maintenance() {
    let pair = Pair::start(&[]);
    seed(&pair);
    pair.check(&["compact", "4"], None);
    // The hash itself depends on the storage format; the revisions around it must agree.
    let outputs = pair.run(&["endpoint", "hashkv", "-w", "json"], None);
    let texts: Vec<String> = outputs
        .iter()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout);
            let text = Regex::new(r#""hash":\d+"#)
                .unwrap()
                .replace_all(&text, "\"hash\":H");
            normalize(&text)
        })
        .collect();
    assert_eq!(
        texts[0], texts[1],
        "endpoint hashkv: etcd (left), keel (right)"
    );
    assert!(texts[0].contains("\"compact_revision\":4"), "{}", texts[0]);
    pair.check(&["move-leader", "1234"], None);
    pair.check(&["alarm", "disarm"], None);
    pair.check(&["endpoint", "health", "--cluster"], None);
}

/// Endpoints written as URLs (`http://127.0.0.1:2379`, the form etcd's docs use and the form
/// `--cluster` takes from the member list): etcdctl dials them with the whole URL as the
/// HTTP/2 `:authority`, which etcd accepts and Keel rewrites before its HTTP/2 library sees it
/// (tests/authority.rs has the details).
#[test]
fn endpoints_given_as_urls() {
    let pair = Pair::start(&[]);
    seed(&pair);
    let outputs: Vec<Output> = pair
        .servers
        .iter()
        .map(|s| common::etcdctl(&s.url(), &["endpoint", "status", "-w", "json"], None))
        .collect();
    pair.compare(
        &["endpoint", "status", "--endpoints=URL"],
        &[outputs[0].clone(), outputs[1].clone()],
    );
    pair.check(&["endpoint", "status", "--cluster", "-w", "json"], None);
    // The hash itself depends on the storage format (see `more_maintenance`).
    let outputs = pair.run(&["endpoint", "hashkv", "--cluster", "-w", "json"], None);
    let texts: Vec<String> = outputs
        .iter()
        .map(|o| {
            assert!(o.status.success(), "{}", error_lines(o));
            let text = String::from_utf8_lossy(&o.stdout);
            let text = Regex::new(r#""hash":\d+"#)
                .unwrap()
                .replace_all(&text, "\"hash\":H");
            normalize(&text)
        })
        .collect();
    assert_eq!(
        texts[0], texts[1],
        "endpoint hashkv --cluster: etcd (left), keel (right)"
    );
}

/// `etcdctl lock` holds a lock (the Lock service) while it runs a command, which sees the
/// lock's key revision in `ETCD_LOCK_REV`.
#[test]
fn lock() {
    let pair = Pair::start(&[]);
    seed(&pair);
    pair.check(
        &["lock", "l1", "sh", "-c", "echo held at $ETCD_LOCK_REV"],
        None,
    );
    pair.check(
        &["lock", "l1", "sh", "-c", "echo held at $ETCD_LOCK_REV"],
        None,
    );
    pair.check(&["get", "l1", "--prefix", "--keys-only"], None);
}

/// Users, roles and permissions, and requests with and without credentials once auth is on.
#[test]
fn auth() {
    let pair = Pair::start(&[]);
    seed(&pair);
    pair.check(&["user", "add", "root", "--new-user-password=rootpw"], None);
    pair.check(
        &["user", "add", "alice", "--new-user-password=alicepw"],
        None,
    );
    pair.check(&["role", "add", "reader"], None);
    pair.check(
        &[
            "role",
            "grant-permission",
            "reader",
            "read",
            "foo",
            "--prefix=true",
        ],
        None,
    );
    pair.check(&["user", "grant-role", "alice", "reader"], None);
    pair.check(&["user", "list"], None);
    pair.check(&["role", "list"], None);
    pair.check(&["role", "get", "reader"], None);
    pair.check(&["user", "get", "alice"], None);
    pair.check(&["auth", "enable"], None);
    pair.check(&["get", "foo"], None);
    pair.check(&["--user=alice:alicepw", "get", "foo", "--prefix"], None);
    pair.check(&["--user=alice:alicepw", "put", "foo", "x"], None);
    pair.check(&["--user=alice:wrong", "get", "foo"], None);
    pair.check(&["--user=root:rootpw", "put", "foo", "x"], None);
    pair.check(&["--user=root:rootpw", "auth", "disable"], None);
    pair.check(&["get", "foo"], None);
}
