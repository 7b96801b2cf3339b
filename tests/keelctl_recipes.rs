//! keelctl's client-side recipes against etcdctl's, on etcd and on Keel: `lock` and `elect`
//! (made from leases, transactions and watches, so keelctl and etcdctl contend for the same
//! locks and elections), and `make-mirror` (etcd to Keel and Keel to etcd).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::ctl::{run_tool, Quad, Seen, Tool};
use common::{Kind, Server, COMMAND_TIMEOUT};

/// How long a step may take before the test fails (servers and tools are slow on a loaded
/// machine, so this is generous; nothing waits for it unless something is wrong).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// A tool running in the background, its stdout collected as it comes. Killed on drop.
struct Running {
    tool: Tool,
    child: Child,
    stdout: Arc<Mutex<String>>,
}

impl Running {
    fn start(tool: Tool, endpoint: &str, args: &[&str]) -> Running {
        let mut command = Command::new(tool.binary());
        for (key, _) in std::env::vars() {
            if key.starts_with("ETCDCTL_") {
                command.env_remove(key);
            }
        }
        let mut child = command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .arg(COMMAND_TIMEOUT)
            .arg("--dial-timeout=10s")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {tool:?}: {e}"));
        let stdout = Arc::new(Mutex::new(String::new()));
        let pipe = child.stdout.take().expect("stdout pipe");
        let sink = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut out = sink.lock().expect("stdout lock");
                out.push_str(&line);
                out.push('\n');
            }
        });
        Running {
            tool,
            child,
            stdout,
        }
    }

    fn output(&self) -> String {
        self.stdout.lock().expect("stdout lock").clone()
    }

    /// Waits until stdout has at least `lines` lines; returns it.
    fn wait_lines(&self, lines: usize) -> String {
        wait_for(&format!("{:?} to print {lines} lines", self.tool), || {
            let out = self.output();
            (out.lines().count() >= lines).then_some(out)
        })
    }

    /// Sends SIGINT and waits for the exit status.
    fn interrupt(&mut self) -> i32 {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let child = &mut self.child;
        wait_for("the tool to exit after SIGINT", || {
            child
                .try_wait()
                .ok()
                .flatten()
                .map(|s| s.code().unwrap_or(-1))
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it gives a value, failing the test after [`STEP_TIMEOUT`].
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The keys under `prefix`, one per line, as etcdctl lists them.
fn keys(endpoint: &str, prefix: &str) -> Vec<String> {
    let out = run_tool(
        Tool::Etcdctl,
        endpoint,
        &["get", prefix, "--prefix", "--keys-only"],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Every key and value, as `etcdctl get "" --prefix` prints them.
fn everything(endpoint: &str) -> String {
    let out = run_tool(Tool::Etcdctl, endpoint, &["get", "", "--prefix"], None);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How many leases the server has.
fn leases(endpoint: &str) -> usize {
    let out = run_tool(Tool::Etcdctl, endpoint, &["lease", "list"], None);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    text.strip_prefix("found ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("lease list said {text:?}"))
}

fn put(endpoint: &str, key: &str, value: &str) {
    let out = run_tool(Tool::Etcdctl, endpoint, &["put", key, value], None);
    assert!(out.status.success(), "{out:?}");
}

/// A holder blocks a waiter until it lets go, whichever tool holds and whichever waits.
#[test]
fn lock_holders_block_waiters_across_tools() {
    for kind in [Kind::Etcd, Kind::Keel] {
        let server = Server::start(kind, &[]);
        let ep = server.endpoint.as_str();
        for (first, second) in [
            (Tool::Keelctl, Tool::Keelctl),
            (Tool::Keelctl, Tool::Etcdctl),
            (Tool::Etcdctl, Tool::Keelctl),
        ] {
            let name = format!("lock-{first:?}-{second:?}");
            let mut holder = Running::start(first, ep, &["lock", &name]);
            let held = holder.wait_lines(2);
            let held_key = held.lines().next().unwrap_or_default().to_string();
            assert!(
                held_key.starts_with(&format!("{name}/")) && held == format!("{held_key}\n\n"),
                "{kind:?} {first:?}: {held:?}"
            );
            let mut waiter = Running::start(second, ep, &["lock", &name]);
            // The waiter has queued its key, and still holds nothing.
            wait_for("the waiter's key", || {
                (keys(ep, &format!("{name}/")).len() == 2).then_some(())
            });
            assert_eq!(waiter.output(), "", "{kind:?}: {second:?} took a held lock");
            assert_eq!(holder.interrupt(), 0, "{kind:?} {first:?}");
            let taken = waiter.wait_lines(2);
            let taken_key = taken.lines().next().unwrap_or_default().to_string();
            assert!(taken_key.starts_with(&format!("{name}/")), "{taken:?}");
            assert_ne!(taken_key, held_key);
            assert_eq!(keys(ep, &format!("{name}/")), vec![taken_key]);
            assert_eq!(waiter.interrupt(), 0, "{kind:?} {second:?}");
            assert!(keys(ep, &format!("{name}/")).is_empty());
        }
    }
}

/// A command run while holding the lock sees the lock's key and revision, and its exit
/// status is the tool's: etcdctl 3.5 exits with the command's status (3.4.23 exits 1).
#[test]
fn lock_runs_a_command_while_holding_it() {
    let quad = Quad::start(&[]);
    quad.check(&["put", "before", "x"], None);
    let script = "echo \"key $ETCD_LOCK_KEY rev $ETCD_LOCK_REV\"";
    quad.check(&["lock", "cmdlock", "--", "sh", "-c", script], None);
    let failing = format!("{script}; exit 3");
    quad.check_35(
        &["lock", "cmdlock", "--", "sh", "-c", &failing],
        None,
        |seen| Seen { code: 3, ..seen },
    );
    quad.check(&["lock", "cmdlock", "no-such-command-for-keelctl"], None);
    quad.check(&["lock"], None);
    quad.check(&["-w", "json", "lock", "cmdlock", "--", "true"], None);
    quad.check(&["get", "cmdlock/", "--prefix"], None);
    quad.check(&["elect"], None);
    quad.check(&["elect", "e"], None);
    quad.check(&["elect", "-l", "e", "proposal"], None);
    quad.check(&["elect", "e", "p", "extra"], None);
}

/// Campaigns from both tools: the first leads until interrupted, then the second; observers
/// of both tools report the same leaders.
#[test]
fn elections_across_tools() {
    for kind in [Kind::Etcd, Kind::Keel] {
        let server = Server::start(kind, &[]);
        let ep = server.endpoint.as_str();
        for (first, second) in [
            (Tool::Keelctl, Tool::Etcdctl),
            (Tool::Etcdctl, Tool::Keelctl),
        ] {
            let name = format!("elect-{first:?}");
            let leases_before = leases(ep);
            let mut observers = [
                Running::start(Tool::Etcdctl, ep, &["elect", "-l", &name]),
                Running::start(Tool::Keelctl, ep, &["elect", "-l", &name]),
            ];
            // Observers print nothing until there is a leader; give them a session first.
            wait_for("the observers' sessions", || {
                (leases(ep) == leases_before + 2).then_some(())
            });
            let mut leader = Running::start(first, ep, &["elect", &name, "one"]);
            let led = leader.wait_lines(2);
            assert!(
                led.starts_with(&format!("{name}/")) && led.ends_with("\none\n"),
                "{led:?}"
            );
            let mut next = Running::start(second, ep, &["elect", &name, "two"]);
            wait_for("the second candidate's key", || {
                (keys(ep, &format!("{name}/")).len() == 2).then_some(())
            });
            assert_eq!(next.output(), "", "{kind:?}: two leaders");
            for observer in &observers {
                assert_eq!(observer.wait_lines(2), led, "{kind:?} {:?}", observer.tool);
            }
            assert_eq!(leader.interrupt(), 0);
            let took_over = next.wait_lines(2);
            assert!(took_over.ends_with("\ntwo\n"), "{took_over:?}");
            for observer in &observers {
                assert_eq!(
                    observer.wait_lines(4),
                    format!("{led}{took_over}"),
                    "{kind:?} {:?}",
                    observer.tool
                );
            }
            assert_eq!(next.interrupt(), 0);
            for observer in &mut observers {
                assert_eq!(observer.interrupt(), 0);
            }
            assert!(keys(ep, &format!("{name}/")).is_empty());
        }
    }
}

/// Mirrors by keelctl and by etcdctl from the same source into two destinations, one of
/// each kind: the destinations must hold the same keys after the base copy and after each
/// change replayed. Then the progress count etcdctl prints every 30 seconds.
#[test]
fn make_mirror_from_etcd_and_from_keel() {
    for (source_kind, keel_dest_kind, etcd_dest_kind) in [
        (Kind::Etcd, Kind::Keel, Kind::Etcd),
        (Kind::Keel, Kind::Etcd, Kind::Keel),
    ] {
        let source = Server::start(source_kind, &[]);
        let src = source.endpoint.as_str();
        // keelctl's destination and etcdctl's.
        let dest_k = Server::start(keel_dest_kind, &[]);
        let dest_e = Server::start(etcd_dest_kind, &[]);
        put(src, "m/a", "1");
        put(src, "m/b", "2");
        put(src, "other", "not mirrored");
        let flags = ["make-mirror", "--prefix", "m/", "--dest-prefix", "n/"];
        let with_dest = |dest: &str| {
            let mut args = flags.to_vec();
            args.push(dest);
            args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
        };
        let k_args = with_dest(&dest_k.endpoint);
        let e_args = with_dest(&dest_e.endpoint);
        let k_refs: Vec<&str> = k_args.iter().map(String::as_str).collect();
        let e_refs: Vec<&str> = e_args.iter().map(String::as_str).collect();
        let keel_mirror = Running::start(Tool::Keelctl, src, &k_refs);
        let etcd_mirror = Running::start(Tool::Etcdctl, src, &e_refs);
        let same = |expected: &str| {
            wait_for(&format!("both destinations to hold {expected:?}"), || {
                let (k, e) = (everything(&dest_k.endpoint), everything(&dest_e.endpoint));
                (k == expected && e == expected).then_some(())
            })
        };
        same("n/a\n1\nn/b\n2\n");
        put(src, "m/c", "3");
        put(src, "other", "still not");
        let out = run_tool(Tool::Etcdctl, src, &["del", "m/a"], None);
        assert!(out.status.success(), "{out:?}");
        // Three changes in one revision are replayed in one transaction.
        let out = run_tool(
            Tool::Etcdctl,
            src,
            &["txn"],
            Some("\nput m/t1 x\nput m/t2 y\ndel m/b\n\n\n"),
        );
        assert!(out.status.success(), "{out:?}");
        same("n/c\n3\nn/t1\nx\nn/t2\ny\n");
        // Every 30 s both print the number of keys synced: 2 copied, 5 changes replayed.
        let deadline = Duration::from_secs(45);
        for mirror in [&keel_mirror, &etcd_mirror] {
            let start = Instant::now();
            while mirror.output().is_empty() {
                assert!(
                    start.elapsed() < deadline,
                    "{:?} printed no count",
                    mirror.tool
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            assert_eq!(
                mirror.output().lines().next(),
                Some("7"),
                "{:?}",
                mirror.tool
            );
        }
    }
}

/// The whole key space without a prefix, `--no-dest-prefix`, `--max-txn-ops` and `--rev`
/// (etcdctl 3.6's flags, which 3.5 lacks: checked on their own).
#[test]
fn make_mirror_flags() {
    for kind in [Kind::Etcd, Kind::Keel] {
        let source = Server::start(kind, &[]);
        let src = source.endpoint.as_str();
        let dest = Server::start(Kind::Keel, &[]);
        put(src, "a", "1");
        put(src, "p/b", "2");
        {
            let _mirror = Running::start(
                Tool::Keelctl,
                src,
                &["make-mirror", "--max-txn-ops=1", &dest.endpoint],
            );
            wait_for("the base copy", || {
                (everything(&dest.endpoint) == everything(src)).then_some(())
            });
            let out = run_tool(
                Tool::Etcdctl,
                src,
                &["txn"],
                Some("\nput t1 x\nput t2 y\nput t3 z\n\n\n"),
            );
            assert!(out.status.success(), "{out:?}");
            wait_for("the transaction replayed", || {
                (everything(&dest.endpoint) == everything(src)).then_some(())
            });
        }
        let dest2 = Server::start(Kind::Etcd, &[]);
        {
            let _mirror = Running::start(
                Tool::Keelctl,
                src,
                &[
                    "make-mirror",
                    "--prefix=p/",
                    "--no-dest-prefix",
                    &dest2.endpoint,
                ],
            );
            wait_for("the base copy to the root", || {
                (everything(&dest2.endpoint) == "b\n2\n").then_some(())
            });
        }
        // From revision 3 on (the second put and what follows), no base copy.
        let dest3 = Server::start(Kind::Keel, &[]);
        {
            let _mirror = Running::start(
                Tool::Keelctl,
                src,
                &["make-mirror", "--rev=3", &dest3.endpoint],
            );
            wait_for("the changes from revision 3", || {
                (everything(&dest3.endpoint) == "p/b\n2\nt1\nx\nt2\ny\nt3\nz\n").then_some(())
            });
        }
    }
}

#[test]
fn make_mirror_bad_arguments() {
    let quad = Quad::start(&[]);
    quad.check(&["make-mirror"], None);
    quad.check(&["make-mirror", "a:1", "b:2"], None);
    let seen = quad.check(
        &[
            "make-mirror",
            "--prefix=x",
            "--dest-prefix=y",
            "--no-dest-prefix",
            "{endpoint}",
        ],
        None,
    );
    assert_eq!(seen.code, 128);
}
