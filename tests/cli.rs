//! The `keel` binary's command line: bad flags, the data-dir lock, clean shutdown on SIGTERM.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn keel() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keel"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[test]
fn unknown_flag_exits_2_with_a_message() {
    let output = keel().arg("--no-such-flag").output().expect("run keel");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
}

#[test]
fn bad_flag_value_exits_2_with_a_message() {
    for (flag, value, expected) in [
        ("--listen-client-urls", "127.0.0.1:2379", "missing scheme"),
        ("--max-txn-ops", "many", "invalid value"),
        (
            "--auto-compaction-retention",
            "soon",
            "auto-compaction-retention",
        ),
    ] {
        let output = keel().args([flag, value]).output().expect("run keel");
        assert_eq!(output.status.code(), Some(2), "{flag} {value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{flag} {value}: {stderr}");
    }
}

#[test]
fn help_explains_the_flags() {
    let output = keel().arg("--help").output().expect("run keel");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--data-dir",
        "--listen-client-urls",
        "--quota-backend-bytes",
        "ETCD_NAME",
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}");
    }
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `keel` serving clients and peers on free loopback ports; returns it with the client port.
fn keel_on_free_ports() -> (Command, u16) {
    let client = free_port();
    let peer = free_port();
    let mut command = keel();
    command
        .args([
            "--listen-client-urls",
            &format!("http://127.0.0.1:{client}"),
        ])
        .args([
            "--advertise-client-urls",
            &format!("http://127.0.0.1:{client}"),
        ])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .stdout(Stdio::null());
    (command, client)
}

fn start(data_dir: &std::path::Path, stderr: Stdio) -> (Child, u16) {
    let (mut command, client) = keel_on_free_ports();
    let child = command
        .arg("--data-dir")
        .arg(data_dir)
        .stderr(stderr)
        .spawn()
        .expect("start keel");
    (Child(child), client)
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "keel did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn second_process_on_the_same_data_dir_is_refused_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let (mut first, port) = start(&data_dir, Stdio::null());
    wait_listening(port);

    let (mut second, _) = start(&data_dir, Stdio::piped());
    let status = second.0.wait().expect("second keel exits");
    assert!(!status.success());
    let mut stderr = String::new();
    use std::io::Read;
    second
        .0
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert!(
        stderr.contains("in use by another process") || stderr.contains("locked"),
        "{stderr}"
    );

    // SAFETY: kill(2) on the pid of a child we own and have not reaped.
    unsafe { libc::kill(first.0.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = first.0.try_wait().expect("wait") {
            assert!(status.success(), "SIGTERM exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "keel did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Regression: with no --data-dir, keel uses the relative `./default.keel`, which once failed
/// at startup (glommio cannot open a relative directory). This is the README's first command.
#[test]
fn default_relative_data_dir_starts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut command, client) = keel_on_free_ports();
    let child = command
        .current_dir(dir.path())
        .stderr(Stdio::null())
        .spawn()
        .expect("start keel");
    let mut child = Child(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", client)).is_err() {
        if let Some(status) = child.0.try_wait().expect("wait") {
            panic!("keel exited with {status} instead of serving");
        }
        assert!(Instant::now() < deadline, "keel did not listen on {client}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(dir.path().join("default.keel").join("member").is_dir());
}
